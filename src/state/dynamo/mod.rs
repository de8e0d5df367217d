//! The DynamoDB backend (`[state] backend = "dynamodb"`): the state of replicas in one table,
//! and the fenced lease that lets exactly one of them poll.
//!
//! The item layout (partition key `pk`, sort key `sk`, both strings) is documented in
//! `docs/dynamodb-state.md`; [`keys`] builds every key. Every write is one
//! `TransactWriteItems` (a poll commit over the transaction limits is several, the cursor in
//! the last: see [`commit`]), and while this replica holds the lease each transaction carries
//! a `ConditionCheck` on the lease item's fence, so a replica that lost the lease (paused,
//! partitioned) can never commit after the new leader took over: the write is refused, the
//! replica becomes a follower and says so ([`StateError::Fenced`]).
//!
//! Calls are synchronous, as [`super::Backend`] asks: each runs the SDK's future to
//! completion on this backend's own current-thread runtime (on a scoped thread when the
//! caller is itself inside a runtime, where blocking on another would panic).

mod commit;
mod impls;
pub mod keys;
mod lease;

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, KeySchemaElement, KeyType,
    KeysAndAttributes, ScalarAttributeType, TableStatus, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;

pub use impls::CLAIM_MS;
pub use lease::Leadership;

use super::StateError;
use crate::config::DynamoConfig;

/// The newest schema version of the table this binary knows (the `meta`/`schema` item).
pub const SCHEMA_VERSION: u32 = 1;

/// Actions per `TransactWriteItems` (DynamoDB's limit is 100; one is the fence check).
const MAX_TX_ITEMS: usize = 100;
/// Bytes per transaction we aim under (DynamoDB's limit is 4 MB, counted with names).
const MAX_TX_BYTES: usize = 3_500_000;
/// Keys per `BatchGetItem` (DynamoDB's limit).
const MAX_BATCH_GET: usize = 100;
/// Requests per `BatchWriteItem` (DynamoDB's limit).
const MAX_BATCH_WRITE: usize = 25;
/// How long creating a table may take before rolewatch gives up waiting for it.
const CREATE_WAIT: Duration = Duration::from_secs(120);

/// An item: attribute name to value.
pub(crate) type Item = HashMap<String, AttributeValue>;

/// The state in one DynamoDB table.
pub struct DynamoState {
    client: Client,
    table: String,
    /// This replica's name in the lease item.
    owner: String,
    lease: lease::LeaseState,
    /// When each source's expired seen rows were last pruned (unix ms of the commit).
    pruned_ms: HashMap<String, i64>,
    /// How often a source's expired seen rows are pruned (ms of commit time).
    prune_every_ms: i64,
}

impl std::fmt::Debug for DynamoState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoState")
            .field("table", &self.table)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// What [`DynamoState::inspect`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// The schema version; `None` before the first rolewatch started on the table.
    pub schema: Option<u32>,
    /// The lease: owner, fence, expiry (unix ms).
    pub lease: Option<(String, u64, i64)>,
    /// The newest baseline of each role key asked about, in order: when it was taken (unix
    /// ms), its JSON.
    pub baselines: Vec<Option<(i64, String)>>,
}

/// Whether the table held a rolewatch state before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// The schema item was written now: a new state.
    Fresh,
    /// The schema item was there.
    Existing,
}

impl DynamoState {
    /// Connects to the configured table (creating it first when it is missing and
    /// `create_table` is set), checks or writes its schema version, and names this replica
    /// `owner` in the lease.
    ///
    /// # Errors
    ///
    /// No credentials, a missing table (with what to do), a table of a newer rolewatch, or a
    /// failed request: each names the table.
    pub fn open(cfg: &DynamoConfig, owner: &str) -> Result<(DynamoState, Freshness), StateError> {
        Self::open_inner(cfg, owner, None)
    }

    /// [`DynamoState::open`] with a given SDK configuration (tests: an endpoint and
    /// credentials of their own) instead of the environment's.
    ///
    /// # Errors
    ///
    /// As [`DynamoState::open`].
    pub fn open_with_sdk(
        cfg: &DynamoConfig,
        owner: &str,
        sdk: &aws_config::SdkConfig,
    ) -> Result<(DynamoState, Freshness), StateError> {
        Self::open_inner(cfg, owner, Some(sdk))
    }

    fn open_inner(
        cfg: &DynamoConfig,
        owner: &str,
        given: Option<&aws_config::SdkConfig>,
    ) -> Result<(DynamoState, Freshness), StateError> {
        let (rt, client) = Self::client(cfg, given)?;
        Self::finish_open(cfg, owner, rt, client)
    }

    /// The backend's runtime and a DynamoDB client: on `given`, or on the standard AWS
    /// configuration for the table's region.
    fn client(
        cfg: &DynamoConfig,
        given: Option<&aws_config::SdkConfig>,
    ) -> Result<(&'static tokio::runtime::Runtime, Client), StateError> {
        let rt = runtime().map_err(|detail| StateError::Dynamo {
            table: cfg.table.clone(),
            op: "start the DynamoDB client",
            detail,
        })?;
        if let Some(sdk) = given {
            return Ok((rt, Client::new(sdk)));
        }
        let region = cfg.region.clone();
        let sdk = block(rt, async move { crate::aws::load(&region).await }).map_err(|e| {
            StateError::Dynamo {
                table: cfg.table.clone(),
                op: "load the AWS configuration",
                detail: format!("{e:#}"),
            }
        })?;
        Ok((rt, Client::new(&sdk)))
    }

    /// What `rolewatch doctor` reads of the table, writing nothing: the table must exist;
    /// returns its schema version (`None`: no rolewatch state yet), the lease
    /// `(owner, fence, expires_ms)` and the newest baseline of `role_name`.
    ///
    /// # Errors
    ///
    /// No credentials, a missing table (with what to do), a failed request.
    pub fn inspect(cfg: &DynamoConfig, role_keys: &[String]) -> Result<Inspection, StateError> {
        let (_rt, client) = Self::client(cfg, None)?;
        let mut state = DynamoState {
            client,
            table: cfg.table.clone(),
            owner: "doctor".into(),
            lease: lease::LeaseState::new(0),
            pruned_ms: HashMap::new(),
            prune_every_ms: commit::PRUNE_EVERY_MS,
        };
        state.ensure_table(false)?;
        let schema = state
            .get(keys::meta("schema"), "read the schema version")?
            .and_then(|i| num(&i, "version"))
            .map(|v| u32::try_from(v).unwrap_or(u32::MAX));
        let lease = state.get(keys::meta("lease"), "read the lease")?.map(|i| {
            (
                text(&i, "owner").unwrap_or_default(),
                u64::try_from(num(&i, "fence").unwrap_or(0)).unwrap_or(0),
                num(&i, "expires_ms").unwrap_or(0),
            )
        });
        let mut baselines = Vec::with_capacity(role_keys.len());
        for key in role_keys {
            baselines.push(if schema.is_some() {
                crate::state::Backend::latest_baseline(&state, key)?
            } else {
                None
            });
        }
        Ok(Inspection {
            schema,
            lease,
            baselines,
        })
    }

    fn finish_open(
        cfg: &DynamoConfig,
        owner: &str,
        _rt: &'static tokio::runtime::Runtime,
        client: Client,
    ) -> Result<(DynamoState, Freshness), StateError> {
        let mut state = DynamoState {
            client,
            table: cfg.table.clone(),
            owner: owner.to_owned(),
            lease: lease::LeaseState::new(i64::try_from(cfg.lease.as_millis()).unwrap_or(i64::MAX)),
            pruned_ms: HashMap::new(),
            prune_every_ms: commit::PRUNE_EVERY_MS,
        };
        state.ensure_table(cfg.create_table)?;
        let fresh = state.ensure_schema()?;
        Ok((state, fresh))
    }

    /// Prunes expired seen rows at every commit (tests; the default is every 10 minutes per
    /// source: an expired row is read only by exact key, so it may stay a while).
    pub fn prune_at_every_commit(&mut self) {
        self.prune_every_ms = 0;
    }

    /// The table's name.
    #[must_use]
    pub fn table(&self) -> &str {
        &self.table
    }

    fn ensure_table(&mut self, create: bool) -> Result<(), StateError> {
        let client = self.client.clone();
        let table = self.table.clone();
        let described =
            self.block(async move { client.describe_table().table_name(table).send().await });
        match described {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                if !create {
                    return Err(StateError::Dynamo {
                        table: self.table.clone(),
                        op: "find the table",
                        detail: "it does not exist: create it with deploy/cloudformation (the \
                                 StateTable resource), or set [state] create_table = true to \
                                 let rolewatch create it (on-demand billing)"
                            .into(),
                    });
                }
                self.create_table()
            }
            Err(e) => Err(self.sdk_error("describe the table", &e)),
        }
    }

    fn create_table(&mut self) -> Result<(), StateError> {
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
        };
        let built = (|| {
            Ok::<_, aws_sdk_dynamodb::error::BuildError>((
                attr("pk")?,
                attr("sk")?,
                key("pk", KeyType::Hash)?,
                key("sk", KeyType::Range)?,
            ))
        })()
        .map_err(|e| self.build_error("create the table", &e))?;
        let client = self.client.clone();
        let table = self.table.clone();
        let created = self.block(async move {
            client
                .create_table()
                .table_name(table)
                .attribute_definitions(built.0)
                .attribute_definitions(built.1)
                .key_schema(built.2)
                .key_schema(built.3)
                .billing_mode(BillingMode::PayPerRequest)
                .send()
                .await
        });
        match created {
            Ok(_) => {}
            // Another replica created it in between.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_in_use_exception()) => {}
            Err(e) => return Err(self.sdk_error("create the table", &e)),
        }
        tracing::warn!(table = %self.table, "Created the DynamoDB state table (on-demand billing)");
        let client = self.client.clone();
        let table = self.table.clone();
        let waited = self.block(async move {
            let start = tokio::time::Instant::now();
            loop {
                let d = client.describe_table().table_name(&table).send().await?;
                if d.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                    return Ok(true);
                }
                if start.elapsed() > CREATE_WAIT {
                    return Ok(false);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        match waited {
            Ok(true) => Ok(()),
            Ok(false) => Err(StateError::Dynamo {
                table: self.table.clone(),
                op: "create the table",
                detail: format!("it was not active after {} s", CREATE_WAIT.as_secs()),
            }),
            Err(e) => Err(self.sdk_error("wait for the new table", &e)),
        }
    }

    fn ensure_schema(&mut self) -> Result<Freshness, StateError> {
        let found = self.get(keys::meta("schema"), "read the schema version")?;
        if let Some(item) = found {
            let version = num(&item, "version").unwrap_or(0);
            let version = u32::try_from(version).unwrap_or(u32::MAX);
            if version > SCHEMA_VERSION {
                return Err(StateError::DynamoTooNew {
                    table: self.table.clone(),
                    found: version,
                    known: SCHEMA_VERSION,
                });
            }
            // Version 1 is the first: no migrations yet. A later version migrates here, item
            // by item, each idempotent, before writing the new number.
            return Ok(Freshness::Existing);
        }
        let mut item = keys::meta("schema");
        item.insert("version".into(), n(i64::from(SCHEMA_VERSION)));
        let put = commit::put(&self.table, item, Some("attribute_not_exists(pk)"), None)
            .map_err(|e| self.build_error("write the schema version", &e))?;
        match self.transact_unfenced("write the schema version", vec![put]) {
            Ok(()) => Ok(Freshness::Fresh),
            // Another replica wrote it first.
            Err(TxFailure::Conditions(_)) => Ok(Freshness::Existing),
            Err(TxFailure::Error(e)) => Err(e),
        }
    }

    /// Runs `f` to completion on this backend's runtime.
    fn block<F>(&self, f: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        match runtime() {
            Ok(rt) => block(rt, f),
            // Made by `open`, which fails without it: a DynamoState exists only with it.
            Err(e) => unreachable!("the DynamoDB runtime is gone: {e}"),
        }
    }

    fn sdk_error<E, R>(&self, op: &'static str, e: &SdkError<E, R>) -> StateError
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let detail = match e {
            SdkError::ServiceError(se) => {
                let code = se.err().code().unwrap_or("unknown error");
                match se.err().message() {
                    Some(m) => format!("{code}: {m}"),
                    None => code.to_owned(),
                }
            }
            other => crate::aws::chain_text(other),
        };
        StateError::Dynamo {
            table: self.table.clone(),
            op,
            detail,
        }
    }

    fn build_error(&self, op: &'static str, e: &aws_sdk_dynamodb::error::BuildError) -> StateError {
        StateError::Dynamo {
            table: self.table.clone(),
            op,
            detail: e.to_string(),
        }
    }

    /// One item by key, read consistently.
    fn get(&self, key: Item, op: &'static str) -> Result<Option<Item>, StateError> {
        let client = self.client.clone();
        let table = self.table.clone();
        self.block(async move {
            client
                .get_item()
                .table_name(table)
                .set_key(Some(key))
                .consistent_read(true)
                .send()
                .await
        })
        .map(|out| out.item)
        .map_err(|e| self.sdk_error(op, &e))
    }

    /// Many items by key (any number; missing ones are left out), read consistently.
    fn get_many(&self, mut keys: Vec<Item>, op: &'static str) -> Result<Vec<Item>, StateError> {
        // BatchGetItem refuses a list with a key twice.
        let mut once = std::collections::HashSet::new();
        keys.retain(|k| once.insert((text(k, "pk"), text(k, "sk"))));
        let mut found = Vec::new();
        for chunk in keys.chunks(MAX_BATCH_GET) {
            let mut pending = chunk.to_vec();
            // Unprocessed keys (throttling) are asked again, with a pause.
            for attempt in 0..10u32 {
                if pending.is_empty() {
                    break;
                }
                if attempt > 0 {
                    std::thread::sleep(Duration::from_millis(50 * u64::from(attempt)));
                }
                let ka = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut pending)))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| self.build_error(op, &e))?;
                let client = self.client.clone();
                let table = self.table.clone();
                let out = self
                    .block(async move {
                        client
                            .batch_get_item()
                            .request_items(table, ka)
                            .send()
                            .await
                    })
                    .map_err(|e| self.sdk_error(op, &e))?;
                if let Some(mut r) = out.responses {
                    found.extend(r.remove(&self.table).unwrap_or_default());
                }
                if let Some(mut u) = out.unprocessed_keys {
                    if let Some(ka) = u.remove(&self.table) {
                        pending = ka.keys;
                    }
                }
            }
            if !pending.is_empty() {
                return Err(StateError::Dynamo {
                    table: self.table.clone(),
                    op,
                    detail: format!("{} keys stayed unprocessed (throttled)", pending.len()),
                });
            }
        }
        Ok(found)
    }

    /// Every item of partition `pk` whose sort key starts with `prefix`, in sort-key order
    /// (descending with `newest_first`), at most `limit`.
    fn query(
        &self,
        pk: &str,
        prefix: Option<&str>,
        newest_first: bool,
        limit: Option<usize>,
        op: &'static str,
    ) -> Result<Vec<Item>, StateError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let client = self.client.clone();
            let table = self.table.clone();
            let pk = pk.to_owned();
            let prefix = prefix.map(str::to_owned);
            let page_limit =
                limit.map(|l| i32::try_from(l - items.len().min(l)).unwrap_or(i32::MAX));
            let from = start.take();
            let out = self
                .block(async move {
                    let mut q = client
                        .query()
                        .table_name(table)
                        .consistent_read(true)
                        .scan_index_forward(!newest_first)
                        .set_exclusive_start_key(from)
                        .expression_attribute_values(":p", AttributeValue::S(pk));
                    q = match prefix {
                        Some(p) => q
                            .key_condition_expression("pk = :p AND begins_with(sk, :s)")
                            .expression_attribute_values(":s", AttributeValue::S(p)),
                        None => q.key_condition_expression("pk = :p"),
                    };
                    if let Some(l) = page_limit {
                        q = q.limit(l.max(1));
                    }
                    q.send().await
                })
                .map_err(|e| self.sdk_error(op, &e))?;
            items.extend(out.items.unwrap_or_default());
            if limit.is_some_and(|l| items.len() >= l) {
                items.truncate(limit.unwrap_or(usize::MAX));
                break;
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(items)
    }

    /// How many items partition `pk` holds (a `Select=COUNT` query).
    fn count(&self, pk: &str, op: &'static str) -> Result<u64, StateError> {
        let mut total = 0u64;
        let mut start: Option<Item> = None;
        loop {
            let client = self.client.clone();
            let table = self.table.clone();
            let pk = pk.to_owned();
            let from = start.take();
            let out = self
                .block(async move {
                    client
                        .query()
                        .table_name(table)
                        .key_condition_expression("pk = :p")
                        .expression_attribute_values(":p", AttributeValue::S(pk))
                        .select(aws_sdk_dynamodb::types::Select::Count)
                        .set_exclusive_start_key(from)
                        .send()
                        .await
                })
                .map_err(|e| self.sdk_error(op, &e))?;
            total += u64::try_from(out.count).unwrap_or(0);
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(total)
    }

    /// Deletes items by key, in batches, outside any transaction (only for what may be
    /// deleted by anyone at any time: expired seen rows, baselines past the kept number).
    fn delete_many(&self, keys: Vec<Item>, op: &'static str) -> Result<usize, StateError> {
        use aws_sdk_dynamodb::types::{DeleteRequest, WriteRequest};
        let n = keys.len();
        for chunk in keys.chunks(MAX_BATCH_WRITE) {
            let mut pending = chunk
                .iter()
                .map(|k| {
                    DeleteRequest::builder()
                        .set_key(Some(k.clone()))
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| self.build_error(op, &e))?;
            for attempt in 0..10u32 {
                if pending.is_empty() {
                    break;
                }
                if attempt > 0 {
                    std::thread::sleep(Duration::from_millis(50 * u64::from(attempt)));
                }
                let client = self.client.clone();
                let table = self.table.clone();
                let batch = std::mem::take(&mut pending);
                let out = self
                    .block(async move {
                        client
                            .batch_write_item()
                            .request_items(table, batch)
                            .send()
                            .await
                    })
                    .map_err(|e| self.sdk_error(op, &e))?;
                if let Some(mut u) = out.unprocessed_items {
                    pending = u.remove(&self.table).unwrap_or_default();
                }
            }
        }
        Ok(n)
    }

    /// The fence check this replica's writes carry while it leads: the lease item still has
    /// its fence number.
    fn fence_check(&self, fence: u64) -> Result<TransactWriteItem, StateError> {
        ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(keys::meta("lease")))
            .condition_expression("fence = :fence")
            .expression_attribute_values(":fence", n_u(fence))
            .build()
            .map(|c| TransactWriteItem::builder().condition_check(c).build())
            .map_err(|e| self.build_error("check the lease fence", &e))
    }

    /// One transaction of `items`, carrying the fence check while this replica leads. A
    /// refused fence makes this replica a follower and is [`StateError::Fenced`]; other
    /// failed conditions are returned with their positions in `items`.
    fn transact(
        &mut self,
        op: &'static str,
        items: Vec<TransactWriteItem>,
    ) -> Result<(), TxFailure> {
        let fence = self.lease.fence();
        let Some(fence) = fence else {
            return self.transact_unfenced(op, items);
        };
        let mut all = Vec::with_capacity(items.len() + 1);
        all.push(self.fence_check(fence)?);
        all.extend(items);
        match self.transact_unfenced(op, all) {
            Ok(()) => Ok(()),
            Err(TxFailure::Conditions(failed)) if failed.contains(&0) => {
                self.lease.lost(fence);
                tracing::error!(
                    event = "lease_lost",
                    table = %self.table,
                    fence,
                    "A write was refused by the lease fence: another replica took over; this replica steps down and no longer polls"
                );
                Err(TxFailure::Error(StateError::Fenced {
                    table: self.table.clone(),
                    op,
                    fence,
                }))
            }
            Err(TxFailure::Conditions(failed)) => Err(TxFailure::Conditions(
                failed
                    .into_iter()
                    .filter_map(|i| i.checked_sub(1))
                    .collect(),
            )),
            Err(e) => Err(e),
        }
    }

    fn transact_unfenced(
        &self,
        op: &'static str,
        items: Vec<TransactWriteItem>,
    ) -> Result<(), TxFailure> {
        if items.is_empty() {
            return Ok(());
        }
        let client = self.client.clone();
        let sent = self.block(async move {
            client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await
        });
        match sent {
            Ok(_) => Ok(()),
            Err(e) => {
                if let Some(TransactWriteItemsError::TransactionCanceledException(c)) =
                    e.as_service_error()
                {
                    let failed: Vec<usize> = c
                        .cancellation_reasons()
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.code() == Some("ConditionalCheckFailed"))
                        .map(|(i, _)| i)
                        .collect();
                    if !failed.is_empty() {
                        return Err(TxFailure::Conditions(failed));
                    }
                }
                Err(TxFailure::Error(self.sdk_error(op, &e)))
            }
        }
    }

    /// [`Self::transact`] where any failed condition is an error (the caller expected none).
    fn write(&mut self, op: &'static str, items: Vec<TransactWriteItem>) -> Result<(), StateError> {
        match self.transact(op, items) {
            Ok(()) => Ok(()),
            Err(TxFailure::Error(e)) => Err(e),
            Err(TxFailure::Conditions(_)) => Err(StateError::Dynamo {
                table: self.table.clone(),
                op,
                detail: "a condition of the write failed (changed by another replica at the same time); it is retried on the next pass".into(),
            }),
        }
    }
}

/// Why a transaction did not commit.
enum TxFailure {
    /// These actions' conditions failed (positions in the list sent).
    Conditions(Vec<usize>),
    /// Anything else.
    Error(StateError),
}

impl From<StateError> for TxFailure {
    fn from(e: StateError) -> Self {
        TxFailure::Error(e)
    }
}

/// The backend's runtime: one per process, never dropped (a runtime dropped inside the
/// daemon's async context would panic).
fn runtime() -> Result<&'static tokio::runtime::Runtime, String> {
    static RT: std::sync::OnceLock<Result<tokio::runtime::Runtime, String>> =
        std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Runs `f` on `rt`; from inside another runtime (where `block_on` would panic), on a scoped
/// thread of its own.
fn block<F>(rt: &tokio::runtime::Runtime, f: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_err() {
        return rt.block_on(f);
    }
    std::thread::scope(|s| match s.spawn(|| rt.block_on(f)).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// A number attribute.
pub(crate) fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn n_u(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// A string attribute.
pub(crate) fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

/// A number attribute of `item`, if present and a number.
pub(crate) fn num(item: &Item, name: &str) -> Option<i64> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().ok(),
        _ => None,
    }
}

/// A string attribute of `item`, if present and a string.
pub(crate) fn text(item: &Item, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    }
}
