//! The local key file: a PKCS#8 PEM private key, generated on first use.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jsonwebtoken::Algorithm;

use super::{KeyError, KeyFuture, KeySet, KeySource, SigningKey, generate_pkcs8_pem};

/// Signs with one key from a file. If the file does not exist it is created
/// with a fresh key (mode 0600); an existing file is never overwritten.
pub struct FileKeySource {
    path: PathBuf,
    set: Arc<KeySet>,
}

impl FileKeySource {
    pub fn open_or_generate(path: &Path, alg: Algorithm) -> Result<Self, KeyError> {
        let io =
            |what: &str, e: std::io::Error| KeyError::Io(format!("{what} {}: {e}", path.display()));
        if !path.exists() {
            let pem = generate_pkcs8_pem(alg)?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| io("cannot create the directory of", e))?;
            }
            write_private(path, pem.as_bytes()).map_err(|e| io("cannot write key file", e))?;
            tracing::info!(path = %path.display(), "generated a new signing key");
        }
        let pem = std::fs::read_to_string(path).map_err(|e| io("cannot read key file", e))?;
        let key =
            SigningKey::from_pkcs8_pem(&pem, alg, None, &format!("key file {}", path.display()))?;
        Ok(FileKeySource {
            path: path.to_path_buf(),
            set: Arc::new(KeySet::single(key)),
        })
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

impl KeySource for FileKeySource {
    fn key_set(&self) -> KeyFuture<'_> {
        let set = self.set.clone();
        Box::pin(async move { Ok(set) })
    }

    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generates_once_with_private_mode_then_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/dev.pem");
        let first = FileKeySource::open_or_generate(&path, Algorithm::ES256).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let second = FileKeySource::open_or_generate(&path, Algorithm::ES256).unwrap();
        assert_eq!(first.set.active.kid, second.set.active.kid);
    }
}
