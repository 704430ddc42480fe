//! The command line of every generated binary ([`main`]).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use serde_json::{json, Value};

use crate::core::config::EnvSource;
use crate::core::logging::LogFormat;
use crate::core::redact::Redactor;
use crate::engine::integration::Integration;
use crate::engine::trigger_value::complete_trigger;
use crate::engine::{default_workers, new_execution_id, Runtime, RuntimeOptions, StartError};
use crate::store::{Durability, Execution, SqliteOptions, SqliteStore, Status, Store};
#[cfg(feature = "postgres")]
use crate::store::{PostgresOptions, PostgresStore};
use crate::triggers::http::callback::CallbackSettings;

#[derive(Parser, Debug)]
#[command(disable_version_flag = true)]
struct Cli {
    /// Print version information.
    #[arg(short = 'V', long, global = true)]
    version: bool,
    /// Log line format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "human",
        env = "FLOW_LOG_FORMAT"
    )]
    log_format: LogFormat,
    /// Where executions, journals, dedupe keys and state are stored:
    /// `sqlite://PATH` (default for serve, deploy and connect:
    /// ./<integration>.db),
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE` (shared by several
    /// replicas; a binary built with `flowc build --with postgres`) or
    /// `memory` (lost on exit; default for `run`).
    #[arg(
        long,
        global = true,
        env = "FLOW_STORE",
        value_name = "sqlite://PATH|postgres://URL|memory"
    )]
    store: Option<String>,
    /// PostgreSQL schema holding this integration's tables (default: the
    /// integration's name).
    #[arg(long, global = true, env = "FLOW_STORE_SCHEMA", value_name = "NAME")]
    // Accepted (and unused) without the `postgres` feature, so that one
    // command line or environment serves every build.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    store_schema: Option<String>,
    /// Most PostgreSQL connections this process opens, besides the one that
    /// listens for queued runs (default: workers + 16, at most 32).
    #[arg(long, global = true, env = "FLOW_STORE_POOL", value_name = "N")]
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    store_pool: Option<usize>,
    /// SQLite commit durability: `full` syncs every commit to disk before
    /// answering (survives power loss); `normal` survives a crash of the
    /// process but a power loss may lose the last commits.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "full",
        env = "FLOW_DURABILITY"
    )]
    durability: Durability,
    /// OTLP/HTTP collector to export run traces to (e.g.
    /// http://127.0.0.1:4318; `/v1/traces` is added). Needs a binary built
    /// with `flowc build --with otel`; others warn and run without export.
    #[arg(
        long,
        global = true,
        env = "OTEL_EXPORTER_OTLP_ENDPOINT",
        value_name = "URL"
    )]
    otlp_endpoint: Option<String>,
    /// TOML file with config values (the environment wins over it).
    #[arg(long, global = true, value_name = "FILE.toml", env = "FLOW_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    serve: ServeArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Args, Debug, Clone)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "FLOW_ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Queued runs going on at once (default: 64; runs mostly wait on I/O).
    #[arg(long, env = "FLOW_WORKERS")]
    workers: Option<usize>,
    /// How long shutdown waits for in-flight runs (e.g. 30s); runs still
    /// going then stay queued for the next start.
    #[arg(long, env = "FLOW_DRAIN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// How long succeeded and skipped runs are kept (e.g. 7d; 0 keeps them
    /// forever). Failed runs are kept until replayed.
    #[arg(long, env = "FLOW_RETENTION", default_value = "7d", value_parser = parse_duration)]
    retention: Duration,
    /// How long failed runs are kept for inspection and replay (e.g. 90d;
    /// 0 keeps them forever, and the store grows without bound).
    #[arg(long, env = "FLOW_FAILED_RETENTION", default_value = "30d", value_parser = parse_duration)]
    failed_retention: Duration,
    /// Lease of a running execution, renewed every third of it while the
    /// run goes on; a run whose replica stops renewing (crashed, stalled)
    /// is taken over by another once its lease expires.
    #[arg(long, env = "FLOW_LEASE", default_value = "30s", value_parser = parse_lease)]
    lease: Duration,
    /// A schedule tick missed while no replica was running is run at
    /// start-up (flows with `catch_up: true`, the default) only if it is at
    /// most this old (e.g. 6h); older ones are skipped.
    #[arg(long, env = "FLOW_CATCH_UP_WINDOW", default_value = "1d", value_parser = parse_duration)]
    catch_up_window: Duration,
    /// Hosts a sync caller's `X-Callback-Url` may name, comma-separated:
    /// `name`, `name:port`, `*.domain`, an IP address, `*`. Empty (the
    /// default): callbacks are off and the header is ignored. Internal
    /// addresses (private, loopback, link-local) only for hosts listed by
    /// exact name or address.
    #[arg(
        long,
        env = "FLOW_CALLBACK_HOSTS",
        default_value = "",
        value_name = "HOST[:PORT],..."
    )]
    callback_hosts: String,
    /// Key of the callbacks' `X-Flow-Signature` (required with
    /// --callback-hosts); prefer the environment variable.
    #[arg(long, env = "FLOW_CALLBACK_SECRET", hide_env_values = true)]
    callback_secret: Option<String>,
    /// How long a caller may take to send a request's headers, and then
    /// again its body (else 408), and the server to answer it (else 503).
    /// Also how long a kept-alive connection may stay idle. A sync
    /// endpoint's run is bounded by its own `timeout` instead.
    #[arg(long, env = "FLOW_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_positive_duration)]
    request_timeout: Duration,
    /// Most connections open at once; more wait (in the kernel's listen
    /// backlog) until one closes.
    #[arg(long, env = "FLOW_MAX_CONNECTIONS", default_value_t = crate::triggers::http::DEFAULT_MAX_CONNECTIONS, value_parser = parse_count)]
    max_connections: usize,
    /// Most requests handled at once (the admin API under /_flow/ aside);
    /// more are answered 503 with Retry-After: 1.
    #[arg(long, env = "FLOW_MAX_IN_FLIGHT", default_value_t = crate::triggers::http::DEFAULT_MAX_IN_FLIGHT, value_parser = parse_count)]
    max_in_flight: usize,
    /// Most sync runs going on at once, including those whose caller hung
    /// up (they end at their timeout); more are answered 503 with
    /// Retry-After: 1.
    #[arg(long, env = "FLOW_MAX_SYNC_RUNS", default_value_t = crate::triggers::http::DEFAULT_MAX_SYNC_RUNS, value_parser = parse_count)]
    max_sync_runs: usize,
    /// Serve the integration for many customers: instances are created
    /// through the admin API (`PUT /_flow/instances/NAME`) or `instances
    /// put`, each with its own config, store and endpoints under
    /// `/i/NAME/`. Needs FLOW_MASTER_KEY (instances' configs are encrypted
    /// with it) and FLOW_ADMIN_TOKEN. The environment's config entries are
    /// not read in this mode.
    #[arg(long, env = "FLOW_INSTANCES")]
    instances: bool,
}

impl ServeArgs {
    fn intake(&self) -> crate::triggers::http::IntakeLimits {
        crate::triggers::http::IntakeLimits {
            request_timeout: self.request_timeout,
            max_connections: self.max_connections,
            max_in_flight: self.max_in_flight,
            max_sync_runs: self.max_sync_runs,
        }
    }
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("{s:?} is not a positive duration"));
    }
    Ok(d)
}

/// A cap: at least 1 (0 would refuse everything).
fn parse_count(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{s:?} is not a whole number of at least 1")),
    }
}

fn parse_lease(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(300) {
        return Err(format!("lease {s:?} is too short (at least 300ms)"));
    }
    Ok(d)
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::core::schema::parse_duration_ms(s)
        .and_then(|ms| u64::try_from(ms).ok())
        .map(Duration::from_millis)
        .ok_or_else(|| format!("invalid duration {s:?} (use e.g. 500ms, 30s, 5m)"))
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the HTTP triggers, schedules and admin API (the default).
    Serve(ServeArgs),
    /// Run one flow once in the foreground and print the outcome as JSON.
    Run {
        /// The flow to run.
        flow: String,
        /// JSON file with the trigger value (e.g. `{"body": {...}}` for a
        /// webhook, `{"input": ...}` for a dispatch flow).
        #[arg(long, value_name = "FILE.json")]
        input: Option<PathBuf>,
    },
    /// Run the deploy flows in the foreground and exit.
    Deploy,
    /// Retire the integration: run the remove flows in the foreground (they
    /// unregister what the deploy flows registered) and exit. The next
    /// `serve` or `deploy` runs the deploy flows again.
    Undeploy,
    /// Load and validate the config, then exit (0 when valid, 2 otherwise).
    CheckConfig,
    /// Connect an account: run an OAuth2 connection's consent and keep its
    /// refresh token.
    ///
    /// For an `oauth2: refresh_token` connection with `authorize_url`:
    /// prints `open: URL` (open it in a browser), receives the redirect on
    /// http://127.0.0.1:PORT/callback (authorization code with PKCE), saves
    /// the tokens in the store `serve` reads them from (--store; default
    /// ./<integration>.db) and prints `connected NAME`. Run it again after
    /// the consent was revoked.
    Connect {
        /// The connection's name.
        name: String,
        /// Local port of the redirect URI (0: any free port; give one when
        /// the service only accepts registered redirect URIs).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// How long to wait for the redirect (e.g. 90s, 10m).
        #[arg(long, default_value = "10m", value_parser = parse_positive_duration)]
        timeout: Duration,
    },
    /// List executions of a running server (admin API, FLOW_ADMIN_TOKEN).
    Executions {
        /// Only failed executions.
        #[arg(long)]
        failed: bool,
        /// Only this flow.
        #[arg(long)]
        flow: Option<String>,
        /// Base URL of the running server (default: http://FLOW_ADDR).
        #[arg(long)]
        url: Option<String>,
    },
    /// Replay a finished execution on a running server (admin API).
    Replay {
        /// The execution id.
        id: String,
        /// Base URL of the running server (default: http://FLOW_ADDR).
        #[arg(long)]
        url: Option<String>,
    },
    /// Manage the instances of a server running `serve --instances` (admin
    /// API, FLOW_ADMIN_TOKEN).
    Instances {
        #[command(subcommand)]
        action: InstancesAction,
        /// Base URL of the running server (default: http://FLOW_ADDR).
        #[arg(long, global = true)]
        url: Option<String>,
    },
    /// Run the `.flow` file's test blocks (what `flowc test` calls).
    #[command(hide = true)]
    Test {
        /// Only the tests whose name contains this.
        #[arg(long)]
        filter: Option<String>,
    },
}

/// `instances …`.
#[derive(Subcommand, Debug, Clone)]
enum InstancesAction {
    /// List the instances.
    List,
    /// Show one instance (secrets masked).
    Show {
        /// The instance's name.
        name: String,
    },
    /// Create or update an instance from `--config FILE.toml` (the same
    /// entries as serve's `--config`). A new instance runs its deploy flows.
    Put {
        /// The instance's name: lowercase letters, digits and dashes.
        name: String,
    },
    /// Pause an instance: its endpoints answer 503, it runs nothing new.
    Pause {
        /// The instance's name.
        name: String,
    },
    /// Resume a paused instance.
    Resume {
        /// The instance's name.
        name: String,
    },
    /// Delete an instance: run its remove flows, then remove its state.
    Delete {
        /// The instance's name.
        name: String,
    },
}

fn version_line(i: &Integration) -> String {
    format!(
        "{} {} (flowc {}, source sha256:{})",
        i.name,
        i.version(),
        i.flowc_version,
        i.source_hash
    )
}

/// The `--help` epilogue: flows, endpoints and config entries with their docs.
pub fn help_text(i: &Integration) -> String {
    let mut out = String::new();
    let config = crate::core::config::Config::from_values(
        i.config
            .iter()
            .filter_map(|e| e.default.clone().map(|d| (e.name.to_string(), d)))
            .collect(),
        &[],
    );
    let flows = (i.flows)(&config);
    let doc_lines = |out: &mut String, doc: &str| {
        for line in doc.lines().filter(|l| !l.trim().is_empty()) {
            let _ = writeln!(out, "      {}", line.trim());
        }
    };
    out.push_str("Flows:\n");
    for f in &flows {
        let _ = writeln!(out, "  {}  ({})", f.name, f.trigger.describe());
        doc_lines(&mut out, f.doc);
    }
    let endpoints: Vec<_> = flows
        .iter()
        .filter_map(|f| f.trigger.route().map(|r| (f.name, r)))
        .collect();
    if !endpoints.is_empty() {
        out.push_str("\nEndpoints:\n");
        for (name, (method, path)) in endpoints {
            let _ = writeln!(out, "  {method} {path}  -> {name}");
        }
    }
    out.push_str("  GET /_flow/healthz, /_flow/readyz, /_flow/metrics, /_flow/flows\n");
    out.push_str("  GET /_flow/executions, /_flow/executions/{id}, POST /_flow/executions/{id}/replay (Bearer FLOW_ADMIN_TOKEN)\n");
    out.push_str("  With serve --instances: each instance's endpoints under /i/NAME/...; PUT, GET, DELETE /_flow/instances/NAME, POST /_flow/instances/NAME/pause|resume (Bearer FLOW_ADMIN_TOKEN; configs sealed with FLOW_MASTER_KEY)\n");
    if !i.config.is_empty() {
        out.push_str("\nConfig (environment variable > --config file > default):\n");
        for e in &i.config {
            let default = match &e.default {
                None => "required".to_string(),
                Some(_) if e.secret => "default ***".to_string(),
                Some(d) => format!("default {d}"),
            };
            let _ = writeln!(
                out,
                "  {}  {}: {} ({default})",
                e.env_var(),
                e.name,
                e.schema.describe()
            );
            doc_lines(&mut out, e.doc);
        }
    }
    out.push_str("\nOther environment variables: FLOW_ADDR, FLOW_WORKERS, FLOW_ADMIN_TOKEN, FLOW_STORE, FLOW_STORE_SCHEMA, FLOW_STORE_POOL, FLOW_DURABILITY, FLOW_LEASE, FLOW_DRAIN_TIMEOUT, FLOW_RETENTION, FLOW_FAILED_RETENTION, FLOW_LOG_FORMAT, FLOW_SFTP_KNOWN_HOSTS, FLOW_SFTP_HOST_KEYS, FLOW_SFTP_TRUST_ON_FIRST_USE, FLOW_INSTANCES, FLOW_MASTER_KEY, FLOW_MASTER_KEY_PREVIOUS, RUST_LOG.");
    out
}

/// The whole program of a generated binary:
/// `fn main() -> ExitCode { flow_runtime::main(integration(), tests()) }`,
/// where `tests` are the file's `test` blocks, run by `BINARY test`
/// (`flowc test`); empty when the file has none.
pub fn main(integration: Integration, tests: Vec<crate::testing::TestCase>) -> ExitCode {
    main_with_args(integration, tests, std::env::args_os())
}

/// [`main`] with the command line `args` (the first one is the program's
/// name) instead of the process's: for tests that drive the command line
/// of a hand-written integration.
pub fn main_with_args<I, T>(
    integration: Integration,
    tests: Vec<crate::testing::TestCase>,
    args: I,
) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cmd = Cli::command()
        .name(integration.name)
        .bin_name(integration.name)
        .about(if integration.doc.is_empty() {
            format!("The {} integration, built by flowc.", integration.name)
        } else {
            integration.doc.trim().to_string()
        })
        .after_help(help_text(&integration));
    let matches = match cmd.try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(2);
        }
    };
    if cli.version {
        println!("{}", version_line(&integration));
        return ExitCode::SUCCESS;
    }
    let redactor = Redactor::new();
    // Tests print their own report; logs only when asked for with RUST_LOG.
    let testing = matches!(cli.command, Some(Command::Test { .. }));
    // Held to the end of `main`: queued log lines are written at exit.
    let _log = (!testing || std::env::var_os("RUST_LOG").is_some())
        .then(|| crate::core::logging::init(cli.log_format, redactor.clone()))
        .flatten();
    let tokio = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: cannot start the async runtime: {e}", integration.name);
            return ExitCode::FAILURE;
        }
    };
    // Started before any run and stopped after the last: its batch
    // processor has a thread of its own and needs no async runtime.
    let exporting = start_trace_export(&integration, &cli, testing);
    let code = tokio.block_on(run_cli(integration, tests, cli, redactor));
    if exporting {
        crate::core::otel::shutdown();
    }
    code
}

/// Starts the OTLP export of traces if an endpoint is set (not for `test`,
/// whose runs are not the service's); whether it was asked for.
fn start_trace_export(integration: &Integration, cli: &Cli, testing: bool) -> bool {
    let Some(endpoint) = cli
        .otlp_endpoint
        .as_deref()
        .filter(|e| !e.trim().is_empty())
    else {
        return false;
    };
    if testing {
        return false;
    }
    crate::core::otel::init(
        endpoint,
        crate::core::otel::Service {
            name: integration.name.to_string(),
            version: integration.version(),
        },
    );
    true
}

fn exit(code: u8) -> ExitCode {
    ExitCode::from(code)
}

/// Where a command keeps its store.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StoreChoice {
    Memory,
    Sqlite(PathBuf),
    /// Only in a binary built with the `postgres` feature.
    #[cfg(feature = "postgres")]
    Postgres(String),
}

/// Parses `--store`: `memory`, `sqlite://PATH` (or `sqlite:PATH`),
/// `postgres://…` (or `postgresql://…`; refused by a binary built
/// without the `postgres` feature, with how to rebuild it).
fn parse_store(s: &str) -> Result<StoreChoice, String> {
    let s = s.trim();
    if s == "memory" {
        return Ok(StoreChoice::Memory);
    }
    if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        return Ok(StoreChoice::Postgres(s.to_string()));
        #[cfg(not(feature = "postgres"))]
        return Err(
            "this binary was built without PostgreSQL support (--store postgres://); \
             rebuild it with `flowc build --with postgres`"
                .into(),
        );
    }
    match s
        .strip_prefix("sqlite://")
        .or_else(|| s.strip_prefix("sqlite:"))
    {
        Some(path) if !path.is_empty() => Ok(StoreChoice::Sqlite(PathBuf::from(path))),
        _ => Err(format!(
            "unsupported --store {:?}: use `sqlite://PATH`, `postgres://USER@HOST:PORT/DATABASE` or `memory`",
            crate::store::redact_url(s)
        )),
    }
}

/// The password in a `postgres://` store URL, if any.
#[cfg(feature = "postgres")]
fn store_password(url: &str) -> Option<String> {
    let config: tokio_postgres::Config = url.trim().parse().ok()?;
    let password = String::from_utf8_lossy(config.get_password()?).into_owned();
    (!password.is_empty()).then_some(password)
}

/// What a command needs from the store.
#[derive(Debug, Clone, Copy)]
enum StoreUse {
    /// `serve`: SQLite by default, locked for this process.
    Serve,
    /// `deploy`, `undeploy`: SQLite by default (records the deployed
    /// version).
    Deploy,
    /// `connect`: SQLite by default, the file `serve` reads the tokens from.
    Connect,
    /// `run`, `check-config`: memory unless `--store` says otherwise.
    Foreground,
}

async fn open_store(
    name: &str,
    cli: &Cli,
    usage: StoreUse,
    // The PostgreSQL store's pool size follows it.
    #[cfg_attr(not(feature = "postgres"), allow(unused_variables))] workers: usize,
) -> Result<Option<Arc<dyn Store>>, ExitCode> {
    let choice = match &cli.store {
        Some(s) => match parse_store(s) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{name}: {e}");
                return Err(exit(2));
            }
        },
        None => match usage {
            StoreUse::Serve | StoreUse::Deploy | StoreUse::Connect => {
                StoreChoice::Sqlite(PathBuf::from(format!("./{name}.db")))
            }
            StoreUse::Foreground => StoreChoice::Memory,
        },
    };
    match choice {
        StoreChoice::Memory => Ok(None),
        StoreChoice::Sqlite(path) => {
            let options = SqliteOptions {
                durability: cli.durability,
                exclusive: matches!(usage, StoreUse::Serve),
            };
            match SqliteStore::open(&path, options) {
                Ok(store) => {
                    tracing::info!(store = %path.display(), durability = ?cli.durability, "store opened");
                    Ok(Some(Arc::new(store)))
                }
                Err(e) => {
                    eprintln!("{name}: cannot open the store: {}", e.message());
                    Err(exit(1))
                }
            }
        }
        #[cfg(feature = "postgres")]
        StoreChoice::Postgres(url) => {
            let schema = cli
                .store_schema
                .clone()
                .unwrap_or_else(|| crate::store::postgres_schema_for(name));
            let options = PostgresOptions {
                url: url.clone(),
                schema: schema.clone(),
                // Every worker may hold a connection (a step's journal
                // write), plus the fetcher, the heartbeat, and intake (its
                // rate grows with concurrent commits).
                // Capped: three replicas stay within PostgreSQL's default
                // of 100 connections.
                pool_size: cli.store_pool.unwrap_or((workers + 16).min(32)).max(2),
            };
            match PostgresStore::open(options).await {
                Ok(store) => {
                    tracing::info!(store = %crate::store::redact_url(&url), schema = %schema, "store opened");
                    Ok(Some(Arc::new(store)))
                }
                Err(e) => {
                    eprintln!("{name}: cannot open the store: {}", e.message());
                    Err(exit(1))
                }
            }
        }
    }
}

/// What differs between the commands that load the integration.
struct Setup {
    /// How the command uses the store.
    usage: StoreUse,
    /// Size of the worker pool; `None`: [`default_workers`].
    workers: Option<usize>,
    /// How long shutdown waits for in-flight runs.
    drain: Duration,
    /// How long succeeded and skipped runs are kept; `None`: forever.
    retention: Option<Duration>,
    /// How long failed runs are kept; `None`: forever.
    failed_retention: Option<Duration>,
    /// Lease of a running execution.
    lease: Duration,
}

impl Setup {
    /// A command that runs at most one flow in the foreground.
    fn foreground(usage: StoreUse, lease: Duration) -> Setup {
        Setup {
            usage,
            workers: Some(1),
            drain: Duration::from_secs(30),
            retention: None,
            failed_retention: None,
            lease,
        }
    }

    /// `serve`.
    fn serve(args: &ServeArgs) -> Setup {
        Setup {
            usage: StoreUse::Serve,
            workers: args.workers,
            drain: args.drain_timeout,
            retention: (!args.retention.is_zero()).then_some(args.retention),
            failed_retention: (!args.failed_retention.is_zero()).then_some(args.failed_retention),
            lease: args.lease,
        }
    }
}

async fn build_runtime(
    integration: Integration,
    cli: &Cli,
    redactor: Redactor,
    setup: Setup,
) -> Result<Runtime, ExitCode> {
    let name = integration.name;
    let workers = setup.workers.unwrap_or_else(default_workers);
    // The database password never shows in logs.
    #[cfg(feature = "postgres")]
    if let Some(password) = cli.store.as_deref().and_then(store_password) {
        redactor.add(&password);
    }
    let store = open_store(name, cli, setup.usage, workers).await?;
    let options = RuntimeOptions {
        env: EnvSource::Process,
        config_file: cli.config.clone(),
        config_values: None,
        instance: None,
        store,
        workers,
        drain_timeout: setup.drain,
        lease: setup.lease,
        retention: setup.retention,
        failed_retention: setup.failed_retention,
        redactor,
        steps: crate::host::step_registry(),
    };
    Runtime::new(integration, options).map_err(|e| match e {
        StartError::Config(c) => {
            eprintln!("{name}: {c}");
            exit(2)
        }
        StartError::Other(m) => {
            eprintln!("{name}: {m}");
            exit(1)
        }
    })
}

async fn run_cli(
    integration: Integration,
    tests: Vec<crate::testing::TestCase>,
    cli: Cli,
    redactor: Redactor,
) -> ExitCode {
    let command = cli
        .command
        .as_ref()
        .map_or(CommandKind::Serve(cli.serve.clone()), CommandKind::from);
    match command {
        CommandKind::Serve(args) => {
            // Checked before the store is opened: a bad setting changes nothing.
            let callbacks = match callback_settings(&args) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{}: {e}", integration.name);
                    return exit(2);
                }
            };
            if args.instances {
                return serve_instances(integration, &cli, redactor, &args, callbacks).await;
            }
            let rt = match build_runtime(integration, &cli, redactor, Setup::serve(&args)).await {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            serve(rt, &args, callbacks).await
        }
        CommandKind::Run { flow, input } => {
            let rt = match build_runtime(
                integration,
                &cli,
                redactor,
                Setup::foreground(StoreUse::Foreground, cli.serve.lease),
            )
            .await
            {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            run_once(&rt, &flow, input.as_deref()).await
        }
        CommandKind::Deploy | CommandKind::Undeploy => {
            let undeploy = matches!(command, CommandKind::Undeploy);
            let rt = match build_runtime(
                integration,
                &cli,
                redactor,
                Setup::foreground(StoreUse::Deploy, cli.serve.lease),
            )
            .await
            {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            let ran = if undeploy {
                rt.undeploy().await
            } else {
                rt.deploy().await
            };
            match ran {
                Ok(done) => {
                    for e in &done {
                        println!("{}", outcome_json(&rt, e));
                    }
                    let (did, flows) = if undeploy {
                        ("undeployed", "remove")
                    } else {
                        ("deployed", "deploy")
                    };
                    eprintln!(
                        "{did} {} ({} {flows} flow(s))",
                        rt.integration().version(),
                        done.len()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!(
                        "{}: {}",
                        rt.integration().name,
                        rt.redactor().redact(&e.to_string())
                    );
                    exit(1)
                }
            }
        }
        CommandKind::CheckConfig => {
            let rt = match build_runtime(
                integration,
                &cli,
                redactor,
                Setup::foreground(StoreUse::Foreground, cli.serve.lease),
            )
            .await
            {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            println!("configuration is valid:");
            for e in &rt.integration().config {
                let v = rt.config().get(e.name);
                let shown = if e.secret || matches!(e.schema, crate::core::schema::Schema::Secret) {
                    "***".to_string()
                } else {
                    rt.redactor().redact(&v.to_string()).into_owned()
                };
                println!("  {} = {shown}", e.name);
            }
            ExitCode::SUCCESS
        }
        CommandKind::Connect {
            name,
            port,
            timeout,
        } => {
            let memory = cli.store.as_deref().map(parse_store) == Some(Ok(StoreChoice::Memory));
            if memory {
                eprintln!(
                    "{}: `connect` keeps the refresh token in the store, and `--store memory` would lose it at exit: use the store `serve` uses",
                    integration.name
                );
                return exit(2);
            }
            let rt = match build_runtime(
                integration,
                &cli,
                redactor,
                Setup::foreground(StoreUse::Connect, cli.serve.lease),
            )
            .await
            {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            match crate::engine::connect::connect(&rt, &name, port, timeout).await {
                Ok(()) => {
                    println!("connected {name}");
                    ExitCode::SUCCESS
                }
                Err(failure) => {
                    eprintln!(
                        "{}: {}",
                        rt.integration().name,
                        rt.redactor().redact(&failure.message)
                    );
                    exit(failure.code)
                }
            }
        }
        CommandKind::Executions { failed, flow, url } => {
            let mut query = Vec::new();
            if failed {
                query.push(("status", "failed".to_string()));
            }
            if let Some(f) = flow {
                query.push(("flow", f));
            }
            admin_call(
                &cli,
                url,
                reqwest::Method::GET,
                "/_flow/executions",
                &query,
                |v| {
                    let list = v["executions"].as_array().cloned().unwrap_or_default();
                    if list.is_empty() {
                        println!("no executions");
                    }
                    for e in list {
                        println!(
                            "{}  {:<24} {:<10} {}  {}",
                            e["id"].as_str().unwrap_or(""),
                            e["flow"].as_str().unwrap_or(""),
                            e["status"].as_str().unwrap_or(""),
                            e["created_at"].as_str().unwrap_or(""),
                            e["error"].as_str().unwrap_or("")
                        );
                    }
                },
            )
            .await
        }
        CommandKind::Test { filter } => {
            crate::testing::run(integration, tests, filter.as_deref()).await
        }
        CommandKind::Instances { action, url } => instances_command(&cli, action, url).await,
        CommandKind::Replay { id, url } => {
            let path = format!("/_flow/executions/{id}/replay");
            admin_call(&cli, url, reqwest::Method::POST, &path, &[], |v| {
                println!(
                    "replay queued: {}",
                    v["execution_id"].as_str().unwrap_or("")
                );
            })
            .await
        }
    }
}

enum CommandKind {
    Test {
        filter: Option<String>,
    },
    Serve(ServeArgs),
    Run {
        flow: String,
        input: Option<PathBuf>,
    },
    Deploy,
    Undeploy,
    CheckConfig,
    Connect {
        name: String,
        port: u16,
        timeout: Duration,
    },
    Executions {
        failed: bool,
        flow: Option<String>,
        url: Option<String>,
    },
    Replay {
        id: String,
        url: Option<String>,
    },
    Instances {
        action: InstancesAction,
        url: Option<String>,
    },
}

impl From<&Command> for CommandKind {
    fn from(c: &Command) -> Self {
        match c {
            Command::Serve(a) => CommandKind::Serve(a.clone()),
            Command::Run { flow, input } => CommandKind::Run {
                flow: flow.clone(),
                input: input.clone(),
            },
            Command::Deploy => CommandKind::Deploy,
            Command::Undeploy => CommandKind::Undeploy,
            Command::CheckConfig => CommandKind::CheckConfig,
            Command::Connect {
                name,
                port,
                timeout,
            } => CommandKind::Connect {
                name: name.clone(),
                port: *port,
                timeout: *timeout,
            },
            Command::Executions { failed, flow, url } => CommandKind::Executions {
                failed: *failed,
                flow: flow.clone(),
                url: url.clone(),
            },
            Command::Test { filter } => CommandKind::Test {
                filter: filter.clone(),
            },
            Command::Replay { id, url } => CommandKind::Replay {
                id: id.clone(),
                url: url.clone(),
            },
            Command::Instances { action, url } => CommandKind::Instances {
                action: action.clone(),
                url: url.clone(),
            },
        }
    }
}

async fn admin_call(
    cli: &Cli,
    url: Option<String>,
    method: reqwest::Method,
    path: &str,
    query: &[(&str, String)],
    show: impl FnOnce(&Value),
) -> ExitCode {
    admin_call_with(cli, url, method, path, query, None, show).await
}

async fn admin_call_with(
    cli: &Cli,
    url: Option<String>,
    method: reqwest::Method,
    path: &str,
    query: &[(&str, String)],
    body: Option<Value>,
    show: impl FnOnce(&Value),
) -> ExitCode {
    let base = url.unwrap_or_else(|| format!("http://{}", cli.serve.addr));
    let Some(token) = admin_token() else {
        eprintln!("set FLOW_ADMIN_TOKEN to the running server's admin token");
        return exit(2);
    };
    let client = reqwest::Client::new();
    let mut request = client
        .request(method, format!("{}{path}", base.trim_end_matches('/')))
        .query(query)
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let resp = request.send().await;
    match resp {
        Ok(r) => {
            let status = r.status();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            if status.is_success() {
                show(&body);
                ExitCode::SUCCESS
            } else {
                eprintln!("{status}: {}", body["error"].as_str().unwrap_or(""));
                for p in body["problems"].as_array().into_iter().flatten() {
                    eprintln!("  - {}", p.as_str().unwrap_or(""));
                }
                exit(1)
            }
        }
        Err(e) => {
            eprintln!("cannot reach {base}: {e}");
            exit(1)
        }
    }
}

/// `instances list|show|put|pause|resume|delete` through the admin API.
async fn instances_command(cli: &Cli, action: InstancesAction, url: Option<String>) -> ExitCode {
    use reqwest::Method;
    let print = |v: &Value| println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    let pausing = matches!(action, InstancesAction::Pause { .. });
    match action {
        InstancesAction::List => {
            admin_call(cli, url, Method::GET, "/_flow/instances", &[], |v| {
                let list = v["instances"].as_array().cloned().unwrap_or_default();
                if list.is_empty() {
                    println!("no instances");
                }
                for i in list {
                    let state = if i["paused"] == true {
                        "paused"
                    } else {
                        "running"
                    };
                    println!(
                        "{:<24} {state:<8} {}",
                        i["name"].as_str().unwrap_or(""),
                        i["updated_at"].as_str().unwrap_or("")
                    );
                }
            })
            .await
        }
        InstancesAction::Show { name } => {
            admin_call(
                cli,
                url,
                Method::GET,
                &format!("/_flow/instances/{name}"),
                &[],
                print,
            )
            .await
        }
        InstancesAction::Put { name } => {
            let Some(file) = &cli.config else {
                eprintln!(
                    "instances put {name}: give the instance's config with --config FILE.toml"
                );
                return exit(2);
            };
            let config = match crate::core::config::read_toml(file) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return exit(2);
                }
            };
            let body = json!({ "config": config });
            admin_call_with(
                cli,
                url,
                Method::PUT,
                &format!("/_flow/instances/{name}"),
                &[],
                Some(body),
                |v| {
                    println!("saved instance {}", v["name"].as_str().unwrap_or(""));
                    for (flow, endpoint) in v["endpoints"].as_object().into_iter().flatten() {
                        println!("  {flow}: {}", endpoint.as_str().unwrap_or(""));
                    }
                },
            )
            .await
        }
        InstancesAction::Pause { name } | InstancesAction::Resume { name } => {
            let (verb, done) = if pausing {
                ("pause", "paused")
            } else {
                ("resume", "resumed")
            };
            admin_call(
                cli,
                url,
                Method::POST,
                &format!("/_flow/instances/{name}/{verb}"),
                &[],
                |_| {
                    println!("{done} instance {name}");
                },
            )
            .await
        }
        InstancesAction::Delete { name } => {
            admin_call(
                cli,
                url,
                Method::DELETE,
                &format!("/_flow/instances/{name}"),
                &[],
                |v| {
                    println!(
                        "deleted instance {name} ({} remove flow(s) ran)",
                        v["removed"].as_array().map_or(0, Vec::len)
                    );
                },
            )
            .await
        }
    }
}

/// The `X-Callback-Url` settings of `serve` (`None`: callbacks off).
fn callback_settings(args: &ServeArgs) -> Result<Option<CallbackSettings>, String> {
    CallbackSettings::from_options(&args.callback_hosts, args.callback_secret.as_deref())
}

async fn serve(rt: Runtime, args: &ServeArgs, callbacks: Option<CallbackSettings>) -> ExitCode {
    let addr = args.addr;
    let options = crate::host::ServeOptions {
        addr,
        admin_token: admin_token(),
        catch_up_window: args.catch_up_window,
        intake: args.intake(),
        callbacks,
    };
    let handle = match crate::host::serve(&rt, options).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("{}: cannot listen on {addr}: {e}", rt.integration().name);
            return exit(1);
        }
    };
    until_stopped(handle).await
}

/// Says where the server listens, then serves until SIGTERM or Ctrl-C and
/// the drain that follows.
async fn until_stopped(handle: crate::host::ServerHandle) -> ExitCode {
    println!("listening on {}", handle.url());
    let rt = handle.runtime().clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        rt.begin_shutdown();
    });
    handle.wait().await;
    ExitCode::SUCCESS
}

/// `FLOW_ADMIN_TOKEN`, unless unset or empty.
fn admin_token() -> Option<String> {
    std::env::var("FLOW_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
}

/// `serve --instances`: the integration's store keeps the instances'
/// records; each instance gets a store beside it (see
/// [`crate::instances::InstanceStores`]).
async fn serve_instances(
    integration: Integration,
    cli: &Cli,
    redactor: Redactor,
    args: &ServeArgs,
    callbacks: Option<CallbackSettings>,
) -> ExitCode {
    let name = integration.name;
    let keys = match crate::core::seal::Keyring::from_env(|var| std::env::var(var).ok()) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("{name}: --instances: {e}");
            return exit(2);
        }
    };
    let Some(admin_token) = admin_token() else {
        eprintln!("{name}: --instances: FLOW_ADMIN_TOKEN is not set: instances are managed through the admin API, which needs it");
        return exit(2);
    };
    let stores = match instance_stores(name, cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{name}: {e}");
            return exit(2);
        }
    };
    // The integration without its config and flows: it holds the records
    // and serves /_flow/; the instances run the flows.
    let control_integration = Integration {
        config: Vec::new(),
        flows: |_| Vec::new(),
        connections: crate::engine::integration::no_connections,
        ..integration.clone()
    };
    let mut setup = Setup::serve(args);
    setup.workers = Some(1);
    let control = match build_runtime(control_integration, cli, redactor.clone(), setup).await {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let settings = crate::instances::InstanceSettings {
        stores,
        workers: args.workers.unwrap_or_else(default_workers),
        drain_timeout: args.drain_timeout,
        lease: args.lease,
        retention: (!args.retention.is_zero()).then_some(args.retention),
        failed_retention: (!args.failed_retention.is_zero()).then_some(args.failed_retention),
        catch_up_window: args.catch_up_window,
        admin_token: Some(admin_token),
        intake: args.intake(),
        callbacks,
        redactor,
        keys,
    };
    let instances = crate::instances::Instances::new(integration, control.clone(), settings);
    let handle = match crate::instances::serve(instances, args.addr).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("{name}: cannot listen on {}: {e}", args.addr);
            return exit(1);
        }
    };
    until_stopped(handle).await
}

/// Where instances keep their stores, after `--store`.
fn instance_stores(name: &str, cli: &Cli) -> Result<crate::instances::InstanceStores, String> {
    use crate::instances::InstanceStores;
    let choice = match &cli.store {
        Some(s) => parse_store(s)?,
        None => StoreChoice::Sqlite(PathBuf::from(format!("./{name}.db"))),
    };
    Ok(match choice {
        StoreChoice::Memory => InstanceStores::Memory,
        StoreChoice::Sqlite(path) => InstanceStores::sqlite_beside(&path, cli.durability),
        #[cfg(feature = "postgres")]
        StoreChoice::Postgres(url) => InstanceStores::Postgres {
            url,
            schema: cli
                .store_schema
                .clone()
                .unwrap_or_else(|| crate::store::postgres_schema_for(name)),
            // Each instance has its own pool: small, so that a few dozen
            // instances on two replicas stay within PostgreSQL's default
            // of 100 connections.
            pool_size: cli.store_pool.unwrap_or(4).max(2),
        },
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn outcome_json(rt: &Runtime, e: &Execution) -> Value {
    let r = rt.redactor();
    json!({
        "execution_id": e.id,
        "flow": e.flow,
        "status": e.status,
        "result": e.result.as_ref().map(|v| r.redact_value(v)),
        "error": e.error.as_ref().map(|m| r.redact_string(m.clone())),
        "error_step": e.error_step,
    })
}

async fn run_once(rt: &Runtime, flow: &str, input: Option<&Path>) -> ExitCode {
    let name = rt.integration().name;
    let given = match input {
        None => Value::Null,
        Some(path) => {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("{name}: cannot read {}: {e}", path.display());
                    return exit(2);
                }
            };
            match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("{name}: {} is not valid JSON: {e}", path.display());
                    return exit(2);
                }
            }
        }
    };
    let trigger = match complete_trigger(rt, flow, given) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{name}: {e}");
            return exit(2);
        }
    };
    match rt.run_inline(new_execution_id(), flow, trigger).await {
        Ok(exec) => {
            println!("{}", outcome_json(rt, &exec));
            if exec.status == Status::Failed {
                exit(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("{name}: {e}");
            exit(1)
        }
    }
}
