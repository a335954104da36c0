//! The local key file: a PKCS#8 PEM private key, generated on first use.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jsonwebtoken::Algorithm;

use super::{KeyError, KeyFuture, KeySet, KeySource, SigningKey, generate_pkcs8_pem};

/// Signs with one key from a file. If the file does not exist it is created
/// with a fresh key (mode 0600); an existing file is never overwritten, and is
/// refused if group or others have any permission on it.
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
        let pem = read_private(path).map_err(|e| match e {
            Private::Io(e) => io("cannot read key file", e),
            Private::Exposed(mode) => KeyError::Exposed {
                path: path.display().to_string(),
                mode,
            },
        })?;
        let key =
            SigningKey::from_pkcs8_pem(&pem, alg, None, &format!("key file {}", path.display()))?;
        Ok(FileKeySource {
            path: path.to_path_buf(),
            set: Arc::new(KeySet::single(key)),
        })
    }
}

enum Private {
    Io(std::io::Error),
    /// The file's permission bits: some are set for group or others.
    Exposed(u32),
}

/// Read a key file only if its owner alone can read or write it. The mode is
/// checked on the open file, so it is the file that is read. A key that others
/// could read may already be someone else's: refusing makes the operator
/// rotate it or tighten the mode knowingly, rather than sign with it silently.
fn read_private(path: &Path) -> Result<String, Private> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let mut file = std::fs::File::open(path).map_err(Private::Io)?;
    let mode = file.metadata().map_err(Private::Io)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Private::Exposed(mode));
    }
    let mut pem = String::new();
    file.read_to_string(&mut pem).map_err(Private::Io)?;
    Ok(pem)
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

    #[test]
    fn a_key_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev.pem");
        FileKeySource::open_or_generate(&path, Algorithm::ES256).unwrap();
        for mode in [0o640, 0o604, 0o660, 0o620] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = FileKeySource::open_or_generate(&path, Algorithm::ES256)
                .err()
                .unwrap_or_else(|| panic!("mode {mode:o} must be refused"))
                .to_string();
            assert!(
                err.contains(&path.display().to_string())
                    && err.contains(&format!("{mode:o}"))
                    && err.contains("chmod 600"),
                "{err}"
            );
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        FileKeySource::open_or_generate(&path, Algorithm::ES256).expect("owner-only is fine");
    }
}
