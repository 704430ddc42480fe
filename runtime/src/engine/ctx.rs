//! [`Ctx`]: what a running flow sees (`config`, `trigger`, `error`) and the
//! effectful operations generated code performs through it (steps,
//! dispatch, state reads, endpoints).
//!
//! A step's identity is its name plus the indices of the loops around it
//! (`adjust[1]`, `adjust[1][0]` for nested loops); [`Ctx::with_index`] gives
//! a loop body its own context. Results are journaled under that identity,
//! and a recorded result is reused instead of calling the component again,
//! which makes replays resume after the last finished step.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use rand::Rng as _;
use serde_json::{Map, Value};
use tracing::Instrument as _;

use crate::core::error::{RunError, StepError};
use crate::core::metrics::Metrics;
use crate::core::otel::{AttributeValue, FinishedSpan};
use crate::core::redact::Redactor;
use crate::core::schema::Schema;
use crate::core::sync::lock;
use crate::core::trace::{RunTrace, SpanId, TraceId, TraceParent, TraceSeed};
use crate::engine::integration::{human_duration, TriggerDef};
use crate::engine::registry::StepRegistry;
use crate::store::{Enqueued, Lease, NewExecution, StepRecord, StepStatus, Store};

/// What a run's context needs from the engine that runs it. The engine's
/// runtime provides it; [`Ctx`] and the steps see only this.
pub trait RunServices: Send + Sync {
    /// The loaded config, as the `config` value.
    fn config(&self) -> &Value;
    /// The integration's version (`env.version`).
    fn version(&self) -> String;
    /// The steps and pure functions runs can call.
    fn steps(&self) -> &StepRegistry;
    /// The store (journal, state, dispatched runs).
    fn store(&self) -> &Arc<dyn Store>;
    /// Every secret value, to keep them out of errors and logs.
    fn redactor(&self) -> &Redactor;
    /// Step timings go here.
    fn metrics(&self) -> &Metrics;
    /// The shared HTTP client of `http.*` steps.
    fn http_client(&self) -> &reqwest::Client;
    /// The client of `http.*` steps' plain `http://` calls, when no proxy
    /// is configured ([`crate::core::plain_http`]).
    fn plain_http(&self) -> Option<&crate::core::plain_http::PlainHttp>;
    /// The `connection` declarations, for `via:`.
    fn connections(&self) -> &crate::engine::connection::Connections;
    /// The trigger of flow `flow`, if there is one by that name.
    fn trigger_of(&self, flow: &str) -> Option<&TriggerDef>;
    /// `endpoint(flow)`: the public URL of an HTTP-triggered flow.
    fn endpoint(&self, flow: &str) -> Result<String, RunError>;
    /// A run was queued: a worker should look.
    fn wake_workers(&self);
}

/// Arguments of a stdlib call: positional, named (`json:`, `bearer:`, ...)
/// and the `as:` type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Args {
    /// Positional arguments in order.
    pub positional: Vec<Value>,
    /// Named arguments in source order.
    pub named: Vec<(&'static str, Value)>,
    /// The `as: T` argument, if given.
    pub as_schema: Option<Schema>,
}

impl Args {
    /// No arguments.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a positional argument.
    pub fn arg(mut self, v: Value) -> Self {
        self.positional.push(v);
        self
    }

    /// Replaces positional argument `index` (the URL of each page of
    /// `http.pages`).
    pub fn set_arg(mut self, index: usize, v: Value) -> Self {
        if let Some(slot) = self.positional.get_mut(index) {
            *slot = v;
        }
        self
    }

    /// Appends a named argument.
    pub fn kw(mut self, name: &'static str, v: Value) -> Self {
        self.named.push((name, v));
        self
    }

    /// Sets the `as:` type.
    pub fn decode_as(mut self, schema: Schema) -> Self {
        self.as_schema = Some(schema);
        self
    }

    /// The arguments as a journal entry keeps them for the executions page:
    /// `{ "args": [positional...], name: value... }`, each text longer than
    /// [`SHOWN_TEXT`] bytes cut (a file's content is not what one looks for
    /// there, and the entry stays small), the `NAME_bytes` hints that
    /// generated code adds left out.
    pub fn shown(&self) -> Value {
        let mut shown = serde_json::Map::new();
        if !self.positional.is_empty() {
            let args = self.positional.iter().map(cut_texts).collect();
            shown.insert("args".into(), Value::Array(args));
        }
        for (name, value) in &self.named {
            let is_hint = name.ends_with("_bytes") && value.is_boolean();
            if !is_hint {
                shown.insert((*name).to_string(), cut_texts(value));
            }
        }
        Value::Object(shown)
    }

    /// Positional argument `i` (`null` if absent).
    pub fn get(&self, i: usize) -> &Value {
        static NULL: Value = Value::Null;
        self.positional.get(i).unwrap_or(&NULL)
    }

    /// The parameter at position `i` of the stdlib signature, given
    /// positionally or by its `name` (generated code passes required
    /// parameters positionally and defaulted ones by name).
    pub fn param(&self, i: usize, name: &str) -> &Value {
        match self.positional.get(i) {
            Some(v) => v,
            None => self.get_named(name).unwrap_or(self.get(i)),
        }
    }

    /// Named argument `name`, if given.
    pub fn get_named(&self, name: &str) -> Option<&Value> {
        self.named.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The data of a parameter that takes text or `Bytes` (`file.write`'s
    /// `content`, `http.post`'s `body`): generated code passes
    /// `NAME_bytes: true` beside a `Bytes` value (base64), and text as it
    /// is. `None` when the parameter is absent or `null`.
    pub fn data(&self, i: usize, name: &str) -> Result<Option<Vec<u8>>, String> {
        let value = self.param(i, name);
        let is_bytes = self
            .get_named(&format!("{name}_bytes"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        match value {
            Value::Null => Ok(None),
            Value::String(s) if is_bytes => crate::core::bytes::decode(s)
                .map(Some)
                .map_err(|e| format!("`{name}` is {e}")),
            Value::String(s) => Ok(Some(s.as_bytes().to_vec())),
            other => Ok(Some(crate::core::ops::display(other).into_bytes())),
        }
    }
}

/// `retry N backoff MIN..MAX timeout D` of a step statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepOptions {
    /// Retries after the first attempt (so `retry 5` makes up to 6 attempts).
    pub retry: u32,
    /// Delay before the first retry.
    pub backoff_min: Duration,
    /// Cap of the exponentially growing delay.
    pub backoff_max: Duration,
    /// Limit of one attempt; `None` means [`DEFAULT_ATTEMPT_TIMEOUT`].
    pub timeout: Option<Duration>,
}

/// Attempt timeout when a step has no `timeout`.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);

impl Default for StepOptions {
    /// `retry 3 backoff 1s..1m`, attempt timeout 60 s.
    fn default() -> Self {
        StepOptions {
            retry: 3,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            timeout: None,
        }
    }
}

impl StepOptions {
    /// The delay before retry number `retry` (1-based): `min * 2^(retry-1)`
    /// capped at `max`, then a random point in its upper half (jitter).
    pub fn backoff(&self, retry: u32) -> Duration {
        let base = self
            .backoff_min
            .saturating_mul(2u32.saturating_pow(retry.saturating_sub(1)))
            .min(self.backoff_max.max(self.backoff_min));
        let half = base / 2;
        let extra_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(rand::rng().random_range(0..=extra_ms))
    }
}

/// Longest text of a step's input kept in its journal entry ([`Args::shown`]).
pub const SHOWN_TEXT: usize = 1024;

/// `value` with every text longer than [`SHOWN_TEXT`] bytes cut there and
/// marked with how long it was.
fn cut_texts(value: &Value) -> Value {
    match value {
        Value::String(s) if s.len() > SHOWN_TEXT => {
            let mut end = SHOWN_TEXT;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            Value::String(format!("{}… ({} bytes in all)", &s[..end], s.len()))
        }
        Value::Array(items) => Value::Array(items.iter().map(cut_texts).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), cut_texts(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The longest `Retry-After` a step waits before its next attempt; a
/// longer one is cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// One attempt of a stdlib step, as handed to its implementation.
#[derive(Clone)]
pub struct StepCall {
    /// The run's context.
    pub cx: Ctx,
    /// The step's identity (`adjust[1]`).
    pub step: String,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// The arguments.
    pub args: Args,
    /// The span of this attempt, when spans are exported; `None`: the
    /// run's span stands for it. The parent named by the `traceparent` of
    /// its outgoing requests.
    pub span: Option<SpanId>,
}

impl StepCall {
    /// The `traceparent` this attempt sends on outgoing requests.
    pub fn traceparent(&self) -> TraceParent {
        let trace = self.cx.run.trace();
        trace.traceparent(self.span.unwrap_or(trace.run_span))
    }
}

/// Where a run's journal entries go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Journaling {
    /// Only in memory (a sync run that has not fallen back to async).
    Memory,
    /// Written to the store before the step's result is used.
    Durable,
    /// The run has ended and its outcome is settled.
    Ended,
}

/// The journal of one run, shared by its body and its `on failure` block:
/// the entries so far and whether they are written to the store. A sync run
/// starts in [`Journaling::Memory`]; [`crate::engine::SyncRun::persist`]
/// writes the execution and the entries so far and switches to
/// [`Journaling::Durable`] under the write lock, so no entry is missed.
///
/// `lease` is what durable writes pass to the store (the fencing token);
/// once the store refuses it, or its renewal fails, the journal is marked
/// *lost*: the run stops at once, without `on failure` and without
/// recording an outcome (another worker owns the run now).
#[derive(Clone)]
pub(crate) struct RunJournal(Arc<JournalInner>);

/// The shared part of a [`RunJournal`] (one allocation per run).
pub(crate) struct JournalInner {
    /// By step identity (FNV: identities are the program's step names and
    /// loop indices).
    pub(crate) entries: Mutex<crate::core::fnv::FnvHashMap<String, StepRecord>>,
    /// Durable entries not yet written: see [`Ctx::flush_journal`].
    unwritten: Mutex<Vec<StepRecord>>,
    pub(crate) mode: tokio::sync::RwLock<Journaling>,
    pub(crate) lease: Lease,
    lost: AtomicBool,
    lost_notify: tokio::sync::Notify,
}

impl std::ops::Deref for RunJournal {
    type Target = JournalInner;

    fn deref(&self) -> &JournalInner {
        &self.0
    }
}

impl RunJournal {
    pub(crate) fn new(entries: Vec<StepRecord>, mode: Journaling, lease: Lease) -> RunJournal {
        RunJournal(Arc::new(JournalInner {
            entries: Mutex::new(entries.into_iter().map(|r| (r.key.clone(), r)).collect()),
            unwritten: Mutex::new(Vec::new()),
            mode: tokio::sync::RwLock::new(mode),
            lease,
            lost: AtomicBool::new(false),
            lost_notify: tokio::sync::Notify::new(),
        }))
    }

    /// Marks the lease as lost (see the type's docs).
    pub(crate) fn lose_lease(&self) {
        self.lost.store(true, Ordering::SeqCst);
        self.lost_notify.notify_one();
    }

    /// Whether the lease was lost.
    pub(crate) fn lease_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Resolves once the lease is lost.
    pub(crate) async fn lost(&self) {
        while !self.lease_lost() {
            self.lost_notify.notified().await;
        }
    }

    /// Takes the durable entries not written yet, in the order they were
    /// recorded (to write them, with the run's end or before its next
    /// side effect).
    pub(crate) fn take_unwritten(&self) -> Vec<StepRecord> {
        std::mem::take(&mut *lock(&self.unwritten))
    }

    /// The entries, in the order their steps started.
    pub(crate) fn snapshot(&self) -> Vec<StepRecord> {
        let mut all: Vec<StepRecord> = lock(&self.entries).values().cloned().collect();
        all.sort_by_key(|r| r.started_at);
        all
    }
}

/// Which run (and flow) a context or a line is about, and whether the
/// run's lines are inside its spans (see `run_event!`).
pub(crate) struct RunIds<'a> {
    pub(crate) spanned: bool,
    pub(crate) execution_id: &'a str,
    pub(crate) flow: &'static str,
    /// The run's trace (its id is in every line of the run).
    pub(crate) trace: TraceSeed,
    /// When the run is stopped wherever it is, if it is (see
    /// [`RunState::deadline`]).
    pub(crate) deadline: Option<tokio::time::Instant>,
}

impl RunIds<'_> {
    pub(crate) fn trace_id(&self) -> TraceId {
        self.trace.trace(self.execution_id).trace_id
    }
}

pub(crate) struct RunState {
    pub(crate) services: Arc<dyn RunServices>,
    pub(crate) execution_id: String,
    pub(crate) flow: &'static str,
    /// Shared with the engine (a sync run's trigger is never copied).
    pub(crate) trigger: Arc<Value>,
    pub(crate) error: Value,
    pub(crate) journal: RunJournal,
    pub(crate) state: Mutex<Map<String, Value>>,
    dispatches: Mutex<HashMap<String, usize>>,
    /// Whether the run's lines are inside `run` and `step` spans; a sync
    /// run has none (see [`run_event!`]).
    pub(crate) spanned: bool,
    /// What the run's trace is made from: computed when needed (an
    /// outgoing call, a line, an exported span), not for every run.
    pub(crate) trace: TraceSeed,
    /// When the run is stopped wherever it is: a sync run without
    /// `fallback: async` at its `timeout` ([`crate::engine::SyncRun`]). A
    /// step attempt that this stops first needs no timer of its own.
    pub(crate) deadline: Option<tokio::time::Instant>,
}

impl RunState {
    /// The run's trace: the parent of its attempt spans and the id sent in
    /// outgoing `traceparent` headers.
    pub(crate) fn trace(&self) -> RunTrace {
        self.trace.trace(&self.execution_id)
    }

    pub(crate) fn trace_id(&self) -> TraceId {
        self.trace().trace_id
    }
}

/// The context of one run. Cheap to clone (an `Arc` and the loop indices).
#[derive(Clone)]
pub struct Ctx {
    pub(crate) run: Arc<RunState>,
    indices: Arc<[usize]>,
}

impl Ctx {
    pub(crate) fn new(
        services: Arc<dyn RunServices>,
        ids: &RunIds<'_>,
        trigger: Arc<Value>,
        error: Value,
        journal: RunJournal,
        state: Map<String, Value>,
    ) -> Ctx {
        Ctx {
            run: Arc::new(RunState {
                services,
                execution_id: ids.execution_id.to_string(),
                flow: ids.flow,
                trigger,
                error,
                journal,
                state: Mutex::new(state),
                dispatches: Mutex::new(HashMap::new()),
                spanned: ids.spanned,
                trace: ids.trace,
                deadline: ids.deadline,
            }),
            indices: Arc::from(Vec::new()),
        }
    }

    /// The `config` object.
    pub fn config(&self) -> &Value {
        self.run.services.config()
    }

    /// The `trigger` value.
    pub fn trigger(&self) -> &Value {
        &self.run.trigger
    }

    /// The `error` value inside `on failure` (`{ message, step,
    /// execution_id }`); `null` elsewhere.
    pub fn error(&self) -> &Value {
        &self.run.error
    }

    /// This execution's id.
    pub fn execution_id(&self) -> &str {
        &self.run.execution_id
    }

    /// The run's trace context.
    pub fn trace(&self) -> RunTrace {
        self.run.trace()
    }

    /// The running flow's name.
    pub fn flow(&self) -> &'static str {
        self.run.flow
    }

    /// What the engine running this run offers its steps.
    pub fn services(&self) -> &dyn RunServices {
        &*self.run.services
    }

    /// The `env` value: `{ version }`.
    pub fn env(&self) -> Value {
        crate::core::ops::record([("version", Value::String(self.run.services.version()))])
    }

    /// The context for iteration `i` of a loop: steps inside get `[i]`
    /// appended to their identity (nested loops stack).
    pub fn with_index(&self, i: usize) -> Ctx {
        let mut indices = self.indices.to_vec();
        indices.push(i);
        Ctx {
            run: self.run.clone(),
            indices: Arc::from(indices),
        }
    }

    /// The identity of step `name` in this context (`adjust[1]`).
    pub fn step_key(&self, name: &str) -> String {
        let mut key = name.to_string();
        for i in self.indices.iter() {
            key.push_str(&format!("[{i}]"));
        }
        key
    }

    /// Whether this is a sync run still held in memory (its routine lines
    /// go out at `debug`: see `routine!`).
    fn held_in_memory(&self) -> bool {
        matches!(
            self.run.journal.mode.try_read().as_deref(),
            Ok(Journaling::Memory)
        )
    }

    fn recorded(&self, key: &str) -> Option<Value> {
        let journal = lock(&self.run.journal.entries);
        journal
            .get(key)
            .filter(|r| r.status == StepStatus::Succeeded)
            .map(|r| r.output.clone().unwrap_or(Value::Null))
    }

    /// Journals a step's end. A durable entry is written behind: with the
    /// next side effect's [`Ctx::flush_journal`] or with the run's end
    /// (one store transaction for the last step and the finish). Nothing
    /// outside the process can tell the difference: until a later side
    /// effect starts or the run ends, a crash repeats the step either way
    /// (its effect happened before its entry could be committed).
    async fn record(&self, record: StepRecord) -> Result<(), RunError> {
        let redactor = self.run.services.redactor();
        let record = StepRecord {
            error: record.error.map(|e| redactor.redact_string(e)),
            ..record
        };
        // Held while the entry goes in, so a concurrent switch to durable
        // journaling either sees this entry or makes us write it.
        let mode = self.run.journal.mode.read().await;
        if *mode == Journaling::Durable {
            lock(&self.run.journal.unwritten).push(record.clone());
        }
        lock(&self.run.journal.entries).insert(record.key.clone(), record);
        Ok(())
    }

    /// Writes the journal entries recorded since the last write: called
    /// before anything leaves the process (a step with effects, a
    /// dispatch), so a crash after that never repeats a finished step.
    async fn flush_journal(&self) -> Result<(), RunError> {
        let journal = &self.run.journal;
        let mode = journal.mode.read().await;
        if *mode != Journaling::Durable {
            return Ok(());
        }
        let store = self.run.services.store();
        for record in journal.take_unwritten() {
            let written = store
                .record_step(&self.run.execution_id, &journal.lease, record)
                .await;
            if written.as_ref().is_err_and(|e| e.is_lease_lost()) {
                journal.lose_lease();
            }
            written.map_err(|e| RunError::new(e.to_string()))?;
        }
        drop(mode);
        Ok(())
    }

    /// Runs `step NAME = CALL(args) retry.. backoff.. timeout..`: calls the
    /// stdlib component `call` (qualified name such as `http.post`), retries
    /// retryable failures with exponential backoff and jitter, journals the
    /// result, and returns a recorded result instead when this step already
    /// finished in an earlier attempt of the run.
    pub async fn step(
        &self,
        name: &str,
        opts: StepOptions,
        call: &str,
        args: Args,
    ) -> Result<Value, RunError> {
        let key = self.step_key(name);
        if !self.run.spanned {
            return self.step_inner(name, key, opts, call, args).await;
        }
        let span = tracing::info_span!("step", step = %key);
        self.step_inner(name, key, opts, call, args)
            .instrument(span)
            .await
    }

    async fn step_inner(
        &self,
        name: &str,
        key: String,
        opts: StepOptions,
        call: &str,
        mut args: Args,
    ) -> Result<Value, RunError> {
        if let Some(v) = self.recorded(&key) {
            tracing::debug!(call, "reusing the recorded result");
            return Ok(v);
        }
        let services = &self.run.services;
        let redactor = services.redactor();
        let started_at = Utc::now();
        // Kept with the entry for the executions page, secrets masked; not
        // for a sync run held in memory, whose entries are seldom stored
        // (the relay benchmark's path stays as it was).
        let input = (!self.held_in_memory()).then(|| redactor.redact_value(&args.shown()));
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let t0 = Instant::now();
            // A span of its own only when exported: otherwise outgoing
            // requests name the run's span, and nothing is spent here.
            let span = crate::core::otel::enabled().then(SpanId::random);
            let attempt_start = span.map(|_| std::time::SystemTime::now());
            // An attempt that the run's deadline ends first is not timed:
            // its timer would be registered and cancelled for nothing (the
            // relay's sync run has a 10 s `timeout`, its step 60 s).
            let limit =
                services
                    .steps()
                    .attempt_limit(call, opts.timeout)
                    .filter(|limit| match self.run.deadline {
                        None => true,
                        // On tokio's clock, as the timers are (paused in tests).
                        Some(end) => tokio::time::Instant::now()
                            .checked_add(*limit)
                            .is_some_and(|at| at <= end),
                    });
            let result = match services.steps().step_fn(call) {
                Some(f) => {
                    self.flush_journal().await?;
                    // The last attempt takes the arguments; earlier ones copy them.
                    let args = if attempt > opts.retry {
                        std::mem::take(&mut args)
                    } else {
                        args.clone()
                    };
                    let step_call = StepCall {
                        cx: self.clone(),
                        step: key.clone(),
                        attempt,
                        args,
                        span,
                    };
                    match limit {
                        None => f(step_call).await,
                        Some(limit) => match tokio::time::timeout(limit, f(step_call)).await {
                            Ok(r) => r,
                            Err(_) => Err(StepError::retryable(format!(
                                "{call} timed out after {}",
                                human_duration(limit)
                            ))),
                        },
                    }
                }
                None => match services.steps().pure_fn(call) {
                    Some(f) => f(&args).map_err(StepError::from),
                    None => Err(StepError::permanent(format!(
                        "unknown stdlib function `{call}`"
                    ))),
                },
            };
            // One clock read for the metric and the line.
            let took = t0.elapsed();
            services.metrics().observe_step(self.run.flow, name, took);
            let result = result.and_then(|output| storable(call, output));
            if let (Some(span), Some(start)) = (span, attempt_start) {
                self.export_attempt(&key, call, attempt, span, start, &result, opts);
            }
            match result {
                Ok(output) => {
                    let elapsed_ms = took.as_millis() as u64;
                    if self.held_in_memory() {
                        // Routine: see `routine!`.
                        tracing::debug!(call, attempt, elapsed_ms, "step succeeded");
                    } else {
                        run_event!(info, self.run, step = %key, call, attempt, elapsed_ms, "step succeeded");
                    }
                    self.record(StepRecord {
                        key,
                        call: call.to_string(),
                        status: StepStatus::Succeeded,
                        attempts: attempt,
                        started_at,
                        finished_at: Utc::now(),
                        input,
                        output: Some(output.clone()),
                        error: None,
                    })
                    .await?;
                    return Ok(output);
                }
                Err(e) => {
                    let message = redactor.redact_string(e.message);
                    if e.retryable && attempt <= opts.retry {
                        // The other side's `Retry-After` replaces the backoff
                        // (bounded: a run does not sleep for days).
                        let delay = match e.retry_after {
                            Some(wait) => wait.min(MAX_RETRY_AFTER),
                            None => opts.backoff(attempt),
                        };
                        run_event!(
                            warn,
                            self.run,
                            step = %key,
                            call,
                            attempt,
                            error = %message,
                            retry_in_ms = delay.as_millis() as u64,
                            "step attempt failed; retrying"
                        );
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    run_event!(warn, self.run, step = %key, call, attempt, error = %message, "step failed");
                    self.record(StepRecord {
                        key: key.clone(),
                        call: call.to_string(),
                        status: StepStatus::Failed,
                        attempts: attempt,
                        started_at,
                        finished_at: Utc::now(),
                        input,
                        output: None,
                        error: Some(message.clone()),
                    })
                    .await?;
                    let message = if attempt > 1 {
                        format!("{message} (after {attempt} attempts)")
                    } else {
                        message
                    };
                    return Err(RunError::in_step(key, message));
                }
            }
        }
    }

    /// Exports the span of one step attempt, its error redacted.
    #[allow(clippy::too_many_arguments)]
    fn export_attempt(
        &self,
        key: &str,
        call: &str,
        attempt: u32,
        span: SpanId,
        start: std::time::SystemTime,
        result: &Result<Value, StepError>,
        opts: StepOptions,
    ) {
        let (outcome, error) = match result {
            Ok(_) => ("succeeded", None),
            Err(e) => {
                let retried = e.retryable && attempt <= opts.retry;
                let message = self
                    .run
                    .services
                    .redactor()
                    .redact_string(e.message.clone());
                (if retried { "retried" } else { "failed" }, Some(message))
            }
        };
        crate::core::otel::export(FinishedSpan {
            name: "step",
            trace: self.run.trace(),
            span_id: span,
            parent: Some(self.run.trace().run_span),
            start,
            end: std::time::SystemTime::now(),
            attributes: vec![
                ("flow.step", AttributeValue::Text(key.to_string())),
                ("flow.call", AttributeValue::Text(call.to_string())),
                ("flow.attempt", AttributeValue::Int(i64::from(attempt))),
                ("flow.outcome", AttributeValue::Text(outcome.into())),
                (
                    "flow.execution_id",
                    AttributeValue::Text(self.run.execution_id.clone()),
                ),
            ],
            error,
        });
    }

    /// `dispatch FLOW(input)`: stores a new execution of the dispatch flow
    /// `flow` with trigger `{ input }` and returns its id. Journaled, so a
    /// replayed run does not dispatch twice.
    pub async fn dispatch(&self, flow: &str, input: Value) -> Result<Value, RunError> {
        let base = format!("dispatch {flow}{}", self.step_key(""));
        let n = {
            let mut counts = lock(&self.run.dispatches);
            let c = counts.entry(base.clone()).or_insert(0);
            *c += 1;
            *c
        };
        let key = format!("{base}#{n}");
        if let Some(v) = self.recorded(&key) {
            return Ok(v);
        }
        let services = &self.run.services;
        let trigger = services
            .trigger_of(flow)
            .ok_or_else(|| RunError::new(format!("dispatch: no flow named `{flow}`")))?;
        let TriggerDef::Dispatch { .. } = trigger else {
            return Err(RunError::new(format!(
                "dispatch: flow `{flow}` does not have a dispatch trigger"
            )));
        };
        let started_at = Utc::now();
        let id = crate::engine::new_execution_id();
        self.flush_journal().await?;
        let enqueued = services
            .store()
            .enqueue(NewExecution {
                id: id.clone(),
                flow: flow.to_string(),
                trigger: crate::core::ops::record([("input", input)]),
                // Makes the dispatch idempotent even if the journal write below is lost.
                dedupe_key: Some(format!("{}/{key}", self.run.execution_id)),
                running: None,
                tick: None,
            })
            .await
            .map_err(|e| RunError::new(e.to_string()))?;
        let id = match enqueued {
            Enqueued::Created => {
                services.wake_workers();
                id
            }
            Enqueued::Duplicate(first) => first,
        };
        run_event!(info, self.run, target_flow = flow, dispatched = %id, "dispatched");
        self.record(StepRecord {
            key,
            call: "dispatch".into(),
            status: StepStatus::Succeeded,
            attempts: 1,
            started_at,
            finished_at: Utc::now(),
            // The input is the dispatched run's trigger, one click away.
            input: None,
            output: Some(Value::String(id.clone())),
            error: None,
        })
        .await?;
        Ok(Value::String(id))
    }

    /// `endpoint(flow)`: config `public_url` joined with the flow's route path.
    pub fn endpoint(&self, flow: &str) -> Result<Value, RunError> {
        self.run.services.endpoint(flow).map(Value::String)
    }

    /// `state.get(key)`: the value set by `state.set`, or `null`. Reads the
    /// state as of the start of this run plus this run's own `state.set`s.
    pub fn state_get(&self, key: &str) -> Result<Value, RunError> {
        Ok(lock(&self.run.state)
            .get(key)
            .cloned()
            .unwrap_or(Value::Null))
    }

    pub(crate) fn state_put(&self, key: &str, value: Value) {
        lock(&self.run.state).insert(key.to_string(), value);
    }
}

/// A step's output as it will be journaled: one nested deeper than the
/// store can read back fails the step (permanently: another attempt gives
/// the same output) instead of leaving a row that breaks the run's replay.
fn storable(call: &str, output: Value) -> Result<Value, StepError> {
    match crate::core::nesting::check_value(&output) {
        Ok(()) => Ok(output),
        Err(too_deep) => Err(StepError::permanent(format!(
            "{call}: the output {too_deep} and cannot be stored"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_input_is_shown_cut_and_without_hints() {
        let long = format!("{}é", "a".repeat(SHOWN_TEXT - 1));
        let args = Args::new()
            .arg(Value::from("https://erp.test/orders"))
            .kw("body", Value::String(long.clone()))
            .kw("body_bytes", Value::Bool(true))
            .kw("json", serde_json::json!({ "items": [long] }));
        let shown = args.shown();
        assert_eq!(
            shown["args"],
            serde_json::json!(["https://erp.test/orders"])
        );
        let cut = format!(
            "{}… ({} bytes in all)",
            "a".repeat(SHOWN_TEXT - 1),
            long.len()
        );
        assert_eq!(
            shown["body"],
            Value::String(cut.clone()),
            "cut at a char boundary"
        );
        assert_eq!(shown["json"]["items"][0], Value::String(cut));
        assert!(shown.get("body_bytes").is_none(), "{shown}");
        assert_eq!(Args::new().shown(), serde_json::json!({}));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let o = StepOptions {
            retry: 5,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_millis(500),
            timeout: None,
        };
        for _ in 0..20 {
            let d1 = o.backoff(1);
            assert!(
                d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100),
                "{d1:?}"
            );
            let d3 = o.backoff(3);
            assert!(
                d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400),
                "{d3:?}"
            );
            let d9 = o.backoff(9);
            assert!(
                d9 >= Duration::from_millis(250) && d9 <= Duration::from_millis(500),
                "{d9:?}"
            );
        }
        assert!(o.backoff(u32::MAX) <= Duration::from_millis(500));
    }

    #[test]
    fn args_builder() {
        let a = Args::new()
            .arg(Value::from("u"))
            .kw("json", Value::from(1))
            .decode_as(Schema::Int);
        assert_eq!(a.get(0), &Value::from("u"));
        assert_eq!(a.get(3), &Value::Null);
        assert_eq!(a.get_named("json"), Some(&Value::from(1)));
        assert_eq!(a.get_named("nope"), None);
        assert_eq!(a.as_schema, Some(Schema::Int));
    }
}
