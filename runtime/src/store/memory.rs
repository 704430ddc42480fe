//! [`MemoryStore`]: everything in process memory, lost on exit. For tests,
//! `run`, and services that can afford to lose queued work.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::{BoxFuture, FutureExt};
use serde_json::{Map, Value};

use super::{
    Enqueued, Execution, ExecutionFilter, Finish, NewExecution, Status, StepRecord, Store,
    StoreResult,
};

#[derive(Default)]
struct Inner {
    executions: HashMap<String, Execution>,
    /// Insertion order, for listing newest first.
    order: Vec<String>,
    queue: VecDeque<String>,
    journal: HashMap<String, Vec<StepRecord>>,
    dedupe: HashMap<(String, String), String>,
    ticks: HashMap<String, DateTime<Utc>>,
    state: Map<String, Value>,
    deployed: Option<String>,
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

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut guard = match self.inner.lock() {
            Ok(g) => g,
            // A panic while holding the lock leaves consistent-enough data.
            Err(poisoned) => poisoned.into_inner(),
        };
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
                let k = (new.flow.clone(), key.clone());
                if let Some(first) = s.dedupe.get(&k) {
                    return Enqueued::Duplicate(first.clone());
                }
                s.dedupe.insert(k, new.id.clone());
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
            };
            if status == Status::Queued {
                s.queue.push_back(new.id.clone());
            }
            s.order.push(new.id.clone());
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
            let id = match s.queue.pop_front() {
                Some(id) => Some(id),
                None => s
                    .executions
                    .values()
                    .find(|e| {
                        e.status == Status::Running && e.lease_expires.is_some_and(|t| t < now)
                    })
                    .map(|e| e.id.clone()),
            }?;
            let exec = s.executions.get_mut(&id)?;
            exec.status = Status::Running;
            exec.lease_owner = Some(worker.to_string());
            exec.lease_expires = Some(lease_until(lease));
            exec.started_at = Some(now);
            exec.attempts += 1;
            Some(exec.clone())
        });
        async move { Ok(claimed) }.boxed()
    }

    fn renew<'a>(
        &'a self,
        id: &'a str,
        worker: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        let ok = self.with(|s| match s.executions.get_mut(id) {
            Some(e) if e.status == Status::Running && e.lease_owner.as_deref() == Some(worker) => {
                e.lease_expires = Some(lease_until(lease));
                true
            }
            _ => false,
        });
        async move { Ok(ok) }.boxed()
    }

    fn finish<'a>(&'a self, id: &'a str, finish: Finish) -> BoxFuture<'a, StoreResult<()>> {
        self.with(|s| {
            if let Some(e) = s.executions.get_mut(id) {
                e.status = finish.status;
                e.result = finish.result;
                e.error = finish.error;
                e.error_step = finish.error_step;
                e.finished_at = Some(Utc::now());
                e.lease_owner = None;
                e.lease_expires = None;
            }
        });
        async { Ok(()) }.boxed()
    }

    fn requeue<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Option<Execution>>> {
        let r = self.with(|s| {
            let e = s.executions.get_mut(id)?;
            if e.status.is_final() {
                e.status = Status::Queued;
                e.finished_at = None;
                e.result = None;
                e.error = None;
                e.error_step = None;
                s.queue.push_back(id.to_string());
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
            s.order
                .iter()
                .rev()
                .filter_map(|id| s.executions.get(id))
                .filter(|e| filter.status.is_none_or(|st| e.status == st))
                .filter(|e| filter.flow.as_deref().is_none_or(|f| e.flow == f))
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
        record: StepRecord,
    ) -> BoxFuture<'a, StoreResult<()>> {
        self.with(|s| {
            let entries = s.journal.entry(id.to_string()).or_default();
            match entries.iter_mut().find(|r| r.key == record.key) {
                Some(existing) => *existing = record,
                None => entries.push(record),
            }
        });
        async { Ok(()) }.boxed()
    }

    fn last_tick<'a>(&'a self, flow: &'a str) -> BoxFuture<'a, StoreResult<Option<DateTime<Utc>>>> {
        let r = self.with(|s| s.ticks.get(flow).copied());
        async move { Ok(r) }.boxed()
    }

    fn claim_tick<'a>(
        &'a self,
        flow: &'a str,
        tick: DateTime<Utc>,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        let r = self.with(|s| match s.ticks.get(flow) {
            Some(last) if *last >= tick => false,
            _ => {
                s.ticks.insert(flow.to_string(), tick);
                true
            }
        });
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn new(id: &str, key: Option<&str>) -> NewExecution {
        NewExecution {
            id: id.into(),
            flow: "f".into(),
            trigger: json!({}),
            dedupe_key: key.map(Into::into),
            running: None,
        }
    }

    #[tokio::test]
    async fn queue_dedupe_lease_replay() {
        let s = MemoryStore::new();
        assert_eq!(
            s.enqueue(new("a", Some("k"))).await.unwrap(),
            Enqueued::Created
        );
        assert_eq!(
            s.enqueue(new("b", Some("k"))).await.unwrap(),
            Enqueued::Duplicate("a".into())
        );
        assert_eq!(s.enqueue(new("c", None)).await.unwrap(), Enqueued::Created);
        let a = s
            .claim("w1", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (a.id.as_str(), a.status, a.attempts),
            ("a", Status::Running, 1)
        );
        assert!(s.renew("a", "w1", Duration::from_secs(60)).await.unwrap());
        assert!(!s.renew("a", "w2", Duration::from_secs(60)).await.unwrap());
        let c = s
            .claim("w1", Duration::from_millis(0))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.id, "c");
        // c's lease expired at once: another worker takes it over.
        std::thread::sleep(Duration::from_millis(2));
        let c2 = s
            .claim("w2", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((c2.id.as_str(), c2.attempts), ("c", 2));
        s.finish(
            "a",
            Finish {
                status: Status::Failed,
                result: None,
                error: Some("boom".into()),
                error_step: None,
            },
        )
        .await
        .unwrap();
        let failed = s
            .list(ExecutionFilter {
                status: Some(Status::Failed),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(failed.len(), 1);
        let again = s.requeue("a").await.unwrap().unwrap();
        assert_eq!(again.status, Status::Queued);
        assert_eq!(
            s.claim("w1", Duration::from_secs(1))
                .await
                .unwrap()
                .unwrap()
                .attempts,
            2
        );
        assert!(s.requeue("zz").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn ticks_state_deploy() {
        let s = MemoryStore::new();
        let t = Utc::now();
        assert!(s.claim_tick("f", t).await.unwrap());
        assert!(!s.claim_tick("f", t).await.unwrap());
        assert_eq!(s.last_tick("f").await.unwrap(), Some(t));
        s.state_set("cursor", json!("5")).await.unwrap();
        assert_eq!(
            s.state_all().await.unwrap().get("cursor"),
            Some(&json!("5"))
        );
        assert_eq!(s.deployed_version().await.unwrap(), None);
        s.set_deployed_version("v1").await.unwrap();
        assert_eq!(s.deployed_version().await.unwrap().as_deref(), Some("v1"));
    }
}
