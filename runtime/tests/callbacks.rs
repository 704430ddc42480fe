//! `X-Callback-Url` callbacks, end to end with a hand-built integration: a
//! sync flow that outlives its timeout and falls back to async. Callbacks
//! are off by default, go only to listed hosts (internal addresses only
//! when listed exactly), are signed, and are delivered from the store, so
//! a restart does not lose them.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{within, WAIT};
use flow_runtime::host::ServeOptions;
use flow_runtime::store::{Callback, CallbackState, SqliteOptions, SqliteStore, Store};
use flow_runtime::triggers::http::callback::CallbackSettings;
use flow_runtime::{
    json, ops, Config, Ctx, FlowDef, FlowFuture, Integration, Outcome, RunError, Runtime, Schema,
    ServerHandle, Status, TriggerDef, Value,
};
use flow_testkit::{free_port, hmac_hex, poll_until, Received, Sink};

const SECRET: &str = "cb-secret-5e1f9a";

/// Answers after its 100 ms timeout: `{"id"}`, or fails when the body says
/// `{"fail": true}`.
fn later(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let body = ops::field(cx.trigger(), "body");
        if ops::field(&body, "fail") == json!(true) {
            return Err(RunError::new(
                "SQL error: relation \"users\" does not exist",
            ));
        }
        Ok(Outcome::Respond {
            status: 200,
            body: json!({ "id": ops::field(&ops::field(cx.trigger(), "params"), "id") }),
            headers: vec![],
        })
    })
}

fn flows(_config: &Config) -> Vec<FlowDef> {
    vec![FlowDef {
        name: "later",
        doc: "",
        trigger: TriggerDef::Sync {
            method: "POST",
            path: "/later/{id}",
            body: Schema::Json,
            timeout: Duration::from_millis(100),
            fallback_async: true,
            reads_headers: false,
            verify: None,
            auth: None,
        },
        run: later,
        on_failure: None,
    }]
}

fn integration() -> Integration {
    common::integration("callbacks", flows)
}

/// Serves a new runtime on `store` (memory when `None`) with callbacks to
/// `hosts` (off when empty).
async fn start(hosts: &str, store: Option<Arc<dyn Store>>) -> ServerHandle {
    let mut options = common::options(&[]);
    options.store = store;
    let rt = Runtime::new(integration(), options).unwrap();
    let mut serve = ServeOptions::new("127.0.0.1:0".parse().unwrap());
    serve.callbacks = CallbackSettings::from_options(hosts, Some(SECRET)).unwrap();
    flow_runtime::host::serve(&rt, serve).await.unwrap()
}

/// POSTs to `/later/ID` asking for a callback to `url`: the status and body.
async fn call(server: &ServerHandle, id: &str, body: Value, url: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/later/{id}", server.url()))
        .header("x-callback-url", url)
        .json(&body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// The execution id of a `202` answer, once its run has ended.
async fn ended(server: &ServerHandle, answer: (u16, Value)) -> String {
    assert_eq!(answer.0, 202, "{}", answer.1);
    let id = answer.1["execution_id"].as_str().unwrap().to_string();
    common::finished(server.runtime(), &id).await;
    id
}

/// Waits (bounded) until the callback of `id` satisfies `done`.
async fn callback_until(
    store: &dyn Store,
    id: &str,
    what: &str,
    done: impl Fn(&Callback) -> bool,
) -> Callback {
    poll_until(WAIT, what, || async {
        store.callback(id).await.unwrap().filter(|c| done(c))
    })
    .await
}

/// Checks `X-Flow-Signature` as a receiver would: `t=TS,v1=HEX`, HEX the
/// HMAC-SHA256 of `TS.BODY`.
fn assert_signed(hit: &Received) {
    let sig = hit.header("x-flow-signature").expect("X-Flow-Signature");
    let (t, v1) = sig
        .strip_prefix("t=")
        .and_then(|s| s.split_once(",v1="))
        .unwrap_or_else(|| panic!("malformed signature {sig}"));
    let ts: i64 = t.parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 60, "{sig}");
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(&hit.raw);
    assert_eq!(v1, hmac_hex(SECRET, &signed), "signature of {:?}", hit.body);
}

/// Nothing arrives at `sink` within a few delivery rounds.
async fn assert_nothing_arrives(sink: &Sink) {
    let rounds = tokio::time::timeout(Duration::from_secs(3), sink.wait_for(1, WAIT)).await;
    assert!(rounds.is_err(), "the sink received:\n{}", sink.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_are_off_unless_hosts_are_listed() {
    let sink = Sink::start();
    let server = start("", None).await;
    // Off: the header is ignored, the caller gets its 202 all the same.
    let answer = call(&server, "a", json!({}), &format!("{}/cb", sink.url())).await;
    let id = ended(&server, answer).await;
    let store = server.runtime().store().clone();
    assert!(store.callback(&id).await.unwrap().is_none());
    assert_nothing_arrives(&sink).await;
    within("shutdown", server.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_not_listed_is_refused_and_never_called() {
    let sink = Sink::start();
    let server = start("hooks.example.com", None).await;
    let (status, body) = call(&server, "a", json!({}), &format!("{}/cb", sink.url())).await;
    assert_eq!(status, 400);
    assert_eq!(body, json!({ "error": "X-Callback-Url host not allowed" }));
    for url in ["not a url", "ftp://hooks.example.com/cb"] {
        let (status, _) = call(&server, "a", json!({}), url).await;
        assert_eq!(status, 400, "{url}");
    }
    assert_nothing_arrives(&sink).await;
    within("shutdown", server.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_addresses_need_to_be_listed_exactly() {
    let sink = Sink::start();
    // `*` allows any host, but not the loopback address...
    let server = start("*", None).await;
    let (status, body) = call(&server, "a", json!({}), &format!("{}/cb", sink.url())).await;
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("X-Callback-Url host not allowed"))
    );
    // ...nor a name that resolves to it: refused when resolved, never sent.
    let port = sink.url().rsplit(':').next().unwrap();
    let answer = call(
        &server,
        "b",
        json!({}),
        &format!("http://localhost:{port}/cb"),
    )
    .await;
    let id = ended(&server, answer).await;
    let store = server.runtime().store().clone();
    let c = callback_until(&*store, &id, "a refused attempt", |c| {
        c.attempts >= 1 && c.last_error.is_some()
    })
    .await;
    assert_eq!(c.state, CallbackState::Pending, "retried until it expires");
    let error = c.last_error.unwrap_or_default();
    assert!(error.contains("only to internal addresses"), "{error}");
    assert_nothing_arrives(&sink).await;
    within("shutdown", server.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_host_gets_signed_callbacks() {
    let sink = Sink::start();
    let server = start("127.0.0.1", None).await;
    let ok = call(&server, "a", json!({}), &format!("{}/ok", sink.url())).await;
    let ok = ended(&server, ok).await;
    let failed = call(
        &server,
        "b",
        json!({ "fail": true }),
        &format!("{}/failed", sink.url()),
    )
    .await;
    let failed = ended(&server, failed).await;

    let hit = &sink.wait_for_path("POST", "/ok", 1, WAIT).await[0];
    assert_eq!(
        hit.body,
        json!({ "execution_id": ok, "status": "succeeded", "http_status": 200, "body": { "id": "a" } })
    );
    assert_signed(hit);
    assert_eq!(hit.header("x-flow-execution-id"), Some(ok.as_str()));
    let store = server.runtime().store().clone();
    let c = callback_until(&*store, &ok, "delivered", |c| {
        c.state == CallbackState::Delivered
    })
    .await;
    assert_eq!(hit.header("x-flow-delivery-id"), Some(c.id.as_str()));
    assert_eq!(c.attempts, 1);

    // A failed run says only that it failed: the error is in the record.
    let hit = &sink.wait_for_path("POST", "/failed", 1, WAIT).await[0];
    assert_eq!(
        hit.body,
        json!({ "execution_id": failed, "status": "failed" })
    );
    assert_signed(hit);
    assert!(!String::from_utf8_lossy(&hit.raw).contains("users"));
    within("shutdown", server.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_is_delivered_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("callbacks.db");
    // Exclusive, as `serve` opens it. The tasks of a stopped server let go
    // of it as they wind down (aborted, not awaited): bounded retries.
    let open = || async {
        let options = SqliteOptions {
            exclusive: true,
            ..SqliteOptions::default()
        };
        let opened = poll_until(WAIT, "the store to be free", || async {
            SqliteStore::open(&path, options).ok()
        })
        .await;
        Some(Arc::new(opened) as Arc<dyn Store>)
    };
    // The receiver is down: its port is free.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/cb");
    let first = start("127.0.0.1", open().await).await;
    let answer = call(&first, "a", json!({}), &url).await;
    let id = ended(&first, answer).await;
    let store = first.runtime().store().clone();
    let before = callback_until(&*store, &id, "a failed attempt", |c| c.last_error.is_some()).await;
    assert_eq!(before.state, CallbackState::Pending);
    drop(store);
    within("shutdown", first.shutdown()).await;

    let second = start("127.0.0.1", open().await).await;
    let sink = Sink::start_at(port);
    let hit = &sink.wait_for_path("POST", "/cb", 1, WAIT).await[0];
    assert_eq!(hit.body["execution_id"], json!(id));
    assert_eq!(hit.body["status"], json!("succeeded"));
    assert_signed(hit);
    // The same delivery id as before the restart: a receiver can drop repeats.
    assert_eq!(hit.header("x-flow-delivery-id"), Some(before.id.as_str()));
    let store = second.runtime().store().clone();
    let after = callback_until(&*store, &id, "delivered", |c| {
        c.state == CallbackState::Delivered
    })
    .await;
    assert!(after.attempts > before.attempts, "{after:?}");
    assert_eq!(
        common::finished(second.runtime(), &id).await.status,
        Status::Succeeded
    );
    within("shutdown", second.shutdown()).await;
}
