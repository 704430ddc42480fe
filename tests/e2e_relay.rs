//! Smoke test of the peer benchmark's job (benches/relay.flow, see
//! docs/performance.md): the same request and the same answers the shared
//! harness checks before it measures.

mod support;

use serde_json::json;
use support::{post_json, post_raw, Reply, Service, Sink};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_answers_with_the_sinks_answer() {
    let sink = Sink::start();
    sink.on("POST", "/ingest", [Reply::json(200, json!({ "ok": true }))]);
    let binary = support::build_example("benches/relay.flow");
    let sink_url = format!("{}/ingest", sink.url());
    let svc = Service::start(&binary, &[("SINK_URL", &sink_url)], &[]);

    let body = json!({ "event": "INVENTORY_UPDATE", "updates": [
        { "item": "widgets", "action": "add", "quantity": 20 },
        { "item": "gadgets", "action": "remove", "quantity": 5 },
    ] });
    let (status, answer) = post_json(&svc.at("/inventory"), &body, &[]).await;
    assert_eq!((status, answer), (200, json!({ "ok": true })));
    let sent = sink.requests_to("POST", "/ingest");
    assert_eq!(sent.len(), 1, "{}", sink.summary());
    assert_eq!(
        sent[0].body,
        json!({ "source": "inventory", "count": 2, "net": 15, "items": ["widgets", "gadgets"] })
    );

    let bad = post_raw(&svc.at("/inventory"), b"{not json", &[]).await;
    assert_eq!(bad.status, 400, "{:?}", bad.body);
}
