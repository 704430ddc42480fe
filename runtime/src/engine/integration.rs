//! The description of an integration that generated code builds and hands to
//! [`crate::main`]: config entries, named types and flows with their triggers.

use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::core::config::{Config, ConfigEntry};
use crate::core::error::RunError;
use crate::core::schema::Schema;
use crate::engine::ctx::Ctx;

/// One integration (one `.flow` file).
#[derive(Clone)]
pub struct Integration {
    /// `integration NAME`.
    pub name: &'static str,
    /// The integration's doc comment.
    pub doc: &'static str,
    /// Version of flowc that generated the code.
    pub flowc_version: &'static str,
    /// Lowercase hex SHA-256 of the `.flow` source.
    pub source_hash: &'static str,
    /// The `config { ... }` entries, in source order.
    pub config: Vec<ConfigEntry>,
    /// Named types, for [`Schema::Ref`].
    pub types: Vec<(&'static str, Schema)>,
    /// Builds the flows once the config is loaded (trigger options may
    /// reference config values, e.g. an HMAC secret).
    pub flows: fn(&Config) -> Vec<FlowDef>,
    /// Builds the `connection` declarations once the config is loaded
    /// ([`no_connections`] for a file without any).
    pub connections: fn(&Config) -> Vec<ConnectionDef>,
    /// The drawing of the flows (`flowc graph --format svg`), shown by the
    /// executions page; empty for a program without one.
    pub graph: &'static str,
}

/// [`Integration::connections`] of an integration that declares none.
pub fn no_connections(_: &Config) -> Vec<ConnectionDef> {
    Vec::new()
}

/// `connection NAME { ... }` (LANGUAGE.md §12): an outside system that
/// `http.*` steps reach `via: NAME`. Holds secrets, so it has no `Debug`
/// that would print them.
#[derive(Clone)]
pub struct ConnectionDef {
    /// The connection's name.
    pub name: &'static str,
    /// How requests through it authenticate.
    pub auth: ConnectionAuth,
    /// `limit: { requests: N, per: D }`.
    pub limit: Option<RequestLimit>,
}

impl std::fmt::Debug for ConnectionDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionDef")
            .field("name", &self.name)
            .field("auth", &self.auth.kind())
            .field("limit", &self.limit)
            .finish()
    }
}

/// `limit: { requests: N, per: D }` of a connection: at most `requests`
/// requests in any window of `per`, across runs and replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestLimit {
    /// Requests allowed per window.
    pub requests: u32,
    /// The window.
    pub per: Duration,
}

/// How requests through a connection authenticate.
#[derive(Clone)]
pub enum ConnectionAuth {
    /// No credentials (the connection is there for its limit).
    None,
    /// `bearer: TOKEN`: `Authorization: Bearer TOKEN`.
    Bearer {
        /// The token.
        token: String,
    },
    /// `basic: { user, password }`.
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
    /// `api_key: { header, key }`: the key in header `header`.
    ApiKey {
        /// The header's name.
        header: &'static str,
        /// The key.
        key: String,
    },
    /// `oauth2: client_credentials | refresh_token`.
    OAuth2(OAuth2Def),
    /// `aws: { region, access_key, secret_key, endpoint }`: requests are
    /// signed (Signature V4); used by `s3://` paths, never by `http.*`.
    Aws(AwsDef),
}

/// An AWS connection (or one to an S3-compatible service or emulator).
#[derive(Clone)]
pub struct AwsDef {
    /// The region requests are signed for (`us-east-1`).
    pub region: String,
    /// The access key id.
    pub access_key: String,
    /// The secret access key.
    pub secret_key: String,
    /// `endpoint:`: one URL for every service (MinIO, an emulator);
    /// buckets then go in the path. `None`: AWS itself.
    pub endpoint: Option<String>,
}

impl std::fmt::Debug for AwsDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The keys are secrets.
        f.debug_struct("AwsDef")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl ConnectionAuth {
    /// The scheme's name as written (`oauth2`, `bearer`, ...; `none`).
    pub fn kind(&self) -> &'static str {
        match self {
            ConnectionAuth::None => "none",
            ConnectionAuth::Bearer { .. } => "bearer",
            ConnectionAuth::Basic { .. } => "basic",
            ConnectionAuth::ApiKey { .. } => "api_key",
            ConnectionAuth::OAuth2(_) => "oauth2",
            ConnectionAuth::Aws(_) => "aws",
        }
    }
}

/// An OAuth2 connection (RFC 6749).
#[derive(Clone)]
pub struct OAuth2Def {
    /// How access tokens are obtained.
    pub grant: OAuth2Grant,
    /// The token endpoint.
    pub token_url: String,
    /// The client id.
    pub client_id: String,
    /// The client secret, sent with HTTP Basic; `None`: a public client
    /// (the id is sent in the form).
    pub client_secret: Option<String>,
    /// Requested scopes (space-joined in `scope`).
    pub scopes: Vec<&'static str>,
    /// The first refresh token (`oauth2: refresh_token`); a rotated one in
    /// the store takes its place.
    pub refresh_token: Option<String>,
    /// The authorization endpoint, for `BINARY connect NAME`.
    pub authorize_url: Option<String>,
}

/// The OAuth2 grant of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OAuth2Grant {
    /// RFC 6749 §4.4: the client's own credentials.
    ClientCredentials,
    /// RFC 6749 §6: a refresh token a person's consent produced.
    RefreshToken,
}

impl Integration {
    /// The integration's version: the first 12 hex digits of the source
    /// hash (what `env.version` returns and deploy flows see).
    pub fn version(&self) -> String {
        self.source_hash.chars().take(12).collect()
    }

    /// Identity of this build, stored after a successful deploy: flowc
    /// version and full source hash.
    pub fn build_id(&self) -> String {
        format!("{}+{}", self.flowc_version, self.source_hash)
    }
}

/// The future a flow function returns.
pub type FlowFuture = BoxFuture<'static, Result<Outcome, RunError>>;

/// A flow body (or its `on failure` block) as generated code writes it:
/// `fn stock_changed(cx: Ctx) -> FlowFuture { Box::pin(async move { ... }) }`.
pub type FlowFn = fn(Ctx) -> FlowFuture;

/// How a run ended without failing. Failures are `Err(RunError)`.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The body finished.
    Succeeded,
    /// `skip "reason"`.
    Skipped(String),
    /// `respond STATUS, body headers { ... }` (sync flows).
    Respond {
        /// HTTP status code.
        status: u16,
        /// JSON body.
        body: Value,
        /// Extra response headers (values print as in interpolation).
        headers: Vec<(String, Value)>,
    },
}

/// One flow.
#[derive(Clone)]
pub struct FlowDef {
    /// The flow's name.
    pub name: &'static str,
    /// Its doc comment.
    pub doc: &'static str,
    /// What starts it.
    pub trigger: TriggerDef,
    /// The body.
    pub run: FlowFn,
    /// The `on failure { ... }` block; its [`Ctx::error`] holds
    /// `{ message, step, execution_id }`.
    pub on_failure: Option<FlowFn>,
}

/// `verify:` of a webhook or sync trigger: a signature over the request
/// body (LANGUAGE.md §11). Each scheme takes several secrets (rotation:
/// any one that matches admits the request).
#[derive(Clone, Debug)]
pub enum Verify {
    /// `hmac_sha256(header: H, secret: S)`: header `H` holds the lowercase
    /// hex HMAC-SHA256 of the body, optionally prefixed `sha256=`.
    Hmac {
        /// The request header holding the signature (any case).
        header: &'static str,
        /// The shared secrets.
        secrets: Vec<String>,
    },
    /// `stripe(secret: S)`: `Stripe-Signature: t=TS,v1=HEX[,v1=HEX...]`,
    /// the HMAC of `TS.BODY`, with `TS` within `tolerance` of now.
    Stripe {
        /// The endpoint secrets (`whsec_...`, used as text).
        secrets: Vec<String>,
        /// How far the signed timestamp may be from now.
        tolerance: Duration,
    },
    /// `standard_webhooks(secret: S)`: headers `webhook-id`,
    /// `webhook-timestamp` and `webhook-signature` (`v1,BASE64` entries),
    /// the HMAC of `ID.TS.BODY` under the secret's bytes (`whsec_` + base64).
    StandardWebhooks {
        /// The secrets.
        secrets: Vec<String>,
        /// How far the signed timestamp may be from now.
        tolerance: Duration,
    },
}

/// Default `tolerance:` of the timestamped signature schemes: five minutes.
pub const DEFAULT_SIGNATURE_TOLERANCE: Duration = Duration::from_secs(300);

/// `auth:` of a webhook or sync trigger: credentials the caller sends
/// (LANGUAGE.md §11), compared in constant time. Several values: any one
/// admits the request (rotation).
#[derive(Clone, Debug)]
pub enum Auth {
    /// `bearer(TOKEN)`: `Authorization: Bearer TOKEN`.
    Bearer {
        /// The accepted tokens.
        tokens: Vec<String>,
    },
    /// `basic(user: U, password: P)`: `Authorization: Basic base64(U:P)`.
    Basic {
        /// The user name.
        user: String,
        /// The accepted passwords.
        passwords: Vec<String>,
    },
    /// `api_key(header: H, key: K)`: header `H` holds the key.
    ApiKey {
        /// The request header holding the key (any case).
        header: &'static str,
        /// The accepted keys.
        keys: Vec<String>,
    },
    /// `auth: none`: deliberately public.
    Public,
}

impl Verify {
    /// The secrets this check uses.
    pub fn secrets(&self) -> &[String] {
        match self {
            Verify::Hmac { secrets, .. }
            | Verify::Stripe { secrets, .. }
            | Verify::StandardWebhooks { secrets, .. } => secrets,
        }
    }
}

impl Auth {
    /// The secrets this check uses (none for `auth: none`).
    pub fn secrets(&self) -> &[String] {
        match self {
            Auth::Bearer { tokens } => tokens,
            Auth::Basic { passwords, .. } => passwords,
            Auth::ApiKey { keys, .. } => keys,
            Auth::Public => &[],
        }
    }
}

/// Computes the dedupe key from the trigger value (`{ body, headers, query,
/// received_at }`); `None` means "do not dedupe this request".
pub type DedupeFn = fn(&Value) -> Option<String>;

/// Default `max_body` of webhook and sync triggers: 1 MiB.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// What starts a flow. More kinds (subscribe) will be added, so
/// matches outside this crate need a `_` arm.
#[derive(Clone)]
#[non_exhaustive]
pub enum TriggerDef {
    /// `trigger webhook METHOD "/path" { body, verify, auth, dedupe, max_body }`.
    Webhook {
        /// HTTP method in upper case (`"POST"`).
        method: &'static str,
        /// Route path (`"/inventory"`).
        path: &'static str,
        /// Type of the request body (`Schema::Json` when not declared).
        body: Schema,
        /// Signature check.
        verify: Option<Verify>,
        /// Credentials check.
        auth: Option<Auth>,
        /// Dedupe key extractor.
        dedupe: Option<DedupeFn>,
        /// Largest accepted body in bytes ([`DEFAULT_MAX_BODY`]).
        max_body: usize,
    },
    /// `trigger sync METHOD "/path/{id}" timeout 5s [{ body, verify, auth, fallback: async }]`.
    Sync {
        /// HTTP method in upper case.
        method: &'static str,
        /// Route path with `{name}` parameters.
        path: &'static str,
        /// Type of the request body (`Schema::Json` when not declared).
        body: Schema,
        /// How long the caller waits.
        timeout: Duration,
        /// Signature check.
        verify: Option<Verify>,
        /// Credentials check.
        auth: Option<Auth>,
        /// `fallback: async`: on timeout answer 202 and finish in the background.
        fallback_async: bool,
        /// Whether the flow reads `trigger.headers` (or the whole `trigger`).
        /// When it does not, the flow's trigger is built without them, and
        /// they are added only where the run is recorded (a failed or
        /// timed-out run, the fallback to async): turning every header into
        /// JSON costs a sync request more than anything else on its way in.
        reads_headers: bool,
    },
    /// `trigger schedule "CRON" [tz "Zone"]` (5-field cron, or 6 with seconds).
    Cron {
        /// The cron expression.
        expr: &'static str,
        /// IANA time zone; UTC when `None`.
        tz: Option<&'static str>,
        /// Run a tick missed while the service was down once at start-up.
        catch_up: bool,
    },
    /// `trigger schedule every 5m`.
    Every {
        /// The period.
        period: Duration,
        /// Run a tick missed while the service was down once at start-up.
        catch_up: bool,
    },
    /// `trigger dispatch (input: T)`.
    Dispatch {
        /// Type of the input.
        input: Schema,
    },
    /// `trigger deploy`.
    Deploy,
    /// `trigger remove`: runs on `BINARY undeploy`, with the deploy
    /// trigger's value (the endpoints to unregister).
    Remove,
    /// `trigger files "GLOB" every D { batch, after, auth, done_marker }`
    /// (see [`crate::triggers::files`]).
    Files(FilesTrigger),
    /// `trigger subscribe BROKER "subject" { url, body, group, durable }`
    /// (see [`crate::brokers`]).
    Subscribe(SubscribeTrigger),
    /// `trigger email "MAILBOX" every D { url, after }` (see
    /// `crate::triggers::email`, feature `email_in`).
    Email(EmailTrigger),
}

/// An email trigger's settings.
#[derive(Clone, Debug)]
pub struct EmailTrigger {
    /// The mailbox read (`"INBOX"`).
    pub mailbox: &'static str,
    /// How often it is polled.
    pub every: Duration,
    /// `imaps://user:password@host[:port]` or `imap://...` (STARTTLS);
    /// usually a `Secret` config value; never logged.
    pub url: String,
    /// What happens to a message once its run is stored.
    pub after: EmailAfter,
}

/// `after:` of an email trigger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EmailAfter {
    /// Move into this mailbox (created when missing); `Processed` by default.
    MoveTo(&'static str),
    /// `after: seen`: flag `\Seen` and leave it in the mailbox.
    Seen,
}

/// A subscribe trigger's settings.
#[derive(Clone, Debug)]
pub struct SubscribeTrigger {
    /// `nats`, `redis`, `amqp`, `mqtt`, `kafka` or `sqs`.
    pub broker: &'static str,
    /// The subject, stream, queue or topic filter.
    pub subject: &'static str,
    /// The broker's URL (usually a `Secret` config value; never logged;
    /// empty for `sqs`, reached through `via`).
    pub url: String,
    /// Type of the message body (`Schema::Json` when not declared).
    pub body: Schema,
    /// `group:`: NATS queue group, Redis consumer group.
    pub group: Option<String>,
    /// `durable:`: NATS JetStream durable consumer name.
    pub durable: Option<String>,
    /// `via:`: the `aws:` connection of an SQS queue.
    pub via: Option<&'static str>,
}

/// A files trigger's settings.
#[derive(Clone, Debug)]
pub struct FilesTrigger {
    /// `"inbox/*.xml"` (relative to the working directory), `"/abs/dir/*.csv"`
    /// or `"sftp://user@host[:port]/dir/*.csv"`; wildcards in the last segment
    /// only. Filled in from the config at start-up (`"${config.inbox}/*.csv"`,
    /// [`Config::fill`]).
    pub glob: String,
    /// How often the folder is scanned.
    pub every: Duration,
    /// `batch: true`: all ready files of a scan go to one run as `.files`.
    pub batch: bool,
    /// What happens to a file after its run succeeded.
    pub after: AfterRun,
    /// `auth:`: the SFTP password or private key (a `Secret` config value).
    pub auth: Option<String>,
    /// `via:`: the `aws` connection of an `s3://` glob.
    pub via: Option<&'static str>,
    /// `done_marker: ".done"`: a file is ready once `NAME.done` exists beside
    /// it (instead of when its size and time stop changing).
    pub done_marker: Option<&'static str>,
}

/// `after:` of a files trigger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AfterRun {
    /// Move into this folder; a relative folder is taken beside the file
    /// (the default is `processed/`).
    MoveTo(&'static str),
    /// `after: delete`.
    Delete,
}

impl Default for AfterRun {
    fn default() -> Self {
        AfterRun::MoveTo("processed/")
    }
}

impl TriggerDef {
    /// `verify:` and `auth:` of a webhook or sync trigger; `None` for the
    /// other kinds.
    pub fn caller_checks(&self) -> Option<(Option<&Verify>, Option<&Auth>)> {
        match self {
            TriggerDef::Webhook { verify, auth, .. } | TriggerDef::Sync { verify, auth, .. } => {
                Some((verify.as_ref(), auth.as_ref()))
            }
            _ => None,
        }
    }

    /// A short name of the kind (`webhook`, `sync`, `schedule`, `dispatch`, `deploy`).
    pub fn kind(&self) -> &'static str {
        match self {
            TriggerDef::Webhook { .. } => "webhook",
            TriggerDef::Sync { .. } => "sync",
            TriggerDef::Cron { .. } | TriggerDef::Every { .. } => "schedule",
            TriggerDef::Dispatch { .. } => "dispatch",
            TriggerDef::Deploy => "deploy",
            TriggerDef::Remove => "remove",
            TriggerDef::Files(_) => "files",
            TriggerDef::Subscribe(_) => "subscribe",
            TriggerDef::Email(_) => "email",
        }
    }

    /// `(method, path)` for HTTP triggers.
    pub fn route(&self) -> Option<(&'static str, &'static str)> {
        match self {
            TriggerDef::Webhook { method, path, .. } | TriggerDef::Sync { method, path, .. } => {
                Some((method, path))
            }
            _ => None,
        }
    }

    /// A one-line human description (`webhook POST /inventory`, `schedule every 5m`).
    pub fn describe(&self) -> String {
        match self {
            TriggerDef::Webhook { method, path, .. } => format!("webhook {method} {path}"),
            TriggerDef::Sync {
                method,
                path,
                timeout,
                ..
            } => format!("sync {method} {path} timeout {}", human_duration(*timeout)),
            TriggerDef::Cron { expr, tz, .. } => match tz {
                Some(tz) => format!("schedule \"{expr}\" tz \"{tz}\""),
                None => format!("schedule \"{expr}\""),
            },
            TriggerDef::Every { period, .. } => {
                format!("schedule every {}", human_duration(*period))
            }
            TriggerDef::Dispatch { input } => format!("dispatch (input: {})", input.describe()),
            TriggerDef::Deploy => "deploy".into(),
            TriggerDef::Remove => "remove".into(),
            TriggerDef::Files(f) => {
                format!("files \"{}\" every {}", f.glob, human_duration(f.every))
            }
            TriggerDef::Subscribe(t) => format!("subscribe {} \"{}\"", t.broker, t.subject),
            TriggerDef::Email(t) => {
                format!("email \"{}\" every {}", t.mailbox, human_duration(t.every))
            }
        }
    }
}

/// Formats a duration the way the language writes it (`500ms`, `30s`, `5m`).
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= size && ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}
