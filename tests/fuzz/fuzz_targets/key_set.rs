//! The key-set parser: a Secrets Manager key set (JSON `{active, next,
//! retired}`) through `parse_stored` and `StoredKeySet::into_key_set`, as a
//! key-set refresh runs them. It must never panic, and no error may quote key
//! material (errors are logged).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tokenhook::keys::KeyError;
use tokenhook::keys::stored::parse_stored;

const WHAT: &str = "key set secret `fuzz`";

/// Base64 lines of every PEM in the input (what must never be echoed), and the
/// strings an error may legitimately echo (algorithm names, kids, field names).
fn material(value: &Value, secret: &mut Vec<String>, echoable: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                echoable.push(key.clone());
                match (key.as_str(), v) {
                    // Body lines of a PEM: long runs of base64, which no
                    // error text of ours or of the key parsers contains.
                    ("private_key_pem", Value::String(pem)) => secret.extend(
                        pem.lines()
                            .map(str::trim)
                            .filter(|l| {
                                l.len() >= 24
                                    && l.bytes()
                                        .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
                            })
                            .map(str::to_string),
                    ),
                    (_, Value::String(s)) => echoable.push(s.clone()),
                    _ => material(v, secret, echoable),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| material(v, secret, echoable)),
        _ => {}
    }
}

fn check(error: &str, data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let (mut secret, mut echoable) = (Vec::new(), Vec::new());
    material(&value, &mut secret, &mut echoable);
    for line in secret {
        if error.contains(&line) && !echoable.iter().any(|e| e.contains(&line)) {
            panic!("an error quotes key material: {error}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // Secrets Manager's SecretString is UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_stored(text) {
        Ok(stored) => {
            let retired = stored.retired.len();
            let has_next = stored.next.is_some();
            match stored.into_key_set(WHAT) {
                Ok(set) => {
                    assert_eq!(set.retired.len(), retired);
                    assert_eq!(set.next.is_some(), has_next);
                    // Every published key carries its kid; the active one signs.
                    let jwks = set.jwks();
                    assert_eq!(jwks.keys.len(), 1 + usize::from(has_next) + retired);
                    assert!(jwks.keys.iter().all(|k| k.common.key_id.is_some()));
                    set.active
                        .sign(&serde_json::json!({"sub": "fuzz"}))
                        .expect("the active key signs");
                }
                Err(err) => {
                    let message = err.to_string();
                    if matches!(err, KeyError::BadKey { .. }) {
                        assert!(
                            message.contains(WHAT),
                            "the error does not name the key: {message}"
                        );
                    }
                    check(&message, data);
                }
            }
        }
        Err(message) => check(&message, data),
    }
});
