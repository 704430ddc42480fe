//! End to end: a deploy flow registering the webhook URL
//! (`examples/webhook_registration.flow`), run by `BINARY deploy` and by the
//! first `serve`; its remove flow, run by `BINARY undeploy`.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{post_json, run_binary, Reply, Service, Sink};

const TOKEN: &str = "shop-token-e2e";
const PUBLIC: &str = "https://orders.example.com";
const WAIT: Duration = Duration::from_secs(20);

fn binary() -> std::path::PathBuf {
    support::build_example("examples/webhook_registration.flow")
}

/// `BINARY deploy` against the sink; returns the JSON lines it printed.
fn deploy(sink: &Sink) -> Vec<Value> {
    let done = run_binary(
        &binary(),
        &[
            ("SHOP_URL", sink.url()),
            ("SHOP_TOKEN", TOKEN),
            ("PUBLIC_URL", PUBLIC),
        ],
        &["deploy"],
        Duration::from_secs(60),
    );
    assert_eq!(done.code, Some(0), "{done:#?}");
    assert!(done.stderr.contains("deployed"), "{done:#?}");
    assert!(!done.stdout.contains(TOKEN) && !done.stderr.contains(TOKEN));
    done.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

#[test]
fn deploy_registers_the_webhook_when_it_is_missing() {
    let sink = Sink::start();
    sink.on("GET", "/webhooks", [Reply::json(200, json!([]))]);
    sink.on(
        "POST",
        "/webhooks",
        [Reply::json(201, json!({ "id": "wh_1" }))],
    );
    let outcomes = deploy(&sink);
    assert_eq!(outcomes.len(), 1, "{outcomes:#?}");
    assert_eq!(outcomes[0]["flow"], "register_webhooks");
    assert_eq!(outcomes[0]["status"], "succeeded", "{outcomes:#?}");

    let calls = sink.requests();
    assert_eq!(calls.len(), 2, "{}", sink.summary());
    assert_eq!(
        (calls[0].method.as_str(), calls[0].path.as_str()),
        ("GET", "/webhooks")
    );
    assert_eq!(
        (calls[1].method.as_str(), calls[1].path.as_str()),
        ("POST", "/webhooks")
    );
    assert_eq!(
        calls[1].body,
        json!({ "url": format!("{PUBLIC}/shop/orders"), "events": ["order.created"] })
    );
    for c in &calls {
        assert_eq!(
            c.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
    }
}

#[test]
fn deploy_leaves_a_registered_webhook_alone() {
    let sink = Sink::start();
    sink.on(
        "GET",
        "/webhooks",
        [Reply::json(
            200,
            json!([
                "https://elsewhere.example.com/hook",
                format!("{PUBLIC}/shop/orders")
            ]),
        )],
    );
    let outcomes = deploy(&sink);
    assert_eq!(outcomes[0]["status"], "skipped", "{outcomes:#?}");
    assert_eq!(
        outcomes[0]["result"],
        json!({ "skipped": "already registered" })
    );
    assert!(
        sink.requests_to("POST", "/webhooks").is_empty(),
        "{}",
        sink.summary()
    );
    assert_eq!(sink.requests_to("GET", "/webhooks").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_the_deploy_flow_and_the_webhook() {
    let sink = Sink::start();
    sink.on("GET", "/webhooks", [Reply::json(200, json!([]))]);
    let svc = Service::start(
        &binary(),
        &[
            ("SHOP_URL", sink.url()),
            ("SHOP_TOKEN", TOKEN),
            ("PUBLIC_URL", PUBLIC),
        ],
        &[],
    );
    // A new version registers itself on its first start.
    let registered = sink.wait_for_path("POST", "/webhooks", 1, WAIT).await;
    assert_eq!(registered[0].body["url"], format!("{PUBLIC}/shop/orders"));

    // The registered webhook forwards what it gets.
    let order = json!({ "id": 1001, "total": 25.5, "lines": [{ "sku": "A", "qty": 2 }] });
    let (status, answer) = post_json(&svc.at("/shop/orders"), &order, &[]).await;
    assert_eq!(status, 202, "{answer}");
    let acks = sink.wait_for_path("POST", "/ack", 1, WAIT).await;
    assert_eq!(acks[0].body, order);
    assert_eq!(
        acks[0].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
}

/// `BINARY undeploy` runs the remove flow against the shop, and the next
/// `serve` (same store) registers again: the store no longer records this
/// build as deployed (after a plain `deploy`, `serve` would not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeploy_removes_the_webhook_and_the_next_serve_registers_again() {
    let sink = Sink::start();
    sink.on("GET", "/webhooks", [Reply::json(200, json!([]))]);
    sink.on("POST", "/webhooks", [Reply::json(201, json!({}))]);
    sink.on("DELETE", "/webhooks", [Reply::status(204)]);
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("SHOP_URL", sink.url()),
        ("SHOP_TOKEN", TOKEN),
        ("PUBLIC_URL", PUBLIC),
    ];
    let command = |args: &[&str]| {
        let done =
            flow_testkit::run_binary_in(dir.path(), &binary(), &env, args, Duration::from_secs(60));
        assert_eq!(done.code, Some(0), "{done:#?}");
        done
    };
    command(&["deploy"]);
    let undone = command(&["undeploy"]);
    assert!(undone.stderr.contains("undeployed"), "{undone:#?}");
    assert!(undone.stdout.contains("unregister_webhooks"), "{undone:#?}");
    let removed = sink.requests_to("DELETE", "/webhooks");
    assert_eq!(removed.len(), 1, "{}", sink.summary());
    assert_eq!(
        removed[0].query,
        format!("url={}", "https%3A%2F%2Forders.example.com%2Fshop%2Forders")
    );
    assert_eq!(
        removed[0].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    let _svc = Service::start_in(dir.path(), &binary(), &env, &[]);
    sink.wait_for_path("POST", "/webhooks", 2, WAIT).await;
}
