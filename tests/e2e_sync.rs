//! End to end: sync flows. `examples/customer_lookup.flow` answers with data
//! fetched from a local server (200, its 404 branch, response headers);
//! `tests/flows/slow_lookup.flow` times out after 500 ms and falls back to
//! `202` plus a callback to the caller's `X-Callback-Url` (the sink's
//! loopback address listed in `FLOW_CALLBACK_HOSTS`).

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{get, poll_until, wait_execution, Reply, Service, Sink};

const CRM_KEY: &str = "crm-key-e2e-1234";
const ADMIN: &str = "admin-token-e2e";
const WAIT: Duration = Duration::from_secs(20);
const CALLBACK_SECRET: &str = "callback-secret-e2e";

/// `slow_lookup` with callbacks to the sink (on 127.0.0.1) turned on.
fn slow_lookup_with_callbacks(sink: &Sink) -> Service {
    let binary = support::build_example("tests/flows/slow_lookup.flow");
    Service::start(
        &binary,
        &[
            ("UPSTREAM_URL", sink.url()),
            ("FLOW_ADMIN_TOKEN", ADMIN),
            ("FLOW_CALLBACK_HOSTS", "127.0.0.1"),
            ("FLOW_CALLBACK_SECRET", CALLBACK_SECRET),
        ],
        &[],
    )
}

/// Checks a callback's `X-Flow-Signature` (`t=TS,v1=HMAC(TS.BODY)`).
fn assert_signed(hit: &support::Received) {
    let sig = hit.header("x-flow-signature").unwrap_or_default();
    let (t, v1) = sig
        .strip_prefix("t=")
        .and_then(|s| s.split_once(",v1="))
        .unwrap_or_else(|| panic!("malformed X-Flow-Signature {sig:?}"));
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(&hit.raw);
    assert_eq!(v1, support::hmac_hex(CALLBACK_SECRET, &signed));
}

fn customer_lookup(sink: &Sink) -> Service {
    let binary = support::build_example("examples/customer_lookup.flow");
    Service::start(
        &binary,
        &[
            ("CRM_URL", sink.url()),
            ("CRM_KEY", CRM_KEY),
            ("FLOW_ADMIN_TOKEN", ADMIN),
        ],
        &[],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_answers_with_data_from_upstream() {
    let sink = Sink::start();
    sink.on(
        "GET",
        "/customers/7",
        [Reply::json(
            200,
            json!({ "id": "7", "name": "Ada Lovelace", "tier": "gold", "extra": "ignored" }),
        )],
    );
    sink.on(
        "GET",
        "/customers/8",
        [Reply::json(
            200,
            json!({ "id": "8", "name": "Charles Babbage", "tier": "silver" }),
        )],
    );
    let svc = customer_lookup(&sink);

    let a = get(&svc.at("/customers/7"), &[]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body, json!({ "name": "Ada Lovelace", "discount": 20 }));
    assert_eq!(a.header("cache-control"), Some("max-age=60"));
    assert_eq!(a.header("content-type"), Some("application/json"));
    let id = a
        .header("x-execution-id")
        .expect("X-Execution-Id")
        .to_string();

    let upstream = sink.requests_to("GET", "/customers/7");
    assert_eq!(upstream.len(), 1, "{}", sink.summary());
    assert_eq!(upstream[0].header("x-api-key"), Some(CRM_KEY));

    let a = get(&svc.at("/customers/8"), &[]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body, json!({ "name": "Charles Babbage", "discount": 10 }));
    assert_ne!(a.header("x-execution-id"), Some(id.as_str()));
    // (A sync run answered in time need not be stored: the caller has its
    // answer. The admin API is checked for runs that fall back to async.)
    assert!(!svc.stderr().contains(CRM_KEY), "the key is never logged");

    // The drawing of the flows that flowc embedded, for the executions
    // page: to the admin only.
    let bearer = format!("Bearer {ADMIN}");
    let graph = get(
        &svc.at("/_flow/ui/graph.svg"),
        &[("Authorization", &bearer)],
    )
    .await;
    assert_eq!(graph.status, 200);
    assert_eq!(graph.header("content-type"), Some("image/svg+xml"));
    let svg = graph.body.as_str().unwrap_or_default();
    assert!(
        svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
        "{svg}"
    );
    assert!(
        svg.contains("flow get_customer<") && svg.contains("sync GET /customers/{id}"),
        "{svg}"
    );
    let anonymous = get(&svc.at("/_flow/ui/graph.svg"), &[]).await;
    assert_eq!(anonymous.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_customer_takes_the_404_branch() {
    let sink = Sink::start();
    sink.on(
        "GET",
        "/customers/99",
        [Reply::json(404, json!({ "message": "not found" }))],
    );
    let svc = customer_lookup(&sink);
    let a = get(&svc.at("/customers/99"), &[]).await;
    assert_eq!(a.status, 404, "{}", a.body);
    assert_eq!(a.body, json!({ "error": "no customer 99" }));
    assert_eq!(
        a.header("cache-control"),
        None,
        "only the 200 answer sets it"
    );
    // `ok: [404]`: accepted at once, not retried.
    assert_eq!(sink.requests().len(), 1, "{}", sink.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_answer_of_the_wrong_type_is_500() {
    let sink = Sink::start();
    sink.on(
        "GET",
        "/customers/5",
        [Reply::json(
            200,
            json!({ "id": "5", "name": "Grace", "tier": "platinum" }),
        )],
    );
    let svc = customer_lookup(&sink);
    let a = get(&svc.at("/customers/5"), &[]).await;
    assert_eq!(a.status, 500, "{}", a.body);
    let id = a.header("x-execution-id").expect("X-Execution-Id");
    // The caller learns only that it failed; the why is in the admin API.
    assert_eq!(a.body, json!({ "error": "run failed", "execution_id": id }));
    let exec = wait_execution(svc.url(), id, ADMIN, WAIT).await;
    let error = exec["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(r#"tier: expected "gold" | "silver" | "bronze", got "platinum""#),
        "{error}"
    );
    // A body of the wrong type is a permanent failure: one request only.
    assert_eq!(sink.requests().len(), 1, "{}", sink.summary());
    // A sync run has no span: its failure lines name the run themselves.
    let names_the_run = |what: &str| {
        svc.stderr()
            .lines()
            .any(|l| l.contains(what) && l.contains(id) && l.contains("get_customer"))
    };
    poll_until(WAIT, "the failure lines in the log", || async {
        (names_the_run("step failed") && names_the_run("run failed")).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_falls_back_to_202_and_a_callback() {
    let sink = Sink::start();
    sink.on(
        "GET",
        "/quotes/slow",
        [Reply::json(200, json!({ "price": 42 })).after(Duration::from_millis(1500))],
    );
    let svc = slow_lookup_with_callbacks(&sink);

    // Past the timeout: 202 with the execution id and a status URL, then a
    // signed callback.
    let callback = format!("{}/callback", sink.url());
    let started = Instant::now();
    let a = get(&svc.at("/quotes/slow"), &[("X-Callback-Url", &callback)]).await;
    let waited = started.elapsed();
    assert_eq!(a.status, 202, "{}", a.body);
    assert!(
        waited >= Duration::from_millis(500),
        "answered after {waited:?}, before the 500 ms timeout"
    );
    let id = a.body["execution_id"].as_str().expect("execution_id");
    assert_eq!(
        a.body["status_url"].as_str(),
        Some(format!("/_flow/executions/{id}").as_str())
    );

    let calls = sink.wait_for_path("POST", "/callback", 1, WAIT).await;
    assert_eq!(
        calls[0].body,
        json!({
            "execution_id": id,
            "status": "succeeded",
            "http_status": 200,
            "body": { "sku": "slow", "price": 42 },
        })
    );
    assert_signed(&calls[0]);
    assert_eq!(calls[0].header("x-flow-execution-id"), Some(id));
    // The status URL tells the same story.
    let status_url = svc.at(a.body["status_url"].as_str().unwrap_or_default());
    let exec = get(
        &status_url,
        &[("Authorization", &format!("Bearer {ADMIN}"))],
    )
    .await;
    assert_eq!(exec.status, 200, "{}", exec.body);
    assert_eq!(exec.body["status"], "succeeded");
    assert_eq!(exec.body["result"]["body"]["price"], 42);
    assert_eq!(sink.requests_to("GET", "/quotes/slow").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_callback_url_the_result_waits_at_the_status_url() {
    let sink = Sink::start();
    sink.on(
        "GET",
        "/quotes/later",
        [Reply::json(200, json!({ "price": 5 })).after(Duration::from_millis(1000))],
    );
    let binary = support::build_example("tests/flows/slow_lookup.flow");
    let svc = Service::start(
        &binary,
        &[("UPSTREAM_URL", sink.url()), ("FLOW_ADMIN_TOKEN", ADMIN)],
        &[],
    );
    let a = get(&svc.at("/quotes/later"), &[]).await;
    assert_eq!(a.status, 202, "{}", a.body);
    let id = a.body["execution_id"].as_str().expect("execution_id");
    let exec = wait_execution(svc.url(), id, ADMIN, WAIT).await;
    assert_eq!(exec["status"], "succeeded", "{exec:#}");
    assert_eq!(
        exec["result"]["body"],
        json!({ "sku": "later", "price": 5 })
    );
    assert_eq!(sink.requests().len(), 1, "{}", sink.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_failing_after_the_timeout_calls_back_that_it_failed() {
    let sink = Sink::start();
    sink.on(
        "GET",
        "/quotes/broken",
        [Reply::json(200, json!({ "price": "cheap" })).after(Duration::from_millis(1000))],
    );
    let svc = slow_lookup_with_callbacks(&sink);
    let callback = format!("{}/callback", sink.url());
    let a = get(&svc.at("/quotes/broken"), &[("X-Callback-Url", &callback)]).await;
    assert_eq!(a.status, 202, "{}", a.body);
    let id = a.body["execution_id"].as_str().expect("execution_id");
    let calls = sink.wait_for_path("POST", "/callback", 1, WAIT).await;
    // Only that it failed: the error is for the admin API.
    assert_eq!(
        calls[0].body,
        json!({ "execution_id": id, "status": "failed" })
    );
    assert_signed(&calls[0]);
    let exec = wait_execution(svc.url(), id, ADMIN, WAIT).await;
    let error = exec["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(r#"price: expected Int, got "cheap""#),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_fallback_a_slow_upstream_is_504() {
    let sink = Sink::start();
    sink.on(
        "GET",
        "/quotes/slow",
        [Reply::json(200, json!({ "price": 42 })).after(Duration::from_millis(3500))],
    );
    sink.on(
        "GET",
        "/quotes/free",
        [Reply::json(200, json!({ "price": 0 }))],
    );
    sink.on(
        "GET",
        "/quotes/fast",
        [Reply::json(200, json!({ "price": 3 }))],
    );
    let binary = support::build_example("tests/flows/slow_lookup.flow");
    let svc = Service::start(
        &binary,
        &[("UPSTREAM_URL", sink.url()), ("FLOW_ADMIN_TOKEN", ADMIN)],
        &[],
    );
    let a = get(&svc.at("/prices/slow"), &[]).await;
    assert_eq!(a.status, 504, "{}", a.body);
    assert_eq!(a.body, json!({ "error": "timed out after 2s" }));
    let id = a
        .header("x-execution-id")
        .expect("X-Execution-Id")
        .to_string();
    let exec = wait_execution(svc.url(), &id, ADMIN, WAIT).await;
    assert_eq!(exec["status"], "failed", "{exec:#}");
    assert_eq!(exec["error"], "timed out after 2s");

    // `skip` in a sync flow answers 200 with the reason.
    let a = get(&svc.at("/prices/free"), &[]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body, json!({ "skipped": "free" }));

    // Response headers are read whatever the case of their name.
    let a = get(&svc.at("/prices/fast"), &[]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.body,
        json!({ "sku": "fast", "price": 3, "content_type": "application/json" })
    );
}
