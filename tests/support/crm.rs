//! A CRM stand-in for `examples/crm_per_customer.flow` (`#[path =
//! "support/crm.rs"] mod crm;` next to `mod support;`): one per customer,
//! each on its own loopback port (a [`Sink`] answering as the CRM would).
//!
//! - `POST /oauth/token` issues OAuth2 client-credentials tokens to its one
//!   client (HTTP Basic, or `client_id`/`client_secret` in the form), each
//!   token unique to this CRM;
//! - every other route wants `Authorization: Bearer <a token it issued>`
//!   and answers `401` otherwise (counted: [`Crm::refused`]);
//! - `POST /hooks` registers a webhook (`{"url": ...}`), `DELETE
//!   /hooks?url=...` removes it (`404` when unknown), `GET /hooks` lists
//!   them;
//! - `GET /changes?since=N` lists the changes after `N` (the test appends
//!   them with [`Crm::add_change`]) and the new cursor;
//! - `POST /acks` and `POST /contacts/{id}/notes` are accepted.
//!
//! Every request is recorded ([`Crm::calls`]) with the token it carried.

// Each test file uses a different part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::support::{Received, Reply, Sink};

/// Numbers the CRMs of a test process, so that no two issue the same token.
static CRMS: AtomicU64 = AtomicU64::new(0);

/// One request the CRM received.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    /// The query, percent-decoded.
    pub query: HashMap<String, String>,
    pub body: Value,
    /// The bearer token it carried, if any.
    pub token: Option<String>,
    pub at: Instant,
}

struct CrmState {
    client_id: String,
    client_secret: String,
    /// This CRM's number (in its tokens).
    number: u64,
    /// Every access token issued, in order.
    issued: Vec<String>,
    /// Answers `401` to a call without a valid token.
    refused: usize,
    /// `(seq, contact_id)`, seq from 1.
    changes: Vec<(i64, String)>,
    /// Registered webhook URLs.
    hooks: Vec<String>,
}

/// A CRM of one customer. Stopped when dropped.
pub struct Crm {
    sink: Sink,
    state: Arc<Mutex<CrmState>>,
}

impl Crm {
    /// Starts a CRM whose one OAuth2 client is `client_id`/`client_secret`.
    pub fn start(client_id: &str, client_secret: &str) -> Crm {
        let state = Arc::new(Mutex::new(CrmState {
            client_id: client_id.to_string(),
            client_secret: client_secret.to_string(),
            number: CRMS.fetch_add(1, Ordering::Relaxed) + 1,
            issued: Vec::new(),
            refused: 0,
            changes: Vec::new(),
            hooks: Vec::new(),
        }));
        let answering = state.clone();
        let sink = Sink::responding(move |r: &Received, _| {
            let mut s = answering.lock().unwrap_or_else(|e| e.into_inner());
            answer(&mut s, r)
        });
        Crm { sink, state }
    }

    fn with<T>(&self, f: impl FnOnce(&mut CrmState) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        self.sink.url()
    }

    /// Its token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}/oauth/token", self.url())
    }

    /// The config of `examples/crm_per_customer.flow` for this CRM, as the
    /// JSON an instance is created with.
    pub fn config(&self) -> Value {
        let (id, secret) = self.with(|s| (s.client_id.clone(), s.client_secret.clone()));
        json!({
            "crm_url": self.url(),
            "crm_token_url": self.token_url(),
            "client_id": id,
            "client_secret": secret,
        })
    }

    /// Every request received so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.sink.requests().iter().map(call).collect()
    }

    /// The requests to `METHOD path` so far.
    pub fn calls_to(&self, method: &str, path: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method && c.path == path)
            .collect()
    }

    /// The polls of the change feed (`GET /changes`) so far.
    pub fn polls(&self) -> Vec<Call> {
        self.calls_to("GET", "/changes")
    }

    /// Every access token this CRM issued.
    pub fn tokens(&self) -> Vec<String> {
        self.with(|s| s.issued.clone())
    }

    /// How many calls were refused for want of a valid token.
    pub fn refused(&self) -> usize {
        self.with(|s| s.refused)
    }

    /// The webhook URLs registered now.
    pub fn hooks(&self) -> Vec<String> {
        self.with(|s| s.hooks.clone())
    }

    /// Appends a change of `contact_id` to the feed; returns its seq.
    pub fn add_change(&self, contact_id: &str) -> i64 {
        self.with(|s| {
            let seq = s.changes.len() as i64 + 1;
            s.changes.push((seq, contact_id.to_string()));
            seq
        })
    }

    /// Waits (at most `timeout`, then the test fails naming `what` and
    /// listing the calls) until the calls satisfy `done`; returns them.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&[Call]) -> bool,
    ) -> Vec<Call> {
        let deadline = Instant::now() + timeout;
        loop {
            let calls = self.calls();
            if done(&calls) {
                return calls;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; the CRM at {} received:\n{}",
                self.url(),
                self.summary()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// One line per call, for failure messages.
    pub fn summary(&self) -> String {
        self.calls()
            .iter()
            .map(|c| {
                let mut q: Vec<_> = c.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
                q.sort();
                format!("{} {}?{} {}", c.method, c.path, q.join("&"), c.body)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn call(r: &Received) -> Call {
    Call {
        method: r.method.clone(),
        path: r.path.clone(),
        query: form_fields(r.query.as_bytes()),
        body: r.body.clone(),
        token: bearer(r).map(str::to_string),
        at: r.at,
    }
}

fn bearer(r: &Received) -> Option<&str> {
    r.header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
}

fn answer(s: &mut CrmState, r: &Received) -> Reply {
    if r.method == "POST" && r.path == "/oauth/token" {
        return token(s, r);
    }
    if !bearer(r).is_some_and(|t| s.issued.iter().any(|i| i == t)) {
        s.refused += 1;
        return Reply::json(401, json!({ "error": "invalid_token" }))
            .header("WWW-Authenticate", "Bearer");
    }
    let query = form_fields(r.query.as_bytes());
    match (r.method.as_str(), r.path.as_str()) {
        ("POST", "/hooks") => {
            let Some(url) = r.body["url"].as_str() else {
                return Reply::json(422, json!({ "error": "url missing" }));
            };
            s.hooks.push(url.to_string());
            Reply::json(201, json!({ "id": s.hooks.len(), "url": url }))
        }
        ("DELETE", "/hooks") => {
            let url = query.get("url").cloned().unwrap_or_default();
            match s.hooks.iter().position(|h| *h == url) {
                Some(i) => {
                    s.hooks.remove(i);
                    Reply::status(204)
                }
                None => Reply::json(404, json!({ "error": "no such hook" })),
            }
        }
        ("GET", "/hooks") => Reply::json(200, json!({ "hooks": s.hooks })),
        ("GET", "/changes") => {
            let since = query
                .get("since")
                .and_then(|n| n.parse::<i64>().ok())
                .unwrap_or(0);
            let changes: Vec<Value> = s
                .changes
                .iter()
                .filter(|(seq, _)| *seq > since)
                .map(|(seq, id)| json!({ "seq": seq, "contact_id": id }))
                .collect();
            let cursor = s.changes.last().map_or(since, |(seq, _)| *seq.max(&since));
            Reply::json(200, json!({ "changes": changes, "cursor": cursor }))
        }
        ("POST", "/acks") => Reply::json(200, json!({})),
        ("POST", p) if p.starts_with("/contacts/") && p.ends_with("/notes") => {
            Reply::json(201, json!({}))
        }
        _ => Reply::json(404, json!({ "error": "no such route" })),
    }
}

/// The token endpoint: client credentials only, for this CRM's client.
fn token(s: &mut CrmState, r: &Received) -> Reply {
    let form = form_fields(&r.raw);
    let basic = r
        .header("authorization")
        .and_then(|h| h.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|b| {
            b.split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
        });
    let (id, secret) = basic.unwrap_or_else(|| {
        (
            form.get("client_id").cloned().unwrap_or_default(),
            form.get("client_secret").cloned().unwrap_or_default(),
        )
    });
    if id != s.client_id || secret != s.client_secret {
        return Reply::json(401, json!({ "error": "invalid_client" }));
    }
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return Reply::json(400, json!({ "error": "unsupported_grant_type" }));
    }
    let token = format!("crm{}-token-{}", s.number, s.issued.len() + 1);
    s.issued.push(token.clone());
    Reply::json(
        200,
        json!({ "access_token": token, "token_type": "Bearer", "expires_in": 3600 }),
    )
}

/// `a=1&b=x%20y` (a query or a form body) as a map, percent- and
/// `+`-decoded.
pub fn form_fields(raw: &[u8]) -> HashMap<String, String> {
    String::from_utf8_lossy(raw)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
