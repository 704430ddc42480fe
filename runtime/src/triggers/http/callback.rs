//! `X-Callback-Url` callbacks of sync runs that fell back to async.
//!
//! Off unless the operator lists the hosts callbacks may go to
//! (`--callback-hosts`). When on, a URL whose host is not listed is refused
//! at intake (`400`); an accepted one is stored with the execution when it
//! falls back to async ([`Callbacks::register`]), and the delivery task
//! ([`start`]) of whichever process sees the run ended POSTs the result,
//! signed, retrying with backoff across restarts until a receiver answers
//! 2xx or the callback expires. A claim holds a callback for
//! [`CLAIM_LEASE`], so replicas sharing a store do not send it together;
//! a process that dies mid-attempt leaves it to be sent again: delivery is
//! at least once, and `X-Flow-Delivery-Id` lets the receiver drop repeats.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::Utc;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::error_response;
use crate::core::error::error_chain;
use crate::core::outbound::{url_host, CallbackHosts, CheckedResolver, Host};
use crate::core::redact::url_for_errors;
use crate::engine::Runtime;
use crate::store::{Callback, CallbackOutcome, Execution, NewCallback, Status};

/// Default of [`CallbackSettings::expiry`]: a callback not delivered within
/// a day is given up.
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(24 * 3600);

/// The first retry waits this long; each next one twice as long as the
/// one before, up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// How long one attempt may take (connect, send, answer).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a claimed callback is left to its claimer before another
/// process may send it (well above [`ATTEMPT_TIMEOUT`]).
pub const CLAIM_LEASE: Duration = Duration::from_secs(30);

/// How often the delivery task looks for due callbacks when nothing wakes
/// it (runs ended in other replicas, retries coming due).
const POLL: Duration = Duration::from_secs(1);

/// Callbacks sent at once by one process.
const BATCH: usize = 16;

/// The operator's callback settings (`--callback-hosts`,
/// `FLOW_CALLBACK_SECRET`).
#[derive(Clone)]
pub struct CallbackSettings {
    /// Where callbacks may go.
    pub hosts: CallbackHosts,
    /// The key of `X-Flow-Signature`.
    pub secret: String,
    /// Given up if not delivered within this long.
    pub expiry: Duration,
}

impl std::fmt::Debug for CallbackSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackSettings")
            .field("hosts", &self.hosts)
            .field("secret", &"***")
            .field("expiry", &self.expiry)
            .finish()
    }
}

impl CallbackSettings {
    /// The settings from the `--callback-hosts` list and the secret:
    /// `None` (callbacks off) for an empty list; an error for a bad entry,
    /// or a list without a secret (a receiver could not tell our callbacks
    /// from forged ones).
    pub fn from_options(
        hosts: &str,
        secret: Option<&str>,
    ) -> Result<Option<CallbackSettings>, String> {
        let hosts = CallbackHosts::parse(hosts)?;
        if hosts.is_empty() {
            return Ok(None);
        }
        match secret.filter(|s| !s.is_empty()) {
            Some(secret) => Ok(Some(CallbackSettings {
                hosts,
                secret: secret.to_string(),
                expiry: DEFAULT_EXPIRY,
            })),
            None => Err(
                "FLOW_CALLBACK_SECRET (--callback-secret) is not set, but --callback-hosts \
                 turns callbacks on: set it to a long random secret (receivers check \
                 X-Flow-Signature with it)"
                    .into(),
            ),
        }
    }
}

/// Callbacks at work: the settings, the HTTP client that sends them and
/// the delivery task's wake-up.
pub struct Callbacks {
    settings: CallbackSettings,
    client: reqwest::Client,
    wake: Notify,
}

impl Callbacks {
    /// Callbacks with `settings`; their client refuses redirects, proxies
    /// and unchecked addresses.
    pub fn new(settings: CallbackSettings) -> Result<Arc<Callbacks>, String> {
        let resolver = CheckedResolver::new(Arc::new(settings.hosts.clone()));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve the name itself, past the check.
            .no_proxy()
            .dns_resolver(Arc::new(resolver))
            .connect_timeout(ATTEMPT_TIMEOUT)
            .timeout(ATTEMPT_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the callback client: {}", error_chain(&e)))?;
        Ok(Arc::new(Callbacks {
            settings,
            client,
            wake: Notify::new(),
        }))
    }

    /// The callback to store with the execution `execution_id`.
    pub(super) fn register(&self, execution_id: &str, url: String) -> NewCallback {
        NewCallback {
            id: uuid::Uuid::now_v7().to_string(),
            execution_id: execution_id.to_string(),
            url,
            expires_in: self.settings.expiry,
        }
    }

    /// Tells the delivery task a run with a callback has ended.
    pub(super) fn ended(&self) {
        self.wake.notify_one();
    }
}

/// The `X-Callback-Url` of a sync request, if it asks for one that will be
/// honoured: ignored for flows without `fallback: async` and while
/// callbacks are off; refused (`400`) when on and its host is not listed.
pub(super) fn requested(
    callbacks: Option<&Callbacks>,
    headers: &HeaderMap,
    fallback_async: bool,
) -> Result<Option<String>, Response> {
    let Some(value) = headers.get("x-callback-url").filter(|_| fallback_async) else {
        return Ok(None);
    };
    let Some(callbacks) = callbacks else {
        static OFF: std::sync::Once = std::sync::Once::new();
        OFF.call_once(|| {
            tracing::info!("X-Callback-Url ignored: callbacks are off (see --callback-hosts)")
        });
        return Ok(None);
    };
    let bad = |m: &str| Err(error_response(StatusCode::BAD_REQUEST, m));
    let Some(url) = value
        .to_str()
        .ok()
        .and_then(|v| reqwest::Url::parse(v).ok())
    else {
        return bad("X-Callback-Url is not a URL");
    };
    if !matches!(url.scheme(), "http" | "https") {
        return bad("X-Callback-Url must be an http or https URL");
    }
    if !allowed(&callbacks.settings.hosts, &url) {
        return bad("X-Callback-Url host not allowed");
    }
    Ok(Some(url.to_string()))
}

/// Whether `url` names a listed host, and, when that host is an address,
/// one the address policy accepts (names are checked when resolved, by the
/// client's [`CheckedResolver`]).
fn allowed(hosts: &CallbackHosts, url: &reqwest::Url) -> bool {
    hosts.allows_url(url)
        && match url_host(url) {
            Some(Host::Ip(ip)) => hosts.address_allowed(&ip.to_string(), ip),
            _ => true,
        }
}

/// Starts the delivery task: it sends due callbacks of ended runs until
/// shutdown.
pub fn start(rt: &Runtime, callbacks: Arc<Callbacks>) -> JoinHandle<()> {
    tokio::spawn(deliver_loop(rt.clone(), callbacks))
}

async fn deliver_loop(rt: Runtime, callbacks: Arc<Callbacks>) {
    use futures::StreamExt as _;
    loop {
        let due = match rt.store().claim_callbacks(BATCH, CLAIM_LEASE).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for due callbacks");
                Vec::new()
            }
        };
        let full = due.len() == BATCH;
        futures::stream::iter(due)
            .for_each_concurrent(BATCH, |c| deliver(&rt, &callbacks, c))
            .await;
        if full {
            continue;
        }
        tokio::select! {
            _ = rt.shutdown_started() => return,
            _ = callbacks.wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// One attempt at `c`, recorded in the store.
async fn deliver(rt: &Runtime, callbacks: &Callbacks, c: Callback) {
    let outcome = attempt(rt, callbacks, &c).await;
    let url = url_for_errors(&c.url);
    match &outcome {
        CallbackOutcome::Delivered => {
            tracing::info!(execution_id = %c.execution_id, url = %url, attempt = c.attempts, "callback delivered")
        }
        CallbackOutcome::Retry { after, error } => tracing::warn!(
            execution_id = %c.execution_id, url = %url, attempt = c.attempts,
            retry_in_s = after.as_secs(), error = %rt.redactor().redact(error),
            "callback failed"
        ),
        CallbackOutcome::GiveUp { error } => tracing::warn!(
            execution_id = %c.execution_id, url = %url, attempt = c.attempts,
            error = %rt.redactor().redact(error), "callback given up"
        ),
    }
    if let Err(e) = rt.store().settle_callback(&c.id, outcome).await {
        // Due again when its claim runs out.
        tracing::warn!(execution_id = %c.execution_id, error = %e, "cannot record a callback attempt");
    }
}

async fn attempt(rt: &Runtime, callbacks: &Callbacks, c: &Callback) -> CallbackOutcome {
    let give_up = |error: &str| CallbackOutcome::GiveUp {
        error: error.to_string(),
    };
    let retry = |error: String| CallbackOutcome::Retry {
        after: backoff(c.attempts),
        error,
    };
    let Ok(url) = reqwest::Url::parse(&c.url) else {
        return give_up("not a URL");
    };
    // The list may have changed since intake (a restart with new settings).
    if !allowed(&callbacks.settings.hosts, &url) {
        return give_up("its host is no longer allowed by --callback-hosts");
    }
    let exec = match rt.store().get(&c.execution_id).await {
        Ok(Some(exec)) => exec,
        Ok(None) => return give_up("its execution is no longer stored"),
        Err(e) => return retry(e.to_string()),
    };
    let body = payload(&exec).to_string();
    let signature = signature(&callbacks.settings.secret, Utc::now().timestamp(), &body);
    let sent = callbacks
        .client
        .post(url)
        .header("content-type", "application/json")
        .header("x-flow-signature", signature)
        .header("x-flow-execution-id", &c.execution_id)
        .header("x-flow-delivery-id", &c.id)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => CallbackOutcome::Delivered,
        Ok(r) if r.status().is_redirection() => {
            retry(format!("HTTP {} (redirects are not followed)", r.status()))
        }
        Ok(r) => retry(format!("HTTP {}", r.status())),
        Err(e) => retry(error_chain(&e.without_url())),
    }
}

/// The wait after the `attempts`-th failed attempt: 1 s, 2 s, 4 s, … up
/// to 10 min.
pub fn backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(20);
    FIRST_BACKOFF
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF)
}

/// What a callback says: the run's id and status and, unless it failed,
/// the status and body it answers with. A failed run's error stays in the
/// execution record (as for the sync answer, the receiver may be anyone).
pub fn payload(exec: &Execution) -> Value {
    if exec.status == Status::Failed {
        return json!({ "execution_id": exec.id, "status": "failed" });
    }
    let result = exec.result.as_ref();
    let field = |k: &str| {
        result
            .and_then(|r| r.get(k))
            .cloned()
            .unwrap_or(Value::Null)
    };
    json!({
        "execution_id": exec.id,
        "status": exec.status.as_str(),
        "http_status": field("status"),
        "body": field("body"),
    })
}

/// `X-Flow-Signature`: `t=TIMESTAMP,v1=HEX`, HEX the HMAC-SHA256 of
/// `TIMESTAMP.BODY` under `secret` (the timestamp signed with the body, so
/// a captured callback cannot be replayed later as a fresh one).
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let signed = format!("{timestamp}.{body}");
    let mac = crate::core::hmac::hmac_hex(secret.as_bytes(), signed.as_bytes());
    format!("t={timestamp},v1={mac}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_from_a_second_to_ten_minutes() {
        let waits: Vec<u64> = (1..=12).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn callbacks_need_a_secret_once_hosts_are_listed() {
        assert!(CallbackSettings::from_options("", None).unwrap().is_none());
        for secret in [None, Some("")] {
            let err = CallbackSettings::from_options("hooks.example.com", secret).unwrap_err();
            assert!(err.contains("FLOW_CALLBACK_SECRET"), "{err}");
        }
        let on = CallbackSettings::from_options("hooks.example.com", Some("s3cret-key"))
            .unwrap()
            .unwrap();
        assert!(!format!("{on:?}").contains("s3cret-key"));
        assert!(CallbackSettings::from_options("bad host", Some("k")).is_err());
    }

    #[test]
    fn a_failed_run_calls_back_without_its_error() {
        let exec = Execution {
            id: "exec-1".into(),
            flow: "lookup".into(),
            status: Status::Failed,
            trigger: Value::Null,
            dedupe_key: None,
            created_at: Utc::now(),
            started_at: None,
            finished_at: None,
            attempts: 1,
            result: Some(json!({ "status": 200, "body": { "secret": "x" } })),
            error: Some("SQL error: relation \"users\" does not exist".into()),
            error_step: Some("fetch".into()),
            lease_owner: None,
            lease_expires: None,
            lease_epoch: 0,
        };
        assert_eq!(
            payload(&exec),
            json!({ "execution_id": "exec-1", "status": "failed" })
        );
    }

    #[test]
    fn the_signature_covers_timestamp_and_body() {
        let s = signature("key", 1700000000, "{}");
        let mac = crate::core::hmac::hmac_hex(b"key", b"1700000000.{}");
        assert_eq!(s, format!("t=1700000000,v1={mac}"));
        assert_ne!(s, signature("key", 1700000001, "{}"));
    }
}
