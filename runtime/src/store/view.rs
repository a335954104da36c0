//! What the token path reads of the store: an in-memory view, kept current
//! by one background poll of the feed, so no token waits on a store round trip.
//!
//! - Revocations (the `jti` deny list and the client cut-offs) are all held in
//!   memory, loaded whole at start and then polled every `poll_interval`:
//!   a revocation made anywhere reaches this instance within one interval
//!   plus one store read.
//! - Registry clients are read on first use and cached for `client_cache_ttl`;
//!   a "client changed" notice in the feed drops the cached copy at the next
//!   poll, so a rotated secret or a new grant takes effect as fast as a
//!   revocation. A copy past its TTL is still used while one refresh (single
//!   flight) runs in the background.
//! - When the store cannot be read, everything cached keeps serving for
//!   `max_stale` after the last successful poll; after that the view fails
//!   closed, and the issuer answers `503 temporarily_unavailable` — the same
//!   rule as the key set.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use serde::Serialize;
// tokio's clock, so that tests can run the poll, the TTLs and `max_stale`
// on a paused clock; outside tests it is `std::time::Instant`.
use tokio::time::Instant;

use super::{Change, ClientEntry, FeedEntry, Store, StoreError, now_ms, now_secs};
use crate::clients::KnownClient;

/// Every poll reads the feed from this long before the previous poll began
/// (by this machine's clock), so that an entry written by a machine whose
/// clock lags ours by up to this much (or committed that long after it was
/// stamped) is not missed. Entries already applied are skipped by id.
pub const POLL_OVERLAP_MS: u64 = 10_000;
/// How long a request waits for a catch-up read of the feed (see
/// [`StoreView::catch_up`]) before it answers from what is cached.
pub const CATCH_UP_WAIT: Duration = Duration::from_secs(1);
/// Most clients (known and unknown ids) cached at once; past it, entries
/// older than their TTL are dropped first, then all.
pub const MAX_CACHED_CLIENTS: usize = 100_000;

/// How the view keeps current. Defaults suit a fleet of short-lived
/// instances: revocations everywhere within about a second, a store outage
/// survived for minutes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViewSettings {
    /// How often the feed is polled. Default 500 ms: a revocation reaches
    /// every instance within about this long (plus one store read). Shorter
    /// costs one more store query per instance per interval.
    pub poll_interval: Duration,
    /// How long a registry client read from the store is used before it is
    /// read again. Default 30 s; changes made with the CLI arrive sooner, by
    /// the feed.
    pub client_cache_ttl: Duration,
    /// How long the view keeps serving after the store became unreadable.
    /// Default 5 min; then token requests fail with 503 rather than ignore
    /// revocations they cannot see.
    pub max_stale: Duration,
}

impl Default for ViewSettings {
    fn default() -> Self {
        ViewSettings {
            poll_interval: Duration::from_millis(500),
            client_cache_ttl: Duration::from_secs(30),
            max_stale: Duration::from_secs(300),
        }
    }
}

/// A revoked token, as the revocation feed publishes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RevokedToken {
    pub jti: String,
    pub client_id: String,
    /// The token's `exp`: after it, the entry disappears.
    pub exp: u64,
    #[serde(skip)]
    pub at_ms: u64,
}

/// A client cut-off, as the revocation feed publishes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cutoff {
    pub client_id: String,
    /// The API it applies to; `None`: every API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// Tokens issued at or before this Unix time are revoked.
    pub issued_before: u64,
    /// New token requests are refused (until the client is restored).
    pub refused: bool,
    #[serde(skip)]
    pub at_ms: u64,
}

#[derive(Default)]
struct Revocations {
    tokens: HashMap<String, RevokedToken>,
    /// Cut-offs by client id, so that the token path looks them up with the
    /// request's `&str` and builds no key per request.
    cutoffs: HashMap<String, ClientCutoffs>,
    /// Ids of entries applied that a poll may read again (`at_ms` ≥ `cursor_ms`).
    seen: HashMap<String, u64>,
    /// Where the next poll reads from (Unix ms): [`POLL_OVERLAP_MS`] before
    /// the last successful read began, by this machine's clock; never moves
    /// back. Anchored to our clock rather than to the newest entry, so a
    /// quiet feed is not re-read from 10 s before its last entry forever,
    /// and a writer whose clock runs ahead cannot push it past entries a
    /// lagging writer adds.
    cursor_ms: u64,
}

/// One client's cut-offs: for every API, and per API.
#[derive(Default)]
struct ClientCutoffs {
    all: Option<Cutoff>,
    apis: HashMap<String, Cutoff>,
}

impl ClientCutoffs {
    /// The cut-offs that apply to a token or request for `api`.
    fn applying_to<'a>(&'a self, api: &str) -> impl Iterator<Item = &'a Cutoff> {
        self.all.iter().chain(self.apis.get(api))
    }

    fn get_mut(&mut self, api: Option<&str>) -> Option<&mut Cutoff> {
        match api {
            None => self.all.as_mut(),
            Some(api) => self.apis.get_mut(api),
        }
    }

    fn put(&mut self, cutoff: Cutoff) {
        match &cutoff.api {
            None => self.all = Some(cutoff),
            Some(api) => {
                self.apis.insert(api.clone(), cutoff);
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Cutoff> {
        self.all.iter().chain(self.apis.values())
    }
}

struct Cached {
    client: Option<Arc<KnownClient>>,
    fetched: Instant,
}

struct Inner {
    store: Arc<dyn Store>,
    settings: ViewSettings,
    revocations: RwLock<Revocations>,
    /// When the feed was last read successfully.
    last_poll: RwLock<Instant>,
    clients: RwLock<HashMap<String, Cached>>,
    /// Client ids with a refresh under way.
    refreshing: Mutex<HashSet<String>>,
    /// Held by the one catch-up read under way; when the last one started.
    catch_up: tokio::sync::Mutex<Instant>,
}

/// The store as the token path sees it. Cheap to clone.
#[derive(Clone)]
pub struct StoreView {
    inner: Arc<Inner>,
}

impl StoreView {
    /// Load every live feed entry, then poll in the background for as long as
    /// the view is alive. A store that cannot be read now is a start-up error.
    pub async fn open(store: Arc<dyn Store>, settings: ViewSettings) -> Result<Self, StoreError> {
        let started_ms = now_ms();
        let entries = store.feed_since(0, now_secs()).await?;
        let inner = Arc::new(Inner {
            store,
            settings,
            revocations: RwLock::new(Revocations::default()),
            last_poll: RwLock::new(Instant::now()),
            clients: RwLock::new(HashMap::new()),
            refreshing: Mutex::new(HashSet::new()),
            catch_up: tokio::sync::Mutex::new(Instant::now()),
        });
        inner.apply(entries, Some(started_ms));
        tokio::spawn(poll(Arc::downgrade(&inner)));
        Ok(StoreView { inner })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub fn settings(&self) -> ViewSettings {
        self.inner.settings
    }

    /// Read the feed now if the background poll has fallen behind, before
    /// answering from memory. A running server never gets here (its poll
    /// keeps up); a Lambda environment does after a freeze between
    /// invocations, when no background task ran: its first request reads the
    /// feed (one read for all requests waiting, at most one attempt per poll
    /// interval, at most [`CATCH_UP_WAIT`]), so it never answers from a deny
    /// list as old as the freeze.
    pub async fn catch_up(&self) {
        let inner = &self.inner;
        let behind = || {
            inner.last_poll.read().expect("poll lock").elapsed() > inner.settings.poll_interval * 2
        };
        if !behind() {
            return;
        }
        let mut last_attempt = inner.catch_up.lock().await;
        if !behind() || last_attempt.elapsed() < inner.settings.poll_interval {
            return;
        }
        *last_attempt = Instant::now();
        match tokio::time::timeout(CATCH_UP_WAIT, inner.poll_once()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(store = %inner.store.describe(), %error, "catch-up read of the store failed; answering from what is cached");
            }
            Err(_) => {
                tracing::warn!(store = %inner.store.describe(), wait_ms = CATCH_UP_WAIT.as_millis() as u64, "catch-up read of the store is slow; answering from what is cached");
            }
        }
    }

    /// Fails once the last successful poll is older than `max_stale`.
    pub fn check_fresh(&self) -> Result<(), StoreError> {
        let age = self.inner.last_poll.read().expect("poll lock").elapsed();
        if age <= self.inner.settings.max_stale {
            return Ok(());
        }
        Err(StoreError::Unavailable(format!(
            "{} has not been readable for {}s (max_stale {}s)",
            self.inner.store.describe(),
            age.as_secs(),
            self.inner.settings.max_stale.as_secs()
        )))
    }

    /// Whether new tokens for `client_id` on `api` are refused by a cut-off.
    pub async fn refuses(&self, client_id: &str, api: &str) -> Result<bool, StoreError> {
        self.catch_up().await;
        self.check_fresh()?;
        let rev = self.inner.revocations.read().expect("revocations lock");
        Ok(rev
            .cutoffs
            .get(client_id)
            .is_some_and(|c| c.applying_to(api).any(|c| c.refused)))
    }

    /// Whether the token `jti` of `client_id` for `api`, issued at `iat`, is revoked.
    pub async fn is_revoked(
        &self,
        jti: &str,
        client_id: &str,
        api: &str,
        iat: u64,
    ) -> Result<bool, StoreError> {
        self.catch_up().await;
        self.check_fresh()?;
        let rev = self.inner.revocations.read().expect("revocations lock");
        if rev.tokens.contains_key(jti) {
            return Ok(true);
        }
        Ok(rev
            .cutoffs
            .get(client_id)
            .is_some_and(|c| c.applying_to(api).any(|c| iat <= c.issued_before)))
    }

    /// Record a change in the store, and in this view at once.
    pub async fn publish(&self, change: Change) -> Result<(), StoreError> {
        let entry = FeedEntry::new(change);
        self.inner.store.append(&entry).await?;
        self.inner.apply(vec![entry], None);
        Ok(())
    }

    /// Revocations written at or after `since_ms` (all live ones for 0),
    /// and the cursor to ask with next time.
    pub async fn revocations_since(
        &self,
        since_ms: u64,
    ) -> Result<(Vec<RevokedToken>, Vec<Cutoff>), StoreError> {
        self.catch_up().await;
        self.check_fresh()?;
        let now = now_secs();
        let rev = self.inner.revocations.read().expect("revocations lock");
        let mut tokens: Vec<RevokedToken> = rev
            .tokens
            .values()
            .filter(|t| t.at_ms >= since_ms && t.exp > now)
            .cloned()
            .collect();
        tokens.sort_by(|a, b| (a.at_ms, &a.jti).cmp(&(b.at_ms, &b.jti)));
        let mut cutoffs: Vec<Cutoff> = rev
            .cutoffs
            .values()
            .flat_map(ClientCutoffs::iter)
            .filter(|c| c.at_ms >= since_ms)
            .cloned()
            .collect();
        cutoffs.sort_by(|a, b| (a.at_ms, &a.client_id).cmp(&(b.at_ms, &b.client_id)));
        Ok((tokens, cutoffs))
    }

    /// A registry client by id: from the cache while fresh; past its TTL the
    /// cached copy serves while one background refresh runs; unknown or past
    /// `max_stale`, read now.
    pub async fn client(&self, id: &str) -> Result<Option<Arc<KnownClient>>, StoreError> {
        self.catch_up().await;
        let settings = self.inner.settings;
        let cached = {
            let clients = self.inner.clients.read().expect("clients lock");
            clients
                .get(id)
                .map(|c| (c.client.clone(), c.fetched.elapsed()))
        };
        match cached {
            Some((client, age)) if age < settings.client_cache_ttl => Ok(client),
            Some((client, age)) if age < settings.max_stale => {
                self.refresh_in_background(id);
                Ok(client)
            }
            _ => self.inner.fetch_client(id).await,
        }
    }

    fn refresh_in_background(&self, id: &str) {
        if !self
            .inner
            .refreshing
            .lock()
            .expect("refresh lock")
            .insert(id.to_string())
        {
            return;
        }
        let (inner, id) = (self.inner.clone(), id.to_string());
        tokio::spawn(async move {
            if let Err(error) = inner.fetch_client(&id).await {
                tracing::warn!(client_id = %id, %error, "client refresh failed; the cached copy stays in use");
            }
            inner.refreshing.lock().expect("refresh lock").remove(&id);
        });
    }
}

impl Inner {
    async fn fetch_client(&self, id: &str) -> Result<Option<Arc<KnownClient>>, StoreError> {
        let entry = self.store.client(id).await?;
        let client = entry.and_then(|entry| known_client(entry, &self.store.describe()));
        let mut clients = self.clients.write().expect("clients lock");
        if clients.len() >= MAX_CACHED_CLIENTS {
            let ttl = self.settings.client_cache_ttl;
            clients.retain(|_, c| c.fetched.elapsed() < ttl);
            if clients.len() >= MAX_CACHED_CLIENTS {
                clients.clear();
            }
        }
        clients.insert(
            id.to_string(),
            Cached {
                client: client.clone(),
                fetched: Instant::now(),
            },
        );
        Ok(client)
    }

    /// Apply feed entries (each once), drop what expired, forget cached
    /// clients the entries name. `read_started_ms`: when the read that
    /// returned them began (this machine's clock), for the poll cursor;
    /// `None` for an entry this instance wrote itself.
    fn apply(&self, entries: Vec<FeedEntry>, read_started_ms: Option<u64>) {
        let now = now_secs();
        let mut changed = Vec::new();
        {
            let mut rev = self.revocations.write().expect("revocations lock");
            if let Some(started) = read_started_ms {
                rev.cursor_ms = rev.cursor_ms.max(started.saturating_sub(POLL_OVERLAP_MS));
            }
            for entry in entries {
                if rev.seen.contains_key(&entry.id) || entry.expired(now) {
                    continue;
                }
                rev.seen.insert(entry.id.clone(), entry.at_ms);
                let at_ms = entry.at_ms;
                changed.push(entry.change.client_id().to_string());
                match entry.change {
                    Change::Token {
                        jti,
                        client_id,
                        expires_at,
                    } => {
                        rev.tokens.insert(
                            jti.clone(),
                            RevokedToken {
                                jti,
                                client_id,
                                exp: expires_at,
                                at_ms,
                            },
                        );
                    }
                    Change::ClientRevoked {
                        client_id,
                        api,
                        issued_before,
                    } => {
                        let cutoffs = rev.cutoffs.entry(client_id.clone()).or_default();
                        let before = cutoffs
                            .get_mut(api.as_deref())
                            .map_or(issued_before, |c| c.issued_before.max(issued_before));
                        cutoffs.put(Cutoff {
                            client_id,
                            api,
                            issued_before: before,
                            refused: true,
                            at_ms,
                        });
                    }
                    Change::ClientRestored { client_id, api } => {
                        if let Some(cutoff) = rev
                            .cutoffs
                            .get_mut(&client_id)
                            .and_then(|c| c.get_mut(api.as_deref()))
                            && cutoff.at_ms <= at_ms
                        {
                            cutoff.refused = false;
                            cutoff.at_ms = at_ms;
                        }
                    }
                    Change::ClientChanged { .. } | Change::Unknown => {}
                }
            }
            // Sweep on polls only, not on every local revocation.
            if read_started_ms.is_some() {
                rev.tokens.retain(|_, t| t.exp > now);
            }
            // Entries stamped before the cursor are never read again.
            let horizon = rev.cursor_ms;
            rev.seen.retain(|_, at| *at >= horizon);
        }
        if !changed.is_empty() {
            let mut clients = self.clients.write().expect("clients lock");
            for id in changed {
                clients.remove(&id);
            }
        }
    }

    async fn poll_once(&self) -> Result<(), StoreError> {
        let started_ms = now_ms();
        let since = self.revocations.read().expect("revocations lock").cursor_ms;
        let entries = self.store.feed_since(since, now_secs()).await?;
        self.apply(entries, Some(started_ms));
        *self.last_poll.write().expect("poll lock") = Instant::now();
        Ok(())
    }
}

/// Build what authentication needs from a store entry; a record this version
/// cannot use (a bad hash) is logged and treated as unknown, never as open.
fn known_client(entry: ClientEntry, store: &str) -> Option<Arc<KnownClient>> {
    match KnownClient::from_store(entry) {
        Ok(client) => Some(Arc::new(client)),
        Err((id, error)) => {
            tracing::error!(client_id = %id, %error, store, "stored client is unusable; treated as unknown");
            None
        }
    }
}

/// Poll until the view is dropped. Failures are logged once per outage.
async fn poll(inner: Weak<Inner>) {
    let interval = match inner.upgrade() {
        Some(inner) => inner.settings.poll_interval,
        None => return,
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut failing = false;
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        match inner.poll_once().await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!(store = %inner.store.describe(), "store readable again");
            }
            Ok(()) => {}
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(
                    store = %inner.store.describe(), %error,
                    max_stale_s = inner.settings.max_stale.as_secs(),
                    "store poll failed; serving what is cached until max_stale"
                );
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    fn settings(poll_ms: u64) -> ViewSettings {
        ViewSettings {
            poll_interval: Duration::from_millis(poll_ms),
            client_cache_ttl: Duration::from_secs(30),
            max_stale: Duration::from_secs(3600),
        }
    }

    fn revoked(jti: &str) -> FeedEntry {
        FeedEntry::new(Change::Token {
            jti: jti.into(),
            client_id: "app".into(),
            expires_at: now_secs() + 600,
        })
    }

    fn sqlite(dir: &tempfile::TempDir) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap())
    }

    // The tests below run on tokio's paused clock: the poll, `max_stale` and
    // the catch-up rule are timed by `tokio::time`, so `sleep` advances the
    // clock as soon as nothing else can run (a store read in flight holds
    // it), and no test waits for real time or depends on how fast it runs.

    /// A revocation written elsewhere (another instance, the CLI) is read by
    /// the background poll: not before it runs, and within one interval.
    #[tokio::test(start_paused = true)]
    async fn a_revocation_written_elsewhere_arrives_with_the_next_poll() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(&dir);
        let view = StoreView::open(store.clone(), settings(500)).await.unwrap();
        store.append(&revoked("elsewhere")).await.unwrap();
        assert!(!view.is_revoked("elsewhere", "app", "a", 0).await.unwrap());
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(view.is_revoked("elsewhere", "app", "a", 0).await.unwrap());
    }

    /// The poll reads from [`POLL_OVERLAP_MS`] before its previous read
    /// began: an entry stamped late by a writer whose clock lags (within the
    /// overlap) is read; one stamped before the cursor is not, i.e. a poll
    /// does not read the whole feed again.
    #[tokio::test(start_paused = true)]
    async fn polls_read_back_the_overlap_and_no_further() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(&dir);
        let view = StoreView::open(store.clone(), settings(500)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1200)).await; // two polls
        let stamped = |jti: &str, lag_ms: u64| FeedEntry {
            at_ms: now_ms() - lag_ms,
            ..revoked(jti)
        };
        store.append(&stamped("lagging", 5_000)).await.unwrap();
        store
            .append(&stamped("beyond", POLL_OVERLAP_MS + 60_000))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(view.is_revoked("lagging", "app", "a", 0).await.unwrap());
        assert!(!view.is_revoked("beyond", "app", "a", 0).await.unwrap());
        // A new view loads the whole feed.
        let fresh = StoreView::open(store, settings(500)).await.unwrap();
        assert!(fresh.is_revoked("beyond", "app", "a", 0).await.unwrap());
    }

    /// A Lambda environment frozen between invocations runs no background
    /// task; its first request must read the feed before answering. Here the
    /// clock jumps past two poll intervals at once (as after a thaw) while a
    /// revocation is written elsewhere: the first request sees it.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_view_that_fell_behind_reads_the_feed_before_answering() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(&dir);
        let view = StoreView::open(store.clone(), settings(50)).await.unwrap();
        store.append(&revoked("late")).await.unwrap();
        tokio::time::advance(Duration::from_millis(150)).await; // "frozen"
        assert!(
            view.is_revoked("late", "app", "https://api.test", 0)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn cut_offs_cover_earlier_tokens_and_refuse_until_restored() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap());
        let view = StoreView::open(store, settings(50)).await.unwrap();
        let now = now_secs();
        view.publish(Change::ClientRevoked {
            client_id: "app".into(),
            api: Some("https://a.test".into()),
            issued_before: now,
        })
        .await
        .unwrap();
        assert!(
            view.is_revoked("x", "app", "https://a.test", now)
                .await
                .unwrap()
        );
        assert!(
            !view
                .is_revoked("x", "app", "https://a.test", now + 1)
                .await
                .unwrap()
        );
        assert!(
            !view
                .is_revoked("x", "app", "https://b.test", now)
                .await
                .unwrap()
        );
        assert!(view.refuses("app", "https://a.test").await.unwrap());
        assert!(!view.refuses("app", "https://b.test").await.unwrap());
        view.publish(Change::ClientRestored {
            client_id: "app".into(),
            api: Some("https://a.test".into()),
        })
        .await
        .unwrap();
        assert!(!view.refuses("app", "https://a.test").await.unwrap());
        assert!(
            view.is_revoked("x", "app", "https://a.test", now)
                .await
                .unwrap()
        );
    }

    /// A store outage: cached state serves until `max_stale` after the last
    /// good poll, then the view fails closed; once the store is readable
    /// again, the next poll restores service by itself.
    #[tokio::test(start_paused = true)]
    async fn an_unreadable_store_serves_until_max_stale_then_fails_closed_then_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
        let view = StoreView::open(
            store,
            ViewSettings {
                max_stale: Duration::from_millis(300),
                ..settings(50)
            },
        )
        .await
        .unwrap();
        view.publish(revoked("known").change).await.unwrap();
        // Break the store under the view: the feed table disappears.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("DROP TABLE feed").unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await; // polls fail
        assert!(
            view.is_revoked("known", "app", "a", 0).await.unwrap(),
            "cached state serves within max_stale"
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(matches!(
            view.is_revoked("known", "app", "a", 0).await,
            Err(StoreError::Unavailable(_))
        ));
        assert!(matches!(
            view.refuses("app", "a").await,
            Err(StoreError::Unavailable(_))
        ));
        // The store comes back (opening it creates the table again), with a
        // revocation written meanwhile.
        let back = SqliteStore::open(&path).unwrap();
        back.append(&revoked("during")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(view.is_revoked("known", "app", "a", 0).await.unwrap());
        assert!(view.is_revoked("during", "app", "a", 0).await.unwrap());
    }
}
