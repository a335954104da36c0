//! A value read from a secret store and cached: the one refresh policy for the
//! signing key set and for hook secrets.
//!
//! - **Refresh in the background, one at a time.** Once the value is older
//!   than its TTL, the next read starts a refresh as a task of its own (single
//!   flight: a read while one is under way starts none) and returns the cached
//!   value. A caller may choose to wait up to a bound for that refresh
//!   ([`Waits::first`]); hook secrets wait for nothing, so a slow or
//!   unreachable store never holds up a request.
//! - **Bounded staleness.** When refreshes fail, the cached value keeps
//!   serving until it is `max_stale` old (counted from the last successful
//!   read); after that reads fail closed with an error naming the cause, until
//!   a refresh succeeds. So a value deleted or replaced in the store is used for
//!   at most `max_stale`, even if the store stays unreachable.
//! - **Failures are retried at a bounded rate**: after a failed refresh the
//!   next comes [`retry_interval`] later (at most the TTL), so an outage costs
//!   one store call per interval, not one per request.
//!
//! Times use tokio's clock, so tests can run on a paused one.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::time::Instant;

/// Longest wait between refresh attempts after a failure.
pub const MAX_RETRY_INTERVAL: Duration = Duration::from_secs(10);

/// Time between refresh attempts after a failed one.
pub fn retry_interval(ttl: Duration) -> Duration {
    ttl.min(MAX_RETRY_INTERVAL)
}

/// Reads the value again, given the one in use (to log what changed or to
/// remember what it replaced). Errors are safe to log: never secret values.
pub type Fetch<T> = Arc<
    dyn Fn(Option<Arc<T>>) -> Pin<Box<dyn Future<Output = Result<T, String>> + Send>> + Send + Sync,
>;

/// How long a read waits for a refresh.
#[derive(Clone, Copy, Debug)]
pub struct Waits {
    /// The read that starts a refresh waits this long for it before it uses
    /// the cached value. Zero: not at all.
    pub first: Duration,
    /// When the cached value is too old to serve, wait for the refresh under
    /// way (and fail if it fails) instead of failing at once.
    pub when_too_old: bool,
}

impl Waits {
    /// Never wait: the request path only ever reads the cache.
    pub const NEVER: Waits = Waits {
        first: Duration::ZERO,
        when_too_old: false,
    };
}

/// What a cache logs when a refresh fails (messages are what log queries
/// match, so each kind of cached value keeps its own).
#[derive(Clone, Copy, Debug)]
pub struct Messages {
    /// Warning: the refresh failed, the cached value still serves.
    pub serving_stale: &'static str,
    /// Error: the refresh failed and the cached value is too old to serve.
    pub too_old: &'static str,
}

/// The cached value was too old to use.
#[derive(Clone, Debug, thiserror::Error)]
#[error(
    "the cached {what} is {age_s}s old, beyond the maximum staleness of {max_stale_s}s, and refreshing it failed: {cause}"
)]
pub struct TooOld {
    pub what: String,
    pub age_s: u64,
    pub max_stale_s: u64,
    pub cause: String,
}

pub struct Cached<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Cached<T> {
    fn clone(&self) -> Self {
        Cached {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<T> {
    /// What is cached, for logs and errors (e.g. "key set from secret `k`").
    what: String,
    messages: Messages,
    ttl: Duration,
    max_stale: Duration,
    fetch: Fetch<T>,
    state: RwLock<State<T>>,
    /// Held by the one refresh under way.
    refresh: Arc<tokio::sync::Mutex<()>>,
}

struct State<T> {
    value: Arc<T>,
    /// When `value` was read.
    fetched: Instant,
    /// No refresh before this instant (TTL after a success, retry interval after a failure).
    next_attempt: Instant,
    /// Why the last refresh failed, if it did.
    last_error: Option<String>,
}

impl<T> Clone for State<T> {
    fn clone(&self) -> Self {
        State {
            value: self.value.clone(),
            fetched: self.fetched,
            next_attempt: self.next_attempt,
            last_error: self.last_error.clone(),
        }
    }
}

impl<T: Send + Sync + 'static> Cached<T> {
    /// Read the value once (a failure here is a load error) and cache it.
    /// `max_stale` is raised to `ttl` if lower.
    pub async fn open(
        what: impl Into<String>,
        messages: Messages,
        ttl: Duration,
        max_stale: Duration,
        fetch: Fetch<T>,
    ) -> Result<Self, String> {
        let value = Arc::new(fetch(None).await?);
        Ok(Cached::with_value(
            what, messages, ttl, max_stale, fetch, value,
        ))
    }

    /// Cache `value`, just read, without reading it again.
    pub fn with_value(
        what: impl Into<String>,
        messages: Messages,
        ttl: Duration,
        max_stale: Duration,
        fetch: Fetch<T>,
        value: Arc<T>,
    ) -> Self {
        let now = Instant::now();
        Cached {
            inner: Arc::new(Inner {
                what: what.into(),
                messages,
                ttl,
                max_stale: max_stale.max(ttl),
                fetch,
                state: RwLock::new(State {
                    value,
                    fetched: now,
                    next_attempt: now + ttl,
                    last_error: None,
                }),
                refresh: Arc::new(tokio::sync::Mutex::new(())),
            }),
        }
    }

    /// The cached value if it may still serve, without waiting for anything:
    /// a due refresh is started in the background (on the current tokio
    /// runtime; outside one, none is started).
    pub fn get_now(&self) -> Result<Arc<T>, TooOld> {
        let inner = &self.inner;
        let state = inner.snapshot();
        if Instant::now() >= state.next_attempt
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
            && let Ok(guard) = inner.refresh.clone().try_lock_owned()
        {
            runtime.spawn(inner.clone().refresh(guard));
        }
        inner.serve(&state)
    }

    /// The value to use now: the cached one while it may serve, starting a
    /// refresh in the background when one is due, waiting for it as `waits`
    /// says. Needs a tokio runtime.
    pub async fn get(&self, waits: Waits) -> Result<Arc<T>, TooOld> {
        if waits.first.is_zero() && !waits.when_too_old {
            return self.get_now();
        }
        let inner = &self.inner;
        let state = inner.snapshot();
        if Instant::now() < state.next_attempt {
            return inner.serve(&state);
        }
        match inner.refresh.clone().try_lock_owned() {
            Ok(guard) => {
                let mut task = tokio::spawn(inner.clone().refresh(guard));
                let joined = match tokio::time::timeout(waits.first, &mut task).await {
                    Ok(joined) => joined,
                    Err(_) => match inner.serve(&state) {
                        Ok(value) => return Ok(value),
                        Err(too_old) if !waits.when_too_old => return Err(too_old),
                        Err(_) => task.await,
                    },
                };
                joined.unwrap_or_else(|e| {
                    Err(inner.too_old(&state, format!("the refresh task failed: {e}")))
                })
            }
            // A refresh is under way: use the cached value, or wait for the refresh.
            Err(_) => match inner.serve(&state) {
                Err(_) if waits.when_too_old => {
                    let _done = inner.refresh.lock().await;
                    inner.serve(&inner.snapshot())
                }
                served => served,
            },
        }
    }

    /// The value in the cache, however old: for redacting what it held.
    pub fn last_value(&self) -> Arc<T> {
        self.inner.snapshot().value
    }

    /// Why the last refresh failed, if it did.
    pub fn last_error(&self) -> Option<String> {
        self.inner.snapshot().last_error
    }
}

impl<T: Send + Sync + 'static> Inner<T> {
    fn snapshot(&self) -> State<T> {
        self.state.read().expect("cache lock").clone()
    }

    /// The cached value if it is not too old to serve.
    fn serve(&self, state: &State<T>) -> Result<Arc<T>, TooOld> {
        if state.fetched.elapsed() < self.max_stale {
            return Ok(state.value.clone());
        }
        let cause = state
            .last_error
            .clone()
            .unwrap_or_else(|| "no refresh has finished yet".to_string());
        Err(self.too_old(state, cause))
    }

    fn too_old(&self, state: &State<T>, cause: String) -> TooOld {
        TooOld {
            what: self.what.clone(),
            age_s: state.fetched.elapsed().as_secs(),
            max_stale_s: self.max_stale.as_secs(),
            cause,
        }
    }

    /// Read the value again and cache the outcome; `_guard` makes this the only refresh.
    async fn refresh(
        self: Arc<Self>,
        _guard: tokio::sync::OwnedMutexGuard<()>,
    ) -> Result<Arc<T>, TooOld> {
        let state = self.snapshot();
        if Instant::now() < state.next_attempt {
            // Another refresh finished just before this one took the lock.
            return self.serve(&state);
        }
        match (self.fetch)(Some(state.value.clone())).await {
            Ok(value) => {
                let value = Arc::new(value);
                let now = Instant::now();
                *self.state.write().expect("cache lock") = State {
                    value: value.clone(),
                    fetched: now,
                    next_attempt: now + self.ttl,
                    last_error: None,
                };
                Ok(value)
            }
            Err(cause) => {
                let failed = State {
                    next_attempt: Instant::now() + retry_interval(self.ttl),
                    last_error: Some(cause.clone()),
                    ..state
                };
                let age_s = failed.fetched.elapsed().as_secs();
                let result = self.serve(&failed);
                *self.state.write().expect("cache lock") = failed;
                let (what, max_stale_s) = (&self.what, self.max_stale.as_secs());
                match &result {
                    Ok(_) => tracing::warn!(
                        what = %what, error = %cause, age_s, max_stale_s,
                        "{}", self.messages.serving_stale
                    ),
                    Err(_) => tracing::error!(
                        what = %what, error = %cause, age_s, max_stale_s,
                        "{}", self.messages.too_old
                    ),
                }
                result
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A store answering from a shared slot: a value, or an error.
    struct Slot {
        answer: Mutex<Result<u32, String>>,
        calls: AtomicUsize,
    }

    impl Slot {
        fn new(value: u32) -> Arc<Slot> {
            Arc::new(Slot {
                answer: Mutex::new(Ok(value)),
                calls: AtomicUsize::new(0),
            })
        }
    }

    fn fetch(slot: &Arc<Slot>) -> Fetch<u32> {
        let slot = slot.clone();
        Arc::new(move |_| {
            let slot = slot.clone();
            Box::pin(async move {
                slot.calls.fetch_add(1, Ordering::SeqCst);
                slot.answer.lock().unwrap().clone()
            })
        })
    }

    const TEST: Messages = Messages {
        serving_stale: "stale",
        too_old: "too old",
    };

    /// Let the spawned refresh run (the clock is paused: no time passes).
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn refreshes_in_the_background_and_fails_closed_after_max_stale() {
        let slot = Slot::new(1);
        let ttl = Duration::from_secs(60);
        let cached = Cached::open("n", TEST, ttl, Duration::from_secs(600), fetch(&slot))
            .await
            .unwrap();
        *slot.answer.lock().unwrap() = Ok(2);
        assert_eq!(*cached.get_now().unwrap(), 1, "fresh: cached");
        tokio::time::advance(ttl).await;
        assert_eq!(
            *cached.get_now().unwrap(),
            1,
            "due: the cached value, the refresh runs in the background"
        );
        settle().await;
        assert_eq!(*cached.get_now().unwrap(), 2, "refreshed");
        assert_eq!(slot.calls.load(Ordering::SeqCst), 2);

        // The value is deleted and the store keeps failing.
        *slot.answer.lock().unwrap() = Err("ResourceNotFoundException".into());
        tokio::time::advance(ttl).await;
        for _ in 0..5 {
            assert_eq!(*cached.get_now().unwrap(), 2);
        }
        settle().await;
        assert_eq!(slot.calls.load(Ordering::SeqCst), 3, "single flight");
        assert!(cached.last_error().unwrap().contains("NotFound"));
        tokio::time::advance(Duration::from_secs(540)).await;
        let err = cached.get_now().unwrap_err();
        assert!(
            err.to_string().contains("maximum staleness of 600s")
                && err.to_string().contains("NotFound"),
            "{err}"
        );
        assert_eq!(*cached.last_value(), 2, "still known, for redaction");

        *slot.answer.lock().unwrap() = Ok(3);
        tokio::time::advance(retry_interval(ttl)).await;
        let _ = cached.get_now();
        settle().await;
        assert_eq!(*cached.get_now().unwrap(), 3, "recovered");
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_when_too_old_gets_the_refresh_outcome() {
        let slot = Slot::new(1);
        let ttl = Duration::from_secs(1);
        let cached = Cached::open("n", TEST, ttl, ttl, fetch(&slot))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(5)).await;
        *slot.answer.lock().unwrap() = Ok(7);
        let waits = Waits {
            first: Duration::from_millis(250),
            when_too_old: true,
        };
        assert_eq!(*cached.get(waits).await.unwrap(), 7);
        *slot.answer.lock().unwrap() = Err("down".into());
        tokio::time::advance(Duration::from_secs(5)).await;
        let err = cached.get(waits).await.unwrap_err();
        assert!(err.cause.contains("down"), "{err}");
    }
}
