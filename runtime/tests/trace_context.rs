//! W3C trace context with export off (as in every binary built without
//! `flowc build --with otel`, or with it but no OTLP endpoint): a run's
//! trace id is its caller's, else its execution id, and `http.*` calls
//! carry it in `traceparent`; a malformed `traceparent` is ignored.

mod common;

use common::expect_status;
use flow_runtime::{
    json, ops, Args, Config, Ctx, FlowDef, FlowFuture, Outcome, RunError, Runtime, Schema, Status,
    StepOptions, Value,
};
use flow_testkit::Sink;

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Posts to the path named by the flow.
fn forward(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let url = ops::interp(&[
            ops::field(cx.config(), "sink_url"),
            json!(format!("/{}", cx.flow())),
        ]);
        post_once(
            &cx,
            "forward",
            Args::new().arg(Value::String(url)).kw("json", json!({})),
        )
        .await
    })
}

/// Posts with a `traceparent` of its own.
fn own(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let url = ops::interp(&[ops::field(cx.config(), "sink_url"), json!("/own")]);
        let args = Args::new()
            .arg(Value::String(url))
            .kw("headers", json!({ "traceparent": CALLER }));
        post_once(&cx, "own", args).await
    })
}

/// One `http.post` step, not retried.
async fn post_once(cx: &Ctx, step: &'static str, args: Args) -> Result<Outcome, RunError> {
    let options = StepOptions {
        retry: 0,
        ..StepOptions::default()
    };
    cx.step(step, options, "http.post", args).await?;
    Ok(Outcome::Succeeded)
}

fn flows(_config: &Config) -> Vec<FlowDef> {
    use common::{flow, json_sync, json_webhook};
    vec![
        flow("own", json_webhook("/own", None), own),
        flow("hooked", json_webhook("/hooked", None), forward),
        flow("synced", json_sync("/synced"), forward),
    ]
}

fn runtime(sink: &Sink) -> Runtime {
    let integration = flow_runtime::Integration {
        config: vec![common::config_entry("sink_url", Schema::Url)],
        ..common::integration("propagating", flows)
    };
    Runtime::new(integration, common::options(&[("SINK_URL", sink.url())])).unwrap()
}

/// The trace id and parent span id of the last request `sink` got on `path`.
fn sent_traceparent(sink: &Sink, path: &str) -> (String, String) {
    let request = sink.requests_to("POST", path).pop().expect("a request");
    let value = request.header("traceparent").expect("a traceparent header");
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    assert_eq!((parts[0], parts[3]), ("00", "01"), "{value}");
    (parts[1].to_string(), parts[2].to_string())
}

#[tokio::test]
async fn a_webhook_run_carries_its_callers_trace_to_http_calls() {
    assert!(!flow_runtime::core::otel::enabled());
    let sink = Sink::start();
    let rt = runtime(&sink);
    let server = common::serve(&rt, None).await;
    let url = format!("{}/hooked", server.url());
    let (status, answer) =
        flow_testkit::post_json(&url, &json!({}), &[("traceparent", CALLER)]).await;
    assert_eq!(status, 202, "{answer}");
    expect_status(
        &rt,
        answer["execution_id"].as_str().unwrap(),
        Status::Succeeded,
    )
    .await;
    let (trace, parent) = sent_traceparent(&sink, "/hooked");
    assert_eq!(trace, CALLER_TRACE);
    assert_ne!(
        parent, "00f067aa0ba902b7",
        "the run's span, not the caller's"
    );
}

#[tokio::test]
async fn a_sync_run_carries_its_callers_trace_to_http_calls() {
    let sink = Sink::start();
    let rt = runtime(&sink);
    let server = common::serve(&rt, None).await;
    let url = format!("{}/synced", server.url());
    let (status, answer) =
        flow_testkit::post_json(&url, &json!({}), &[("traceparent", CALLER)]).await;
    assert_eq!(status, 204, "{answer}");
    assert_eq!(sent_traceparent(&sink, "/synced").0, CALLER_TRACE);
}

#[tokio::test]
async fn without_a_valid_traceparent_the_trace_is_the_execution_id() {
    let sink = Sink::start();
    let rt = runtime(&sink);
    let server = common::serve(&rt, None).await;
    let url = format!("{}/hooked", server.url());
    for header in [None, Some("00-not-a-trace-01"), Some("junk")] {
        let headers: Vec<(&str, &str)> = header.map(|h| ("traceparent", h)).into_iter().collect();
        let (status, answer) = flow_testkit::post_json(&url, &json!({}), &headers).await;
        assert_eq!(status, 202, "{answer}");
        let id = answer["execution_id"].as_str().unwrap();
        expect_status(&rt, id, Status::Succeeded).await;
        assert_eq!(sent_traceparent(&sink, "/hooked").0, id.replace('-', ""));
    }
}

#[tokio::test]
async fn a_flows_own_traceparent_header_is_kept() {
    let sink = Sink::start();
    let rt = runtime(&sink);
    let server = common::serve(&rt, None).await;
    let url = format!("{}/own", server.url());
    let (status, answer) = flow_testkit::post_json(&url, &json!({}), &[]).await;
    assert_eq!(status, 202, "{answer}");
    expect_status(
        &rt,
        answer["execution_id"].as_str().unwrap(),
        Status::Succeeded,
    )
    .await;
    let request = sink.requests_to("POST", "/own").pop().expect("a request");
    assert_eq!(request.header("traceparent"), Some(CALLER));
}
