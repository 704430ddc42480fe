//! Connections (LANGUAGE.md §12): the credentials and the request budget of
//! an outside system, shared by every run that reaches it `via:` its name.
//!
//! OAuth2 access tokens are fetched on first use, kept until shortly before
//! they expire, and fetched once when many runs need one at the same moment:
//! in a process, the token's lock is held while it is fetched, so the others
//! wait for that answer; across replicas on a shared store, the store's
//! fetch claim does the same (the others wait and read the saved token). A
//! rotated refresh token is saved in the store at once, so a restart or
//! another replica continues with it.
//!
//! Tokens are secrets: they appear in no error, log line or record. Errors
//! from the token endpoint name its status and OAuth `error` code.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::Mutex as AsyncMutex;
use tokio::time::Instant;

use crate::core::error::{error_chain, StepError};
use crate::core::ops::display;
use crate::core::outbound::read_body;
use crate::core::redact::url_for_errors;
use crate::core::sync::lock;
use crate::engine::ctx::Args;
use crate::engine::integration::{
    AwsDef, ConnectionAuth, ConnectionDef, OAuth2Def, OAuth2Grant, RequestLimit,
};
use crate::store::Store;

/// How long another replica's token fetch may take before this one takes
/// over (a fetch is one HTTP request with a 30-s timeout).
const FETCH_CLAIM: Duration = Duration::from_secs(40);
/// Largest token endpoint answer read.
const MAX_TOKEN_ANSWER: u64 = 64 * 1024;
/// Timeout of one request to a token endpoint.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);
/// A token is replaced this long before it expires, at most: requests in
/// flight when it runs out would be refused.
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// The connections of an integration, by name.
pub struct Connections {
    by_name: HashMap<&'static str, Arc<Connection>>,
}

impl Connections {
    /// The connections `defs` declares; `holder` names this process in the
    /// store's fetch claims.
    pub(crate) fn new(defs: Vec<ConnectionDef>) -> Connections {
        let holder = super::new_execution_id();
        let by_name = defs
            .into_iter()
            .map(|def| {
                let limiter = def.limit.map(Limiter::new);
                let connection = Connection {
                    def,
                    holder: holder.clone(),
                    token: AsyncMutex::new(TokenState::default()),
                    limiter,
                };
                (connection.def.name, Arc::new(connection))
            })
            .collect();
        Connections { by_name }
    }

    /// The connection named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Connection>> {
        self.by_name.get(name)
    }

    /// The connection an `http.*` call names with `via:`, if it names one
    /// (the checker has made sure it exists: E0700).
    pub fn via(&self, args: &Args) -> Result<Option<&Arc<Connection>>, StepError> {
        let Some(name) = args.get_named("via").and_then(Value::as_str) else {
            return Ok(None);
        };
        let connection = self
            .get(name)
            .ok_or_else(|| StepError::permanent(format!("http: no connection named `{name}`")))?;
        if let ConnectionAuth::Aws(_) = connection.def.auth {
            // The checker refuses this (E0705); a hand-written integration
            // gets the same answer here.
            return Err(StepError::permanent(format!(
                "http: connection `{name}` is an `aws:` connection, for s3:// paths and SQS/SNS steps, not http.* calls"
            )));
        }
        Ok(Some(connection))
    }

    /// The `aws:` connection named `name`, for an `s3://` path or an
    /// SQS/SNS step (`what` names it in errors).
    pub fn aws(&self, name: Option<&str>, what: &str) -> Result<&AwsDef, StepError> {
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            return Err(StepError::permanent(format!(
                "{what}: needs `via:` naming an `aws:` connection"
            )));
        };
        match self.get(name).map(|c| &c.def.auth) {
            Some(ConnectionAuth::Aws(def)) => Ok(def),
            Some(other) => Err(StepError::permanent(format!(
                "{what}: connection `{name}` is a `{}` connection; it needs an `aws:` one",
                other.kind()
            ))),
            None => Err(StepError::permanent(format!(
                "{what}: no connection named `{name}`"
            ))),
        }
    }

    /// Every connection, for `connect` and start-up checks.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Connection>> {
        self.by_name.values()
    }
}

/// One connection: its declaration, its current access token and its
/// request budget.
pub struct Connection {
    def: ConnectionDef,
    holder: String,
    /// Held while a token is fetched: single flight in this process.
    token: AsyncMutex<TokenState>,
    /// The in-process budget, when the store does not share one.
    limiter: Option<Limiter>,
}

#[derive(Default)]
struct TokenState {
    current: Option<AccessToken>,
    /// A token the API refused (`401`): not taken from the store again.
    refused: Option<String>,
}

#[derive(Clone)]
struct AccessToken {
    value: String,
    /// When it is replaced (shortly before it expires); `None`: never.
    renew_at: Option<DateTime<Utc>>,
}

impl AccessToken {
    fn usable(&self, now: DateTime<Utc>) -> bool {
        self.renew_at.is_none_or(|at| now < at)
    }
}

/// What a request through a connection carries.
pub enum Credentials {
    /// The connection's own, as declared (none, bearer, basic, API key).
    Static(ConnectionAuth),
    /// `Authorization: Bearer TOKEN` of an OAuth2 access token, which a
    /// `401` answer replaces once.
    OAuth2(String),
}

impl Credentials {
    /// What a call through `def` carries under `flowc test`: its static
    /// credentials, or for OAuth2 the token `test-token-NAME` (tests have
    /// no token endpoint; this one stands for whatever it would issue).
    pub fn for_tests(def: &ConnectionDef) -> Credentials {
        match &def.auth {
            ConnectionAuth::OAuth2(_) => Credentials::OAuth2(format!("test-token-{}", def.name)),
            auth => Credentials::Static(auth.clone()),
        }
    }

    /// The credentials an `http.*` call gives itself: `bearer: TOKEN` or
    /// `basic: "USER:PASSWORD"`.
    pub fn of_call(args: &Args) -> Option<Credentials> {
        let given = |name| args.get_named(name).filter(|v| !v.is_null()).map(display);
        if let Some(token) = given("bearer") {
            return Some(Credentials::Static(ConnectionAuth::Bearer { token }));
        }
        let basic = given("basic")?;
        let (user, password) = basic.split_once(':').unwrap_or((basic.as_str(), ""));
        Some(Credentials::Static(ConnectionAuth::Basic {
            user: user.to_string(),
            password: password.to_string(),
        }))
    }

    /// The header carrying the credentials: (lowercase name, value).
    pub fn header(&self) -> Option<(String, String)> {
        let authorization = |value: String| Some(("authorization".to_string(), value));
        match self {
            Credentials::OAuth2(token) | Credentials::Static(ConnectionAuth::Bearer { token }) => {
                authorization(format!("Bearer {token}"))
            }
            Credentials::Static(ConnectionAuth::Basic { user, password }) => {
                use base64::Engine as _;
                let pair = format!("{user}:{password}");
                authorization(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
            }
            Credentials::Static(ConnectionAuth::ApiKey { header, key }) => {
                Some((header.to_ascii_lowercase(), key.clone()))
            }
            Credentials::Static(
                ConnectionAuth::None | ConnectionAuth::OAuth2(_) | ConnectionAuth::Aws(_),
            ) => None,
        }
    }

    /// Adds the credentials to a request's headers, marked sensitive (left
    /// out of the client's debug output and not indexed by HTTP/2
    /// compression). Refused, without showing them, when they cannot be a
    /// header.
    pub fn apply_to(&self, headers: &mut reqwest::header::HeaderMap) -> Result<(), StepError> {
        let Some((name, value)) = self.header() else {
            return Ok(());
        };
        let invalid = || StepError::permanent("the credentials cannot be sent as an HTTP header");
        let name =
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
        let mut value = reqwest::header::HeaderValue::from_str(&value).map_err(|_| invalid())?;
        value.set_sensitive(true);
        headers.append(name, value);
        Ok(())
    }
}

impl Connection {
    /// The connection's name.
    pub fn name(&self) -> &'static str {
        self.def.name
    }

    /// The declaration.
    pub fn def(&self) -> &ConnectionDef {
        &self.def
    }

    /// Waits until the connection's limit lets one more request go (the
    /// store's shared budget when it keeps one, else this process's).
    pub async fn wait_turn(&self, store: &dyn Store) -> Result<(), StepError> {
        let Some(limit) = self.def.limit else {
            return Ok(());
        };
        let shared = store
            .reserve_request(self.def.name, limit.requests, limit.per)
            .await
            .map_err(|e| {
                StepError::retryable(format!(
                    "connection `{}`: reserving a request: {}",
                    self.def.name,
                    e.message()
                ))
            })?;
        let wait = match (shared, &self.limiter) {
            (Some(wait), _) => wait,
            (None, Some(limiter)) => limiter.reserve(),
            (None, None) => Duration::ZERO,
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }

    /// The credentials to send now: for OAuth2, a usable access token,
    /// fetched if there is none.
    pub async fn credentials(
        &self,
        store: &dyn Store,
        http: &reqwest::Client,
    ) -> Result<Credentials, StepError> {
        Ok(match &self.def.auth {
            ConnectionAuth::OAuth2(oauth) => {
                Credentials::OAuth2(self.access_token(oauth, store, http).await?)
            }
            auth => Credentials::Static(auth.clone()),
        })
    }

    /// The API answered `401` to `used`: it is not used again (unless
    /// another run already replaced it).
    pub async fn refused(&self, used: &Credentials) {
        let Credentials::OAuth2(token) = used else {
            return;
        };
        let mut state = self.token.lock().await;
        if state.current.as_ref().is_some_and(|c| &c.value == token) {
            state.current = None;
        }
        state.refused = Some(token.clone());
    }

    async fn access_token(
        &self,
        oauth: &OAuth2Def,
        store: &dyn Store,
        http: &reqwest::Client,
    ) -> Result<String, StepError> {
        let mut state = self.token.lock().await;
        if let Some(token) = state.current.as_ref().filter(|t| t.usable(Utc::now())) {
            return Ok(token.value.clone());
        }
        // A claim whose holder died runs out after FETCH_CLAIM, so waiting
        // a little longer than that always ends with a claim.
        let deadline = Instant::now() + FETCH_CLAIM + Duration::from_secs(5);
        loop {
            if let Some(token) = self.usable_saved_token(oauth, store, &state).await? {
                state.current = Some(token.clone());
                return Ok(token.value);
            }
            let claimed = store
                .claim_token_fetch(self.def.name, &self.holder, FETCH_CLAIM)
                .await
                .map_err(|e| self.store_error(e.message()))?;
            if claimed {
                let fetched = self.fetch_claimed(oauth, store, http, &state).await;
                // Best effort: an unreleased claim runs out by itself.
                let _ = store.release_token_fetch(self.def.name, &self.holder).await;
                let token = fetched?;
                state.current = Some(token.clone());
                state.refused = None;
                return Ok(token.value);
            }
            if Instant::now() >= deadline {
                return Err(StepError::retryable(format!(
                    "connection `{}`: another replica has been fetching a token for over {}s",
                    self.def.name,
                    FETCH_CLAIM.as_secs()
                )));
            }
            // Another replica is fetching: its token will be in the store.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// With the fetch claimed: the token another replica saved just before
    /// the claim (read again, so that a refresh token it rotated is not
    /// spent twice), or a new one from the token endpoint.
    async fn fetch_claimed(
        &self,
        oauth: &OAuth2Def,
        store: &dyn Store,
        http: &reqwest::Client,
        state: &TokenState,
    ) -> Result<AccessToken, StepError> {
        let saved = self.saved_tokens(oauth, store).await?;
        if let Some(token) = saved.as_ref().and_then(|s| self.saved_token(s, state)) {
            return Ok(token);
        }
        self.fetch(oauth, saved.and_then(|s| s.refresh_token), store, http)
            .await
    }

    /// The saved token, if another process (or an earlier run of this one)
    /// saved one that is still usable.
    async fn usable_saved_token(
        &self,
        oauth: &OAuth2Def,
        store: &dyn Store,
        state: &TokenState,
    ) -> Result<Option<AccessToken>, StepError> {
        let saved = self.saved_tokens(oauth, store).await?;
        Ok(saved.as_ref().and_then(|s| self.saved_token(s, state)))
    }

    /// The tokens saved for this connection's issuer and client
    /// ([`tokens_key`]). Tokens saved under the bare connection name (before
    /// they were keyed so) are moved to the key once, on the assumption
    /// that they belong to the config of the first version that reads them.
    async fn saved_tokens(
        &self,
        oauth: &OAuth2Def,
        store: &dyn Store,
    ) -> Result<Option<crate::store::ConnectionTokens>, StepError> {
        let error = |e: crate::store::StoreError| self.store_error(e.message());
        let key = tokens_key(self.def.name, oauth);
        if let Some(saved) = store.connection_tokens(&key).await.map_err(error)? {
            return Ok(Some(saved));
        }
        let Some(old) = store
            .connection_tokens(self.def.name)
            .await
            .map_err(error)?
        else {
            return Ok(None);
        };
        if old.access_token.is_none() && old.refresh_token.is_none() {
            return Ok(None);
        }
        store
            .save_connection_tokens(
                &key,
                old.access_token.as_deref(),
                old.expires_at,
                old.refresh_token.as_deref(),
            )
            .await
            .map_err(error)?;
        store
            .save_connection_tokens(self.def.name, None, None, None)
            .await
            .map_err(error)?;
        Ok(Some(old))
    }

    /// A token another process saved, if it is still usable and not the
    /// one just refused.
    fn saved_token(
        &self,
        saved: &crate::store::ConnectionTokens,
        state: &TokenState,
    ) -> Option<AccessToken> {
        let value = saved.access_token.clone()?;
        if state.refused.as_ref() == Some(&value) {
            return None;
        }
        let token = AccessToken {
            renew_at: saved.expires_at.map(|at| at - margin_before(at)),
            value,
        };
        token.usable(Utc::now()).then_some(token)
    }

    /// Asks the token endpoint for a new access token and saves what it
    /// answered (with a rotated refresh token, if any).
    async fn fetch(
        &self,
        oauth: &OAuth2Def,
        saved_refresh: Option<String>,
        store: &dyn Store,
        http: &reqwest::Client,
    ) -> Result<AccessToken, StepError> {
        let mut form: Vec<(&str, String)> = Vec::new();
        let refresh_token = match oauth.grant {
            OAuth2Grant::ClientCredentials => {
                form.push(("grant_type", "client_credentials".into()));
                None
            }
            OAuth2Grant::RefreshToken => {
                let token = saved_refresh
                    .or_else(|| oauth.refresh_token.clone())
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        StepError::permanent(format!(
                            "connection `{}` has no refresh token yet: run `{} connect {}` once (or set its `refresh_token:` entry)",
                            self.def.name,
                            this_binary(),
                            self.def.name
                        ))
                    })?;
                form.push(("grant_type", "refresh_token".into()));
                form.push(("refresh_token", token.clone()));
                Some(token)
            }
        };
        if !oauth.scopes.is_empty() {
            form.push(("scope", oauth.scopes.join(" ")));
        }
        let answer = request_token(self.def.name, oauth, form, http).await?;
        let refresh = answer.refresh_token.or(refresh_token);
        store
            .save_connection_tokens(
                &tokens_key(self.def.name, oauth),
                Some(&answer.access_token),
                answer.expires_at,
                refresh.as_deref(),
            )
            .await
            .map_err(|e| self.store_error(e.message()))?;
        Ok(AccessToken {
            renew_at: answer.expires_at.map(|at| at - margin_before(at)),
            value: answer.access_token,
        })
    }

    fn store_error(&self, message: String) -> StepError {
        StepError::retryable(format!(
            "connection `{}`: the store: {message}",
            self.def.name
        ))
    }
}

/// The name this binary was started by, for commands in messages.
fn this_binary() -> String {
    std::env::args_os()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "BINARY".to_string())
}

/// How long before `expires_at` a token is replaced: a tenth of its
/// remaining life, at most [`MAX_REFRESH_MARGIN`].
fn margin_before(expires_at: DateTime<Utc>) -> chrono::TimeDelta {
    let life = (expires_at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
    chrono::TimeDelta::from_std((life / 10).min(MAX_REFRESH_MARGIN)).unwrap_or_default()
}

/// What a token endpoint answered.
pub(crate) struct TokenAnswer {
    pub(crate) access_token: String,
    pub(crate) expires_at: Option<DateTime<Utc>>,
    pub(crate) refresh_token: Option<String>,
}

/// One request to the token endpoint of `oauth` with `form` (RFC 6749
/// §4.4, §6; the client authenticates with HTTP Basic, or sends its id in
/// the form when it has no secret).
pub(crate) async fn request_token(
    connection: &str,
    oauth: &OAuth2Def,
    mut form: Vec<(&str, String)>,
    http: &reqwest::Client,
) -> Result<TokenAnswer, StepError> {
    let what = || {
        format!(
            "connection `{connection}`: token endpoint {}",
            url_for_errors(&oauth.token_url)
        )
    };
    let mut req = http
        .post(&oauth.token_url)
        .timeout(TOKEN_TIMEOUT)
        .header(reqwest::header::ACCEPT, "application/json");
    match &oauth.client_secret {
        Some(secret) if !secret.is_empty() => {
            req = req.basic_auth(&oauth.client_id, Some(secret));
        }
        _ => form.push(("client_id", oauth.client_id.clone())),
    }
    let resp = req.form(&form).send().await.map_err(|e| {
        StepError::retryable(format!("{}: {}", what(), error_chain(&e.without_url())))
    })?;
    let status = resp.status();
    let bytes = read_body(
        resp,
        MAX_TOKEN_ANSWER,
        "a token answer is a few hundred bytes",
        &what,
    )
    .await?;
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if !status.is_success() {
        let secrets: Vec<&str> = form
            .iter()
            .map(|(_, v)| v.as_str())
            .chain(oauth.client_secret.as_deref())
            .collect();
        let message = format!(
            "{}: HTTP {}{}",
            what(),
            status.as_u16(),
            oauth_error(&body, &secrets)
        );
        // A refused grant or client does not get better by retrying; an
        // overloaded or failing endpoint may.
        return Err(if status.as_u16() == 429 || status.is_server_error() {
            StepError::retryable(message)
        } else {
            StepError::permanent(message)
        });
    }
    let access_token = body
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            StepError::retryable(format!("{}: the answer has no `access_token`", what()))
        })?
        .to_string();
    let expires_at = body
        .get("expires_in")
        .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
        .map(|secs| Utc::now() + chrono::TimeDelta::seconds(secs.min(10 * 365 * 86_400) as i64));
    let refresh_token = body
        .get("refresh_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    Ok(TokenAnswer {
        access_token,
        expires_at,
        refresh_token,
    })
}

/// `: invalid_grant (The refresh token expired)` from an OAuth error
/// answer (RFC 6749 §5.2), without any of `secrets` it might echo.
fn oauth_error(body: &Value, secrets: &[&str]) -> String {
    let field = |name: &str| {
        body.get(name)
            .and_then(Value::as_str)
            .map(|s| s.chars().take(200).collect::<String>())
            .filter(|s| {
                !secrets
                    .iter()
                    .any(|secret| !secret.is_empty() && s.contains(secret))
            })
    };
    match (field("error"), field("error_description")) {
        (Some(code), Some(text)) => format!(": {code} ({text})"),
        (Some(code), None) => format!(": {code}"),
        _ => String::new(),
    }
}

/// A request budget kept in this process: the send times of the last
/// `requests` requests; the next one goes `per` after the oldest of them.
struct Limiter {
    limit: RequestLimit,
    sends: std::sync::Mutex<VecDeque<Instant>>,
}

impl Limiter {
    fn new(limit: RequestLimit) -> Limiter {
        Limiter {
            limit,
            sends: std::sync::Mutex::new(VecDeque::new()),
        }
    }

    /// Reserves the next send time; returns how long to wait for it.
    fn reserve(&self) -> Duration {
        let now = Instant::now();
        let mut sends = lock(&self.sends);
        let n = self.limit.requests.max(1) as usize;
        let at = if sends.len() >= n {
            let oldest = sends.pop_front().unwrap_or(now);
            (oldest + self.limit.per).max(now)
        } else {
            now
        };
        sends.push_back(at);
        at - now
    }
}

/// Where a connection's tokens are saved: its name and a digest of its
/// token endpoint and client id. Tokens belong to the issuer and client
/// that gave them: when a connection's config points elsewhere (an
/// instance moved to another CRM), the old tokens are not sent there.
pub fn tokens_key(name: &str, oauth: &OAuth2Def) -> String {
    tokens_key_of(name, &oauth.token_url, &oauth.client_id)
}

/// [`tokens_key`] from the token endpoint and client id.
pub fn tokens_key_of(name: &str, token_url: &str, client_id: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::new()
        .chain_update(token_url.as_bytes())
        .chain_update([0])
        .chain_update(client_id.as_bytes())
        .finalize();
    format!("{name}@{}", hex::encode(&digest[..8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_limiter_keeps_at_most_n_sends_in_any_window() {
        let limiter = Limiter::new(RequestLimit {
            requests: 3,
            per: Duration::from_secs(1),
        });
        let waits: Vec<Duration> = (0..7).map(|_| limiter.reserve()).collect();
        let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [0, 0, 0, 1000, 1000, 1000, 2000]);
    }

    /// A token endpoint that answers without end is cut off, not read
    /// into memory whole.
    #[tokio::test]
    async fn a_huge_token_answer_is_refused() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let body = vec![b' '; 1024 * 1024];
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(&body).await;
        });
        let oauth = OAuth2Def {
            grant: OAuth2Grant::ClientCredentials,
            token_url: url,
            client_id: "id".into(),
            client_secret: Some("client-secret-x".into()),
            scopes: Vec::new(),
            refresh_token: None,
            authorize_url: None,
        };
        let form = vec![("grant_type", "client_credentials".to_string())];
        let Err(e) = request_token("crm", &oauth, form, &reqwest::Client::new()).await else {
            panic!("a 1 MiB token answer was accepted");
        };
        assert!(
            e.message.contains("larger than 65536 bytes"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("client-secret-x"), "{}", e.message);
    }

    fn crm(token_url: &str) -> Connections {
        Connections::new(vec![ConnectionDef {
            name: "crm",
            auth: ConnectionAuth::OAuth2(OAuth2Def {
                grant: OAuth2Grant::ClientCredentials,
                token_url: token_url.into(),
                client_id: "id-1".into(),
                client_secret: Some("secret".into()),
                scopes: Vec::new(),
                refresh_token: None,
                authorize_url: None,
            }),
            limit: None,
        }])
    }

    async fn token(connections: &Connections, store: &dyn Store) -> Result<String, StepError> {
        let crm = connections.get("crm").unwrap();
        match crm.credentials(store, &reqwest::Client::new()).await? {
            Credentials::OAuth2(token) => Ok(token),
            Credentials::Static(_) => panic!("not OAuth2"),
        }
    }

    /// Tokens belong to the issuer and client that gave them: a connection
    /// whose config now points at another token endpoint (an instance
    /// moved to another CRM) fetches its own rather than send the old ones.
    #[tokio::test]
    async fn saved_tokens_are_used_only_with_their_issuer() {
        let store = crate::store::MemoryStore::new();
        let first = "http://127.0.0.1:9/first/token";
        let later = chrono::Utc::now() + chrono::Duration::hours(1);
        store
            .save_connection_tokens(
                &tokens_key_of("crm", first, "id-1"),
                Some("token-first"),
                Some(later),
                None,
            )
            .await
            .unwrap();
        assert_eq!(token(&crm(first), &store).await.unwrap(), "token-first");
        // Port 9 (discard) refuses: the fetch fails, no old token is sent.
        let moved = token(&crm("http://127.0.0.1:9/second/token"), &store).await;
        assert!(
            moved.is_err(),
            "the first issuer's token went to the second"
        );
    }

    /// Tokens saved under the bare name (before tokens were keyed by their
    /// issuer) are moved to the key once.
    #[tokio::test]
    async fn tokens_saved_under_the_name_are_moved_once() {
        let store = crate::store::MemoryStore::new();
        let url = "http://127.0.0.1:9/token";
        let later = chrono::Utc::now() + chrono::Duration::hours(1);
        store
            .save_connection_tokens("crm", Some("token-old"), Some(later), Some("refresh-old"))
            .await
            .unwrap();
        assert_eq!(token(&crm(url), &store).await.unwrap(), "token-old");
        let moved = store
            .connection_tokens(&tokens_key_of("crm", url, "id-1"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(moved.refresh_token.as_deref(), Some("refresh-old"));
        let bare = store.connection_tokens("crm").await.unwrap().unwrap();
        assert_eq!((bare.access_token, bare.refresh_token), (None, None));
    }

    #[test]
    fn oauth_errors_name_the_code_but_never_a_secret() {
        let body = serde_json::json!({ "error": "invalid_grant", "error_description": "token r-123 expired" });
        assert_eq!(
            oauth_error(&body, &["other"]),
            ": invalid_grant (token r-123 expired)"
        );
        assert_eq!(oauth_error(&body, &["r-123"]), ": invalid_grant");
        assert_eq!(oauth_error(&Value::Null, &[]), "");
    }
}
