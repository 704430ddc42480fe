//! `BINARY test [--filter NAME]`: runs the `test` blocks of the `.flow`
//! file (LANGUAGE.md §9), which generated code hands over as data in
//! [`Integration::tests`].
//!
//! Each test gets a fresh [`Runtime`] with an in-memory store, the config
//! given by the test's `config { ... }` over the defaults (the environment
//! and `--config` are not read; a test with `instance "NAME" from "FILE"`
//! runs as that instance, endpoints under `/i/NAME`, with the file's values
//! between the two, as an instance's config), a temporary working directory for `file.*`
//! and `http.*` steps answered in-process by the test's mocks: no network.
//! Every HTTP call is recorded (method, URL, JSON body, headers).
//! `file.*` on `sftp://host/dir/f` uses the local `sftp/host/dir/f` there,
//! and on `s3://bucket/key` the local `s3/bucket/key`.
//! `sql.*` on `sqlite://PATH` uses the local file `sqlite/PATH` there (a
//! fresh database per test); other databases fail the step (no network).
//! `email.send` sends nothing: the message is composed (so a bad address or
//! attachment fails the step as it would for real), recorded, and the step
//! returns `true`; a failing test lists the emails its runs sent. Then each
//! `run` runs its flow to the end (like `BINARY run`; flows it dispatches run
//! too) and the expectations are checked against the recorded calls and the
//! last run's outcome.
//!
//! Rules, as documented for users in `docs/tools.md`:
//!
//! * A call is answered by the first mock whose method and URL match; a mock
//!   URL without a query string matches the call whatever its query. A call
//!   no mock matches fails its step: `no mock for POST http://...`.
//! * A mocked non-2xx answer (not listed in the step's `ok:`) fails the step
//!   at once: mocks answer the same every time, so retrying would only wait.
//! * `expect http M URL with json J`: some recorded call has method `M`, URL
//!   `URL` and a JSON body that *contains* `J`: for objects, every key of `J`
//!   is in the body with a value that contains `J`'s value (other keys may
//!   be present; a `null` in `J` also matches a missing key); arrays and
//!   scalars must be equal (`1` equals `1.0`).
//! * `expect status S`: the status of the last `run` before it.
//! * `expect response STATUS[, BODY]`: the answer the last run (a sync flow)
//!   would give over HTTP: its `respond`, 204 without one, 200
//!   `{"skipped": reason}` for `skip`, 500 `{"error": "run failed",
//!   "execution_id": id}` when it failed (the error itself is only in the
//!   execution record); the body must be equal.
//!
//! Tests run one after another (the HTTP mocks and the working directory are
//! process-wide while a test runs).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt as _};
use serde_json::{json, Map, Value};

use crate::core::config::EnvSource;
use crate::core::error::{RunError, StepError};
use crate::core::ops::display;
use crate::core::schema::Schema;
use crate::engine::connection::Credentials;
use crate::engine::ctx::StepCall;
use crate::engine::integration::Integration;
use crate::engine::trigger_value::complete_trigger;
use crate::engine::{new_execution_id, Runtime, RuntimeOptions, StepFn, StepRegistry};
use crate::store::{Execution, ExecutionFilter, Status};

/// One `test "name" { ... }` block.
#[derive(Clone)]
pub struct TestCase {
    /// The test's name.
    pub name: &'static str,
    /// The values of its `config { ... }` (runtime representation),
    /// evaluated with [`TestCx::constants`].
    pub config: TestFn<Vec<(&'static str, Value)>>,
    /// Its statements in source order, evaluated once the test's config is
    /// loaded (URLs like `"${config.erp_url}/stock"` read it).
    pub stmts: TestFn<Vec<TestStmt>>,
    /// Its `instance "NAME" [from "FILE"]`, if any.
    pub instance: Option<TestInstance>,
}

/// `instance "NAME" [from "FILE.toml"]`: the test runs as instance `name`
/// (endpoints under `/i/NAME`) with `config`, the file's values as an
/// instance's config holds them (checked and embedded by flowc), under the
/// test's own `config { ... }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestInstance {
    /// The instance's name.
    pub name: &'static str,
    /// The file's values: a JSON object (`{}` without a file).
    pub config: &'static str,
}

/// How generated code gives the parts of a test: a function of the config.
pub type TestFn<T> = fn(&TestCx) -> Result<T, RunError>;

/// One statement of a test block (`config` is [`TestCase::config`]).
#[derive(Debug, Clone, PartialEq)]
pub enum TestStmt {
    /// `mock http METHOD URL => STATUS[, BODY]`.
    Mock(MockHttp),
    /// `run FLOW with { ... }`.
    Run(TestRun),
    /// `expect ...`.
    Expect(Expect),
}

/// `mock http METHOD URL => STATUS[, BODY]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MockHttp {
    /// HTTP method in upper case.
    pub method: &'static str,
    /// The URL (a String value).
    pub url: Value,
    /// The status to answer (an Int value).
    pub status: Value,
    /// The JSON body to answer (`null`: empty).
    pub body: Value,
}

/// `run FLOW with { trigger fields }`.
#[derive(Debug, Clone, PartialEq)]
pub struct TestRun {
    /// The flow to run.
    pub flow: &'static str,
    /// The trigger fields given (completed like `BINARY run --input`).
    pub input: Value,
}

/// An expectation.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// `expect http METHOD URL [with json J] [with headers H]`.
    Http {
        /// HTTP method in upper case.
        method: &'static str,
        /// The URL (a String value).
        url: Value,
        /// The JSON the body must contain.
        json: Option<Value>,
        /// Headers the request must carry with these values (names in any
        /// case).
        headers: Option<Value>,
    },
    /// `expect status succeeded|failed|skipped`.
    Status(&'static str),
    /// `expect response STATUS[, BODY]`.
    Response {
        /// The HTTP status (an Int value).
        status: Value,
        /// The body, if given.
        body: Option<Value>,
    },
}

/// What expressions in tests see: `config` (and `endpoint(flow)` once the
/// test's runtime exists). Generated code evaluates test expressions with
/// the same code as flow expressions, whose `cx` is then a `&TestCx`.
pub struct TestCx {
    config: Value,
    rt: Option<Runtime>,
}

static NULL: Value = Value::Null;

impl TestCx {
    /// For the test's `config { ... }` values: no config yet.
    pub fn constants() -> TestCx {
        TestCx {
            config: Value::Null,
            rt: None,
        }
    }

    /// For the statements: the test's loaded config.
    pub fn new(rt: &Runtime) -> TestCx {
        TestCx {
            config: rt.config().value().clone(),
            rt: Some(rt.clone()),
        }
    }

    /// The `config` object.
    pub fn config(&self) -> &Value {
        &self.config
    }

    /// `trigger` (not in scope in tests): `null`.
    pub fn trigger(&self) -> &Value {
        &NULL
    }

    /// The `env` value: `{ version }` (`null` in a test's `config`).
    pub fn env(&self) -> Value {
        let version = self
            .rt
            .as_ref()
            .map_or(Value::Null, |rt| Value::String(rt.integration().version()));
        crate::core::ops::record([("version", version)])
    }

    /// `error` (not in scope in tests): `null`.
    pub fn error(&self) -> &Value {
        &NULL
    }

    /// `endpoint(flow)`, as flows see it.
    pub fn endpoint(&self, flow: &str) -> Result<Value, RunError> {
        match &self.rt {
            Some(rt) => rt.endpoint(flow, None).map(Value::String),
            None => Err(RunError::new("endpoint: not available in a test's config")),
        }
    }

    /// `state.get(key)`: tests start with an empty state.
    pub fn state_get(&self, _key: &str) -> Result<Value, RunError> {
        Ok(Value::Null)
    }
}

// ---------------------------------------------------------------- HTTP mock

/// One HTTP call a flow made during a test.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedCall {
    /// Method in upper case.
    pub method: String,
    /// The full URL, with the `query:` parameters.
    pub url: String,
    /// The `json:` body.
    pub json: Option<Value>,
    /// The `body:` text.
    pub body: Option<String>,
    /// Request headers (lowercase names), with `bearer:`/`basic:` as
    /// `authorization`.
    pub headers: Map<String, Value>,
}

/// One `email.send` a flow made during a test.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEmail {
    /// The recipients' addresses.
    pub to: Vec<String>,
    /// The subject.
    pub subject: String,
    /// The attachments' file names.
    pub attachments: Vec<String>,
}

struct MockState {
    mocks: Vec<MockHttp>,
    calls: Vec<RecordedCall>,
    emails: Vec<RecordedEmail>,
}

static CURRENT: Mutex<Option<MockState>> = Mutex::new(None);

fn current() -> std::sync::MutexGuard<'static, Option<MockState>> {
    crate::core::sync::lock(&CURRENT)
}

/// The steps of a test run: the binary's own, with `http.*` and
/// `email.send` answered from the test's mocks, `file.*` on `sftp://` URLs
/// kept in the working directory and `sql.*` on a local SQLite database.
fn test_steps() -> StepRegistry {
    let mut registry = crate::host::step_registry();
    let mut replaced = http_mocks();
    #[cfg(feature = "email")]
    replaced.push(email_mock());
    replaced.extend(sftp_as_local());
    replaced.extend(crate::steps::sql::test_steps());
    for (name, f) in replaced {
        registry.step(name, f);
    }
    registry
}

/// The `http.*` implementations that answer from the current test's mocks.
pub fn http_mocks() -> Vec<(&'static str, StepFn)> {
    vec![
        ("http.get", mock_get as StepFn),
        ("http.post", mock_post),
        ("http.put", mock_put),
        ("http.patch", mock_patch),
        ("http.delete", mock_delete),
    ]
}

/// `email.send` for tests: composes the message like the real step (same
/// argument errors), records it, sends nothing and returns `true`.
#[cfg(feature = "email")]
pub fn email_mock() -> (&'static str, StepFn) {
    ("email.send", mock_email)
}

#[cfg(feature = "email")]
fn mock_email(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    async move {
        use crate::steps::email;
        let target = call
            .cx
            .config()
            .get("smtp_url")
            .and_then(Value::as_str)
            .and_then(|u| email::parse_smtp_url(u).ok());
        let id = email::message_id(call.cx.execution_id(), &call.step);
        email::compose(&call.args, &email::default_from(target.as_ref()), id)?;
        let recorded = RecordedEmail {
            to: match call.args.param(0, "to") {
                Value::Array(items) => items.iter().map(display).collect(),
                _ => Vec::new(),
            },
            subject: display(call.args.param(1, "subject")),
            attachments: match call.args.param(3, "attach") {
                Value::Array(files) => files.iter().map(|f| display(&f["name"])).collect(),
                _ => Vec::new(),
            },
        };
        if let Some(state) = current().as_mut() {
            state.emails.push(recorded);
        }
        Ok(Value::Bool(true))
    }
    .boxed()
}

/// `file.*` for tests: `sftp://user@host:port/dir/a.csv` is the local
/// file `sftp/host/dir/a.csv` in the test's working directory (no network,
/// no `auth:` needed), `s3://bucket/key` the file `s3/bucket/key` (no
/// connection used); local paths are used as they are.
pub fn sftp_as_local() -> Vec<(&'static str, StepFn)> {
    vec![
        ("file.read", sftp_local_read as StepFn),
        ("file.write", sftp_local_write),
        ("file.append", sftp_local_append),
        ("file.move", sftp_local_move),
        ("file.delete", sftp_local_delete),
        ("file.list", sftp_local_list),
    ]
}

fn sftp_local_read(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    file_step_locally("file.read", call, 1)
}

fn sftp_local_write(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    file_step_locally("file.write", call, 1)
}

fn sftp_local_append(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    file_step_locally("file.append", call, 1)
}

fn sftp_local_move(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    file_step_locally("file.move", call, 2)
}

fn sftp_local_delete(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    file_step_locally("file.delete", call, 1)
}

fn sftp_local_list(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    file_step_locally("file.list", call, 1)
}

/// Calls the real local `file.*` step with its first `paths` arguments'
/// `sftp://` URLs mapped into the working directory.
fn file_step_locally(
    name: &'static str,
    mut call: StepCall,
    paths: usize,
) -> BoxFuture<'static, Result<Value, StepError>> {
    // Confined on the URLs as written; the local paths are this runner's.
    if let Err(e) = crate::steps::confine(&call, name) {
        return async move { Err(e) }.boxed();
    }
    for v in call.args.positional.iter_mut().take(paths) {
        if let Some(local) = v.as_str().and_then(remote_local_path) {
            *v = Value::String(local);
        }
    }
    call.args
        .named
        .retain(|(n, _)| *n != "auth" && *n != "via" && !n.ends_with("_within"));
    // The binary's own steps, built once: the test's registry has this one mocked.
    static REAL: std::sync::OnceLock<StepRegistry> = std::sync::OnceLock::new();
    match REAL.get_or_init(crate::host::step_registry).step_fn(name) {
        Some(f) => f(call),
        None => async move { Err(StepError::permanent(format!("no step `{name}`"))) }.boxed(),
    }
}

/// `sftp://user@host/dir/a.csv` → `sftp/host/dir/a.csv`, `s3://bucket/key`
/// → `s3/bucket/key`.
fn remote_local_path(url: &str) -> Option<String> {
    if crate::io::s3::S3Path::is_s3(url) {
        let parsed = crate::io::s3::S3Path::parse(url).ok()?;
        return Some(format!("s3/{}/{}", parsed.bucket, parsed.key));
    }
    let parsed = crate::io::sftp::SftpUrl::parse(url).ok()?;
    Some(format!(
        "sftp/{}/{}",
        parsed.host,
        parsed.path.trim_start_matches('/')
    ))
}

fn mock_get(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    async move { mock_request("GET", &call) }.boxed()
}

fn mock_post(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    async move { mock_request("POST", &call) }.boxed()
}

fn mock_put(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    async move { mock_request("PUT", &call) }.boxed()
}

fn mock_patch(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    async move { mock_request("PATCH", &call) }.boxed()
}

fn mock_delete(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    async move { mock_request("DELETE", &call) }.boxed()
}

/// Whether a call to `actual` matches the `expected` URL of a mock or an
/// expectation: equal once parsed (so `http://a.test` is `http://a.test/`);
/// an `expected` URL without a query string ignores the call's query.
pub fn url_matches(expected: &str, actual: &str) -> bool {
    match (
        crate::core::schema::parse_url(expected),
        crate::core::schema::parse_url(actual),
    ) {
        (Ok(mut e), Ok(mut a)) => {
            // Queries compare decoded (`since=1970-01-01T00:00:00Z` is
            // sent as `since=1970-01-01T00%3A00%3A00Z`).
            let pairs = |u: &reqwest::Url| -> Vec<(String, String)> {
                u.query_pairs()
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            };
            let queries_match = e.query().is_none() || pairs(&e) == pairs(&a);
            for u in [&mut e, &mut a] {
                u.set_fragment(None);
                u.set_query(None);
            }
            queries_match && e == a
        }
        _ => expected == actual,
    }
}

fn mock_request(method: &str, call: &StepCall) -> Result<Value, StepError> {
    let args = &call.args;
    let name = format!("http.{}", method.to_ascii_lowercase());
    let url = crate::steps::request_url(&name, args)?.to_string();
    let mut headers = Map::new();
    if let Some(Value::Object(h)) = args.get_named("headers") {
        for (k, v) in h {
            if !v.is_null() {
                headers.insert(k.to_ascii_lowercase(), Value::String(display(v)));
            }
        }
    }
    // The credentials a real call would send: its own, or its
    // connection's (for OAuth2 a stand-in token: no token endpoint here).
    let credentials = match call.cx.services().connections().via(args)? {
        Some(connection) => Some(Credentials::for_tests(connection.def())),
        None => Credentials::of_call(args),
    };
    if let Some((header, value)) = credentials.and_then(|c| c.header()) {
        headers.insert(header, Value::String(value));
    }
    let json = args.get_named("json").filter(|v| !v.is_null()).cloned();
    // `Bytes` bodies are recorded as their (lossy) text, as a server sees them.
    let body = match json {
        Some(_) => None,
        None => args
            .data(usize::MAX, "body")
            .map_err(|e| StepError::permanent(format!("{method} {url}: {e}")))?
            .map(|data| String::from_utf8_lossy(&data).into_owned()),
    };
    let recorded = RecordedCall {
        method: method.to_string(),
        url: url.clone(),
        json,
        body,
        headers,
    };
    let mock = {
        let mut state = current();
        let Some(state) = state.as_mut() else {
            return Err(StepError::permanent(format!(
                "no mock for {method} {url}: no test is running"
            )));
        };
        state.calls.push(recorded);
        // A mock naming a query (`/contacts?page=2`) wins over one that
        // matches any query (`/contacts`), wherever they are written.
        let matching = |m: &&MockHttp| m.method == method && url_matches(&display(&m.url), &url);
        let found = state
            .mocks
            .iter()
            .filter(|m| display(&m.url).contains('?'))
            .find(matching)
            .or_else(|| state.mocks.iter().find(matching))
            .cloned();
        match found {
            Some(m) => m,
            None => {
                let mocks: Vec<String> = state
                    .mocks
                    .iter()
                    .map(|m| format!("{} {}", m.method, display(&m.url)))
                    .collect();
                let known = if mocks.is_empty() {
                    "this test mocks no HTTP calls".to_string()
                } else {
                    format!("mocks: {}", mocks.join(", "))
                };
                return Err(StepError::permanent(format!(
                    "no mock for {method} {url} ({known})"
                )));
            }
        }
    };
    let status = mock
        .status
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .unwrap_or(200);
    let text = match &mock.body {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let success = (200..300).contains(&status);
    let accepted = args
        .get_named("ok")
        .and_then(Value::as_array)
        .is_some_and(|ok| ok.iter().any(|s| s.as_u64() == Some(u64::from(status))));
    if !success && !accepted {
        let snippet: String = text.chars().take(200).collect();
        return Err(StepError::permanent(format!(
            "{method} {url}: HTTP {status} (mocked){}{snippet}",
            if snippet.is_empty() { "" } else { ": " }
        )));
    }
    let body = match (&args.as_schema, success) {
        (Some(schema), true) => schema.decode(&mock.body).map_err(|e| {
            StepError::permanent(format!("{method} {url}: mocked response body: {e}"))
        })?,
        _ => mock.body.clone(),
    };
    Ok(json!({
        "status": status,
        "body": body,
        "bytes": crate::core::bytes::encode(text.as_bytes()),
        "text": text,
        "headers": { "content-type": "application/json" },
    }))
}

// ---------------------------------------------------------------- matching

/// Whether `actual` contains `expected`: objects contain every key of
/// `expected` with a value that contains its value (a missing key counts as
/// `null`); arrays and scalars are equal (`1` equals `1.0`).
pub fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e
            .iter()
            .all(|(k, v)| contains(a.get(k).unwrap_or(&NULL), v)),
        _ => crate::core::ops::equal(actual, expected),
    }
}

/// Whether call `c` carried every header of `expected` with its value.
fn has_headers(c: &RecordedCall, expected: &Value) -> bool {
    let Value::Object(expected) = expected else {
        return true;
    };
    expected.iter().all(|(name, value)| {
        c.headers
            .get(&name.to_ascii_lowercase())
            .is_some_and(|got| display(got) == display(value))
    })
}

fn describe_call(c: &RecordedCall) -> String {
    let mut s = format!("{} {}", c.method, c.url);
    if let Some(j) = &c.json {
        let _ = write!(s, "  json {j}");
    } else if let Some(b) = &c.body {
        let _ = write!(s, "  body {b:?}");
    }
    s
}

fn describe_outcome(exec: &Execution) -> String {
    let mut s = exec.status.as_str().to_string();
    if let Some(e) = &exec.error {
        match &exec.error_step {
            Some(step) => {
                let _ = write!(s, " (step {step}: {e})");
            }
            None => {
                let _ = write!(s, " ({e})");
            }
        }
    } else if let Some(Value::String(reason)) = exec.result.as_ref().and_then(|r| r.get("skipped"))
    {
        let _ = write!(s, " ({reason:?})");
    }
    s
}

fn check(expect: &Expect, calls: &[RecordedCall], last: Option<&Execution>) -> Option<String> {
    match expect {
        Expect::Http {
            method,
            url,
            json,
            headers,
        } => {
            let url = display(url);
            let found = calls.iter().any(|c| {
                c.method == *method
                    && url_matches(&url, &c.url)
                    && json
                        .as_ref()
                        .is_none_or(|j| c.json.as_ref().is_some_and(|b| contains(b, j)))
                    && headers.as_ref().is_none_or(|h| has_headers(c, h))
            });
            if found {
                return None;
            }
            let mut out = format!("expect http {method} {url}");
            if let Some(j) = json {
                let _ = write!(out, " with json {j}");
            }
            if let Some(Value::Object(h)) = headers {
                // Names only: the values are often credentials.
                let names: Vec<&str> = h.keys().map(String::as_str).collect();
                let _ = write!(out, " with headers {{{}}}", names.join(", "));
            }
            let expected = describe_call(&RecordedCall {
                method: method.to_string(),
                url,
                json: json.clone(),
                body: None,
                headers: Map::new(),
            });
            let _ = write!(out, "\n    expected: {expected}");
            if calls.is_empty() {
                out.push_str("\n    actual:   (no HTTP calls)");
            }
            for (i, c) in calls.iter().enumerate() {
                let label = if i == 0 { "actual:  " } else { "         " };
                let _ = write!(out, "\n    {label} {}", describe_call(c));
            }
            Some(out)
        }
        Expect::Status(want) => {
            let Some(exec) = last else {
                return Some(format!("expect status {want}: no flow has run yet"));
            };
            if exec.status.as_str() == *want {
                return None;
            }
            Some(format!(
                "expect status {want}\n    expected: {want}\n    actual:   {}",
                describe_outcome(exec)
            ))
        }
        Expect::Response { status, body } => {
            let want_status = status.as_u64().unwrap_or(0);
            let mut want = format!("{want_status}");
            if let Some(b) = body {
                let _ = write!(want, ", {b}");
            }
            let Some(exec) = last else {
                return Some(format!("expect response {want}: no flow has run yet"));
            };
            let answer = crate::triggers::http::sync_answer(exec);
            let (got_status, got_body) = (
                answer.status,
                answer.body.map(Cow::into_owned).unwrap_or_default(),
            );
            let status_ok = u64::from(got_status) == want_status;
            let body_ok = body
                .as_ref()
                .is_none_or(|b| crate::core::ops::equal(b, &got_body));
            if status_ok && body_ok {
                return None;
            }
            let mut got = format!("{got_status}");
            if !got_body.is_null() || body.is_some() {
                let _ = write!(got, ", {got_body}");
            }
            if exec.status == Status::Failed {
                let _ = write!(got, "  (the run failed: {})", describe_outcome(exec));
            }
            Some(format!(
                "expect response {want}\n    expected: {want}\n    actual:   {got}"
            ))
        }
    }
}

// ---------------------------------------------------------------- running

/// A fresh working directory for one test; the previous one is restored
/// and the folder removed when dropped.
struct WorkDir {
    previous: Option<PathBuf>,
    dir: PathBuf,
}

impl WorkDir {
    fn enter() -> Result<WorkDir, String> {
        let dir = std::env::temp_dir().join(format!("flow-test-{}", new_execution_id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let previous = std::env::current_dir().ok();
        std::env::set_current_dir(&dir)
            .map_err(|e| format!("cannot enter {}: {e}", dir.display()))?;
        Ok(WorkDir { previous, dir })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Some(p) = &self.previous {
            let _ = std::env::set_current_dir(p);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Ends the current test's mocks when dropped.
struct MockGuard;

impl Drop for MockGuard {
    fn drop(&mut self) {
        *current() = None;
    }
}

fn is_optional(schema: &Schema) -> bool {
    match schema {
        Schema::Optional(_) => true,
        Schema::Ref(name) => {
            crate::core::schema::lookup_type(name).is_some_and(|s| is_optional(&s))
        }
        _ => false,
    }
}

/// Waits until no execution is queued or running (flows dispatched by the
/// run have finished), for at most 30 s.
async fn settle(rt: &Runtime) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut busy = false;
        for status in [Status::Queued, Status::Running] {
            let found = rt
                .store()
                .list(ExecutionFilter {
                    status: Some(status),
                    flow: None,
                    limit: 1,
                    ..ExecutionFilter::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            busy |= !found.is_empty();
        }
        if !busy {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("dispatched flows still running after 30s".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs one test; `Err` holds the failures, one per entry.
pub async fn run_case(integration: &Integration, case: &TestCase) -> Result<(), Vec<String>> {
    let one = |m: String| vec![m];
    let values = (case.config)(&TestCx::constants()).map_err(|e| one(format!("config: {e}")))?;
    // An instance's config: the file's values, under the test's own.
    let mut instance_values = match case.instance {
        Some(i) => Some(
            serde_json::from_str::<Map<String, Value>>(i.config)
                .map_err(|e| one(format!("instance {}: config: {e}", i.name)))?,
        ),
        None => None,
    };
    let mut integration = integration.clone();
    let mut missing = Vec::new();
    for entry in &mut integration.config {
        let in_file = instance_values
            .as_ref()
            .is_some_and(|m| m.contains_key(entry.name));
        if let Some((_, v)) = values.iter().find(|(n, _)| *n == entry.name) {
            entry.default = Some(v.clone());
            if let Some(m) = instance_values.as_mut() {
                m.remove(entry.name);
            }
        } else if !in_file && entry.default.is_none() && !is_optional(&entry.schema) {
            missing.push(entry.name);
        }
    }
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|n| format!("`{n}`")).collect();
        return Err(one(format!(
            "config entry {} has no default: give {} a value in the test's `config {{ {}: ... }}`{}",
            list.join(", "),
            if missing.len() == 1 { "it" } else { "them" },
            missing.join(": ..., "),
            if case.instance.is_some() {
                " or in the instance's file"
            } else {
                ""
            },
        )));
    }
    let _dir = WorkDir::enter().map_err(one)?;
    let options = RuntimeOptions {
        env: EnvSource::from_pairs(Vec::<(String, String)>::new()),
        config_file: None,
        store: None,
        workers: 1,
        retention: None,
        steps: test_steps(),
        config_values: instance_values,
        instance: case.instance.map(|i| i.name.to_string()),
        ..RuntimeOptions::default()
    };
    let rt = Runtime::new(integration, options).map_err(|e| one(e.to_string()))?;
    let redact = |s: String| rt.redactor().redact_string(s);
    let stmts = (case.stmts)(&TestCx::new(&rt)).map_err(|e| one(redact(e.to_string())))?;
    let mocks = stmts
        .iter()
        .filter_map(|s| match s {
            TestStmt::Mock(m) => Some(m.clone()),
            _ => None,
        })
        .collect();
    *current() = Some(MockState {
        mocks,
        calls: Vec::new(),
        emails: Vec::new(),
    });
    let _mocks = MockGuard;
    let workers = rt.start_workers();
    let mut failures = Vec::new();
    let mut last: Option<Execution> = None;
    for stmt in &stmts {
        match stmt {
            TestStmt::Mock(_) => {}
            TestStmt::Run(run) => {
                let trigger = match complete_trigger(&rt, run.flow, run.input.clone()) {
                    Ok(t) => t,
                    Err(e) => {
                        failures.push(format!("run {}: {e}", run.flow));
                        break;
                    }
                };
                match rt.run_inline(new_execution_id(), run.flow, trigger).await {
                    Ok(exec) => last = Some(exec),
                    Err(e) => {
                        failures.push(format!("run {}: {e}", run.flow));
                        break;
                    }
                }
                if let Err(e) = settle(&rt).await {
                    failures.push(format!("run {}: {e}", run.flow));
                    break;
                }
            }
            TestStmt::Expect(expect) => {
                let calls = current()
                    .as_ref()
                    .map(|s| s.calls.clone())
                    .unwrap_or_default();
                if let Some(f) = check(expect, &calls, last.as_ref()) {
                    failures.push(f);
                }
            }
        }
    }
    if !failures.is_empty() {
        // What went wrong in the runs (dispatched ones too) explains most
        // unmet expectations.
        let failed = rt
            .store()
            .list(ExecutionFilter {
                status: Some(Status::Failed),
                flow: None,
                limit: 100,
                ..ExecutionFilter::default()
            })
            .await
            .unwrap_or_default();
        for exec in failed.iter().rev() {
            let error = exec.error.as_deref().unwrap_or("");
            // Already shown by an `expect status` of that run.
            if failures.iter().any(|f| f.contains(error)) {
                continue;
            }
            let step = exec
                .error_step
                .as_ref()
                .map(|s| format!("step {s}: "))
                .unwrap_or_default();
            failures.push(format!(
                "note: a run of `{}` failed: {step}{error}",
                exec.flow
            ));
        }
        let emails = current()
            .as_ref()
            .map(|s| s.emails.clone())
            .unwrap_or_default();
        for e in emails {
            let mut note = format!("note: email.send to {} {:?}", e.to.join(", "), e.subject);
            if !e.attachments.is_empty() {
                let _ = write!(note, " attaching {}", e.attachments.join(", "));
            }
            failures.push(note);
        }
    }
    rt.begin_shutdown();
    for w in workers {
        w.abort();
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.into_iter().map(redact).collect())
    }
}

/// `BINARY test [--filter NAME]`: runs the tests whose name contains
/// `filter`, prints `test NAME ... ok|FAILED`, the failures and `N passed,
/// M failed`; exit 0 when all passed, 1 otherwise.
pub async fn run(integration: Integration, tests: Vec<TestCase>, filter: Option<&str>) -> ExitCode {
    let all = tests.len();
    let cases: Vec<TestCase> = tests
        .into_iter()
        .filter(|c| filter.is_none_or(|f| c.name.contains(f)))
        .collect();
    if all == 0 {
        println!("{} has no tests", integration.name);
    } else {
        println!(
            "running {} test{} of {}",
            cases.len(),
            if cases.len() == 1 { "" } else { "s" },
            integration.name
        );
    }
    let mut passed = 0;
    let mut failed = Vec::new();
    for case in &cases {
        match run_case(&integration, case).await {
            Ok(()) => {
                passed += 1;
                println!("test {} ... ok", case.name);
            }
            Err(failures) => {
                println!("test {} ... FAILED", case.name);
                failed.push((case.name, failures));
            }
        }
    }
    if !failed.is_empty() {
        println!("\nfailures:");
        for (name, failures) in &failed {
            println!("\n---- {name} ----");
            for f in failures {
                println!("  {f}");
            }
        }
        println!();
    }
    println!("{passed} passed, {} failed", failed.len());
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_is_recursive_on_objects_only() {
        let body = json!({ "delta": -5, "note": null, "meta": { "a": 1, "b": [1, 2] } });
        assert!(contains(&body, &json!({ "delta": -5 })));
        assert!(contains(&body, &json!({ "delta": -5.0 })));
        assert!(contains(&body, &json!({ "meta": { "b": [1, 2] } })));
        assert!(contains(&body, &json!({ "missing": null })));
        assert!(!contains(&body, &json!({ "delta": 5 })));
        assert!(!contains(&body, &json!({ "meta": { "b": [1] } })));
        assert!(!contains(&body, &json!({ "other": 1 })));
        assert!(contains(&json!([1, { "a": 1 }]), &json!([1, { "a": 1 }])));
        assert!(!contains(
            &json!([1, { "a": 1, "b": 2 }]),
            &json!([1, { "a": 1 }])
        ));
    }

    #[test]
    fn urls_match_after_parsing_and_ignore_an_unasked_query() {
        assert!(url_matches("http://a.test", "http://a.test/"));
        assert!(url_matches("http://a.test/x", "http://a.test/x?since=1"));
        assert!(!url_matches(
            "http://a.test/x?since=2",
            "http://a.test/x?since=1"
        ));
        assert!(!url_matches("http://a.test/x", "http://a.test/y"));
        assert!(url_matches("not a url", "not a url"));
        assert!(url_matches(
            "http://a.test/x?since=1970-01-01T00:00:00Z",
            "http://a.test/x?since=1970-01-01T00%3A00%3A00Z"
        ));
    }
}
