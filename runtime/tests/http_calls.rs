//! What an `http.*` step sends and follows over plain HTTP, where it goes
//! straight to hyper's client (`core::plain_http`) instead of reqwest: the
//! headers reqwest would add, the body, redirects (the method rewritten
//! or kept, credentials kept from other origins, at most 10), and a
//! redirect to HTTPS handed to reqwest.

mod common;

use common::{flow, json_sync, no_retry};
use flow_runtime::store::Status;
use flow_runtime::{json, ops, Args, Config, Ctx, FlowDef, FlowFuture, Outcome, Runtime};
use flow_testkit::{Reply, Sink};

/// POSTs `{"n": 1}` with a bearer token to the URL in its body's `url`,
/// and answers with what came back.
fn call(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let url = ops::field(&ops::field(cx.trigger(), "body"), "url");
        let args = Args::new()
            .arg(url)
            .kw("json", json!({ "n": 1 }))
            .kw("bearer", json!("tok-1"));
        let sent = cx.step("sent", no_retry(), "http.post", args).await?;
        Ok(Outcome::Respond {
            status: 200,
            body: json!({ "status": sent["status"], "body": sent["body"] }),
            headers: vec![],
        })
    })
}

fn flows(_config: &Config) -> Vec<FlowDef> {
    vec![flow("call", json_sync("/call"), call)]
}

async fn started() -> (Runtime, flow_runtime::ServerHandle) {
    let integration = common::integration("caller", flows);
    let rt = Runtime::new(integration, common::options(&[])).unwrap();
    let server = common::serve(&rt, None).await;
    (rt, server)
}

/// Runs `call` against `url`: the sync answer's status and body.
async fn call_at(server: &flow_runtime::ServerHandle, url: &str) -> (u16, flow_runtime::Value) {
    let (call, body) = (format!("{}/call", server.url()), json!({ "url": url }));
    common::within("the sync call", flow_testkit::post_json(&call, &body, &[])).await
}

#[tokio::test]
async fn a_plain_call_sends_what_reqwest_would() {
    let sink = Sink::start();
    sink.on("POST", "/in", [Reply::json(201, json!({ "id": 7 }))]);
    let (_rt, server) = started().await;
    let (status, answer) = call_at(&server, &format!("{}/in?a=1", sink.url())).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, json!({ "status": 201, "body": { "id": 7 } }));
    let got = sink.requests_to("POST", "/in").pop().expect("the call");
    assert_eq!(got.query, "a=1");
    assert_eq!(got.body, json!({ "n": 1 }));
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_eq!(got.header("authorization"), Some("Bearer tok-1"));
    assert_eq!(got.header("accept"), Some("*/*"));
    let authority = sink.url().trim_start_matches("http://").to_string();
    assert_eq!(got.header("host"), Some(authority.as_str()));
    assert_eq!(
        got.header("user-agent"),
        Some("caller/001122334455 (flowc)")
    );
    assert!(got
        .header("idempotency-key")
        .is_some_and(|k| k.ends_with("/sent")));
    assert!(got.header("traceparent").is_some());
    assert_eq!(got.header("content-length"), Some("7"));
}

#[tokio::test]
async fn redirects_are_followed_as_reqwest_follows_them() {
    let sink = Sink::start();
    let other = Sink::start();
    // 307 repeats the POST with its body; 303 turns it into a GET without
    // one; to another origin, without the credentials.
    sink.on("POST", "/a", [Reply::status(307).header("Location", "/b")]);
    sink.on(
        "POST",
        "/b",
        [Reply::status(303).header("Location", &format!("{}/c", other.url()))],
    );
    other.on("GET", "/c", [Reply::json(200, json!({ "done": true }))]);
    let (_rt, server) = started().await;
    let (status, answer) = call_at(&server, &format!("{}/a", sink.url())).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, json!({ "status": 200, "body": { "done": true } }));
    let repeated = sink
        .requests_to("POST", "/b")
        .pop()
        .expect("the 307's repeat");
    assert_eq!(repeated.body, json!({ "n": 1 }));
    assert_eq!(repeated.header("authorization"), Some("Bearer tok-1"));
    let moved = other.requests_to("GET", "/c").pop().expect("the 303's GET");
    assert_eq!(moved.raw, b"");
    assert_eq!(moved.header("content-type"), None);
    assert_eq!(moved.header("authorization"), None, "another origin");
}

#[tokio::test]
async fn a_redirect_loop_fails_the_step_after_ten() {
    let sink = Sink::start();
    sink.on(
        "POST",
        "/loop",
        (0..20).map(|_| Reply::status(307).header("Location", "/loop")),
    );
    let (rt, server) = started().await;
    let (status, answer) = call_at(&server, &format!("{}/loop", sink.url())).await;
    assert_eq!(status, 500, "{answer}");
    let exec = common::finished(&rt, answer["execution_id"].as_str().unwrap()).await;
    assert_eq!(exec.status, Status::Failed);
    let error = exec.error.unwrap_or_default();
    assert!(error.contains("too many redirects (at most 10)"), "{error}");
    assert_eq!(
        sink.requests_to("POST", "/loop").len(),
        11,
        "the call and 10 redirects"
    );
}

/// The rest of a chain that moves to HTTPS goes through reqwest (here it
/// cannot connect: nothing listens on the port).
#[tokio::test]
async fn a_redirect_to_https_is_sent_by_reqwest() {
    let sink = Sink::start();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    sink.on(
        "POST",
        "/up",
        [Reply::status(308).header("Location", &format!("https://127.0.0.1:{port}/x"))],
    );
    let (rt, server) = started().await;
    let (status, answer) = call_at(&server, &format!("{}/up", sink.url())).await;
    assert_eq!(status, 500, "{answer}");
    let exec = common::finished(&rt, answer["execution_id"].as_str().unwrap()).await;
    let error = exec.error.unwrap_or_default();
    // reqwest tried to connect; hyper's plain connector would have
    // refused the scheme instead ("invalid URL, scheme is not http").
    assert!(error.contains("error sending request"), "{error}");
    assert!(error.contains("onnection refused"), "{error}");
    assert_eq!(sink.requests_to("POST", "/up").len(), 1);
}
