//! The executor: [`Runtime`] owns the loaded config, the flows, the store,
//! the HTTP client and the metrics; it stores executions, runs them on a
//! worker pool (or inline for sync flows, `run` and `deploy`), records how
//! they end and runs `on failure` blocks.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt as _;
use serde_json::{json, Map, Value};
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use crate::config::{self, Config, ConfigError, EnvSource};
use crate::ctx::{Ctx, StepCall};
use crate::error::{RunError, StepError};
use crate::integration::{FlowDef, Integration, Outcome, TriggerDef};
use crate::metrics::Metrics;
use crate::redact::Redactor;
use crate::store::{
    Enqueued, Execution, Finish, MemoryStore, NewExecution, Status, Store, StoreError,
};

/// A stdlib component callable as a step, registered under its qualified name.
pub type StepFn = fn(StepCall) -> futures::future::BoxFuture<'static, Result<Value, StepError>>;

/// How to set up a [`Runtime`]. `Default` reads the process environment and
/// uses a [`MemoryStore`].
pub struct RuntimeOptions {
    /// Where config entries' environment variables come from.
    pub env: EnvSource,
    /// The `--config FILE.toml`.
    pub config_file: Option<PathBuf>,
    /// The store; `None` means a new [`MemoryStore`].
    pub store: Option<Arc<dyn Store>>,
    /// `FLOW_ADMIN_TOKEN`; `None` disables the protected admin endpoints (403).
    pub admin_token: Option<String>,
    /// Size of the worker pool.
    pub workers: usize,
    /// How long shutdown waits for in-flight runs.
    pub drain_timeout: Duration,
    /// Lease of a running execution (renewed while it runs).
    pub lease: Duration,
    /// Shares secrets with the log writer (see [`crate::logging`]).
    pub redactor: Redactor,
    /// Replaces or adds step implementations by qualified name (`flowc
    /// test` mocks `http.*` this way).
    pub step_overrides: Vec<(&'static str, StepFn)>,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            env: EnvSource::Process,
            config_file: None,
            store: None,
            admin_token: None,
            workers: default_workers(),
            drain_timeout: Duration::from_secs(30),
            lease: Duration::from_secs(60),
            redactor: Redactor::new(),
            step_overrides: Vec::new(),
        }
    }
}

/// Twice the number of cores.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * 2
}

/// Why a runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Missing or malformed config entries (exit code 2).
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// Anything else (exit code 1).
    #[error("{0}")]
    Other(String),
}

pub(crate) struct Inner {
    pub(crate) integration: Integration,
    pub(crate) config: Config,
    pub(crate) flows: Vec<Arc<FlowDef>>,
    by_name: HashMap<&'static str, Arc<FlowDef>>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) http: reqwest::Client,
    pub(crate) metrics: Metrics,
    pub(crate) redactor: Redactor,
    steps: HashMap<&'static str, StepFn>,
    pub(crate) admin_token: Option<String>,
    pub(crate) workers: usize,
    pub(crate) drain_timeout: Duration,
    pub(crate) lease: Duration,
    queue: Notify,
    watchers: Mutex<HashMap<String, Vec<oneshot::Sender<Execution>>>>,
    pub(crate) shutdown: watch::Sender<bool>,
    pub(crate) ready: std::sync::atomic::AtomicBool,
    /// Base URL of this server once it listens (for endpoints when
    /// `public_url` is not configured).
    pub(crate) local_url: Mutex<Option<String>>,
}

/// A loaded integration, ready to serve or run flows. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<Inner>,
}

/// A new execution id: a UUID v7 (time ordered).
pub fn new_execution_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// What [`Runtime::submit`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The new execution's id, or the first one's for a duplicate.
    pub execution_id: String,
    /// Whether the dedupe key was seen before (nothing new was stored).
    pub duplicate: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Runtime {
    /// Loads the config (all problems at once), registers the named types,
    /// builds the flows and the HTTP client.
    pub fn new(integration: Integration, options: RuntimeOptions) -> Result<Runtime, StartError> {
        crate::schema::register_types(&integration.types);
        crate::stdlib::set_version(&integration.version());
        let config = config::load(
            &integration.config,
            options.config_file.as_deref(),
            &options.env,
        )?;
        let redactor = options.redactor;
        redactor.merge(config.redactor());
        if let Some(token) = &options.admin_token {
            redactor.add(token);
        }
        let flows: Vec<Arc<FlowDef>> = (integration.flows)(&config)
            .into_iter()
            .map(Arc::new)
            .collect();
        let by_name = flows.iter().map(|f| (f.name, f.clone())).collect();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(format!(
                "{}/{} (flowc)",
                integration.name,
                integration.version()
            ))
            .build()
            .map_err(|e| StartError::Other(format!("cannot create the HTTP client: {e}")))?;
        let mut steps = crate::stdlib::step_fns();
        for (name, f) in options.step_overrides {
            steps.insert(name, f);
        }
        let store = options
            .store
            .unwrap_or_else(|| Arc::new(MemoryStore::new()));
        let (shutdown, _) = watch::channel(false);
        Ok(Runtime {
            inner: Arc::new(Inner {
                integration,
                config,
                flows,
                by_name,
                store,
                http,
                metrics: Metrics::default(),
                redactor,
                steps,
                admin_token: options.admin_token,
                workers: options.workers.max(1),
                drain_timeout: options.drain_timeout,
                lease: options.lease,
                queue: Notify::new(),
                watchers: Mutex::new(HashMap::new()),
                shutdown,
                ready: std::sync::atomic::AtomicBool::new(false),
                local_url: Mutex::new(None),
            }),
        })
    }

    /// The integration description.
    pub fn integration(&self) -> &Integration {
        &self.inner.integration
    }

    /// The loaded config.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The redactor (all secret values).
    pub fn redactor(&self) -> &Redactor {
        &self.inner.redactor
    }

    /// The shared HTTP client.
    pub fn http_client(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// All flows.
    pub fn flows(&self) -> &[Arc<FlowDef>] {
        &self.inner.flows
    }

    /// A flow by name.
    pub fn flow(&self, name: &str) -> Option<&Arc<FlowDef>> {
        self.inner.by_name.get(name)
    }

    pub(crate) fn step_fn(&self, call: &str) -> Option<StepFn> {
        self.inner.steps.get(call).copied()
    }

    pub(crate) fn notify_workers(&self) {
        self.inner.queue.notify_one();
    }

    /// Prometheus text of the metrics.
    pub fn metrics_text(&self) -> String {
        self.inner.metrics.render()
    }

    /// The public URL of an HTTP-triggered flow: `base` (or config
    /// `public_url`, or this server's own address) joined with its path.
    pub fn endpoint(&self, flow: &str, base: Option<&str>) -> Result<String, RunError> {
        let def = self
            .flow(flow)
            .ok_or_else(|| RunError::new(format!("endpoint: no flow named `{flow}`")))?;
        let (_, path) = def.trigger.route().ok_or_else(|| {
            RunError::new(format!(
                "endpoint: flow `{flow}` has no webhook or sync trigger"
            ))
        })?;
        let base = match base {
            Some(b) => b.to_string(),
            None => match self.inner.config.get("public_url").as_str() {
                Some(u) => u.to_string(),
                None => lock(&self.inner.local_url).clone().ok_or_else(|| {
                    RunError::new("endpoint: config entry `public_url` is not set")
                })?,
            },
        };
        Ok(format!("{}{}", base.trim_end_matches('/'), path))
    }

    /// Stores a new execution of `flow` for the worker pool; a repeated
    /// dedupe key stores nothing and returns the first execution's id.
    pub async fn submit(
        &self,
        flow: &str,
        trigger: Value,
        dedupe_key: Option<String>,
    ) -> Result<Submitted, StoreError> {
        let id = new_execution_id();
        let r = self
            .inner
            .store
            .enqueue(NewExecution {
                id: id.clone(),
                flow: flow.to_string(),
                trigger,
                dedupe_key,
                running: None,
            })
            .await?;
        Ok(match r {
            Enqueued::Created => {
                self.notify_workers();
                tracing::info!(execution_id = %id, flow, "queued");
                Submitted {
                    execution_id: id,
                    duplicate: false,
                }
            }
            Enqueued::Duplicate(first) => {
                tracing::info!(execution_id = %first, flow, "duplicate delivery ignored");
                Submitted {
                    execution_id: first,
                    duplicate: true,
                }
            }
        })
    }

    /// Stores an execution as running and runs it in this task (sync flows,
    /// `run`, `deploy`). Returns the finished execution.
    pub async fn run_inline(
        &self,
        id: String,
        flow: &str,
        trigger: Value,
    ) -> Result<Execution, StoreError> {
        let worker = format!("inline-{id}");
        self.inner
            .store
            .enqueue(NewExecution {
                id: id.clone(),
                flow: flow.to_string(),
                trigger,
                dedupe_key: None,
                running: Some((worker.clone(), self.inner.lease)),
            })
            .await?;
        let exec = self
            .inner
            .store
            .get(&id)
            .await?
            .ok_or_else(|| StoreError(format!("execution {id} vanished")))?;
        Ok(self.execute(exec, &worker).await)
    }

    /// Marks a still-running execution failed (a sync run that timed out).
    pub async fn abandon(&self, id: &str, message: &str) {
        if let Ok(Some(e)) = self.inner.store.get(id).await {
            if e.status.is_final() {
                return;
            }
        }
        let r = self
            .inner
            .store
            .finish(
                id,
                Finish {
                    status: Status::Failed,
                    result: None,
                    error: Some(message.to_string()),
                    error_step: None,
                },
            )
            .await;
        if let Err(e) = r {
            tracing::error!(execution_id = id, error = %e, "cannot record the end of a run");
        }
        self.notify_finished(id).await;
    }

    /// Waits until the execution has ended; `None` if it is unknown.
    pub async fn wait_for(&self, id: &str) -> Option<Execution> {
        let (tx, rx) = oneshot::channel();
        lock(&self.inner.watchers)
            .entry(id.to_string())
            .or_default()
            .push(tx);
        match self.inner.store.get(id).await {
            Ok(Some(e)) if e.status.is_final() => return Some(e),
            Ok(Some(_)) => {}
            _ => return None,
        }
        rx.await.ok()
    }

    async fn notify_finished(&self, id: &str) {
        let waiters = lock(&self.inner.watchers).remove(id);
        if let Some(waiters) = waiters {
            if let Ok(Some(exec)) = self.inner.store.get(id).await {
                for w in waiters {
                    let _ = w.send(exec.clone());
                }
            }
        }
    }

    /// Runs a claimed execution to its end and records the outcome.
    pub(crate) async fn execute(&self, exec: Execution, worker: &str) -> Execution {
        let span = tracing::info_span!("run", execution_id = %exec.id, flow = %exec.flow);
        let id = exec.id.clone();
        let finish = self.execute_inner(exec, worker).instrument(span).await;
        if let Err(e) = self.inner.store.finish(&id, finish.clone()).await {
            tracing::error!(execution_id = %id, error = %e, "cannot record the end of a run");
        }
        self.notify_finished(&id).await;
        match self.inner.store.get(&id).await {
            Ok(Some(e)) => e,
            _ => Execution {
                id: id.clone(),
                flow: String::new(),
                status: finish.status,
                trigger: Value::Null,
                dedupe_key: None,
                created_at: chrono::Utc::now(),
                started_at: None,
                finished_at: Some(chrono::Utc::now()),
                attempts: 1,
                result: finish.result,
                error: finish.error,
                error_step: finish.error_step,
                lease_owner: None,
                lease_expires: None,
            },
        }
    }

    async fn execute_inner(&self, exec: Execution, worker: &str) -> Finish {
        let Some(def) = self.flow(&exec.flow).cloned() else {
            let message = format!("this binary has no flow named `{}`", exec.flow);
            tracing::error!("{message}");
            return Finish {
                status: Status::Failed,
                result: None,
                error: Some(message),
                error_step: None,
            };
        };
        let store = &self.inner.store;
        let (journal, state) = match (store.journal(&exec.id).await, store.state_all().await) {
            (Ok(j), Ok(s)) => (j, s),
            (Err(e), _) | (_, Err(e)) => {
                return Finish {
                    status: Status::Failed,
                    result: None,
                    error: Some(e.to_string()),
                    error_step: None,
                }
            }
        };
        tracing::info!(attempt = exec.attempts, "run started");
        let started = std::time::Instant::now();
        let cx = Ctx::new(
            self.clone(),
            exec.id.clone(),
            def.name,
            exec.trigger.clone(),
            Value::Null,
            journal,
            state,
        );

        // Keep the lease while the run goes on.
        let keeper = {
            let rt = self.clone();
            let id = exec.id.clone();
            let worker = worker.to_string();
            let lease = self.inner.lease;
            tokio::spawn(async move {
                let every = (lease / 3).max(Duration::from_millis(100));
                loop {
                    tokio::time::sleep(every).await;
                    if !matches!(rt.inner.store.renew(&id, &worker, lease).await, Ok(true)) {
                        break;
                    }
                }
            })
        };
        let result = call_flow(def.run, cx).await;
        keeper.abort();

        let redactor = &self.inner.redactor;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let finish = match result {
            Ok(Outcome::Succeeded) => {
                tracing::info!(elapsed_ms, "run succeeded");
                Finish {
                    status: Status::Succeeded,
                    result: None,
                    error: None,
                    error_step: None,
                }
            }
            Ok(Outcome::Skipped(reason)) => {
                let reason = redactor.redact_string(reason);
                tracing::info!(elapsed_ms, %reason, "run skipped");
                Finish {
                    status: Status::Skipped,
                    result: Some(json!({ "skipped": reason })),
                    error: None,
                    error_step: None,
                }
            }
            Ok(Outcome::Respond {
                status,
                body,
                headers,
            }) => {
                tracing::info!(elapsed_ms, status, "run responded");
                let headers: Map<String, Value> = headers
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(crate::ops::display(&v))))
                    .collect();
                Finish {
                    status: Status::Succeeded,
                    result: Some(json!({ "status": status, "body": body, "headers": headers })),
                    error: None,
                    error_step: None,
                }
            }
            Err(e) => {
                let message = redactor.redact_string(e.message.clone());
                tracing::error!(elapsed_ms, error = %message, step = e.step.as_deref().unwrap_or(""), "run failed");
                if let Some(handler) = def.on_failure {
                    let error = RunError {
                        message: message.clone(),
                        step: e.step.clone(),
                    }
                    .to_value(&exec.id);
                    let journal = store.journal(&exec.id).await.unwrap_or_default();
                    let state = store.state_all().await.unwrap_or_default();
                    let cx = Ctx::new(
                        self.clone(),
                        exec.id.clone(),
                        def.name,
                        exec.trigger.clone(),
                        error,
                        journal,
                        state,
                    );
                    let span = tracing::info_span!("on_failure");
                    match call_flow(handler, cx).instrument(span).await {
                        Ok(_) => tracing::info!("on failure block finished"),
                        Err(e2) => tracing::error!(
                            error = %redactor.redact(&e2.message),
                            "on failure block failed"
                        ),
                    }
                }
                Finish {
                    status: Status::Failed,
                    result: None,
                    error: Some(message),
                    error_step: e.step,
                }
            }
        };
        self.inner
            .metrics
            .count_run(def.name, finish.status.as_str());
        finish
    }

    /// Starts the worker pool; workers stop claiming once shutdown begins
    /// and finish the run in hand.
    pub fn start_workers(&self) -> Vec<JoinHandle<()>> {
        (0..self.inner.workers)
            .map(|n| {
                let rt = self.clone();
                let worker = format!("w{n}-{}", &new_execution_id()[24..]);
                tokio::spawn(async move { rt.worker_loop(worker).await })
            })
            .collect()
    }

    async fn worker_loop(&self, worker: String) {
        let mut shutdown = self.inner.shutdown.subscribe();
        loop {
            if *shutdown.borrow() {
                break;
            }
            match self.inner.store.claim(&worker, self.inner.lease).await {
                Ok(Some(exec)) => {
                    self.execute(exec, &worker).await;
                }
                Ok(None) => {
                    tokio::select! {
                        _ = self.inner.queue.notified() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
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
    }

    /// Begins shutdown: workers, schedulers and the server stop taking work.
    pub fn begin_shutdown(&self) {
        self.inner
            .ready
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.inner.shutdown.send_replace(true);
        self.inner.queue.notify_waiters();
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        *self.inner.shutdown.borrow()
    }

    /// The trigger value of deploy flows: `{ version, endpoints }`.
    pub fn deploy_trigger(&self) -> Value {
        let endpoints: Map<String, Value> = self
            .inner
            .flows
            .iter()
            .filter(|f| f.trigger.route().is_some())
            .filter_map(|f| {
                self.endpoint(f.name, None)
                    .ok()
                    .map(|u| (f.name.to_string(), Value::String(u)))
            })
            .collect();
        json!({ "version": self.inner.integration.version(), "endpoints": endpoints })
    }

    /// Runs every deploy flow in order, in the foreground; when all succeed
    /// (or there are none) records this build as deployed.
    pub async fn deploy(&self) -> Result<Vec<Execution>, RunError> {
        let mut done = Vec::new();
        for def in self.inner.flows.clone() {
            if !matches!(def.trigger, TriggerDef::Deploy) {
                continue;
            }
            let exec = self
                .run_inline(new_execution_id(), def.name, self.deploy_trigger())
                .await
                .map_err(|e| RunError::new(e.to_string()))?;
            if exec.status == Status::Failed {
                return Err(RunError {
                    message: format!(
                        "deploy flow `{}` failed: {}",
                        def.name,
                        exec.error.clone().unwrap_or_default()
                    ),
                    step: exec.error_step.clone(),
                });
            }
            done.push(exec);
        }
        self.inner
            .store
            .set_deployed_version(&self.inner.integration.build_id())
            .await
            .map_err(|e| RunError::new(e.to_string()))?;
        Ok(done)
    }

    /// Runs the deploy flows if the store's deployed build differs from this one.
    pub async fn deploy_if_new(&self) -> Result<bool, RunError> {
        let current = self.inner.integration.build_id();
        let deployed = self
            .inner
            .store
            .deployed_version()
            .await
            .map_err(|e| RunError::new(e.to_string()))?;
        if deployed.as_deref() == Some(current.as_str()) {
            return Ok(false);
        }
        tracing::info!(version = %self.inner.integration.version(), "new version: running deploy flows");
        self.deploy().await?;
        Ok(true)
    }
}

async fn call_flow(f: crate::integration::FlowFn, cx: Ctx) -> Result<Outcome, RunError> {
    // A panic in flow code must not take a worker down with it.
    match AssertUnwindSafe(f(cx)).catch_unwind().await {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(RunError::new(format!("internal error (panic): {what}")))
        }
    }
}
