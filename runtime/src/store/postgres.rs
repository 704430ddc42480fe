//! [`PostgresStore`]: one PostgreSQL database shared by several replicas of
//! the same binary (`--store postgres://…`).
//!
//! # Why this shape
//!
//! * **tokio-postgres with a small pool (deadpool-postgres)**, not sqlx: the
//!   runtime is compiled into every generated binary, and this pair adds far
//!   less to a cold build (no macros, no second database driver);
//!   `LISTEN/NOTIFY` comes with the connection's message stream. Statements
//!   are prepared once per pooled connection. No TLS: connect over a
//!   private network or a local socket proxy.
//! * **Claims** take up to `n` queued rows (oldest first) in one `UPDATE …
//!   FROM (SELECT … FOR UPDATE SKIP LOCKED)`: replicas never wait on each
//!   other's rows and never take the same one. A running row whose lease
//!   expired (by the database's clock, `now()`: replicas' clocks never
//!   matter) is taken over the same way when no queued row is left.
//! * **Fencing**: each claim bumps `lease_epoch`; journal writes, the end of
//!   a run, renewals and releases name the epoch they hold and are refused
//!   ([`StoreError::LeaseLost`]) once another claim superseded it.
//! * **Exactly-once intake**: a dedupe key is a row of `dedupe` and a
//!   schedule tick a row of `schedule_ticks` (primary keys), inserted in the
//!   same statement or transaction as the run, so any replica can take any
//!   webhook and concurrent replicas firing one tick store one run.
//! * **Wake-ups**: storing or requeueing a queued run sends `NOTIFY
//!   flow_queue` (payload: the schema) right after the commit, one per
//!   burst; a listener connection turns it into [`Store::wake_hint`]. A
//!   hint only: workers still poll, and the listener signals once after
//!   every reconnect.
//! * **Connections** (LANGUAGE.md §12): a token fetch is claimed on the
//!   connection's row (a holder and a lease, by the database's clock), so
//!   replicas needing a token at once fetch it once and a rotated refresh
//!   token is not spent twice. A rate limit reserves each request's send
//!   time in one statement on the connection's row of `connection_limits`
//!   (its row lock serialises the replicas; times and waits by the
//!   database's clock).
//! * **One schema per integration** ([`PostgresOptions::schema`]), created
//!   with its tables by versioned migrations (`schema_version`), applied
//!   under an advisory lock so replicas starting together migrate once.
//!   Table names are schema-qualified in every statement (no `search_path`
//!   startup option, which PgBouncer refuses).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures::future::{BoxFuture, FutureExt as _};
use serde_json::{Map, Value};
use tokio::sync::Notify;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, NoTls, Row};

use super::{
    abandoned_message, callback_expired_message, encoded, keep_readable, state_from_rows,
    step_input, step_output, Callback, CallbackOutcome, CallbackState, Claimed, ConnectionTokens,
    Encoded, Enqueued, Execution, ExecutionFilter, Finish, Lease, NewCallback, NewExecution,
    ReadBack, Status, StepRecord, StepStatus, Store, StoreError, StoreResult, ValueColumns,
};

/// The `NOTIFY` channel of queued runs (the payload names the schema).
pub const CHANNEL: &str = "flow_queue";

/// Rows deleted per purge statement (keeps each transaction short).
const PURGE_CHUNK: i64 = 500;

/// The schema, one migration per entry; `schema_version` holds how many
/// have been applied. Append only: never edit a released migration. `$S`
/// stands for the (quoted) schema name.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE $S.executions (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,
    flow          TEXT NOT NULL,
    status        TEXT NOT NULL,
    trigger       TEXT NOT NULL,
    dedupe_key    TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at    TIMESTAMPTZ,
    finished_at   TIMESTAMPTZ,
    attempts      INTEGER NOT NULL DEFAULT 0,
    result        TEXT,
    error         TEXT,
    error_step    TEXT,
    lease_owner   TEXT,
    lease_expires TIMESTAMPTZ,
    lease_epoch   BIGINT NOT NULL DEFAULT 0,
    takeovers     INTEGER NOT NULL DEFAULT 0
) WITH (fillfactor = 80);
-- Rows are updated a few times each (claimed, renewed, finished): free
-- space per page keeps those updates HOT (no new index entries).
CREATE INDEX executions_queued ON $S.executions (seq) WHERE status = 'queued';
CREATE INDEX executions_leased ON $S.executions (lease_expires) WHERE status = 'running';
CREATE INDEX executions_failed ON $S.executions (seq) WHERE status = 'failed';
CREATE INDEX executions_by_flow ON $S.executions (flow, seq);
CREATE TABLE $S.journal (
    execution_id TEXT NOT NULL,
    key          TEXT NOT NULL,
    ord          INTEGER NOT NULL,
    call         TEXT NOT NULL,
    status       TEXT NOT NULL,
    attempts     INTEGER NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    finished_at  TIMESTAMPTZ NOT NULL,
    output       TEXT,
    error        TEXT,
    PRIMARY KEY (execution_id, key)
);
CREATE TABLE $S.dedupe (
    flow         TEXT NOT NULL,
    key          TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    PRIMARY KEY (flow, key)
);
CREATE TABLE $S.schedule_ticks (
    flow         TEXT NOT NULL,
    tick         TIMESTAMPTZ NOT NULL,
    execution_id TEXT NOT NULL,
    PRIMARY KEY (flow, tick)
);
-- Each schedule's latest tick: the row lock serialises replicas firing the
-- same schedule, and an earlier or equal tick is refused.
CREATE TABLE $S.schedules (
    flow         TEXT PRIMARY KEY,
    last_tick    TIMESTAMPTZ NOT NULL,
    execution_id TEXT NOT NULL
);
CREATE TABLE $S.state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE $S.meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#,
    // 2: X-Callback-Url callbacks, delivered until done or expired.
    r#"
CREATE TABLE $S.callbacks (
    id              TEXT PRIMARY KEY,
    execution_id    TEXT NOT NULL UNIQUE,
    url             TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at      TIMESTAMPTZ NOT NULL,
    last_error      TEXT
);
CREATE INDEX callbacks_due ON $S.callbacks (next_attempt_at) WHERE state = 'pending';
"#,
    // 3: connections (LANGUAGE.md §12). Each one's OAuth2 tokens, shared by
    // the replicas, and which replica is fetching new ones until when (a
    // generation of 0: claimed, nothing saved yet). The send times of the
    // last requests through each limited connection, ascending.
    r#"
CREATE TABLE $S.connections (
    name          TEXT PRIMARY KEY,
    access_token  TEXT,
    expires_at    TIMESTAMPTZ,
    refresh_token TEXT,
    generation    BIGINT NOT NULL DEFAULT 0,
    fetch_holder  TEXT,
    fetch_until   TIMESTAMPTZ
);
CREATE TABLE $S.connection_limits (
    name  TEXT PRIMARY KEY,
    sends TIMESTAMPTZ[] NOT NULL
);
"#,
    // 4: value columns as bytes: JSON text, or CBOR for a value holding
    // binary data (`store::encoding`). The rows written before are JSON
    // text and stay so, in UTF-8.
    r#"
ALTER TABLE $S.executions
    ALTER COLUMN trigger TYPE BYTEA USING convert_to(trigger, 'UTF8'),
    ALTER COLUMN result TYPE BYTEA USING convert_to(result, 'UTF8');
ALTER TABLE $S.journal ALTER COLUMN output TYPE BYTEA USING convert_to(output, 'UTF8');
ALTER TABLE $S.state ALTER COLUMN value TYPE BYTEA USING convert_to(value, 'UTF8');
"#,
    // 5: the executions page searches by dedupe key (`list` with a search).
    "CREATE INDEX executions_by_dedupe_key ON $S.executions (dedupe_key) WHERE dedupe_key IS NOT NULL;",
    // 6: each journal entry keeps its step's input (`StepRecord::input`).
    "ALTER TABLE $S.journal ADD COLUMN input BYTEA;",
];

/// How to open a [`PostgresStore`].
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// `postgres://user:password@host:port/database?…` (libpq URL syntax).
    pub url: String,
    /// The schema holding this integration's tables (created if missing):
    /// lowercase letters, digits and `_`, starting with a letter or `_`.
    pub schema: String,
    /// Most connections this process opens (plus one for `LISTEN`).
    pub pool_size: usize,
}

/// A [`Store`] in a PostgreSQL schema. See the module docs.
pub struct PostgresStore {
    pool: Pool,
    schema: String,
    wake: Arc<Notify>,
    /// Asks the notifier task to send `NOTIFY` (coalesced).
    queued: Arc<Notify>,
    listener: tokio::task::JoinHandle<()>,
    notifier: tokio::task::JoinHandle<()>,
    /// Plain queued runs (no dedupe key, no tick, not running) go to the
    /// intake tasks, which insert the ones waiting together.
    intake: tokio::sync::mpsc::UnboundedSender<PendingIntake>,
    intake_tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.listener.abort();
        self.notifier.abort();
        for task in &self.intake_tasks {
            task.abort();
        }
    }
}

/// A queued run waiting for an intake task to insert it.
struct PendingIntake {
    id: String,
    flow: String,
    trigger: Vec<u8>,
    inserted: tokio::sync::oneshot::Sender<StoreResult<()>>,
}

/// Intake tasks per process: how many inserts of waiting runs may be in
/// flight at once.
const INTAKE_TASKS: usize = 4;
/// Most runs one insert takes...
const INTAKE_BATCH: usize = 256;
/// ...and most bytes of trigger values (one statement holds them all).
const INTAKE_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Group commit of the intake: every accepted event used to be a statement
/// and a commit of its own, and with several replicas intake, not the
/// workers, bounded throughput. An intake task takes every run waiting
/// when it is free and inserts them with one statement and one commit;
/// while it does, the next runs gather for the next task. A failed batch
/// is tried again one run at a time, so that a run the database refuses
/// fails alone.
async fn intake_loop(
    pool: Pool,
    schema: String,
    waiting: Arc<tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<PendingIntake>>>,
    queued: Arc<Notify>,
) {
    let batch_sql = format!(
        "INSERT INTO {schema}.executions (id, flow, status, trigger, attempts, lease_epoch) \
         SELECT id, flow, 'queued', trigger, 0, 0 \
         FROM unnest($1::text[], $2::text[], $3::bytea[]) WITH ORDINALITY AS t(id, flow, trigger, n) \
         ORDER BY n"
    );
    let one_sql = format!(
        "INSERT INTO {schema}.executions (id, flow, status, trigger, attempts, lease_epoch) \
         VALUES ($1, $2, 'queued', $3, 0, 0)"
    );
    loop {
        let batch = {
            let mut waiting = waiting.lock().await;
            let Some(first) = waiting.recv().await else {
                return;
            };
            let mut bytes = first.trigger.len();
            let mut batch = vec![first];
            while batch.len() < INTAKE_BATCH && bytes < INTAKE_BATCH_BYTES {
                match waiting.try_recv() {
                    Ok(next) => {
                        bytes += next.trigger.len();
                        batch.push(next);
                    }
                    Err(_) => break,
                }
            }
            batch
        };
        let inserted = insert_batch(&pool, &batch_sql, &batch).await;
        match inserted {
            Ok(()) => {
                queued.notify_one();
                for run in batch {
                    let _ = run.inserted.send(Ok(()));
                }
            }
            Err(e) if batch.len() == 1 => {
                for run in batch {
                    let _ = run.inserted.send(Err(e.clone()));
                }
            }
            Err(_) => {
                for run in batch {
                    let one = insert_one(&pool, &one_sql, &run).await;
                    if one.is_ok() {
                        queued.notify_one();
                    }
                    let _ = run.inserted.send(one);
                }
            }
        }
    }
}

async fn insert_batch(pool: &Pool, sql: &str, batch: &[PendingIntake]) -> StoreResult<()> {
    let ids: Vec<&str> = batch.iter().map(|r| r.id.as_str()).collect();
    let flows: Vec<&str> = batch.iter().map(|r| r.flow.as_str()).collect();
    let triggers: Vec<&[u8]> = batch.iter().map(|r| r.trigger.as_slice()).collect();
    let client = pool.get().await.map_err(pool_error)?;
    let stmt = client.prepare_cached(sql).await.map_err(pg_error)?;
    let rows = client
        .execute(&stmt, &[&ids, &flows, &triggers])
        .await
        .map_err(pg_error)?;
    if rows as usize != batch.len() {
        return Err(StoreError::backend("not every new execution was stored"));
    }
    Ok(())
}

async fn insert_one(pool: &Pool, sql: &str, run: &PendingIntake) -> StoreResult<()> {
    let client = pool.get().await.map_err(pool_error)?;
    let stmt = client.prepare_cached(sql).await.map_err(pg_error)?;
    client
        .execute(&stmt, &[&run.id, &run.flow, &run.trigger])
        .await
        .map_err(pg_error)?;
    Ok(())
}

/// Most one `NOTIFY` per this interval and process.
const NOTIFY_EVERY: Duration = Duration::from_millis(10);

/// Sends `NOTIFY` after runs were queued: once for every burst, on a
/// connection of its own, outside the intake transactions (a `NOTIFY`
/// inside each would serialise their commits on PostgreSQL's notification
/// queue lock).
async fn notify_loop(pool: Pool, payload: String, queued: Arc<Notify>) {
    loop {
        queued.notified().await;
        let sent = async {
            let client = pool.get().await.map_err(pool_error)?;
            client
                .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
                .await
                .map_err(pg_error)
        }
        .await;
        if let Err(e) = sent {
            tracing::debug!(error = %e, "cannot send the queued-run hint");
        }
        tokio::time::sleep(NOTIFY_EVERY).await;
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.schema)
            .finish()
    }
}

fn pg_error(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => StoreError::Backend(format!(
            "postgres: {} ({}){}",
            db.message(),
            db.code().code(),
            db.detail().map(|d| format!(": {d}")).unwrap_or_default()
        )),
        None => StoreError::Backend(format!("postgres: {e}")),
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg_error(e),
        other => StoreError::Backend(format!("postgres connection pool: {other}")),
    }
}

/// Writes journal entry `$3..$11` (see [`StepParams::values`]) of the
/// execution `held.id` (a CTE named `held` of the statement; `$1` is the
/// execution's id), replacing an entry of the same key in its place.
macro_rules! insert_step_of_held {
    () => {
        "INSERT INTO $S.journal (execution_id, key, ord, call, status, attempts, \
         started_at, finished_at, output, error, input) \
         SELECT held.id, $3, (SELECT COUNT(*) FROM $S.journal WHERE execution_id = $1), \
         $4, $5, $6, $7, $8, $9, $10, $11 FROM held \
         ON CONFLICT (execution_id, key) DO UPDATE SET call = excluded.call, \
         status = excluded.status, attempts = excluded.attempts, \
         started_at = excluded.started_at, finished_at = excluded.finished_at, \
         output = excluded.output, error = excluded.error, input = excluded.input"
    };
}

/// A journal entry as statement parameters.
struct StepParams<'a> {
    record: &'a StepRecord,
    status: &'static str,
    attempts: i32,
    output: Option<Vec<u8>>,
    input: Option<Vec<u8>>,
}

impl<'a> StepParams<'a> {
    fn new(record: &'a StepRecord) -> StoreResult<StepParams<'a>> {
        Ok(StepParams {
            record,
            status: step_status(record.status),
            attempts: i32::try_from(record.attempts).unwrap_or(i32::MAX),
            output: encoded(record.output.as_ref())?.map(Encoded::into_bytes),
            input: encoded(record.input.as_ref())?.map(Encoded::into_bytes),
        })
    }

    /// `$3..$11` of [`insert_step_of_held!`]: key, call, status, attempts,
    /// started, finished, output, error, input.
    fn values(&self) -> [&(dyn ToSql + Sync); 9] {
        [
            &self.record.key,
            &self.record.call,
            &self.status,
            &self.attempts,
            &self.record.started_at,
            &self.record.finished_at,
            &self.output,
            &self.record.error,
            &self.input,
        ]
    }
}

/// A lease length in seconds, for `make_interval(secs => …)`.
fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn epoch(lease: &Lease) -> i64 {
    i64::try_from(lease.epoch).unwrap_or(i64::MAX)
}

/// Checks a schema name and returns it quoted for SQL.
fn valid_schema(name: &str) -> StoreResult<String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(format!("\"{name}\""))
    } else {
        Err(StoreError::Backend(format!(
            "invalid PostgreSQL schema name {name:?}: use lowercase letters, digits and _ (at most 63), starting with a letter or _"
        )))
    }
}

/// Renames schema `from` to `to` (a deleted instance's store, put aside).
/// A schema that does not exist is not an error: nothing was stored.
pub async fn rename_schema(url: &str, from: &str, to: &str) -> StoreResult<()> {
    let (from_q, to_q) = (valid_schema(from)?, valid_schema(to)?);
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| StoreError::Backend(format!("invalid PostgreSQL URL: {e}")))?;
    let (client, conn) = with_store_timeouts(config)
        .connect(NoTls)
        .await
        .map_err(|e| StoreError::Backend(format!("cannot connect to PostgreSQL: {e}")))?;
    let conn = tokio::spawn(conn);
    let renamed = client
        .batch_execute(&format!("ALTER SCHEMA {from_q} RENAME TO {to_q}"))
        .await;
    drop(client);
    let _ = conn.await;
    match renamed {
        Ok(()) => Ok(()),
        // `ALTER SCHEMA` has no IF EXISTS: a missing schema is fine.
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::INVALID_SCHEMA_NAME) => Ok(()),
        Err(e) => Err(StoreError::Backend(format!(
            "cannot rename schema {from}: {e}"
        ))),
    }
}

/// Drops the schemas named `PREFIX…_deleted_UNIXTIME` whose time is before
/// `before` (deleted instances' stores past their retention); returns their
/// names.
pub async fn drop_schemas_deleted_before(
    url: &str,
    prefix: &str,
    before: i64,
) -> StoreResult<Vec<String>> {
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| StoreError::Backend(format!("invalid PostgreSQL URL: {e}")))?;
    let (client, conn) = with_store_timeouts(config)
        .connect(NoTls)
        .await
        .map_err(|e| StoreError::Backend(format!("cannot connect to PostgreSQL: {e}")))?;
    let conn = tokio::spawn(conn);
    let dropped = async {
        let rows = client
            .query(
                "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1) AND nspname LIKE '%\\_deleted\\_%'",
                &[&prefix],
            )
            .await
            .map_err(|e| StoreError::Backend(format!("cannot list schemas: {e}")))?;
        let mut dropped = Vec::new();
        for row in rows {
            let name: String = row.get(0);
            let Some(time) = name
                .rsplit_once("_deleted_")
                .and_then(|(_, t)| t.parse::<i64>().ok())
            else {
                continue;
            };
            if time >= before {
                continue;
            }
            let quoted = valid_schema(&name)?;
            client
                .batch_execute(&format!("DROP SCHEMA {quoted} CASCADE"))
                .await
                .map_err(|e| StoreError::Backend(format!("cannot drop schema {name}: {e}")))?;
            dropped.push(name);
        }
        Ok(dropped)
    }
    .await;
    drop(client);
    let _ = conn.await;
    dropped
}

/// A schema name derived from an integration name (`orders-relay` →
/// `orders_relay`).
pub fn schema_for(integration: &str) -> String {
    let mut s: String = integration
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(63)
        .collect();
    if !s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') {
        s.insert(0, '_');
        s.truncate(63);
    }
    s
}

/// The conditions of [`Store::list`] and [`Store::count`], over the
/// arguments status, flow, (limit), since, until, search, cursor: one
/// statement for every filter, a condition whose argument is NULL holds.
/// The search is a union of two index lookups (the id's unique index, the
/// dedupe key's partial index); an unknown cursor compares with NULL, so
/// nothing is listed.
const LIST_CONDITIONS: &str = "($1::text IS NULL OR status = $1) \
     AND ($2::text IS NULL OR flow = $2) \
     AND ($4::timestamptz IS NULL OR created_at >= $4) \
     AND ($5::timestamptz IS NULL OR created_at < $5) \
     AND ($6::text IS NULL OR seq IN ( \
         SELECT seq FROM $S.executions WHERE id = $6 \
         UNION SELECT seq FROM $S.executions WHERE dedupe_key = $6)) \
     AND ($7::text IS NULL OR seq < (SELECT seq FROM $S.executions WHERE id = $7))";

/// The status and limit arguments of [`LIST_CONDITIONS`] (limit 0: 100).
fn status_and_limit(filter: &ExecutionFilter) -> (Option<&'static str>, i64) {
    let limit = if filter.limit == 0 { 100 } else { filter.limit };
    (
        filter.status.map(Status::as_str),
        i64::try_from(limit).unwrap_or(i64::MAX),
    )
}

/// `$1..$7` of [`LIST_CONDITIONS`] (`$3` is the limit).
fn list_params<'a>(
    status: &'a Option<&'static str>,
    limit: &'a i64,
    filter: &'a ExecutionFilter,
) -> [&'a (dyn ToSql + Sync); 7] {
    [
        status,
        &filter.flow,
        limit,
        &filter.since,
        &filter.until,
        &filter.search,
        &filter.before,
    ]
}

const EXEC_COLUMNS: &str = "id, flow, status, trigger, dedupe_key, created_at, started_at, \
     finished_at, attempts, result, error, error_step, lease_owner, lease_expires, lease_epoch, seq";

/// An execution as shown (by `get`, `list`): an unreadable column is `null`.
fn exec_from_row(r: &Row) -> StoreResult<Execution> {
    Ok(read_back(r)?.0)
}

fn read_back(r: &Row) -> StoreResult<ReadBack> {
    let g = |e: tokio_postgres::Error| pg_error(e);
    let status: String = r.try_get(2).map_err(g)?;
    let status = Status::parse(&status)
        .ok_or_else(|| StoreError::Backend(format!("unknown status {status:?} in the store")))?;
    let trigger: &[u8] = r.try_get(3).map_err(g)?;
    let result: Option<&[u8]> = r.try_get(9).map_err(g)?;
    let attempts: i32 = r.try_get(8).map_err(g)?;
    let epoch: i64 = r.try_get(14).map_err(g)?;
    let mut json = ValueColumns::default();
    let exec = Execution {
        id: r.try_get(0).map_err(g)?,
        flow: r.try_get(1).map_err(g)?,
        status,
        trigger: json.read(trigger, "trigger"),
        dedupe_key: r.try_get(4).map_err(g)?,
        created_at: r.try_get(5).map_err(g)?,
        started_at: r.try_get(6).map_err(g)?,
        finished_at: r.try_get(7).map_err(g)?,
        attempts: u32::try_from(attempts).unwrap_or(0),
        result: result.map(|r| json.read(r, "result")),
        error: r.try_get(10).map_err(g)?,
        error_step: r.try_get(11).map_err(g)?,
        lease_owner: r.try_get(12).map_err(g)?,
        lease_expires: r.try_get(13).map_err(g)?,
        lease_epoch: u64::try_from(epoch).unwrap_or(0),
    };
    Ok(json.finish(exec))
}

/// Rows claimed by one statement, oldest first.
fn claimed_rows(rows: Vec<Row>) -> StoreResult<Vec<ReadBack>> {
    let mut out: Vec<(i64, ReadBack)> = rows
        .iter()
        .map(|r| Ok((r.try_get::<_, i64>(15).map_err(pg_error)?, read_back(r)?)))
        .collect::<StoreResult<_>>()?;
    out.sort_by_key(|(seq, _)| *seq);
    Ok(out.into_iter().map(|(_, e)| e).collect())
}

fn step_status(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Succeeded => "succeeded",
        StepStatus::Failed => "failed",
    }
}

/// Keeps a `LISTEN` connection open and turns notifications for `schema`
/// into wake-ups; after every (re)connect it wakes once, since
/// notifications sent while it was away are lost.
async fn listen_loop(config: tokio_postgres::Config, schema: String, wake: Arc<Notify>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut conn)) => {
                let sql = format!("LISTEN {CHANNEL}");
                let listen = client.batch_execute(&sql);
                let mut messages = futures::stream::poll_fn(|cx| conn.poll_message(cx));
                let mut listen = std::pin::pin!(listen);
                let mut listening = false;
                loop {
                    tokio::select! {
                        r = &mut listen, if !listening => match r {
                            Ok(()) => {
                                listening = true;
                                backoff = Duration::from_millis(200);
                                wake.notify_waiters();
                            }
                            Err(e) => {
                                tracing::warn!(error = %pg_error(e), "cannot LISTEN for queued runs");
                                break;
                            }
                        },
                        m = futures::StreamExt::next(&mut messages) => match m {
                            Some(Ok(AsyncMessage::Notification(n))) => {
                                if n.payload() == schema {
                                    wake.notify_waiters();
                                }
                            }
                            Some(Ok(_)) => {}
                            Some(Err(e)) => {
                                tracing::warn!(error = %pg_error(e), "the LISTEN connection failed; reconnecting");
                                break;
                            }
                            None => break,
                        },
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %pg_error(e), "cannot open the LISTEN connection; retrying");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// A pool of up to `max_size` connections on `config`, without TLS:
/// 10 s to connect, 30 s to wait for a free connection. Connections are
/// made on demand. Shared with the `sql.*` steps (`stdlib/sql.rs`).
/// Longest a store statement may run (the URL's `options` may say otherwise).
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A dead or stalled database must turn intake into a prompt `503`, not a
/// hang: connecting gives up after 10 s, idle connections are probed by TCP
/// keepalive (so a database gone without a word is noticed), and a store
/// statement runs at most [`STATEMENT_TIMEOUT`] — unless the URL sets its
/// own `connect_timeout` or `options`.
fn with_store_timeouts(mut config: tokio_postgres::Config) -> tokio_postgres::Config {
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .keepalives_interval(Duration::from_secs(10))
        .keepalives_retries(3);
    if config.get_options().is_none() {
        config.options(format!(
            "-c statement_timeout={}",
            STATEMENT_TIMEOUT.as_millis()
        ));
    }
    config
}

pub(crate) fn new_pool(
    config: &tokio_postgres::Config,
    max_size: usize,
) -> Result<Pool, deadpool_postgres::BuildError> {
    let manager = Manager::from_config(
        config.clone(),
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size.max(1))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .create_timeout(Some(Duration::from_secs(10)))
        .wait_timeout(Some(Duration::from_secs(30)))
        .build()
}

impl PostgresStore {
    /// Deletes the executions created before `before` with one of
    /// `statuses`, with their journals and dedupe keys; one chunk per
    /// statement (short transactions, claims carry on meanwhile).
    async fn purge(&self, before: DateTime<Utc>, statuses: &[&str]) -> StoreResult<u64> {
        let statuses: Vec<String> = statuses.iter().map(|s| s.to_string()).collect();
        let mut deleted = 0u64;
        loop {
            let rows = self
                .query(
                    "WITH gone AS (DELETE FROM $S.executions WHERE seq IN \
                     (SELECT seq FROM $S.executions WHERE created_at < $1 \
                      AND status = ANY($3) ORDER BY seq LIMIT $2 \
                      FOR UPDATE SKIP LOCKED) RETURNING id, flow, dedupe_key), \
                     j AS (DELETE FROM $S.journal WHERE execution_id IN \
                      (SELECT id FROM gone)), \
                     d AS (DELETE FROM $S.dedupe dd USING gone WHERE dd.flow = gone.flow \
                      AND dd.key = gone.dedupe_key AND dd.execution_id = gone.id), \
                     c AS (DELETE FROM $S.callbacks WHERE execution_id IN \
                      (SELECT id FROM gone)) \
                     SELECT count(*) FROM gone",
                    &[&before, &PURGE_CHUNK, &statuses],
                )
                .await?;
            let n: i64 = rows
                .first()
                .map(|r| r.try_get(0))
                .transpose()
                .map_err(pg_error)?
                .unwrap_or(0);
            deleted += n as u64;
            if n < PURGE_CHUNK {
                return Ok(deleted);
            }
        }
    }

    /// Connects, creates the schema and applies pending migrations, and
    /// starts the listener. Must be called inside a Tokio runtime.
    pub async fn open(options: PostgresOptions) -> StoreResult<PostgresStore> {
        let quoted = valid_schema(&options.schema)?;
        let config: tokio_postgres::Config = options.url.parse().map_err(|e| {
            StoreError::Backend(format!(
                "invalid PostgreSQL URL (postgres://user@host:port/database): {e}"
            ))
        })?;
        let config = with_store_timeouts(config);
        if config.get_hosts().is_empty() {
            return Err(StoreError::backend(
                "the PostgreSQL URL names no host (postgres://user@host:port/database)",
            ));
        }
        let pool = new_pool(&config, options.pool_size)
            .map_err(|e| StoreError::Backend(format!("cannot create the connection pool: {e}")))?;
        let store_schema = options.schema.clone();
        migrate(&pool, &quoted, &store_schema).await.map_err(|e| {
            StoreError::Backend(format!("cannot open the PostgreSQL store: {}", e.message()))
        })?;
        let wake = Arc::new(Notify::new());
        let listener = tokio::spawn(listen_loop(config, store_schema.clone(), wake.clone()));
        let queued = Arc::new(Notify::new());
        let notifier = tokio::spawn(notify_loop(pool.clone(), store_schema, queued.clone()));
        let (intake, waiting) = tokio::sync::mpsc::unbounded_channel();
        let waiting = Arc::new(tokio::sync::Mutex::new(waiting));
        let intake_tasks = (0..INTAKE_TASKS)
            .map(|_| {
                tokio::spawn(intake_loop(
                    pool.clone(),
                    quoted.clone(),
                    waiting.clone(),
                    queued.clone(),
                ))
            })
            .collect();
        Ok(PostgresStore {
            pool,
            schema: quoted,
            wake,
            queued,
            listener,
            notifier,
            intake,
            intake_tasks,
        })
    }

    /// The (quoted) schema.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    fn sql(&self, text: &str) -> String {
        text.replace("$S", &self.schema)
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Object> {
        self.pool.get().await.map_err(pool_error)
    }

    /// One statement returning rows, on a pooled connection.
    async fn query(&self, text: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<Vec<Row>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&self.sql(text))
            .await
            .map_err(pg_error)?;
        client.query(&stmt, params).await.map_err(pg_error)
    }

    /// One statement, returning how many rows it changed.
    async fn execute(&self, text: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<u64> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&self.sql(text))
            .await
            .map_err(pg_error)?;
        client.execute(&stmt, params).await.map_err(pg_error)
    }

    async fn claim_n(
        &self,
        worker: &str,
        n: usize,
        lease: Duration,
    ) -> StoreResult<Vec<Execution>> {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let secs = secs(lease);
        let set = "SET status = 'running', lease_owner = $1, \
             lease_expires = now() + make_interval(secs => $2), started_at = now(), \
             attempts = e.attempts + 1, lease_epoch = e.lease_epoch + 1";
        let queued = format!(
            "UPDATE $S.executions e {set} FROM (SELECT seq FROM $S.executions \
             WHERE status = 'queued' ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED) p \
             WHERE e.seq = p.seq RETURNING {}",
            prefixed_columns()
        );
        let queued = claimed_rows(self.query(&queued, &[&worker, &secs, &n]).await?)?;
        // Counted before unreadable runs are failed, so that they do not
        // make room for take-overs this round.
        let left = n - queued.len() as i64;
        let mut out = keep_readable(self, queued).await?;
        if left > 0 {
            // Runs taken over too often are given up (marked failed).
            let max = i32::try_from(super::MAX_TAKEOVERS).unwrap_or(i32::MAX);
            let given_up = self
                .execute(
                    "UPDATE $S.executions SET status = 'failed', error = $1, \
                     finished_at = now(), lease_owner = NULL, lease_expires = NULL \
                     WHERE seq IN (SELECT seq FROM $S.executions WHERE status = 'running' \
                     AND lease_expires <= now() AND takeovers >= $2 \
                     FOR UPDATE SKIP LOCKED)",
                    &[&abandoned_message(), &max],
                )
                .await?;
            if given_up > 0 {
                tracing::warn!(count = given_up, "runs given up after too many take-overs");
            }
            // Take-over of runs whose holder stopped renewing (crashed,
            // paused, partitioned), by the database's clock, with a backoff
            // after the expiry that grows with each earlier take-over (0, 1,
            // 3, 7, 15 leases, at most 5 min): a run that brings down every
            // replica running it does not take them down in a tight loop.
            let expired = format!(
                "UPDATE $S.executions e {set}, takeovers = e.takeovers + 1 \
                 FROM (SELECT seq FROM $S.executions \
                 WHERE status = 'running' AND takeovers < $4 \
                 AND lease_expires + make_interval(secs => least($2 * (power(2, takeovers) - 1), 300)) <= now() \
                 ORDER BY lease_expires LIMIT $3 FOR UPDATE SKIP LOCKED) p \
                 WHERE e.seq = p.seq RETURNING {}",
                prefixed_columns()
            );
            let taken = claimed_rows(self.query(&expired, &[&worker, &secs, &left, &max]).await?)?;
            let taken = keep_readable(self, taken).await?;
            for e in &taken {
                tracing::info!(execution_id = %e.id, attempt = e.attempts, "taking over a run whose lease expired");
            }
            out.extend(taken);
        }
        Ok(out)
    }

    /// Tells other processes (through the notifier task) that runs were
    /// queued.
    fn notify_queued(&self) {
        self.queued.notify_one();
    }

    /// A plain queued run, inserted by an intake task together with the
    /// others waiting ([`intake_loop`]).
    async fn enqueue_with_others(
        &self,
        new: NewExecution,
        trigger: Vec<u8>,
    ) -> StoreResult<Enqueued> {
        let (inserted, answer) = tokio::sync::oneshot::channel();
        self.intake
            .send(PendingIntake {
                id: new.id,
                flow: new.flow,
                trigger,
                inserted,
            })
            .map_err(|_| StoreError::backend("the store is closed"))?;
        answer
            .await
            .map_err(|_| StoreError::backend("the store is closed"))??;
        Ok(Enqueued::Created)
    }

    async fn enqueue_tick(
        &self,
        new: NewExecution,
        trigger: Vec<u8>,
        tick: DateTime<Utc>,
    ) -> StoreResult<Enqueued> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let stmt = tx
            .prepare_cached(&self.sql(
                "INSERT INTO $S.schedules AS s (flow, last_tick, execution_id) \
                 VALUES ($1, $2, $3) ON CONFLICT (flow) DO UPDATE SET \
                 last_tick = excluded.last_tick, execution_id = excluded.execution_id \
                 WHERE s.last_tick < excluded.last_tick RETURNING 1",
            ))
            .await
            .map_err(pg_error)?;
        let won = !tx
            .query(&stmt, &[&new.flow, &tick, &new.id])
            .await
            .map_err(pg_error)?
            .is_empty();
        if !won {
            let stmt = tx
                .prepare_cached(&self.sql("SELECT execution_id FROM $S.schedules WHERE flow = $1"))
                .await
                .map_err(pg_error)?;
            let row = tx.query_one(&stmt, &[&new.flow]).await.map_err(pg_error)?;
            let first: String = row.try_get(0).map_err(pg_error)?;
            return Ok(Enqueued::Duplicate(first));
        }
        if let Some(key) = &new.dedupe_key {
            let stmt = tx
                .prepare_cached(&self.sql(
                    "INSERT INTO $S.dedupe (flow, key, execution_id) VALUES ($1, $2, $3) \
                     ON CONFLICT DO NOTHING",
                ))
                .await
                .map_err(pg_error)?;
            if tx
                .execute(&stmt, &[&new.flow, key, &new.id])
                .await
                .map_err(pg_error)?
                == 0
            {
                let stmt = tx
                    .prepare_cached(
                        &self
                            .sql("SELECT execution_id FROM $S.dedupe WHERE flow = $1 AND key = $2"),
                    )
                    .await
                    .map_err(pg_error)?;
                let row = tx
                    .query_one(&stmt, &[&new.flow, key])
                    .await
                    .map_err(pg_error)?;
                return Ok(Enqueued::Duplicate(row.try_get(0).map_err(pg_error)?));
            }
        }
        let stmt = tx
            .prepare_cached(&self.sql(
                "INSERT INTO $S.schedule_ticks (flow, tick, execution_id) VALUES ($1, $2, $3)",
            ))
            .await
            .map_err(pg_error)?;
        tx.execute(&stmt, &[&new.flow, &tick, &new.id])
            .await
            .map_err(pg_error)?;
        let (insert, running) = self.insert_execution_sql(&new, "true");
        let stmt = tx.prepare_cached(&insert).await.map_err(pg_error)?;
        let (worker, lease) = running;
        tx.execute(
            &stmt,
            &[
                &new.id,
                &new.flow,
                &trigger,
                &new.dedupe_key,
                &worker,
                &lease,
            ],
        )
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        if new.running.is_none() {
            self.notify_queued();
        }
        Ok(Enqueued::Created)
    }

    /// The `INSERT` of a new execution ($1 id, $2 flow, $3 trigger, $4
    /// dedupe key, $5 worker, $6 lease seconds) if `condition` holds, and
    /// its worker/lease values. A run stored running is held by
    /// [`Lease::first`].
    fn insert_execution_sql(
        &self,
        new: &NewExecution,
        condition: &str,
    ) -> (String, (Option<String>, Option<f64>)) {
        let sql = self.sql(&format!(
            "INSERT INTO $S.executions (id, flow, status, trigger, dedupe_key, started_at, \
             attempts, lease_owner, lease_expires, lease_epoch) \
             SELECT $1, $2, CASE WHEN $5::text IS NULL THEN 'queued' ELSE 'running' END, \
             $3, $4, CASE WHEN $5::text IS NULL THEN NULL ELSE now() END, \
             CASE WHEN $5::text IS NULL THEN 0 ELSE 1 END, $5, \
             now() + make_interval(secs => $6::float8), \
             CASE WHEN $5::text IS NULL THEN 0 ELSE 1 END WHERE {condition}"
        ));
        let running = match &new.running {
            Some((worker, lease)) => (Some(worker.clone()), Some(secs(*lease))),
            None => (None, None),
        };
        (sql, running)
    }

    async fn state_map(&self) -> StoreResult<Map<String, Value>> {
        self.query("SELECT key, value FROM $S.state", &[])
            .await?
            .iter()
            .map(|r| {
                Ok((
                    r.try_get(0).map_err(pg_error)?,
                    r.try_get(1).map_err(pg_error)?,
                ))
            })
            .collect::<StoreResult<Vec<(String, Vec<u8>)>>>()
            .map(state_from_rows)
    }
}

const CALLBACK_COLUMNS: &str =
    "id, execution_id, url, state, attempts, next_attempt_at, expires_at, last_error";

fn callback_from_row(r: &Row) -> StoreResult<Callback> {
    let state: String = r.try_get(3).map_err(pg_error)?;
    Ok(Callback {
        id: r.try_get(0).map_err(pg_error)?,
        execution_id: r.try_get(1).map_err(pg_error)?,
        url: r.try_get(2).map_err(pg_error)?,
        state: CallbackState::parse(&state).unwrap_or(CallbackState::Failed),
        attempts: u32::try_from(r.try_get::<_, i32>(4).map_err(pg_error)?).unwrap_or(0),
        next_attempt_at: r.try_get(5).map_err(pg_error)?,
        expires_at: r.try_get(6).map_err(pg_error)?,
        last_error: r.try_get(7).map_err(pg_error)?,
    })
}

/// [`EXEC_COLUMNS`] qualified with `e.` (for `UPDATE … FROM` statements).
fn prefixed_columns() -> String {
    EXEC_COLUMNS
        .split(", ")
        .map(|c| format!("e.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn migrate(pool: &Pool, quoted: &str, schema: &str) -> StoreResult<()> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(pg_error)?;
    // Replicas starting together: one migrates, the others wait and then
    // find nothing left to do.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('flow_runtime migrate ' || $1))",
        &[&schema],
    )
    .await
    .map_err(pg_error)?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {quoted}; \
         CREATE TABLE IF NOT EXISTS {quoted}.schema_version (version INTEGER NOT NULL)"
    ))
    .await
    .map_err(pg_error)?;
    let row = tx
        .query_one(
            &format!("SELECT MAX(version) FROM {quoted}.schema_version"),
            &[],
        )
        .await
        .map_err(pg_error)?;
    let current: i64 = row
        .try_get::<_, Option<i32>>(0)
        .map_err(pg_error)?
        .map_or(0, i64::from);
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(StoreError::Backend(format!(
            "the schema {schema} has version {current}, newer than this binary knows ({known}); use a newer binary"
        )));
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.batch_execute(&step.replace("$S", quoted))
            .await
            .map_err(pg_error)?;
        tx.execute(
            &format!("INSERT INTO {quoted}.schema_version (version) VALUES ($1)"),
            &[&(i as i32 + 1)],
        )
        .await
        .map_err(pg_error)?;
    }
    tx.commit().await.map_err(pg_error)
}

impl Store for PostgresStore {
    fn enqueue(&self, new: NewExecution) -> BoxFuture<'_, StoreResult<Enqueued>> {
        async move {
            let trigger = Encoded::of(&new.trigger)?.into_bytes();
            if let Some(tick) = new.tick {
                return self.enqueue_tick(new, trigger, tick).await;
            }
            if new.dedupe_key.is_none() && new.running.is_none() {
                return self.enqueue_with_others(new, trigger).await;
            }
            let condition = match new.dedupe_key {
                Some(_) => "EXISTS (SELECT 1 FROM d)",
                None => "true",
            };
            let (insert, (worker, lease)) = self.insert_execution_sql(&new, condition);
            // One statement: the dedupe row and the run commit together; a
            // repeated key inserts nothing.
            let text = match &new.dedupe_key {
                Some(_) => format!(
                    "WITH d AS (INSERT INTO $S.dedupe (flow, key, execution_id) \
                     VALUES ($2, $4, $1) ON CONFLICT DO NOTHING RETURNING 1), \
                     e AS ({insert} RETURNING 1) SELECT 1 FROM e"
                ),
                None => format!("WITH e AS ({insert} RETURNING 1) SELECT 1 FROM e"),
            };
            let client = self.client().await?;
            let stmt = client
                .prepare_cached(&self.sql(&text))
                .await
                .map_err(pg_error)?;
            let rows = client
                .query(
                    &stmt,
                    &[
                        &new.id,
                        &new.flow,
                        &trigger,
                        &new.dedupe_key,
                        &worker,
                        &lease,
                    ],
                )
                .await
                .map_err(pg_error)?;
            if !rows.is_empty() {
                if new.running.is_none() {
                    self.notify_queued();
                }
                return Ok(Enqueued::Created);
            }
            let Some(key) = &new.dedupe_key else {
                return Err(StoreError::backend("the new execution was not stored"));
            };
            let stmt = client
                .prepare_cached(
                    &self.sql("SELECT execution_id FROM $S.dedupe WHERE flow = $1 AND key = $2"),
                )
                .await
                .map_err(pg_error)?;
            let row = client
                .query_one(&stmt, &[&new.flow, key])
                .await
                .map_err(pg_error)?;
            Ok(Enqueued::Duplicate(row.try_get(0).map_err(pg_error)?))
        }
        .boxed()
    }

    fn claim<'a>(
        &'a self,
        worker: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, StoreResult<Option<Execution>>> {
        async move { Ok(self.claim_n(worker, 1, lease).await?.into_iter().next()) }.boxed()
    }

    fn claim_run<'a>(
        &'a self,
        worker: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, StoreResult<Option<Claimed>>> {
        async move {
            match self.claim_n(worker, 1, lease).await?.into_iter().next() {
                Some(e) => Ok(Some((e, self.state_map().await?))),
                None => Ok(None),
            }
        }
        .boxed()
    }

    fn claim_batch<'a>(
        &'a self,
        worker: &'a str,
        n: usize,
        lease: Duration,
    ) -> BoxFuture<'a, StoreResult<Vec<Claimed>>> {
        async move {
            if n == 0 {
                return Ok(Vec::new());
            }
            let claimed = self.claim_n(worker, n, lease).await?;
            if claimed.is_empty() {
                return Ok(Vec::new());
            }
            let state = self.state_map().await?;
            Ok(claimed.into_iter().map(|e| (e, state.clone())).collect())
        }
        .boxed()
    }

    fn release<'a>(&'a self, id: &'a str, lease: &'a Lease) -> BoxFuture<'a, StoreResult<bool>> {
        async move {
            let n = self
                .execute(
                    "UPDATE $S.executions SET status = 'queued', lease_owner = NULL, \
                     lease_expires = NULL WHERE id = $1 AND status = 'running' \
                     AND lease_epoch = $2",
                    &[&id, &epoch(lease)],
                )
                .await?;
            if n == 1 {
                self.notify_queued();
            }
            Ok(n == 1)
        }
        .boxed()
    }

    fn requeue_interrupted(&self) -> BoxFuture<'_, StoreResult<u64>> {
        // Shared by live replicas: a `running` row may be another replica's
        // live run. Leases expire instead, and then any replica takes over.
        async { Ok(0) }.boxed()
    }

    fn purge_finished(&self, before: DateTime<Utc>) -> BoxFuture<'_, StoreResult<u64>> {
        async move {
            let deleted = self.purge(before, &["succeeded", "skipped"]).await?;
            self.execute(
                "DELETE FROM $S.schedule_ticks t WHERE tick < $1 AND tick < \
                 (SELECT last_tick FROM $S.schedules s WHERE s.flow = t.flow)",
                &[&before],
            )
            .await?;
            Ok(deleted)
        }
        .boxed()
    }

    fn purge_failed(&self, before: DateTime<Utc>) -> BoxFuture<'_, StoreResult<u64>> {
        self.purge(before, &["failed"]).boxed()
    }

    fn renew<'a>(
        &'a self,
        id: &'a str,
        lease: &'a Lease,
        duration: Duration,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        async move {
            let n = self
                .execute(
                    "UPDATE $S.executions SET lease_expires = now() + make_interval(secs => $1) \
                     WHERE id = $2 AND status = 'running' AND lease_epoch = $3",
                    &[&secs(duration), &id, &epoch(lease)],
                )
                .await?;
            Ok(n == 1)
        }
        .boxed()
    }

    fn renew_all<'a>(
        &'a self,
        held: &'a [(String, Lease)],
        duration: Duration,
    ) -> BoxFuture<'a, StoreResult<Vec<String>>> {
        async move {
            if held.is_empty() {
                return Ok(Vec::new());
            }
            let ids: Vec<&str> = held.iter().map(|(id, _)| id.as_str()).collect();
            let epochs: Vec<i64> = held.iter().map(|(_, l)| epoch(l)).collect();
            // One statement for every lease this process holds.
            let rows = self
                .query(
                    "UPDATE $S.executions e SET lease_expires = now() + make_interval(secs => $1) \
                     FROM unnest($2::text[], $3::bigint[]) AS h(id, epoch) \
                     WHERE e.id = h.id AND e.status = 'running' AND e.lease_epoch = h.epoch \
                     RETURNING e.id",
                    &[&secs(duration), &ids, &epochs],
                )
                .await?;
            let kept: std::collections::HashSet<String> = rows
                .iter()
                .map(|r| r.try_get::<_, String>(0))
                .collect::<Result<_, _>>()
                .map_err(pg_error)?;
            Ok(held
                .iter()
                .filter(|(id, _)| !kept.contains(id))
                .map(|(id, _)| id.clone())
                .collect())
        }
        .boxed()
    }

    fn finish<'a>(
        &'a self,
        id: &'a str,
        lease: &'a Lease,
        finish: Finish,
    ) -> BoxFuture<'a, StoreResult<()>> {
        async move {
            let result = encoded(finish.result.as_ref())?.map(Encoded::into_bytes);
            let n = self
                .execute(
                    "UPDATE $S.executions SET status = $1, result = $2, error = $3, \
                     error_step = $4, finished_at = now(), lease_owner = NULL, \
                     lease_expires = NULL WHERE id = $5 AND status = 'running' \
                     AND lease_epoch = $6",
                    &[
                        &finish.status.as_str(),
                        &result,
                        &finish.error,
                        &finish.error_step,
                        &id,
                        &epoch(lease),
                    ],
                )
                .await?;
            if n == 1 {
                Ok(())
            } else {
                Err(StoreError::LeaseLost(id.to_string()))
            }
        }
        .boxed()
    }

    /// One statement (one round trip, one commit) for the usual case of
    /// one step written with the end; more steps go one by one first.
    fn finish_with_steps<'a>(
        &'a self,
        id: &'a str,
        lease: &'a Lease,
        mut steps: Vec<StepRecord>,
        finish: Finish,
    ) -> BoxFuture<'a, StoreResult<()>> {
        async move {
            let Some(last) = steps.pop() else {
                return self.finish(id, lease, finish).await;
            };
            for record in steps {
                self.record_step(id, lease, record).await?;
            }
            let result = encoded(finish.result.as_ref())?.map(Encoded::into_bytes);
            let step = StepParams::new(&last)?;
            let epoch = epoch(lease);
            let [p3, p4, p5, p6, p7, p8, p9, p10, p11] = step.values();
            // The UPDATE locks the execution's row, so no claim slips in
            // between; the INSERT writes only if the UPDATE did.
            let rows = self
                .query(
                    concat!(
                        "WITH held AS (UPDATE $S.executions SET status = $12, result = $13, \
                         error = $14, error_step = $15, finished_at = now(), \
                         lease_owner = NULL, lease_expires = NULL WHERE id = $1 \
                         AND status = 'running' AND lease_epoch = $2 RETURNING id), \
                         step AS (",
                        insert_step_of_held!(),
                        ") SELECT id FROM held"
                    ),
                    &[
                        &id,
                        &epoch,
                        p3,
                        p4,
                        p5,
                        p6,
                        p7,
                        p8,
                        p9,
                        p10,
                        p11,
                        &finish.status.as_str(),
                        &result,
                        &finish.error,
                        &finish.error_step,
                    ],
                )
                .await?;
            if rows.is_empty() {
                Err(StoreError::LeaseLost(id.to_string()))
            } else {
                Ok(())
            }
        }
        .boxed()
    }

    fn requeue<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Option<Execution>>> {
        async move {
            let n = self
                .execute(
                    "UPDATE $S.executions SET status = 'queued', finished_at = NULL, \
                     result = NULL, error = NULL, error_step = NULL, lease_owner = NULL, \
                     lease_expires = NULL, takeovers = 0 WHERE id = $1 \
                     AND status IN ('succeeded', 'failed', 'skipped')",
                    &[&id],
                )
                .await?;
            if n > 0 {
                self.notify_queued();
            }
            self.get(id).await
        }
        .boxed()
    }

    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Option<Execution>>> {
        async move {
            let rows = self
                .query(
                    &format!("SELECT {EXEC_COLUMNS} FROM $S.executions WHERE id = $1"),
                    &[&id],
                )
                .await?;
            rows.first().map(exec_from_row).transpose()
        }
        .boxed()
    }

    fn list(&self, filter: ExecutionFilter) -> BoxFuture<'_, StoreResult<Vec<Execution>>> {
        async move {
            let (status, limit) = status_and_limit(&filter);
            let rows = self
                .query(
                    &format!(
                        "SELECT {EXEC_COLUMNS} FROM $S.executions WHERE {LIST_CONDITIONS} \
                         ORDER BY seq DESC LIMIT $3"
                    ),
                    &list_params(&status, &limit, &filter),
                )
                .await?;
            rows.iter().map(exec_from_row).collect()
        }
        .boxed()
    }

    fn count(&self, filter: ExecutionFilter) -> BoxFuture<'_, StoreResult<u64>> {
        async move {
            let (status, limit) = status_and_limit(&filter);
            let rows = self
                .query(
                    &format!(
                        "SELECT count(*) FROM (SELECT 1 FROM $S.executions \
                         WHERE {LIST_CONDITIONS} LIMIT $3) AS matching"
                    ),
                    &list_params(&status, &limit, &filter),
                )
                .await?;
            let n: i64 = match rows.first() {
                Some(row) => row.try_get(0).map_err(pg_error)?,
                None => 0,
            };
            Ok(u64::try_from(n).unwrap_or(0))
        }
        .boxed()
    }

    fn journal<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Vec<StepRecord>>> {
        async move {
            let rows = self
                .query(
                    "SELECT key, call, status, attempts, started_at, finished_at, output, \
                     error, input FROM $S.journal WHERE execution_id = $1 ORDER BY ord",
                    &[&id],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    let status: String = r.try_get(2).map_err(pg_error)?;
                    let attempts: i32 = r.try_get(3).map_err(pg_error)?;
                    let output: Option<&[u8]> = r.try_get(6).map_err(pg_error)?;
                    let input: Option<&[u8]> = r.try_get(8).map_err(pg_error)?;
                    let key: String = r.try_get(0).map_err(pg_error)?;
                    Ok(StepRecord {
                        output: output.map(|o| step_output(&key, o)).transpose()?,
                        input: input.and_then(step_input),
                        key,
                        call: r.try_get(1).map_err(pg_error)?,
                        status: if status == "succeeded" {
                            StepStatus::Succeeded
                        } else {
                            StepStatus::Failed
                        },
                        attempts: u32::try_from(attempts).unwrap_or(0),
                        started_at: r.try_get(4).map_err(pg_error)?,
                        finished_at: r.try_get(5).map_err(pg_error)?,
                        error: r.try_get(7).map_err(pg_error)?,
                    })
                })
                .collect()
        }
        .boxed()
    }

    fn record_step<'a>(
        &'a self,
        id: &'a str,
        lease: &'a Lease,
        record: StepRecord,
    ) -> BoxFuture<'a, StoreResult<()>> {
        async move {
            let step = StepParams::new(&record)?;
            let epoch = epoch(lease);
            let [p3, p4, p5, p6, p7, p8, p9, p10, p11] = step.values();
            // The lease check and the write are one statement: the row lock
            // taken on the execution (FOR SHARE) keeps a concurrent claim
            // from slipping in between.
            let rows = self
                .query(
                    concat!(
                        "WITH held AS (SELECT id FROM $S.executions WHERE id = $1 \
                         AND status = 'running' AND lease_epoch = $2 FOR SHARE) ",
                        insert_step_of_held!(),
                        " RETURNING 1"
                    ),
                    &[&id, &epoch, p3, p4, p5, p6, p7, p8, p9, p10, p11],
                )
                .await?;
            if rows.is_empty() {
                Err(StoreError::LeaseLost(id.to_string()))
            } else {
                Ok(())
            }
        }
        .boxed()
    }

    fn last_tick<'a>(&'a self, flow: &'a str) -> BoxFuture<'a, StoreResult<Option<DateTime<Utc>>>> {
        async move {
            let rows = self
                .query(
                    "SELECT last_tick FROM $S.schedules WHERE flow = $1",
                    &[&flow],
                )
                .await?;
            rows.first()
                .map(|r| r.try_get(0))
                .transpose()
                .map_err(pg_error)
        }
        .boxed()
    }

    fn state_all(&self) -> BoxFuture<'_, StoreResult<Map<String, Value>>> {
        self.state_map().boxed()
    }

    fn state_set<'a>(&'a self, key: &'a str, value: Value) -> BoxFuture<'a, StoreResult<()>> {
        async move {
            let value = Encoded::of(&value)?.into_bytes();
            self.execute(
                "INSERT INTO $S.state (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&key, &value],
            )
            .await
            .map(|_| ())
        }
        .boxed()
    }

    fn deployed_version(&self) -> BoxFuture<'_, StoreResult<Option<String>>> {
        async move {
            let rows = self
                .query(
                    "SELECT value FROM $S.meta WHERE key = 'deployed_version'",
                    &[],
                )
                .await?;
            rows.first()
                .map(|r| r.try_get(0))
                .transpose()
                .map_err(pg_error)
        }
        .boxed()
    }

    fn set_deployed_version<'a>(&'a self, version: &'a str) -> BoxFuture<'a, StoreResult<()>> {
        async move {
            self.execute(
                "INSERT INTO $S.meta (key, value) VALUES ('deployed_version', $1) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&version],
            )
            .await
            .map(|_| ())
        }
        .boxed()
    }

    fn wake_hint(&self) -> Option<Arc<Notify>> {
        Some(self.wake.clone())
    }

    fn add_callback(&self, callback: NewCallback) -> BoxFuture<'_, StoreResult<()>> {
        async move {
            self.execute(
                "INSERT INTO $S.callbacks (id, execution_id, url, state, expires_at) \
                 VALUES ($1, $2, $3, 'pending', now() + make_interval(secs => $4)) \
                 ON CONFLICT DO NOTHING",
                &[
                    &callback.id,
                    &callback.execution_id,
                    &callback.url,
                    &secs(callback.expires_in),
                ],
            )
            .await?;
            Ok(())
        }
        .boxed()
    }

    fn claim_callbacks(
        &self,
        n: usize,
        lease: Duration,
    ) -> BoxFuture<'_, StoreResult<Vec<Callback>>> {
        async move {
            let expired = self
                .query(
                    "UPDATE $S.callbacks SET state = 'failed' WHERE id IN \
                     (SELECT id FROM $S.callbacks WHERE state = 'pending' \
                      AND expires_at <= now() FOR UPDATE SKIP LOCKED) RETURNING id, last_error",
                    &[],
                )
                .await?;
            for r in expired {
                let id: String = r.try_get(0).map_err(pg_error)?;
                let last: Option<String> = r.try_get(1).map_err(pg_error)?;
                self.execute(
                    "UPDATE $S.callbacks SET last_error = $2 WHERE id = $1",
                    &[&id, &callback_expired_message(last.as_deref())],
                )
                .await?;
            }
            // SKIP LOCKED: replicas claiming together take different rows.
            let n = i64::try_from(n).unwrap_or(i64::MAX);
            let rows = self
                .query(
                    &format!(
                        "UPDATE $S.callbacks SET attempts = attempts + 1, \
                         next_attempt_at = now() + make_interval(secs => $2) WHERE id IN \
                         (SELECT c.id FROM $S.callbacks c JOIN $S.executions e \
                          ON e.id = c.execution_id WHERE c.state = 'pending' \
                          AND c.next_attempt_at <= now() \
                          AND e.status IN ('succeeded', 'failed', 'skipped') \
                          ORDER BY c.next_attempt_at LIMIT $1 FOR UPDATE OF c SKIP LOCKED) \
                         RETURNING {CALLBACK_COLUMNS}"
                    ),
                    &[&n, &secs(lease)],
                )
                .await?;
            rows.iter().map(callback_from_row).collect()
        }
        .boxed()
    }

    fn settle_callback<'a>(
        &'a self,
        id: &'a str,
        outcome: CallbackOutcome,
    ) -> BoxFuture<'a, StoreResult<()>> {
        async move {
            match &outcome {
                CallbackOutcome::Delivered => {
                    self.execute(
                        "UPDATE $S.callbacks SET state = 'delivered', last_error = NULL \
                         WHERE id = $1",
                        &[&id],
                    )
                    .await?
                }
                CallbackOutcome::Retry { after, error } => {
                    self.execute(
                        "UPDATE $S.callbacks SET next_attempt_at = now() + \
                         make_interval(secs => $2), last_error = $3 \
                         WHERE id = $1 AND state = 'pending'",
                        &[&id, &secs(*after), error],
                    )
                    .await?
                }
                CallbackOutcome::GiveUp { error } => {
                    self.execute(
                        "UPDATE $S.callbacks SET state = 'failed', last_error = $2 \
                         WHERE id = $1 AND state = 'pending'",
                        &[&id, error],
                    )
                    .await?
                }
            };
            Ok(())
        }
        .boxed()
    }

    fn callback<'a>(
        &'a self,
        execution_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<Callback>>> {
        async move {
            let rows = self
                .query(
                    &format!("SELECT {CALLBACK_COLUMNS} FROM $S.callbacks WHERE execution_id = $1"),
                    &[&execution_id],
                )
                .await?;
            rows.first().map(callback_from_row).transpose()
        }
        .boxed()
    }

    fn connection_tokens<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<ConnectionTokens>>> {
        async move {
            // Generation 0: a claim made the row, nothing was saved yet.
            let rows = self
                .query(
                    "SELECT access_token, expires_at, refresh_token, generation \
                     FROM $S.connections WHERE name = $1 AND generation > 0",
                    &[&name],
                )
                .await?;
            rows.first()
                .map(|r| {
                    Ok(ConnectionTokens {
                        access_token: r.try_get(0).map_err(pg_error)?,
                        expires_at: r.try_get(1).map_err(pg_error)?,
                        refresh_token: r.try_get(2).map_err(pg_error)?,
                        generation: r.try_get(3).map_err(pg_error)?,
                    })
                })
                .transpose()
        }
        .boxed()
    }

    fn save_connection_tokens<'a>(
        &'a self,
        name: &'a str,
        access_token: Option<&'a str>,
        expires_at: Option<DateTime<Utc>>,
        refresh_token: Option<&'a str>,
    ) -> BoxFuture<'a, StoreResult<i64>> {
        async move {
            // The fetch claim (fetch_holder, fetch_until) is left as it is:
            // its holder releases it once the save returned.
            let rows = self
                .query(
                    "INSERT INTO $S.connections AS c (name, access_token, expires_at, \
                     refresh_token, generation) VALUES ($1, $2, $3, $4, 1) \
                     ON CONFLICT (name) DO UPDATE SET access_token = excluded.access_token, \
                     expires_at = excluded.expires_at, refresh_token = excluded.refresh_token, \
                     generation = c.generation + 1 RETURNING generation",
                    &[&name, &access_token, &expires_at, &refresh_token],
                )
                .await?;
            let row = rows
                .first()
                .ok_or_else(|| StoreError::backend("the connection's tokens were not saved"))?;
            row.try_get(0).map_err(pg_error)
        }
        .boxed()
    }

    /// One upsert on the connection's row, which it locks: of replicas
    /// claiming together one wins, the others see its holder and lease.
    /// `clock_timestamp()`, not `now()` (the start of the transaction): a
    /// statement that waited for the row lock judges the lease by the time
    /// it got it.
    fn claim_token_fetch<'a>(
        &'a self,
        name: &'a str,
        holder: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        async move {
            let rows = self
                .query(
                    "INSERT INTO $S.connections AS c (name, fetch_holder, fetch_until) \
                     VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3)) \
                     ON CONFLICT (name) DO UPDATE SET fetch_holder = excluded.fetch_holder, \
                     fetch_until = clock_timestamp() + make_interval(secs => $3) \
                     WHERE c.fetch_holder IS NULL OR c.fetch_holder = excluded.fetch_holder \
                     OR c.fetch_until < clock_timestamp() RETURNING 1",
                    &[&name, &holder, &secs(lease)],
                )
                .await?;
            Ok(!rows.is_empty())
        }
        .boxed()
    }

    fn release_token_fetch<'a>(
        &'a self,
        name: &'a str,
        holder: &'a str,
    ) -> BoxFuture<'a, StoreResult<()>> {
        async move {
            self.execute(
                "UPDATE $S.connections SET fetch_holder = NULL, fetch_until = NULL \
                 WHERE name = $1 AND fetch_holder = $2",
                &[&name, &holder],
            )
            .await?;
            Ok(())
        }
        .boxed()
    }

    /// One upsert on the connection's row of `connection_limits`, which
    /// keeps the send times of the last `requests` reservations, ascending.
    /// The new time is the latest of: now, the `requests`-th newest time +
    /// `per` (none while fewer are kept: at most `requests` in any window of
    /// `per`), and the newest time (first come, first served; keeps the
    /// times ascending also when `requests` grew or the database's clock
    /// stepped back). Then the newest `requests - 1` are kept (also when
    /// `requests` shrank) and the new time appended. The row lock
    /// serialises replicas reserving together; `clock_timestamp()` is read
    /// after it is taken, and the wait is computed by the same clock, so
    /// the replicas' own clocks never matter.
    fn reserve_request<'a>(
        &'a self,
        name: &'a str,
        requests: u32,
        per: Duration,
    ) -> BoxFuture<'a, StoreResult<Option<Duration>>> {
        async move {
            let requests = i32::try_from(requests.max(1)).unwrap_or(i32::MAX);
            // An index before the first (fewer times kept than `requests`)
            // reads as NULL, which greatest() skips; a slice starting there
            // starts at the first.
            let rows = self
                .query(
                    "INSERT INTO $S.connection_limits AS l (name, sends) \
                     VALUES ($1, ARRAY[clock_timestamp()]) \
                     ON CONFLICT (name) DO UPDATE SET sends = \
                     l.sends[cardinality(l.sends) - $2 + 2 : cardinality(l.sends)] \
                     || greatest(clock_timestamp(), \
                     l.sends[cardinality(l.sends) - $2 + 1] + make_interval(secs => $3), \
                     l.sends[cardinality(l.sends)]) \
                     RETURNING greatest(extract(epoch FROM \
                     l.sends[cardinality(l.sends)] - clock_timestamp())::float8, 0)",
                    &[&name, &requests, &secs(per)],
                )
                .await?;
            let row = rows
                .first()
                .ok_or_else(|| StoreError::backend("the request was not reserved"))?;
            let wait: f64 = row.try_get(0).map_err(pg_error)?;
            Ok(Some(Duration::try_from_secs_f64(wait).unwrap_or_default()))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The store's connections carry the statement timeout (run against
    /// `FLOW_TEST_POSTGRES_URL`; skipped without it).
    #[tokio::test]
    async fn store_connections_have_a_statement_timeout() {
        let Ok(url) = std::env::var("FLOW_TEST_POSTGRES_URL") else {
            eprintln!("skipped: FLOW_TEST_POSTGRES_URL is not set");
            return;
        };
        let config = with_store_timeouts(url.parse().unwrap());
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(10)));
        let pool = new_pool(&config, 1).unwrap();
        let client = pool.get().await.unwrap();
        let row = client
            .query_one("SHOW statement_timeout", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "30s");
    }
}
