//! The manifest loader: TOML text through `Manifest::parse` and
//! `Manifest::validate`, as `Manifest::load` runs them. It must never panic,
//! and every error must name the manifest file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tokenhook::manifest::{Manifest, ManifestError};

const FILE: &str = "/fuzz/manifest.toml";

fn check(err: &ManifestError) {
    assert_eq!(err.file, Path::new(FILE), "{err}");
    assert!(
        err.to_string().starts_with(FILE),
        "the error does not name the file: {err}"
    );
}

fuzz_target!(|data: &[u8]| {
    // `Manifest::load` reads the file with read_to_string: only UTF-8 gets here.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Manifest::parse(text, Path::new(FILE)) {
        Ok(manifest) => {
            assert_eq!(manifest.path, Path::new(FILE));
            if let Err(err) = manifest.validate() {
                check(&err);
            }
        }
        Err(err) => check(&err),
    }
});
