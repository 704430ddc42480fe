//! `BINARY connect NAME` (LANGUAGE.md §12): the OAuth2 authorization-code
//! flow (RFC 6749 §4.1) with PKCE (RFC 7636, method `S256`), run once for
//! an `oauth2: refresh_token` connection whose service needs a person's
//! consent.
//!
//! The command listens on a loopback port (RFC 8252 §7.3), prints the
//! authorization URL to open, and waits for the browser's redirect to
//! `http://127.0.0.1:PORT/callback`. A redirect is accepted only with the
//! `state` this command made (a stray request is answered `400` and
//! ignored); its code is exchanged at the token endpoint together with the
//! PKCE verifier, and the tokens are saved in the store, where `serve`
//! takes the refresh token from.
//!
//! The code, the verifier, the tokens and the client secret are never
//! printed; they are also given to the log redactor as soon as they exist.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse as _, Response};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tokio::sync::{oneshot, Mutex as AsyncMutex};

use crate::core::redact::Redactor;
use crate::engine::connection::request_token;
use crate::engine::integration::{human_duration, ConnectionAuth, OAuth2Def, OAuth2Grant};
use crate::engine::{new_execution_id, Runtime};
use crate::store::Store;

/// The claim on the connection's token fetch taken while the new tokens
/// are saved (so that a replica refreshing at that moment does not
/// overwrite them with tokens of the old grant), and how long to wait for
/// a replica holding it (its claim runs out after 40 s).
const SAVE_CLAIM: Duration = Duration::from_secs(40);
const SAVE_CLAIM_WAIT: Duration = Duration::from_secs(45);

/// How long the answer to the browser may take once the outcome is known.
const LAST_ANSWER: Duration = Duration::from_secs(5);

/// Why `connect` did not connect: the process's exit code (2: the command
/// or the connection is not usable as given; 1: the flow failed) and a
/// message without secrets.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub code: u8,
    /// What went wrong.
    pub message: String,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: 2,
            message: message.into(),
        }
    }

    fn failed(message: impl Into<String>) -> Failure {
        Failure {
            code: 1,
            message: message.into(),
        }
    }
}

/// Runs the authorization-code flow for connection `name`: prints
/// `open: URL` on stdout, waits at most `timeout` for the redirect on
/// `127.0.0.1:port` (0: any free port) and saves the tokens in the
/// runtime's store. `Ok` once they are saved.
pub async fn connect(
    rt: &Runtime,
    name: &str,
    port: u16,
    timeout: Duration,
) -> Result<(), Failure> {
    let (connection, oauth) = connectable(rt, name)?;
    let authorize = authorize_endpoint(connection, &oauth)?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| {
            Failure::failed(format!(
                "cannot listen on 127.0.0.1:{port} for the redirect: {e}"
            ))
        })?;
    let port = listener
        .local_addr()
        .map_err(|e| Failure::failed(format!("cannot listen for the redirect: {e}")))?
        .port();
    let redirect_uri = format!("http://127.0.0.1:{port}/callback");
    let state = random_token();
    let verifier = random_token();
    let redactor = rt.redactor().clone();
    redactor.add(&verifier);
    if let Some(secret) = &oauth.client_secret {
        redactor.add(secret);
    }
    let url = authorize_url(
        authorize,
        &oauth.client_id,
        &redirect_uri,
        &oauth.scopes,
        &state,
        &pkce_challenge(&verifier),
    );
    println!("open: {url}");
    eprintln!(
        "{}: open the URL above in a browser, sign in and consent; waiting (at most {}, --timeout) for the redirect to {redirect_uri}",
        rt.integration().name,
        human_duration(timeout)
    );

    let (outcome_tx, outcome_rx) = oneshot::channel();
    let pending = Arc::new(Pending {
        binary: rt.integration().name,
        connection,
        oauth,
        state,
        verifier,
        redirect_uri,
        store: rt.store().clone(),
        http: rt.http_client().clone(),
        redactor,
        outcome: AsyncMutex::new(Some(outcome_tx)),
    });
    let router = axum::Router::new()
        .route("/callback", axum::routing::get(callback))
        .with_state(pending.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    let mut outcome_rx = outcome_rx;
    let stopped_early = || Failure::failed("the receiver of the redirect stopped");
    let outcome = match tokio::time::timeout(timeout, &mut outcome_rx).await {
        Ok(outcome) => outcome.unwrap_or_else(|_| Err(stopped_early())),
        // A redirect being handled at this moment is finished first (its
        // code may already be spent); later ones find it taken.
        Err(_) => {
            let unanswered = pending.outcome.lock().await.take();
            if unanswered.is_some() {
                Err(Failure::failed(format!(
                    "connection `{connection}`: no redirect within {}; run `{} connect {connection}` again (and open the new URL)",
                    human_duration(timeout),
                    rt.integration().name
                )))
            } else {
                outcome_rx.await.unwrap_or_else(|_| Err(stopped_early()))
            }
        }
    };
    // The browser's answer is written before the process ends.
    let _ = stop.send(());
    let _ = tokio::time::timeout(LAST_ANSWER, server).await;
    outcome
}

/// The connection `name` and its OAuth2 declaration, if `connect` applies
/// to it.
fn connectable(rt: &Runtime, name: &str) -> Result<(&'static str, OAuth2Def), Failure> {
    let connections = &rt.inner.connections;
    let Some(connection) = connections.get(name) else {
        let mut names: Vec<&str> = connections.all().map(|c| c.name()).collect();
        names.sort_unstable();
        let mut consent: Vec<&str> = connections
            .all()
            .filter(|c| refresh_grant(&c.def().auth))
            .map(|c| c.name())
            .collect();
        consent.sort_unstable();
        return Err(Failure::usage(if names.is_empty() {
            format!("no connection named `{name}`: this integration declares no connection")
        } else if consent.is_empty() {
            format!(
                "no connection named `{name}`; the connections are: {}",
                names.join(", ")
            )
        } else {
            format!(
                "no connection named `{name}`; the connections are: {} (`connect` is for: {})",
                names.join(", "),
                consent.join(", ")
            )
        }));
    };
    let name = connection.name();
    let oauth = match &connection.def().auth {
        ConnectionAuth::OAuth2(oauth) => oauth,
        other => {
            return Err(Failure::usage(format!(
                "connection `{name}` uses `{}:`, not `oauth2:`; `connect` runs the OAuth2 consent of an `oauth2: refresh_token` connection",
                other.kind()
            )))
        }
    };
    if oauth.grant == OAuth2Grant::ClientCredentials {
        return Err(Failure::usage(format!(
            "connection `{name}` uses `oauth2: client_credentials`, which needs no person's consent (the client's own credentials get its tokens); `connect` is for `oauth2: refresh_token` connections"
        )));
    }
    Ok((name, oauth.clone()))
}

fn refresh_grant(auth: &ConnectionAuth) -> bool {
    matches!(auth, ConnectionAuth::OAuth2(o) if o.grant == OAuth2Grant::RefreshToken)
}

/// The connection's authorization endpoint, parsed.
fn authorize_endpoint(name: &str, oauth: &OAuth2Def) -> Result<reqwest::Url, Failure> {
    let Some(given) = oauth
        .authorize_url
        .as_deref()
        .filter(|u| !u.trim().is_empty())
    else {
        return Err(Failure::usage(format!(
            "connection `{name}` has no `authorize_url`: add `authorize_url: config.{name}_authorize_url` (the service's authorization endpoint) to the connection, and that entry to the config"
        )));
    };
    match reqwest::Url::parse(given.trim()) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(url),
        _ => Err(Failure::usage(format!(
            "connection `{name}`: `authorize_url` {:?} is not an http(s) URL",
            crate::core::redact::url_for_errors(given)
        ))),
    }
}

/// The URL the person opens: `authorize` with the request's parameters
/// added to any query it already has (RFC 6749 §4.1.1, RFC 7636 §4.3).
fn authorize_url(
    mut authorize: reqwest::Url,
    client_id: &str,
    redirect_uri: &str,
    scopes: &[&str],
    state: &str,
    challenge: &str,
) -> reqwest::Url {
    {
        let mut query = authorize.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect_uri);
        if !scopes.is_empty() {
            query.append_pair("scope", &scopes.join(" "));
        }
        query
            .append_pair("state", state)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256");
    }
    authorize
}

/// 256 random bits from the thread's CSPRNG, URL-safe base64 without
/// padding: 43 characters, all unreserved (RFC 7636 §4.1), for the `state`
/// and the PKCE verifier.
fn random_token() -> String {
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))` (RFC 7636 §4.2, S256).
fn pkce_challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// What the redirect's handler needs.
struct Pending {
    binary: &'static str,
    connection: &'static str,
    oauth: OAuth2Def,
    state: String,
    verifier: String,
    redirect_uri: String,
    store: Arc<dyn Store>,
    http: reqwest::Client,
    redactor: Redactor,
    /// Taken by the first redirect with the right `state` that carries a
    /// code or an error; held while its code is exchanged.
    outcome: AsyncMutex<Option<oneshot::Sender<Result<(), Failure>>>>,
}

impl Pending {
    fn state_matches(&self, given: &str) -> bool {
        given.len() == self.state.len() && bool::from(given.as_bytes().ct_eq(self.state.as_bytes()))
    }

    /// Exchanges `code` for tokens (RFC 6749 §4.1.3, RFC 7636 §4.5) and
    /// saves them.
    async fn exchange(&self, code: &str) -> Result<(), Failure> {
        let form = vec![
            ("grant_type", "authorization_code".to_string()),
            ("code", code.to_string()),
            ("redirect_uri", self.redirect_uri.clone()),
            ("code_verifier", self.verifier.clone()),
        ];
        let answer = request_token(self.connection, &self.oauth, form, &self.http)
            .await
            .map_err(|e| Failure::failed(self.redactor.redact_string(e.message)))?;
        self.redactor.add(&answer.access_token);
        let Some(refresh_token) = answer.refresh_token else {
            return Err(Failure::failed(format!(
                "connection `{}`: the service issued no refresh token, so nothing was saved; it often issues one only for offline access: add the `offline_access` scope (or the service's equivalent, such as `access_type=offline` in `authorize_url`) and run `{} connect {}` again",
                self.connection, self.binary, self.connection
            )));
        };
        self.redactor.add(&refresh_token);
        self.save(&answer.access_token, answer.expires_at, &refresh_token)
            .await
    }

    /// Saves the tokens while holding the connection's fetch claim.
    async fn save(
        &self,
        access_token: &str,
        expires_at: Option<DateTime<Utc>>,
        refresh_token: &str,
    ) -> Result<(), Failure> {
        let store_error = |e: crate::store::StoreError| {
            Failure::failed(format!(
                "connection `{}`: cannot save the tokens in the store: {}",
                self.connection,
                self.redactor.redact_string(e.message())
            ))
        };
        let holder = format!("connect-{}", new_execution_id());
        let deadline = tokio::time::Instant::now() + SAVE_CLAIM_WAIT;
        while !self
            .store
            .claim_token_fetch(self.connection, &holder, SAVE_CLAIM)
            .await
            .map_err(store_error)?
        {
            if tokio::time::Instant::now() >= deadline {
                return Err(Failure::failed(format!(
                    "connection `{}`: another process has been fetching a token for over {}s; nothing was saved, run `{} connect {}` again",
                    self.connection,
                    SAVE_CLAIM_WAIT.as_secs(),
                    self.binary,
                    self.connection
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let saved = self
            .store
            .save_connection_tokens(
                &super::connection::tokens_key(self.connection, &self.oauth),
                Some(access_token),
                expires_at,
                Some(refresh_token),
            )
            .await;
        // Best effort: an unreleased claim runs out by itself.
        let _ = self
            .store
            .release_token_fetch(self.connection, &holder)
            .await;
        saved.map(|_| ()).map_err(store_error)
    }
}

/// `GET /callback`: the authorization server's redirect (RFC 6749 §4.1.2).
async fn callback(
    State(pending): State<Arc<Pending>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let given_state = params.get("state").map_or("", String::as_str);
    if !pending.state_matches(given_state) {
        eprintln!(
            "{}: ignored a request to /callback without this command's `state`; still waiting",
            pending.binary
        );
        return page(
            StatusCode::BAD_REQUEST,
            "Not this request",
            "This request does not carry the state of the running `connect` command, so it was ignored. Open the URL the command printed.",
        );
    }
    // On a task of its own: a browser that goes away must not cancel an
    // exchange half done (the code spent, the tokens not saved).
    tokio::spawn(accepted(pending, params))
        .await
        .unwrap_or_else(|_| {
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Connecting failed",
                "The command failed; the terminal says why.",
            )
        })
}

/// A redirect with this command's `state`.
async fn accepted(pending: Arc<Pending>, params: HashMap<String, String>) -> Response {
    let mut slot = pending.outcome.lock().await;
    if slot.is_none() {
        return page(
            StatusCode::CONFLICT,
            "Already handled",
            "This authorization was already handled; the terminal says how it ended.",
        );
    }
    if let Some(error) = params.get("error") {
        let code = oauth_text(error, 64);
        let description = params
            .get("error_description")
            .map(|d| oauth_text(d, 300))
            .filter(|d| !d.is_empty())
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        let message = format!(
            "connection `{}`: consent failed: the service answered `{code}`{description}",
            pending.connection
        );
        if let Some(tx) = slot.take() {
            let _ = tx.send(Err(Failure::failed(message.clone())));
        }
        return page(StatusCode::OK, "Consent failed", &message);
    }
    let Some(code) = params.get("code").filter(|c| !c.is_empty()) else {
        return page(
            StatusCode::BAD_REQUEST,
            "No authorization code",
            "The redirect carries neither `code` nor `error`; the command is still waiting.",
        );
    };
    pending.redactor.add(code);
    let outcome = pending.exchange(code).await;
    let answer = match &outcome {
        Ok(()) => page(
            StatusCode::OK,
            "Connected",
            &format!(
                "Connected `{}`; you can close this page.",
                pending.connection
            ),
        ),
        Err(failure) => page(StatusCode::OK, "Connecting failed", &failure.message),
    };
    if let Some(tx) = slot.take() {
        let _ = tx.send(outcome);
    }
    answer
}

/// A small HTML page for the browser, never cached or referred.
fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let body = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\n<body><h1>{title}</h1>\n<p>{text}</p></body></html>\n",
        title = html_escape(title),
        text = html_escape(text)
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An `error` or `error_description` of a redirect as shown: the
/// printable ASCII RFC 6749 §4.1.2.1 allows, at most `max` characters
/// (anyone can send these to the port).
fn oauth_text(given: &str, max: usize) -> String {
    given
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(max)
        .collect::<String>()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_is_s256_of_the_verifier() {
        // RFC 7636 Appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn verifiers_are_43_unreserved_characters_and_differ() {
        let a = random_token();
        let b = random_token();
        assert_ne!(a, b);
        for v in [&a, &b] {
            assert_eq!(v.len(), 43, "{v}");
            assert!(
                v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c)),
                "{v}"
            );
        }
    }

    #[test]
    fn the_authorize_url_keeps_its_query_and_encodes_the_parameters() {
        let url = authorize_url(
            reqwest::Url::parse("https://auth.example/oauth/authorize?prompt=consent").unwrap(),
            "client 1&2",
            "http://127.0.0.1:5000/callback",
            &["contacts.read", "offline_access"],
            "st",
            "ch",
        );
        assert_eq!(
            url.as_str(),
            "https://auth.example/oauth/authorize?prompt=consent&response_type=code&client_id=client+1%262&redirect_uri=http%3A%2F%2F127.0.0.1%3A5000%2Fcallback&scope=contacts.read+offline_access&state=st&code_challenge=ch&code_challenge_method=S256"
        );
        let url = authorize_url(
            reqwest::Url::parse("https://auth.example/authorize").unwrap(),
            "c",
            "http://127.0.0.1:1/callback",
            &[],
            "st",
            "ch",
        );
        assert!(!url.as_str().contains("scope="), "{url}");
        assert!(url
            .as_str()
            .starts_with("https://auth.example/authorize?response_type=code&"));
    }

    #[test]
    fn redirect_texts_are_printable_and_short() {
        assert_eq!(oauth_text("access_denied", 64), "access_denied");
        assert_eq!(oauth_text("bad\u{1b}[31m\nthing", 64), "bad[31mthing");
        assert_eq!(oauth_text(&"x".repeat(100), 64).len(), 64);
        assert_eq!(
            html_escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
