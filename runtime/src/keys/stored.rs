//! A key set kept as JSON in a secret store (AWS Secrets Manager): fetched,
//! parsed and cached by [`crate::cached::Cached`] (the refresh policy it shares
//! with hook secrets); refreshed after a TTL; when a refresh fails the cached
//! set keeps serving up to a maximum staleness, then signing fails clearly.
//!
//! The hot path is a read lock and an `Arc` clone. A due refresh runs as a
//! task of its own, one at a time (single flight). The request that started it
//! waits for it at most [`REFRESH_WAIT`]; every other request, and that one
//! after the wait, keeps using the cached set while it may still serve, so a
//! slow or unreachable store (the SDK retries for seconds) never holds up
//! tokens. Only a set beyond its maximum staleness makes requests wait for the
//! refresh, and fail if it fails. After a failed refresh the next attempt comes
//! [`retry_interval`] later (at most the TTL), so an outage costs one store call
//! per interval, not one per token.

use std::sync::Arc;
use std::time::Duration;

use super::{KeyError, KeyFuture, KeySet, KeySource, StoredKeySet};
use crate::cached::{Cached, Messages, Waits};
pub use crate::cached::{MAX_RETRY_INTERVAL, retry_interval};
use crate::secrets::SecretStore;

/// Default time a fetched key set is used before it is fetched again.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);
/// Default time a cached key set may keep serving while refreshes fail.
pub const DEFAULT_MAX_STALE: Duration = Duration::from_secs(3600);
/// How long the request that starts a refresh waits for it before it signs
/// with the cached set (a healthy Secrets Manager answers in tens of ms).
pub const REFRESH_WAIT: Duration = Duration::from_millis(250);

/// Keys wait briefly for a due refresh (so a rotation shows at once when the
/// store is healthy) and, past the maximum staleness, for the refresh itself:
/// without a key there is nothing else to do.
const WAITS: Waits = Waits {
    first: REFRESH_WAIT,
    when_too_old: true,
};

const MESSAGES: Messages = Messages {
    serving_stale: "key set refresh failed; serving the cached key set",
    too_old: "key set refresh failed and the cached key set is too old to serve; tokens cannot be signed",
};

pub struct StoredSecretKeySource {
    secret_id: String,
    cache: Cached<KeySet>,
}

impl StoredSecretKeySource {
    /// Fetch the key set once; a failure here is a start-up error.
    pub async fn open(
        store: Arc<dyn SecretStore>,
        secret_id: &str,
        ttl: Duration,
        max_stale: Duration,
    ) -> Result<Self, KeyError> {
        let set = Arc::new(fetch(store.as_ref(), secret_id).await?);
        tracing::info!(secret_id, kid = %set.active.kid, next = ?set.next.as_ref().map(|k| &k.kid), "key set loaded");
        let id = secret_id.to_string();
        let refetch: crate::cached::Fetch<KeySet> = Arc::new(move |previous| {
            let (store, id) = (store.clone(), id.clone());
            Box::pin(async move {
                let set = fetch(store.as_ref(), &id)
                    .await
                    .map_err(|e| e.to_string())?;
                if let Some(previous) = previous
                    && set.active.kid != previous.active.kid
                {
                    tracing::info!(secret_id = %id, kid = %set.active.kid, previous = %previous.active.kid, "signing key rotated");
                }
                Ok(set)
            })
        });
        let what = format!("key set from secret `{secret_id}`");
        Ok(StoredSecretKeySource {
            secret_id: secret_id.to_string(),
            cache: Cached::with_value(what, MESSAGES, ttl, max_stale, refetch, set),
        })
    }

    async fn current(&self) -> Result<Arc<KeySet>, KeyError> {
        self.cache
            .get(WAITS)
            .await
            .map_err(|e| KeyError::Unavailable(e.to_string()))
    }
}

/// Read and parse the key set in `secret_id`. Errors name the secret and the
/// cause, never key material.
async fn fetch(store: &dyn SecretStore, secret_id: &str) -> Result<KeySet, KeyError> {
    let what = format!("key set secret `{secret_id}`");
    let text = store
        .get_secret_string(secret_id)
        .await
        .map_err(|e| KeyError::Unavailable(format!("{what}: {e}")))?;
    let stored = parse_stored(&text).map_err(|e| {
        KeyError::Unavailable(format!(
            "{what} is not a key set {{active, next, retired}}: {e}"
        ))
    })?;
    let set = stored.into_key_set(&what).map_err(|e| match e {
        KeyError::BadKey { .. } | KeyError::DuplicateKid { .. } => e,
        other => KeyError::Unavailable(format!("{what}: {other}")),
    })?;
    Ok(set)
}

/// Parse a stored key set; the error names the field and the problem with any
/// quoted value left out (serde quotes the string it rejects, which may be a key).
/// Public for the fuzzer (tests/fuzz), which checks that no error quotes input.
pub fn parse_stored(text: &str) -> Result<StoredKeySet, String> {
    // Syntax errors name a line and column, never content.
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = without_quoted(&e.into_inner().to_string());
        if path == "." || path.is_empty() {
            message
        } else {
            format!("`{path}`: {message}")
        }
    })
}

/// `text` with the contents of every double-quoted string replaced by `…`.
fn without_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '"' {
            out.push('…');
            let mut escaped = false;
            for c in chars.by_ref() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '"' if !escaped => break,
                    _ => escaped = false,
                }
            }
            out.push('"');
        }
    }
    out
}

impl KeySource for StoredSecretKeySource {
    fn key_set(&self) -> KeyFuture<'_> {
        Box::pin(self.current())
    }

    fn describe(&self) -> String {
        format!("secret {}", self.secret_id)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex as StdMutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::time::Instant;

    use super::*;
    use crate::keys::{StoredKey, generate_pkcs8_pem};
    use crate::secrets::SecretFuture;

    /// A secret store in memory that can be switched off or slowed down
    /// (on tokio's clock: the time-dependent tests run on a paused one, where
    /// a sleep ends when the runtime has nothing else to do, at once).
    #[derive(Default)]
    struct MemoryStore {
        values: StdMutex<HashMap<String, String>>,
        down: StdMutex<bool>,
        delay: StdMutex<Duration>,
        calls: AtomicUsize,
    }

    impl SecretStore for MemoryStore {
        fn get_secret_string<'a>(&'a self, id: &'a str) -> SecretFuture<'a> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let delay = *self.delay.lock().unwrap();
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                if *self.down.lock().unwrap() {
                    return Err("connection refused".to_string());
                }
                self.values
                    .lock()
                    .unwrap()
                    .get(id)
                    .cloned()
                    .ok_or_else(|| format!("secret `{id}` not found"))
            })
        }
    }

    fn key() -> StoredKey {
        StoredKey {
            kid: None,
            alg: "ES256".into(),
            private_key_pem: generate_pkcs8_pem(jsonwebtoken::Algorithm::ES256).unwrap(),
        }
    }

    fn put(store: &MemoryStore, set: &StoredKeySet) {
        store
            .values
            .lock()
            .unwrap()
            .insert("keys".into(), serde_json::to_string(set).unwrap());
    }

    #[tokio::test]
    async fn rotation_publishes_next_then_promotes_it() {
        let store = Arc::new(MemoryStore::default());
        let (a, b) = (key(), key());
        put(
            &store,
            &StoredKeySet {
                active: a.clone(),
                next: None,
                retired: vec![],
            },
        );
        let source = StoredSecretKeySource::open(
            store.clone(),
            "keys",
            Duration::ZERO,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        let first = source.key_set().await.unwrap();
        assert_eq!(first.jwks().keys.len(), 1);

        put(
            &store,
            &StoredKeySet {
                active: a.clone(),
                next: Some(b.clone()),
                retired: vec![],
            },
        );
        let staged = source.key_set().await.unwrap();
        assert_eq!(
            staged.active.kid, first.active.kid,
            "next does not sign yet"
        );
        assert_eq!(staged.jwks().keys.len(), 2, "but it is published");

        put(
            &store,
            &StoredKeySet {
                active: b,
                next: None,
                retired: vec![a],
            },
        );
        let promoted = source.key_set().await.unwrap();
        assert_eq!(promoted.active.kid, staged.next.as_ref().unwrap().kid);
        assert_eq!(promoted.retired.len(), 1);
        let published: Vec<_> = promoted
            .jwks()
            .keys
            .iter()
            .filter_map(|k| k.common.key_id.clone())
            .collect();
        assert!(
            published.contains(&first.active.kid),
            "retired keys stay published so their tokens verify until they expire"
        );
        assert_ne!(promoted.active.kid, first.active.kid, "but they never sign");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_store_serves_the_cache_until_max_stale() {
        let store = Arc::new(MemoryStore::default());
        put(
            &store,
            &StoredKeySet {
                active: key(),
                next: None,
                retired: vec![],
            },
        );
        let source = StoredSecretKeySource::open(
            store.clone(),
            "keys",
            Duration::ZERO,
            Duration::from_millis(300),
        )
        .await
        .unwrap();
        *store.down.lock().unwrap() = true;
        assert!(source.key_set().await.is_ok(), "within max_stale");
        tokio::time::advance(Duration::from_millis(400)).await;
        let err = source.key_set().await.unwrap_err().to_string();
        assert!(
            err.contains("maximum staleness") && err.contains("connection refused"),
            "{err}"
        );
        *store.down.lock().unwrap() = false;
        assert!(
            source.key_set().await.is_ok(),
            "recovers when the store is back"
        );
    }

    #[tokio::test]
    async fn a_missing_or_malformed_secret_fails_at_open_naming_it() {
        let store = Arc::new(MemoryStore::default());
        let err = StoredSecretKeySource::open(
            store.clone(),
            "keys",
            DEFAULT_CACHE_TTL,
            DEFAULT_MAX_STALE,
        )
        .await
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("`keys`"), "{err}");
        store.values.lock().unwrap().insert(
            "keys".into(),
            r#"{"active": {"private_key_pem": "nope"}}"#.into(),
        );
        let err = StoredSecretKeySource::open(store, "keys", DEFAULT_CACHE_TTL, DEFAULT_MAX_STALE)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("active") && err.contains("PKCS#8"), "{err}");
    }

    #[tokio::test]
    async fn errors_never_quote_key_material() {
        let store = Arc::new(MemoryStore::default());
        let pem = generate_pkcs8_pem(jsonwebtoken::Algorithm::ES256).unwrap();
        let body = pem.lines().nth(1).unwrap().to_string();
        for text in [
            serde_json::json!({"active": pem}).to_string(),
            serde_json::json!({"active": {"private_key_pem": pem, "alg": "HS256"}}).to_string(),
            serde_json::json!({"active": {"private_key_pem": pem}, "extra": pem}).to_string(),
            serde_json::json!([pem]).to_string(),
            pem.clone(),
        ] {
            store.values.lock().unwrap().insert("keys".into(), text);
            let err = StoredSecretKeySource::open(
                store.clone(),
                "keys",
                DEFAULT_CACHE_TTL,
                DEFAULT_MAX_STALE,
            )
            .await
            .err()
            .unwrap()
            .to_string();
            assert!(err.contains("`keys`"), "{err}");
            assert!(!err.contains(&body) && !err.contains("BEGIN"), "{err}");
        }
        store.values.lock().unwrap().insert(
            "keys".into(),
            serde_json::json!({"active": pem}).to_string(),
        );
        let err = StoredSecretKeySource::open(store, "keys", DEFAULT_CACHE_TTL, DEFAULT_MAX_STALE)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("`active`") && err.contains("invalid type"),
            "{err}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_refresh_does_not_hold_up_requests() {
        let store = Arc::new(MemoryStore::default());
        put(
            &store,
            &StoredKeySet {
                active: key(),
                next: None,
                retired: vec![],
            },
        );
        let source = StoredSecretKeySource::open(
            store.clone(),
            "keys",
            Duration::ZERO,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        let old = source.key_set().await.unwrap().active.kid.clone();
        *store.delay.lock().unwrap() = Duration::from_millis(1000);
        let rotated = key();
        put(
            &store,
            &StoredKeySet {
                active: rotated.clone(),
                next: None,
                retired: vec![],
            },
        );
        let started = Instant::now();
        for _ in 0..10 {
            assert_eq!(source.key_set().await.unwrap().active.kid, old);
        }
        // On the paused clock only timers move time: exactly one wait.
        assert_eq!(
            started.elapsed(),
            REFRESH_WAIT,
            "the first request waits REFRESH_WAIT, the others not at all"
        );
        assert_eq!(
            store.calls.load(Ordering::SeqCst),
            3,
            "open, refresh, one refresh under way"
        );
        // The store answers 1 s after the refresh began: wait past that (on
        // the paused clock the background task runs before time moves on).
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_ne!(
            source.cache.last_value().active.kid,
            old,
            "the refresh finished in the background"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_costs_one_store_call_per_retry_interval() {
        let store = Arc::new(MemoryStore::default());
        put(
            &store,
            &StoredKeySet {
                active: key(),
                next: None,
                retired: vec![],
            },
        );
        let ttl = Duration::from_millis(200);
        let source =
            StoredSecretKeySource::open(store.clone(), "keys", ttl, Duration::from_secs(60))
                .await
                .unwrap();
        *store.down.lock().unwrap() = true;
        tokio::time::sleep(ttl).await;
        for _ in 0..20 {
            source.key_set().await.unwrap();
        }
        assert_eq!(store.calls.load(Ordering::SeqCst), 2, "one failed refresh");
        tokio::time::sleep(retry_interval(ttl)).await;
        source.key_set().await.unwrap();
        assert_eq!(
            store.calls.load(Ordering::SeqCst),
            3,
            "retried after the interval"
        );
        *store.down.lock().unwrap() = false;
        tokio::time::sleep(retry_interval(ttl)).await;
        source.key_set().await.unwrap();
        assert!(source.cache.last_error().is_none(), "recovered");
    }
}
