//! The worker pool: claims queued runs with leases, renews the leases of
//! runs in hand, gives back what is still running at shutdown, and deletes
//! finished runs past their retention.

use super::*;

impl Runtime {
    /// Starts the worker pool: one fetcher that claims runs in batches
    /// sized to the idle workers and runs each in a task of its own, and one
    /// heartbeat renewing every lease it holds. The fetcher stops claiming
    /// once shutdown begins and ends when the runs in hand have finished
    /// (aborting it aborts them).
    pub fn start_workers(&self) -> Vec<JoinHandle<()>> {
        let rt = self.clone();
        vec![tokio::spawn(async move { rt.fetch_loop().await })]
    }

    /// The worker pool's fetcher (see [`Runtime::start_workers`]).
    async fn fetch_loop(&self) {
        let workers = self.inner.workers;
        let worker = format!("p{}-{}", std::process::id(), &new_execution_id()[24..]);
        let free = Arc::new(tokio::sync::Semaphore::new(workers));
        let mut runs = tokio::task::JoinSet::new();
        let _heartbeat = {
            let rt = self.clone();
            AbortOnDrop(tokio::spawn(async move { rt.heartbeat_loop().await }))
        };
        let mut shutdown = self.inner.shutdown.subscribe();
        let hint = self.inner.store.wake_hint();
        loop {
            while runs.try_join_next().is_some() {}
            if *shutdown.borrow() {
                break;
            }
            let idle = free.available_permits();
            if idle == 0 {
                tokio::select! {
                    p = free.clone().acquire_owned() => drop(p),
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            match self
                .inner
                .store
                .claim_batch(&worker, idle, self.inner.lease)
                .await
            {
                Ok(batch) if !batch.is_empty() => {
                    for (exec, state) in batch {
                        let Some(lease) = exec.lease() else {
                            tracing::error!(execution_id = %exec.id, "the store handed out a run without a lease");
                            continue;
                        };
                        let Ok(permit) = free.clone().try_acquire_owned() else {
                            // Cannot happen (claimed at most `idle`); the
                            // run is given back rather than overcommitted.
                            let _ = self.inner.store.release(&exec.id, &lease).await;
                            continue;
                        };
                        let id = exec.id.clone();
                        lock(&self.inner.in_flight).insert(id.clone(), (lease.clone(), None));
                        let rt = self.clone();
                        runs.spawn(async move {
                            rt.execute(exec, state, lease).await;
                            lock(&rt.inner.in_flight).remove(&id);
                            drop(permit);
                        });
                    }
                }
                Ok(_) => {
                    // Woken by a run queued here, by the store's hint that
                    // another replica queued one, or by the jittered poll
                    // (hints may be lost; expired leases come with none).
                    let poll = Duration::from_millis(rand::random_range(750..1250));
                    tokio::select! {
                        _ = self.inner.queue.notified() => {}
                        _ = wait_hint(hint.as_deref()) => {}
                        _ = tokio::time::sleep(poll) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot claim work");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
        // Draining: the runs in hand finish (or are aborted with this task).
        while runs.join_next().await.is_some() {}
    }

    /// Renews every lease the worker pool holds, in one store call, every
    /// third of the lease; a lease found lost stops its run.
    async fn heartbeat_loop(&self) {
        let lease = self.inner.lease;
        let every = (lease / 3).max(Duration::from_millis(100));
        loop {
            tokio::time::sleep(every).await;
            let held: Vec<(String, Lease)> = lock(&self.inner.in_flight)
                .iter()
                .map(|(id, (lease, _))| (id.clone(), lease.clone()))
                .collect();
            if held.is_empty() {
                continue;
            }
            match self.inner.store.renew_all(&held, lease).await {
                Ok(lost) => {
                    let in_flight = lock(&self.inner.in_flight);
                    for id in lost {
                        tracing::warn!(execution_id = %id, "lease lost (another worker took the run over): stopping the run here");
                        if let Some((_, Some(journal))) = in_flight.get(&id) {
                            journal.lose_lease();
                        }
                    }
                }
                // Retried at the next beat; a lease may run out meanwhile,
                // and then its run's next write is refused.
                Err(e) => tracing::warn!(error = %e, "cannot renew the leases of running runs"),
            }
        }
    }

    /// Puts the runs the worker pool still holds back in the queue (after
    /// the drain deadline aborted them); their journals are kept, so the
    /// next start resumes them after their last finished step.
    pub(crate) async fn release_in_flight(&self) {
        let held: Vec<(String, Lease)> = lock(&self.inner.in_flight)
            .drain()
            .map(|(id, (lease, _))| (id, lease))
            .collect();
        for (id, lease) in held {
            match self.inner.store.release(&id, &lease).await {
                Ok(true) => tracing::info!(execution_id = %id, "left queued for the next start"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(execution_id = %id, error = %e, "cannot requeue; it resumes at the next start")
                }
            }
        }
    }

    /// Puts runs interrupted by the end of an earlier process back in the
    /// queue (see [`Store::requeue_interrupted`]); called before the workers start.
    pub async fn resume_interrupted(&self) -> Result<u64, StoreError> {
        let n = self.inner.store.requeue_interrupted().await?;
        if n > 0 {
            tracing::info!(count = n, "resuming runs interrupted by the previous stop");
        }
        Ok(n)
    }

    /// Deletes finished runs older than the retention, once an hour until
    /// shutdown. Nothing when the retention is `None`.
    pub(crate) fn start_purger(&self) -> Option<JoinHandle<()>> {
        let (finished, failed) = (self.inner.retention, self.inner.failed_retention);
        if finished.is_none() && failed.is_none() {
            return None;
        }
        let rt = self.clone();
        Some(tokio::spawn(async move {
            loop {
                if let Some(keep) = finished {
                    let purged = rt.inner.store.purge_finished(cutoff(keep)).await;
                    log_purge(purged, "succeeded and skipped");
                }
                if let Some(keep) = failed {
                    let purged = rt.inner.store.purge_failed(cutoff(keep)).await;
                    log_purge(purged, "failed");
                }
                tokio::select! {
                    _ = tokio::time::sleep(PURGE_EVERY) => {}
                    _ = rt.shutdown_started() => return,
                }
            }
        }))
    }
}

/// The creation time before which runs kept for `keep` are deleted.
fn cutoff(keep: Duration) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX)
}

fn log_purge(purged: Result<u64, StoreError>, which: &str) {
    match purged {
        Ok(0) => {}
        Ok(n) => tracing::info!(deleted = n, "deleted {which} runs past their retention"),
        Err(e) => tracing::warn!(error = %e, "cannot delete old {which} runs"),
    }
}

/// Resolves when the store's wake-up hint fires (never without one).
async fn wait_hint(hint: Option<&Notify>) {
    match hint {
        Some(n) => n.notified().await,
        None => std::future::pending().await,
    }
}
