//! End to end: webhooks. `examples/inventory_sync.flow` (signed list
//! bodies fanned out into one ERP call per update, validation, dedupe,
//! retries, the admin API) and `tests/flows/small_body.flow` (`max_body`).

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{
    admin_execution, get, hmac_hex, post_json, post_raw, wait_execution, Answer, Reply, Service,
    Sink,
};

const SECRET: &str = "whsec-e2e-4711";
const ERP_TOKEN: &str = "erp-token-e2e-0815";
const ADMIN: &str = "admin-token-e2e";
const WAIT: Duration = Duration::from_secs(20);

fn inventory(sink: &Sink) -> Service {
    let binary = support::build_example("examples/inventory_sync.flow");
    Service::start(
        &binary,
        &[
            ("ERP_URL", sink.url()),
            ("ERP_TOKEN", ERP_TOKEN),
            ("WEBHOOK_SECRET", SECRET),
            ("FLOW_ADMIN_TOKEN", ADMIN),
        ],
        &[],
    )
}

/// POSTs `body` to `/inventory`, signed, with an optional delivery id.
async fn deliver(svc: &Service, body: &Value, delivery_id: Option<&str>) -> Answer {
    let raw = body.to_string();
    let signature = hmac_hex(SECRET, raw.as_bytes());
    let mut headers = vec![("X-Signature", signature.as_str())];
    if let Some(id) = delivery_id {
        headers.push(("X-Delivery-Id", id));
    }
    post_raw(&svc.at("/inventory"), raw.as_bytes(), &headers).await
}

fn execution_id(a: &Answer) -> String {
    a.body["execution_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no execution_id in {} {}", a.status, a.body))
        .to_string()
}

async fn executions(svc: &Service) -> Vec<Value> {
    let a = get(
        &svc.at("/_flow/executions"),
        &[("Authorization", &format!("Bearer {ADMIN}"))],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["executions"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_body_fans_out_into_one_call_per_update() {
    let sink = Sink::start();
    let svc = inventory(&sink);
    let body = json!({
        "event": "INVENTORY_UPDATE",
        "updates": [
            { "item": "widgets", "action": "add", "quantity": 20, "note": "restock" },
            { "item": "gadgets", "action": "remove", "quantity": 5 },
            { "item": "bolts", "action": "add", "quantity": 0, "note": "nothing" },
        ],
    });
    let a = deliver(&svc, &body, Some("delivery-fan-out")).await;
    assert_eq!(a.status, 202, "{}", a.body);
    let id = execution_id(&a);

    let exec = wait_execution(svc.url(), &id, ADMIN, WAIT).await;
    assert_eq!(exec["status"], "succeeded", "{exec:#}");
    let calls = sink.requests();
    assert_eq!(
        calls.len(),
        2,
        "one call per non-zero update:\n{}",
        sink.summary()
    );

    let widgets = &calls[0];
    assert_eq!(
        (widgets.method.as_str(), widgets.path.as_str()),
        ("POST", "/stock/widgets")
    );
    assert_eq!(widgets.body, json!({ "delta": 20, "note": "restock" }));
    let gadgets = &calls[1];
    assert_eq!(
        (gadgets.method.as_str(), gadgets.path.as_str()),
        ("POST", "/stock/gadgets")
    );
    assert_eq!(gadgets.body["delta"], -5, "remove makes a negative delta");
    assert!(gadgets.body["note"].is_null(), "{}", gadgets.body);
    for (i, call) in calls.iter().enumerate() {
        assert_eq!(
            call.header("authorization"),
            Some(format!("Bearer {ERP_TOKEN}").as_str())
        );
        assert_eq!(call.header("content-type"), Some("application/json"));
        assert_eq!(
            call.header("idempotency-key"),
            Some(format!("{id}/adjust[{i}]").as_str()),
            "the step identity includes the loop index"
        );
    }

    // The admin API shows the run with its steps, secrets masked.
    let steps = exec["steps"].as_array().expect("steps");
    let keys: Vec<&str> = steps.iter().filter_map(|s| s["key"].as_str()).collect();
    assert_eq!(keys, ["adjust[0]", "adjust[1]"], "{exec:#}");
    assert_eq!(exec["trigger"]["body"]["updates"][1]["item"], "gadgets");
    let shown = exec.to_string();
    assert!(
        !shown.contains(SECRET) && !shown.contains(ERP_TOKEN),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_payload_is_400_naming_the_field_path() {
    let sink = Sink::start();
    let svc = inventory(&sink);
    let cases = [
        (
            json!({ "event": "INVENTORY_UPDATE", "updates": [
                { "item": "widgets", "action": "add", "quantity": "five" },
            ] }),
            r#"updates[0].quantity: expected Int, got "five""#,
        ),
        (
            json!({ "event": "INVENTORY_UPDATE", "updates": [
                { "item": "widgets", "action": "add", "quantity": 1 },
                { "item": "gadgets", "action": "move", "quantity": 1 },
            ] }),
            "updates[1].action",
        ),
        (
            json!({ "event": "INVENTORY_UPDATE", "updates": [{ "action": "add", "quantity": 1 }] }),
            "updates[0].item",
        ),
        (json!({ "event": "OTHER", "updates": [] }), "event"),
        (json!({ "event": "INVENTORY_UPDATE" }), "updates"),
    ];
    for (body, expected) in cases {
        let a = deliver(&svc, &body, None).await;
        assert_eq!(a.status, 400, "{body} -> {}", a.body);
        let error = a.body["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with(expected),
            "error for {body} should start with {expected:?}, got {error:?}"
        );
    }
    // The exact message of the language reference.
    let a = deliver(
        &svc,
        &json!({ "event": "INVENTORY_UPDATE", "updates": [
            { "item": "widgets", "action": "add", "quantity": "five" },
        ] }),
        None,
    )
    .await;
    assert_eq!(
        a.body,
        json!({ "error": r#"updates[0].quantity: expected Int, got "five""# })
    );

    // Not JSON at all, signed: 400; not declared as JSON: 415.
    let raw = b"{not json";
    let sig = hmac_hex(SECRET, raw);
    let a = post_raw(&svc.at("/inventory"), raw, &[("X-Signature", &sig)]).await;
    assert_eq!(a.status, 400, "{}", a.body);
    let raw = json!({ "event": "INVENTORY_UPDATE", "updates": [] }).to_string();
    let sig = hmac_hex(SECRET, raw.as_bytes());
    let a = post_raw(
        &svc.at("/inventory"),
        raw.as_bytes(),
        &[("X-Signature", &sig), ("Content-Type", "text/plain")],
    )
    .await;
    assert_eq!(a.status, 415, "{}", a.body);

    // No execution was started by any of them.
    assert_eq!(executions(&svc).await, Vec::<Value>::new());
    assert!(sink.requests().is_empty(), "{}", sink.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_signature_is_401() {
    let sink = Sink::start();
    let svc = inventory(&sink);
    let body = json!({ "event": "INVENTORY_UPDATE", "updates": [
        { "item": "widgets", "action": "add", "quantity": 1 },
    ] })
    .to_string();
    let url = svc.at("/inventory");
    let wrong_secret = hmac_hex("not-the-secret", body.as_bytes());
    let other_body = hmac_hex(SECRET, b"{}");
    let right = hmac_hex(SECRET, body.as_bytes());
    let upper = right.to_uppercase();
    for headers in [
        vec![],
        vec![("X-Signature", wrong_secret.as_str())],
        vec![("X-Signature", other_body.as_str())],
        vec![("X-Signature", upper.as_str())],
        vec![("X-Signature", "sha256=")],
        vec![("X-Other-Signature", right.as_str())],
    ] {
        let a = post_raw(&url, body.as_bytes(), &headers).await;
        assert_eq!(a.status, 401, "{headers:?} -> {}", a.body);
        assert!(
            a.body["error"]
                .as_str()
                .is_some_and(|e| e.contains("X-Signature")),
            "{}",
            a.body
        );
    }
    // The signature is checked before the body's type: a bad body with a
    // bad signature is 401, not 400.
    let a = post_raw(&url, b"{\"event\": 1}", &[("X-Signature", &right)]).await;
    assert_eq!(a.status, 401, "{}", a.body);
    assert_eq!(executions(&svc).await, Vec::<Value>::new());

    // GitHub's `sha256=` form of the right signature is accepted.
    let prefixed = format!("sha256={right}");
    let a = post_raw(&url, body.as_bytes(), &[("X-Signature", &prefixed)]).await;
    assert_eq!(a.status, 202, "{}", a.body);
    let exec = wait_execution(svc.url(), &execution_id(&a), ADMIN, WAIT).await;
    assert_eq!(exec["status"], "succeeded", "{exec:#}");
    assert_eq!(sink.requests_to("POST", "/stock/widgets").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_delivery_id_twice_runs_once() {
    let sink = Sink::start();
    let svc = inventory(&sink);
    let body = json!({ "event": "INVENTORY_UPDATE", "updates": [
        { "item": "widgets", "action": "add", "quantity": 3 },
        { "item": "gadgets", "action": "add", "quantity": 4 },
    ] });
    let first = deliver(&svc, &body, Some("delivery-1")).await;
    assert_eq!(first.status, 202, "{}", first.body);
    let id = execution_id(&first);
    let second = deliver(&svc, &body, Some("delivery-1")).await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(
        second.body,
        json!({ "execution_id": id, "duplicate": true })
    );

    let exec = wait_execution(svc.url(), &id, ADMIN, WAIT).await;
    assert_eq!(exec["status"], "succeeded", "{exec:#}");
    // Another delivery id is another execution; once it has ended, the
    // sink has seen exactly two sets of calls.
    let third = deliver(&svc, &body, Some("delivery-2")).await;
    assert_eq!(third.status, 202, "{}", third.body);
    let third_id = execution_id(&third);
    assert_ne!(third_id, id);
    wait_execution(svc.url(), &third_id, ADMIN, WAIT).await;
    assert_eq!(executions(&svc).await.len(), 2);
    assert_eq!(sink.requests_to("POST", "/stock/widgets").len(), 2);
    assert_eq!(sink.requests_to("POST", "/stock/gadgets").len(), 2);
    assert_eq!(sink.requests().len(), 4, "{}", sink.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_call_is_retried_with_the_same_idempotency_key() {
    let sink = Sink::start();
    sink.on(
        "POST",
        "/stock/widgets",
        [
            Reply::json(503, json!({ "error": "busy" })),
            Reply::json(503, json!({ "error": "busy" })),
            Reply::json(200, json!({ "ok": true })),
        ],
    );
    let svc = inventory(&sink);
    let body = json!({ "event": "INVENTORY_UPDATE", "updates": [
        { "item": "widgets", "action": "remove", "quantity": 2 },
    ] });
    let a = deliver(&svc, &body, None).await;
    assert_eq!(a.status, 202, "{}", a.body);
    let id = execution_id(&a);
    // `retry 5 backoff 1s..2m`: two failures wait about 1 s and 2 s.
    let exec = wait_execution(svc.url(), &id, ADMIN, Duration::from_secs(30)).await;
    assert_eq!(exec["status"], "succeeded", "{exec:#}");
    let calls = sink.requests_to("POST", "/stock/widgets");
    assert_eq!(calls.len(), 3, "{}", sink.summary());
    for c in &calls {
        assert_eq!(c.body, json!({ "delta": -2, "note": null }));
        assert_eq!(
            c.header("idempotency-key"),
            Some(format!("{id}/adjust[0]").as_str())
        );
    }
    assert_eq!(exec["steps"][0]["attempts"], 3, "{exec:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_needs_the_bearer_token() {
    let sink = Sink::start();
    let svc = inventory(&sink);
    let body = json!({ "event": "INVENTORY_UPDATE", "updates": [] });
    let a = deliver(&svc, &body, None).await;
    assert_eq!(a.status, 202, "{}", a.body);
    let id = execution_id(&a);

    let (status, _) = admin_execution(svc.url(), &id, "wrong-token").await;
    assert_eq!(status, 401);
    let anonymous = get(&svc.at(&format!("/_flow/executions/{id}")), &[]).await;
    assert_eq!(anonymous.status, 401);
    let exec = wait_execution(svc.url(), &id, ADMIN, WAIT).await;
    assert_eq!(exec["status"], "succeeded", "{exec:#}");
    let (status, missing) = admin_execution(svc.url(), "no-such-id", ADMIN).await;
    assert_eq!(status, 404, "{missing}");

    // Health, readiness and the flow listing are open.
    let health = get(&svc.at("/_flow/healthz"), &[]).await;
    assert_eq!(health.status, 200);
    assert_eq!(get(&svc.at("/_flow/readyz"), &[]).await.status, 200);
    let flows = get(&svc.at("/_flow/flows"), &[]).await;
    assert_eq!(flows.status, 200);
    assert_eq!(flows.body["integration"], "inventory_sync");
    assert_eq!(flows.body["flows"][0]["name"], "stock_changed");
    let metrics = get(&svc.at("/_flow/metrics"), &[]).await;
    assert_eq!(metrics.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_admin_token_the_admin_api_is_403() {
    let sink = Sink::start();
    let binary = support::build_example("examples/inventory_sync.flow");
    let svc = Service::start(
        &binary,
        &[
            ("ERP_URL", sink.url()),
            ("ERP_TOKEN", ERP_TOKEN),
            ("WEBHOOK_SECRET", SECRET),
        ],
        &[],
    );
    let a = get(
        &svc.at("/_flow/executions"),
        &[("Authorization", "Bearer anything")],
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_max_body_is_413() {
    let sink = Sink::start();
    let binary = support::build_example("tests/flows/small_body.flow");
    let svc = Service::start(&binary, &[("SINK_URL", sink.url())], &[]);
    let url = svc.at("/tiny");

    let big = json!({ "data": "x".repeat(2000) });
    let (status, answer) = post_json(&url, &big, &[]).await;
    assert_eq!(status, 413, "{answer}");
    assert!(
        answer["error"].as_str().is_some_and(|e| e.contains("1024")),
        "{answer}"
    );
    // Just over and just under the limit.
    let over = format!("{{\"data\": \"{}\"}}", "y".repeat(1025 - 12));
    assert_eq!(over.len(), 1025);
    assert_eq!(post_raw(&url, over.as_bytes(), &[]).await.status, 413);
    let under = format!("{{\"data\": \"{}\"}}", "z".repeat(1024 - 12));
    assert_eq!(under.len(), 1024);
    let a = post_raw(&url, under.as_bytes(), &[]).await;
    assert_eq!(a.status, 202, "{}", a.body);

    let forwarded = sink.wait_for_path("POST", "/tiny", 1, WAIT).await;
    assert_eq!(forwarded.len(), 1, "{}", sink.summary());
    assert_eq!(forwarded[0].body["data"].as_str().map(str::len), Some(1012));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_all_run() {
    let sink = Sink::start();
    let svc = inventory(&sink);
    let n: usize = 20;
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..n {
        let url = svc.at("/inventory");
        sends.spawn(async move {
            let body = json!({ "event": "INVENTORY_UPDATE", "updates": [
                { "item": format!("item-{i}"), "action": "add", "quantity": i + 1 },
            ] })
            .to_string();
            let signature = hmac_hex(SECRET, body.as_bytes());
            post_raw(&url, body.as_bytes(), &[("X-Signature", &signature)]).await
        });
    }
    let answers = sends.join_all().await;
    for a in &answers {
        assert_eq!(a.status, 202, "{}", a.body);
        let exec = wait_execution(svc.url(), &execution_id(a), ADMIN, WAIT).await;
        assert_eq!(exec["status"], "succeeded", "{exec:#}");
    }
    let calls = sink.requests();
    assert_eq!(calls.len(), n, "{}", sink.summary());
    for i in 0..n {
        let path = format!("/stock/item-{i}");
        let got: Vec<_> = calls.iter().filter(|c| c.path == path).collect();
        assert_eq!(got.len(), 1, "{path}: {}", sink.summary());
        assert_eq!(got[0].body["delta"], i + 1);
    }
    // Secrets never reach the logs.
    let logs = svc.stderr();
    assert!(
        !logs.contains(SECRET) && !logs.contains(ERP_TOKEN),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_run_in_flight_and_exits_0() {
    let sink = Sink::start();
    sink.on(
        "POST",
        "/stock/slow",
        [Reply::json(200, json!({})).after(Duration::from_millis(1500))],
    );
    let mut svc = inventory(&sink);
    let body = json!({ "event": "INVENTORY_UPDATE", "updates": [
        { "item": "slow", "action": "add", "quantity": 1 },
        { "item": "after", "action": "add", "quantity": 1 },
    ] });
    let a = deliver(&svc, &body, None).await;
    assert_eq!(a.status, 202, "{}", a.body);
    // The first call is in flight when the signal arrives.
    sink.wait_for_path("POST", "/stock/slow", 1, WAIT).await;
    let code = tokio::task::block_in_place(|| svc.terminate(Duration::from_secs(20))).code();
    assert_eq!(code, Some(0), "{}", svc.stderr());
    // The run was finished, not cut off.
    assert_eq!(
        sink.requests_to("POST", "/stock/after").len(),
        1,
        "{}",
        sink.summary()
    );
    assert!(svc.stderr().contains("run succeeded"), "{}", svc.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renamed_fields_use_their_wire_names_in_and_out() {
    let sink = Sink::start();
    sink.on(
        "GET",
        "/stock/bolt",
        [Reply::json(200, json!({ "on-hand": 12 }))],
    );
    let binary = support::build_example("tests/flows/renames.flow");
    let svc = Service::start(&binary, &[("SINK_URL", sink.url())], &[]);

    // The body arrives in wire names.
    let item = json!({ "Item-Name": "bolt", "qty_total": 3, "note": "m8" });
    let (status, answer) = post_json(&svc.at("/items"), &item, &[]).await;
    assert_eq!(status, 202, "{answer}");
    let (status, answer) = post_json(
        &svc.at("/items"),
        &json!({ "item": "bolt", "quantity": 3 }),
        &[],
    )
    .await;
    assert_eq!(status, 400, "declared names are not wire names: {answer}");
    assert_eq!(
        answer,
        json!({ "error": r#"["Item-Name"]: missing field, expected String"# }),
        "the error names the field as it is on the wire"
    );

    // A value of the renamed type goes out in wire names again; fields
    // read from it in the flow use the declared names.
    let report = sink.wait_for_path("POST", "/report", 1, WAIT).await;
    assert_eq!(
        report[0].body,
        json!({ "item": "bolt", "quantity": 3, "on_hand": 12 })
    );
    let forwarded = sink.requests_to("POST", "/items");
    assert_eq!(forwarded.len(), 1, "{}", sink.summary());
    assert_eq!(forwarded[0].body, item);

    // A sync answer of the renamed type is in wire names as well.
    let (status, echoed) = post_json(&svc.at("/echo"), &item, &[]).await;
    assert_eq!(status, 200, "{echoed}");
    assert_eq!(echoed, item);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_reads_headers_and_query() {
    let sink = Sink::start();
    let binary = support::build_example("tests/flows/small_body.flow");
    let svc = Service::start(&binary, &[("SINK_URL", sink.url())], &[]);
    let a = post_raw(
        &svc.at("/echo?page=3&other=x"),
        b"{\"n\": 1}",
        &[("User-Agent", "e2e-agent/1.0"), ("X-Request-Id", "req-42")],
    )
    .await;
    assert_eq!(a.status, 202, "{}", a.body);
    let got = sink.wait_for_path("POST", "/echo", 1, WAIT).await;
    let body = &got[0].body;
    assert_eq!(body["page"], "3", "{body}");
    assert_eq!(body["request_id"], "req-42", "{body}");
    assert_eq!(
        body["agent"], "e2e-agent/1.0",
        "header names match whatever their case: {body}"
    );
    assert_eq!(body["body"], json!({ "n": 1 }));
    assert!(
        body["received_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z') || t.contains('+')),
        "{body}"
    );
}
