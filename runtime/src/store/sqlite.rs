//! The embedded store: one SQLite file (rusqlite with its bundled SQLite),
//! the local default. Created on first run beside the dev key with mode 0600
//! (it holds client secret hashes). WAL mode lets several issuer processes
//! and the CLI share one file; expired feed entries are swept on append.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::{
    ClientEntry, ClientRecord, FeedEntry, GrantRecord, Store, StoreError, StoreFuture, now_secs,
};

/// How long a write waits for another process's write lock before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS clients (
        id TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        record TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS grants (
        client TEXT NOT NULL,
        api TEXT NOT NULL,
        scopes TEXT NOT NULL,
        PRIMARY KEY (client, api)
    );
    CREATE TABLE IF NOT EXISTS feed (
        id TEXT PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        expires_at INTEGER,
        entry TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS feed_by_time ON feed (at_ms);
    CREATE INDEX IF NOT EXISTS feed_by_expiry ON feed (expires_at);
";

pub struct SqliteStore {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Open (or create, with mode 0600 in a 0700 directory) the store at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            StoreError::Unavailable(format!("{what} {}: {e}", path.display()))
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| fail("cannot create the directory of", &e))?;
        }
        {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| fail("cannot create", &e))?;
        }
        let conn = Connection::open(path).map_err(|e| fail("cannot open", &e))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| fail("cannot configure", &e))?;
        use_wal(&conn).map_err(|e| fail("cannot use WAL in", &e))?;
        conn.execute_batch(SCHEMA)
            .map_err(|e| fail("cannot create the tables of", &e))?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Run `f` on the connection off the async workers (a write may wait for
    /// another process's lock).
    fn with<'a, T: Send + 'static>(
        &'a self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'a, T> {
        let conn = self.conn.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
                f(&mut conn)
            })
            .await
            .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
        })
    }
}

/// Switch the file to WAL (a setting kept in the file). Two processes that
/// open a new store at once both try; SQLite answers the loser `SQLITE_BUSY`
/// at once, without its busy handler, so this retries within
/// [`BUSY_TIMEOUT`] until the file is in WAL mode.
fn use_wal(conn: &Connection) -> Result<(), String> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        let tried = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0));
        match tried {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Err(e)
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(mode) => return Err(format!("the journal mode stayed `{mode}`")),
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("sqlite: {e}"))
}

fn decode<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Invalid(format!("{what}: {e}")))
}

fn encode<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("store records serialize")
}

impl Store for SqliteStore {
    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    fn client<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<ClientEntry>> {
        let id = id.to_string();
        self.with(move |conn| {
            let tx = conn.transaction().map_err(db)?;
            let record: Option<String> = tx
                .query_row("SELECT record FROM clients WHERE id = ?1", [&id], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(db)?;
            let Some(record) = record else {
                return Ok(None);
            };
            let client: ClientRecord = decode(&record, &format!("client `{id}`"))?;
            let mut stmt = tx
                .prepare("SELECT api, scopes FROM grants WHERE client = ?1 ORDER BY api")
                .map_err(db)?;
            let rows = stmt
                .query_map([&id], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(db)?;
            let mut grants = Vec::new();
            for row in rows {
                let (api, scopes) = row.map_err(db)?;
                grants.push(GrantRecord {
                    client: id.clone(),
                    scopes: decode(&scopes, &format!("grant `{id}` → `{api}`"))?,
                    api,
                });
            }
            Ok(Some(ClientEntry { client, grants }))
        })
    }

    fn clients(&self) -> StoreFuture<'_, Vec<ClientRecord>> {
        self.with(|conn| {
            let mut stmt = conn
                .prepare("SELECT id, record FROM clients ORDER BY id")
                .map_err(db)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .map_err(db)?;
            let mut out = Vec::new();
            for row in rows {
                let (id, record) = row.map_err(db)?;
                out.push(decode(&record, &format!("client `{id}`"))?);
            }
            Ok(out)
        })
    }

    fn create_client<'a>(&'a self, record: &'a ClientRecord) -> StoreFuture<'a, ()> {
        let record = record.clone();
        self.with(move |conn| {
            let inserted = conn
                .execute(
                    "INSERT INTO clients (id, version, record) VALUES (?1, ?2, ?3)
                     ON CONFLICT (id) DO NOTHING",
                    params![record.id, record.version as i64, encode(&record)],
                )
                .map_err(db)?;
            if inserted == 0 {
                return Err(StoreError::Conflict(format!(
                    "client `{}` already exists",
                    record.id
                )));
            }
            Ok(())
        })
    }

    fn update_client<'a>(
        &'a self,
        record: &'a ClientRecord,
        expected_version: u64,
    ) -> StoreFuture<'a, ()> {
        let record = record.clone();
        self.with(move |conn| {
            let tx = conn.transaction().map_err(db)?;
            let updated = tx
                .execute(
                    "UPDATE clients SET version = ?2, record = ?3 WHERE id = ?1 AND version = ?4",
                    params![
                        record.id,
                        record.version as i64,
                        encode(&record),
                        expected_version as i64
                    ],
                )
                .map_err(db)?;
            if updated == 1 {
                tx.commit().map_err(db)?;
                return Ok(());
            }
            let exists: Option<i64> = tx
                .query_row(
                    "SELECT version FROM clients WHERE id = ?1",
                    [&record.id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)?;
            Err(match exists {
                None => StoreError::NotFound(format!("client `{}`", record.id)),
                Some(v) => StoreError::Conflict(format!(
                    "client `{}` is at version {v}, not {expected_version}: it changed concurrently",
                    record.id
                )),
            })
        })
    }

    fn put_grant<'a>(&'a self, grant: &'a GrantRecord) -> StoreFuture<'a, ()> {
        let grant = grant.clone();
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO grants (client, api, scopes) VALUES (?1, ?2, ?3)
                 ON CONFLICT (client, api) DO UPDATE SET scopes = excluded.scopes",
                params![grant.client, grant.api, encode(&grant.scopes)],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    fn remove_grant<'a>(&'a self, client: &'a str, api: &'a str) -> StoreFuture<'a, bool> {
        let (client, api) = (client.to_string(), api.to_string());
        self.with(move |conn| {
            let removed = conn
                .execute(
                    "DELETE FROM grants WHERE client = ?1 AND api = ?2",
                    params![client, api],
                )
                .map_err(db)?;
            Ok(removed > 0)
        })
    }

    fn append<'a>(&'a self, entry: &'a FeedEntry) -> StoreFuture<'a, ()> {
        let entry = entry.clone();
        self.with(move |conn| {
            let tx = conn.transaction().map_err(db)?;
            tx.execute(
                "INSERT INTO feed (id, at_ms, expires_at, entry) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO NOTHING",
                params![
                    entry.id,
                    entry.at_ms as i64,
                    entry.expires_at().map(|e| e as i64),
                    encode(&entry)
                ],
            )
            .map_err(db)?;
            // The sweep: what DynamoDB's TTL does there.
            tx.execute(
                "DELETE FROM feed WHERE expires_at IS NOT NULL AND expires_at <= ?1",
                [now_secs() as i64],
            )
            .map_err(db)?;
            tx.commit().map_err(db)
        })
    }

    fn feed_since(&self, since_ms: u64, now: u64) -> StoreFuture<'_, Vec<FeedEntry>> {
        self.with(move |conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT entry FROM feed WHERE at_ms >= ?1
                     AND (expires_at IS NULL OR expires_at > ?2) ORDER BY at_ms, id",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map(params![since_ms as i64, now as i64], |r| {
                    r.get::<_, String>(0)
                })
                .map_err(db)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(decode::<FeedEntry>(&row.map_err(db)?, "feed entry")?);
            }
            Ok(out)
        })
    }
}
