//! The process supervisor: binds the address, puts runs interrupted by an
//! earlier stop back in the queue, starts the worker pool, every trigger
//! kind, the retention purge and (for a new version) the deploy flows, and
//! drains them all at shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::engine::registry::StepRegistry;
use crate::engine::Runtime;
use crate::triggers::http::callback::{self, CallbackSettings, Callbacks};
pub use crate::triggers::http::IntakeLimits;

/// Every step this binary can run: the standard library and the publish
/// steps of the brokers it was built with.
pub fn step_registry() -> StepRegistry {
    let mut registry = StepRegistry::new();
    crate::steps::register(&mut registry);
    crate::brokers::register(&mut registry);
    registry
}

/// A running server. Dropping it does not stop the server; call
/// [`ServerHandle::shutdown`].
pub struct ServerHandle {
    addr: SocketAddr,
    rt: Runtime,
    task: JoinHandle<()>,
}

impl ServerHandle {
    pub(crate) fn new(addr: SocketAddr, rt: Runtime, task: JoinHandle<()>) -> ServerHandle {
        ServerHandle { addr, rt, task }
    }

    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The runtime being served.
    pub fn runtime(&self) -> &Runtime {
        &self.rt
    }

    /// Stops accepting requests, drains in-flight runs (up to the drain
    /// timeout) and returns when everything has stopped.
    pub async fn shutdown(self) {
        self.rt.begin_shutdown();
        self.wait().await;
    }

    /// Waits until the server has stopped (after [`Runtime::begin_shutdown`]).
    pub async fn wait(self) {
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "server task failed");
        }
    }
}

/// What serving takes beyond the runtime: where to listen, and the
/// settings of the adapters it starts.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The address to bind (port 0 picks a free one).
    pub addr: SocketAddr,
    /// `FLOW_ADMIN_TOKEN`; `None` disables the protected admin endpoints (403).
    pub admin_token: Option<String>,
    /// A missed schedule tick older than this is not caught up at start-up.
    pub catch_up_window: Duration,
    /// Timeouts and caps of the HTTP intake.
    pub intake: IntakeLimits,
    /// `X-Callback-Url` settings; `None` (the default): callbacks are off.
    pub callbacks: Option<CallbackSettings>,
}

/// Default of [`ServeOptions::catch_up_window`]: one day.
pub const DEFAULT_CATCH_UP_WINDOW: Duration = Duration::from_secs(24 * 3600);

impl ServeOptions {
    /// Serving on `addr` without an admin token, with the default catch-up
    /// window and intake limits.
    pub fn new(addr: SocketAddr) -> ServeOptions {
        ServeOptions {
            addr,
            admin_token: None,
            catch_up_window: DEFAULT_CATCH_UP_WINDOW,
            intake: IntakeLimits::default(),
            callbacks: None,
        }
    }
}

/// Binds the address, puts runs interrupted by an earlier stop back in the
/// queue, starts the worker pool, every trigger kind, the retention purge
/// and (for a new version) the deploy flows, and serves HTTP until
/// shutdown. At shutdown, intake stops first, then in-flight runs get
/// until the drain deadline; runs still going then are put back in the
/// queue (journal kept) for the next start.
pub async fn serve(rt: &Runtime, options: ServeOptions) -> std::io::Result<ServerHandle> {
    let listener = tokio::net::TcpListener::bind(options.addr).await?;
    let addr = listener.local_addr()?;
    if let Some(token) = &options.admin_token {
        rt.redactor().add(token);
    }
    let callbacks = match options.callbacks {
        Some(settings) => {
            rt.redactor().add(&settings.secret);
            Some(Callbacks::new(settings).map_err(std::io::Error::other)?)
        }
        None => None,
    };
    rt.set_local_url(format!("http://{addr}"));
    let router = crate::triggers::http::router(
        rt,
        options.admin_token.as_deref(),
        &options.intake,
        callbacks.clone(),
    );
    let background = start(rt, options.catch_up_window, callbacks).await?;
    let server = tokio::spawn(crate::triggers::http::serve(
        listener,
        router,
        rt.clone(),
        options.intake,
    ));
    tracing::info!(%addr, "listening");
    let rt2 = rt.clone();
    let task = tokio::spawn(async move {
        rt2.shutdown_started().await;
        tracing::info!("shutting down: draining in-flight runs");
        let deadline = tokio::time::Instant::now() + rt2.drain_timeout();
        background.stop_triggers();
        stop_server(server, deadline).await;
        background.drain(&rt2, deadline).await;
        tracing::info!("stopped");
    });
    Ok(ServerHandle {
        addr,
        rt: rt.clone(),
        task,
    })
}

/// What a runtime runs besides its HTTP routes: the worker pool, the
/// triggers, housekeeping, and (for a new version) the deploy flows.
pub struct Background {
    workers: Vec<JoinHandle<()>>,
    triggers: Vec<JoinHandle<()>>,
    housekeeping: Vec<JoinHandle<()>>,
    deployer: Option<JoinHandle<()>>,
}

/// Puts runs interrupted by an earlier stop back in the queue, then starts
/// the worker pool, every trigger kind, the retention purge, the sync-run
/// summary and (for a new version) the deploy flows. The runtime's local
/// URL must be set first (the deploy flows' endpoints).
pub async fn start(
    rt: &Runtime,
    catch_up_window: Duration,
    callbacks: Option<std::sync::Arc<Callbacks>>,
) -> std::io::Result<Background> {
    let mut background = start_without_deploy(rt, catch_up_window, callbacks).await?;
    background.deployer = Some(tokio::spawn(deploy_if_new(rt.clone())));
    Ok(background)
}

/// [`start`] without the deploy flows (the caller runs them).
pub async fn start_without_deploy(
    rt: &Runtime,
    catch_up_window: Duration,
    callbacks: Option<std::sync::Arc<Callbacks>>,
) -> std::io::Result<Background> {
    rt.resume_interrupted()
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let workers = rt.start_workers();
    let mut triggers = crate::triggers::schedule::start(rt, catch_up_window);
    // Stopped with the triggers: a callback not sent by then is sent by
    // the next start (or another replica).
    triggers.extend(callbacks.map(|c| callback::start(rt, c)));
    triggers.extend(crate::triggers::files::start(rt));
    triggers.extend(crate::brokers::start(rt));
    triggers.extend(crate::triggers::email::start(rt));
    let purger = rt.start_purger();
    let summary = rt.summarise_sync_runs(crate::engine::SYNC_SUMMARY_EVERY);
    Ok(Background {
        workers,
        triggers,
        housekeeping: [purger, Some(summary)].into_iter().flatten().collect(),
        deployer: None,
    })
}

impl Background {
    /// Stops the triggers, housekeeping and deploy flows: nothing new starts.
    pub fn stop_triggers(&self) {
        for t in self.triggers.iter().chain(&self.housekeeping) {
            t.abort();
        }
        if let Some(d) = &self.deployer {
            d.abort();
        }
    }

    /// Lets in-flight runs finish until `deadline`, aborts those still
    /// going and puts them back in the queue (journal kept) for the next
    /// start.
    pub async fn drain(self, rt: &Runtime, deadline: tokio::time::Instant) {
        self.stop_triggers();
        for mut w in self.workers {
            if tokio::time::timeout_at(deadline, &mut w).await.is_err() {
                tracing::warn!("a run was still going at the drain deadline");
                w.abort();
                // Wait until the aborted task is gone, so it writes nothing more.
                let _ = w.await;
            }
        }
        rt.release_in_flight().await;
        rt.log_sync_summary();
    }
}

async fn deploy_if_new(rt: Runtime) {
    if let Err(e) = rt.deploy_if_new().await {
        tracing::error!(error = %rt.redactor().redact(&e.to_string()), "deploy flows failed");
    }
}

/// Waits for the requests in flight until `deadline`, then drops them.
pub async fn stop_server(server: JoinHandle<()>, deadline: tokio::time::Instant) {
    let server_abort = server.abort_handle();
    if tokio::time::timeout_at(deadline, server).await.is_err() {
        tracing::warn!("requests still open at the drain deadline");
        server_abort.abort();
    }
}
