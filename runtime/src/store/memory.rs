//! [`MemoryStore`]: everything in process memory, lost on exit. For tests,
//! `run`, and services that can afford to lose queued work.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::{BoxFuture, FutureExt};
use serde_json::{Map, Value};

use super::{
    abandoned_message, callback_expired_message, Callback, CallbackOutcome, CallbackState,
    ConnectionTokens, Enqueued, Execution, ExecutionFilter, Finish, Lease, NewCallback,
    NewExecution, Status, StepRecord, Store, StoreError, StoreResult,
};

#[derive(Default)]
struct Inner {
    executions: HashMap<String, Execution>,
    /// Creation order of each execution (claims take the oldest first).
    seq: HashMap<String, u64>,
    next_seq: u64,
    /// Creation order → id, for listing newest first.
    order: BTreeMap<u64, String>,
    /// Queued executions by creation order.
    queue: BTreeMap<u64, String>,
    /// Running executions (where expired leases are looked for).
    running: HashSet<String>,
    journal: HashMap<String, Vec<StepRecord>>,
    /// Take-overs since the last replay (see [`super::MAX_TAKEOVERS`]).
    takeovers: HashMap<String, u32>,
    dedupe: HashMap<(String, String), String>,
    /// Each flow's last tick and the execution it started.
    ticks: HashMap<String, (DateTime<Utc>, String)>,
    state: Map<String, Value>,
    deployed: Option<String>,
    /// Callbacks by execution id.
    callbacks: HashMap<String, Callback>,
    /// The saved tokens of each connection.
    connections: HashMap<String, ConnectionTokens>,
}

impl Inner {
    /// Counts a take-over of `id`; `false` (and the run marked failed) when
    /// it had all it may have.
    fn take_over(&mut self, id: &str) -> bool {
        let n = self.takeovers.entry(id.to_string()).or_insert(0);
        if *n < super::MAX_TAKEOVERS {
            *n += 1;
            return true;
        }
        self.running.remove(id);
        if let Some(e) = self.executions.get_mut(id) {
            e.status = Status::Failed;
            e.error = Some(abandoned_message());
            e.finished_at = Some(Utc::now());
            e.lease_owner = None;
            e.lease_expires = None;
        }
        false
    }

    /// The execution if `lease` still holds it.
    fn leased(&mut self, id: &str, lease: &Lease) -> Option<&mut Execution> {
        self.executions
            .get_mut(id)
            .filter(|e| e.status == Status::Running && e.lease_epoch == lease.epoch)
    }

    fn push_queue(&mut self, id: &str) {
        if let Some(seq) = self.seq.get(id) {
            self.queue.insert(*seq, id.to_string());
        }
    }
}

/// Whether `e` passes `filter` (all but the cursor and the limit).
fn matches(filter: &ExecutionFilter, e: &Execution) -> bool {
    filter.status.is_none_or(|st| e.status == st)
        && filter.flow.as_deref().is_none_or(|f| e.flow == f)
        && filter.since.is_none_or(|t| e.created_at >= t)
        && filter.until.is_none_or(|t| e.created_at < t)
        && filter
            .search
            .as_deref()
            .is_none_or(|q| e.id == q || e.dedupe_key.as_deref() == Some(q))
}

/// An in-memory [`Store`].
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Deletes the executions created before `before` whose status
    /// `purged` picks, with their journals and dedupe keys.
    fn purge(&self, before: DateTime<Utc>, purged: impl Fn(Status) -> bool) -> u64 {
        self.with(|s| {
            let old: Vec<String> = s
                .executions
                .values()
                .filter(|e| purged(e.status) && e.created_at < before)
                .map(|e| e.id.clone())
                .collect();
            for id in &old {
                s.executions.remove(id);
                s.journal.remove(id);
                if let Some(seq) = s.seq.remove(id) {
                    s.order.remove(&seq);
                    s.queue.remove(&seq);
                }
            }
            let executions = &s.executions;
            s.dedupe.retain(|_, id| executions.contains_key(id));
            s.callbacks.retain(|id, _| executions.contains_key(id));
            old.len() as u64
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut guard = crate::core::sync::lock(&self.inner);
        f(&mut guard)
    }
}

fn lease_until(lease: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX)
}

impl Store for MemoryStore {
    fn enqueue(&self, new: NewExecution) -> BoxFuture<'_, StoreResult<Enqueued>> {
        let result = self.with(|s| {
            if let Some(key) = &new.dedupe_key {
                if let Some(first) = s.dedupe.get(&(new.flow.clone(), key.clone())) {
                    return Enqueued::Duplicate(first.clone());
                }
            }
            if let Some(tick) = new.tick {
                if let Some((last, first)) = s.ticks.get(&new.flow) {
                    if *last >= tick {
                        return Enqueued::Duplicate(first.clone());
                    }
                }
                s.ticks.insert(new.flow.clone(), (tick, new.id.clone()));
            }
            if let Some(key) = &new.dedupe_key {
                s.dedupe
                    .insert((new.flow.clone(), key.clone()), new.id.clone());
            }
            let now = Utc::now();
            let (status, owner, expires, started, attempts) = match &new.running {
                Some((worker, lease)) => (
                    Status::Running,
                    Some(worker.clone()),
                    Some(lease_until(*lease)),
                    Some(now),
                    1,
                ),
                None => (Status::Queued, None, None, None, 0),
            };
            let exec = Execution {
                id: new.id.clone(),
                flow: new.flow,
                status,
                trigger: new.trigger,
                dedupe_key: new.dedupe_key,
                created_at: now,
                started_at: started,
                finished_at: None,
                attempts,
                result: None,
                error: None,
                error_step: None,
                lease_owner: owner,
                lease_expires: expires,
                lease_epoch: u64::from(attempts),
            };
            let seq = s.next_seq;
            s.next_seq += 1;
            s.seq.insert(new.id.clone(), seq);
            if status == Status::Queued {
                s.queue.insert(seq, new.id.clone());
            } else {
                s.running.insert(new.id.clone());
            }
            s.order.insert(seq, new.id.clone());
            s.executions.insert(new.id, exec);
            Enqueued::Created
        });
        async move { Ok(result) }.boxed()
    }

    fn claim<'a>(
        &'a self,
        worker: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, StoreResult<Option<Execution>>> {
        let claimed = self.with(|s| {
            let now = Utc::now();
            let id = loop {
                if let Some((_, id)) = s.queue.pop_first() {
                    break id;
                }
                let expired = s
                    .running
                    .iter()
                    .filter_map(|id| s.executions.get(id))
                    .filter(|e| e.lease_expires.is_some_and(|t| t <= now))
                    .min_by_key(|e| s.seq.get(&e.id).copied().unwrap_or(u64::MAX))
                    .map(|e| e.id.clone())?;
                if s.take_over(&expired) {
                    break expired;
                }
            };
            s.running.insert(id.clone());
            let exec = s.executions.get_mut(&id)?;
            exec.status = Status::Running;
            exec.lease_owner = Some(worker.to_string());
            exec.lease_expires = Some(lease_until(lease));
            exec.started_at = Some(now);
            exec.attempts += 1;
            exec.lease_epoch += 1;
            Some(exec.clone())
        });
        async move { Ok(claimed) }.boxed()
    }

    fn release<'a>(&'a self, id: &'a str, lease: &'a Lease) -> BoxFuture<'a, StoreResult<bool>> {
        let ok = self.with(|s| {
            match s.leased(id, lease) {
                Some(e) => {
                    e.status = Status::Queued;
                    e.lease_owner = None;
                    e.lease_expires = None;
                }
                _ => return false,
            }
            s.running.remove(id);
            s.push_queue(id);
            true
        });
        async move { Ok(ok) }.boxed()
    }

    fn requeue_interrupted(&self) -> BoxFuture<'_, StoreResult<u64>> {
        let n = self.with(|s| {
            let running: Vec<String> = s.running.iter().cloned().collect();
            let mut n = 0;
            for id in &running {
                if !s.take_over(id) {
                    continue;
                }
                s.running.remove(id);
                if let Some(e) = s.executions.get_mut(id) {
                    e.status = Status::Queued;
                    e.lease_owner = None;
                    e.lease_expires = None;
                }
                s.push_queue(id);
                n += 1;
            }
            n
        });
        async move { Ok(n) }.boxed()
    }

    fn purge_finished(&self, before: DateTime<Utc>) -> BoxFuture<'_, StoreResult<u64>> {
        let n = self.purge(before, |s| matches!(s, Status::Succeeded | Status::Skipped));
        async move { Ok(n) }.boxed()
    }

    fn purge_failed(&self, before: DateTime<Utc>) -> BoxFuture<'_, StoreResult<u64>> {
        let n = self.purge(before, |s| s == Status::Failed);
        async move { Ok(n) }.boxed()
    }

    fn renew<'a>(
        &'a self,
        id: &'a str,
        lease: &'a Lease,
        duration: Duration,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        let ok = self.with(|s| match s.leased(id, lease) {
            Some(e) => {
                e.lease_expires = Some(lease_until(duration));
                true
            }
            None => false,
        });
        async move { Ok(ok) }.boxed()
    }

    fn finish<'a>(
        &'a self,
        id: &'a str,
        lease: &'a Lease,
        finish: Finish,
    ) -> BoxFuture<'a, StoreResult<()>> {
        let r = self.with(|s| {
            let e = s
                .leased(id, lease)
                .ok_or_else(|| StoreError::LeaseLost(id.to_string()))?;
            e.status = finish.status;
            e.result = finish.result;
            e.error = finish.error;
            e.error_step = finish.error_step;
            e.finished_at = Some(Utc::now());
            e.lease_owner = None;
            e.lease_expires = None;
            s.running.remove(id);
            Ok(())
        });
        async move { r }.boxed()
    }

    fn requeue<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Option<Execution>>> {
        let r = self.with(|s| {
            if s.executions.get(id)?.status.is_final() {
                s.takeovers.remove(id);
                let e = s.executions.get_mut(id)?;
                e.status = Status::Queued;
                e.finished_at = None;
                e.result = None;
                e.error = None;
                e.error_step = None;
                e.lease_owner = None;
                e.lease_expires = None;
                s.push_queue(id);
            }
            s.executions.get(id).cloned()
        });
        async move { Ok(r) }.boxed()
    }

    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Option<Execution>>> {
        let r = self.with(|s| s.executions.get(id).cloned());
        async move { Ok(r) }.boxed()
    }

    fn list(&self, filter: ExecutionFilter) -> BoxFuture<'_, StoreResult<Vec<Execution>>> {
        let limit = if filter.limit == 0 { 100 } else { filter.limit };
        let r = self.with(|s| {
            let end = match &filter.before {
                None => u64::MAX,
                Some(id) => match s.seq.get(id) {
                    Some(seq) => *seq,
                    None => return Vec::new(),
                },
            };
            s.order
                .range(..end)
                .rev()
                .filter_map(|(_, id)| s.executions.get(id))
                .filter(|e| matches(&filter, e))
                .take(limit)
                .cloned()
                .collect()
        });
        async move { Ok(r) }.boxed()
    }

    fn journal<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Vec<StepRecord>>> {
        let r = self.with(|s| s.journal.get(id).cloned().unwrap_or_default());
        async move { Ok(r) }.boxed()
    }

    fn record_step<'a>(
        &'a self,
        id: &'a str,
        lease: &'a Lease,
        record: StepRecord,
    ) -> BoxFuture<'a, StoreResult<()>> {
        let r = self.with(|s| {
            if s.leased(id, lease).is_none() {
                return Err(StoreError::LeaseLost(id.to_string()));
            }
            let entries = s.journal.entry(id.to_string()).or_default();
            match entries.iter_mut().find(|r| r.key == record.key) {
                Some(existing) => *existing = record,
                None => entries.push(record),
            }
            Ok(())
        });
        async move { r }.boxed()
    }

    fn last_tick<'a>(&'a self, flow: &'a str) -> BoxFuture<'a, StoreResult<Option<DateTime<Utc>>>> {
        let r = self.with(|s| s.ticks.get(flow).map(|(t, _)| *t));
        async move { Ok(r) }.boxed()
    }

    fn state_all(&self) -> BoxFuture<'_, StoreResult<Map<String, Value>>> {
        let r = self.with(|s| s.state.clone());
        async move { Ok(r) }.boxed()
    }

    fn state_set<'a>(&'a self, key: &'a str, value: Value) -> BoxFuture<'a, StoreResult<()>> {
        self.with(|s| s.state.insert(key.to_string(), value));
        async { Ok(()) }.boxed()
    }

    fn deployed_version(&self) -> BoxFuture<'_, StoreResult<Option<String>>> {
        let r = self.with(|s| s.deployed.clone());
        async move { Ok(r) }.boxed()
    }

    fn set_deployed_version<'a>(&'a self, version: &'a str) -> BoxFuture<'a, StoreResult<()>> {
        self.with(|s| s.deployed = Some(version.to_string()));
        async { Ok(()) }.boxed()
    }

    fn add_callback(&self, callback: NewCallback) -> BoxFuture<'_, StoreResult<()>> {
        let now = Utc::now();
        self.with(|s| {
            s.callbacks
                .entry(callback.execution_id.clone())
                .or_insert_with(|| Callback {
                    id: callback.id,
                    execution_id: callback.execution_id,
                    url: callback.url,
                    state: CallbackState::Pending,
                    attempts: 0,
                    next_attempt_at: now,
                    expires_at: lease_until(callback.expires_in),
                    last_error: None,
                });
        });
        async { Ok(()) }.boxed()
    }

    fn claim_callbacks(
        &self,
        n: usize,
        lease: Duration,
    ) -> BoxFuture<'_, StoreResult<Vec<Callback>>> {
        let now = Utc::now();
        let claimed = self.with(|s| {
            let Inner {
                callbacks,
                executions,
                ..
            } = s;
            let pending = callbacks
                .values_mut()
                .filter(|c| c.state == CallbackState::Pending);
            let mut due = Vec::new();
            for c in pending {
                if c.expires_at <= now {
                    c.state = CallbackState::Failed;
                    c.last_error = Some(callback_expired_message(c.last_error.as_deref()));
                } else if c.next_attempt_at <= now
                    && executions
                        .get(&c.execution_id)
                        .is_some_and(|e| e.status.is_final())
                {
                    due.push(c);
                }
            }
            due.sort_by_key(|c| c.next_attempt_at);
            due.into_iter()
                .take(n)
                .map(|c| {
                    c.attempts += 1;
                    c.next_attempt_at = lease_until(lease);
                    c.clone()
                })
                .collect()
        });
        async move { Ok(claimed) }.boxed()
    }

    fn settle_callback<'a>(
        &'a self,
        id: &'a str,
        outcome: CallbackOutcome,
    ) -> BoxFuture<'a, StoreResult<()>> {
        self.with(|s| {
            let Some(c) = s.callbacks.values_mut().find(|c| c.id == id) else {
                return;
            };
            match outcome {
                CallbackOutcome::Delivered => {
                    c.state = CallbackState::Delivered;
                    c.last_error = None;
                }
                _ if c.state != CallbackState::Pending => {}
                CallbackOutcome::Retry { after, error } => {
                    c.next_attempt_at = lease_until(after);
                    c.last_error = Some(error);
                }
                CallbackOutcome::GiveUp { error } => {
                    c.state = CallbackState::Failed;
                    c.last_error = Some(error);
                }
            }
        });
        async { Ok(()) }.boxed()
    }

    fn callback<'a>(
        &'a self,
        execution_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<Callback>>> {
        let c = self.with(|s| s.callbacks.get(execution_id).cloned());
        async move { Ok(c) }.boxed()
    }

    fn connection_tokens<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<ConnectionTokens>>> {
        let r = self.with(|s| s.connections.get(name).cloned());
        async move { Ok(r) }.boxed()
    }

    fn save_connection_tokens<'a>(
        &'a self,
        name: &'a str,
        access_token: Option<&'a str>,
        expires_at: Option<DateTime<Utc>>,
        refresh_token: Option<&'a str>,
    ) -> BoxFuture<'a, StoreResult<i64>> {
        let generation = self.with(|s| {
            let generation = s.connections.get(name).map_or(0, |t| t.generation) + 1;
            s.connections.insert(
                name.to_string(),
                ConnectionTokens {
                    access_token: access_token.map(str::to_string),
                    expires_at,
                    refresh_token: refresh_token.map(str::to_string),
                    generation,
                },
            );
            generation
        });
        async move { Ok(generation) }.boxed()
    }
}
