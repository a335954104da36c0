//! Registry operations: what `tokenhook clients` and `tokenhook grants` do to
//! a store. Each write is conditional or idempotent, and is followed by a
//! feed notice so every issuer drops its cached copy within one poll.

use std::collections::BTreeMap;

use super::{Change, ClientRecord, FeedEntry, GrantRecord, Store, StoreError, now_secs};

/// How many times a read-modify-write is retried when another writer got
/// there first.
pub const MAX_ATTEMPTS: usize = 8;

/// A new client: its record is stored with the hash of a fresh secret, which
/// is returned once and never stored.
pub async fn add_client(
    store: &dyn Store,
    id: &str,
    name: Option<String>,
    metadata: BTreeMap<String, String>,
    introspect: bool,
) -> Result<(ClientRecord, String), StoreError> {
    check_client_id(id)?;
    let (secret, secret_hash) = crate::clients::new_secret();
    let record = ClientRecord {
        id: id.to_string(),
        name,
        secret_hash,
        metadata,
        introspect,
        version: 1,
    };
    store.create_client(&record).await?;
    notify_changed(store, id).await?;
    Ok((record, secret))
}

/// Replace a client's secret; the old one stops working at every issuer
/// within one poll interval. Returns the new record and secret.
pub async fn rotate_secret(
    store: &dyn Store,
    id: &str,
) -> Result<(ClientRecord, String), StoreError> {
    let (secret, secret_hash) = crate::clients::new_secret();
    let record = update(store, id, |record| record.secret_hash = secret_hash.clone()).await?;
    Ok((record, secret))
}

/// Read, change and write back a client, retrying when a concurrent writer
/// got there first, so no update is lost.
pub async fn update(
    store: &dyn Store,
    id: &str,
    change: impl Fn(&mut ClientRecord),
) -> Result<ClientRecord, StoreError> {
    let mut last = None;
    for _ in 0..MAX_ATTEMPTS {
        let Some(entry) = store.client(id).await? else {
            return Err(StoreError::NotFound(format!("client `{id}`")));
        };
        let expected = entry.client.version;
        let mut record = entry.client;
        change(&mut record);
        record.version = expected + 1;
        match store.update_client(&record, expected).await {
            Ok(()) => {
                notify_changed(store, id).await?;
                return Ok(record);
            }
            Err(StoreError::Conflict(why)) => last = Some(why),
            Err(other) => return Err(other),
        }
    }
    Err(StoreError::Conflict(last.unwrap_or_default()))
}

/// Grant `client` these scopes on `api` (replacing an earlier grant).
pub async fn put_grant(store: &dyn Store, grant: &GrantRecord) -> Result<(), StoreError> {
    if store.client(&grant.client).await?.is_none() {
        return Err(StoreError::NotFound(format!("client `{}`", grant.client)));
    }
    store.put_grant(grant).await?;
    notify_changed(store, &grant.client).await
}

/// Remove `client`'s grant on `api`; whether there was one.
pub async fn remove_grant(store: &dyn Store, client: &str, api: &str) -> Result<bool, StoreError> {
    let removed = store.remove_grant(client, api).await?;
    notify_changed(store, client).await?;
    Ok(removed)
}

/// Revoke every token `client_id` holds (for `api`, or all APIs) issued up
/// to now, and refuse its new token requests until [`restore_client`].
pub async fn revoke_client(
    store: &dyn Store,
    client_id: &str,
    api: Option<&str>,
) -> Result<FeedEntry, StoreError> {
    let entry = FeedEntry::new(Change::ClientRevoked {
        client_id: client_id.to_string(),
        api: api.map(str::to_string),
        issued_before: now_secs(),
    });
    store.append(&entry).await?;
    Ok(entry)
}

/// Allow new token requests again after [`revoke_client`]; tokens issued
/// before the cut-off stay revoked.
pub async fn restore_client(
    store: &dyn Store,
    client_id: &str,
    api: Option<&str>,
) -> Result<FeedEntry, StoreError> {
    let entry = FeedEntry::new(Change::ClientRestored {
        client_id: client_id.to_string(),
        api: api.map(str::to_string),
    });
    store.append(&entry).await?;
    Ok(entry)
}

async fn notify_changed(store: &dyn Store, client_id: &str) -> Result<(), StoreError> {
    store
        .append(&FeedEntry::new(Change::ClientChanged {
            client_id: client_id.to_string(),
        }))
        .await
}

/// The same rule as the manifest's `clients[].id`: non-empty, no `:` (Basic
/// credentials split on it), printable ASCII.
pub fn check_client_id(id: &str) -> Result<(), StoreError> {
    if id.is_empty()
        || id.len() > 128
        || id.contains(':')
        || !id.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(StoreError::Invalid(format!(
            "client id `{id}` must be 1–128 printable ASCII characters without `:` or spaces"
        )));
    }
    Ok(())
}
