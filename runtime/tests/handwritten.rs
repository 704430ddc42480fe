//! Drives the hand-written "generated" program `examples/inventory_sync.rs`
//! over real HTTP: webhook → steps → dispatch, dedupe, retries, on failure,
//! replay, sync respond, schedule, deploy, metrics and the admin API.

mod common;

#[allow(dead_code)]
#[path = "../examples/inventory_sync.rs"]
mod inventory_sync;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{expect_status, within};
use flow_runtime::{Runtime, ServerHandle, Status};
use flow_testkit::{hmac_hex, Reply, Sink};
use serde_json::{json, Value};

const ADMIN: &str = "admin-token-xyz";
const SECRET: &str = "whsec-abcdef";

async fn start(sink: &Sink) -> ServerHandle {
    let url = sink.url().to_string();
    let env = [
        ("ERP_URL", url.as_str()),
        ("ERP_TOKEN", "erp-token-123"),
        ("WEBHOOK_SECRET", SECRET),
        ("PUBLIC_URL", "https://inv.example.com"),
    ];
    let rt = Runtime::new(inventory_sync::integration(), common::options(&env)).unwrap();
    common::serve(&rt, Some(ADMIN)).await
}

fn event(updates: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({ "event": "INVENTORY_UPDATE", "updates": updates })).unwrap()
}

async fn deliver(server: &ServerHandle, delivery: &str, body: &[u8]) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/inventory", server.url()))
        .header("content-type", "application/json")
        .header("x-signature", format!("sha256={}", hmac_hex(SECRET, body)))
        .header("x-delivery-id", delivery)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

async fn admin_get(server: &ServerHandle, path: &str) -> Value {
    let resp = reqwest::Client::new()
        .get(format!("{}{path}", server.url()))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    resp.json().await.unwrap()
}

/// A `429` (or `503`) with `Retry-After` is retried that much later, not
/// after the step's backoff (`adjust` has `backoff 100ms..1s`).
#[tokio::test]
async fn retry_after_replaces_the_backoff() {
    let sink = Sink::responding(|r, earlier| match (r.path.as_str(), earlier) {
        ("/stock/gadgets", 0) => Reply::status(429).header("Retry-After", "1"),
        _ => Reply::ok(),
    });
    let server = start(&sink).await;
    let rt = server.runtime().clone();
    let body = event(json!([{ "Item-Name": "gadgets", "action": "add", "quantity": 1 }]));
    let (status, answer) = deliver(&server, "delivery-retry-after", &body).await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["execution_id"].as_str().unwrap().to_string();
    expect_status(&rt, &id, Status::Succeeded).await;
    let calls = sink.requests_to("POST", "/stock/gadgets");
    assert_eq!(calls.len(), 2, "{}", sink.summary());
    let waited = calls[1].at - calls[0].at;
    assert!(
        waited >= std::time::Duration::from_secs(1),
        "the second attempt came {waited:?} after the first"
    );
}

#[tokio::test]
async fn webhook_runs_steps_retries_dispatches_and_dedupes() {
    // The ERP fails the first call for gadgets: the step is retried.
    let sink = Sink::responding(|r, earlier| match (r.path.as_str(), earlier) {
        ("/stock/gadgets", 0) => (503, json!({"error": "busy"})),
        _ => (200, json!({})),
    });
    let server = start(&sink).await;
    let rt = server.runtime().clone();

    let body = event(json!([
        { "Item-Name": "widgets", "action": "add", "quantity": 20 },
        { "Item-Name": "gadgets", "action": "remove", "quantity": 5, "note": "damaged" },
    ]));
    let (status, answer) = deliver(&server, "delivery-1", &body).await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["execution_id"].as_str().unwrap().to_string();
    expect_status(&rt, &id, Status::Succeeded).await;

    let widgets = sink.requests_to("POST", "/stock/widgets");
    assert_eq!(widgets.len(), 1);
    assert_eq!(widgets[0].body, json!({ "delta": 20 }));
    assert_eq!(
        widgets[0].header("authorization"),
        Some("Bearer erp-token-123")
    );
    assert_eq!(
        widgets[0].header("idempotency-key"),
        Some(format!("{id}/adjust[0]").as_str())
    );
    let gadgets = sink.requests_to("POST", "/stock/gadgets");
    assert_eq!(gadgets.len(), 2, "one failure, one retry");
    assert!(gadgets.iter().all(|g| g.body == json!({ "delta": -5 })));
    assert!(gadgets
        .iter()
        .all(|g| g.header("idempotency-key") == Some(format!("{id}/adjust[1]").as_str())));

    // The dispatched audit run.
    sink.wait_until(common::WAIT, "the audit call", |r| {
        r.iter().any(|x| x.path == "/audit")
    })
    .await;
    assert_eq!(
        sink.requests_to("POST", "/audit")[0].body,
        json!({ "count": 2 })
    );

    // The same delivery again: 200 with the first id, nothing new runs.
    let (status, again) = deliver(&server, "delivery-1", &body).await;
    assert_eq!(status, 200);
    assert_eq!(again["execution_id"], json!(id));
    assert_eq!(again["duplicate"], json!(true));

    // The admin API shows the journal.
    let detail = admin_get(&server, &format!("/_flow/executions/{id}")).await;
    assert_eq!(detail["status"], json!("succeeded"));
    assert_eq!(
        detail["trigger"]["body"]["updates"][0]["item"],
        json!("widgets")
    );
    assert_eq!(
        detail["trigger"]["headers"]["x-delivery-id"],
        json!("delivery-1")
    );
    let steps = detail["steps"].as_array().unwrap();
    let keys: Vec<&str> = steps.iter().map(|s| s["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["adjust[0]", "adjust[1]", "dispatch audit#1"]);
    // Each step's input as called, its secret masked in the journal itself.
    let input = &steps[0]["input"];
    assert!(
        input["args"][0]
            .as_str()
            .is_some_and(|u| u.ends_with("/stock/widgets")),
        "{input}"
    );
    assert!(input["json"]["delta"].is_number(), "{input}");
    assert_eq!(input["bearer"], json!("***"), "{input}");
    let journal = rt.store().journal(&id).await.unwrap();
    let stored = serde_json::to_string(&journal[0].input).unwrap();
    assert!(!stored.contains("erp-token-123"), "{stored}");
    assert_eq!(steps[1]["attempts"], json!(2));
    assert!(steps[1]["error"].is_null());
    let list = admin_get(&server, "/_flow/executions?flow=audit").await;
    assert_eq!(list["executions"].as_array().unwrap().len(), 1);
    assert!(sink.requests_to("POST", "/stock/widgets").len() == 1);

    within("shutdown", server.shutdown()).await;
}

#[tokio::test]
async fn failure_runs_on_failure_and_replay_resumes_after_finished_steps() {
    let fixed = Arc::new(AtomicBool::new(false));
    let f = fixed.clone();
    let sink = Sink::responding(move |r, _| {
        if r.path == "/stock/broken" && !f.load(Ordering::SeqCst) {
            (500, json!({"error": "no such item"}))
        } else {
            (200, json!({}))
        }
    });
    let server = start(&sink).await;
    let rt = server.runtime().clone();

    let body = event(json!([
        { "Item-Name": "widgets", "action": "add", "quantity": 1 },
        { "Item-Name": "broken", "action": "add", "quantity": 1 },
    ]));
    let (status, answer) = deliver(&server, "delivery-2", &body).await;
    assert_eq!(status, 202);
    let id = answer["execution_id"].as_str().unwrap().to_string();
    let failed = expect_status(&rt, &id, Status::Failed).await;
    assert_eq!(failed.error_step.as_deref(), Some("adjust[1]"));
    let error = failed.error.unwrap();
    assert!(error.contains("HTTP 500"), "{error}");
    assert!(error.contains("after 3 attempts"), "{error}");
    assert_eq!(sink.requests_to("POST", "/stock/broken").len(), 3);

    // `on failure` ran with the error.
    let alerts = sink.requests_to("POST", "/alerts");
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].body["step"], json!("adjust[1]"));
    assert!(alerts[0].body["message"]
        .as_str()
        .unwrap()
        .contains("HTTP 500"));

    let failed_list = admin_get(&server, "/_flow/executions?status=failed").await;
    assert_eq!(failed_list["executions"][0]["id"], json!(id));

    // Fix the ERP and replay: adjust[0] is not called again.
    fixed.store(true, Ordering::SeqCst);
    let resp = reqwest::Client::new()
        .post(format!("{}/_flow/executions/{id}/replay", server.url()))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let done = expect_status(&rt, &id, Status::Succeeded).await;
    assert_eq!(done.attempts, 2);
    assert_eq!(
        sink.requests_to("POST", "/stock/widgets").len(),
        1,
        "finished steps are not executed again"
    );
    assert_eq!(sink.requests_to("POST", "/stock/broken").len(), 4);

    within("shutdown", server.shutdown()).await;
}

#[tokio::test]
async fn sync_flow_responds_inline() {
    let sink = Sink::responding(|r, _| match r.path.as_str() {
        "/stock/widgets" => (200, json!({ "level": 42 })),
        "/stock/weird" => (200, json!({ "level": "lots" })),
        _ => (200, json!({})),
    });
    let server = start(&sink).await;
    let client = reqwest::Client::new();

    let resp = client
        .get(format!("{}/stock/widgets", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert!(resp.headers().contains_key("x-execution-id"));
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({ "item": "widgets", "level": 42 })
    );
    let call = &sink.requests_to("GET", "/stock/widgets")[0];
    assert_eq!(call.header("authorization"), Some("Bearer erp-token-123"));

    // A response that does not match `as:` fails the run (no retry: it cannot help).
    let resp = client
        .get(format!("{}/stock/weird", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    // The caller learns only that the run failed; the reason is in its record.
    let err = resp.json::<Value>().await.unwrap();
    assert_eq!(err["error"], "run failed", "{err}");
    let id = err["execution_id"].as_str().unwrap();
    let exec = server.runtime().store().get(id).await.unwrap().unwrap();
    let msg = exec.error.unwrap_or_default();
    assert!(
        msg.contains(r#"response body: level: expected Int, got "lots""#),
        "{msg}"
    );
    assert_eq!(sink.requests_to("GET", "/stock/weird").len(), 1);

    within("shutdown", server.shutdown()).await;
}

#[tokio::test]
async fn deploy_schedule_state_and_metrics() {
    let sink = Sink::start();
    let server = start(&sink).await;
    let rt = server.runtime().clone();

    // Deploy flows run once on the first start of a new version.
    sink.wait_until(common::WAIT, "the deploy registration", |r| {
        r.iter().any(|x| x.path == "/webhooks")
    })
    .await;
    let hook = &sink.requests_to("POST", "/webhooks")[0];
    assert_eq!(
        hook.body,
        json!({ "url": "https://inv.example.com/inventory", "version": "3f2a9c1b4d5e" })
    );

    // The `every 300ms` schedule fires, one run at a time.
    sink.wait_until(common::WAIT, "two heartbeats", |r| {
        r.iter().filter(|x| x.path == "/heartbeat").count() >= 2
    })
    .await;
    let beats = sink.requests_to("POST", "/heartbeat");
    let t0 = beats[0].body["at"].as_str().unwrap().to_string();
    let t1 = beats[1].body["at"].as_str().unwrap().to_string();
    assert!(flow_runtime::ops::parse_time(&json!(t0)) < flow_runtime::ops::parse_time(&json!(t1)));
    let runs = rt
        .store()
        .list(flow_runtime::store::ExecutionFilter {
            flow: Some("heartbeat".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let second = runs
        .iter()
        .find(|e| e.trigger["fired_at"] == json!(t1))
        .unwrap();
    assert_eq!(second.trigger["previous"], json!(t0));
    let first = common::finished(&rt, &runs.last().unwrap().id).await;
    assert_eq!(first.status, Status::Succeeded);
    let state = rt.store().state_all().await.unwrap();
    assert!(state.get("last_heartbeat").is_some_and(Value::is_string));

    let metrics = reqwest::get(format!("{}/_flow/metrics", server.url()))
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("flow_runs_total{flow=\"heartbeat\",outcome=\"succeeded\"}"),
        "{text}"
    );
    assert!(
        text.contains("flow_runs_total{flow=\"register\",outcome=\"succeeded\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("flow_step_duration_seconds_count{flow=\"heartbeat\",step=\"ping\"}"),
        "{text}"
    );
    let again = reqwest::get(format!("{}/_flow/metrics", server.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        again.contains("flow_http_requests_total{route=\"/_flow/metrics\",status=\"200\"} 1"),
        "{again}"
    );

    // The flows listing shows docs and endpoints.
    let flows: Value = reqwest::get(format!("{}/_flow/flows", server.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stock = flows["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "stock_changed")
        .unwrap();
    assert_eq!(
        stock["endpoint"],
        json!("https://inv.example.com/inventory")
    );
    assert_eq!(stock["trigger"], json!("webhook POST /inventory"));
    assert_eq!(stock["next_tick"], Value::Null, "not a schedule");
    // A schedule's next tick: after now, within one period (300 ms).
    let asked = chrono::Utc::now();
    let heartbeat = flows["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "heartbeat")
        .unwrap();
    let next = flow_runtime::ops::parse_time(&heartbeat["next_tick"]).expect("a next tick");
    assert!(
        next > asked - chrono::Duration::milliseconds(300)
            && next <= asked + chrono::Duration::milliseconds(300),
        "{next} against {asked}"
    );

    within("shutdown", server.shutdown()).await;
}

#[test]
fn api_md_quotes_the_example_verbatim() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let example = std::fs::read_to_string(format!("{dir}/examples/inventory_sync.rs")).unwrap();
    let api = std::fs::read_to_string(format!("{dir}/API.md")).unwrap();
    let start = example.find("use std::time::Duration;").unwrap();
    let code = &example[start..];
    assert!(
        api.contains(&format!("```rust\n{code}```")),
        "runtime/API.md must end with examples/inventory_sync.rs from `use std::time::Duration;` on, verbatim"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn test_blocks_run_against_http_mocks() {
    use flow_runtime::testing::{run_case, Expect, TestStmt};
    let integration = inventory_sync::integration();
    let case = inventory_sync::tests()[0].clone();
    run_case(&integration, &case).await.unwrap();

    // The same test expecting another delta fails and shows the calls.
    let mut wrong = case.clone();
    wrong.stmts = |cx| {
        let mut stmts = (inventory_sync::tests()[0].stmts)(cx)?;
        for s in &mut stmts {
            if let TestStmt::Expect(Expect::Http { json: Some(j), .. }) = s {
                if j["delta"] == json!(-5) {
                    *j = json!({ "delta": -4 });
                }
            }
        }
        stmts.push(TestStmt::Expect(Expect::Status("failed")));
        Ok(stmts)
    };
    let failures = run_case(&integration, &wrong).await.unwrap_err();
    assert_eq!(failures.len(), 2, "{failures:#?}"); // no run failed
    let report = failures.join("\n");
    assert!(
        report.contains("expected: POST http://erp.test/stock/gadgets  json {\"delta\":-4}"),
        "{report}"
    );
    assert!(
        report.contains("POST http://erp.test/stock/gadgets  json {\"delta\":-5}"),
        "{report}"
    );
    assert!(report.contains("actual:   succeeded"), "{report}");

    // An unmocked call fails its step, naming the call and the mocks.
    let mut unmocked = case;
    unmocked.stmts = |cx| {
        let mut stmts = (inventory_sync::tests()[0].stmts)(cx)?;
        stmts.remove(1); // the /stock/gadgets mock
        Ok(stmts)
    };
    let failures = run_case(&integration, &unmocked).await.unwrap_err();
    let report = failures.join("\n");
    assert!(
        report.contains("no mock for POST http://erp.test/stock/gadgets (mocks: POST http://erp.test/stock/widgets, POST http://erp.test/audit)"),
        "{report}"
    );

    test_blocks_run_as_an_instance().await;
}

/// A test block run as an instance (`instance "acme" from "FILE"`); part
/// of [`test_blocks_run_against_http_mocks`], as test blocks share the
/// process's mocks and run one at a time.
async fn test_blocks_run_as_an_instance() {
    use flow_runtime::prelude::RunError;
    use flow_runtime::testing::{run_case, TestInstance};
    let integration = inventory_sync::integration();
    // The instance's values give what the test's `config` leaves out, and
    // the endpoints are the instance's.
    let mut case = inventory_sync::tests()[0].clone();
    case.config = |_| Ok(vec![("webhook_secret", json!("s"))]);
    case.instance = Some(TestInstance {
        name: "acme",
        config: r#"{"erp_url": "http://erp.test", "erp_token": "t", "public_url": "https://flows.example/"}"#,
    });
    case.stmts = |cx| {
        let at = cx.endpoint("stock_changed")?;
        if at != json!("https://flows.example/i/acme/inventory") {
            return Err(RunError::new(format!("endpoint {at}")));
        }
        if *cx.config()
            != json!({"erp_url": "http://erp.test", "erp_token": "t", "webhook_secret": "s", "public_url": "https://flows.example/"})
        {
            return Err(RunError::new(format!("config {}", cx.config())));
        }
        (inventory_sync::tests()[0].stmts)(cx)
    };
    run_case(&integration, &case).await.unwrap();

    // The test's own values win over the instance's.
    let mut over = case.clone();
    over.config = |_| {
        Ok(vec![
            ("webhook_secret", json!("s")),
            ("erp_url", json!("http://erp.test")),
        ])
    };
    over.instance = Some(TestInstance {
        name: "acme",
        config: r#"{"erp_url": "http://acme.test", "erp_token": "t", "public_url": "https://flows.example/"}"#,
    });
    run_case(&integration, &over).await.unwrap();

    // The instance's config is validated like one given to a server: a
    // missing entry and a malformed value are named; the secret is not
    // shown.
    let mut missing = case.clone();
    missing.instance = Some(TestInstance {
        name: "acme",
        config: r#"{"erp_url": "http://erp.test"}"#,
    });
    let report = run_case(&integration, &missing)
        .await
        .unwrap_err()
        .join("\n");
    assert!(
        report.contains("config entry `erp_token` has no default: give it a value in the test's `config { erp_token: ... }` or in the instance's file"),
        "{report}"
    );
    let mut malformed = case;
    malformed.instance = Some(TestInstance {
        name: "acme",
        config: r#"{"erp_url": "erp.test", "erp_token": "hunter2-token"}"#,
    });
    let report = run_case(&integration, &malformed)
        .await
        .unwrap_err()
        .join("\n");
    assert!(
        report.contains("erp_url (Url): value in the instance's config is not valid"),
        "{report}"
    );
    assert!(!report.contains("hunter2-token"), "{report}");
}
