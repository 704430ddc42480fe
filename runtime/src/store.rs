//! The durable side of the runtime: the execution queue, the step journal,
//! dedupe keys, schedule ticks, integration state and the deployed version.
//!
//! [`Store`] is object-safe (methods return boxed futures) so the backend is
//! chosen at start-up. Its shape anticipates SQL backends: an execution is a
//! row with a status and a lease (`claim` takes the oldest queued execution
//! or one whose lease expired, like `FOR UPDATE SKIP LOCKED`), journal
//! entries are keyed by `(execution, step key)`, dedupe keys and schedule
//! ticks are checked and recorded in the same transaction that enqueues.
//!
//! Backends: [`MemoryStore`] keeps everything in process (lost on exit);
//! [`SqliteStore`] is the default of `serve` (one file, WAL, group commit).
//! Every method's answer means the change is committed: a caller may act on
//! it (answer `202`, call the next step) as on a durable fact.

mod memory;
mod sqlite;

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::{BoxFuture, FutureExt as _};
use serde::Serialize;
use serde_json::{Map, Value};

pub use memory::MemoryStore;
pub use sqlite::{Durability, SqliteOptions, SqliteStore};

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
    /// inline); `None` queues it for the worker pool.
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

/// Filter for [`Store::list`].
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    /// Only this status.
    pub status: Option<Status>,
    /// Only this flow.
    pub flow: Option<String>,
    /// At most this many, newest first (0 = store default of 100).
    pub limit: usize,
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
    /// The result (succeeded steps).
    pub output: Option<Value>,
    /// The last error (failed steps, or the last failed attempt before success).
    pub error: Option<String>,
}

/// A claimed execution and the integration state read with it
/// ([`Store::claim_run`]).
pub type Claimed = (Execution, Map<String, Value>);

/// A store failure (I/O, database, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "store error: {}", self.0)
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
    /// expired, to `worker` for `lease`; marks it running, bumps `attempts`.
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

    /// Gives a running execution back to the queue (graceful shutdown: a run
    /// still going at the drain deadline); its journal is kept, so the next
    /// claim resumes after the last finished step. `false` if `worker` does
    /// not hold it.
    fn release<'a>(&'a self, id: &'a str, worker: &'a str) -> BoxFuture<'a, StoreResult<bool>>;

    /// Called once when a serving process starts, before its workers claim.
    /// A store that this process uses exclusively (SQLite, opened by
    /// `serve`; memory) puts every `running` execution back in the queue:
    /// whoever held it is gone, so waiting for its lease to expire would only
    /// delay the resume. A store shared by several live processes
    /// (PostgreSQL) does nothing and lets leases expire. Returns how many
    /// executions were requeued.
    fn requeue_interrupted(&self) -> BoxFuture<'_, StoreResult<u64>>;

    /// Retention: deletes `succeeded` and `skipped` executions created
    /// before `before`, with their journals and dedupe keys, and schedule
    /// ticks older than it (except each flow's last one). Failed, queued and
    /// running executions are kept. Returns how many executions were deleted.
    fn purge_finished(&self, before: DateTime<Utc>) -> BoxFuture<'_, StoreResult<u64>>;

    /// Extends a lease; `false` if `worker` no longer holds it.
    fn renew<'a>(
        &'a self,
        id: &'a str,
        worker: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, StoreResult<bool>>;

    /// Records the end of an execution and releases its lease.
    fn finish<'a>(&'a self, id: &'a str, finish: Finish) -> BoxFuture<'a, StoreResult<()>>;

    /// Puts a finished execution back in the queue (replay), keeping its
    /// journal so finished steps are not executed again. `None` if unknown;
    /// an execution that has not ended is returned unchanged.
    fn requeue<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Option<Execution>>>;

    /// One execution.
    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Option<Execution>>>;

    /// Executions matching the filter, newest first.
    fn list(&self, filter: ExecutionFilter) -> BoxFuture<'_, StoreResult<Vec<Execution>>>;

    /// The journal of an execution, in the order steps were first recorded.
    fn journal<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Vec<StepRecord>>>;

    /// Inserts or replaces the journal entry `record.key` of an execution.
    fn record_step<'a>(&'a self, id: &'a str, record: StepRecord)
        -> BoxFuture<'a, StoreResult<()>>;

    /// The last schedule tick recorded for a flow (see [`NewExecution::tick`]).
    fn last_tick<'a>(&'a self, flow: &'a str) -> BoxFuture<'a, StoreResult<Option<DateTime<Utc>>>>;

    /// All integration state (`state.get`), read at the start of each run.
    fn state_all(&self) -> BoxFuture<'_, StoreResult<Map<String, Value>>>;

    /// Sets one state key (`state.set`).
    fn state_set<'a>(&'a self, key: &'a str, value: Value) -> BoxFuture<'a, StoreResult<()>>;

    /// The build id that last deployed successfully.
    fn deployed_version(&self) -> BoxFuture<'_, StoreResult<Option<String>>>;

    /// Records a successful deploy.
    fn set_deployed_version<'a>(&'a self, version: &'a str) -> BoxFuture<'a, StoreResult<()>>;
}
