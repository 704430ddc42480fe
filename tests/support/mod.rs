//! Shared by the end-to-end tests (`mod support;` in each `tests/e2e_*.rs`):
//! building `.flow` files with the real `flowc`, running the generated
//! binaries, a local HTTP sink that records what it receives, HTTP helpers
//! and bounded polling.
//!
//! Nothing here sleeps for a fixed time to synchronise: readiness is read
//! from the binary's `listening on` line and every wait polls a condition
//! with a deadline.

// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac as _};
use serde_json::{json, Value};

pub mod smtp;

/// How long a generated binary may take to print `listening on`.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The flowc workspace (root of the repository).
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// flowc's cache for the tests: `$FLOWC_CACHE_DIR` if set, else
/// `<workspace>/target/flowc-cache`, so the runtime compiles once per test
/// run and stays compiled across runs.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("FLOWC_CACHE_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace().join("target").join("flowc-cache"),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Where this test file puts the binaries it builds:
/// `target/tmp/flowc-e2e/<test file>/`. Each test file has its own, so
/// test files never overwrite each other's binaries.
fn out_root() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("flowc-e2e")
        .join(env!("CARGO_CRATE_NAME"))
}

/// Builds `flow` (a path relative to the workspace, or absolute) with
/// `flowc build --debug -o OUT_DIR` and returns the binary. Panics with
/// flowc's output when the build fails.
pub fn build_into(flow: impl AsRef<Path>, out_dir: &Path) -> PathBuf {
    let flow = workspace().join(flow.as_ref());
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .arg("build")
        .arg("--debug")
        .arg("-o")
        .arg(out_dir)
        .arg(&flow)
        .env("FLOWC_CACHE_DIR", cache_dir())
        .output()
        .unwrap_or_else(|e| panic!("cannot run flowc: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "flowc build {} failed ({}):\n{stderr}",
        flow.display(),
        output.status
    );
    // flowc names the installed binary on its last line: `Binary PATH`.
    let binary = stderr
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Binary "))
        .next_back()
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("flowc did not name the binary it built:\n{stderr}"));
    assert!(binary.is_file(), "{} is not a file", binary.display());
    eprintln!(
        "built {} in {:.1}s",
        flow.display(),
        started.elapsed().as_secs_f64()
    );
    binary
}

/// Builds `flow` once per test file (later calls, from any test of the
/// file, wait for and reuse the first build) into
/// `target/tmp/flowc-e2e/<test file>/<flow file stem>/`.
pub fn build_example(flow: impl AsRef<Path>) -> PathBuf {
    type Builds = Mutex<HashMap<PathBuf, Arc<OnceLock<PathBuf>>>>;
    static BUILDS: OnceLock<Builds> = OnceLock::new();
    let flow = flow.as_ref().to_path_buf();
    let cell = lock(BUILDS.get_or_init(Default::default))
        .entry(flow.clone())
        .or_default()
        .clone();
    cell.get_or_init(|| {
        let stem = flow
            .file_stem()
            .map_or_else(|| "flow".into(), |s| s.to_string_lossy().into_owned());
        build_into(&flow, &out_root().join(stem))
    })
    .clone()
}

/// Environment variables passed through to the binaries: everything else
/// is cleared, so the developer's environment cannot change a test.
const PASSED_THROUGH: &[&str] = &["PATH", "HOME", "RUST_BACKTRACE", "RUST_LOG"];

fn command(binary: &Path, env: &[(&str, &str)], args: &[&str], dir: &Path) -> Command {
    let mut cmd = Command::new(binary);
    cmd.env_clear();
    for var in PASSED_THROUGH {
        if let Some(v) = std::env::var_os(var) {
            cmd.env(var, v);
        }
    }
    cmd.envs(env.iter().copied())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Collects a child's output stream on a thread (so its pipe never fills
/// up); `lines` gets every line as it arrives.
fn collect(
    stream: impl std::io::Read + Send + 'static,
    into: Arc<Mutex<String>>,
    lines: Option<mpsc::Sender<String>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    lock(&into).push_str(&line);
                    if let Some(tx) = &lines {
                        let _ = tx.send(line.trim_end().to_string());
                    }
                }
            }
        }
        // Whatever was not valid UTF-8 up to here is dropped.
        let mut rest = Vec::new();
        let _ = reader.read_to_end(&mut rest);
        lock(&into).push_str(&String::from_utf8_lossy(&rest));
    })
}

/// A generated binary running `serve --addr 127.0.0.1:0` in a temporary
/// working directory. Killed when dropped.
pub struct Service {
    child: Child,
    url: String,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    dir: PathBuf,
    /// The temporary working directory, when the service made its own.
    _owned_dir: Option<tempfile::TempDir>,
}

impl Service {
    /// Starts `binary serve --addr 127.0.0.1:0 ARGS...` with only `env`
    /// (plus PATH, HOME, RUST_BACKTRACE, RUST_LOG) in its environment and
    /// waits (at most [`START_TIMEOUT`]) until it prints `listening on
    /// http://ADDR`. Panics with the child's stderr if it exits first or
    /// does not get ready in time.
    pub fn start(binary: &Path, env: &[(&str, &str)], args: &[&str]) -> Service {
        let dir = tempfile::tempdir().expect("temporary working directory");
        let mut svc = Service::start_in(dir.path(), binary, env, args);
        svc._owned_dir = Some(dir);
        svc
    }

    /// [`Service::start`] in the working directory `dir` (kept after the
    /// service ends: a restart in the same folder finds its store and files).
    pub fn start_in(dir: &Path, binary: &Path, env: &[(&str, &str)], args: &[&str]) -> Service {
        let mut all_args = vec!["serve", "--addr", "127.0.0.1:0"];
        all_args.extend_from_slice(args);
        let mut child = command(binary, env, &all_args, dir)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let out_thread = collect(
            child.stdout.take().expect("piped stdout"),
            stdout.clone(),
            Some(tx),
        );
        let err_thread = collect(
            child.stderr.take().expect("piped stderr"),
            stderr.clone(),
            None,
        );
        let deadline = Instant::now() + START_TIMEOUT;
        let url = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("listening on ") {
                        break rest.trim().to_string();
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stdout closed: the child has exited (or is about to).
                    let status = child.wait().ok();
                    let _ = out_thread.join();
                    let _ = err_thread.join();
                    panic!(
                        "{} exited before listening ({status:?})\nstdout:\n{}\nstderr:\n{}",
                        binary.display(),
                        lock(&stdout),
                        lock(&stderr)
                    );
                }
                Err(mpsc::RecvTimeoutError::Timeout) if left.is_zero() => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let _ = err_thread.join();
                    panic!(
                        "{} did not print `listening on` within {START_TIMEOUT:?}\nstdout:\n{}\nstderr:\n{}",
                        binary.display(),
                        lock(&stdout),
                        lock(&stderr)
                    );
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        };
        assert!(
            url.starts_with("http://127.0.0.1:"),
            "unexpected listening line: {url}"
        );
        Service {
            child,
            url,
            stdout,
            stderr,
            dir: dir.to_path_buf(),
            _owned_dir: None,
        }
    }

    /// Kills the binary with SIGKILL (a crash) and waits for it to end.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `url()` + `path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Sends SIGTERM and waits (at most `timeout`, else the test fails)
    /// for the binary to exit; returns its exit code.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the child") {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "the service did not exit within {timeout:?} of SIGTERM\nstderr:\n{}",
                lock(&self.stderr)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The binary's (temporary) working directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the binary logged so far (for diagnosis and log assertions).
    pub fn stderr(&self) -> String {
        lock(&self.stderr).clone()
    }

    /// What the binary printed on stdout so far.
    pub fn stdout(&self) -> String {
        lock(&self.stdout).clone()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- stderr of the service at {} ---", self.url);
            eprintln!("{}", lock(&self.stderr));
        }
    }
}

/// How a command run to its end finished.
#[derive(Debug)]
pub struct Finished {
    /// The exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `binary ARGS...` to its end (at most `timeout`, then it is killed
/// and the test fails) with only `env` in its environment, in a temporary
/// working directory.
pub fn run_binary(
    binary: &Path,
    env: &[(&str, &str)],
    args: &[&str],
    timeout: Duration,
) -> Finished {
    let dir = tempfile::tempdir().expect("temporary working directory");
    let mut child = command(binary, env, args, dir.path())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    let stdout = Arc::new(Mutex::new(String::new()));
    let stderr = Arc::new(Mutex::new(String::new()));
    let threads = [
        collect(
            child.stdout.take().expect("piped stdout"),
            stdout.clone(),
            None,
        ),
        collect(
            child.stderr.take().expect("piped stderr"),
            stderr.clone(),
            None,
        ),
    ];
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} {args:?} did not finish within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                binary.display(),
                lock(&stdout),
                lock(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for t in threads {
        let _ = t.join();
    }
    let stdout = lock(&stdout).clone();
    let stderr = lock(&stderr).clone();
    Finished {
        code: status.code(),
        stdout,
        stderr,
    }
}

// ---------------------------------------------------------------------------
// The sink
// ---------------------------------------------------------------------------

/// One request the sink received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// The raw query string (without `?`), empty when there is none.
    pub query: String,
    /// Header names lowercase; repeated headers joined with `, `.
    pub headers: HashMap<String, String>,
    /// The body parsed as JSON; `Null` when empty, a JSON string when it is
    /// not JSON.
    pub body: Value,
    pub at: Instant,
}

impl Received {
    /// A header by name (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// One programmed answer of the sink.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    /// How long to wait before answering.
    pub delay: Duration,
}

impl Reply {
    /// `status` with a JSON body.
    pub fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body,
            delay: Duration::ZERO,
        }
    }

    /// The same answer, given after `delay`.
    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

#[derive(Default)]
struct SinkState {
    received: Mutex<Vec<Received>>,
    /// `(METHOD, /path)` → answers in order; the last one repeats.
    replies: Mutex<HashMap<(String, String), VecDeque<Reply>>>,
}

impl SinkState {
    fn next_reply(&self, method: &str, path: &str) -> Reply {
        let mut replies = lock(&self.replies);
        let key = (method.to_string(), path.to_string());
        let any = ("*".to_string(), path.to_string());
        let queue = if replies.contains_key(&key) {
            replies.get_mut(&key)
        } else {
            replies.get_mut(&any)
        };
        match queue {
            Some(q) if q.len() > 1 => q.pop_front().expect("non-empty"),
            Some(q) if q.len() == 1 => q[0].clone(),
            _ => Reply::json(200, json!({})),
        }
    }
}

/// A local HTTP server on `127.0.0.1:0`, on a thread and tokio runtime of
/// its own, that records every request and answers with programmed
/// replies (default: `200 {}`). Stopped when dropped.
pub struct Sink {
    url: String,
    state: Arc<SinkState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

async fn sink_handler(
    axum::extract::State(state): axum::extract::State<Arc<SinkState>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let mut map: HashMap<String, String> = HashMap::new();
    for (k, v) in &headers {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        map.entry(k.as_str().to_string())
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(&v);
            })
            .or_insert(v);
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    let parsed = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    let path = uri.path().to_string();
    lock(&state.received).push(Received {
        method: method.as_str().to_string(),
        path: path.clone(),
        query: uri.query().unwrap_or("").to_string(),
        headers: map,
        body: parsed,
        at: Instant::now(),
    });
    let reply = state.next_reply(method.as_str(), &path);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let status = axum::http::StatusCode::from_u16(reply.status)
        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(reply.body)).into_response()
}

impl Sink {
    /// Starts a sink on a free loopback port.
    pub fn start() -> Sink {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the sink");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let url = format!("http://{}", listener.local_addr().expect("sink address"));
        let state = Arc::new(SinkState::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = axum::Router::new()
            .fallback(sink_handler)
            .with_state(state.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("sink runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                tokio::select! {
                    r = axum::serve(listener, router) => r.expect("sink server"),
                    _ = stopped => {}
                }
            });
            // Dropping the runtime ends the connections still open.
        });
        Sink {
            url,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Programs the answers to `METHOD path` (`"*"` for any method): one
    /// per request, in order, the last one repeating; e.g. `[503, 503,
    /// 200]` fails twice, then succeeds for good.
    pub fn on(&self, method: &str, path: &str, replies: impl IntoIterator<Item = Reply>) {
        let replies: VecDeque<Reply> = replies.into_iter().collect();
        assert!(!replies.is_empty(), "program at least one reply");
        lock(&self.state.replies).insert((method.to_string(), path.to_string()), replies);
    }

    /// Every request received so far, in order of arrival.
    pub fn requests(&self) -> Vec<Received> {
        lock(&self.state.received).clone()
    }

    /// The requests received so far for `METHOD path`.
    pub fn requests_to(&self, method: &str, path: &str) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path == path)
            .collect()
    }

    /// Waits until at least `n` requests have arrived (polling, at most
    /// `timeout`; then the test fails listing what did arrive).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let what = format!("{n} request(s) at the sink");
        wait_until(timeout, &what, || self.requests().len() >= n).await;
        self.requests()
    }

    /// Waits until at least `n` requests to `METHOD path` have arrived.
    pub async fn wait_for_path(
        &self,
        method: &str,
        path: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<Received> {
        let what = format!("{n} request(s) {method} {path} at the sink");
        wait_until(timeout, &what, || self.requests_to(method, path).len() >= n).await;
        self.requests_to(method, path)
    }

    /// A one-line-per-request summary, for failure messages.
    pub fn summary(&self) -> String {
        self.requests()
            .iter()
            .map(|r| format!("{} {} {}", r.method, r.path, r.body))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------
// HTTP helpers and polling
// ---------------------------------------------------------------------------

/// An HTTP answer: status, lowercase headers, body as JSON (`Null` when
/// empty, a JSON string when not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Value,
}

impl Answer {
    /// A header by name (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// Sends one request (a new client each time: tests run on runtimes of
/// their own, and a pooled connection must not outlive its runtime).
pub async fn request(
    method: &str,
    url: &str,
    body: Option<Vec<u8>>,
    headers: &[(&str, &str)],
) -> Answer {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client");
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("HTTP method");
    let mut req = client.request(method.clone(), url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(body) = body {
        req = req.body(body);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let text = resp.text().await.unwrap_or_default();
    let body = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Answer {
        status,
        headers,
        body,
    }
}

/// POSTs the exact bytes `body` as `application/json` (unless `headers`
/// set another content type).
pub async fn post_raw(url: &str, body: &[u8], headers: &[(&str, &str)]) -> Answer {
    let mut all = headers.to_vec();
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        all.push(("Content-Type", "application/json"));
    }
    request("POST", url, Some(body.to_vec()), &all).await
}

/// POSTs `body` as JSON: `(status, JSON answer)`.
pub async fn post_json(url: &str, body: &Value, headers: &[(&str, &str)]) -> (u16, Value) {
    let a = post_raw(url, body.to_string().as_bytes(), headers).await;
    (a.status, a.body)
}

/// GET with headers.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> Answer {
    request("GET", url, None, headers).await
}

/// The lowercase hex HMAC-SHA256 of `body` under `secret` (the form
/// `verify: hmac_sha256(...)` expects).
pub fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key size");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// `GET /_flow/executions/{id}` with the admin token: `(status, JSON)`.
pub async fn admin_execution(url: &str, id: &str, token: &str) -> (u16, Value) {
    let bearer = format!("Bearer {token}");
    let a = get(
        &format!("{url}/_flow/executions/{id}"),
        &[("Authorization", &bearer)],
    )
    .await;
    (a.status, a.body)
}

/// `GET /_flow/executions?{query}` with the admin token: the listed
/// executions (the test fails unless the answer is 200).
pub async fn admin_executions(svc: &Service, query: &str, token: &str) -> Vec<Value> {
    let bearer = format!("Bearer {token}");
    let a = get(
        &svc.at(&format!("/_flow/executions?{query}")),
        &[("Authorization", &bearer)],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["executions"].as_array().cloned().unwrap_or_default()
}

/// The URL of an outside service in the env var `var`, or `None` (the
/// test `test` is skipped, saying so) when unset; a failure instead when
/// unset and `FLOW_TEST_REQUIRE_SERVICES=1` (CI).
pub fn service_url(var: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            if std::env::var("FLOW_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("{test}: {var} is not set and FLOW_TEST_REQUIRE_SERVICES=1");
            }
            eprintln!("skipping {test}: {var} is not set");
            None
        }
    }
}

/// Polls the admin API until execution `id` has ended (succeeded, failed
/// or skipped) and returns it; fails the test after `timeout`.
pub async fn wait_execution(url: &str, id: &str, token: &str, timeout: Duration) -> Value {
    let what = format!("execution {id} to end");
    poll_until(timeout, &what, || async {
        let (status, exec) = admin_execution(url, id, token).await;
        assert_eq!(status, 200, "admin API: {exec}");
        matches!(
            exec["status"].as_str(),
            Some("succeeded" | "failed" | "skipped")
        )
        .then_some(exec)
    })
    .await
}

/// Poll interval of [`wait_until`] and [`poll_until`].
const POLL: Duration = Duration::from_millis(25);

/// Waits until `cond()` holds, checking every 25 ms; fails the test
/// naming `what` after `timeout`.
pub async fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until the async `f()` gives `Some(value)`, checking every 25 ms;
/// fails the test naming `what` after `timeout`.
pub async fn poll_until<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}
