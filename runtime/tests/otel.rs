//! OTLP/HTTP trace export (feature `otel`) against a collector stand-in: a
//! `Sink` that records what the exporter posts, decoded here with the
//! OTLP protobuf types. One trace per run, a span per step attempt under
//! the run span, the service's name and version, the caller's
//! `traceparent` joined and passed on to `http.*` calls, a replay in the
//! same trace.
//!
//! The exporter is process-wide: every test shares one collector and
//! tells its spans apart by trace id.
#![cfg(feature = "otel")]

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::{expect_status, within};
use flow_runtime::core::otel::{self, Service};
use flow_runtime::{
    json, ops, Args, Config, Ctx, FlowDef, FlowFuture, Integration, Outcome, Runtime, Schema,
    Status, StepOptions, Value,
};
use flow_testkit::{poll_until, Sink};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use prost::Message as _;

const ADMIN: &str = "admin-token-otel";

/// The collector stand-in, with the exporter pointed at it (once).
fn collector() -> &'static Sink {
    static COLLECTOR: OnceLock<Sink> = OnceLock::new();
    COLLECTOR.get_or_init(|| {
        let sink = Sink::start();
        otel::init(
            sink.url(),
            Service {
                name: "traced".into(),
                version: "v-test".into(),
            },
        );
        assert!(otel::enabled(), "the exporter did not start");
        sink
    })
}

/// One exported span, as the collector decoded it.
#[derive(Debug, Clone)]
struct Exported {
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: Vec<(String, String)>,
    failed: bool,
    service_name: String,
    service_version: String,
}

impl Exported {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn text_of(value: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        other => format!("{other:?}"),
    }
}

/// Every span the collector has received so far.
fn exported(collector: &Sink) -> Vec<Exported> {
    let mut spans = Vec::new();
    for request in collector.requests_to("POST", "/v1/traces") {
        let decoded = ExportTraceServiceRequest::decode(request.raw.as_slice())
            .expect("an OTLP protobuf export request");
        for resource_spans in decoded.resource_spans {
            let resource: Vec<(String, String)> = resource_spans
                .resource
                .map(|r| {
                    r.attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), text_of(&kv.value)))
                        .collect()
                })
                .unwrap_or_default();
            let resource_attr = |key: &str| {
                resource
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push(Exported {
                        name: span.name.clone(),
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        attributes: span
                            .attributes
                            .iter()
                            .map(|kv| (kv.key.clone(), text_of(&kv.value)))
                            .collect(),
                        failed: span
                            .status
                            .as_ref()
                            .is_some_and(|s| s.code == StatusCode::Error as i32),
                        service_name: resource_attr("service.name"),
                        service_version: resource_attr("service.version"),
                    });
                }
            }
        }
    }
    spans
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Waits (bounded) until trace `trace_id` has `runs` run spans and
/// `steps` step spans, flushing the exporter between looks.
async fn trace_spans(trace_id: &str, runs: usize, steps: usize) -> Vec<Exported> {
    let collector = collector();
    poll_until(
        common::WAIT,
        &format!("trace {trace_id} exported"),
        || async {
            tokio::task::spawn_blocking(otel::flush).await.unwrap();
            let spans: Vec<Exported> = exported(collector)
                .into_iter()
                .filter(|s| s.trace_id == trace_id)
                .collect();
            let count = |name: &str| spans.iter().filter(|s| s.name == name).count();
            (count("run") == runs && count("step") == steps).then_some(spans)
        },
    )
    .await
}

fn quick_retry(retry: u32) -> StepOptions {
    StepOptions {
        retry,
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(10),
        timeout: None,
    }
}

fn sink_url(cx: &Ctx, path: &str) -> Value {
    Value::String(ops::interp(&[
        ops::field(cx.config(), "sink_url"),
        json!(path),
    ]))
}

/// Posts to `/flaky` with one retry.
fn retried(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        cx.step(
            "send",
            quick_retry(1),
            "http.post",
            Args::new()
                .arg(sink_url(&cx, "/flaky"))
                .kw("json", json!({})),
        )
        .await?;
        Ok(Outcome::Succeeded)
    })
}

/// Posts to `/fragile` once: fails when the sink does.
fn fragile(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        cx.step(
            "send",
            quick_retry(0),
            "http.post",
            Args::new()
                .arg(sink_url(&cx, "/fragile"))
                .kw("json", json!({})),
        )
        .await?;
        Ok(Outcome::Succeeded)
    })
}

/// Posts to the path named by the flow.
fn forward(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let path = format!("/{}", cx.flow());
        cx.step(
            "forward",
            quick_retry(0),
            "http.post",
            Args::new().arg(sink_url(&cx, &path)).kw("json", json!({})),
        )
        .await?;
        Ok(Outcome::Respond {
            status: 200,
            body: json!({ "ok": true }),
            headers: vec![],
        })
    })
}

fn flows(_config: &Config) -> Vec<FlowDef> {
    use common::{flow, json_sync, json_webhook};
    vec![
        flow("retried", json_webhook("/retried", None), retried),
        flow("fragile", json_webhook("/fragile", None), fragile),
        flow("hooked", json_webhook("/hooked", None), forward),
        flow("synced", json_sync("/synced"), forward),
    ]
}

fn runtime(sink: &Sink) -> Runtime {
    let integration = Integration {
        config: vec![common::config_entry("sink_url", Schema::Url)],
        ..common::integration("traced", flows)
    };
    let env = [("SINK_URL", sink.url())];
    Runtime::new(integration, common::options(&env)).unwrap()
}

/// An instance's run (`serve --instances`) names it in its span.
#[tokio::test]
async fn an_instances_run_names_it() {
    collector();
    let sink = Sink::start();
    sink.on("POST", "/hooked", [flow_testkit::Reply::ok()]);
    let integration = Integration {
        config: vec![common::config_entry("sink_url", Schema::Url)],
        ..common::integration("traced", flows)
    };
    let options = flow_runtime::RuntimeOptions {
        config_values: Some(
            json!({ "sink_url": sink.url() })
                .as_object()
                .unwrap()
                .clone(),
        ),
        instance: Some("acme".into()),
        ..common::options(&[])
    };
    let rt = Runtime::new(integration, options).unwrap();
    let server = common::serve(&rt, None).await;
    let answer = post(&format!("{}/hooked", server.url()), &[]).await;
    let id = answer["execution_id"].as_str().unwrap().to_string();
    expect_status(&rt, &id, Status::Succeeded).await;
    let spans = trace_spans(&trace_of_execution(&id), 1, 1).await;
    let run = spans.iter().find(|s| s.name == "run").unwrap();
    assert_eq!(run.attribute("flow.instance"), Some("acme"));
}

/// `POST path` with a JSON body and these headers; the answer's body.
async fn post(url: &str, headers: &[(&str, &str)]) -> Value {
    let (status, body) = flow_testkit::post_json(url, &json!({}), headers).await;
    assert!((200..300).contains(&status), "{url}: {status} {body}");
    body
}

/// The trace id of a run without a caller's trace: its execution id.
fn trace_of_execution(id: &str) -> String {
    id.replace('-', "")
}

/// The parts of a `traceparent` value: (trace id, parent span id).
fn traceparent_parts(value: &str) -> (String, String) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "traceparent {value}");
    assert_eq!(parts[0], "00");
    (parts[1].to_string(), parts[2].to_string())
}

#[tokio::test]
async fn a_run_is_one_trace_with_a_span_per_step_attempt() {
    collector();
    let sink = Sink::start();
    sink.on(
        "POST",
        "/flaky",
        [flow_testkit::Reply::status(503), flow_testkit::Reply::ok()],
    );
    let rt = runtime(&sink);
    let server = common::serve(&rt, None).await;
    let answer = post(&format!("{}/retried", server.url()), &[]).await;
    let id = answer["execution_id"].as_str().unwrap().to_string();
    expect_status(&rt, &id, Status::Succeeded).await;

    let trace_id = trace_of_execution(&id);
    let spans = trace_spans(&trace_id, 1, 2).await;
    let run = spans.iter().find(|s| s.name == "run").unwrap();
    assert_eq!(run.parent_span_id, "", "a run without caller is a root");
    assert_eq!(run.attribute("flow.execution_id"), Some(id.as_str()));
    assert_eq!(run.attribute("flow.status"), Some("succeeded"));
    assert_eq!(run.attribute("flow.instance"), None);
    assert!(!run.failed);
    for span in &spans {
        assert_eq!(span.service_name, "traced");
        assert_eq!(span.service_version, "v-test");
    }
    let mut attempts: Vec<&Exported> = spans.iter().filter(|s| s.name == "step").collect();
    attempts.sort_by_key(|s| s.attribute("flow.attempt").map(str::to_string));
    for attempt in &attempts {
        assert_eq!(attempt.parent_span_id, run.span_id, "{attempt:?}");
        assert_eq!(attempt.attribute("flow.step"), Some("send"));
        assert_eq!(attempt.attribute("flow.call"), Some("http.post"));
    }
    assert_eq!(attempts[0].attribute("flow.attempt"), Some("1"));
    assert_eq!(attempts[0].attribute("flow.outcome"), Some("retried"));
    assert!(attempts[0].failed);
    assert_eq!(attempts[1].attribute("flow.attempt"), Some("2"));
    assert_eq!(attempts[1].attribute("flow.outcome"), Some("succeeded"));
    assert!(!attempts[1].failed);

    // Each request names the span of its own attempt.
    let sent = sink.requests_to("POST", "/flaky");
    assert_eq!(sent.len(), 2);
    for (request, attempt) in sent.iter().zip(&attempts) {
        let (trace, parent) = traceparent_parts(request.header("traceparent").unwrap());
        assert_eq!(trace, trace_id);
        assert_eq!(parent, attempt.span_id);
    }
}

#[tokio::test]
async fn a_callers_traceparent_is_joined_and_passed_on() {
    collector();
    let sink = Sink::start();
    let rt = runtime(&sink);
    let server = common::serve(&rt, None).await;
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let traceparent = format!("00-{caller_trace}-{caller_span}-01");

    // A webhook: the queued run joins the caller's trace.
    let answer = post(
        &format!("{}/hooked", server.url()),
        &[("traceparent", &traceparent)],
    )
    .await;
    let id = answer["execution_id"].as_str().unwrap().to_string();
    expect_status(&rt, &id, Status::Succeeded).await;
    // A sync request in the same trace: its run too.
    post(
        &format!("{}/synced", server.url()),
        &[("traceparent", &traceparent)],
    )
    .await;

    let spans = trace_spans(caller_trace, 2, 2).await;
    for run in spans.iter().filter(|s| s.name == "run") {
        assert_eq!(run.parent_span_id, caller_span, "{run:?}");
    }
    for (flow, path) in [("hooked", "/hooked"), ("synced", "/synced")] {
        let run = spans
            .iter()
            .find(|s| s.name == "run" && s.attribute("flow.name") == Some(flow))
            .unwrap();
        let step = spans
            .iter()
            .find(|s| s.name == "step" && s.parent_span_id == run.span_id)
            .unwrap_or_else(|| panic!("no step span under the {flow} run: {spans:#?}"));
        let request = sink.requests_to("POST", path).pop().unwrap();
        let (trace, parent) = traceparent_parts(request.header("traceparent").unwrap());
        assert_eq!(trace, caller_trace);
        assert_eq!(parent, step.span_id);
    }
}

#[tokio::test]
async fn a_replayed_run_stays_in_its_trace() {
    collector();
    let sink = Sink::start();
    sink.on(
        "POST",
        "/fragile",
        [flow_testkit::Reply::status(500), flow_testkit::Reply::ok()],
    );
    let rt = runtime(&sink);
    let server = common::serve(&rt, Some(ADMIN)).await;
    let answer = post(&format!("{}/fragile", server.url()), &[]).await;
    let id = answer["execution_id"].as_str().unwrap().to_string();
    expect_status(&rt, &id, Status::Failed).await;

    let replay = format!("{}/_flow/executions/{id}/replay", server.url());
    let bearer = format!("Bearer {ADMIN}");
    post(&replay, &[("authorization", &bearer)]).await;
    within("the replay succeeds", async {
        poll_until(common::WAIT, "replayed run succeeded", || async {
            let e = rt.store().get(&id).await.unwrap()?;
            (e.status == Status::Succeeded).then_some(())
        })
        .await
    })
    .await;

    let spans = trace_spans(&trace_of_execution(&id), 2, 2).await;
    let runs: Vec<&Exported> = spans.iter().filter(|s| s.name == "run").collect();
    let statuses: Vec<Option<&str>> = runs.iter().map(|r| r.attribute("flow.status")).collect();
    assert!(statuses.contains(&Some("failed")), "{statuses:?}");
    assert!(statuses.contains(&Some("succeeded")), "{statuses:?}");
    for step in spans.iter().filter(|s| s.name == "step") {
        assert!(
            runs.iter().any(|r| r.span_id == step.parent_span_id),
            "{step:?} is under neither run span"
        );
    }
}
