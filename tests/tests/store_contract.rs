//! The store contract: the same cases against both implementations of
//! `tokenhook::store::Store` — the embedded SQLite file and DynamoDB through a
//! real `moto` server on 127.0.0.1 (one server for the whole run, a fresh
//! table per case). Every case runs concurrently with the others; a failure
//! names its case and backend, and every failing case is reported.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokenhook::store::dynamodb::{DynamoStore, TTL_ATTRIBUTE};
use tokenhook::store::sqlite::SqliteStore;
use tokenhook::store::{
    CHANGE_NOTICE_LIFETIME_SECS, Change, ClientRecord, FeedEntry, GrantRecord, Store, StoreError,
    now_ms, now_secs,
};
use tokenhook_tests::{MotoServer, aws_sdk_config, free_port};

type Shared = Arc<dyn Store>;
type CaseFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
type Case = (&'static str, fn(Shared) -> CaseFuture);

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        vec![$((stringify!($name), (|store| Box::pin($name(store))) as fn(Shared) -> CaseFuture)),*]
    };
}

fn all_cases() -> Vec<Case> {
    cases![
        clients_are_created_read_and_listed,
        creating_an_existing_client_conflicts,
        an_update_naming_the_stored_version_succeeds,
        a_stale_version_conflicts_and_loses_nothing,
        updating_a_missing_client_is_not_found,
        concurrent_read_modify_writes_lose_no_update,
        grants_are_put_replaced_and_removed,
        the_feed_is_ordered_and_since_includes_its_bound,
        expired_entries_are_not_returned,
        results_larger_than_a_page_are_complete,
    ]
}

/// Run every case concurrently, each on its own store from `make`; panic
/// naming all that failed.
async fn run_all<F, Fut>(backend: &str, make: F)
where
    F: Fn(&'static str) -> Fut,
    Fut: Future<Output = Shared>,
{
    let mut tasks = Vec::new();
    for (name, case) in all_cases() {
        let store = make(name).await;
        tasks.push((name, tokio::spawn(case(store))));
    }
    let mut failed = Vec::new();
    for (name, task) in tasks {
        if let Err(err) = task.await {
            let message = err
                .try_into_panic()
                .ok()
                .and_then(|p| {
                    p.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                })
                .unwrap_or_else(|| "cancelled".into());
            failed.push(format!("{backend} / {name}: {message}"));
        }
    }
    assert!(failed.is_empty(), "failed cases:\n{}", failed.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    run_all("sqlite", |name| {
        let path = root.join(format!("{name}.sqlite"));
        async move { Arc::new(SqliteStore::open(&path).expect("open the SQLite store")) as Shared }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_store_keeps_the_contract() {
    let moto = MotoServer::start();
    run_all("dynamodb", |name| {
        let moto = &moto;
        async move { Arc::new(moto.dynamo_store(name).await) as Shared }
    })
    .await;
}

/// Point the store at a port nothing listens on: every operation answers
/// `Unavailable`, and no message carries the secret hash it was writing.
#[tokio::test]
async fn an_unreachable_dynamodb_is_unavailable() {
    let port = free_port(); // bound and released: closed
    let config = aws_sdk_config(&format!("http://127.0.0.1:{port}")).await;
    let store = DynamoStore::from_sdk_config(&config, "tokenhook");
    let record = client("app", 1);
    let grant = GrantRecord {
        client: "app".into(),
        api: "https://api.test".into(),
        scopes: vec!["read".into()],
    };
    let entry = FeedEntry::new(Change::ClientChanged {
        client_id: "app".into(),
    });
    // All at once: each spends a second or so in the SDK's retry back-off.
    let (client_, clients, create, update, put_grant, remove_grant, append, feed) = tokio::join!(
        store.client("app"),
        store.clients(),
        store.create_client(&record),
        store.update_client(&record, 1),
        store.put_grant(&grant),
        store.remove_grant("app", "x"),
        store.append(&entry),
        store.feed_since(0, now_secs()),
    );
    let results: Vec<(&str, Result<(), StoreError>)> = vec![
        ("client", client_.map(drop)),
        ("clients", clients.map(drop)),
        ("create_client", create),
        ("update_client", update),
        ("put_grant", put_grant),
        ("remove_grant", remove_grant.map(drop)),
        ("append", append),
        ("feed_since", feed.map(drop)),
    ];
    for (operation, result) in results {
        match result {
            Err(StoreError::Unavailable(message)) => {
                assert!(
                    !message.contains(&record.secret_hash),
                    "{operation}: {message}"
                );
                assert!(message.contains("tokenhook"), "names the table: {message}");
            }
            other => panic!("{operation}: expected Unavailable, got {other:?}"),
        }
    }
}

/// What the contract does not say but the TTL depends on: entries that
/// expire carry the table's TTL attribute as a number, cut-offs do not; the
/// table is created with TTL on that attribute.
#[tokio::test]
async fn dynamodb_items_carry_the_ttl_attribute() {
    use aws_sdk_dynamodb::types::{AttributeValue, TimeToLiveStatus};
    let moto = MotoServer::start();
    let store = moto.dynamo_store("ttl").await;
    let token = FeedEntry::new(Change::Token {
        jti: "j1".into(),
        client_id: "app".into(),
        expires_at: now_secs() + 600,
    });
    let cut_off = FeedEntry::new(Change::ClientRevoked {
        client_id: "app".into(),
        api: None,
        issued_before: now_secs(),
    });
    store.append(&token).await.unwrap();
    store.append(&cut_off).await.unwrap();

    let raw = aws_sdk_dynamodb::Client::new(&moto.sdk_config().await);
    let ttl = raw
        .describe_time_to_live()
        .table_name("ttl")
        .send()
        .await
        .unwrap();
    let ttl = ttl.time_to_live_description().unwrap();
    assert_eq!(ttl.attribute_name(), Some(TTL_ATTRIBUTE));
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));

    let items = raw
        .query()
        .table_name("ttl")
        .key_condition_expression("pk = :feed")
        .expression_attribute_values(":feed", AttributeValue::S("feed".into()))
        .send()
        .await
        .unwrap();
    let mut with_ttl = 0;
    for item in items.items() {
        let entry: FeedEntry = serde_json::from_str(item["entry"].as_s().unwrap()).unwrap();
        match entry.expires_at() {
            Some(exp) => {
                assert_eq!(item[TTL_ATTRIBUTE], AttributeValue::N(exp.to_string()));
                with_ttl += 1;
            }
            None => assert!(!item.contains_key(TTL_ATTRIBUTE), "{item:?}"),
        }
    }
    assert_eq!((items.items().len(), with_ttl), (2, 1));
}

// ---- the cases ----

fn client(id: &str, version: u64) -> ClientRecord {
    ClientRecord {
        id: id.into(),
        name: None,
        secret_hash: format!("sha256:{}", "ab".repeat(32)),
        metadata: BTreeMap::new(),
        introspect: false,
        version,
    }
}

fn grant(client: &str, api: &str, scopes: &[&str]) -> GrantRecord {
    GrantRecord {
        client: client.into(),
        api: api.into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
    }
}

fn entry(id: &str, at_ms: u64, change: Change) -> FeedEntry {
    FeedEntry {
        id: id.into(),
        at_ms,
        change,
    }
}

fn changed(client_id: &str) -> Change {
    Change::ClientChanged {
        client_id: client_id.into(),
    }
}

async fn clients_are_created_read_and_listed(store: Shared) {
    let full = ClientRecord {
        name: Some("Billing service".into()),
        metadata: BTreeMap::from([("tenant".into(), "acme".into()), ("plan".into(), "".into())]),
        introspect: true,
        ..client("billing", 1)
    };
    let bare = client("app#1", 1);
    store.create_client(&full).await.unwrap();
    store.create_client(&bare).await.unwrap();
    store
        .put_grant(&grant("billing", "https://b.test", &["read"]))
        .await
        .unwrap();
    store
        .put_grant(&grant("billing", "https://a.test", &["read", "write"]))
        .await
        .unwrap();

    let got = store.client("billing").await.unwrap().expect("registered");
    assert_eq!(got.client, full);
    assert_eq!(
        got.grants,
        vec![
            grant("billing", "https://a.test", &["read", "write"]),
            grant("billing", "https://b.test", &["read"]),
        ],
        "grants ordered by API"
    );
    let got = store.client("app#1").await.unwrap().expect("registered");
    assert_eq!((got.client, got.grants), (bare.clone(), vec![]));
    assert_eq!(
        store.client("app").await.unwrap(),
        None,
        "a prefix is not an id"
    );
    assert_eq!(store.client("nobody").await.unwrap(), None);

    assert_eq!(
        store.clients().await.unwrap(),
        vec![bare, full],
        "ordered by id"
    );
}

async fn creating_an_existing_client_conflicts(store: Shared) {
    let first = client("app", 1);
    store.create_client(&first).await.unwrap();
    let second = ClientRecord {
        secret_hash: "sha256:other".into(),
        ..client("app", 1)
    };
    match store.create_client(&second).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("expected Conflict, got {other:?}"),
    }
    let stored = store.client("app").await.unwrap().unwrap().client;
    assert_eq!(stored, first, "the first registration stands");
    assert_eq!(store.clients().await.unwrap().len(), 1);
}

async fn an_update_naming_the_stored_version_succeeds(store: Shared) {
    store.create_client(&client("app", 1)).await.unwrap();
    let v2 = ClientRecord {
        secret_hash: "sha256:rotated".into(),
        introspect: true,
        ..client("app", 2)
    };
    store.update_client(&v2, 1).await.unwrap();
    assert_eq!(store.client("app").await.unwrap().unwrap().client, v2);
    let v3 = ClientRecord {
        name: Some("renamed".into()),
        ..v2.clone()
    };
    let v3 = ClientRecord { version: 3, ..v3 };
    store.update_client(&v3, 2).await.unwrap();
    assert_eq!(store.clients().await.unwrap(), vec![v3]);
}

async fn a_stale_version_conflicts_and_loses_nothing(store: Shared) {
    store.create_client(&client("app", 1)).await.unwrap();
    // Two writers read version 1; the first one wins.
    let first = ClientRecord {
        metadata: BTreeMap::from([("by".into(), "first".into())]),
        ..client("app", 2)
    };
    let second = ClientRecord {
        metadata: BTreeMap::from([("by".into(), "second".into())]),
        ..client("app", 2)
    };
    store.update_client(&first, 1).await.unwrap();
    match store.update_client(&second, 1).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(store.client("app").await.unwrap().unwrap().client, first);
}

async fn updating_a_missing_client_is_not_found(store: Shared) {
    match store.update_client(&client("ghost", 2), 1).await {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert_eq!(store.client("ghost").await.unwrap(), None, "not created");
}

async fn concurrent_read_modify_writes_lose_no_update(store: Shared) {
    const WRITERS: u64 = 8;
    store.create_client(&client("app", 1)).await.unwrap();
    let conflicts = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..WRITERS {
        let store = store.clone();
        let conflicts = conflicts.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let mut record = store.client("app").await.unwrap().unwrap().client;
                let read = record.version;
                record.metadata.insert(format!("writer{i}"), i.to_string());
                record.version = read + 1;
                match store.update_client(&record, read).await {
                    Ok(()) => return,
                    Err(StoreError::Conflict(_)) => {
                        conflicts.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(other) => panic!("writer {i}: {other}"),
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let last = store.client("app").await.unwrap().unwrap().client;
    assert_eq!(last.version, 1 + WRITERS, "one version per write");
    let expected: BTreeMap<String, String> = (0..WRITERS)
        .map(|i| (format!("writer{i}"), i.to_string()))
        .collect();
    assert_eq!(last.metadata, expected, "every writer's change is there");
    eprintln!(
        "{WRITERS} writers, {} conflicts retried",
        conflicts.load(Ordering::Relaxed)
    );
}

async fn grants_are_put_replaced_and_removed(store: Shared) {
    store.create_client(&client("app", 1)).await.unwrap();
    let grants = async |store: &Shared| store.client("app").await.unwrap().unwrap().grants;

    store
        .put_grant(&grant("app", "https://api.test", &["read"]))
        .await
        .unwrap();
    store
        .put_grant(&grant("app", "https://api.test", &["read", "write"]))
        .await
        .unwrap();
    store
        .put_grant(&grant("app", "https://other.test", &[]))
        .await
        .unwrap();
    assert_eq!(
        grants(&store).await,
        vec![
            grant("app", "https://api.test", &["read", "write"]),
            grant("app", "https://other.test", &[]),
        ],
        "replaced, not added; an empty scope list is kept"
    );

    assert!(store.remove_grant("app", "https://api.test").await.unwrap());
    assert!(
        !store.remove_grant("app", "https://api.test").await.unwrap(),
        "already gone"
    );
    assert!(
        !store
            .remove_grant("nobody", "https://api.test")
            .await
            .unwrap()
    );
    assert_eq!(
        grants(&store).await,
        vec![grant("app", "https://other.test", &[])]
    );
    // A grant change leaves the client record alone.
    assert_eq!(store.clients().await.unwrap(), vec![client("app", 1)]);
}

async fn the_feed_is_ordered_and_since_includes_its_bound(store: Shared) {
    let base = now_ms();
    // Appended out of order; two in the same millisecond.
    let entries = [
        entry("c", base + 20, changed("x")),
        entry("a", base, changed("x")),
        entry("b2", base + 10, changed("y")),
        entry("b1", base + 10, changed("z")),
    ];
    for e in &entries {
        store.append(e).await.unwrap();
    }
    let ids = |feed: Vec<FeedEntry>| feed.into_iter().map(|e| e.id).collect::<Vec<_>>();
    let now = now_secs();

    let all = store.feed_since(base, now).await.unwrap();
    assert_eq!(ids(all.clone()), ["a", "b1", "b2", "c"], "by time, then id");
    let by_id: BTreeMap<_, _> = entries.iter().map(|e| (e.id.clone(), e)).collect();
    for got in &all {
        assert_eq!(got, by_id[&got.id], "read back as written");
    }
    assert_eq!(
        ids(store.feed_since(base + 10, now).await.unwrap()),
        ["b1", "b2", "c"]
    );
    assert_eq!(ids(store.feed_since(base + 11, now).await.unwrap()), ["c"]);
    assert_eq!(
        ids(store.feed_since(base + 21, now).await.unwrap()),
        Vec::<String>::new()
    );

    // Overlapping polls see an entry again, with the same id.
    let first = store.feed_since(base + 10, now).await.unwrap();
    let late = entry("d", base + 30, changed("x"));
    store.append(&late).await.unwrap();
    let second = store.feed_since(base + 10, now).await.unwrap();
    assert_eq!(&second[..first.len()], &first[..]);
    assert_eq!(second.last(), Some(&late));

    // Appending the same entry twice is harmless.
    store.append(&late).await.unwrap();
    assert_eq!(ids(store.feed_since(base + 30, now).await.unwrap()), ["d"]);
}

async fn expired_entries_are_not_returned(store: Shared) {
    let now = now_secs();
    let base = now_ms() - 1000;
    let token = |id: &str, at: u64, expires_at: u64| {
        entry(
            id,
            at,
            Change::Token {
                jti: format!("jti-{id}"),
                client_id: "app".into(),
                expires_at,
            },
        )
    };
    let old_ms = (now - CHANGE_NOTICE_LIFETIME_SECS - 60) * 1000;
    let appended = [
        token("live", base, now + 600),
        token("dead", base + 1, now - 1),
        token("edge", base + 2, now),
        // A change notice older than its lifetime means nothing...
        entry("old-notice", old_ms, changed("app")),
        // ...but cut-offs and restores never expire.
        entry(
            "old-cut-off",
            old_ms + 1,
            Change::ClientRevoked {
                client_id: "app".into(),
                api: Some("https://api.test".into()),
                issued_before: old_ms / 1000,
            },
        ),
        entry(
            "old-restore",
            old_ms + 2,
            Change::ClientRestored {
                client_id: "app".into(),
                api: None,
            },
        ),
    ];
    for e in &appended {
        store.append(e).await.unwrap();
    }
    let ids = |feed: Vec<FeedEntry>| feed.into_iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.feed_since(0, now).await.unwrap()),
        ["old-cut-off", "old-restore", "live"],
        "expired at `now`: `dead`, `edge` (exp == now) and the old notice"
    );
    // `now` is the reader's: later, the live token is gone too.
    assert_eq!(
        ids(store.feed_since(0, now + 600).await.unwrap()),
        ["old-cut-off", "old-restore"]
    );
}

/// DynamoDB returns at most 1 MB per Query or Scan page (moto too): items
/// of ~300 KB make every read span pages, which must all be read.
async fn results_larger_than_a_page_are_complete(store: Shared) {
    const ITEMS: usize = 5;
    let big = |i: usize| format!("{i}{}", "x".repeat(300_000));
    for i in 0..ITEMS {
        let record = ClientRecord {
            metadata: BTreeMap::from([("blob".into(), big(i))]),
            ..client(&format!("big{i}"), 1)
        };
        store.create_client(&record).await.unwrap();
        store
            .put_grant(&grant("big0", &format!("https://{i}.test"), &[&big(i)]))
            .await
            .unwrap();
    }
    let listed = store.clients().await.unwrap();
    assert_eq!(
        listed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["big0", "big1", "big2", "big3", "big4"]
    );
    assert!(
        listed
            .iter()
            .enumerate()
            .all(|(i, c)| c.metadata["blob"] == big(i))
    );

    let entry = store.client("big0").await.unwrap().unwrap();
    assert_eq!(entry.grants.len(), ITEMS);
    assert!(
        entry
            .grants
            .iter()
            .enumerate()
            .all(|(i, g)| g.scopes == [big(i)])
    );

    let now = now_secs();
    let base = now_ms();
    for i in 0..ITEMS {
        store
            .append(&self::entry(
                &format!("e{i}"),
                base + i as u64,
                Change::Token {
                    jti: big(i),
                    client_id: "big0".into(),
                    expires_at: now + 600,
                },
            ))
            .await
            .unwrap();
    }
    let feed = store.feed_since(base, now).await.unwrap();
    assert_eq!(
        feed.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["e0", "e1", "e2", "e3", "e4"]
    );
}
