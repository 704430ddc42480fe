//! `serve --instances`: one binary serves the same integration for many
//! customers. Each instance has its own config (validated like the
//! environment's, sealed in the store with `FLOW_MASTER_KEY`), its own
//! store (executions, dedupe keys, state, connection tokens, rate-limit
//! budgets: [`stores`]), its own runtime (workers, schedules, file
//! sources, subscriptions) and its endpoints under `/i/NAME/`.
//!
//! The records ([`registry`]) live in the integration's own store, so
//! every replica sharing a PostgreSQL store serves every instance: each
//! replica reconciles what it runs with the records every
//! [`RECONCILE_EVERY`]. Changes (create, update, pause, resume, delete)
//! are made by the replica that receives them, which also runs the
//! deploy and remove flows; the others follow.

mod api;
pub mod registry;
pub mod stores;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use chrono::Utc;
use serde_json::{json, Map, Value};

use crate::core::config::{self, Config, ConfigError, EnvSource};
use crate::core::redact::Redactor;
use crate::core::seal::Keyring;
use crate::core::sync::lock;
use crate::engine::integration::Integration;
use crate::engine::{Runtime, RuntimeOptions, StartError};
use crate::host::Background;
use crate::store::{Execution, Store};
use crate::triggers::http::callback::{CallbackSettings, Callbacks};
use crate::triggers::http::IntakeLimits;

pub use api::serve;
use registry::Record;
pub use stores::InstanceStores;

/// How often each replica compares the instances it runs with the records.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(2);

/// How often deleted instances' stores past the failed-runs retention are
/// removed (also once at start).
pub const PURGE_RETIRED_EVERY: Duration = Duration::from_secs(3600);

/// How every instance's runtime is set up (from `serve`'s flags).
pub struct InstanceSettings {
    /// Where instances keep their stores.
    pub stores: InstanceStores,
    /// Worker pool of each instance.
    pub workers: usize,
    /// How long stopping an instance waits for its runs.
    pub drain_timeout: Duration,
    /// Lease of a running execution.
    pub lease: Duration,
    /// Retention of succeeded and skipped runs.
    pub retention: Option<Duration>,
    /// Retention of failed runs.
    pub failed_retention: Option<Duration>,
    /// Schedule catch-up window.
    pub catch_up_window: Duration,
    /// `FLOW_ADMIN_TOKEN`: the instances API and each instance's admin API.
    pub admin_token: Option<String>,
    /// Limits of each instance's routes.
    pub intake: IntakeLimits,
    /// `X-Callback-Url` settings, shared by the instances.
    pub callbacks: Option<CallbackSettings>,
    /// The log writer's redactor: every instance's secrets are added to it.
    pub redactor: Redactor,
    /// The master key (and the previous one during a rotation).
    pub keys: Keyring,
}

/// Why a change to an instance was refused or failed; the API's answer.
#[derive(Debug)]
pub struct Refusal {
    /// The HTTP status.
    pub status: u16,
    /// What went wrong (no secret: config problems are redacted).
    pub message: String,
    /// Config problems, one per entry (422).
    pub problems: Vec<String>,
}

impl Refusal {
    pub(crate) fn new(status: u16, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
            problems: Vec::new(),
        }
    }

    fn not_found(name: &str) -> Refusal {
        Refusal::new(404, format!("no instance named {name:?}"))
    }

    fn config(e: ConfigError) -> Refusal {
        Refusal {
            status: 422,
            message: e.to_string(),
            problems: e.problems,
        }
    }

    fn store(e: impl std::fmt::Display) -> Refusal {
        tracing::error!(error = %e, "instances: store failed");
        Refusal::new(503, "the store is unavailable; try again")
    }
}

/// The instances this process serves. Cheap to clone.
#[derive(Clone)]
pub struct Instances {
    shared: Arc<Shared>,
}

struct Shared {
    integration: Integration,
    settings: InstanceSettings,
    /// The integration's runtime without flows: its store holds the
    /// records, its shutdown stops everything, its routes serve `/_flow/`.
    control: Runtime,
    /// What each known instance is doing, read by every request to `/i/`.
    live: Mutex<HashMap<String, Slot>>,
    /// Each instance's store, opened once for the process's life (a
    /// SQLite file is locked by the process that opens it).
    opened: Mutex<HashMap<String, Arc<dyn Store>>>,
    /// One change at a time (API calls and reconciling).
    changes: tokio::sync::Mutex<()>,
}

#[derive(Clone)]
enum Slot {
    Running(Arc<Running>),
    Paused,
}

/// An instance being served.
struct Running {
    rt: Runtime,
    router: Router,
    /// The record's sealed config it runs with (a change restarts it).
    sealed: String,
    background: Mutex<Option<Background>>,
}

/// Where a request to `/i/NAME/…` goes.
pub(crate) enum Route {
    /// The instance's own router.
    To(Router),
    /// Paused: 503.
    Paused,
    /// No such instance: 404.
    Unknown,
}

/// One instance as the API shows it.
pub struct View {
    /// Its JSON: name, paused, times, config with secrets masked, endpoints.
    pub json: Value,
}

impl Instances {
    /// The instances of `integration`, their records kept in `control`'s store.
    pub fn new(
        integration: Integration,
        control: Runtime,
        settings: InstanceSettings,
    ) -> Instances {
        Instances {
            shared: Arc::new(Shared {
                integration,
                settings,
                control,
                live: Mutex::new(HashMap::new()),
                opened: Mutex::new(HashMap::new()),
                changes: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The control runtime.
    pub fn control(&self) -> &Runtime {
        &self.shared.control
    }

    /// The metrics of the process's own routes and of every running
    /// instance, each instance's labelled with its name.
    pub fn metrics_text(&self) -> String {
        let running: Vec<(String, Runtime)> = lock(&self.shared.live)
            .iter()
            .filter_map(|(n, s)| match s {
                Slot::Running(r) => Some((n.clone(), r.rt.clone())),
                Slot::Paused => None,
            })
            .collect();
        let parts: Vec<(&str, &crate::core::metrics::Metrics)> = running
            .iter()
            .map(|(n, rt)| (n.as_str(), rt.metrics()))
            .collect();
        crate::core::metrics::Metrics::render_instances(self.shared.control.metrics(), &parts)
    }

    pub(crate) fn route(&self, name: &str) -> Route {
        match lock(&self.shared.live).get(name) {
            Some(Slot::Running(r)) => Route::To(r.router.clone()),
            Some(Slot::Paused) => Route::Paused,
            None => Route::Unknown,
        }
    }

    fn store(&self) -> &dyn Store {
        self.shared.control.store().as_ref()
    }

    async fn record(&self, name: &str) -> Result<Option<Record>, Refusal> {
        let all = registry::all(self.store()).await.map_err(Refusal::store)?;
        Ok(all.into_iter().find(|(n, _)| n == name).map(|(_, r)| r))
    }

    fn open_config(&self, name: &str, record: &Record) -> Result<Map<String, Value>, Refusal> {
        registry::open(&self.shared.settings.keys, name, &record.sealed_config)
            .map(|(config, _)| config)
            .map_err(|e| {
                tracing::error!(instance = %name, error = %e, "cannot open the instance's config");
                Refusal::new(
                    500,
                    format!(
                        "the config of instance {name:?} cannot be opened with {}",
                        crate::core::seal::MASTER_KEY_VAR
                    ),
                )
            })
    }

    /// Every instance, by name.
    pub async fn list(&self) -> Result<Vec<View>, Refusal> {
        let all = registry::all(self.store()).await.map_err(Refusal::store)?;
        let mut out = Vec::new();
        for (name, record) in all {
            // One record the key does not open must not hide the others.
            out.push(match self.open_config(&name, &record) {
                Ok(config) => self.view(&name, &record, config),
                Err(refusal) => View {
                    json: json!({ "name": name, "paused": record.paused, "error": refusal.message }),
                },
            });
        }
        Ok(out)
    }

    /// One instance.
    pub async fn get(&self, name: &str) -> Result<View, Refusal> {
        let record = self
            .record(name)
            .await?
            .ok_or_else(|| Refusal::not_found(name))?;
        let config = self.open_config(name, &record)?;
        Ok(self.view(name, &record, config))
    }

    /// Creates or updates an instance; `true` when created. A new instance
    /// runs its deploy flows before the answer; an update of a running
    /// instance runs the remove flows with the old config, restarts it
    /// with the new one and runs the deploy flows again (its webhooks may
    /// now belong elsewhere).
    pub async fn put(
        &self,
        name: &str,
        config: Map<String, Value>,
    ) -> Result<(bool, View), Refusal> {
        if !registry::valid_name(name) {
            return Err(Refusal::new(
                400,
                format!("invalid instance name {name:?}: use lowercase letters, digits and dashes (at most 40), starting with a letter or digit"),
            ));
        }
        // Checked before anything is created or stopped.
        config::load_values(&self.shared.integration.config, config.clone())
            .map_err(Refusal::config)?;
        let _one = self.shared.changes.lock().await;
        let existing = self.record(name).await?;
        let sealed = registry::seal(&self.shared.settings.keys, name, &config)
            .map_err(|e| Refusal::new(500, format!("cannot seal the config: {e}")))?;
        let now = Utc::now();
        let record = Record {
            sealed_config: sealed,
            paused: existing.as_ref().is_some_and(|r| r.paused),
            created_at: existing.as_ref().map_or(now, |r| r.created_at),
            updated_at: now,
        };
        // Built (and so checked, caller secrets too) before anything stops.
        let rt = self.runtime(name, config.clone()).await?;
        if !record.paused {
            if let Some(Slot::Running(old)) = self.slot(name) {
                if let Err(e) = old.rt.undeploy().await {
                    return Err(self.flows_failed(&old.rt, "remove", e));
                }
                self.stop(name, old).await;
                // Until the new config runs; if it cannot, the next
                // reconcile starts the old one again (and redeploys it).
                lock(&self.shared.live).remove(name);
            }
            let running = self.start(name, rt, &record.sealed_config).await?;
            if let Err(e) = running.rt.deploy().await {
                let refusal = self.flows_failed(&running.rt, "deploy", e);
                self.stop(name, running).await;
                return Err(refusal);
            }
            lock(&self.shared.live).insert(name.to_string(), Slot::Running(running));
        }
        registry::save(self.store(), name, &record)
            .await
            .map_err(Refusal::store)?;
        if record.paused {
            lock(&self.shared.live).insert(name.to_string(), Slot::Paused);
        }
        tracing::info!(instance = %name, created = existing.is_none(), "instance saved");
        Ok((existing.is_none(), self.view(name, &record, config)))
    }

    /// Pauses (`true`) or resumes an instance.
    pub async fn set_paused(&self, name: &str, paused: bool) -> Result<View, Refusal> {
        let _one = self.shared.changes.lock().await;
        let mut record = self
            .record(name)
            .await?
            .ok_or_else(|| Refusal::not_found(name))?;
        let config = self.open_config(name, &record)?;
        if record.paused != paused {
            record.paused = paused;
            record.updated_at = Utc::now();
            registry::save(self.store(), name, &record)
                .await
                .map_err(Refusal::store)?;
        }
        self.apply(name, &record, config.clone()).await?;
        tracing::info!(instance = %name, paused, "instance {}", if paused { "paused" } else { "resumed" });
        Ok(self.view(name, &record, config))
    }

    /// Deletes an instance: runs its remove flows (against its own config),
    /// stops it, removes its record and puts its store aside. The remove
    /// flows' runs are returned; if one fails, nothing is deleted.
    pub async fn delete(&self, name: &str) -> Result<Vec<Execution>, Refusal> {
        let _one = self.shared.changes.lock().await;
        let record = self
            .record(name)
            .await?
            .ok_or_else(|| Refusal::not_found(name))?;
        let config = self.open_config(name, &record)?;
        let running = match self.slot(name) {
            Some(Slot::Running(r)) => Some(r),
            _ => None,
        };
        let rt = match &running {
            Some(r) => r.rt.clone(),
            None => {
                let rt = self.runtime(name, config).await?;
                rt.set_local_url(self.local_url());
                rt
            }
        };
        let removed = rt
            .undeploy()
            .await
            .map_err(|e| self.flows_failed(&rt, "remove", e))?;
        if let Some(r) = running {
            self.stop(name, r).await;
        }
        registry::remove(self.store(), name)
            .await
            .map_err(Refusal::store)?;
        lock(&self.shared.live).remove(name);
        lock(&self.shared.opened).remove(name);
        if let Err(e) = self.shared.settings.stores.retire(name).await {
            tracing::error!(instance = %name, error = %e.message(), "cannot put the deleted instance's store aside");
        }
        tracing::info!(instance = %name, "instance deleted");
        Ok(removed)
    }

    /// Removes the stores of instances deleted longer ago than the failed
    /// runs' retention (`--failed-retention`; kept forever when it is 0).
    pub async fn purge_retired(&self) {
        let Some(retention) = self.shared.settings.failed_retention else {
            return;
        };
        let before =
            Utc::now().timestamp() - i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
        match self.shared.settings.stores.purge_retired(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(stores = n, "deleted instances' stores removed (retention)"),
            Err(e) => {
                tracing::warn!(error = %e.message(), "cannot remove deleted instances' stores")
            }
        }
    }

    /// Brings what this process runs in line with the records: starts new
    /// and resumed instances, restarts changed ones, stops paused and
    /// deleted ones; seals again a config sealed with the previous key.
    pub async fn reconcile(&self) {
        let _one = self.shared.changes.lock().await;
        let all = match registry::all(self.store()).await {
            Ok(all) => all,
            Err(e) => {
                tracing::warn!(error = %e.message(), "instances: cannot read the records");
                return;
            }
        };
        for (name, mut record) in all.iter().cloned() {
            let (config, old_key) = match registry::open(
                &self.shared.settings.keys,
                &name,
                &record.sealed_config,
            ) {
                Ok(opened) => opened,
                Err(e) => {
                    tracing::error!(instance = %name, error = %e, "cannot open the instance's config; not served");
                    continue;
                }
            };
            if old_key {
                match registry::seal(&self.shared.settings.keys, &name, &config) {
                    Ok(sealed) => {
                        record.sealed_config = sealed;
                        if let Err(e) = registry::save(self.store(), &name, &record).await {
                            tracing::warn!(instance = %name, error = %e.message(), "cannot seal the config again");
                        }
                    }
                    Err(e) => {
                        tracing::error!(instance = %name, error = %e, "cannot seal the config again")
                    }
                }
            }
            if let Err(e) = self.apply(&name, &record, config).await {
                tracing::error!(instance = %name, error = %e.message, problems = ?e.problems, "instance not started");
            }
        }
        let gone: Vec<(String, Slot)> = {
            let live = lock(&self.shared.live);
            live.iter()
                .filter(|(n, _)| !all.iter().any(|(m, _)| m == *n))
                .map(|(n, s)| (n.clone(), s.clone()))
                .collect()
        };
        for (name, slot) in gone {
            lock(&self.shared.live).remove(&name);
            if let Slot::Running(r) = slot {
                self.stop(&name, r).await;
            }
            lock(&self.shared.opened).remove(&name);
            tracing::info!(instance = %name, "instance deleted by another replica; stopped");
        }
    }

    /// Runs or stops `name` as its record says (a running instance whose
    /// config changed elsewhere is restarted; the replica that changed it
    /// ran its flows).
    async fn apply(
        &self,
        name: &str,
        record: &Record,
        config: Map<String, Value>,
    ) -> Result<(), Refusal> {
        let slot = self.slot(name);
        if record.paused {
            lock(&self.shared.live).insert(name.to_string(), Slot::Paused);
            if let Some(Slot::Running(r)) = slot {
                self.stop(name, r).await;
            }
            return Ok(());
        }
        if let Some(Slot::Running(r)) = &slot {
            if r.sealed == record.sealed_config {
                return Ok(());
            }
            self.stop(name, r.clone()).await;
        }
        let rt = self.runtime(name, config).await?;
        let running = self.start(name, rt, &record.sealed_config).await?;
        // The deploy flows of a version not yet deployed for this instance
        // (normally run by the replica that created it).
        let rt = running.rt.clone();
        tokio::spawn(async move {
            if let Err(e) = rt.deploy_if_new().await {
                tracing::error!(error = %rt.redactor().redact(&e.to_string()), "deploy flows failed");
            }
        });
        lock(&self.shared.live).insert(name.to_string(), Slot::Running(running));
        Ok(())
    }

    fn slot(&self, name: &str) -> Option<Slot> {
        lock(&self.shared.live).get(name).cloned()
    }

    fn local_url(&self) -> String {
        lock(&self.shared.control.inner.local_url)
            .clone()
            .unwrap_or_default()
    }

    /// The instance's store, opened once.
    async fn instance_store(&self, name: &str) -> Result<Arc<dyn Store>, Refusal> {
        if let Some(s) = lock(&self.shared.opened).get(name) {
            return Ok(s.clone());
        }
        let store = self.shared.settings.stores.open(name).await.map_err(|e| {
            tracing::error!(instance = %name, error = %e.message(), "cannot open the instance's store");
            Refusal::new(503, format!("cannot open the store of instance {name:?}"))
        })?;
        lock(&self.shared.opened).insert(name.to_string(), store.clone());
        Ok(store)
    }

    /// The instance's runtime, not started.
    async fn runtime(&self, name: &str, config: Map<String, Value>) -> Result<Runtime, Refusal> {
        let s = &self.shared.settings;
        let options = RuntimeOptions {
            env: EnvSource::Map(HashMap::new()),
            config_file: None,
            config_values: Some(config),
            instance: Some(name.to_string()),
            store: Some(self.instance_store(name).await?),
            workers: s.workers,
            drain_timeout: s.drain_timeout,
            lease: s.lease,
            retention: s.retention,
            failed_retention: s.failed_retention,
            redactor: s.redactor.clone(),
            steps: crate::host::step_registry(),
        };
        Runtime::new(self.shared.integration.clone(), options).map_err(|e| match e {
            StartError::Config(c) => Refusal::config(c),
            StartError::Other(m) => Refusal::new(500, m),
        })
    }

    /// Starts the instance's runtime: its routes, workers and triggers
    /// (not its deploy flows).
    async fn start(&self, name: &str, rt: Runtime, sealed: &str) -> Result<Arc<Running>, Refusal> {
        let s = &self.shared.settings;
        rt.set_local_url(self.local_url());
        let callbacks = match &s.callbacks {
            Some(c) => Some(Callbacks::new(c.clone()).map_err(|e| Refusal::new(500, e))?),
            None => None,
        };
        let router = crate::triggers::http::router(
            &rt,
            s.admin_token.as_deref(),
            &s.intake,
            callbacks.clone(),
        );
        let background = crate::host::start_without_deploy(&rt, s.catch_up_window, callbacks)
            .await
            .map_err(|e| {
                tracing::error!(instance = %name, error = %e, "cannot start the instance");
                Refusal::new(503, format!("cannot start instance {name:?}"))
            })?;
        tracing::info!(instance = %name, "instance started");
        Ok(Arc::new(Running {
            rt,
            router,
            sealed: sealed.to_string(),
            background: Mutex::new(Some(background)),
        }))
    }

    /// Stops a running instance: nothing new starts, its runs get the drain
    /// timeout, those still going stay queued in its store.
    async fn stop(&self, name: &str, running: Arc<Running>) {
        running.rt.begin_shutdown();
        let background = lock(&running.background).take();
        if let Some(b) = background {
            let deadline = tokio::time::Instant::now() + running.rt.drain_timeout();
            b.drain(&running.rt, deadline).await;
        }
        tracing::info!(instance = %name, "instance stopped");
    }

    /// Stops every running instance (at shutdown), at once.
    pub async fn stop_all(&self) {
        let running: Vec<(String, Arc<Running>)> = lock(&self.shared.live)
            .drain()
            .filter_map(|(n, s)| match s {
                Slot::Running(r) => Some((n, r)),
                Slot::Paused => None,
            })
            .collect();
        futures::future::join_all(
            running
                .into_iter()
                .map(|(n, r)| async move { self.stop(&n, r).await }),
        )
        .await;
    }

    fn flows_failed(&self, rt: &Runtime, kind: &str, e: crate::core::error::RunError) -> Refusal {
        let message = rt.redactor().redact(&e.to_string()).into_owned();
        tracing::warn!(instance = ?rt.instance(), error = %message, "{kind} flows failed");
        Refusal::new(502, message)
    }

    fn view(&self, name: &str, record: &Record, values: Map<String, Value>) -> View {
        let integration = &self.shared.integration;
        let loaded: Option<Config> = config::load_values(&integration.config, values).ok();
        let mut shown = Map::new();
        let mut endpoints = Map::new();
        if let Some(config) = &loaded {
            for entry in &integration.config {
                let v = config.get(entry.name);
                let v = if entry.is_secret() && !v.is_null() {
                    json!("***")
                } else {
                    v.clone()
                };
                shown.insert(entry.name.to_string(), v);
            }
            let base = config
                .get("public_url")
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| self.local_url());
            for def in (integration.flows)(config) {
                if let Some((_, path)) = def.trigger.route() {
                    endpoints.insert(
                        def.name.to_string(),
                        json!(format!("{}/i/{name}{path}", base.trim_end_matches('/'))),
                    );
                }
            }
        }
        View {
            json: json!({
                "name": name,
                "paused": record.paused,
                "created_at": crate::core::ops::format_time(record.created_at),
                "updated_at": crate::core::ops::format_time(record.updated_at),
                "config": shown,
                "endpoints": endpoints,
            }),
        }
    }
}
