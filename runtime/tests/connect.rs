//! `BINARY connect NAME`: the OAuth2 authorization-code flow with PKCE, run
//! as a real process against a fake authorization server (a sink). The
//! test plays the browser: it opens the URL the command prints; the fake
//! `/authorize` issues a code and redirects to the command's callback,
//! which exchanges it at the fake `/token` (checking the code, the
//! redirect URI and the verifier against the challenge).
//!
//! The binary is this test executable itself: started with `CHILD` set,
//! its test `binary` hands the given command line to
//! `flow_runtime::cli::main_with_args` with a hand-written integration,
//! and exits with the command's exit code.

mod common;

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _};
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine as _;
use flow_runtime::{
    json, Config, ConnectionAuth, ConnectionDef, Integration, OAuth2Def, OAuth2Grant, Schema,
    SqliteOptions, SqliteStore, Store as _,
};
use flow_testkit::{Received, Reply, Sink};
use sha2::{Digest as _, Sha256};

use common::WAIT;

/// Set (to the command line, one argument a line) in the child process.
const CHILD: &str = "FLOW_CONNECT_TEST_CHILD";
const BINARY: &str = "crm_sync";
const CLIENT_ID: &str = "flow-client-7";
const CLIENT_SECRET: &str = "client-secret-9c1e4b";
const ACCESS_TOKEN: &str = "access-token-51d0e2";
const REFRESH_TOKEN: &str = "rt-1";

// ------------------------------------------------------------ the binary

/// What generated code for these declarations would hand the runtime:
///
/// ```flow
/// connection crm {
///   oauth2: refresh_token
///   token_url: config.crm_token_url
///   authorize_url: config.crm_authorize_url
///   client_id: "flow-client-7"
///   client_secret: config.crm_client_secret
///   scopes: ["contacts.read", "offline_access"]
/// }
/// connection erp { ...the same, without authorize_url }
/// connection reports { oauth2: client_credentials ... }
/// connection helpdesk { bearer: "..." }
/// ```
fn integration() -> Integration {
    Integration {
        config: vec![
            common::config_entry("crm_token_url", Schema::Url),
            common::config_entry("crm_authorize_url", Schema::Url),
            common::config_entry("crm_client_secret", Schema::Secret),
        ],
        connections,
        ..common::integration(BINARY, |_| Vec::new())
    }
}

fn connections(config: &Config) -> Vec<ConnectionDef> {
    let oauth = |grant, authorize_url: Option<String>| {
        ConnectionAuth::OAuth2(OAuth2Def {
            grant,
            token_url: config.str("crm_token_url"),
            client_id: CLIENT_ID.to_string(),
            client_secret: Some(config.str("crm_client_secret")),
            scopes: vec!["contacts.read", "offline_access"],
            refresh_token: None,
            authorize_url,
        })
    };
    let authorize_url = Some(config.str("crm_authorize_url"));
    vec![
        ConnectionDef {
            name: "crm",
            auth: oauth(OAuth2Grant::RefreshToken, authorize_url.clone()),
            limit: None,
        },
        ConnectionDef {
            name: "erp",
            auth: oauth(OAuth2Grant::RefreshToken, None),
            limit: None,
        },
        ConnectionDef {
            name: "reports",
            auth: oauth(OAuth2Grant::ClientCredentials, authorize_url),
            limit: None,
        },
        ConnectionDef {
            name: "helpdesk",
            auth: ConnectionAuth::Bearer {
                token: "helpdesk-token-1".to_string(),
            },
            limit: None,
        },
    ]
}

/// The binary the other tests run (a no-op in the test run itself).
#[test]
fn binary() {
    let Ok(args) = std::env::var(CHILD) else {
        return;
    };
    let args = std::iter::once(BINARY.to_string()).chain(args.lines().map(str::to_string));
    let code = flow_runtime::cli::main_with_args(integration(), Vec::new(), args);
    let code = (0..=u8::MAX)
        .find(|n| ExitCode::from(*n) == code)
        .unwrap_or(101);
    std::process::exit(code.into());
}

// ---------------------------------------------- the authorization server

/// How the fake authorization server answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Consent given; the token endpoint answers with both tokens.
    Tokens,
    /// Consent refused: the redirect carries `error=access_denied`.
    Deny,
    /// The token endpoint answers without a refresh token.
    NoRefreshToken,
    /// The token endpoint refuses the code (`invalid_grant`).
    InvalidGrant,
}

/// A code `/authorize` issued, with what its request said.
struct Issued {
    code: String,
    challenge: String,
    redirect_uri: String,
}

fn query_of(text: &str) -> HashMap<String, String> {
    reqwest::Url::parse(&format!("http://query.test/?{text}"))
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

fn s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn oauth_error(error: &str, description: &str) -> Reply {
    Reply::json(
        400,
        json!({ "error": error, "error_description": description }),
    )
}

/// `GET /authorize` (what the browser shows, reduced to its redirect) and
/// `POST /token`.
fn authorization_server(mode: Mode) -> Sink {
    let issued: Arc<Mutex<Vec<Issued>>> = Arc::default();
    Sink::responding(
        move |r: &Received, earlier| match (r.method.as_str(), r.path.as_str()) {
            ("GET", "/authorize") => authorize(&issued, r, earlier, mode),
            ("POST", "/token") => token(&issued, r, mode),
            _ => Reply::status(404),
        },
    )
}

fn authorize(issued: &Mutex<Vec<Issued>>, r: &Received, earlier: usize, mode: Mode) -> Reply {
    let q = query_of(&r.query);
    let get = |name: &str| q.get(name).map_or("", String::as_str);
    let problems: Vec<&str> = [
        (
            get("prompt") == "consent",
            "the authorize_url's own query is lost",
        ),
        (get("response_type") == "code", "response_type"),
        (get("client_id") == CLIENT_ID, "client_id"),
        (get("scope") == "contacts.read offline_access", "scope"),
        (
            get("code_challenge_method") == "S256",
            "code_challenge_method",
        ),
        (get("code_challenge").len() == 43, "code_challenge"),
        (get("state").len() >= 22, "state"),
        (
            get("redirect_uri").starts_with("http://127.0.0.1:")
                && get("redirect_uri").ends_with("/callback"),
            "redirect_uri",
        ),
    ]
    .into_iter()
    .filter(|(ok, _)| !ok)
    .map(|(_, what)| what)
    .collect();
    if !problems.is_empty() {
        return oauth_error("invalid_request", &problems.join(", "));
    }
    let mut back = reqwest::Url::parse(get("redirect_uri")).unwrap();
    if mode == Mode::Deny {
        back.query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("error_description", "The user said no")
            .append_pair("state", get("state"));
    } else {
        let code = format!("authcode-{earlier}-5f2d8a");
        issued.lock().unwrap().push(Issued {
            code: code.clone(),
            challenge: get("code_challenge").to_string(),
            redirect_uri: get("redirect_uri").to_string(),
        });
        back.query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", get("state"));
    }
    Reply::json(302, json!(null)).header("location", back.as_str())
}

fn token(issued: &Mutex<Vec<Issued>>, r: &Received, mode: Mode) -> Reply {
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    if r.header("authorization") != Some(basic.as_str()) {
        return oauth_error("invalid_client", "wrong client credentials");
    }
    let form = query_of(&String::from_utf8_lossy(&r.raw));
    let get = |name: &str| form.get(name).map_or("", String::as_str);
    if get("grant_type") != "authorization_code" {
        return oauth_error("unsupported_grant_type", get("grant_type"));
    }
    // A code is good once.
    let found = {
        let mut issued = issued.lock().unwrap();
        let at = issued.iter().position(|i| i.code == get("code"));
        at.map(|at| issued.remove(at))
    };
    let Some(found) = found else {
        return oauth_error("invalid_grant", "unknown or used code");
    };
    if get("redirect_uri") != found.redirect_uri {
        return oauth_error("invalid_grant", "redirect_uri differs");
    }
    if s256(get("code_verifier")) != found.challenge {
        return oauth_error(
            "invalid_grant",
            "code_verifier does not match the challenge",
        );
    }
    match mode {
        Mode::Tokens | Mode::Deny => Reply::json(
            200,
            json!({
                "access_token": ACCESS_TOKEN,
                "token_type": "Bearer",
                "expires_in": 3600,
                "refresh_token": REFRESH_TOKEN,
            }),
        ),
        Mode::NoRefreshToken => Reply::json(
            200,
            json!({ "access_token": ACCESS_TOKEN, "token_type": "Bearer", "expires_in": 3600 }),
        ),
        Mode::InvalidGrant => oauth_error("invalid_grant", "the code expired"),
    }
}

// ------------------------------------------------------- the child process

/// `crm_sync ARGS...` running in `dir` with only `env` (and PATH) in its
/// environment. Killed when dropped.
struct Connect {
    child: Child,
    /// Stdout lines as they arrive.
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

/// How a command ended.
struct Finished {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn collect(
    stream: impl std::io::Read + Send + 'static,
    into: Arc<Mutex<String>>,
    lines: Option<tokio::sync::mpsc::UnboundedSender<String>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
            into.lock().unwrap().push_str(&line);
            if let Some(tx) = &lines {
                let _ = tx.send(line.trim_end().to_string());
            }
            line.clear();
        }
        let mut rest = Vec::new();
        let _ = reader.read_to_end(&mut rest);
        into.lock()
            .unwrap()
            .push_str(&String::from_utf8_lossy(&rest));
    })
}

impl Connect {
    fn start(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Connect {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.env_clear();
        for var in ["PATH", "RUST_BACKTRACE"] {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        let mut child = cmd
            .args(["--exact", "binary", "--nocapture", "--quiet"])
            .env(CHILD, args.join("\n"))
            .envs(env.iter().copied())
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        let stdout = Arc::<Mutex<String>>::default();
        let stderr = Arc::<Mutex<String>>::default();
        let readers = vec![
            collect(child.stdout.take().unwrap(), stdout.clone(), Some(tx)),
            collect(child.stderr.take().unwrap(), stderr.clone(), None),
        ];
        Connect {
            child,
            lines,
            stdout,
            stderr,
            readers,
        }
    }

    fn output(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            self.stdout.lock().unwrap(),
            self.stderr.lock().unwrap()
        )
    }

    /// The URL of the `open: URL` line.
    async fn open_url(&mut self) -> reqwest::Url {
        let found = tokio::time::timeout(WAIT, async {
            while let Some(line) = self.lines.recv().await {
                if let Some(url) = line.strip_prefix("open: ") {
                    return Some(url.to_string());
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(url)) => reqwest::Url::parse(&url).unwrap(),
            _ => panic!("no `open: URL` line\n{}", self.output()),
        }
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits (bounded) for the command to end.
    async fn finish(mut self) -> Finished {
        let deadline = tokio::time::Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the command did not end\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let readers = std::mem::take(&mut self.readers);
        tokio::task::spawn_blocking(move || readers.into_iter().for_each(|r| r.join().unwrap()))
            .await
            .unwrap();
        Finished {
            code: status.code(),
            stdout: self.stdout.lock().unwrap().clone(),
            stderr: self.stderr.lock().unwrap().clone(),
        }
    }
}

impl Drop for Connect {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn env(sink: &Sink) -> Vec<(&'static str, String)> {
    vec![
        ("CRM_TOKEN_URL", format!("{}/token", sink.url())),
        (
            "CRM_AUTHORIZE_URL",
            format!("{}/authorize?prompt=consent", sink.url()),
        ),
        ("CRM_CLIENT_SECRET", CLIENT_SECRET.to_string()),
    ]
}

fn start(dir: &Path, sink: &Sink, extra_env: &[(&str, &str)], args: &[&str]) -> Connect {
    let env = env(sink);
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend_from_slice(extra_env);
    Connect::start(dir, &all, args)
}

/// A browser: follows the authorization server's redirect.
fn browser() -> reqwest::Client {
    reqwest::Client::builder().timeout(WAIT).build().unwrap()
}

async fn open(url: &str) -> (u16, String) {
    let resp = browser().get(url).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// The tokens saved for connection `crm` of the authorization server `sink`.
async fn saved_tokens(db: &Path, sink: &Sink) -> Option<flow_runtime::store::ConnectionTokens> {
    let store = SqliteStore::open(db, SqliteOptions::default()).unwrap();
    let token_url = format!("{}/token", sink.url());
    let key = flow_runtime::engine::connection::tokens_key_of("crm", &token_url, CLIENT_ID);
    store.connection_tokens(&key).await.unwrap()
}

fn store_arg(db: &Path) -> String {
    format!("--store=sqlite://{}", db.display())
}

/// What `connect` must never show.
fn assert_no_secrets(finished: &Finished, verifier: &str, code: &str) {
    for (what, secret) in [
        ("the verifier", verifier),
        ("the code", code),
        ("the client secret", CLIENT_SECRET),
        ("the access token", ACCESS_TOKEN),
        ("the refresh token", "\"rt-1\""),
        ("the refresh token", "=rt-1"),
        ("the refresh token", " rt-1"),
    ] {
        for (stream, text) in [("stdout", &finished.stdout), ("stderr", &finished.stderr)] {
            assert!(!text.contains(secret), "{what} is in {stream}:\n{text}");
        }
    }
}

// --------------------------------------------------------------- the tests

#[tokio::test(flavor = "multi_thread")]
async fn connects_and_keeps_the_refresh_token_where_serve_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crm.db");
    let sink = authorization_server(Mode::Tokens);
    // Logs at every level: nothing secret may reach them either.
    let mut connect = start(
        dir.path(),
        &sink,
        &[("RUST_LOG", "trace")],
        &["connect", "crm", &store_arg(&db)],
    );
    let url = connect.open_url().await;
    assert_eq!(url.path(), "/authorize");
    let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["scope"], "contacts.read offline_access");
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q["state"].len() >= 22, "{url}");
    let redirect = reqwest::Url::parse(&q["redirect_uri"]).unwrap();
    assert_eq!(redirect.host_str(), Some("127.0.0.1"));
    assert_eq!(redirect.path(), "/callback");
    assert_ne!(redirect.port(), Some(0));

    let (status, page) = open(url.as_str()).await;
    assert_eq!(status, 200, "{page}\n{}", connect.output());
    assert!(page.contains("Connected"), "{page}");
    let finished = connect.finish().await;
    assert_eq!(
        finished.code,
        Some(0),
        "{}\n{}",
        finished.stdout,
        finished.stderr
    );
    assert!(
        finished.stdout.lines().any(|l| l == "connected crm"),
        "{}",
        finished.stdout
    );
    assert_eq!(
        finished
            .stdout
            .lines()
            .filter(|l| l.starts_with("open: "))
            .count(),
        1,
        "{}",
        finished.stdout
    );
    assert!(
        finished.stderr.contains("open the URL above in a browser"),
        "{}",
        finished.stderr
    );

    // One exchange, with the code, the redirect URI and the verifier.
    let exchanges = sink.requests_to("POST", "/token");
    assert_eq!(exchanges.len(), 1, "{}", sink.summary());
    let form = query_of(&String::from_utf8_lossy(&exchanges[0].raw));
    let verifier = form["code_verifier"].clone();
    assert_eq!(verifier.len(), 43);
    assert_eq!(form["redirect_uri"], q["redirect_uri"]);
    assert_no_secrets(&finished, &verifier, &form["code"]);

    let saved = saved_tokens(&db, &sink).await.expect("tokens saved");
    assert_eq!(saved.refresh_token.as_deref(), Some(REFRESH_TOKEN));
    assert_eq!(saved.access_token.as_deref(), Some(ACCESS_TOKEN));
    let expires_in = saved.expires_at.expect("expiry saved") - chrono::Utc::now();
    assert!(
        (3500..=3600).contains(&expires_in.num_seconds()),
        "{expires_in}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_without_the_right_state_is_refused_and_the_right_one_still_connects() {
    let dir = tempfile::tempdir().unwrap();
    let sink = authorization_server(Mode::Tokens);
    let port = flow_testkit::free_port().to_string();
    // No --store: the file `serve` uses by default, in the working directory.
    let mut connect = start(dir.path(), &sink, &[], &["connect", "crm", "--port", &port]);
    let url = connect.open_url().await;
    let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
    let callback = format!("http://127.0.0.1:{port}/callback");
    assert_eq!(q["redirect_uri"], callback);

    for stray in [
        format!("{callback}?code=forged-code-1&state=wrong"),
        format!("{callback}?code=forged-code-2"),
        format!("{callback}?error=access_denied&state=wrong"),
    ] {
        let (status, page) = open(&stray).await;
        assert_eq!(status, 400, "{stray}: {page}");
        assert!(
            connect.running(),
            "{stray} ended the command\n{}",
            connect.output()
        );
    }
    assert!(sink.requests_to("POST", "/token").is_empty());

    let (status, page) = open(url.as_str()).await;
    assert_eq!(status, 200, "{page}\n{}", connect.output());
    let finished = connect.finish().await;
    assert_eq!(finished.code, Some(0), "{}", finished.stderr);
    assert!(
        finished.stdout.contains("connected crm"),
        "{}",
        finished.stdout
    );
    assert!(
        finished.stderr.contains("ignored a request to /callback"),
        "{}",
        finished.stderr
    );
    assert_eq!(sink.requests_to("POST", "/token").len(), 1);
    let saved = saved_tokens(&dir.path().join(format!("{BINARY}.db")), &sink)
        .await
        .expect("tokens saved in ./crm_sync.db");
    assert_eq!(saved.refresh_token.as_deref(), Some(REFRESH_TOKEN));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_consent_exits_1_naming_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crm.db");
    let sink = authorization_server(Mode::Deny);
    let mut connect = start(dir.path(), &sink, &[], &["connect", "crm", &store_arg(&db)]);
    let url = connect.open_url().await;
    let (_, page) = open(url.as_str()).await;
    assert!(page.contains("access_denied"), "{page}");
    let finished = connect.finish().await;
    assert_eq!(finished.code, Some(1), "{}", finished.stderr);
    assert!(
        finished.stderr.contains("access_denied") && finished.stderr.contains("The user said no"),
        "{}",
        finished.stderr
    );
    assert!(
        !finished.stdout.contains("connected"),
        "{}",
        finished.stdout
    );
    assert!(sink.requests_to("POST", "/token").is_empty());
    assert!(saved_tokens(&db, &sink).await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_code_exits_1_with_the_token_endpoint_error_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crm.db");
    let sink = authorization_server(Mode::InvalidGrant);
    let mut connect = start(dir.path(), &sink, &[], &["connect", "crm", &store_arg(&db)]);
    let url = connect.open_url().await;
    let (_, page) = open(url.as_str()).await;
    assert!(page.contains("invalid_grant"), "{page}");
    let finished = connect.finish().await;
    assert_eq!(finished.code, Some(1), "{}", finished.stderr);
    assert!(
        finished
            .stderr
            .contains("HTTP 400: invalid_grant (the code expired)"),
        "{}",
        finished.stderr
    );
    let exchanges = sink.requests_to("POST", "/token");
    let form = query_of(&String::from_utf8_lossy(&exchanges[0].raw));
    assert_no_secrets(&finished, &form["code_verifier"], &form["code"]);
    assert!(saved_tokens(&db, &sink).await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_without_a_refresh_token_saves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crm.db");
    let sink = authorization_server(Mode::NoRefreshToken);
    let mut connect = start(dir.path(), &sink, &[], &["connect", "crm", &store_arg(&db)]);
    let url = connect.open_url().await;
    let (_, page) = open(url.as_str()).await;
    assert!(page.contains("no refresh token"), "{page}");
    let finished = connect.finish().await;
    assert_eq!(finished.code, Some(1), "{}", finished.stderr);
    assert!(
        finished.stderr.contains("issued no refresh token")
            && finished.stderr.contains("offline_access"),
        "{}",
        finished.stderr
    );
    assert!(
        !finished.stderr.contains(ACCESS_TOKEN),
        "{}",
        finished.stderr
    );
    assert!(saved_tokens(&db, &sink).await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn gives_up_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let sink = authorization_server(Mode::Tokens);
    let db = dir.path().join("crm.db");
    let mut connect = start(
        dir.path(),
        &sink,
        &[],
        &["connect", "crm", "--timeout", "300ms", &store_arg(&db)],
    );
    let _ = connect.open_url().await;
    let finished = connect.finish().await;
    assert_eq!(finished.code, Some(1), "{}", finished.stderr);
    assert!(
        finished.stderr.contains("no redirect within 300ms"),
        "{}",
        finished.stderr
    );
    assert!(saved_tokens(&db, &sink).await.is_none());
}

/// Runs a `connect` that is refused before it listens.
async fn refused(args: &[&str]) -> Finished {
    let dir = tempfile::tempdir().unwrap();
    let sink = authorization_server(Mode::Tokens);
    let finished = start(dir.path(), &sink, &[], args).finish().await;
    assert_eq!(
        finished.code,
        Some(2),
        "{args:?}\n{}\n{}",
        finished.stdout,
        finished.stderr
    );
    assert!(!finished.stdout.contains("open: "), "{}", finished.stdout);
    assert!(sink.requests().is_empty());
    finished
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_connection_exits_2_listing_the_names() {
    let finished = refused(&["connect", "crn"]).await;
    assert!(
        finished.stderr.contains(
            "no connection named `crn`; the connections are: crm, erp, helpdesk, reports (`connect` is for: crm, erp)"
        ),
        "{}",
        finished.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_without_a_consent_exit_2_saying_why() {
    let finished = refused(&["connect", "helpdesk"]).await;
    assert!(
        finished
            .stderr
            .contains("connection `helpdesk` uses `bearer:`, not `oauth2:`"),
        "{}",
        finished.stderr
    );
    let finished = refused(&["connect", "reports"]).await;
    assert!(
        finished
            .stderr
            .contains("`oauth2: client_credentials`, which needs no person's consent"),
        "{}",
        finished.stderr
    );
    let finished = refused(&["connect", "erp"]).await;
    assert!(
        finished.stderr.contains(
            "connection `erp` has no `authorize_url`: add `authorize_url: config.erp_authorize_url`"
        ),
        "{}",
        finished.stderr
    );
    let finished = refused(&["connect", "crm", "--store", "memory"]).await;
    assert!(
        finished.stderr.contains("`--store memory` would lose it"),
        "{}",
        finished.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_help_describes_connect() {
    let dir = tempfile::tempdir().unwrap();
    let sink = authorization_server(Mode::Tokens);
    let finished = start(dir.path(), &sink, &[], &["connect", "--help"])
        .finish()
        .await;
    assert_eq!(finished.code, Some(0), "{}", finished.stderr);
    for needle in [
        "Usage: crm_sync connect [OPTIONS] <NAME>",
        "--port <PORT>",
        "--timeout <TIMEOUT>",
        "[default: 10m]",
        "open: URL",
    ] {
        assert!(
            finished.stdout.contains(needle),
            "{needle:?}:\n{}",
            finished.stdout
        );
    }
}
