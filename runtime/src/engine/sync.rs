//! Sync runs: run in the caller's task with the journal in memory; stored
//! only when they fail, fall back to async, or the caller hangs up.

use super::*;
use crate::core::slots::Slot;

/// How often [`Runtime::summarise_sync_runs`] writes its lines.
pub const SYNC_SUMMARY_EVERY: Duration = Duration::from_secs(30);
use crate::store::NewCallback;

impl Runtime {
    /// Writes one `info` line per sync flow that ran in the last `every`:
    /// runs, failures, skips, mean and longest time. A sync run's own
    /// routine lines are `debug`; its failures are logged as they happen.
    pub fn summarise_sync_runs(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let rt = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                rt.log_sync_summary();
            }
        })
    }

    /// The summary lines of the sync runs since the last ones (also
    /// written at shutdown).
    pub fn log_sync_summary(&self) {
        let (tallies, since) = self.inner.metrics.take_sync_tallies();
        let period =
            crate::engine::integration::human_duration(Duration::from_secs(since.as_secs().max(1)));
        for (flow, t) in tallies {
            let mean_ms = t.total.as_millis() / u128::from(t.runs.max(1));
            let (runs, failed, skipped) = (t.runs, t.failed, t.skipped);
            let max_ms = t.max.as_millis() as u64;
            let mean_ms = mean_ms as u64;
            match self.instance() {
                Some(instance) => tracing::info!(
                    instance,
                    flow,
                    runs,
                    failed,
                    skipped,
                    mean_ms,
                    max_ms,
                    "sync runs in the last {period}"
                ),
                None => tracing::info!(
                    flow,
                    runs,
                    failed,
                    skipped,
                    mean_ms,
                    max_ms,
                    "sync runs in the last {period}"
                ),
            }
        }
    }

    /// Prepares a sync flow's run, *without* storing it: the caller holds
    /// the connection, so by default the run is neither queued nor
    /// journaled, and it runs in the caller's task ([`SyncRun::wait`]). [`SyncRun::persist`] stores it (a fallback to
    /// async); a run that fails or is abandoned is recorded as failed.
    ///
    /// The trigger is shared by the run and the [`SyncRun`], never copied
    /// on this path: the execution the task ends with carries it only when
    /// someone waits for the run ([`Runtime::wait_for`]); otherwise its
    /// `trigger` is `null` (the caller has the request).
    pub fn start_sync(&self, flow: &str, trigger: SyncTrigger) -> SyncRun {
        let started = tokio::time::Instant::now();
        // Where the run is stopped if it has not ended: the caller's wait
        // (`SyncRun::deadline`), or the rest of a run whose caller left
        // (`finish_unattended`); with `fallback: async` it goes on instead.
        let deadline = match self.flow(flow).map(|def| &def.trigger) {
            Some(TriggerDef::Sync {
                timeout,
                fallback_async: false,
                ..
            }) => Some(started + *timeout),
            _ => None,
        };
        let id = new_execution_id();
        let worker = ["inline-", &id].concat();
        let now = chrono::Utc::now();
        let exec = Execution {
            id,
            flow: flow.to_string(),
            status: Status::Running,
            trigger: Value::Null,
            dedupe_key: None,
            created_at: now,
            started_at: Some(now),
            finished_at: None,
            attempts: 1,
            result: None,
            error: None,
            error_step: None,
            lease_owner: Some(worker.clone()),
            lease_expires: None,
            lease_epoch: Lease::first("").epoch,
        };
        let journal = RunJournal::new(Vec::new(), Journaling::Memory, Lease::first(worker));
        let run: SyncFuture = {
            let rt = self.clone();
            let exec = exec.clone();
            let trigger = trigger.clone();
            let journal = journal.clone();
            Box::pin(async move { rt.execute_sync(exec, trigger, journal, deadline).await })
        };
        SyncRun {
            rt: self.clone(),
            exec,
            trigger,
            journal,
            run: Some(run),
            keeper: None,
            started,
            slot: None,
            unattended: false,
        }
    }

    async fn execute_sync(
        &self,
        exec: Execution,
        trigger: SyncTrigger,
        journal: RunJournal,
        deadline: Option<tokio::time::Instant>,
    ) -> Execution {
        // No `run` span: a sync run's lines name it (see `run_event!`).
        let trace = TraceSeed {
            caller: trigger.traceparent(),
            start: exec.attempts,
        };
        let start = std::time::SystemTime::now();
        let finish = self
            .run_flow(&exec, trigger.seen.clone(), &journal, None, trace, deadline)
            .await;
        self.export_run_span(&exec, trace, start, &finish);
        let mut mode = journal.mode.write().await;
        match *mode {
            Journaling::Durable if !self.record_finish(&exec.id, &journal, &finish).await => {
                // The lease was lost: the outcome is the new holder's.
                *mode = Journaling::Ended;
                return exec;
            }
            Journaling::Memory if finish.status == Status::Failed => {
                // Kept for `executions --failed` and replay; the caller got a 500.
                if let Err(e) = self
                    .store_whole(&exec, &trigger.recorded(), &journal, Some(&finish), None)
                    .await
                {
                    tracing::error!(execution_id = %exec.id, error = %e, "cannot record a failed sync run");
                }
            }
            _ => {}
        }
        *mode = Journaling::Ended;
        drop(mode);
        let mut done = finished(exec, finish);
        if lock(&self.inner.watchers).contains_key(&done.id) {
            done.trigger = trigger.recorded();
        }
        self.notify_finished(&done);
        done
    }

    /// Stores an inline run that so far lived in memory: the execution (as
    /// running, held by the journal's lease), its journal entries, and
    /// `finish` if given.
    async fn store_whole(
        &self,
        exec: &Execution,
        trigger: &Value,
        journal: &RunJournal,
        finish: Option<&Finish>,
        callback: Option<NewCallback>,
    ) -> Result<(), StoreError> {
        let store = &self.inner.store;
        let lease = &journal.lease;
        let mut new = NewExecution::queued(exec.id.clone(), exec.flow.clone(), trigger.clone());
        new.running = Some((lease.worker.clone(), self.inner.lease));
        store.enqueue(new).await?;
        // Sent together: one group commit, in step order.
        let mut writes: Vec<_> = journal
            .snapshot()
            .into_iter()
            .map(|r| store.record_step(&exec.id, lease, r))
            .collect();
        if let Some(callback) = callback {
            writes.push(store.add_callback(callback));
        }
        futures::future::try_join_all(writes).await?;
        if let Some(f) = finish {
            store.finish(&exec.id, lease, f.clone()).await?;
        }
        Ok(())
    }
}

/// A sync run's trigger: the value its flow sees and, when the flow does
/// not read them ([`TriggerDef::Sync`]'s `reads_headers`), the request's
/// headers, which join the trigger only where the run is recorded.
#[derive(Clone)]
pub struct SyncTrigger {
    seen: Arc<Value>,
    unread_headers: Option<Arc<axum::http::HeaderMap>>,
}

impl SyncTrigger {
    /// `seen` is the trigger the flow gets; `unread_headers` the request
    /// headers left out of it.
    pub fn new(seen: Value, unread_headers: Option<axum::http::HeaderMap>) -> SyncTrigger {
        SyncTrigger {
            seen: Arc::new(seen),
            unread_headers: unread_headers.map(Arc::new),
        }
    }

    /// The caller's `traceparent`, from the headers the flow reads or the
    /// others (a malformed one is ignored).
    fn traceparent(&self) -> Option<TraceParent> {
        match &self.unread_headers {
            Some(headers) => TraceParent::parse(headers.get("traceparent")?.to_str().ok()?),
            None => TraceParent::of_trigger(&self.seen),
        }
    }

    /// The trigger as stored and shown: complete, headers included.
    fn recorded(&self) -> Value {
        let mut value = Value::clone(&self.seen);
        if let (Some(headers), Value::Object(fields)) = (&self.unread_headers, &mut value) {
            // Masked here, where they are stored: most sync runs never are.
            let mut headers = crate::core::headers::header_map(headers);
            crate::core::headers::mask_credentials(&mut headers);
            fields.insert("headers".into(), Value::Object(headers));
        }
        value
    }
}

/// A sync run's flow and what follows it, ending with the execution.
type SyncFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Execution> + Send>>;

/// A sync flow's run in progress, from [`Runtime::start_sync`].
///
/// The run is polled by whoever waits for it ([`SyncRun::wait`]), in
/// their task: a task of its own per request cost the relay benchmark a
/// spawn, a wake-up and a task switch. When the `SyncRun` is dropped
/// before the run ended (hyper drops a handler's future when the caller
/// hangs up), the run moves to a task of its own and finishes there, its
/// failure recorded as usual, but no later than its flow's `timeout`
/// counted from [`Runtime::start_sync`], as if the caller still waited:
/// then it is abandoned (recorded as failed, `timed out after …`) or, with
/// `fallback: async`, stored and carried on.
pub struct SyncRun {
    rt: Runtime,
    /// The execution as it would be stored, without its trigger (below).
    exec: Execution,
    trigger: SyncTrigger,
    journal: RunJournal,
    /// `None` once the run has ended or was stopped.
    run: Option<SyncFuture>,
    /// Renews the lease once the run is stored ([`SyncRun::persist`]).
    keeper: Option<AbortOnDrop>,
    /// When [`Runtime::start_sync`] began it: its timeout counts from here.
    started: tokio::time::Instant,
    /// The run's place under the cap on concurrent sync runs
    /// ([`SyncRun::hold`]), given back when the run ends.
    slot: Option<Slot>,
    /// Already in a task of its own (its caller left): dropped, it stops.
    unattended: bool,
}

impl Drop for SyncRun {
    fn drop(&mut self) {
        // An unattended run is dropped when its task is cancelled (the
        // runtime stops, and drops at once whatever is spawned then):
        // handing it on again would never end.
        if self.unattended {
            return;
        }
        let Some(run) = self.run.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // Rare (the caller hung up), so the copies do not matter.
        let orphan = SyncRun {
            rt: self.rt.clone(),
            exec: self.exec.clone(),
            trigger: self.trigger.clone(),
            journal: self.journal.clone(),
            run: Some(run),
            keeper: self.keeper.take(),
            started: self.started,
            slot: self.slot.take(),
            unattended: true,
        };
        runtime.spawn(orphan.finish_unattended());
    }
}

/// The error of a sync run stopped at its `timeout`.
fn timed_out(timeout: Duration) -> String {
    format!(
        "timed out after {}",
        crate::engine::integration::human_duration(timeout)
    )
}

impl SyncRun {
    /// The execution id (sent as `X-Execution-Id`).
    pub fn id(&self) -> &str {
        &self.exec.id
    }

    /// When the caller stops waiting: `timeout` after [`Runtime::start_sync`].
    pub fn deadline(&self, timeout: Duration) -> tokio::time::Instant {
        self.started + timeout
    }

    /// Runs the flow to its end and returns the finished execution, or
    /// what its panic said. Cancel-safe: dropping this future (a timeout)
    /// pauses the run where it is, and a later `wait` goes on from there.
    pub async fn wait(&mut self) -> Result<Execution, String> {
        let Some(run) = self.run.as_mut() else {
            return Err("the run has already ended".into());
        };
        let result = AssertUnwindSafe(run.as_mut()).catch_unwind().await;
        self.run = None;
        self.slot = None;
        result.map_err(|panic| panic_message(&*panic))
    }

    /// Counts the run under a cap of concurrent sync runs: `slot` is held
    /// until the run ends, also when its caller has hung up.
    pub fn hold(&mut self, slot: Slot) {
        self.slot = Some(slot);
    }

    /// The rest of a run whose caller left (see [`SyncRun`]): its timeout
    /// still holds, so that a caller who hangs up cannot leave runs going
    /// on unbounded.
    async fn finish_unattended(mut self) {
        let limit = match self.rt.flow(&self.exec.flow).map(|def| &def.trigger) {
            Some(TriggerDef::Sync {
                timeout,
                fallback_async,
                ..
            }) => Some((*timeout, *fallback_async)),
            _ => None,
        };
        let Some((timeout, fallback_async)) = limit else {
            self.finish_logged().await;
            return;
        };
        if let Ok(result) = tokio::time::timeout_at(self.deadline(timeout), self.wait()).await {
            self.log_abort(result);
            return;
        }
        if fallback_async {
            // What the caller would have got: the run goes on, stored.
            match self.persist(None).await {
                Ok(_) => {
                    self.finish_logged().await;
                    return;
                }
                Err(e) => {
                    tracing::error!(execution_id = %self.exec.id, error = %e, "cannot store the execution");
                }
            }
        }
        self.abandon(&timed_out(timeout)).await;
    }

    async fn finish_logged(&mut self) {
        let result = self.wait().await;
        self.log_abort(result);
    }

    /// Logs a run that ended without an execution (its flow panicked):
    /// nobody else will.
    fn log_abort(&self, result: Result<Execution, String>) {
        if let Err(why) = result {
            tracing::error!(execution_id = %self.exec.id, error = %self.rt.redactor().redact(&why), "sync run aborted");
        }
    }

    /// The fallback to async: stores the execution (as running), the
    /// journal so far and the `callback` to deliver when it ends, and
    /// journals every later step. `Ok(true)` once it is durable — only
    /// then may `202` go out; `Ok(false)` if the run has already ended
    /// (answer with its outcome instead).
    pub async fn persist(&mut self, callback: Option<NewCallback>) -> Result<bool, StoreError> {
        let mut mode = self.journal.mode.write().await;
        match *mode {
            Journaling::Ended => Ok(false),
            Journaling::Durable => Ok(true),
            Journaling::Memory => {
                self.rt
                    .store_whole(
                        &self.exec,
                        &self.trigger.recorded(),
                        &self.journal,
                        None,
                        callback,
                    )
                    .await?;
                *mode = Journaling::Durable;
                self.keeper = Some(
                    self.rt
                        .keep_lease(self.exec.id.clone(), self.journal.clone()),
                );
                tracing::info!(execution_id = %self.exec.id, flow = %self.exec.flow, "sync run continues asynchronously");
                Ok(true)
            }
        }
    }

    /// Stops the run (a sync timeout without fallback) and records it as
    /// failed with `message`, so the id in the `504` can be looked up.
    pub async fn abandon(mut self, message: &str) {
        // Dropped, not handed to a task: the run stops here.
        self.run = None;
        self.slot = None;
        let finish = Finish {
            status: Status::Failed,
            result: None,
            error: Some(message.to_string()),
            error_step: None,
        };
        let mut mode = self.journal.mode.write().await;
        let stored = match *mode {
            Journaling::Ended => Ok(()),
            Journaling::Durable => {
                self.rt
                    .inner
                    .store
                    .finish_with_steps(
                        &self.exec.id,
                        &self.journal.lease,
                        self.journal.take_unwritten(),
                        finish.clone(),
                    )
                    .await
            }
            Journaling::Memory => {
                self.rt
                    .store_whole(
                        &self.exec,
                        &self.trigger.recorded(),
                        &self.journal,
                        Some(&finish),
                        None,
                    )
                    .await
            }
        };
        if *mode == Journaling::Ended {
            return;
        }
        *mode = Journaling::Ended;
        drop(mode);
        if let Err(e) = stored {
            tracing::error!(execution_id = %self.exec.id, error = %e, "cannot record an abandoned sync run");
        }
        tracing::warn!(execution_id = %self.exec.id, flow = %self.exec.flow, "{message}");
        let mut done = finished(self.exec.clone(), finish);
        done.trigger = self.trigger.recorded();
        self.rt.notify_finished(&done);
    }
}
