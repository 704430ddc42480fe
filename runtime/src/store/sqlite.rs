//! [`SqliteStore`]: the default store of `serve`, one SQLite file (WAL mode).
//!
//! # Why this shape
//!
//! * **rusqlite with the bundled SQLite**: the binary needs no system
//!   library and no server; the SQLite version (and so WAL, `RETURNING`,
//!   partial indexes, upserts) is known at build time. rusqlite is
//!   synchronous, so no SQLite call runs on an async worker thread:
//! * **one writer thread** owns the only connection that writes. Every
//!   change is a *job* sent to it over a channel. The thread takes the first
//!   job, then every job that queued up meanwhile (up to [`MAX_BATCH`]),
//!   runs them all in one `BEGIN IMMEDIATE … COMMIT` and answers each caller
//!   only after the `COMMIT` returned. That is *group commit*: under load
//!   one disk sync covers many webhook intakes, and still no caller is told
//!   "stored" before it is. With no load a batch is one job and nothing
//!   waits for a timer. If a job fails, the batch is rolled back and its
//!   jobs are run again one transaction each, so one bad job fails alone.
//! * **reads** (`get`, `list`, `journal`, `state_all`, ...) run on
//!   `spawn_blocking` with a small pool of read connections; WAL lets them
//!   proceed while the writer commits.
//! * **checkpoints** (copying the WAL back into the database file) run on a
//!   thread of their own every [`CHECKPOINT_EVERY`] (`PASSIVE`: they never
//!   block the writer), so commits do not stall behind them; the writer's
//!   automatic checkpoint stays as a backstop for a WAL past 40 MB.
//!
//! # Durability
//!
//! [`Durability::Full`]: each commit's WAL frames are synced to disk
//! (`fdatasync`) before its callers are answered, so an acknowledged change
//! survives a process crash *and* a power loss or kernel crash. That is what
//! `PRAGMA synchronous=FULL` does inside `COMMIT`; here SQLite runs with
//! `NORMAL` and sync threads issue the `fdatasync` after the `COMMIT` — one
//! for all batches committed meanwhile — while the writer already commits
//! the next batch, and a second sync can start while the first still waits
//! for the disk. A sync that starts after a `COMMIT` returned covers it.
//! Nobody acts on a change before it is synced: every answer (a `202`, a
//! claimed run, a recorded step) waits for its sync.
//! [`Durability::Normal`] (`synchronous=NORMAL`): the WAL is synced only at
//! checkpoints; an acknowledged change survives a crash of the process
//! (SIGKILL, panic, OOM kill: the data is in the OS page cache), but a power
//! loss may lose the most recent commits (never corrupt the file).
//!
//! # One serving process per file
//!
//! [`SqliteOptions::exclusive`] (what `serve` uses) takes an exclusive
//! `flock` on `<file>.lock` for the life of the store; a second `serve` on
//! the same file fails to start. Knowing it is alone, the store puts the
//! runs left `running` by a previous (dead) process back in the queue at
//! start-up ([`Store::requeue_interrupted`]) instead of waiting for their
//! leases to expire. Other processes (`deploy`, `run --store sqlite://...`)
//! may open the file meanwhile: SQLite serialises their writes.

use crate::core::sync::lock;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::future::{BoxFuture, FutureExt as _};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension as _, Row};
use serde_json::{Map, Value};
use tokio::sync::oneshot;

use super::{
    abandoned_message, callback_expired_message, encoded, keep_readable, state_from_rows,
    step_input, step_output, Callback, CallbackOutcome, CallbackState, Claimed, ConnectionTokens,
    Encoded, Enqueued, Execution, ExecutionFilter, Finish, Lease, NewCallback, NewExecution,
    ReadBack, Status, StepRecord, StepStatus, Store, StoreError, StoreResult, ValueColumns,
};

/// Most jobs committed in one transaction.
pub const MAX_BATCH: usize = 1024;

/// How long a connection waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Sync threads of [`Durability::Full`]: while one waits for the disk, the
/// next committed batch starts its own sync instead of queueing behind it.
const SYNC_THREADS: usize = 2;

/// How often the checkpoint thread copies the WAL into the database file.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Rows handled per purge transaction (keeps the writer responsive).
const PURGE_CHUNK: usize = 500;

/// The schema, one migration per entry; `schema_version` holds how many
/// have been applied. Append only: never edit a released migration.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE executions (
    seq           INTEGER PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,
    flow          TEXT NOT NULL,
    status        TEXT NOT NULL,
    trigger       TEXT NOT NULL,
    dedupe_key    TEXT,
    created_at    INTEGER NOT NULL,
    started_at    INTEGER,
    finished_at   INTEGER,
    attempts      INTEGER NOT NULL DEFAULT 0,
    result        TEXT,
    error         TEXT,
    error_step    TEXT,
    lease_owner   TEXT,
    lease_expires INTEGER
);
-- Partial indexes: a status change touches only the indexes of the statuses
-- involved; `list?status=` for other statuses walks `seq` newest first.
CREATE INDEX executions_queued ON executions (seq) WHERE status = 'queued';
CREATE INDEX executions_leased ON executions (lease_expires) WHERE status = 'running';
CREATE INDEX executions_failed ON executions (seq) WHERE status = 'failed';
CREATE INDEX executions_by_flow ON executions (flow, seq);
CREATE TABLE journal (
    execution_id TEXT NOT NULL,
    key          TEXT NOT NULL,
    ord          INTEGER NOT NULL,
    call         TEXT NOT NULL,
    status       TEXT NOT NULL,
    attempts     INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER NOT NULL,
    output       TEXT,
    error        TEXT,
    PRIMARY KEY (execution_id, key)
) WITHOUT ROWID;
CREATE TABLE dedupe (
    flow         TEXT NOT NULL,
    key          TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    PRIMARY KEY (flow, key)
) WITHOUT ROWID;
CREATE TABLE schedule_ticks (
    flow         TEXT NOT NULL,
    tick         INTEGER NOT NULL,
    execution_id TEXT NOT NULL,
    PRIMARY KEY (flow, tick)
) WITHOUT ROWID;
CREATE TABLE state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
"#,
    // 2: the fencing token of leases (bumped by every claim).
    "ALTER TABLE executions ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0;",
    // 3: take-overs since the last replay (MAX_TAKEOVERS).
    "ALTER TABLE executions ADD COLUMN takeovers INTEGER NOT NULL DEFAULT 0;",
    // 4: X-Callback-Url callbacks, delivered until done or expired.
    r#"
CREATE TABLE callbacks (
    id              TEXT PRIMARY KEY,
    execution_id    TEXT NOT NULL UNIQUE,
    url             TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    last_error      TEXT
) WITHOUT ROWID;
CREATE INDEX callbacks_due ON callbacks (next_attempt_at) WHERE state = 'pending';
"#,
    // 5: the OAuth2 tokens of connections (a rotated refresh token must
    // survive a restart). No fetch claim or send times: one process uses
    // the file, and it serialises those in memory.
    r#"
CREATE TABLE connections (
    name          TEXT PRIMARY KEY,
    access_token  TEXT,
    expires_at    INTEGER,
    refresh_token TEXT,
    generation    INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
"#,
    // 6: the executions page searches by dedupe key (`list` with a search).
    "CREATE INDEX executions_by_dedupe_key ON executions (dedupe_key) WHERE dedupe_key IS NOT NULL;",
    // 7: each journal entry keeps its step's input (`StepRecord::input`).
    "ALTER TABLE journal ADD COLUMN input TEXT;",
];

/// What a commit promises (`--durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Durability {
    /// Synced before acknowledged (like `synchronous=FULL`): acknowledged
    /// changes survive power loss.
    #[default]
    Full,
    /// `synchronous=NORMAL`: acknowledged changes survive a process crash;
    /// a power loss may lose the last commits.
    Normal,
}

/// How to open a [`SqliteStore`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SqliteOptions {
    /// The `synchronous` setting.
    pub durability: Durability,
    /// Lock the file for this process (`serve`): fails if another process
    /// holds the lock, and makes [`Store::requeue_interrupted`] requeue
    /// every `running` execution.
    pub exclusive: bool,
}

type Job = Box<dyn Batched>;

/// A unit of work for the writer thread.
trait Batched: Send {
    /// Runs inside the current transaction; `false` if it failed. May run
    /// again (after a rollback), so it must not consume its inputs.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once its transaction is committed (or not).
    fn answer(self: Box<Self>, committed: Result<(), StoreError>);
}

struct Typed<R, F> {
    f: F,
    out: Option<rusqlite::Result<R>>,
    tx: oneshot::Sender<StoreResult<R>>,
}

impl<R, F> Batched for Typed<R, F>
where
    R: Send,
    F: Fn(&Connection) -> rusqlite::Result<R> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let r = (self.f)(conn);
        let ok = r.is_ok();
        self.out = Some(r);
        ok
    }

    fn answer(self: Box<Self>, committed: Result<(), StoreError>) {
        let r = match (committed, self.out) {
            (Err(e), _) => Err(e),
            (Ok(()), Some(Ok(v))) => Ok(v),
            (Ok(()), Some(Err(e))) => Err(sql_error(e)),
            (Ok(()), None) => Err(StoreError::backend("the write was not run")),
        };
        let _ = self.tx.send(r);
    }
}

/// Runs `jobs` in one transaction; `Ok(false)` (rolled back) if one failed.
fn transaction(conn: &Connection, jobs: &mut [Job]) -> Result<bool, StoreError> {
    conn.prepare_cached("BEGIN IMMEDIATE")
        .and_then(|mut s| s.execute([]))
        .map_err(sql_error)?;
    for job in jobs.iter_mut() {
        if !job.run(conn) {
            let _ = conn.execute_batch("ROLLBACK");
            return Ok(false);
        }
    }
    match conn
        .prepare_cached("COMMIT")
        .and_then(|mut s| s.execute([]))
    {
        Ok(_) => Ok(true),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(sql_error(e))
        }
    }
}

fn sql_error(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(format!("sqlite: {e}"))
}

/// The `WHERE` conditions of [`Store::list`] for `filter`, with their
/// numbered arguments. Only the conditions set are written, so that each
/// combination is its own cached statement with the plan that suits it.
fn list_conditions(filter: ExecutionFilter) -> (Vec<String>, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value as Arg;
    let mut args: Vec<Arg> = Vec::new();
    let mut conditions = Vec::new();
    let mut add = |condition: &str, arg: Arg| {
        args.push(arg);
        conditions.push(condition.replace("?N", &format!("?{}", args.len())));
    };
    if let Some(s) = filter.status {
        add("status = ?N", Arg::Text(s.as_str().into()));
    }
    if let Some(f) = filter.flow {
        add("flow = ?N", Arg::Text(f));
    }
    if let Some(t) = filter.since {
        add("created_at >= ?N", Arg::Integer(micros(t)));
    }
    if let Some(t) = filter.until {
        add("created_at < ?N", Arg::Integer(micros(t)));
    }
    if let Some(q) = filter.search {
        // A union of two index lookups (the id's unique index, the
        // dedupe key's partial index), not an OR the planner may scan for.
        add(
            "seq IN (SELECT seq FROM executions WHERE id = ?N \
             UNION SELECT seq FROM executions WHERE dedupe_key = ?N)",
            Arg::Text(q),
        );
    }
    if let Some(id) = filter.before {
        // An unknown cursor compares with NULL: nothing is listed.
        add(
            "seq < (SELECT seq FROM executions WHERE id = ?N)",
            Arg::Text(id),
        );
    }
    (conditions, args)
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

fn lease_until(lease: Duration) -> i64 {
    let us = i64::try_from(lease.as_micros()).unwrap_or(i64::MAX);
    micros(Utc::now()).saturating_add(us)
}

/// A committed (or failed) job waiting for its answer.
type Done = (Job, Result<(), StoreError>);

/// The writer thread: batches jobs into transactions until every sender is
/// gone. With `sync`, answers go through the sync thread (the WAL is made
/// durable before anyone hears "committed"); without, they go out at once.
fn writer_loop(conn: Connection, rx: mpsc::Receiver<Job>, sync: Option<mpsc::Sender<Vec<Done>>>) {
    let mut batch: Vec<Job> = Vec::with_capacity(64);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let done: Vec<Done> = match transaction(&conn, &mut batch) {
            Ok(true) => batch.drain(..).map(|job| (job, Ok(()))).collect(),
            Ok(false) => {
                // One job failed: the others must not fail with it. Each
                // runs again alone; the failing one answers its error.
                batch
                    .drain(..)
                    .map(|mut job| {
                        let committed =
                            transaction(&conn, std::slice::from_mut(&mut job)).map(|_| ());
                        (job, committed)
                    })
                    .collect()
            }
            Err(e) => {
                tracing::error!(error = %e, jobs = batch.len(), "store commit failed");
                batch.drain(..).map(|job| (job, Err(e.clone()))).collect()
            }
        };
        match &sync {
            Some(tx) => {
                if let Err(mpsc::SendError(done)) = tx.send(done) {
                    for (job, _) in done {
                        job.answer(Err(StoreError::backend(
                            "the store sync thread has stopped",
                        )));
                    }
                }
            }
            None => {
                for (job, committed) in done {
                    job.answer(committed);
                }
            }
        }
    }
}

/// The sync thread of [`Durability::Full`]: one `fdatasync` of the WAL
/// covers every batch committed before it started; then their callers are
/// answered. Meanwhile the writer thread commits the next batch (the sync
/// is pipelined, not in the writer's way).
fn sync_loop(wal: PathBuf, rx: Arc<Mutex<mpsc::Receiver<Vec<Done>>>>) {
    let mut file: Option<File> = None;
    let mut pending: Vec<Done> = Vec::new();
    loop {
        {
            let rx = lock(&rx);
            match rx.recv() {
                Ok(first) => pending.extend(first),
                Err(_) => return,
            }
            while let Ok(more) = rx.try_recv() {
                pending.extend(more);
            }
        }
        let synced = sync_file(&wal, &mut file);
        if let Err(e) = &synced {
            tracing::error!(error = %e, "cannot sync the store to disk");
        }
        for (job, committed) in pending.drain(..) {
            job.answer(match (committed, &synced) {
                (Ok(()), Ok(())) => Ok(()),
                (Ok(()), Err(e)) => Err(e.clone()),
                (Err(e), _) => Err(e),
            });
        }
    }
}

fn sync_file(path: &Path, file: &mut Option<File>) -> Result<(), StoreError> {
    let f = match file {
        Some(f) => f,
        None => file.insert(File::open(path).map_err(|e| {
            StoreError::Backend(format!("cannot open {} to sync it: {e}", path.display()))
        })?),
    };
    f.sync_data().map_err(|e| {
        *file = None;
        StoreError::Backend(format!("cannot sync {}: {e}", path.display()))
    })
}

/// The checkpoint thread: `PASSIVE` checkpoints until the store is dropped.
fn checkpoint_loop(conn: Connection, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Acquire) {
        std::thread::park_timeout(CHECKPOINT_EVERY);
        if stop.load(Ordering::Acquire) {
            break;
        }
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::debug!(error = %e, "checkpoint skipped");
        }
    }
}

fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn migrate(conn: &Connection) -> Result<(), String> {
    let sql = |e: rusqlite::Error| e.to_string();
    conn.execute_batch("BEGIN IMMEDIATE").map_err(sql)?;
    let r = (|| {
        conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            .map_err(sql)?;
        let current: i64 = conn
            .query_row("SELECT MAX(version) FROM schema_version", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .map_err(sql)?
            .unwrap_or(0);
        let known = MIGRATIONS.len() as i64;
        if current > known {
            return Err(format!(
                "the database has schema version {current}, newer than this binary knows ({known}); use a newer binary"
            ));
        }
        for (i, step) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            conn.execute_batch(step).map_err(sql)?;
            conn.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                [i as i64 + 1],
            )
            .map_err(sql)?;
        }
        Ok(())
    })();
    match r {
        Ok(()) => conn.execute_batch("COMMIT").map_err(sql),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Takes `flock(LOCK_EX | LOCK_NB)` on the lock file next to the database.
#[cfg(unix)]
fn lock_file(db: &Path) -> StoreResult<File> {
    use std::io::{Read as _, Seek as _, Write as _};
    use std::os::unix::io::AsRawFd as _;
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
    // SAFETY: flock only operates on the descriptor, which `file` keeps open.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::WouldBlock {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(StoreError::Backend(format!(
                "{} is in use by another serving process{} (one `serve` per database file)",
                db.display(),
                if holder.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {holder})")
                }
            )));
        }
        return Err(StoreError::Backend(format!(
            "cannot lock {}: {e}",
            path.display()
        )));
    }
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{}", std::process::id());
    let _ = file.flush();
    Ok(file)
}

#[cfg(not(unix))]
fn lock_file(_db: &Path) -> StoreResult<File> {
    Err(StoreError::Backend(
        "exclusive SQLite stores need a Unix system".into(),
    ))
}

/// A [`Store`] in one SQLite file. See the module docs.
pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<mpsc::Sender<Job>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    exclusive: bool,
    /// The `state` table, kept in memory by the serving process
    /// (`exclusive`): every run starts with a copy of it, and a sync run
    /// would otherwise read the table on every request. This process's
    /// writes go through it; another process's (a `deploy` beside `serve`)
    /// show within [`STATE_CACHE_TTL`].
    state_cache: Option<Arc<Mutex<StateCache>>>,
    stop: Arc<AtomicBool>,
    checkpointer: std::thread::Thread,
    _lock: Option<File>,
}

/// How long [`SqliteStore::state_cache`] is used before the table is read
/// again.
const STATE_CACHE_TTL: Duration = Duration::from_secs(1);

/// See [`SqliteStore::state_cache`].
#[derive(Default)]
struct StateCache {
    /// The table and when it was read; `None` until first read, and again
    /// after a failed write.
    map: Option<(Map<String, Value>, Instant)>,
    /// Writes so far: a read that raced with a write is not cached.
    writes: u64,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.checkpointer.unpark();
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("exclusive", &self.exclusive)
            .finish()
    }
}

impl SqliteStore {
    /// Deletes the executions created before `before` with one of
    /// `statuses`, with their journals and dedupe keys, one chunk per
    /// transaction in creation order (intake interleaves with a long purge);
    /// with `ticks`, also the schedule ticks older than `before` but each
    /// flow's last.
    async fn purge(
        &self,
        before: DateTime<Utc>,
        statuses: &'static [&'static str],
        ticks: bool,
    ) -> StoreResult<u64> {
        let cutoff = micros(before);
        let mut deleted = 0u64;
        let mut after = 0i64;
        loop {
            // One chunk per transaction, in creation order, so intake
            // interleaves with a long purge.
            let (n, last, done) = self
                .write(move |c| {
                    let rows: Vec<(i64, String, String, String, Option<String>, i64)> = c
                        .prepare_cached(
                            "SELECT seq, id, flow, status, dedupe_key, created_at \
                             FROM executions WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                        )?
                        .query_map(params![after, PURGE_CHUNK as i64], |r| {
                            Ok((
                                r.get(0)?,
                                r.get(1)?,
                                r.get(2)?,
                                r.get(3)?,
                                r.get(4)?,
                                r.get(5)?,
                            ))
                        })?
                        .collect::<rusqlite::Result<_>>()?;
                    let mut n = 0u64;
                    let mut last = after;
                    let mut done = rows.len() < PURGE_CHUNK;
                    for (seq, id, flow, status, key, created) in rows {
                        if created >= cutoff {
                            done = true;
                            break;
                        }
                        last = seq;
                        if !statuses.contains(&status.as_str()) {
                            continue;
                        }
                        c.prepare_cached("DELETE FROM journal WHERE execution_id = ?1")?
                            .execute([&id])?;
                        c.prepare_cached("DELETE FROM callbacks WHERE execution_id = ?1")?
                            .execute([&id])?;
                        if let Some(key) = key {
                            c.prepare_cached(
                                "DELETE FROM dedupe WHERE flow = ?1 AND key = ?2 \
                                 AND execution_id = ?3",
                            )?
                            .execute(params![flow, key, id])?;
                        }
                        c.prepare_cached("DELETE FROM executions WHERE seq = ?1")?
                            .execute([seq])?;
                        n += 1;
                    }
                    if done && ticks {
                        c.execute(
                            "DELETE FROM schedule_ticks WHERE tick < ?1 AND tick < \
                             (SELECT MAX(t.tick) FROM schedule_ticks t \
                              WHERE t.flow = schedule_ticks.flow)",
                            [cutoff],
                        )?;
                    }
                    Ok((n, last, done))
                })
                .await?;
            deleted += n;
            after = last;
            if done {
                return Ok(deleted);
            }
        }
    }

    /// Opens (creating if needed) the database at `path`: takes the lock
    /// when `exclusive`, switches to WAL, applies pending migrations and
    /// starts the writer thread. Blocks for the time that takes.
    pub fn open(path: impl AsRef<Path>, options: SqliteOptions) -> StoreResult<SqliteStore> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                return Err(StoreError::Backend(format!(
                    "cannot open {}: the directory {} does not exist",
                    path.display(),
                    dir.display()
                )));
            }
        }
        let lock = if options.exclusive {
            Some(lock_file(&path)?)
        } else {
            None
        };
        let what = |e: rusqlite::Error| {
            StoreError::Backend(format!("cannot open {}: {e}", path.display()))
        };
        let conn = open_connection(&path).map_err(what)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(what)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "cannot open {}: WAL mode is not available (journal mode {mode})",
                path.display()
            )));
        }
        // SQLite's own setting is NORMAL either way (the WAL is synced at
        // every checkpoint); `Full` adds the sync threads.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(what)?;
        // Checkpoints run on their own thread; this is only the backstop.
        conn.pragma_update(None, "wal_autocheckpoint", 10_000)
            .map_err(what)?;
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
            .map_err(what)?;
        migrate(&conn)
            .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
        let checkpoint_conn = open_connection(&path).map_err(what)?;
        checkpoint_conn
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(what)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let thread_error =
            |e: std::io::Error| StoreError::Backend(format!("cannot start a store thread: {e}"));
        let sync = match options.durability {
            Durability::Normal => None,
            Durability::Full => {
                let mut wal = path.as_os_str().to_owned();
                wal.push("-wal");
                let wal = PathBuf::from(wal);
                let (sync_tx, sync_rx) = mpsc::channel::<Vec<Done>>();
                let sync_rx = Arc::new(Mutex::new(sync_rx));
                for _ in 0..SYNC_THREADS {
                    let (wal, rx) = (wal.clone(), sync_rx.clone());
                    std::thread::Builder::new()
                        .name("flow-store-sync".into())
                        .spawn(move || sync_loop(wal, rx))
                        .map_err(thread_error)?;
                }
                Some(sync_tx)
            }
        };
        std::thread::Builder::new()
            .name("flow-store-writer".into())
            .spawn(move || writer_loop(conn, rx, sync))
            .map_err(thread_error)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let checkpointer = std::thread::Builder::new()
            .name("flow-store-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpoint_conn, stop2))
            .map_err(thread_error)?
            .thread()
            .clone();
        Ok(SqliteStore {
            path,
            writer: Mutex::new(tx),
            readers: Arc::new(Mutex::new(Vec::new())),
            exclusive: options.exclusive,
            state_cache: options.exclusive.then(Default::default),
            stop,
            checkpointer,
            _lock: lock,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in the writer thread's next batch; resolves after its commit.
    fn write<R, F>(&self, f: F) -> BoxFuture<'static, StoreResult<R>>
    where
        R: Send + 'static,
        F: Fn(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(Typed { f, out: None, tx });
        let sent = lock(&self.writer).send(job).is_ok();
        async move {
            if !sent {
                return Err(StoreError::backend("the store writer has stopped"));
            }
            rx.await
                .map_err(|_| StoreError::backend("the store writer has stopped"))?
        }
        .boxed()
    }

    /// Runs `f` on a read connection in the blocking pool.
    fn read<R, F>(&self, f: F) -> BoxFuture<'static, StoreResult<R>>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let pool = self.readers.clone();
        let path = self.path.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let pooled = lock(&pool).pop();
                let conn = match pooled {
                    Some(c) => c,
                    None => open_connection(&path).map_err(sql_error)?,
                };
                let r = f(&conn).map_err(sql_error);
                let mut pool = lock(&pool);
                if pool.len() < 8 {
                    pool.push(conn);
                }
                r
            })
            .await
            .map_err(|e| StoreError::Backend(format!("store read task failed: {e}")))?
        }
        .boxed()
    }
}

const EXEC_COLUMNS: &str = "id, flow, status, trigger, dedupe_key, created_at, started_at, \
     finished_at, attempts, result, error, error_step, lease_owner, lease_expires, lease_epoch";

/// An execution row as stored (values still encoded: decoded off the writer
/// thread).
struct ExecRow {
    id: String,
    flow: String,
    status: String,
    trigger: Vec<u8>,
    dedupe_key: Option<String>,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    attempts: i64,
    result: Option<Vec<u8>>,
    error: Option<String>,
    error_step: Option<String>,
    lease_owner: Option<String>,
    lease_expires: Option<i64>,
    lease_epoch: i64,
}

fn exec_row(r: &Row<'_>) -> rusqlite::Result<ExecRow> {
    Ok(ExecRow {
        id: r.get(0)?,
        flow: r.get(1)?,
        status: r.get(2)?,
        trigger: stored(r, 3)?,
        dedupe_key: r.get(4)?,
        created_at: r.get(5)?,
        started_at: r.get(6)?,
        finished_at: r.get(7)?,
        attempts: r.get(8)?,
        result: stored_or_null(r, 9)?,
        error: r.get(10)?,
        error_step: r.get(11)?,
        lease_owner: r.get(12)?,
        lease_expires: r.get(13)?,
        lease_epoch: r.get(14)?,
    })
}

impl ExecRow {
    fn into_execution(self) -> StoreResult<ReadBack> {
        let status = Status::parse(&self.status).ok_or_else(|| {
            StoreError::Backend(format!("unknown status {:?} in the store", self.status))
        })?;
        let mut json = ValueColumns::default();
        let exec = Execution {
            trigger: json.read(&self.trigger, "trigger"),
            result: self.result.as_deref().map(|r| json.read(r, "result")),
            id: self.id,
            flow: self.flow,
            status,
            dedupe_key: self.dedupe_key,
            created_at: from_micros(self.created_at),
            started_at: self.started_at.map(from_micros),
            finished_at: self.finished_at.map(from_micros),
            attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            error: self.error,
            error_step: self.error_step,
            lease_owner: self.lease_owner,
            lease_expires: self.lease_expires.map(from_micros),
            lease_epoch: u64::try_from(self.lease_epoch).unwrap_or(0),
        };
        Ok(json.finish(exec))
    }

    /// The execution as shown (by `get`, `list`): an unreadable column is `null`.
    fn into_shown(self) -> StoreResult<Execution> {
        Ok(self.into_execution()?.0)
    }
}

fn into_execution(row: Option<ExecRow>) -> StoreResult<Option<Execution>> {
    row.map(ExecRow::into_shown).transpose()
}

fn select_execution(conn: &Connection, id: &str) -> rusqlite::Result<Option<ExecRow>> {
    conn.prepare_cached(&format!(
        "SELECT {EXEC_COLUMNS} FROM executions WHERE id = ?1"
    ))?
    .query_row([id], exec_row)
    .optional()
}

/// Leases the oldest queued execution, or the run whose lease expired first.
fn claim_row(c: &Connection, worker: &str, lease: Duration) -> rusqlite::Result<Option<ExecRow>> {
    let now = micros(Utc::now());
    let queued: Option<i64> = c
        .prepare_cached("SELECT seq FROM executions WHERE status = 'queued' ORDER BY seq LIMIT 1")?
        .query_row([], |r| r.get(0))
        .optional()?;
    let (seq, takeover) = match queued {
        Some(seq) => (seq, 0),
        None => {
            // Runs taken over too often are given up first.
            c.prepare_cached(
                "UPDATE executions SET status = 'failed', error = ?1, finished_at = ?2, \
                 lease_owner = NULL, lease_expires = NULL WHERE status = 'running' \
                 AND lease_expires <= ?2 AND takeovers >= ?3",
            )?
            .execute(params![abandoned_message(), now, super::MAX_TAKEOVERS])?;
            let expired: Option<i64> = c
                .prepare_cached(
                    "SELECT seq FROM executions WHERE status = 'running' \
                     AND lease_expires <= ?1 ORDER BY lease_expires LIMIT 1",
                )?
                .query_row([now], |r| r.get(0))
                .optional()?;
            match expired {
                Some(seq) => (seq, 1),
                None => return Ok(None),
            }
        }
    };
    c.prepare_cached(&format!(
        "UPDATE executions SET status = 'running', lease_owner = ?1, \
         lease_expires = ?2, started_at = ?3, attempts = attempts + 1, \
         lease_epoch = lease_epoch + 1, takeovers = takeovers + ?5 \
         WHERE seq = ?4 RETURNING {EXEC_COLUMNS}"
    ))?
    .query_row(
        params![worker, lease_until(lease), now, seq, takeover],
        exec_row,
    )
    .optional()
}

const CALLBACK_COLUMNS: &str =
    "id, execution_id, url, state, attempts, next_attempt_at, expires_at, last_error";

fn callback_row(r: &Row<'_>) -> rusqlite::Result<Callback> {
    let state: String = r.get(3)?;
    Ok(Callback {
        id: r.get(0)?,
        execution_id: r.get(1)?,
        url: r.get(2)?,
        state: CallbackState::parse(&state).unwrap_or(CallbackState::Failed),
        attempts: u32::try_from(r.get::<_, i64>(4)?).unwrap_or(u32::MAX),
        next_attempt_at: from_micros(r.get(5)?),
        expires_at: from_micros(r.get(6)?),
        last_error: r.get(7)?,
    })
}

/// Marks expired callbacks failed, then claims up to `n` due ones.
fn claim_callback_rows(
    c: &Connection,
    n: usize,
    lease: Duration,
) -> rusqlite::Result<Vec<Callback>> {
    let now = micros(Utc::now());
    let expired: Vec<(String, Option<String>)> = c
        .prepare_cached(
            "SELECT id, last_error FROM callbacks WHERE state = 'pending' AND expires_at <= ?1",
        )?
        .query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (id, last) in expired {
        c.prepare_cached("UPDATE callbacks SET state = 'failed', last_error = ?2 WHERE id = ?1")?
            .execute(params![id, callback_expired_message(last.as_deref())])?;
    }
    c.prepare_cached(&format!(
        "UPDATE callbacks SET attempts = attempts + 1, next_attempt_at = ?3 WHERE id IN \
         (SELECT c.id FROM callbacks c JOIN executions e ON e.id = c.execution_id \
          WHERE c.state = 'pending' AND c.next_attempt_at <= ?1 \
          AND e.status IN ('succeeded', 'failed', 'skipped') \
          ORDER BY c.next_attempt_at LIMIT ?2) RETURNING {CALLBACK_COLUMNS}"
    ))?
    .query_map(
        params![
            now,
            i64::try_from(n).unwrap_or(i64::MAX),
            lease_until(lease)
        ],
        callback_row,
    )?
    .collect()
}

fn state_rows(c: &Connection) -> rusqlite::Result<Vec<(String, Vec<u8>)>> {
    c.prepare_cached("SELECT key, value FROM state")?
        .query_map([], |r| Ok((r.get(0)?, stored(r, 1)?)))?
        .collect()
}

/// A value column (see [`super::encoding`]): JSON text, or a CBOR `BLOB`.
fn stored(r: &Row<'_>, column: usize) -> rusqlite::Result<Vec<u8>> {
    Ok(stored_or_null(r, column)?.unwrap_or_default())
}

fn stored_or_null(r: &Row<'_>, column: usize) -> rusqlite::Result<Option<Vec<u8>>> {
    let value = r.get_ref(column)?;
    let bytes = value.as_bytes_or_null().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(column, value.data_type(), Box::new(e))
    })?;
    Ok(bytes.map(<[u8]>::to_vec))
}

fn epoch(lease: &Lease) -> i64 {
    i64::try_from(lease.epoch).unwrap_or(i64::MAX)
}

/// Whether the execution is running under the lease with this epoch.
fn lease_held(c: &Connection, id: &str, epoch: i64) -> rusqlite::Result<bool> {
    Ok(c.prepare_cached(
        "SELECT 1 FROM executions WHERE id = ?1 AND status = 'running' AND lease_epoch = ?2",
    )?
    .query_row(params![id, epoch], |_| Ok(()))
    .optional()?
    .is_some())
}

/// A journal entry ready to write (its output already encoded, off the
/// writer thread).
struct StepRow {
    record: StepRecord,
    output: Option<Encoded>,
    input: Option<Encoded>,
}

impl StepRow {
    fn new(record: StepRecord) -> StoreResult<StepRow> {
        let output = encoded(record.output.as_ref())?;
        let input = encoded(record.input.as_ref())?;
        Ok(StepRow {
            record,
            output,
            input,
        })
    }

    /// Inserts (or replaces) the entry; the caller checked the lease.
    fn insert(&self, c: &Connection, id: &str) -> rusqlite::Result<()> {
        let record = &self.record;
        c.prepare_cached(
            "INSERT INTO journal (execution_id, key, ord, call, status, attempts, \
             started_at, finished_at, output, error, input) VALUES (?1, ?2, \
             (SELECT COUNT(*) FROM journal WHERE execution_id = ?1), \
             ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
             ON CONFLICT (execution_id, key) DO UPDATE SET call = excluded.call, \
             status = excluded.status, attempts = excluded.attempts, \
             started_at = excluded.started_at, finished_at = excluded.finished_at, \
             output = excluded.output, error = excluded.error, input = excluded.input",
        )?
        .execute(params![
            id,
            record.key,
            record.call,
            step_status(record.status),
            record.attempts,
            micros(record.started_at),
            micros(record.finished_at),
            self.output,
            record.error,
            self.input
        ])?;
        Ok(())
    }
}

/// The end of a run ready to write (its result already encoded).
struct EndRow {
    finish: Finish,
    result: Option<Encoded>,
}

impl EndRow {
    fn new(finish: Finish) -> StoreResult<EndRow> {
        let result = encoded(finish.result.as_ref())?;
        Ok(EndRow { finish, result })
    }

    /// Ends the run and releases its lease; `false` if the lease with
    /// this epoch is no longer held.
    fn update(&self, c: &Connection, id: &str, epoch: i64) -> rusqlite::Result<bool> {
        let n = c
            .prepare_cached(
                "UPDATE executions SET status = ?1, result = ?2, error = ?3, \
                 error_step = ?4, finished_at = ?5, lease_owner = NULL, \
                 lease_expires = NULL WHERE id = ?6 AND status = 'running' \
                 AND lease_epoch = ?7",
            )?
            .execute(params![
                self.finish.status.as_str(),
                self.result,
                self.finish.error,
                self.finish.error_step,
                micros(Utc::now()),
                id,
                epoch
            ])?;
        Ok(n == 1)
    }
}

fn step_status(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Succeeded => "succeeded",
        StepStatus::Failed => "failed",
    }
}

impl Store for SqliteStore {
    fn enqueue(&self, new: NewExecution) -> BoxFuture<'_, StoreResult<Enqueued>> {
        let trigger = match Encoded::of(&new.trigger) {
            Ok(t) => t,
            Err(e) => return async move { Err(e) }.boxed(),
        };
        let NewExecution {
            id,
            flow,
            dedupe_key,
            running,
            tick,
            ..
        } = new;
        self.write(move |c| {
            let now = micros(Utc::now());
            if let Some(tick) = tick.map(micros) {
                let last: Option<(i64, String)> = c
                    .prepare_cached(
                        "SELECT tick, execution_id FROM schedule_ticks WHERE flow = ?1 \
                         ORDER BY tick DESC LIMIT 1",
                    )?
                    .query_row([&flow], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                if let Some((last, first)) = last {
                    if last >= tick {
                        return Ok(Enqueued::Duplicate(first));
                    }
                }
            }
            if let Some(key) = &dedupe_key {
                let inserted = c
                    .prepare_cached(
                        "INSERT INTO dedupe (flow, key, execution_id) VALUES (?1, ?2, ?3) \
                         ON CONFLICT DO NOTHING",
                    )?
                    .execute(params![flow, key, id])?;
                if inserted == 0 {
                    let first: String = c
                        .prepare_cached(
                            "SELECT execution_id FROM dedupe WHERE flow = ?1 AND key = ?2",
                        )?
                        .query_row(params![flow, key], |r| r.get(0))?;
                    return Ok(Enqueued::Duplicate(first));
                }
            }
            if let Some(tick) = tick.map(micros) {
                c.prepare_cached(
                    "INSERT INTO schedule_ticks (flow, tick, execution_id) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![flow, tick, id])?;
            }
            let (status, owner, expires, started, attempts) = match &running {
                Some((worker, lease)) => (
                    Status::Running,
                    Some(worker.as_str()),
                    Some(lease_until(*lease)),
                    Some(now),
                    1,
                ),
                None => (Status::Queued, None, None, None, 0),
            };
            c.prepare_cached(
                "INSERT INTO executions (id, flow, status, trigger, dedupe_key, created_at, \
                 started_at, attempts, lease_owner, lease_expires, lease_epoch) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?8)",
            )?
            .execute(params![
                id,
                flow,
                status.as_str(),
                trigger,
                dedupe_key,
                now,
                started,
                attempts,
                owner,
                expires
            ])?;
            Ok(Enqueued::Created)
        })
    }

    fn claim<'a>(
        &'a self,
        worker: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, StoreResult<Option<Execution>>> {
        async move {
            Ok(self
                .claim_run(worker, lease)
                .await?
                .map(|(exec, _state)| exec))
        }
        .boxed()
    }

    fn claim_run<'a>(
        &'a self,
        worker: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, StoreResult<Option<Claimed>>> {
        let worker = worker.to_string();
        async move {
            // A run that cannot be read back is marked failed; claim the next.
            loop {
                let worker = worker.clone();
                let claimed = self.write(move |c| match claim_row(c, &worker, lease)? {
                    Some(row) => Ok(Some((row, state_rows(c)?))),
                    None => Ok(None),
                });
                let Some((row, state)) = claimed.await? else {
                    return Ok(None);
                };
                let readable = keep_readable(self, vec![row.into_execution()?]).await?;
                if let Some(exec) = readable.into_iter().next() {
                    return Ok(Some((exec, state_from_rows(state))));
                }
            }
        }
        .boxed()
    }

    /// Up to `n` runs in one transaction (one commit), with one read of
    /// the state: a claim per transaction held the worker pool to one
    /// commit's latency per run.
    fn claim_batch<'a>(
        &'a self,
        worker: &'a str,
        n: usize,
        lease: Duration,
    ) -> BoxFuture<'a, StoreResult<Vec<Claimed>>> {
        let worker = worker.to_string();
        async move {
            // Runs that cannot be read back are marked failed; claim again.
            loop {
                let worker = worker.clone();
                let claimed = self.write(move |c| {
                    let mut rows = Vec::new();
                    while rows.len() < n {
                        match claim_row(c, &worker, lease)? {
                            Some(row) => rows.push(row),
                            None => break,
                        }
                    }
                    let state = if rows.is_empty() {
                        Vec::new()
                    } else {
                        state_rows(c)?
                    };
                    Ok((rows, state))
                });
                let (rows, state) = claimed.await?;
                if rows.is_empty() {
                    return Ok(Vec::new());
                }
                let execs = rows
                    .into_iter()
                    .map(ExecRow::into_execution)
                    .collect::<StoreResult<Vec<_>>>()?;
                let readable = keep_readable(self, execs).await?;
                if readable.is_empty() {
                    continue;
                }
                let state = state_from_rows(state);
                return Ok(readable
                    .into_iter()
                    .map(|exec| (exec, state.clone()))
                    .collect());
            }
        }
        .boxed()
    }

    fn release<'a>(&'a self, id: &'a str, lease: &'a Lease) -> BoxFuture<'a, StoreResult<bool>> {
        let (id, epoch) = (id.to_string(), epoch(lease));
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE executions SET status = 'queued', lease_owner = NULL, \
                     lease_expires = NULL WHERE id = ?1 AND status = 'running' \
                     AND lease_epoch = ?2",
                )?
                .execute(params![id, epoch])?;
            Ok(n == 1)
        })
    }

    fn requeue_interrupted(&self) -> BoxFuture<'_, StoreResult<u64>> {
        if !self.exclusive {
            return async { Ok(0) }.boxed();
        }
        self.write(|c| {
            c.execute(
                "UPDATE executions SET status = 'failed', error = ?1, finished_at = ?2, \
                 lease_owner = NULL, lease_expires = NULL WHERE status = 'running' \
                 AND takeovers >= ?3",
                params![
                    abandoned_message(),
                    micros(Utc::now()),
                    super::MAX_TAKEOVERS
                ],
            )?;
            let n = c.execute(
                "UPDATE executions SET status = 'queued', lease_owner = NULL, \
                 lease_expires = NULL, takeovers = takeovers + 1 WHERE status = 'running'",
                [],
            )?;
            Ok(n as u64)
        })
    }

    fn purge_finished(&self, before: DateTime<Utc>) -> BoxFuture<'_, StoreResult<u64>> {
        self.purge(before, &["succeeded", "skipped"], true).boxed()
    }

    fn purge_failed(&self, before: DateTime<Utc>) -> BoxFuture<'_, StoreResult<u64>> {
        self.purge(before, &["failed"], false).boxed()
    }

    fn renew<'a>(
        &'a self,
        id: &'a str,
        lease: &'a Lease,
        duration: Duration,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        let (id, epoch) = (id.to_string(), epoch(lease));
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE executions SET lease_expires = ?1 WHERE id = ?2 \
                     AND status = 'running' AND lease_epoch = ?3",
                )?
                .execute(params![lease_until(duration), id, epoch])?;
            Ok(n == 1)
        })
    }

    fn finish<'a>(
        &'a self,
        id: &'a str,
        lease: &'a Lease,
        finish: Finish,
    ) -> BoxFuture<'a, StoreResult<()>> {
        self.finish_with_steps(id, lease, Vec::new(), finish)
    }

    /// The steps and the end in one writer job, so one commit.
    fn finish_with_steps<'a>(
        &'a self,
        id: &'a str,
        lease: &'a Lease,
        steps: Vec<StepRecord>,
        finish: Finish,
    ) -> BoxFuture<'a, StoreResult<()>> {
        let ended = match EndRow::new(finish) {
            Ok(ended) => ended,
            Err(e) => return async move { Err(e) }.boxed(),
        };
        let steps = match steps
            .into_iter()
            .map(StepRow::new)
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(steps) => steps,
            Err(e) => return async move { Err(e) }.boxed(),
        };
        let (id, epoch) = (id.to_string(), epoch(lease));
        let written = self.write(move |c| {
            if !steps.is_empty() && !lease_held(c, &id, epoch)? {
                return Ok(Err(id.clone()));
            }
            for step in &steps {
                step.insert(c, &id)?;
            }
            Ok(ended
                .update(c, &id, epoch)?
                .then_some(())
                .ok_or_else(|| id.clone()))
        });
        async move { written.await?.map_err(StoreError::LeaseLost) }.boxed()
    }

    fn requeue<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Option<Execution>>> {
        let id = id.to_string();
        let row = self.write(move |c| {
            c.prepare_cached(
                "UPDATE executions SET status = 'queued', finished_at = NULL, result = NULL, \
                 error = NULL, error_step = NULL, lease_owner = NULL, lease_expires = NULL, \
                 takeovers = 0 WHERE id = ?1 AND status IN ('succeeded', 'failed', 'skipped')",
            )?
            .execute([&id])?;
            select_execution(c, &id)
        });
        async move { into_execution(row.await?) }.boxed()
    }

    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Option<Execution>>> {
        let id = id.to_string();
        let row = self.read(move |c| select_execution(c, &id));
        async move { into_execution(row.await?) }.boxed()
    }

    fn list(&self, filter: ExecutionFilter) -> BoxFuture<'_, StoreResult<Vec<Execution>>> {
        let limit = if filter.limit == 0 { 100 } else { filter.limit } as i64;
        let rows = self.read(move |c| {
            let (conditions, args) = list_conditions(filter);
            let mut sql = format!("SELECT {EXEC_COLUMNS} FROM executions");
            if !conditions.is_empty() {
                sql.push_str(" WHERE ");
                sql.push_str(&conditions.join(" AND "));
            }
            sql.push_str(&format!(" ORDER BY seq DESC LIMIT {limit}"));
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args.iter()), exec_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        });
        async move { rows.await?.into_iter().map(ExecRow::into_shown).collect() }.boxed()
    }

    fn count(&self, filter: ExecutionFilter) -> BoxFuture<'_, StoreResult<u64>> {
        let limit = if filter.limit == 0 { 100 } else { filter.limit } as i64;
        let n = self.read(move |c| {
            let (conditions, args) = list_conditions(filter);
            let mut sql = String::from("SELECT count(*) FROM (SELECT 1 FROM executions");
            if !conditions.is_empty() {
                sql.push_str(" WHERE ");
                sql.push_str(&conditions.join(" AND "));
            }
            sql.push_str(&format!(" LIMIT {limit})"));
            let n: i64 = c
                .prepare_cached(&sql)?
                .query_row(rusqlite::params_from_iter(args.iter()), |r| r.get(0))?;
            Ok(n)
        });
        async move { Ok(u64::try_from(n.await?).unwrap_or(0)) }.boxed()
    }

    fn journal<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Vec<StepRecord>>> {
        type RawStep = (
            String,
            String,
            String,
            i64,
            i64,
            i64,
            Option<Vec<u8>>,
            Option<String>,
            Option<Vec<u8>>,
        );
        let id = id.to_string();
        let rows = self.read(move |c| {
            c.prepare_cached(
                "SELECT key, call, status, attempts, started_at, finished_at, output, error, \
                 input FROM journal WHERE execution_id = ?1 ORDER BY ord",
            )?
            .query_map([&id], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    stored_or_null(r, 6)?,
                    r.get(7)?,
                    stored_or_null(r, 8)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<RawStep>>>()
        });
        async move {
            rows.await?
                .into_iter()
                .map(
                    |(key, call, status, attempts, started, finished, output, error, input)| {
                        let output = output
                            .as_deref()
                            .map(|o| step_output(&key, o))
                            .transpose()?;
                        Ok(StepRecord {
                            output,
                            input: input.as_deref().and_then(step_input),
                            key,
                            call,
                            status: if status == "succeeded" {
                                StepStatus::Succeeded
                            } else {
                                StepStatus::Failed
                            },
                            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                            started_at: from_micros(started),
                            finished_at: from_micros(finished),
                            error,
                        })
                    },
                )
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
        let step = match StepRow::new(record) {
            Ok(step) => step,
            Err(e) => return async move { Err(e) }.boxed(),
        };
        let (id, epoch) = (id.to_string(), epoch(lease));
        let written = self.write(move |c| {
            // Checked in the same transaction as the write: the lease is
            // still this caller's.
            if !lease_held(c, &id, epoch)? {
                return Ok(Err(id.clone()));
            }
            step.insert(c, &id)?;
            Ok(Ok(()))
        });
        async move { written.await?.map_err(StoreError::LeaseLost) }.boxed()
    }

    fn last_tick<'a>(&'a self, flow: &'a str) -> BoxFuture<'a, StoreResult<Option<DateTime<Utc>>>> {
        let flow = flow.to_string();
        let r = self.read(move |c| {
            c.prepare_cached("SELECT MAX(tick) FROM schedule_ticks WHERE flow = ?1")?
                .query_row([&flow], |r| r.get::<_, Option<i64>>(0))
        });
        async move { Ok(r.await?.map(from_micros)) }.boxed()
    }

    fn state_all(&self) -> BoxFuture<'_, StoreResult<Map<String, Value>>> {
        let cache = self.state_cache.clone();
        let writes_before = match &cache {
            Some(cache) => {
                let cache = lock(cache);
                if let Some((map, read_at)) = &cache.map {
                    if read_at.elapsed() < STATE_CACHE_TTL {
                        return futures::future::ready(Ok(map.clone())).boxed();
                    }
                }
                cache.writes
            }
            None => 0,
        };
        let rows = self.read(state_rows);
        async move {
            let read_at = Instant::now();
            let map = state_from_rows(rows.await?);
            if let Some(cache) = cache {
                let mut cache = lock(&cache);
                if cache.writes == writes_before {
                    cache.map = Some((map.clone(), read_at));
                }
            }
            Ok(map)
        }
        .boxed()
    }

    fn state_set<'a>(&'a self, key: &'a str, value: Value) -> BoxFuture<'a, StoreResult<()>> {
        let stored = match Encoded::of(&value) {
            Ok(v) => v,
            Err(e) => return async move { Err(e) }.boxed(),
        };
        let key = key.to_string();
        let cache = self.state_cache.clone();
        let in_writer = cache.clone();
        let written = self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO state (key, value) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![key, stored])?;
            // In the writer thread, so in the order of the writes.
            if let Some(cache) = &in_writer {
                let mut cache = lock(cache);
                cache.writes += 1;
                if let Some((map, _)) = &mut cache.map {
                    map.insert(key.clone(), value.clone());
                }
            }
            Ok(())
        });
        async move {
            let result = written.await;
            if let (Err(_), Some(cache)) = (&result, cache) {
                // The batch may have rolled back: read the table again.
                let mut cache = lock(&cache);
                cache.map = None;
                cache.writes += 1;
            }
            result
        }
        .boxed()
    }

    fn deployed_version(&self) -> BoxFuture<'_, StoreResult<Option<String>>> {
        self.read(|c| {
            c.prepare_cached("SELECT value FROM meta WHERE key = 'deployed_version'")?
                .query_row([], |r| r.get(0))
                .optional()
        })
    }

    fn set_deployed_version<'a>(&'a self, version: &'a str) -> BoxFuture<'a, StoreResult<()>> {
        let version = version.to_string();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO meta (key, value) VALUES ('deployed_version', ?1) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute([&version])?;
            Ok(())
        })
    }

    fn add_callback(&self, callback: NewCallback) -> BoxFuture<'_, StoreResult<()>> {
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO callbacks (id, execution_id, url, state, next_attempt_at, expires_at) \
                 VALUES (?1, ?2, ?3, 'pending', ?4, ?5) ON CONFLICT DO NOTHING",
            )?
            .execute(params![
                callback.id,
                callback.execution_id,
                callback.url,
                micros(Utc::now()),
                lease_until(callback.expires_in)
            ])?;
            Ok(())
        })
    }

    fn claim_callbacks(
        &self,
        n: usize,
        lease: Duration,
    ) -> BoxFuture<'_, StoreResult<Vec<Callback>>> {
        self.write(move |c| claim_callback_rows(c, n, lease))
    }

    fn settle_callback<'a>(
        &'a self,
        id: &'a str,
        outcome: CallbackOutcome,
    ) -> BoxFuture<'a, StoreResult<()>> {
        let id = id.to_string();
        self.write(move |c| {
            match &outcome {
                CallbackOutcome::Delivered => c
                    .prepare_cached(
                        "UPDATE callbacks SET state = 'delivered', last_error = NULL WHERE id = ?1",
                    )?
                    .execute([&id])?,
                CallbackOutcome::Retry { after, error } => c
                    .prepare_cached(
                        "UPDATE callbacks SET next_attempt_at = ?2, last_error = ?3 \
                         WHERE id = ?1 AND state = 'pending'",
                    )?
                    .execute(params![id, lease_until(*after), error])?,
                CallbackOutcome::GiveUp { error } => c
                    .prepare_cached(
                        "UPDATE callbacks SET state = 'failed', last_error = ?2 \
                         WHERE id = ?1 AND state = 'pending'",
                    )?
                    .execute(params![id, error])?,
            };
            Ok(())
        })
    }

    fn callback<'a>(
        &'a self,
        execution_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<Callback>>> {
        let execution_id = execution_id.to_string();
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {CALLBACK_COLUMNS} FROM callbacks WHERE execution_id = ?1"
            ))?
            .query_row([execution_id], callback_row)
            .optional()
        })
    }

    fn connection_tokens<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<ConnectionTokens>>> {
        let name = name.to_string();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT access_token, expires_at, refresh_token, generation \
                 FROM connections WHERE name = ?1",
            )?
            .query_row([name], |r| {
                Ok(ConnectionTokens {
                    access_token: r.get(0)?,
                    expires_at: r.get::<_, Option<i64>>(1)?.map(from_micros),
                    refresh_token: r.get(2)?,
                    generation: r.get(3)?,
                })
            })
            .optional()
        })
    }

    fn save_connection_tokens<'a>(
        &'a self,
        name: &'a str,
        access_token: Option<&'a str>,
        expires_at: Option<DateTime<Utc>>,
        refresh_token: Option<&'a str>,
    ) -> BoxFuture<'a, StoreResult<i64>> {
        let name = name.to_string();
        let access_token = access_token.map(str::to_string);
        let expires_at = expires_at.map(micros);
        let refresh_token = refresh_token.map(str::to_string);
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO connections (name, access_token, expires_at, refresh_token, \
                 generation) VALUES (?1, ?2, ?3, ?4, 1) ON CONFLICT (name) DO UPDATE SET \
                 access_token = excluded.access_token, expires_at = excluded.expires_at, \
                 refresh_token = excluded.refresh_token, \
                 generation = connections.generation + 1 RETURNING generation",
            )?
            .query_row(
                params![name, access_token, expires_at, refresh_token],
                |r| r.get(0),
            )
        })
    }
}
