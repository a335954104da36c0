//! A key set kept as JSON in a secret store (AWS Secrets Manager): fetched,
//! parsed and cached; refreshed after a TTL; when a refresh fails the cached
//! set keeps serving up to a maximum staleness, then signing fails clearly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::{KeyError, KeyFuture, KeySet, KeySource, StoredKeySet};
use crate::secrets::SecretStore;

/// Default time a fetched key set is used before it is fetched again.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);
/// Default time a cached key set may keep serving while refreshes fail.
pub const DEFAULT_MAX_STALE: Duration = Duration::from_secs(3600);

pub struct StoredSecretKeySource {
    store: Arc<dyn SecretStore>,
    secret_id: String,
    ttl: Duration,
    max_stale: Duration,
    cache: Mutex<Option<Cached>>,
}

struct Cached {
    set: Arc<KeySet>,
    fetched: Instant,
}

impl StoredSecretKeySource {
    /// Fetch the key set once; a failure here is a start-up error.
    pub async fn open(
        store: Arc<dyn SecretStore>,
        secret_id: &str,
        ttl: Duration,
        max_stale: Duration,
    ) -> Result<Self, KeyError> {
        let source = StoredSecretKeySource {
            store,
            secret_id: secret_id.to_string(),
            ttl,
            max_stale: max_stale.max(ttl),
            cache: Mutex::new(None),
        };
        let set = source.fetch().await?;
        *source.cache.lock().await = Some(Cached {
            set,
            fetched: Instant::now(),
        });
        Ok(source)
    }

    async fn fetch(&self) -> Result<Arc<KeySet>, KeyError> {
        let what = format!("key set secret `{}`", self.secret_id);
        let text = self
            .store
            .get_secret_string(&self.secret_id)
            .await
            .map_err(|e| KeyError::Unavailable(format!("{what}: {e}")))?;
        let stored: StoredKeySet = serde_json::from_str(&text).map_err(|e| {
            // serde's message names the field; it never quotes key material.
            KeyError::Unavailable(format!(
                "{what} is not a key set {{active, next, retired}}: {e}"
            ))
        })?;
        Ok(Arc::new(stored.into_key_set(&what)?))
    }

    async fn current(&self) -> Result<Arc<KeySet>, KeyError> {
        // One refresh at a time: concurrent requests wait for it (single flight).
        let mut cache = self.cache.lock().await;
        let Some(cached) = cache.as_ref() else {
            unreachable!("opened with a key set")
        };
        let age = cached.fetched.elapsed();
        if age < self.ttl {
            return Ok(cached.set.clone());
        }
        match self.fetch().await {
            Ok(set) => {
                if set.active.kid != cached.set.active.kid {
                    tracing::info!(secret_id = %self.secret_id, kid = %set.active.kid, "signing key rotated");
                }
                *cache = Some(Cached {
                    set: set.clone(),
                    fetched: Instant::now(),
                });
                Ok(set)
            }
            Err(err) if age < self.max_stale => {
                tracing::warn!(
                    secret_id = %self.secret_id, error = %err, age_s = age.as_secs(),
                    max_stale_s = self.max_stale.as_secs(),
                    "key set refresh failed; serving the cached key set"
                );
                Ok(cached.set.clone())
            }
            Err(err) => {
                tracing::error!(
                    secret_id = %self.secret_id, error = %err, age_s = age.as_secs(),
                    "key set refresh failed and the cached key set is too old to serve"
                );
                Err(KeyError::Unavailable(format!(
                    "cached key set is {}s old, beyond the maximum staleness of {}s, and refreshing failed: {err}",
                    age.as_secs(),
                    self.max_stale.as_secs()
                )))
            }
        }
    }
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

    use super::*;
    use crate::keys::{StoredKey, generate_pkcs8_pem};
    use crate::secrets::SecretFuture;

    /// A secret store in memory that can be switched off.
    #[derive(Default)]
    struct MemoryStore {
        values: StdMutex<HashMap<String, String>>,
        down: StdMutex<bool>,
    }

    impl SecretStore for MemoryStore {
        fn get_secret_string<'a>(&'a self, id: &'a str) -> SecretFuture<'a> {
            let result = if *self.down.lock().unwrap() {
                Err("connection refused".to_string())
            } else {
                self.values
                    .lock()
                    .unwrap()
                    .get(id)
                    .cloned()
                    .ok_or_else(|| format!("secret `{id}` not found"))
            };
            Box::pin(async move { result })
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
        assert_eq!(promoted.retired, vec![first.active.kid.clone()]);
        let published: Vec<_> = promoted
            .jwks()
            .keys
            .iter()
            .filter_map(|k| k.common.key_id.clone())
            .collect();
        assert!(
            !published.contains(&first.active.kid),
            "retired keys are not published"
        );
    }

    #[tokio::test]
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
        tokio::time::sleep(Duration::from_millis(400)).await;
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
}
