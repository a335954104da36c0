//! The shared store: what every issuer instance must agree on at once.
//!
//! Lambda execution environments share no memory, so revocations (a `jti`
//! deny list, per-client and per-grant cut-offs) and, where the manifest opts
//! in, clients and grants live here rather than in the manifest. One small
//! trait, [`Store`], two implementations: [`sqlite`] (embedded, the local
//! default) and [`dynamodb`] (one table, on AWS).
//!
//! Every change is also an entry in one append-only **feed**, ordered by the
//! writer's clock in milliseconds: token revocations, client cut-offs and
//! "this client changed" notices. Issuers poll the feed (see [`view`]) to
//! learn of revocations and to drop cached clients, so a change reaches every
//! instance within one poll interval without a store round trip per token.

pub mod dynamodb;
pub mod registry;
pub mod sqlite;
pub mod view;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A store operation's result.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or failed; the operation may be retried.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A conditional write lost to a concurrent one (or the item already exists).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The item does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The store holds something this version cannot read.
    #[error("invalid stored data: {0}")]
    Invalid(String),
}

/// A client kept in the store (the registry), as the CLI manages it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `sha256:<hex>` or an argon2id PHC string; never the secret itself.
    pub secret_hash: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// May call the introspection endpoint and read the revocation feed.
    #[serde(default)]
    pub introspect: bool,
    /// Bumped by every write; a write names the version it read
    /// ([`Store::update_client`]) so concurrent writers never lose an update.
    pub version: u64,
}

/// What a client may request for one API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecord {
    pub client: String,
    pub api: String,
    pub scopes: Vec<String>,
}

/// A client with its grants: what one registry lookup returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientEntry {
    pub client: ClientRecord,
    pub grants: Vec<GrantRecord>,
}

/// One entry of the feed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedEntry {
    /// Unique: entries read twice (the poll window overlaps) are applied once.
    pub id: String,
    /// When it was written, in Unix milliseconds of the writer's clock.
    pub at_ms: u64,
    #[serde(flatten)]
    pub change: Change,
}

/// What a feed entry says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// One access token is revoked until it expires (RFC 7009).
    Token {
        jti: String,
        client_id: String,
        /// The token's `exp`: the entry is meaningless after it.
        expires_at: u64,
    },
    /// Every token of `client_id` (for `api`, or all APIs) issued at or
    /// before `issued_before` is revoked, and new token requests are refused
    /// until a [`Change::ClientRestored`].
    ClientRevoked {
        client_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        api: Option<String>,
        issued_before: u64,
    },
    /// New token requests are allowed again; the cut-off stays.
    ClientRestored {
        client_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        api: Option<String>,
    },
    /// The client's record or grants changed: caches drop it.
    ClientChanged { client_id: String },
    /// A kind a newer version wrote (during a rolling upgrade): skipped,
    /// rather than failing every poll that reads it.
    #[serde(other)]
    Unknown,
}

impl Change {
    pub fn client_id(&self) -> &str {
        match self {
            Change::Token { client_id, .. }
            | Change::ClientRevoked { client_id, .. }
            | Change::ClientRestored { client_id, .. }
            | Change::ClientChanged { client_id } => client_id,
            Change::Unknown => "",
        }
    }
}

/// "Client changed" notices are only for caches that poll; a day is plenty.
pub const CHANGE_NOTICE_LIFETIME_SECS: u64 = 24 * 3600;

impl FeedEntry {
    /// A new entry stamped with this machine's clock and a random id.
    pub fn new(change: Change) -> FeedEntry {
        let mut bytes = [0u8; 12];
        aws_lc_rs::rand::fill(&mut bytes).expect("system random");
        FeedEntry {
            id: hex::encode(bytes),
            at_ms: now_ms(),
            change,
        }
    }

    /// Unix seconds after which the entry means nothing and may be deleted,
    /// if ever. Cut-offs and restores stay: they also govern new requests.
    pub fn expires_at(&self) -> Option<u64> {
        match &self.change {
            Change::Token { expires_at, .. } => Some(*expires_at),
            Change::ClientChanged { .. } => Some(self.at_ms / 1000 + CHANGE_NOTICE_LIFETIME_SECS),
            Change::ClientRevoked { .. } | Change::ClientRestored { .. } | Change::Unknown => None,
        }
    }

    /// Whether the entry no longer means anything at `now` (Unix seconds).
    /// Stores delete expired entries lazily (DynamoDB's TTL: up to days
    /// later), so readers must skip them themselves.
    pub fn expired(&self, now: u64) -> bool {
        self.expires_at().is_some_and(|exp| exp <= now)
    }
}

/// Shared state behind one small trait. Implementations keep no cache of
/// their own: [`view::StoreView`] caches for the token path.
pub trait Store: Send + Sync {
    /// What and where, for logs (`sqlite:/path`, `dynamodb:table`).
    fn describe(&self) -> String;

    /// One client with its grants; `None` when it is not registered.
    fn client<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<ClientEntry>>;

    /// Every registered client, ordered by id.
    fn clients(&self) -> StoreFuture<'_, Vec<ClientRecord>>;

    /// Register a new client (`version` 1); [`StoreError::Conflict`] if the id exists.
    fn create_client<'a>(&'a self, record: &'a ClientRecord) -> StoreFuture<'a, ()>;

    /// Replace a client if its stored version is still `expected_version`
    /// (the new record carries `expected_version + 1`); otherwise
    /// [`StoreError::Conflict`], or [`StoreError::NotFound`].
    fn update_client<'a>(
        &'a self,
        record: &'a ClientRecord,
        expected_version: u64,
    ) -> StoreFuture<'a, ()>;

    /// Add or replace the grant of `grant.client` for `grant.api`.
    fn put_grant<'a>(&'a self, grant: &'a GrantRecord) -> StoreFuture<'a, ()>;

    /// Remove a grant; whether there was one.
    fn remove_grant<'a>(&'a self, client: &'a str, api: &'a str) -> StoreFuture<'a, bool>;

    /// Append an entry to the feed.
    fn append<'a>(&'a self, entry: &'a FeedEntry) -> StoreFuture<'a, ()>;

    /// Feed entries written at or after `since_ms`, oldest first, without
    /// entries expired at `now` (Unix seconds).
    fn feed_since(&self, since_ms: u64, now: u64) -> StoreFuture<'_, Vec<FeedEntry>>;
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

pub fn now_secs() -> u64 {
    now_ms() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_of_a_kind_this_version_does_not_know_are_read_as_unknown() {
        let entry: FeedEntry =
            serde_json::from_str(r#"{"id":"1","at_ms":5,"kind":"from_the_future","x":1}"#).unwrap();
        assert_eq!(entry.change, Change::Unknown);
        assert_eq!(entry.expires_at(), None);
    }
}
