//! The executor: [`Runtime`] owns the loaded config, the flows, the store,
//! the HTTP client and the metrics; it stores executions, runs them on a
//! worker pool (or inline for sync flows, `run` and `deploy`), records how
//! they end and runs `on failure` blocks.

/// A run's routine line (started, succeeded, skipped, responded, a step
/// succeeded): `info` for a queued run; `debug` for a sync run held in
/// memory (`$inline`), whose runs are summarised instead: a line per step
/// and per run would cost a busy sync endpoint a third of its throughput.
macro_rules! routine {
    ($inline:expr, $($event:tt)+) => {
        if $inline {
            tracing::debug!($($event)+)
        } else {
            tracing::info!($($event)+)
        }
    };
}

/// An event of a run (`$run`: its [`ctx::RunState`]) that is not routine.
/// A queued run's events are inside its `run` and `step` spans, which name
/// it; a sync run has no spans (creating and entering two spans per
/// request cost a busy sync endpoint about 8% of its instructions), so its
/// events carry the run's identity (and the step's, given as the first
/// field `step = ...`) as fields instead.
macro_rules! run_event {
    ($level:ident, $run:expr, step = %$step:expr, $($event:tt)+) => {
        if $run.spanned {
            tracing::$level!($($event)+)
        } else {
            tracing::$level!(
                execution_id = %$run.execution_id,
                flow = $run.flow,
                trace_id = %$run.trace_id(),
                step = %$step,
                $($event)+
            )
        }
    };
    ($level:ident, $run:expr, $($event:tt)+) => {
        if $run.spanned {
            tracing::$level!($($event)+)
        } else {
            tracing::$level!(execution_id = %$run.execution_id, flow = $run.flow, trace_id = %$run.trace_id(), $($event)+)
        }
    };
}

pub(crate) mod connect;
pub mod connection;
pub mod ctx;
pub mod integration;
pub mod parallel;
pub mod registry;
pub mod trigger_value;

mod deploy;
mod sync;
mod workers;

pub use sync::{SyncRun, SyncTrigger, SYNC_SUMMARY_EVERY};

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

use crate::core::config::{self, Config, ConfigEntry, ConfigError, EnvSource};
use crate::core::error::RunError;
use crate::core::metrics::Metrics;
use crate::core::redact::Redactor;
use crate::core::sync::lock;
use crate::core::trace::{TraceParent, TraceSeed};
use crate::engine::connection::Connections;
use crate::engine::ctx::{Ctx, Journaling, RunJournal, RunServices};
use crate::engine::integration::{Auth, FlowDef, Integration, Outcome, TriggerDef, Verify};
use crate::store::{
    Enqueued, Execution, Finish, Lease, MemoryStore, NewExecution, Status, Store, StoreError,
};

/// How long failed runs are kept by default (`--failed-retention`): long
/// enough to notice and replay them, bounded so the store cannot grow
/// without limit.
pub const DEFAULT_FAILED_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// How long finished runs are kept by default (`--retention`).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// How often [`Runtime::wait_for`] looks in the store for a run that
/// another process may have finished.
const WAIT_POLL: Duration = Duration::from_millis(500);

/// How often the retention purge runs while serving.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

pub use registry::{PureFn, StepFn, StepRegistry};

/// How to set up a [`Runtime`]. `Default` reads the process environment and
/// uses a [`MemoryStore`].
pub struct RuntimeOptions {
    /// Where config entries' environment variables come from.
    pub env: EnvSource,
    /// The `--config FILE.toml`.
    pub config_file: Option<PathBuf>,
    /// An instance's config (`serve --instances`): when set, the config is
    /// these values and the defaults only (`env` and `config_file` are not
    /// read).
    pub config_values: Option<Map<String, Value>>,
    /// The instance this runtime serves (`serve --instances`): its
    /// endpoints are under `/i/NAME`, and its runs' lines name it.
    pub instance: Option<String>,
    /// The store; `None` means a new [`MemoryStore`].
    pub store: Option<Arc<dyn Store>>,
    /// Size of the worker pool.
    pub workers: usize,
    /// How long shutdown waits for in-flight runs.
    pub drain_timeout: Duration,
    /// Lease of a running execution (renewed while it runs).
    pub lease: Duration,
    /// Succeeded and skipped runs older than this are deleted while
    /// serving (hourly); `None` keeps them forever. Failed runs have
    /// their own retention.
    pub retention: Option<Duration>,
    /// Failed runs older than this are deleted while serving; `None` keeps
    /// them forever.
    pub failed_retention: Option<Duration>,
    /// Shares secrets with the log writer (see [`crate::core::logging`]).
    pub redactor: Redactor,
    /// The steps and pure functions runs can call. Empty by default: the
    /// standard library is registered by the host
    /// (`crate::host::step_registry`), and `flowc test` replaces `http.*`
    /// with mocks in it.
    pub steps: StepRegistry,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            env: EnvSource::Process,
            config_file: None,
            config_values: None,
            instance: None,
            store: None,
            workers: default_workers(),
            drain_timeout: Duration::from_secs(30),
            lease: Duration::from_secs(60),
            retention: Some(DEFAULT_RETENTION),
            failed_retention: Some(DEFAULT_FAILED_RETENTION),
            redactor: Redactor::new(),
            steps: StepRegistry::new(),
        }
    }
}

/// Queued runs going on at once by default: 64, whatever the cores. A run
/// spends nearly all its time waiting (for an HTTP call, a commit), so
/// the pool is sized for concurrency, not CPUs: with twice the cores (4
/// here) a webhook flow completed a tenth of the events it accepted.
pub const DEFAULT_WORKERS: usize = 64;

/// [`DEFAULT_WORKERS`].
pub fn default_workers() -> usize {
    DEFAULT_WORKERS
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
    /// Looked up for every run (FNV: the names are the program's).
    by_name: crate::core::fnv::FnvHashMap<&'static str, Arc<FlowDef>>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) http: reqwest::Client,
    /// `http.*` calls to plain `http://` URLs, when the environment names
    /// no proxy (which reqwest would apply to them).
    plain_http: Option<crate::core::plain_http::PlainHttp>,
    pub(crate) connections: Connections,
    pub(crate) metrics: Metrics,
    pub(crate) redactor: Redactor,
    steps: StepRegistry,
    pub(crate) workers: usize,
    pub(crate) drain_timeout: Duration,
    pub(crate) lease: Duration,
    pub(crate) retention: Option<Duration>,
    pub(crate) failed_retention: Option<Duration>,
    /// Executions the worker pool is running: id → lease and journal (the
    /// heartbeat renews the leases and marks lost ones on the journal;
    /// released back to the queue if still running at the drain deadline).
    in_flight: Mutex<HashMap<String, (Lease, Option<RunJournal>)>>,
    queue: Notify,
    watchers: Mutex<HashMap<String, Vec<oneshot::Sender<Execution>>>>,
    pub(crate) shutdown: watch::Sender<bool>,
    /// Base URL of this server once it listens (for endpoints when
    /// `public_url` is not configured).
    pub(crate) local_url: Mutex<Option<String>>,
    /// [`RuntimeOptions::instance`].
    pub(crate) instance: Option<Arc<str>>,
    /// What `/_flow/metrics` shows instead of this runtime's own metrics
    /// (`serve --instances`: every instance's, labelled).
    metrics_source: Mutex<Option<MetricsSource>>,
}

/// See [`Runtime::set_metrics_source`].
pub type MetricsSource = Arc<dyn Fn() -> String + Send + Sync>;

impl Inner {
    /// The public URL of an HTTP-triggered flow (see [`Runtime::endpoint`]).
    fn endpoint_at(&self, flow: &str, base: Option<&str>) -> Result<String, RunError> {
        let def = self
            .by_name
            .get(flow)
            .ok_or_else(|| RunError::new(format!("endpoint: no flow named `{flow}`")))?;
        let (_, path) = def.trigger.route().ok_or_else(|| {
            RunError::new(format!(
                "endpoint: flow `{flow}` has no webhook or sync trigger"
            ))
        })?;
        let base = match base {
            Some(b) => b.to_string(),
            None => match self.config.get("public_url").as_str() {
                Some(u) => u.to_string(),
                None => lock(&self.local_url).clone().ok_or_else(|| {
                    RunError::new("endpoint: config entry `public_url` is not set")
                })?,
            },
        };
        let base = base.trim_end_matches('/');
        Ok(match &self.instance {
            Some(name) => format!("{base}/i/{name}{path}"),
            None => format!("{base}{path}"),
        })
    }
}

impl RunServices for Inner {
    fn config(&self) -> &Value {
        self.config.value()
    }

    fn version(&self) -> String {
        self.integration.version()
    }

    fn steps(&self) -> &StepRegistry {
        &self.steps
    }

    fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn http_client(&self) -> &reqwest::Client {
        &self.http
    }

    fn plain_http(&self) -> Option<&crate::core::plain_http::PlainHttp> {
        self.plain_http.as_ref()
    }

    fn connections(&self) -> &Connections {
        &self.connections
    }

    fn trigger_of(&self, flow: &str) -> Option<&TriggerDef> {
        self.by_name.get(flow).map(|def| &def.trigger)
    }

    fn endpoint(&self, flow: &str) -> Result<String, RunError> {
        self.endpoint_at(flow, None)
    }

    fn wake_workers(&self) {
        self.queue.notify_one();
    }
}

/// A loaded integration, ready to serve or run flows. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<Inner>,
}

/// A signature or credentials check with an empty secret admits anyone
/// (anyone can compute an HMAC under the empty key, or send an empty
/// token), so a binary with one must not start: one problem per such
/// flow, naming the empty secret entries (`WEBHOOK_SECRET=` set but empty).
fn empty_caller_secrets(
    flows: &[Arc<FlowDef>],
    entries: &[ConfigEntry],
    config: &Config,
) -> Vec<String> {
    let empty: Vec<String> = entries
        .iter()
        .filter(|e| e.is_secret() && config.get(e.name).as_str() == Some(""))
        .map(|e| format!("{} (environment variable {})", e.name, e.env_var()))
        .collect();
    let which = if empty.is_empty() {
        "its secret".to_string()
    } else {
        empty.join(", ")
    };
    flows
        .iter()
        .filter_map(|f| {
            let (verify, auth) = f.trigger.caller_checks()?;
            let secrets = verify
                .map(Verify::secrets)
                .into_iter()
                .chain(auth.map(Auth::secrets))
                .flatten();
            let uses = if verify.is_some() {
                "checks request signatures with it (anyone could sign)"
            } else {
                "checks callers' credentials with it (anyone could pass)"
            };
            secrets.clone().any(String::is_empty).then(|| {
                format!(
                    "{which}: empty, but flow `{}` {uses}; give it a secret",
                    f.name
                )
            })
        })
        .collect()
}

/// A new execution id: a UUID v7 (ordered by its millisecond), its random
/// bits from the thread's CSPRNG: `Uuid::now_v7` asks the kernel
/// (`getrandom(2)`) for every id, a system call per request.
pub fn new_execution_id() -> String {
    use rand::Rng as _;
    let millis = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
    let random: [u8; 10] = rand::rng().random();
    let id = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
    // The text `to_string` gives, written without the formatting machinery.
    let mut text = uuid::Uuid::encode_buffer();
    id.hyphenated().encode_lower(&mut text).to_owned()
}

/// What [`Runtime::submit`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The new execution's id, or the first one's for a duplicate.
    pub execution_id: String,
    /// Whether the dedupe key was seen before (nothing new was stored).
    pub duplicate: bool,
}

impl Runtime {
    /// Loads the config (all problems at once), registers the named types,
    /// builds the flows and the HTTP client.
    pub fn new(integration: Integration, options: RuntimeOptions) -> Result<Runtime, StartError> {
        crate::core::schema::register_types(&integration.types);
        let config = match options.config_values {
            Some(values) => config::load_values(&integration.config, values)?,
            None => config::load(
                &integration.config,
                options.config_file.as_deref(),
                &options.env,
            )?,
        };
        let redactor = options.redactor;
        redactor.merge(config.redactor());
        let flows: Vec<Arc<FlowDef>> = (integration.flows)(&config)
            .into_iter()
            .map(Arc::new)
            .collect();
        let forgeable = empty_caller_secrets(&flows, &integration.config, &config);
        if !forgeable.is_empty() {
            return Err(StartError::Config(ConfigError {
                problems: forgeable,
            }));
        }
        let by_name = flows.iter().map(|f| (f.name, f.clone())).collect();
        let connections = Connections::new((integration.connections)(&config));
        let user_agent = format!("{}/{} (flowc)", integration.name, integration.version());
        let proxy = crate::core::outbound::proxy_in_environment();
        let plain_http = match reqwest::header::HeaderValue::try_from(user_agent.as_str()) {
            Ok(ua) if !proxy => Some(crate::core::plain_http::PlainHttp::new(ua)),
            _ => None,
        };
        let mut http = reqwest::Client::builder();
        if !proxy {
            // The same routing, without a proxy lookup per request.
            http = http.no_proxy();
        }
        let http = http
            .connect_timeout(Duration::from_secs(10))
            .redirect(crate::core::outbound::redirect_policy())
            // Steps are retried by the engine (journaled, with backoff).
            // reqwest's own retries are of HTTP/2 refusals only, which this
            // HTTP/1 client never gets, yet its policy copies every
            // request's headers in case: none, and no copy.
            .retry(reqwest::retry::never().max_retries_per_request(0))
            .user_agent(user_agent)
            .build()
            .map_err(|e| StartError::Other(format!("cannot create the HTTP client: {e}")))?;
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
                plain_http,
                connections,
                metrics: Metrics::default(),
                redactor,
                steps: options.steps,
                workers: options.workers.max(1),
                drain_timeout: options.drain_timeout,
                lease: options.lease,
                retention: options.retention,
                failed_retention: options.failed_retention,
                in_flight: Mutex::new(HashMap::new()),
                queue: Notify::new(),
                watchers: Mutex::new(HashMap::new()),
                shutdown,
                local_url: Mutex::new(None),
                instance: options.instance.map(Arc::from),
                metrics_source: Mutex::new(None),
            }),
        })
    }

    /// The instance this runtime serves (`serve --instances`), if any.
    pub fn instance(&self) -> Option<&str> {
        self.inner.instance.as_deref()
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

    /// The `connection` declarations.
    pub fn connections(&self) -> &Connections {
        &self.inner.connections
    }

    /// All flows.
    pub fn flows(&self) -> &[Arc<FlowDef>] {
        &self.inner.flows
    }

    /// A flow by name.
    pub fn flow(&self, name: &str) -> Option<&Arc<FlowDef>> {
        self.inner.by_name.get(name)
    }

    pub(crate) fn notify_workers(&self) {
        self.inner.queue.notify_one();
    }

    /// The metrics (counted by the engine and the adapters).
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Prometheus text of the metrics.
    pub fn metrics_text(&self) -> String {
        let source = lock(&self.inner.metrics_source).clone();
        match source {
            Some(source) => source(),
            None => self.inner.metrics.render(),
        }
    }

    /// Makes [`Runtime::metrics_text`] (the `/_flow/metrics` page) call
    /// `source` instead of rendering this runtime's metrics.
    pub fn set_metrics_source(&self, source: MetricsSource) {
        *lock(&self.inner.metrics_source) = Some(source);
    }

    /// The public URL of an HTTP-triggered flow: `base` (or config
    /// `public_url`, or this server's own address) joined with its path.
    pub fn endpoint(&self, flow: &str, base: Option<&str>) -> Result<String, RunError> {
        self.inner.endpoint_at(flow, base)
    }

    /// Stores a new execution of `flow` for the worker pool; a repeated
    /// dedupe key stores nothing and returns the first execution's id.
    pub async fn submit(
        &self,
        flow: &str,
        trigger: Value,
        dedupe_key: Option<String>,
    ) -> Result<Submitted, StoreError> {
        let mut new = NewExecution::queued(new_execution_id(), flow, trigger);
        new.dedupe_key = dedupe_key;
        self.submit_new(new).await
    }

    /// Stores the run of a schedule tick, unless that tick (or a later one)
    /// was recorded before: then returns the earlier run as a duplicate.
    pub(crate) async fn submit_tick(
        &self,
        flow: &str,
        trigger: Value,
        tick: chrono::DateTime<chrono::Utc>,
    ) -> Result<Submitted, StoreError> {
        let mut new = NewExecution::queued(new_execution_id(), flow, trigger);
        new.tick = Some(tick);
        self.submit_new(new).await
    }

    async fn submit_new(&self, new: NewExecution) -> Result<Submitted, StoreError> {
        let id = new.id.clone();
        let flow = new.flow.clone();
        let flow = flow.as_str();
        let r = self.inner.store.enqueue(new).await?;
        Ok(match r {
            Enqueued::Created => {
                self.notify_workers();
                tracing::debug!(execution_id = %id, flow, "queued");
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

    /// Records a message a subscription could not decode as a failed run of
    /// `flow`: `trigger` holds what arrived (and, under `rejected`, `error`),
    /// the run's error is `error`. Stored as running, then finished as
    /// failed; should the process stop in between, the run is resumed and a
    /// worker fails it with the same error without running the body. A
    /// repeated dedupe key stores nothing.
    pub async fn record_rejected(
        &self,
        flow: &str,
        mut trigger: Value,
        dedupe_key: Option<String>,
        error: &str,
    ) -> Result<Submitted, StoreError> {
        if let Value::Object(m) = &mut trigger {
            m.insert("rejected".into(), Value::String(error.to_string()));
        }
        let worker = "rejected".to_string();
        let mut new = NewExecution::queued(new_execution_id(), flow, trigger);
        new.dedupe_key = dedupe_key;
        new.running = Some((worker.clone(), self.inner.lease));
        let id = new.id.clone();
        let store = &self.inner.store;
        if let Enqueued::Duplicate(first) = store.enqueue(new).await? {
            return Ok(Submitted {
                execution_id: first,
                duplicate: true,
            });
        }
        let finish = Finish {
            status: Status::Failed,
            result: None,
            error: Some(error.to_string()),
            error_step: None,
        };
        store.finish(&id, &Lease::first(worker), finish).await?;
        tracing::warn!(execution_id = %id, flow, error, "message rejected: recorded as a failed run");
        Ok(Submitted {
            execution_id: id,
            duplicate: false,
        })
    }

    /// Stores an execution as running and runs it in this task (`run`,
    /// `deploy`): journaled like a queued run. Returns the finished execution.
    pub async fn run_inline(
        &self,
        id: String,
        flow: &str,
        trigger: Value,
    ) -> Result<Execution, StoreError> {
        let worker = format!("inline-{id}");
        let mut new = NewExecution::queued(id.clone(), flow, trigger);
        new.running = Some((worker.clone(), self.inner.lease));
        self.inner.store.enqueue(new).await?;
        let exec = self
            .inner
            .store
            .get(&id)
            .await?
            .ok_or_else(|| StoreError::Backend(format!("execution {id} vanished")))?;
        Ok(self
            .execute_with(
                exec,
                RunJournal::new(Vec::new(), Journaling::Durable, Lease::first(worker)),
                None,
            )
            .await)
    }

    /// Records how a run ended; `false` if its lease was lost (the outcome
    /// belongs to the worker that took the run over).
    async fn record_finish(&self, id: &str, journal: &RunJournal, finish: &Finish) -> bool {
        if journal.lease_lost() {
            tracing::warn!(execution_id = %id, "lease lost: the run was stopped and its outcome is not recorded (another worker carries it on)");
            return false;
        }
        match self
            .inner
            .store
            .finish_with_steps(id, &journal.lease, journal.take_unwritten(), finish.clone())
            .await
        {
            Ok(()) => true,
            Err(e) if e.is_lease_lost() => {
                journal.lose_lease();
                tracing::warn!(execution_id = %id, "lease lost before the end was recorded: the outcome is dropped (another worker carries the run on)");
                false
            }
            Err(e) => {
                tracing::error!(execution_id = %id, error = %e, "cannot record the end of a run");
                true
            }
        }
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
        // This process hears of the runs it finishes; a run finished by
        // another replica (a shared store) is seen by polling.
        let mut rx = std::pin::pin!(rx);
        loop {
            tokio::select! {
                r = &mut rx => return r.ok(),
                _ = tokio::time::sleep(WAIT_POLL) => {}
            }
            match self.inner.store.get(id).await {
                Ok(Some(e)) if e.status.is_final() => return Some(e),
                Ok(Some(_)) | Err(_) => {}
                Ok(None) => return None,
            }
        }
    }

    fn notify_finished(&self, exec: &Execution) {
        let waiters = {
            let mut watchers = lock(&self.inner.watchers);
            // Most runs have no watcher: no hashing of their id then.
            if watchers.is_empty() {
                return;
            }
            watchers.remove(&exec.id)
        };
        for w in waiters.into_iter().flatten() {
            let _ = w.send(exec.clone());
        }
    }

    /// Runs a claimed execution to its end and records the outcome. A run
    /// started before (resumed, replayed, taken over) reuses its journal.
    pub(crate) async fn execute(
        &self,
        exec: Execution,
        state: Map<String, Value>,
        lease: Lease,
    ) -> Execution {
        // `attempts` counts starts: the first start has nothing journaled.
        let journal = if exec.attempts > 1 {
            match self.inner.store.journal(&exec.id).await {
                Ok(j) => j,
                // Asking again would give the same answer: the run fails
                // rather than going round the queue for ever.
                Err(StoreError::Unreadable(problem)) => {
                    return self.fail_unreadable(exec, lease, problem).await;
                }
                Err(e) => {
                    tracing::error!(execution_id = %exec.id, error = %e, "cannot read the journal; the run goes back to the queue");
                    let _ = self.inner.store.release(&exec.id, &lease).await;
                    return exec;
                }
            }
        } else {
            Vec::new()
        };
        let journal = RunJournal::new(journal, Journaling::Durable, lease);
        if let Some(held) = lock(&self.inner.in_flight).get_mut(&exec.id) {
            held.1 = Some(journal.clone());
        }
        self.execute_with(exec, journal, Some(state)).await
    }

    /// Fails a claimed run whose stored journal cannot be read back.
    async fn fail_unreadable(&self, exec: Execution, lease: Lease, problem: String) -> Execution {
        tracing::error!(execution_id = %exec.id, error = %problem, "the run cannot resume; marked failed");
        let failed = Finish {
            status: Status::Failed,
            result: None,
            error: Some(problem),
            error_step: None,
        };
        if let Err(e) = self
            .inner
            .store
            .finish(&exec.id, &lease, failed.clone())
            .await
        {
            tracing::error!(execution_id = %exec.id, error = %e, "cannot record the end of a run");
            return exec;
        }
        let done = finished(exec, failed);
        self.notify_finished(&done);
        done
    }

    async fn execute_with(
        &self,
        exec: Execution,
        journal: RunJournal,
        state: Option<Map<String, Value>>,
    ) -> Execution {
        // The caller's trace, if its request had one, is in the stored
        // trigger: a replay or a take-over joins the same trace.
        let trace = TraceSeed {
            caller: TraceParent::of_trigger(&exec.trigger),
            start: exec.attempts,
        };
        let trace_id = trace.trace(&exec.id).trace_id;
        let span = tracing::info_span!("run", execution_id = %exec.id, flow = %exec.flow, trace_id = %trace_id, instance = tracing::field::Empty);
        if let Some(instance) = self.instance() {
            span.record("instance", instance);
        }
        let trigger = Arc::new(exec.trigger.clone());
        // A first start's span covers the time since intake (queued).
        let start = if exec.attempts <= 1 {
            std::time::SystemTime::from(exec.created_at)
        } else {
            std::time::SystemTime::now()
        };
        let finish = self
            .run_flow(&exec, trigger, &journal, state, trace, None)
            .instrument(span)
            .await;
        self.export_run_span(&exec, trace, start, &finish);
        let recorded = self.record_finish(&exec.id, &journal, &finish).await;
        *journal.mode.write().await = Journaling::Ended;
        if !recorded {
            return exec;
        }
        let done = finished(exec, finish);
        self.notify_finished(&done);
        done
    }

    /// Renews the lease of a durable run every third of the lease until the
    /// returned guard is dropped or the run ends; marks the journal lost
    /// when the store refuses the renewal.
    fn keep_lease(&self, id: String, journal: RunJournal) -> AbortOnDrop {
        let rt = self.clone();
        let lease = self.inner.lease;
        AbortOnDrop(tokio::spawn(async move {
            let every = (lease / 3).max(Duration::from_millis(100));
            loop {
                tokio::time::sleep(every).await;
                // Started once the run is durable; it never goes back.
                if *journal.mode.read().await != Journaling::Durable {
                    break;
                }
                match rt.inner.store.renew(&id, &journal.lease, lease).await {
                    Ok(true) => {}
                    Ok(false) => {
                        journal.lose_lease();
                        break;
                    }
                    // Retried at the next beat; the lease may run out
                    // meanwhile, and then the next write is refused.
                    Err(e) => tracing::warn!(error = %e, "cannot renew the lease"),
                }
            }
        }))
    }

    /// Exports the span of one start of a run (when export is on).
    pub(crate) fn export_run_span(
        &self,
        exec: &Execution,
        trace: TraceSeed,
        start: std::time::SystemTime,
        finish: &Finish,
    ) {
        if !crate::core::otel::enabled() {
            return;
        }
        use crate::core::otel::AttributeValue::{Int, Text};
        let trace = trace.trace(&exec.id);
        crate::core::otel::export(crate::core::otel::FinishedSpan {
            name: "run",
            trace,
            span_id: trace.run_span,
            parent: None,
            start,
            end: std::time::SystemTime::now(),
            attributes: [
                ("flow.name", Text(exec.flow.clone())),
                ("flow.execution_id", Text(exec.id.clone())),
                ("flow.attempt", Int(i64::from(exec.attempts))),
                ("flow.status", Text(finish.status.to_string())),
            ]
            .into_iter()
            .chain(
                self.instance()
                    .map(|i| ("flow.instance", Text(i.to_string()))),
            )
            .collect(),
            error: finish
                .error
                .as_ref()
                .map(|e| self.inner.redactor.redact_string(e.clone())),
        });
    }

    /// Runs the flow (and `on failure`) with `state` as read at the start
    /// (`None`: read it now). `deadline`: when the run is stopped wherever
    /// it is (a sync run without `fallback: async`), if it is.
    async fn run_flow(
        &self,
        exec: &Execution,
        trigger: Arc<Value>,
        journal: &RunJournal,
        state: Option<Map<String, Value>>,
        trace: TraceSeed,
        deadline: Option<tokio::time::Instant>,
    ) -> Finish {
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
        if let (TriggerDef::Subscribe(_) | TriggerDef::Email(_), Some(Value::String(rejected))) =
            (&def.trigger, exec.trigger.get("rejected"))
        {
            // Recorded by `record_rejected`, interrupted before it finished.
            return Finish {
                status: Status::Failed,
                result: None,
                error: Some(rejected.clone()),
                error_step: None,
            };
        }
        let store = &self.inner.store;
        let state = match state {
            Some(s) => Ok(s),
            None => store.state_all().await,
        };
        let state = match state {
            Ok(s) => s,
            Err(e) => {
                return Finish {
                    status: Status::Failed,
                    result: None,
                    error: Some(e.to_string()),
                    error_step: None,
                }
            }
        };
        // A sync run held in memory logs its routine lines at `debug`; the
        // runs of each sync flow are summarised instead (`summarise_sync_runs`).
        let durable = *journal.mode.read().await == Journaling::Durable;
        let inline = !durable;
        // A queued run's lines are inside its spans; a sync run's name it.
        let ids = ctx::RunIds {
            spanned: durable,
            execution_id: &exec.id,
            flow: def.name,
            trace,
            deadline,
        };
        routine!(inline, attempt = exec.attempts, "run started");
        let started = std::time::Instant::now();
        let cx = Ctx::new(
            self.inner.clone(),
            &ids,
            trigger.clone(),
            Value::Null,
            journal.clone(),
            state,
        );

        // Keep the lease while the run goes on (and stop when the run is
        // dropped, e.g. aborted at the drain deadline). The worker pool's
        // runs are renewed by its heartbeat instead, and a sync run in
        // memory has no lease to keep until it falls back to async
        // (`SyncRun::persist` starts its keeper then).
        let pooled = durable && lock(&self.inner.in_flight).contains_key(&exec.id);
        let _keeper =
            (durable && !pooled).then(|| self.keep_lease(exec.id.clone(), journal.clone()));
        // A lost lease stops the run where it is: the flow future is dropped.
        let result = tokio::select! {
            r = call_flow(def.run, cx) => r,
            _ = journal.lost() => Err(RunError::new("the lease on this run was lost")),
        };
        if journal.lease_lost() {
            run_event!(warn, ids, "lease lost: another worker took the run over; stopping it here without side effects");
            return Finish {
                status: Status::Failed,
                result: None,
                error: Some("the lease on this run was lost".into()),
                error_step: None,
            };
        }

        let redactor = &self.inner.redactor;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let finish = match result {
            Ok(Outcome::Succeeded) => {
                routine!(inline, elapsed_ms, "run succeeded");
                Finish {
                    status: Status::Succeeded,
                    result: None,
                    error: None,
                    error_step: None,
                }
            }
            Ok(Outcome::Skipped(reason)) => {
                let reason = redactor.redact_string(reason);
                routine!(inline, elapsed_ms, %reason, "run skipped");
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
                routine!(inline, elapsed_ms, status, "run responded");
                let headers: Map<String, Value> = headers
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(crate::core::ops::display(&v))))
                    .collect();
                Finish {
                    status: Status::Succeeded,
                    // Moved in: `json!` would copy the body.
                    result: Some(crate::core::ops::record([
                        ("status", Value::from(status)),
                        ("body", body),
                        ("headers", Value::Object(headers)),
                    ])),
                    error: None,
                    error_step: None,
                }
            }
            Err(e) => {
                let message = redactor.redact_string(e.message.clone());
                run_event!(error, ids, elapsed_ms, error = %message, step = e.step.as_deref().unwrap_or(""), "run failed");
                if let Some(handler) = def.on_failure {
                    let error = RunError {
                        message: message.clone(),
                        step: e.step.clone(),
                    }
                    .to_value(&exec.id);
                    let state = store.state_all().await.unwrap_or_default();
                    let cx = Ctx::new(
                        self.inner.clone(),
                        &ids,
                        trigger.clone(),
                        error,
                        journal.clone(),
                        state,
                    );
                    let span = tracing::info_span!("on_failure");
                    match call_flow(handler, cx).instrument(span).await {
                        Ok(_) => run_event!(info, ids, "on failure block finished"),
                        Err(e2) => run_event!(
                            error,
                            ids,
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
        let metrics = &self.inner.metrics;
        metrics.count_run(def.name, finish.status.as_str());
        if inline {
            metrics.tally_sync(def.name, finish.status.as_str(), started.elapsed());
        }
        finish
    }

    /// Begins shutdown: workers, schedulers and the server stop taking work.
    pub fn begin_shutdown(&self) {
        self.inner.shutdown.send_replace(true);
        self.inner.queue.notify_waiters();
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        *self.inner.shutdown.borrow()
    }

    /// Returns once shutdown has begun ([`Runtime::begin_shutdown`]).
    pub async fn shutdown_started(&self) {
        let mut shutdown = self.inner.shutdown.subscribe();
        let _ = shutdown.wait_for(|s| *s).await;
    }

    /// How long shutdown waits for in-flight runs.
    pub fn drain_timeout(&self) -> Duration {
        self.inner.drain_timeout
    }

    /// Records the address this process serves on (for [`Runtime::endpoint`]
    /// when config `public_url` is not set).
    pub fn set_local_url(&self, url: String) {
        *lock(&self.inner.local_url) = Some(url);
    }

    /// Whether this process serves: it listens, and is not shutting down.
    pub fn is_ready(&self) -> bool {
        lock(&self.inner.local_url).is_some() && !self.is_shutting_down()
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `exec` as it is after `finish` was recorded.
fn finished(exec: Execution, finish: Finish) -> Execution {
    Execution {
        status: finish.status,
        result: finish.result,
        error: finish.error,
        error_step: finish.error_step,
        finished_at: Some(chrono::Utc::now()),
        lease_owner: None,
        lease_expires: None,
        ..exec
    }
}

/// What a caught panic said.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

async fn call_flow(f: crate::engine::integration::FlowFn, cx: Ctx) -> Result<Outcome, RunError> {
    // A panic in flow code must not take a worker down with it.
    match AssertUnwindSafe(f(cx)).catch_unwind().await {
        Ok(r) => r,
        Err(panic) => Err(RunError::new(format!(
            "internal error (panic): {}",
            panic_message(&*panic)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_ids_are_distinct_uuid_v7_stamped_now() {
        let before = chrono::Utc::now().timestamp_millis();
        let ids: Vec<String> = (0..1000).map(|_| new_execution_id()).collect();
        let after = chrono::Utc::now().timestamp_millis();
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        for id in &ids {
            let uuid = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(*id, uuid.to_string(), "the usual text form");
            assert_eq!(uuid.get_version_num(), 7, "{id}");
            let (secs, nanos) = uuid.get_timestamp().unwrap().to_unix();
            let millis = i64::try_from(secs).unwrap() * 1000 + i64::from(nanos / 1_000_000);
            assert!(
                (before..=after).contains(&millis),
                "{id}: {millis} not in {before}..={after}"
            );
        }
    }
}
