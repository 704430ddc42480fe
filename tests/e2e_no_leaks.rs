//! End to end: no leaks (`tests/flows/no_leaks.flow`). A key passed
//! through `reveal()` into the query string of a failing `http.get` shows
//! in no form in the logs, the answer or the execution record; a failed
//! sync run answers only `run failed` and its id; credential headers are
//! stored masked.

mod support;

use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use support::{admin_execution, get, post_raw, wait_execution, Reply, Service, Sink};

/// Characters that every encoding changes: space, `"`, `/`, `+`, `&`.
const API_KEY: &str = r#"sk_live "9/x+y&z~k3y"#;
const ADMIN: &str = "admin-token-e2e";
const WAIT: Duration = Duration::from_secs(20);

fn no_leaks(sink: &Sink) -> Service {
    let binary = support::build_example("tests/flows/no_leaks.flow");
    Service::start(
        &binary,
        &[
            ("UPSTREAM_URL", sink.url()),
            ("API_KEY", API_KEY),
            ("FLOW_ADMIN_TOKEN", ADMIN),
        ],
        &[],
    )
}

/// `text` percent-encoded, every byte but `A-Za-z0-9-._~` as `%XX`, a
/// space as `space`.
fn percent(text: &str, space: &str, lowercase: bool) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            b' ' => space.to_string(),
            _ if lowercase => format!("%{b:02x}"),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every form the key could leak in.
fn forms_of_the_key() -> Vec<(&'static str, String)> {
    let b64 = &base64::engine::general_purpose::STANDARD;
    let b64_url = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let json = serde_json::to_string(API_KEY).expect("a string");
    vec![
        ("plain", API_KEY.to_string()),
        ("percent-encoded", percent(API_KEY, "%20", false)),
        ("percent-encoded, lowercase", percent(API_KEY, "%20", true)),
        (
            "form-encoded",
            percent(API_KEY, "+", false).replace('~', "%7E"),
        ),
        (
            "as in a URL's query",
            API_KEY.replace(' ', "%20").replace('"', "%22"),
        ),
        ("base64", b64.encode(API_KEY)),
        ("URL-safe base64", b64_url.encode(API_KEY)),
        ("JSON-escaped", json.trim_matches('"').to_string()),
    ]
}

fn assert_no_form_of_the_key(what: &str, text: &str) {
    for (form, value) in forms_of_the_key() {
        assert!(
            !text.contains(&value),
            "{what} holds the key {form} ({value}):\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sync_run_answers_run_failed_and_leaks_the_key_nowhere() {
    let sink = Sink::start();
    // The upstream echoes what it was sent, as error bodies do.
    let echo = format!("bad key {API_KEY}");
    let echo_b64 = base64::engine::general_purpose::STANDARD.encode(API_KEY);
    sink.on(
        "GET",
        "/search",
        [Reply::json(401, json!({ "error": echo, "key": echo_b64 }))],
    );
    let svc = no_leaks(&sink);

    let a = get(
        &svc.at("/search/books"),
        &[("authorization", "Bearer caller-token-123")],
    )
    .await;
    assert_eq!(a.status, 500, "{}", a.body);
    let id = a
        .header("x-execution-id")
        .expect("X-Execution-Id")
        .to_string();
    assert_eq!(a.body, json!({ "error": "run failed", "execution_id": id }));

    // The key did reach the upstream, percent-encoded.
    let calls = sink.requests_to("GET", "/search");
    assert_eq!(calls.len(), 1, "{}", sink.summary());

    // The detail is in the execution record, behind the admin token.
    let exec = wait_execution(svc.url(), &id, ADMIN, WAIT).await;
    assert_eq!(exec["status"], "failed", "{exec}");
    let error = exec["error"].as_str().unwrap_or_default();
    let upstream = format!("GET {}/search: HTTP 401", sink.url());
    assert!(error.contains(&upstream), "{error}");
    assert!(!error.contains('?'), "the URL keeps no query: {error}");

    let (_, record) = admin_execution(svc.url(), &id, ADMIN).await;
    assert_no_form_of_the_key("the execution record", &record.to_string());
    // The caller's credentials, unread by the flow, are recorded masked.
    assert_eq!(
        record["trigger"]["headers"]["authorization"], "***",
        "{record}"
    );
    assert_no_form_of_the_key("the log", &svc.stderr());
    assert_no_form_of_the_key("stdout", &svc.stdout());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_headers_are_stored_masked() {
    let sink = Sink::start();
    let svc = no_leaks(&sink);
    let body = br#"{"n":1}"#;
    let a = post_raw(
        &svc.at("/events"),
        body,
        &[
            ("Authorization", "Bearer caller-token-zqxw"),
            ("X-Api-Key", "caller-key-zqxw"),
            ("Cookie", "session=caller-cookie-zqxw"),
            ("X-Delivery-Id", "d-1"),
        ],
    )
    .await;
    assert_eq!(a.status, 202, "{}", a.body);
    let id = a.body["execution_id"].as_str().expect("execution_id");
    let exec = wait_execution(svc.url(), id, ADMIN, WAIT).await;
    let headers: &Value = &exec["trigger"]["headers"];
    assert_eq!(headers["authorization"], "***", "{exec}");
    assert_eq!(headers["x-api-key"], "***", "{exec}");
    assert_eq!(headers["cookie"], "***", "{exec}");
    assert_eq!(headers["x-delivery-id"], "d-1", "{exec}");
    // A marker no id or time stamp can contain (they are digits and hex).
    assert!(!exec.to_string().contains("zqxw"), "{exec}");
}
