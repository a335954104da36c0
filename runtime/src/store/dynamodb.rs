//! [`Store`] on one DynamoDB table: what every Lambda execution environment
//! of a deployed stack reads and the CLI writes.
//!
//! Configured by the standard AWS chain (environment, profile, instance
//! role), so `AWS_ENDPOINT_URL` and `AWS_REGION` let an emulator (moto) stand
//! in for tests. Every call gives up after [`crate::secrets::aws::OPERATION_TIMEOUT`]
//! (retries included) and then answers [`StoreError::Unavailable`].
//!
//! # Layout
//!
//! One table, string keys `pk` (partition) and `sk` (sort); see
//! [`table_layout`] for the creation parameters (`template.yaml` creates the
//! same table on AWS, tests create it in moto with [`DynamoStore::create_table`]).
//!
//! | item   | `pk`           | `sk`                           | attributes |
//! |--------|----------------|--------------------------------|------------|
//! | client | `client#<id>`  | `client`                       | `id`, `name`?, `secret_hash`, `metadata` (map), `introspect`, `version` (number) |
//! | grant  | `client#<id>`  | `grant#<api>`                  | `client`, `api`, `scopes` (list) |
//! | feed   | `feed`         | `<at_ms, 13 digits>#<entry id>` | `entry` (the [`FeedEntry`] as JSON), `expires_at`? |
//!
//! - A client and its grants share a partition, so [`Store::client`] is one
//!   Query.
//! - The feed is one partition ordered by time, so [`Store::feed_since`] is one
//!   (paginated) Query on `sk >= <since_ms>`. A single partition serves about
//!   3,000 read units a second; each poll of an idle feed costs one, so this
//!   holds for well over a thousand instances polling every 500 ms.
//! - `expires_at` (Unix seconds, a number) is the table's TTL attribute, set on
//!   entries that have [`FeedEntry::expires_at`]. DynamoDB deletes expired items
//!   lazily (typically within days), so reads skip them themselves.
//!
//! # Reads are strongly consistent
//!
//! An eventually consistent read may return an item as it was up to a second
//! before: a client lookup right after `clients rotate-secret` would then cache
//! the old secret hash for the cache's whole TTL, and a feed poll could miss a
//! revocation until the next window. Strong reads cost twice the read units of
//! eventual ones (one unit per 4 KB) and rule both out.
//!
//! # Listing clients scans
//!
//! [`Store::clients`] is a Scan filtered on `sk = "client"`: it reads (and is
//! billed for) every item, feed included. Only the operator's `clients list`
//! calls it, never the token path; a sparse index (GSI) would make every client
//! write cost a second write and listings eventually consistent, for a command
//! run by hand.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TimeToLiveSpecification,
};

use super::{ClientEntry, ClientRecord, FeedEntry, GrantRecord, Store, StoreError, StoreFuture};

/// The partition key attribute (a string).
pub const PARTITION_KEY: &str = "pk";
/// The sort key attribute (a string).
pub const SORT_KEY: &str = "sk";
/// The table's TTL attribute: Unix seconds, a number.
pub const TTL_ATTRIBUTE: &str = "expires_at";

/// The partition key of the feed. `template.yaml` confines the function's
/// PutItem to it (the issuer appends, it never writes clients).
pub const FEED_PK: &str = "feed";
/// The sort key of a client's own item.
const CLIENT_SK: &str = "client";
const GRANT_SK_PREFIX: &str = "grant#";
/// Unix milliseconds fit 13 digits until the year 2286; zero-padded, string
/// order is time order.
const AT_MS_DIGITS: usize = 13;

/// What a table for [`DynamoStore`] is created with, in one place: key
/// attributes, billing mode and TTL attribute. `template.yaml` declares the
/// same (tests/tests/deploy.rs checks it against these constants).
pub fn table_layout() -> (Vec<AttributeDefinition>, Vec<KeySchemaElement>, BillingMode) {
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("attribute definition has its required fields")
    };
    let key = |name: &str, key_type| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(key_type)
            .build()
            .expect("key schema element has its required fields")
    };
    (
        vec![attr(PARTITION_KEY), attr(SORT_KEY)],
        vec![
            key(PARTITION_KEY, KeyType::Hash),
            key(SORT_KEY, KeyType::Range),
        ],
        // On-demand: revocations and registry writes are rare and bursty,
        // polls steady and tiny; nothing to provision or auto-scale.
        BillingMode::PayPerRequest,
    )
}

/// The shared store on DynamoDB. Keeps no cache ([`super::view`] does).
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    /// The table `table` in the region and with the credentials of the
    /// standard AWS chain (`AWS_REGION`, `AWS_ENDPOINT_URL`, profile, role).
    pub async fn from_env(table: &str) -> DynamoStore {
        DynamoStore::from_env_in_region(table, None).await
    }

    /// Like [`DynamoStore::from_env`], with the region given explicitly (the
    /// CLI's `--region`) rather than from the environment.
    pub async fn from_env_in_region(table: &str, region: Option<&str>) -> DynamoStore {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = region {
            loader = loader.region(aws_config::Region::new(region.to_string()));
        }
        DynamoStore::from_sdk_config(&loader.load().await, table)
    }

    /// The table `table` through an already loaded AWS configuration (tests
    /// point it at an emulator). Calls still give up after
    /// [`crate::secrets::aws::OPERATION_TIMEOUT`].
    pub fn from_sdk_config(config: &aws_config::SdkConfig, table: &str) -> DynamoStore {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .operation_timeout(crate::secrets::aws::OPERATION_TIMEOUT)
            .build();
        let conf = aws_sdk_dynamodb::config::Builder::from(config)
            .timeout_config(timeouts)
            .build();
        DynamoStore {
            client: Client::from_conf(conf),
            table: table.to_string(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Create the table as [`table_layout`] says, wait until it is active and
    /// turn on TTL for [`TTL_ATTRIBUTE`]. For tests and emulators: on AWS,
    /// `template.yaml` creates the table (with point-in-time recovery too).
    pub async fn create_table(&self) -> Result<(), StoreError> {
        use aws_sdk_dynamodb::client::Waiters;
        let (attributes, keys, billing) = table_layout();
        self.client
            .create_table()
            .table_name(&self.table)
            .set_attribute_definitions(Some(attributes))
            .set_key_schema(Some(keys))
            .billing_mode(billing)
            .send()
            .await
            .map_err(|e| self.unavailable("CreateTable", &e, None))?;
        self.client
            .wait_until_table_exists()
            .table_name(&self.table)
            .wait(Duration::from_secs(60))
            .await
            .map_err(|e| self.unavailable("waiting for the table", &e, None))?;
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(TTL_ATTRIBUTE)
                    .build()
                    .expect("TTL specification has its required fields"),
            )
            .send()
            .await
            .map_err(|e| self.unavailable("UpdateTimeToLive", &e, None))?;
        Ok(())
    }

    /// An SDK failure as [`StoreError::Unavailable`], naming the operation and
    /// the table. DynamoDB's messages do not echo attribute values, but a
    /// secret hash is blanked out all the same should one ever appear.
    fn unavailable(
        &self,
        operation: &str,
        err: &(dyn std::error::Error + 'static),
        secret_hash: Option<&str>,
    ) -> StoreError {
        let mut message = format!(
            "DynamoDB {operation} on table `{}`: {}",
            self.table,
            DisplayErrorContext(err)
        );
        if let Some(hash) = secret_hash.filter(|h| !h.is_empty()) {
            message = message.replace(hash, "<secret hash>");
        }
        StoreError::Unavailable(message)
    }

    async fn client_entry(&self, id: &str) -> Result<Option<ClientEntry>, StoreError> {
        let pk = client_pk(id);
        let mut record = None;
        let mut grants = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", PARTITION_KEY)
                .expression_attribute_values(":pk", s(&pk))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| self.unavailable("Query (client)", &e, None))?;
            for item in page.items() {
                let sk = string(item, SORT_KEY, &pk)?;
                if sk == CLIENT_SK {
                    record = Some(client_from_item(item, &pk)?);
                } else if sk.starts_with(GRANT_SK_PREFIX) {
                    grants.push(grant_from_item(item, &pk)?);
                }
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        // Grants without their client item (one removed by hand) mean nothing.
        Ok(record.map(|client| ClientEntry { client, grants }))
    }

    async fn all_clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        let mut clients = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("#sk = :client")
                .expression_attribute_names("#sk", SORT_KEY)
                .expression_attribute_values(":client", s(CLIENT_SK))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| self.unavailable("Scan (clients)", &e, None))?;
            for item in page.items() {
                let pk = string(item, PARTITION_KEY, "client item")?;
                clients.push(client_from_item(item, pk)?);
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        clients.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(clients)
    }

    async fn put_client(
        &self,
        record: &ClientRecord,
        expected_version: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(client_item(record)))
            .expression_attribute_names("#pk", PARTITION_KEY);
        put = match expected_version {
            None => put.condition_expression("attribute_not_exists(#pk)"),
            // `version = :v` is false on a missing item too; the failure
            // says which case it was (the old item, or none).
            Some(version) => put
                .condition_expression("attribute_exists(#pk) AND #version = :expected")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":expected", n(version))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                ),
        };
        let err = match put.send().await {
            Ok(_) => return Ok(()),
            Err(err) => err,
        };
        let SdkError::ServiceError(service) = &err else {
            return Err(self.unavailable("PutItem (client)", &err, Some(&record.secret_hash)));
        };
        let PutItemError::ConditionalCheckFailedException(failed) = service.err() else {
            return Err(self.unavailable("PutItem (client)", &err, Some(&record.secret_hash)));
        };
        let Some(expected) = expected_version else {
            return Err(StoreError::Conflict(format!(
                "client `{}` already exists",
                record.id
            )));
        };
        // The old item comes back with the failure (DynamoDB; emulators may
        // leave it out): without it, one strongly consistent read tells.
        let exists = match failed.item() {
            Some(item) => !item.is_empty(),
            None => self.client_entry(&record.id).await?.is_some(),
        };
        Err(if exists {
            StoreError::Conflict(format!(
                "client `{}` changed since version {expected} was read",
                record.id
            ))
        } else {
            StoreError::NotFound(format!("client `{}`", record.id))
        })
    }

    async fn put_grant_item(&self, grant: &GrantRecord) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(grant_item(grant)))
            .send()
            .await
            .map_err(|e| self.unavailable("PutItem (grant)", &e, None))?;
        Ok(())
    }

    async fn delete_grant(&self, client: &str, api: &str) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(&client_pk(client)))
            .key(SORT_KEY, s(&grant_sk(api)))
            // Only the key back: enough to tell whether there was one.
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| self.unavailable("DeleteItem (grant)", &e, None))?;
        Ok(out.attributes().is_some_and(|a| !a.is_empty()))
    }

    async fn append_entry(&self, entry: &FeedEntry) -> Result<(), StoreError> {
        let json = serde_json::to_string(entry)
            .map_err(|e| StoreError::Invalid(format!("feed entry `{}`: {e}", entry.id)))?;
        let mut item = HashMap::from([
            (PARTITION_KEY.to_string(), s(FEED_PK)),
            (SORT_KEY.to_string(), s(&feed_sk(entry.at_ms, &entry.id))),
            ("entry".to_string(), s(&json)),
        ]);
        if let Some(expires_at) = entry.expires_at() {
            item.insert(TTL_ATTRIBUTE.to_string(), n(expires_at));
        }
        // Same key, same entry: writing it twice is harmless, no condition.
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| self.unavailable("PutItem (feed)", &e, None))?;
        Ok(())
    }

    async fn entries_since(&self, since_ms: u64, now: u64) -> Result<Vec<FeedEntry>, StoreError> {
        let mut entries = Vec::new();
        let mut start = None;
        // `<since, 13 digits>` sorts before every `<since>#<id>`: entries
        // written in the very millisecond `since_ms` are included.
        let from = format!("{since_ms:0width$}", width = AT_MS_DIGITS);
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :feed AND #sk >= :from")
                // Saves transferring entries DynamoDB has not deleted yet
                // (not read units); the check below is the one that counts.
                .filter_expression("attribute_not_exists(#ttl) OR #ttl > :now")
                .expression_attribute_names("#pk", PARTITION_KEY)
                .expression_attribute_names("#sk", SORT_KEY)
                .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
                .expression_attribute_values(":feed", s(FEED_PK))
                .expression_attribute_values(":from", s(&from))
                .expression_attribute_values(":now", n(now))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| self.unavailable("Query (feed)", &e, None))?;
            for item in page.items() {
                let sk = string(item, SORT_KEY, FEED_PK)?;
                let json = string(item, "entry", sk)?;
                let entry: FeedEntry = serde_json::from_str(json)
                    .map_err(|e| StoreError::Invalid(format!("feed item `{sk}`: {e}")))?;
                if !entry.expired(now) {
                    entries.push(entry);
                }
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        Ok(entries)
    }
}

impl Store for DynamoStore {
    fn describe(&self) -> String {
        format!("dynamodb:{}", self.table)
    }

    fn client<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<ClientEntry>> {
        Box::pin(self.client_entry(id))
    }

    fn clients(&self) -> StoreFuture<'_, Vec<ClientRecord>> {
        Box::pin(self.all_clients())
    }

    fn create_client<'a>(&'a self, record: &'a ClientRecord) -> StoreFuture<'a, ()> {
        Box::pin(self.put_client(record, None))
    }

    fn update_client<'a>(
        &'a self,
        record: &'a ClientRecord,
        expected_version: u64,
    ) -> StoreFuture<'a, ()> {
        Box::pin(self.put_client(record, Some(expected_version)))
    }

    fn put_grant<'a>(&'a self, grant: &'a GrantRecord) -> StoreFuture<'a, ()> {
        Box::pin(self.put_grant_item(grant))
    }

    fn remove_grant<'a>(&'a self, client: &'a str, api: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(self.delete_grant(client, api))
    }

    fn append<'a>(&'a self, entry: &'a FeedEntry) -> StoreFuture<'a, ()> {
        Box::pin(self.append_entry(entry))
    }

    fn feed_since(&self, since_ms: u64, now: u64) -> StoreFuture<'_, Vec<FeedEntry>> {
        Box::pin(self.entries_since(since_ms, now))
    }
}

type Item = HashMap<String, AttributeValue>;

fn client_pk(id: &str) -> String {
    format!("client#{id}")
}

fn grant_sk(api: &str) -> String {
    format!("{GRANT_SK_PREFIX}{api}")
}

fn feed_sk(at_ms: u64, id: &str) -> String {
    format!("{at_ms:0width$}#{id}", width = AT_MS_DIGITS)
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_string())
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn client_item(record: &ClientRecord) -> Item {
    let mut item = HashMap::from([
        (PARTITION_KEY.to_string(), s(&client_pk(&record.id))),
        (SORT_KEY.to_string(), s(CLIENT_SK)),
        ("id".to_string(), s(&record.id)),
        ("secret_hash".to_string(), s(&record.secret_hash)),
        (
            "metadata".to_string(),
            AttributeValue::M(
                record
                    .metadata
                    .iter()
                    .map(|(k, v)| (k.clone(), s(v)))
                    .collect(),
            ),
        ),
        (
            "introspect".to_string(),
            AttributeValue::Bool(record.introspect),
        ),
        ("version".to_string(), n(record.version)),
    ]);
    if let Some(name) = &record.name {
        item.insert("name".to_string(), s(name));
    }
    item
}

fn grant_item(grant: &GrantRecord) -> Item {
    HashMap::from([
        (PARTITION_KEY.to_string(), s(&client_pk(&grant.client))),
        (SORT_KEY.to_string(), s(&grant_sk(&grant.api))),
        ("client".to_string(), s(&grant.client)),
        ("api".to_string(), s(&grant.api)),
        (
            "scopes".to_string(),
            AttributeValue::L(grant.scopes.iter().map(|scope| s(scope)).collect()),
        ),
    ])
}

/// A client item back as a record; `key` names the item in errors (never a
/// value: a message must not carry the secret hash).
fn client_from_item(item: &Item, key: &str) -> Result<ClientRecord, StoreError> {
    let metadata = match item.get("metadata") {
        None => BTreeMap::new(),
        Some(AttributeValue::M(map)) => map
            .iter()
            .map(|(k, v)| match v {
                AttributeValue::S(v) => Ok((k.clone(), v.clone())),
                _ => Err(invalid(key, "metadata", "a map of strings")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid(key, "metadata", "a map of strings")),
    };
    let introspect = match item.get("introspect") {
        None => false,
        Some(AttributeValue::Bool(b)) => *b,
        Some(_) => return Err(invalid(key, "introspect", "a boolean")),
    };
    let name = match item.get("name") {
        None | Some(AttributeValue::Null(_)) => None,
        Some(AttributeValue::S(name)) => Some(name.clone()),
        Some(_) => return Err(invalid(key, "name", "a string")),
    };
    Ok(ClientRecord {
        id: string(item, "id", key)?.to_string(),
        name,
        secret_hash: string(item, "secret_hash", key)?.to_string(),
        metadata,
        introspect,
        version: number(item, "version", key)?,
    })
}

fn grant_from_item(item: &Item, key: &str) -> Result<GrantRecord, StoreError> {
    let scopes = match item.get("scopes") {
        Some(AttributeValue::L(list)) => list
            .iter()
            .map(|v| match v {
                AttributeValue::S(scope) => Ok(scope.clone()),
                _ => Err(invalid(key, "scopes", "a list of strings")),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(invalid(key, "scopes", "a list of strings")),
    };
    Ok(GrantRecord {
        client: string(item, "client", key)?.to_string(),
        api: string(item, "api", key)?.to_string(),
        scopes,
    })
}

fn string<'i>(item: &'i Item, name: &str, key: &str) -> Result<&'i str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Ok(value),
        _ => Err(invalid(key, name, "a string")),
    }
}

fn number(item: &Item, name: &str, key: &str) -> Result<u64, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(value)) => value
            .parse()
            .map_err(|_| invalid(key, name, "a whole number")),
        _ => Err(invalid(key, name, "a number")),
    }
}

fn invalid(key: &str, attribute: &str, expected: &str) -> StoreError {
    StoreError::Invalid(format!(
        "DynamoDB item `{key}`: attribute `{attribute}` is not {expected}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ClientRecord {
        ClientRecord {
            id: "app#1".into(),
            name: Some("App".into()),
            secret_hash: "sha256:00ff".into(),
            metadata: BTreeMap::from([("tenant".into(), "acme".into())]),
            introspect: true,
            version: 7,
        }
    }

    #[test]
    fn client_items_round_trip() {
        let item = client_item(&record());
        assert_eq!(item[PARTITION_KEY], s("client#app#1"));
        assert_eq!(item[SORT_KEY], s("client"));
        assert_eq!(client_from_item(&item, "k").unwrap(), record());
    }

    #[test]
    fn grant_items_round_trip_with_empty_scopes() {
        let grant = GrantRecord {
            client: "app".into(),
            api: "https://api.test".into(),
            scopes: vec![],
        };
        let item = grant_item(&grant);
        assert_eq!(item[SORT_KEY], s("grant#https://api.test"));
        assert_eq!(grant_from_item(&item, "k").unwrap(), grant);
    }

    #[test]
    fn feed_keys_sort_by_time() {
        let early = feed_sk(999, "ff");
        let late = feed_sk(1_000, "00");
        assert!(early < late, "{early} < {late}");
        assert_eq!(late, "0000000001000#00");
        // The lower bound of a query includes the same millisecond.
        assert!(format!("{:013}", 1_000) <= late);
    }

    #[test]
    fn unreadable_items_are_invalid_without_values() {
        let mut item = client_item(&record());
        item.insert("version".into(), s("seven"));
        let err = client_from_item(&item, "client#app#1").unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
        assert!(!err.to_string().contains("sha256"), "{err}");
    }
}
