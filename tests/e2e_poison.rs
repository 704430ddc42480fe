//! End to end: poison input (`tests/flows/poison.flow`). JSON nested deeper
//! than 64 levels is refused at intake with `400`, on webhooks and sync
//! endpoints alike, and the service goes on serving: before the limit, a
//! 127-deep body was stored, could not be read back, and broke every claim
//! and listing after it.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{post_json, post_raw, wait_execution, Service, Sink};

const ADMIN: &str = "admin-token-e2e";
const WAIT: Duration = Duration::from_secs(20);

fn poison(sink: &Sink) -> Service {
    let binary = support::build_example("tests/flows/poison.flow");
    Service::start(
        &binary,
        &[("SINK_URL", sink.url()), ("FLOW_ADMIN_TOKEN", ADMIN)],
        &[],
    )
}

/// An envelope whose `data` nests `depth` arrays deep.
fn nested_envelope(depth: usize) -> String {
    format!(
        r#"{{"kind": "deep", "data": {}{}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

/// POSTs a 127-deep body to `path`: refused before it is parsed.
async fn assert_refused(svc: &Service, path: &str) {
    let a = post_raw(&svc.at(path), nested_envelope(127).as_bytes(), &[]).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(
        a.body,
        json!({ "error": "request body nests deeper than 64 levels" })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_body_nested_too_deep_is_400_and_the_next_one_runs() {
    let sink = Sink::start();
    let svc = poison(&sink);

    assert_refused(&svc, "/events").await;

    // At the limit (63 arrays inside the envelope object) it is accepted.
    let a = post_raw(&svc.at("/events"), nested_envelope(63).as_bytes(), &[]).await;
    assert_eq!(a.status, 202, "{}", a.body);
    let at_limit = a.body["execution_id"].as_str().unwrap().to_string();

    let (status, answer) = post_json(
        &svc.at("/events"),
        &json!({ "kind": "normal", "data": { "id": 1 } }),
        &[],
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["execution_id"].as_str().unwrap();
    let exec = wait_execution(svc.url(), id, ADMIN, WAIT).await;
    assert_eq!(exec["status"], "succeeded", "{exec:#}");
    let exec = wait_execution(svc.url(), &at_limit, ADMIN, WAIT).await;
    assert_eq!(exec["status"], "succeeded", "{exec:#}");

    let listing = support::get(
        &svc.at("/_flow/executions"),
        &[("Authorization", &format!("Bearer {ADMIN}"))],
    )
    .await;
    assert_eq!(listing.status, 200, "{}", listing.body);
    assert_eq!(
        listing.body["executions"].as_array().map(Vec::len),
        Some(2),
        "the refused body left nothing behind: {}",
        listing.body
    );
    assert!(
        !svc.stderr().contains("cannot claim work"),
        "{}",
        svc.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_body_nested_too_deep_is_400_and_the_next_one_is_served() {
    let sink = Sink::start();
    let svc = poison(&sink);

    assert_refused(&svc, "/echo").await;

    let (status, answer) = post_json(
        &svc.at("/echo"),
        &json!({ "kind": "normal", "data": [[1]] }),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, json!({ "kind": "normal" }));
}
