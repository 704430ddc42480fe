//! The durable side of the runtime: the execution queue, the step journal,
//! dedupe keys, schedule ticks, callbacks, integration state and the
//! deployed version.
//!
//! [`Store`] is object-safe (methods return boxed futures) so the backend is
//! chosen at start-up. Its shape anticipates SQL backends: an execution is a
//! row with a status and a lease (`claim` takes the oldest queued execution
//! or one whose lease expired, like `FOR UPDATE SKIP LOCKED`), journal
//! entries are keyed by `(execution, step key)`, dedupe keys and schedule
//! ticks are checked and recorded in the same transaction that enqueues.
//!
//! Backends: [`MemoryStore`] keeps everything in process (lost on exit);
//! [`SqliteStore`] is the default of `serve` (one file, WAL, group commit);
//! `PostgresStore` is shared by several replicas of one binary (compiled
//! with the `postgres` feature only).
//!
//! Fencing: every claim bumps the execution's lease epoch and hands out a
//! [`Lease`]; the writes of a running execution (journal entries, its end,
//! renewals, release) pass it back and are refused once another claim
//! superseded it, so a worker that lost its lease cannot write results.
//! Every method's answer means the change is committed: a caller may act on
//! it (answer `202`, call the next step) as on a durable fact.
//!
//! Connections (LANGUAGE.md §12) keep their OAuth2 tokens here
//! ([`ConnectionTokens`]); a store shared by replicas also serialises their
//! token fetches ([`Store::claim_token_fetch`]) and keeps each limited
//! connection's recent send times ([`Store::reserve_request`]).

mod encoding;
mod memory;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
mod sqlite;

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::{BoxFuture, FutureExt as _};
use serde::Serialize;
use serde_json::{Map, Value};

pub(crate) use encoding::Encoded;

pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::{
    drop_retired_schemas as postgres_drop_retired_schemas, retire_schema as postgres_retire_schema,
    schema_for as postgres_schema_for, PostgresOptions, PostgresStore,
};
pub use sqlite::{Durability, SqliteOptions, SqliteStore};

/// How many times a run is taken over after its lease expired (or put
/// back in the queue by [`Store::requeue_interrupted`]) before the store
/// gives up on it: a run that kills or stalls every process that runs it
/// would otherwise go round forever. It is then marked failed with
/// [`abandoned_message`]; a replay starts the count again.
pub const MAX_TAKEOVERS: u32 = 5;

/// The error recorded on a run given up after [`MAX_TAKEOVERS`].
pub fn abandoned_message() -> String {
    format!(
        "abandoned after {MAX_TAKEOVERS} take-overs: the process running it died or stalled each time (replay it once the cause is fixed)"
    )
}

/// Kept here too: the stores were first to need it.
pub use crate::core::redact::redact_url;

/// An execution as a SQL store read it back, with what of its row could not
/// be read (`None`: all of it could). See [`ValueColumns`].
pub(crate) type ReadBack = (Execution, Option<String>);

/// Reads the value columns of one execution row (stored as
/// [`encoding`] describes). A column that does not parse (a row written
/// before the nesting limit existed, or damaged by hand) must cost only its
/// own execution, never the claim batch or the listing it is part of: it
/// reads as `null`, and the problem is kept for [`ValueColumns::finish`].
#[derive(Default)]
pub(crate) struct ValueColumns {
    problems: Vec<String>,
}

impl ValueColumns {
    /// The column `what` (`trigger`, `result`), or `null` if it cannot be read.
    pub(crate) fn read(&mut self, stored: &[u8], what: &str) -> Value {
        encoding::decode(stored).unwrap_or_else(|e| {
            self.problems
                .push(format!("the stored {what} cannot be read: {e}"));
            Value::Null
        })
    }

    /// The execution with the problems (if any) shown as its error, unless
    /// it already has one (the failure recorded by [`keep_readable`]).
    pub(crate) fn finish(self, mut exec: Execution) -> ReadBack {
        if self.problems.is_empty() {
            return (exec, None);
        }
        let problem = self.problems.join("; ");
        exec.error.get_or_insert_with(|| problem.clone());
        (exec, Some(problem))
    }
}

/// The error of a value that cannot be written as JSON text.
pub(crate) fn json_error(e: serde_json::Error) -> StoreError {
    StoreError::Backend(format!("cannot encode a value as JSON: {e}"))
}

/// A value column's stored form (a step's output, a run's result); `None`
/// stays `None`.
pub(crate) fn encoded(value: Option<&Value>) -> StoreResult<Option<Encoded>> {
    value.map(Encoded::of).transpose()
}

/// The integration state from its stored `(key, value)` rows. A value
/// that cannot be read back (nested deeper than the parser's limit by an
/// older version, or damaged by hand) reads as missing and is logged: one
/// bad row must not fail the claim of every run of every flow. The next
/// `state.set` of the key replaces it.
pub(crate) fn state_from_rows(
    rows: impl IntoIterator<Item = (String, Vec<u8>)>,
) -> Map<String, Value> {
    rows.into_iter()
        .filter_map(|(key, stored)| match encoding::decode(&stored) {
            Ok(value) => Some((key, value)),
            Err(e) => {
                tracing::error!(key = %key, error = %e, "the stored state value cannot be read; state.get sees it as missing until state.set replaces it");
                None
            }
        })
        .collect()
}

/// The stored output of journal entry `step`. One that cannot be read back
/// is [`StoreError::Unreadable`]: the run cannot resume without it (running
/// the step again would repeat its effect), so the run fails, alone.
pub(crate) fn step_output(step: &str, stored: &[u8]) -> StoreResult<Value> {
    encoding::decode(stored).map_err(|e| {
        StoreError::Unreadable(format!(
            "the stored journal of step `{step}` cannot be read: {e}"
        ))
    })
}

/// The stored input of a journal entry. One that cannot be read back is
/// left out: it is only shown, never used to resume.
pub(crate) fn step_input(stored: &[u8]) -> Option<Value> {
    encoding::decode(stored).ok()
}

/// The claimed executions that can run; each one whose row could not be
/// read is marked failed with the reason (through its fresh lease), so it
/// neither blocks the others nor comes back when its lease expires.
pub(crate) async fn keep_readable(
    store: &dyn Store,
    claimed: Vec<ReadBack>,
) -> StoreResult<Vec<Execution>> {
    let mut readable = Vec::with_capacity(claimed.len());
    for (exec, problem) in claimed {
        let Some(problem) = problem else {
            readable.push(exec);
            continue;
        };
        let Some(lease) = exec.lease() else { continue };
        tracing::error!(execution_id = %exec.id, error = %problem, "a claimed run cannot be read back; marked failed");
        let failed = Finish {
            status: Status::Failed,
            result: None,
            error: Some(problem),
            error_step: None,
        };
        match store.finish(&exec.id, &lease, failed).await {
            Ok(()) | Err(StoreError::LeaseLost(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(readable)
}

/// Status of an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Stored, waiting for a worker.
    Queued,
    /// Leased by a worker (or running inline for sync flows).
    Running,
    /// Finished successfully.
    Succeeded,
    /// Finished as failed; may be replayed.
    Failed,
    /// Ended with `skip`.
    Skipped,
}

impl Status {
    /// The lowercase name (`queued`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        }
    }

    /// Parses a lowercase name.
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "queued" => Status::Queued,
            "running" => Status::Running,
            "succeeded" => Status::Succeeded,
            "failed" => Status::Failed,
            "skipped" => Status::Skipped,
            _ => return None,
        })
    }

    /// Whether the execution has ended.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed | Status::Skipped)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An execution to store.
#[derive(Debug, Clone)]
pub struct NewExecution {
    /// Unique id (UUID v7, time ordered).
    pub id: String,
    /// The flow's name.
    pub flow: String,
    /// The trigger value.
    pub trigger: Value,
    /// Dedupe key, unique per flow; a repeat returns the first execution.
    pub dedupe_key: Option<String>,
    /// `Some((worker, lease))` stores it as already running (sync flows run
    /// inline), held by [`Lease::first`]`(worker)`; `None` queues it for the
    /// worker pool.
    pub running: Option<(String, Duration)>,
    /// For scheduled runs: the tick it runs. Recorded in the same
    /// transaction; a tick that is not later than the flow's last recorded
    /// tick is refused as [`Enqueued::Duplicate`], so each tick runs once
    /// across replicas and restarts.
    pub tick: Option<DateTime<Utc>>,
}

impl NewExecution {
    /// A new execution of `flow` to queue: no dedupe key, no tick.
    pub fn queued(id: impl Into<String>, flow: impl Into<String>, trigger: Value) -> Self {
        NewExecution {
            id: id.into(),
            flow: flow.into(),
            trigger,
            dedupe_key: None,
            running: None,
            tick: None,
        }
    }
}

/// Result of [`Store::enqueue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// Stored as a new execution.
    Created,
    /// The dedupe key was seen before: the first execution's id; nothing stored.
    Duplicate(String),
}

/// A stored execution.
#[derive(Debug, Clone, Serialize)]
pub struct Execution {
    /// Its id.
    pub id: String,
    /// Its flow.
    pub flow: String,
    /// Current status.
    pub status: Status,
    /// The trigger value (unredacted; redact before showing).
    pub trigger: Value,
    /// Dedupe key, if any.
    pub dedupe_key: Option<String>,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
    /// When the latest attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// How many times a worker started it (replays and lease take-overs add one).
    pub attempts: u32,
    /// Outcome details: `{ "skipped": reason }`, `{ "status", "body" }` for responds.
    pub result: Option<Value>,
    /// Failure message.
    pub error: Option<String>,
    /// Step that failed, if any.
    pub error_step: Option<String>,
    /// Worker holding the lease.
    #[serde(skip)]
    pub lease_owner: Option<String>,
    /// When the lease expires.
    #[serde(skip)]
    pub lease_expires: Option<DateTime<Utc>>,
    /// The fencing token: bumped by every claim (see [`Lease`]).
    #[serde(skip)]
    pub lease_epoch: u64,
}

impl Execution {
    /// The lease a worker holds on this execution as read: `None` unless it
    /// is running with an owner.
    pub fn lease(&self) -> Option<Lease> {
        match (&self.status, &self.lease_owner) {
            (Status::Running, Some(worker)) => Some(Lease {
                worker: worker.clone(),
                epoch: self.lease_epoch,
            }),
            _ => None,
        }
    }
}

/// The lease on a running execution, as handed out by a claim and passed
/// back by every write that needs it ([`Store::record_step`],
/// [`Store::finish`], [`Store::renew`], [`Store::release`]).
///
/// `epoch` is a fencing token: each claim of an execution bumps it, so a
/// worker whose lease expired and was taken over by another (a paused or
/// partitioned replica) holds an older epoch, and the store refuses its
/// writes ([`StoreError::LeaseLost`]) even if it still believes it owns the
/// run. The store compares epochs only; `worker` is for logs and listings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lease {
    /// Who holds it (`w3-…`, `inline-<id>`).
    pub worker: String,
    /// The execution's claim counter when this lease was taken.
    pub epoch: u64,
}

impl Lease {
    /// The lease of an execution that [`Store::enqueue`] stored as running
    /// ([`NewExecution::running`]): epoch 1, as if claimed once.
    pub fn first(worker: impl Into<String>) -> Lease {
        Lease {
            worker: worker.into(),
            epoch: 1,
        }
    }
}

/// How an execution ended, for [`Store::finish`].
#[derive(Debug, Clone)]
pub struct Finish {
    /// `Succeeded`, `Failed` or `Skipped`.
    pub status: Status,
    /// See [`Execution::result`].
    pub result: Option<Value>,
    /// See [`Execution::error`].
    pub error: Option<String>,
    /// See [`Execution::error_step`].
    pub error_step: Option<String>,
}

/// Filter for [`Store::list`]. Every condition set must hold.
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    /// Only this status.
    pub status: Option<Status>,
    /// Only this flow.
    pub flow: Option<String>,
    /// At most this many, newest first (0 = store default of 100).
    pub limit: usize,
    /// Only executions created at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only executions created before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only the execution with this id, or those with this dedupe key
    /// (exact match: both are looked up by index, so a search stays cheap
    /// on a large store).
    pub search: Option<String>,
    /// The paging cursor: only executions listed after the execution with
    /// this id (older ones). An id the store no longer has (purged since)
    /// lists nothing.
    pub before: Option<String>,
}

/// Status of a journal entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    /// The result is recorded and reused on replay.
    Succeeded,
    /// All attempts failed.
    Failed,
}

/// One journal entry: a step of an execution.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    /// Step identity: name plus loop indices (`adjust[1]`).
    pub key: String,
    /// The stdlib function called (`http.post`), or `dispatch`.
    pub call: String,
    /// Outcome.
    pub status: StepStatus,
    /// Attempts made.
    pub attempts: u32,
    /// First attempt's start.
    pub started_at: DateTime<Utc>,
    /// End of the last attempt.
    pub finished_at: DateTime<Utc>,
    /// The arguments it was called with, as the executions page shows them
    /// (`Args::shown`: long texts cut, internal hints left out); `None` for
    /// a step of a sync run held in memory, and for journals written before
    /// inputs were kept.
    pub input: Option<Value>,
    /// The result (succeeded steps).
    pub output: Option<Value>,
    /// The last error (failed steps, or the last failed attempt before success).
    pub error: Option<String>,
}

/// A callback to deliver once an execution ends: the `X-Callback-Url` of
/// a sync run that fell back to async ([`Store::add_callback`]).
#[derive(Debug, Clone)]
pub struct NewCallback {
    /// The delivery id (UUID), sent as `X-Flow-Delivery-Id` with every
    /// attempt so that the receiver can drop repeats.
    pub id: String,
    /// The execution whose end it reports.
    pub execution_id: String,
    /// Where to POST it.
    pub url: String,
    /// Given up if not delivered within this long (by the store's clock).
    pub expires_in: Duration,
}

/// Where a callback stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CallbackState {
    /// Not delivered yet: due once its execution has ended.
    Pending,
    /// A receiver answered 2xx.
    Delivered,
    /// Given up: expired, or refused for good (see `last_error`).
    Failed,
}

impl CallbackState {
    /// The lowercase name (`pending`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackState::Pending => "pending",
            CallbackState::Delivered => "delivered",
            CallbackState::Failed => "failed",
        }
    }

    /// Parses a lowercase name.
    pub fn parse(s: &str) -> Option<CallbackState> {
        Some(match s {
            "pending" => CallbackState::Pending,
            "delivered" => CallbackState::Delivered,
            "failed" => CallbackState::Failed,
            _ => return None,
        })
    }
}

/// A stored callback.
#[derive(Debug, Clone, Serialize)]
pub struct Callback {
    /// See [`NewCallback::id`].
    pub id: String,
    /// See [`NewCallback::execution_id`].
    pub execution_id: String,
    /// See [`NewCallback::url`].
    pub url: String,
    /// Where it stands.
    pub state: CallbackState,
    /// Attempts started (a claim counts one).
    pub attempts: u32,
    /// When it is next due (while pending; a claim moves it past its lease).
    pub next_attempt_at: DateTime<Utc>,
    /// When it is given up if still pending.
    pub expires_at: DateTime<Utc>,
    /// Why the last attempt failed, or why it was given up.
    pub last_error: Option<String>,
}

/// How a callback attempt ended ([`Store::settle_callback`]).
#[derive(Debug, Clone)]
pub enum CallbackOutcome {
    /// Delivered: never sent again.
    Delivered,
    /// Failed; due again after this long (if still before its expiry).
    Retry {
        /// The wait before the next attempt.
        after: Duration,
        /// Why it failed.
        error: String,
    },
    /// Failed for good (its host is no longer allowed, ...).
    GiveUp {
        /// Why.
        error: String,
    },
}

/// The error a callback expired with; `last` is its last attempt's error.
pub fn callback_expired_message(last: Option<&str>) -> String {
    match last {
        Some(last) => format!("expired before delivery (last error: {last})"),
        None => "expired before delivery".to_string(),
    }
}

/// What the store keeps of a connection's OAuth2 credentials
/// (LANGUAGE.md §12): a refresh token the server rotated must survive a
/// restart (the first one, from the config, may already be spent) and be
/// the one every replica uses, and the access token is shared so that
/// processes and restarts do not each fetch one.
///
/// The tokens are secrets: never logged or shown. `Debug` prints them as
/// `"***"` (so a `{:?}` in a log line or an assertion cannot leak them).
#[derive(Clone, PartialEq)]
pub struct ConnectionTokens {
    /// The access token sent with requests, if one was fetched.
    pub access_token: Option<String>,
    /// When the access token expires (from `expires_in`), if the server said.
    pub expires_at: Option<DateTime<Utc>>,
    /// The refresh token to use next (`oauth2: refresh_token`), if any.
    pub refresh_token: Option<String>,
    /// Incremented by every save (first save: 1): a process that waited
    /// while another fetched sees a newer generation.
    pub generation: i64,
}

impl fmt::Debug for ConnectionTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let masked = |token: &Option<String>| token.as_ref().map(|_| "***");
        f.debug_struct("ConnectionTokens")
            .field("access_token", &masked(&self.access_token))
            .field("expires_at", &self.expires_at)
            .field("refresh_token", &masked(&self.refresh_token))
            .field("generation", &self.generation)
            .finish()
    }
}

/// A claimed execution and the integration state read with it
/// ([`Store::claim_run`]).
pub type Claimed = (Execution, Map<String, Value>);

/// A store failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The backend failed (I/O, database, corrupt data, ...).
    Backend(String),
    /// A write needing the lease of execution `.0` was refused: the lease is
    /// no longer the caller's (it expired and another worker claimed the
    /// run, or the run was released or finished). The caller must stop the
    /// run without further side effects; its new holder carries it on.
    LeaseLost(String),
    /// Stored data of one execution cannot be read back (written by an
    /// older version, or damaged): asking again gives the same answer, so
    /// the caller fails that execution rather than retrying it.
    Unreadable(String),
}

impl StoreError {
    /// A backend failure with this message.
    pub fn backend(message: impl Into<String>) -> StoreError {
        StoreError::Backend(message.into())
    }

    /// Whether this is [`StoreError::LeaseLost`].
    pub fn is_lease_lost(&self) -> bool {
        matches!(self, StoreError::LeaseLost(_))
    }

    /// The message without the `store error:` prefix.
    pub fn message(&self) -> String {
        match self {
            StoreError::Backend(m) | StoreError::Unreadable(m) => m.clone(),
            StoreError::LeaseLost(id) => format!(
                "execution {id}: this worker's lease was lost (another worker took the run over)"
            ),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "store error: {}", self.message())
    }
}

impl std::error::Error for StoreError {}

/// Result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// The durable store. All methods are atomic on their own, and durable when
/// they return (as far as the backend's durability setting promises).
pub trait Store: Send + Sync + 'static {
    /// Stores a new execution unless `(flow, dedupe_key)` was seen before.
    fn enqueue(&self, new: NewExecution) -> BoxFuture<'_, StoreResult<Enqueued>>;

    /// Leases the oldest queued execution, or a running one whose lease
    /// expired, to `worker` for `lease`; marks it running, bumps `attempts`
    /// and the lease epoch ([`Execution::lease`] is the new lease). An
    /// expired run already taken over [`MAX_TAKEOVERS`] times is marked
    /// failed instead.
    fn claim<'a>(
        &'a self,
        worker: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, StoreResult<Option<Execution>>>;

    /// [`Store::claim`] plus [`Store::state_all`], in one round trip where
    /// the backend can: what a worker needs to start a run.
    fn claim_run<'a>(
        &'a self,
        worker: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, StoreResult<Option<Claimed>>> {
        async move {
            match self.claim(worker, lease).await? {
                Some(e) => Ok(Some((e, self.state_all().await?))),
                None => Ok(None),
            }
        }
        .boxed()
    }

    /// Up to `n` claims at once (one fetcher per process claims for all its
    /// idle workers), each with the integration state read with it. The
    /// default claims one by one; SQL backends claim in one statement.
    fn claim_batch<'a>(
        &'a self,
        worker: &'a str,
        n: usize,
        lease: Duration,
    ) -> BoxFuture<'a, StoreResult<Vec<Claimed>>> {
        async move {
            let mut out = Vec::new();
            while out.len() < n {
                match self.claim_run(worker, lease).await? {
                    Some(c) => out.push(c),
                    None => break,
                }
            }
            Ok(out)
        }
        .boxed()
    }

    /// Gives a running execution back to the queue (graceful shutdown: a run
    /// still going at the drain deadline); its journal is kept, so the next
    /// claim resumes after the last finished step. `false` if `lease` is no
    /// longer held.
    fn release<'a>(&'a self, id: &'a str, lease: &'a Lease) -> BoxFuture<'a, StoreResult<bool>>;

    /// Called once when a serving process starts, before its workers claim.
    /// A store that this process uses exclusively (SQLite, opened by
    /// `serve`; memory) puts every `running` execution back in the queue:
    /// whoever held it is gone, so waiting for its lease to expire would only
    /// delay the resume. A store shared by several live processes
    /// (PostgreSQL) does nothing and lets leases expire. Each requeue counts
    /// as a take-over ([`MAX_TAKEOVERS`]: a run past it is marked failed).
    /// Returns how many executions were requeued.
    fn requeue_interrupted(&self) -> BoxFuture<'_, StoreResult<u64>>;

    /// Retention: deletes `succeeded` and `skipped` executions created
    /// before `before`, with their journals, dedupe keys and callbacks, and schedule
    /// ticks older than it (except each flow's last one). Failed, queued and
    /// running executions are kept. Returns how many executions were deleted.
    fn purge_finished(&self, before: DateTime<Utc>) -> BoxFuture<'_, StoreResult<u64>>;

    /// Retention of failed runs (kept longer than the others, for replay):
    /// deletes `failed` executions created before `before`, with their
    /// journals, dedupe keys and callbacks. Returns how many were deleted.
    fn purge_failed(&self, before: DateTime<Utc>) -> BoxFuture<'_, StoreResult<u64>>;

    /// Extends a lease by `duration` from now (the store's clock); `false`
    /// if `lease` is no longer held.
    fn renew<'a>(
        &'a self,
        id: &'a str,
        lease: &'a Lease,
        duration: Duration,
    ) -> BoxFuture<'a, StoreResult<bool>>;

    /// [`Store::renew`] for many runs at once (one heartbeat per process);
    /// returns the ids whose lease was lost. The default renews one by one.
    fn renew_all<'a>(
        &'a self,
        held: &'a [(String, Lease)],
        duration: Duration,
    ) -> BoxFuture<'a, StoreResult<Vec<String>>> {
        async move {
            let mut lost = Vec::new();
            for (id, lease) in held {
                if !self.renew(id, lease, duration).await? {
                    lost.push(id.clone());
                }
            }
            Ok(lost)
        }
        .boxed()
    }

    /// Records the end of an execution and releases its lease;
    /// [`StoreError::LeaseLost`] (and nothing written) if `lease` is no
    /// longer held.
    fn finish<'a>(
        &'a self,
        id: &'a str,
        lease: &'a Lease,
        finish: Finish,
    ) -> BoxFuture<'a, StoreResult<()>>;

    /// Writes the journal entries `steps` (as [`Store::record_step`] each)
    /// and then the end of the execution (as [`Store::finish`]): one
    /// transaction where the backend allows, so a run's last step and its
    /// end cost one commit. [`StoreError::LeaseLost`] if `lease` is no
    /// longer held (the SQLite and PostgreSQL stores then write nothing;
    /// this default may have written the entries before the refusal, as
    /// separate `record_step` calls would).
    fn finish_with_steps<'a>(
        &'a self,
        id: &'a str,
        lease: &'a Lease,
        steps: Vec<StepRecord>,
        finish: Finish,
    ) -> BoxFuture<'a, StoreResult<()>> {
        async move {
            for record in steps {
                self.record_step(id, lease, record).await?;
            }
            self.finish(id, lease, finish).await
        }
        .boxed()
    }

    /// Puts a finished execution back in the queue (replay), keeping its
    /// journal so finished steps are not executed again. `None` if unknown;
    /// an execution that has not ended is returned unchanged.
    fn requeue<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Option<Execution>>>;

    /// One execution.
    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Option<Execution>>>;

    /// Executions matching the filter, newest first.
    fn list(&self, filter: ExecutionFilter) -> BoxFuture<'_, StoreResult<Vec<Execution>>>;

    /// How many executions match the filter, counting at most its limit
    /// (0: 100): a count that stays cheap on a large store. The default
    /// lists them; SQL stores count without reading the rows.
    fn count(&self, filter: ExecutionFilter) -> BoxFuture<'_, StoreResult<u64>> {
        async move { Ok(self.list(filter).await?.len() as u64) }.boxed()
    }

    /// The journal of an execution, in the order steps were first recorded.
    /// An entry whose output cannot be read back makes it
    /// [`StoreError::Unreadable`] (for this execution only).
    fn journal<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Vec<StepRecord>>>;

    /// Inserts or replaces the journal entry `record.key` of an execution;
    /// [`StoreError::LeaseLost`] (and nothing written) if `lease` is no
    /// longer held.
    fn record_step<'a>(
        &'a self,
        id: &'a str,
        lease: &'a Lease,
        record: StepRecord,
    ) -> BoxFuture<'a, StoreResult<()>>;

    /// The last schedule tick recorded for a flow (see [`NewExecution::tick`]).
    fn last_tick<'a>(&'a self, flow: &'a str) -> BoxFuture<'a, StoreResult<Option<DateTime<Utc>>>>;

    /// All integration state (`state.get`), read at the start of each run.
    /// A value that cannot be read back is left out (logged).
    fn state_all(&self) -> BoxFuture<'_, StoreResult<Map<String, Value>>>;

    /// Sets one state key (`state.set`).
    fn state_set<'a>(&'a self, key: &'a str, value: Value) -> BoxFuture<'a, StoreResult<()>>;

    /// The build id that last deployed successfully.
    fn deployed_version(&self) -> BoxFuture<'_, StoreResult<Option<String>>>;

    /// Records a successful deploy.
    fn set_deployed_version<'a>(&'a self, version: &'a str) -> BoxFuture<'a, StoreResult<()>>;

    /// Records a callback to deliver when `callback.execution_id` ends. A
    /// second callback for the same execution is ignored.
    fn add_callback(&self, callback: NewCallback) -> BoxFuture<'_, StoreResult<()>>;

    /// Up to `n` pending callbacks that are due and whose execution has
    /// ended, oldest due first; each counts an attempt and is not due again
    /// for `lease` (so that other replicas leave it alone while this one
    /// delivers it; if it never settles, it is due again after that: at
    /// least once). Pending callbacks past their expiry are marked failed
    /// first ([`callback_expired_message`]).
    fn claim_callbacks(
        &self,
        n: usize,
        lease: Duration,
    ) -> BoxFuture<'_, StoreResult<Vec<Callback>>>;

    /// Records how an attempt at the callback `id` ended. A retry or a
    /// give-up of a callback no longer pending (delivered meanwhile by
    /// another replica) changes nothing.
    fn settle_callback<'a>(
        &'a self,
        id: &'a str,
        outcome: CallbackOutcome,
    ) -> BoxFuture<'a, StoreResult<()>>;

    /// The callback of an execution, if it has one.
    fn callback<'a>(
        &'a self,
        execution_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<Callback>>>;

    /// The saved tokens of connection `name`, if any were saved.
    fn connection_tokens<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<ConnectionTokens>>>;

    /// Saves the tokens of connection `name` (replacing the previous ones)
    /// and returns the new generation (previous + 1, or 1).
    fn save_connection_tokens<'a>(
        &'a self,
        name: &'a str,
        access_token: Option<&'a str>,
        expires_at: Option<DateTime<Utc>>,
        refresh_token: Option<&'a str>,
    ) -> BoxFuture<'a, StoreResult<i64>>;

    /// Takes the right to fetch new tokens for connection `name` for
    /// `lease`: `true` unless another holder took it and its lease has not
    /// run out (then the caller waits and reads the tokens again, so that
    /// replicas needing a token at the same moment fetch it once, and a
    /// rotated refresh token is not spent twice). A holder that claims
    /// again extends its lease.
    ///
    /// The default, for stores one process uses (memory, SQLite), is
    /// `true`: the caller already fetches once per process.
    fn claim_token_fetch<'a>(
        &'a self,
        _name: &'a str,
        _holder: &'a str,
        _lease: Duration,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        async { Ok(true) }.boxed()
    }

    /// Gives back a claim taken by `holder` (after saving, or after the
    /// fetch failed), so that others need not wait for its lease to run
    /// out. A claim held by another holder is left alone. The default has
    /// nothing to do.
    fn release_token_fetch<'a>(
        &'a self,
        _name: &'a str,
        _holder: &'a str,
    ) -> BoxFuture<'a, StoreResult<()>> {
        async { Ok(()) }.boxed()
    }

    /// Reserves the send time of one request through connection `name`,
    /// limited to `requests` per `per` for every process sharing this
    /// store, and returns how long the caller waits before sending (zero:
    /// now). A strict sliding window: at most `requests` send times in any
    /// interval of length `per`.
    ///
    /// `None`: this store is not shared by processes, and the runtime
    /// limits in process (the default, for memory and SQLite).
    fn reserve_request<'a>(
        &'a self,
        _name: &'a str,
        _requests: u32,
        _per: Duration,
    ) -> BoxFuture<'a, StoreResult<Option<Duration>>> {
        async { Ok(None) }.boxed()
    }

    /// Notified (a hint, possibly spurious, possibly missed) when another
    /// process may have queued a run: shared stores wake idle workers with
    /// it; workers still poll. `None`: this process queues all the work it
    /// runs and wakes its own workers.
    fn wake_hint(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }
}
