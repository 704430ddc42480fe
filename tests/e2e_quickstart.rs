//! End to end: `examples/quickstart.flow`, which needs no outside service:
//! order items appended to a local file, counted by a sync endpoint.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{get, poll_until, post_json, Service};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_items_become_lines_that_the_count_endpoint_sees() {
    let binary = support::build_example("examples/quickstart.flow");
    let svc = Service::start(&binary, &[], &[]);

    let count = get(&svc.at("/orders/count"), &[]).await;
    assert_eq!(count.status, 200, "{}", count.body);
    assert_eq!(count.body, json!({ "item_lines": 0 }));

    // Every generated binary serves the executions page (its files come
    // with the runtime flowc embeds); without an admin token it says how
    // to enable it.
    let page = get(&svc.at("/_flow/ui"), &[]).await;
    assert_eq!(page.status, 200);
    let text = page.body.as_str().unwrap_or_default();
    assert!(text.contains("FLOW_ADMIN_TOKEN"), "{text}");
    let flows = get(&svc.at("/_flow/flows"), &[]).await;
    assert_eq!(
        flows.body["graph"], true,
        "flowc embeds the drawing of the flows"
    );

    let order = json!({ "id": "o-1", "customer": "ada", "items": [
        { "sku": "tea", "quantity": 2, "price": 3.5 },
        { "sku": "cup", "quantity": 1, "price": 8 },
    ] });
    let (status, answer) = post_json(&svc.at("/orders"), &order, &[]).await;
    assert_eq!(status, 202, "{answer}");

    let url = svc.at("/orders/count");
    poll_until(Duration::from_secs(20), "2 item lines", || async {
        let a = get(&url, &[]).await;
        assert_eq!(a.status, 200, "{}", a.body);
        (a.body["item_lines"] == 2).then_some(())
    })
    .await;

    // The lines are in the working directory, as JSON objects.
    let text =
        std::fs::read_to_string(svc.dir().join("data/orders.jsonl")).expect("data/orders.jsonl");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["sku"], "tea");
    assert_eq!(lines[0]["order"], "o-1");
    assert_eq!(lines[0]["total"].as_f64(), Some(7.0));
    assert_eq!(lines[1]["sku"], "cup");
    assert_eq!(lines[1]["total"].as_f64(), Some(8.0));

    // A bad order is refused before anything is written.
    let (status, answer) = post_json(
        &svc.at("/orders"),
        &json!({ "id": "o-2", "customer": "bob", "items": [{ "sku": "x", "quantity": 1.5, "price": 1 }] }),
        &[],
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"], "items[0].quantity: expected Int, got 1.5");
}

/// With the default log level, a sync run writes no line of its own (two
/// per request would cost a busy endpoint a third of its throughput): the
/// runs of each sync flow are summarised, here at shutdown, while the
/// webhook's queued run keeps its lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_runs_are_summarised_in_the_log() {
    let binary = support::build_example("examples/quickstart.flow");
    let mut svc = Service::start(&binary, &[], &[]);
    for _ in 0..3 {
        let count = get(&svc.at("/orders/count"), &[]).await;
        assert_eq!(count.status, 200, "{}", count.body);
    }
    let log = order_then_stop(&mut svc, &[]).await;
    let summary = lines_with(&log, "sync runs in the last");
    assert_eq!(summary.len(), 1, "{log}");
    assert!(
        summary[0].contains("flow=\"order_count\"") || summary[0].contains("flow=order_count"),
        "{log}"
    );
    assert!(
        summary[0].contains("runs=3") && summary[0].contains("failed=0"),
        "{log}"
    );
    assert!(!log.contains("run responded"), "{log}");
    // No routine line of a sync run at all (its steps' neither): the
    // summary is the only line naming the flow.
    assert_eq!(log.matches("order_count").count(), 1, "{log}");
    assert_eq!(
        log.matches("run started").count(),
        1,
        "only the webhook's: {log}"
    );
}

/// A binary built without `--with otel` asked to export traces warns once
/// at start-up, naming the rebuild, and serves as usual; the caller's
/// trace id is still the run's, in its JSON log lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_otel_an_otlp_endpoint_warns_and_trace_ids_reach_the_log() {
    let binary = support::build_example("examples/quickstart.flow");
    let collector = format!("http://127.0.0.1:{}", flow_testkit::free_port());
    let mut svc = Service::start(
        &binary,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.as_str()),
            ("FLOW_LOG_FORMAT", "json"),
        ],
        &[],
    );
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let log = order_then_stop(&mut svc, &[("traceparent", traceparent.as_str())]).await;
    let warnings = lines_with(&log, "rebuild with flowc build --with otel");
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("WARN"), "{log}");
    let run_lines = lines_with(&log, "run succeeded");
    assert_eq!(run_lines.len(), 1, "{log}");
    assert!(
        run_lines[0].contains(&format!("\"trace_id\":\"{trace_id}\"")),
        "{log}"
    );
}

/// Posts an empty order, waits for the webhook's run to succeed, stops the
/// service gracefully and returns its log.
async fn order_then_stop(svc: &mut Service, headers: &[(&str, &str)]) -> String {
    let order = json!({ "id": "o-1", "customer": "ada", "items": [] });
    let (status, answer) = post_json(&svc.at("/orders"), &order, headers).await;
    assert_eq!(status, 202, "{answer}");
    let url = svc.at("/_flow/healthz");
    poll_until(Duration::from_secs(20), "the webhook's run", || async {
        let _ = get(&url, &[]).await;
        svc.stderr().contains("run succeeded").then_some(())
    })
    .await;
    let status = svc.terminate(Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    svc.stderr()
}

fn lines_with<'a>(log: &'a str, needle: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(needle)).collect()
}
