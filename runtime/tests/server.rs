//! HTTP edge cases of the server with a small hand-built integration:
//! request validation (400/401/413/415), sync timeouts and the async
//! fallback with its callback, admin authentication, secret redaction,
//! parallel loops and dispatch, and bounded intake (timeouts for slow
//! callers, caps on requests and sync runs).

mod common;

use std::time::Duration;

use common::{expect_status, within};
use flow_runtime::host::IntakeLimits;
use flow_runtime::triggers::http::callback::CallbackSettings;
use flow_runtime::{
    json, ops, Args, Config, Ctx, FieldSchema, FlowDef, FlowFuture, Integration, Outcome, RunError,
    Runtime, Schema, ServerHandle, Status, TriggerDef, Value, Verify,
};
use flow_testkit::{hmac_hex, Sink};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::Notify;

const HOOK_SECRET: &str = "s3cret-hook";
const API_KEY: &str = "key-abcdef-123";

/// Opened by the test to let the `slow_async` flow finish.
static GATE: Notify = Notify::const_new();

/// Opened by the test to let the `fails_later` flow fail.
static FAIL_GATE: Notify = Notify::const_new();

use common::no_retry;

fn sink_url(cx: &Ctx, path: &str) -> Value {
    Value::String(ops::interp(&[
        ops::field(cx.config(), "sink_url"),
        json!(path),
    ]))
}

fn hook(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let body = ops::field(cx.trigger(), "body");
        cx.step(
            "forward",
            no_retry(),
            "http.post",
            Args::new().arg(sink_url(&cx, "/got")).kw("json", body),
        )
        .await?;
        Ok(Outcome::Succeeded)
    })
}

fn raw(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let body = ops::field(cx.trigger(), "body");
        cx.step(
            "forward",
            no_retry(),
            "http.post",
            Args::new().arg(sink_url(&cx, "/raw-got")).kw("body", body),
        )
        .await?;
        Ok(Outcome::Succeeded)
    })
}

fn slow(_cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        std::future::pending::<()>().await;
        Ok(Outcome::Succeeded)
    })
}

fn slow_async(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        GATE.notified().await;
        Ok(Outcome::Respond {
            status: 201,
            body: json!({ "done": true, "id": ops::field(&ops::field(cx.trigger(), "params"), "id") }),
            headers: vec![],
        })
    })
}

fn echo_tag(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        Ok(Outcome::Respond {
            status: 200,
            body: json!({ "tag": ops::field(&ops::field(cx.trigger(), "headers"), "x-tag") }),
            headers: vec![],
        })
    })
}

fn fails_later(_cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        FAIL_GATE.notified().await;
        Err(RunError::new("failed after the caller left"))
    })
}

fn leaky(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let url = ops::interp(&[
            ops::field(cx.config(), "sink_url"),
            json!("/missing?key="),
            ops::field(cx.config(), "api_key"),
        ]);
        cx.step(
            "fetch",
            no_retry(),
            "http.get",
            Args::new().arg(Value::String(url)),
        )
        .await?;
        Ok(Outcome::Succeeded)
    })
}

/// GETs the `url` it was sent, with the `max_response:` it was sent.
fn fetch(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let url = ops::field(&ops::field(cx.trigger(), "body"), "url");
        let limit = ops::field(&ops::field(cx.trigger(), "body"), "limit");
        cx.step(
            "big",
            no_retry(),
            "http.get",
            Args::new().arg(url).kw("max_response", limit),
        )
        .await?;
        Ok(Outcome::Succeeded)
    })
}

/// Tells the sink it runs (`POST /FLOW`, which the sink may hold), then
/// answers 200.
fn held(cx: Ctx) -> FlowFuture {
    held_with(cx, no_retry())
}

/// `held` with a step `timeout` of 200 ms, shorter than its sync route's.
fn held_step_timeout(cx: Ctx) -> FlowFuture {
    let opts = flow_runtime::StepOptions {
        timeout: Some(Duration::from_millis(200)),
        ..no_retry()
    };
    held_with(cx, opts)
}

fn held_with(cx: Ctx, opts: flow_runtime::StepOptions) -> FlowFuture {
    Box::pin(async move {
        let path = format!("/{}", cx.flow());
        cx.step(
            "enter",
            opts,
            "http.post",
            Args::new().arg(sink_url(&cx, &path)).kw("json", json!({})),
        )
        .await?;
        Ok(Outcome::Respond {
            status: 200,
            body: json!({ "released": true }),
            headers: vec![],
        })
    })
}

/// Decodes the JSON text it was sent in a step (whose output is journaled).
fn decode(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let text = ops::field(&ops::field(cx.trigger(), "body"), "text");
        cx.step("parsed", no_retry(), "json.decode", Args::new().arg(text))
            .await?;
        Ok(Outcome::Succeeded)
    })
}

fn fanout(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let items = ops::iter(&ops::field(&ops::field(cx.trigger(), "body"), "items"))?;
        let outcome = flow_runtime::parallel(items, 2, |i, item| {
            let cx = cx.with_index(i);
            async move {
                if ops::equal(&item, &json!("stop")) {
                    return Ok(Some(Outcome::Skipped("stop item".into())));
                }
                let url = ops::interp(&[
                    ops::field(cx.config(), "sink_url"),
                    json!("/item/"),
                    item.clone(),
                ]);
                cx.step(
                    "send",
                    no_retry(),
                    "http.put",
                    Args::new().arg(Value::String(url)).kw("json", item),
                )
                .await?;
                Ok(None)
            }
        })
        .await?;
        if let Some(o) = outcome {
            return Ok(o);
        }
        cx.dispatch("child", json!({ "n": 7 })).await?;
        Ok(Outcome::Succeeded)
    })
}

fn child(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let n = ops::field(&ops::field(cx.trigger(), "input"), "n");
        if ops::truthy(&ops::gt(&n, &json!(5))?) {
            return Err(RunError::fail(ops::interp(&[json!("too big: "), n])));
        }
        Ok(Outcome::Succeeded)
    })
}

fn flows(config: &Config) -> Vec<FlowDef> {
    let webhook = |path, body, verify, max_body| TriggerDef::Webhook {
        method: "POST",
        path,
        body,
        verify,
        auth: None,
        dedupe: None,
        max_body,
    };
    let def = |name, trigger, run| FlowDef {
        name,
        doc: "",
        trigger,
        run,
        on_failure: None,
    };
    vec![
        def(
            "hook",
            webhook(
                "/hook",
                Schema::Record(vec![
                    FieldSchema::new("n", Schema::Int),
                    FieldSchema::new("tags", Schema::list(Schema::String)),
                ]),
                Some(Verify::Hmac {
                    header: "X-Hub-Signature-256",
                    secrets: vec![config.str("hook_secret")],
                }),
                128,
            ),
            hook,
        ),
        def("raw", webhook("/raw", Schema::String, None, 1024), raw),
        def("leaky", webhook("/leaky", Schema::Json, None, 1024), leaky),
        def(
            "decode",
            webhook("/decode", Schema::Json, None, 4096),
            decode,
        ),
        def("fetch", webhook("/fetch", Schema::Json, None, 1024), fetch),
        def(
            "fanout",
            webhook("/fanout", Schema::Json, None, 1024),
            fanout,
        ),
        def(
            "child",
            TriggerDef::Dispatch {
                input: Schema::Json,
            },
            child,
        ),
        def(
            "slow",
            TriggerDef::Sync {
                method: "GET",
                path: "/slow",
                body: Schema::Json,
                timeout: Duration::from_millis(200),
                fallback_async: false,
                reads_headers: false,
                verify: None,
                auth: None,
            },
            slow,
        ),
        def(
            "slow_async",
            TriggerDef::Sync {
                method: "POST",
                path: "/slow/{id}",
                body: Schema::Json,
                timeout: Duration::from_millis(200),
                fallback_async: true,
                reads_headers: false,
                verify: None,
                auth: None,
            },
            slow_async,
        ),
        def(
            "echo_tag",
            TriggerDef::Sync {
                method: "GET",
                path: "/echo-tag",
                body: Schema::Json,
                timeout: Duration::from_secs(30),
                fallback_async: false,
                reads_headers: true,
                verify: None,
                auth: None,
            },
            echo_tag,
        ),
        def(
            "fails_later",
            TriggerDef::Sync {
                method: "POST",
                path: "/fails-later",
                body: Schema::Json,
                timeout: Duration::from_secs(30),
                fallback_async: false,
                reads_headers: false,
                verify: None,
                auth: None,
            },
            fails_later,
        ),
        def("held", held_route("/held", Duration::from_secs(30)), held),
        def(
            "held_briefly",
            held_route("/held_briefly", Duration::from_secs(3)),
            held,
        ),
        def(
            "held_step_timeout",
            held_route("/held_step_timeout", Duration::from_secs(30)),
            held_step_timeout,
        ),
        def(
            "held_async",
            TriggerDef::Sync {
                method: "POST",
                path: "/held_async",
                body: Schema::Json,
                timeout: Duration::from_millis(200),
                fallback_async: true,
                reads_headers: false,
                verify: None,
                auth: None,
            },
            held,
        ),
    ]
}

fn held_route(path: &'static str, timeout: Duration) -> TriggerDef {
    TriggerDef::Sync {
        method: "POST",
        path,
        body: Schema::Json,
        timeout,
        fallback_async: false,
        reads_headers: false,
        verify: None,
        auth: None,
    }
}

fn integration() -> Integration {
    Integration {
        config: vec![
            common::config_entry("sink_url", Schema::Url),
            common::config_entry("hook_secret", Schema::Secret),
            common::config_entry("api_key", Schema::Secret),
        ],
        ..common::integration("edge_cases", flows)
    }
}

fn runtime(sink: &Sink) -> Runtime {
    let url = sink.url().to_string();
    let env = [
        ("SINK_URL", url.as_str()),
        ("HOOK_SECRET", HOOK_SECRET),
        ("API_KEY", API_KEY),
    ];
    Runtime::new(integration(), common::options(&env)).unwrap()
}

/// Serve options with the admin token and callbacks allowed to the sink.
fn serve_options(admin: Option<&str>) -> flow_runtime::host::ServeOptions {
    let mut options = flow_runtime::host::ServeOptions::new("127.0.0.1:0".parse().unwrap());
    options.admin_token = admin.map(str::to_string);
    // The sink listens on the loopback address: listed as such, callbacks
    // may go there.
    options.callbacks =
        CallbackSettings::from_options("127.0.0.1", Some("cb-secret-server")).unwrap();
    options
}

async fn start(sink: &Sink, admin: Option<&str>) -> ServerHandle {
    flow_runtime::host::serve(&runtime(sink), serve_options(admin))
        .await
        .unwrap()
}

/// A server with these intake limits, the others at their defaults.
async fn start_limited(sink: &Sink, limit: impl FnOnce(&mut IntakeLimits)) -> ServerHandle {
    let mut options = serve_options(None);
    limit(&mut options.intake);
    flow_runtime::host::serve(&runtime(sink), options)
        .await
        .unwrap()
}

async fn post(
    server: &ServerHandle,
    path: &str,
    content_type: &str,
    body: &[u8],
    sig: Option<String>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}{path}", server.url()))
        .header("content-type", content_type)
        .body(body.to_vec());
    if let Some(sig) = sig {
        req = req.header("X-Hub-Signature-256", sig);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn webhook_validation() {
    let sink = Sink::start();
    let server = start(&sink, None).await;
    let json_ct = "application/json";

    // A valid, signed request.
    let body = br#"{"n": 1, "tags": ["a"], "extra": true}"#;
    let (status, answer) = post(
        &server,
        "/hook",
        json_ct,
        body,
        Some(format!("sha256={}", hmac_hex(HOOK_SECRET, body))),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["execution_id"].as_str().unwrap();
    expect_status(server.runtime(), id, Status::Succeeded).await;
    assert_eq!(
        sink.requests_to("POST", "/got")[0].body,
        json!({ "n": 1, "tags": ["a"] })
    );

    // Bad signatures: wrong, missing, signed with another secret.
    let (status, answer) = post(
        &server,
        "/hook",
        json_ct,
        body,
        Some("sha256=deadbeef".into()),
    )
    .await;
    assert_eq!(status, 401, "{answer}");
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("X-Hub-Signature-256"));
    assert_eq!(post(&server, "/hook", json_ct, body, None).await.0, 401);
    assert_eq!(
        post(
            &server,
            "/hook",
            json_ct,
            body,
            Some(hmac_hex("other", body))
        )
        .await
        .0,
        401
    );

    // Body type mismatch: 400 naming the path.
    let bad = br#"{"n": 1, "tags": ["a", 5]}"#;
    let (status, answer) = post(
        &server,
        "/hook",
        json_ct,
        bad,
        Some(hmac_hex(HOOK_SECRET, bad)),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        answer,
        json!({ "error": "tags[1]: expected String, got 5" })
    );
    let missing = br#"{"tags": []}"#;
    let (status, answer) = post(
        &server,
        "/hook",
        json_ct,
        missing,
        Some(hmac_hex(HOOK_SECRET, missing)),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(answer, json!({ "error": "n: missing field, expected Int" }));

    // Invalid JSON.
    let broken = b"{\"n\": ";
    let (status, answer) = post(
        &server,
        "/hook",
        json_ct,
        broken,
        Some(hmac_hex(HOOK_SECRET, broken)),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON"),
        "{answer}"
    );

    // Too large (max_body 128).
    let big = serde_json::to_vec(&json!({ "n": 1, "tags": ["x".repeat(200)] })).unwrap();
    let (status, answer) = post(
        &server,
        "/hook",
        json_ct,
        &big,
        Some(hmac_hex(HOOK_SECRET, &big)),
    )
    .await;
    assert_eq!(status, 413, "{answer}");

    // Not JSON.
    let (status, answer) = post(
        &server,
        "/hook",
        "text/plain",
        body,
        Some(hmac_hex(HOOK_SECRET, body)),
    )
    .await;
    assert_eq!(status, 415, "{answer}");

    // A String body takes any content type, raw.
    let (status, answer) = post(&server, "/raw", "text/csv", b"a,b\n1,2\n", None).await;
    assert_eq!(status, 202, "{answer}");
    expect_status(
        server.runtime(),
        answer["execution_id"].as_str().unwrap(),
        Status::Succeeded,
    )
    .await;
    assert_eq!(
        sink.requests_to("POST", "/raw-got")[0].body,
        json!("a,b\n1,2\n")
    );

    // Wrong method on a known path, unknown path.
    let resp = reqwest::get(format!("{}/hook", server.url()))
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    let resp = reqwest::get(format!("{}/nope", server.url()))
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    let metrics = reqwest::get(format!("{}/_flow/metrics", server.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("flow_http_requests_total{route=\"/hook\",status=\"401\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("flow_http_requests_total{route=\"/hook\",status=\"202\"} 1"),
        "{metrics}"
    );

    within("shutdown", server.shutdown()).await;
}

#[tokio::test]
async fn sync_timeout_and_async_fallback_with_callback() {
    let sink = Sink::start();
    let server = start(&sink, Some("tok-admin-1")).await;
    let rt = server.runtime().clone();
    let client = reqwest::Client::new();

    let resp = client
        .get(format!("{}/slow", server.url()))
        .header("x-request-tag", "first")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 504);
    let id = resp.headers()["x-execution-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({ "error": "timed out after 200ms" })
    );
    let e = expect_status(&rt, &id, Status::Failed).await;
    assert_eq!(e.error.as_deref(), Some("timed out after 200ms"));
    // The flow does not read the headers, so its trigger was built without
    // them; the recorded run has them all the same.
    assert_eq!(e.trigger["headers"]["x-request-tag"], json!("first"));

    let resp = client
        .post(format!("{}/slow/abc", server.url()))
        .header("x-callback-url", format!("{}/callback", sink.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let answer: Value = resp.json().await.unwrap();
    let id = answer["execution_id"].as_str().unwrap().to_string();
    assert_eq!(
        answer["status_url"],
        json!(format!("/_flow/executions/{id}"))
    );

    GATE.notify_one();
    sink.wait_until(common::WAIT, "the callback", |r| {
        r.iter().any(|x| x.path == "/callback")
    })
    .await;
    let cb = &sink.requests_to("POST", "/callback")[0];
    assert_eq!(cb.body["execution_id"], json!(id));
    assert_eq!(cb.body["status"], json!("succeeded"));
    assert_eq!(cb.body["http_status"], json!(201));
    assert_eq!(cb.body["body"], json!({ "done": true, "id": "abc" }));

    // The status URL serves the result.
    let detail: Value = client
        .get(format!(
            "{}{}",
            server.url(),
            answer["status_url"].as_str().unwrap()
        ))
        .bearer_auth("tok-admin-1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(detail["status"], json!("succeeded"));
    assert_eq!(detail["result"]["body"]["done"], json!(true));
    assert_eq!(
        detail["trigger"]["headers"]["x-callback-url"],
        json!(format!("{}/callback", sink.url()))
    );

    within("shutdown", server.shutdown()).await;
}

#[tokio::test]
async fn admin_api_requires_a_token_and_redacts_secrets() {
    let sink = Sink::responding(|_, _| (404, json!({ "error": "not here" })));
    let server = start(&sink, Some("tok-admin-2")).await;
    let client = reqwest::Client::new();
    let url = server.url();

    for path in ["/_flow/healthz", "/_flow/readyz", "/_flow/metrics"] {
        assert_eq!(
            reqwest::get(format!("{url}{path}")).await.unwrap().status(),
            200,
            "{path}"
        );
    }
    let resp = client
        .get(format!("{url}/_flow/executions"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    let resp = client
        .get(format!("{url}/_flow/executions"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = client
        .post(format!("{url}/_flow/executions/x/replay"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = client
        .get(format!("{url}/_flow/executions"))
        .bearer_auth("tok-admin-2")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = client
        .get(format!("{url}/_flow/executions?status=bogus"))
        .bearer_auth("tok-admin-2")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = client
        .get(format!("{url}/_flow/executions/nope"))
        .bearer_auth("tok-admin-2")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // A failing step whose URL carries a secret: the record shows `***`.
    let (status, answer) = post(
        &server,
        "/leaky",
        "application/json",
        br#"{"k": "key-abcdef-123"}"#,
        None,
    )
    .await;
    assert_eq!(status, 202);
    let id = answer["execution_id"].as_str().unwrap().to_string();
    let e = expect_status(server.runtime(), &id, Status::Failed).await;
    let error = e.error.unwrap();
    assert!(error.contains("HTTP 404"), "{error}");
    assert!(!error.contains(API_KEY), "{error}");
    // The URL in the error has lost its query string, key and all.
    assert!(error.contains("/missing: HTTP 404"), "{error}");
    assert!(!error.contains("key="), "{error}");
    let text = client
        .get(format!("{url}/_flow/executions/{id}"))
        .bearer_auth("tok-admin-2")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains(API_KEY), "{text}");
    assert!(text.contains("***"), "{text}");
    // The sink did receive the real key: redaction is for what we print.
    assert!(sink.requests()[0].path.starts_with("/missing"));

    // Replaying a running/queued execution conflicts; unknown is 404.
    let resp = client
        .post(format!("{url}/_flow/executions/nope/replay"))
        .bearer_auth("tok-admin-2")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    within("shutdown", server.shutdown()).await;

    // Without FLOW_ADMIN_TOKEN the protected endpoints are refused with a hint.
    let server = start(&sink, None).await;
    let resp = client
        .get(format!("{}/_flow/executions", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let answer: Value = resp.json().await.unwrap();
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("FLOW_ADMIN_TOKEN"));
    within("shutdown", server.shutdown()).await;
}

#[tokio::test]
async fn parallel_loop_and_dispatch() {
    let sink = Sink::start();
    let server = start(&sink, None).await;
    let rt = server.runtime().clone();

    let (status, answer) = post(
        &server,
        "/fanout",
        "application/json",
        br#"{"items": ["a", "b", "c"]}"#,
        None,
    )
    .await;
    assert_eq!(status, 202);
    let id = answer["execution_id"].as_str().unwrap().to_string();
    expect_status(&rt, &id, Status::Succeeded).await;
    let mut puts: Vec<String> = sink
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .map(|r| r.path)
        .collect();
    puts.sort();
    assert_eq!(puts, ["/item/a", "/item/b", "/item/c"]);
    let journal = rt.store().journal(&id).await.unwrap();
    let mut keys: Vec<String> = journal.iter().map(|s| s.key.clone()).collect();
    keys.sort();
    assert_eq!(keys, ["dispatch child#1", "send[0]", "send[1]", "send[2]"]);

    // The dispatched child fails with `fail`.
    let child_id = journal
        .iter()
        .find(|s| s.call == "dispatch")
        .unwrap()
        .output
        .clone()
        .unwrap();
    let child = expect_status(&rt, child_id.as_str().unwrap(), Status::Failed).await;
    assert_eq!(child.error.as_deref(), Some("too big: 7"));
    assert_eq!(child.trigger, json!({ "input": { "n": 7 } }));

    // `skip` inside a parallel iteration ends the run as skipped.
    let (_, answer) = post(
        &server,
        "/fanout",
        "application/json",
        br#"{"items": ["stop"]}"#,
        None,
    )
    .await;
    let e = expect_status(
        &rt,
        answer["execution_id"].as_str().unwrap(),
        Status::Skipped,
    )
    .await;
    assert_eq!(e.result, Some(json!({ "skipped": "stop item" })));

    within("shutdown", server.shutdown()).await;
}

#[tokio::test]
async fn missing_config_names_every_entry() {
    let options = common::options(&[("API_KEY", "only-this-one")]);
    let err = match Runtime::new(integration(), options) {
        Err(flow_runtime::StartError::Config(e)) => e,
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("config should be invalid"),
    };
    let text = err.to_string();
    assert!(
        text.contains("sink_url (Url): missing; set environment variable SINK_URL"),
        "{text}"
    );
    assert!(
        text.contains("hook_secret (Secret): missing; set environment variable HOOK_SECRET"),
        "{text}"
    );
    assert_eq!(err.problems.len(), 2);
}

/// A sync run runs in the task of whoever waits for it; when that waiter
/// goes away (hyper drops the handler of a caller that hung up), the run
/// must still finish, and its failure be recorded.
#[tokio::test]
async fn a_sync_run_whose_caller_left_still_ends_and_is_recorded() {
    let sink = Sink::start();
    let server = start(&sink, None).await;
    let rt = server.runtime().clone();

    let trigger = flow_runtime::engine::SyncTrigger::new(json!({ "body": {} }), None);
    let mut run = rt.start_sync("fails_later", trigger);
    let id = run.id().to_string();
    // The caller waits a moment (the run starts and blocks on the gate),
    // then gives up.
    assert!(
        tokio::time::timeout(Duration::from_millis(50), run.wait())
            .await
            .is_err(),
        "the run ended before the gate opened"
    );
    drop(run);

    FAIL_GATE.notify_one();
    // A sync run is stored only once it fails: poll the store for it.
    let e = within("the failed run in the store", async {
        loop {
            match rt.store().get(&id).await.unwrap() {
                Some(e) if e.status.is_final() => break e,
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await;
    assert_eq!(e.status, Status::Failed);
    assert_eq!(e.error.as_deref(), Some("failed after the caller left"));

    within("shutdown", server.shutdown()).await;
}

/// A sync flow that reads `trigger.headers` gets them (lowercase names).
#[tokio::test]
async fn a_sync_flow_that_reads_headers_gets_them() {
    let sink = Sink::start();
    let server = start(&sink, None).await;
    let resp = reqwest::Client::new()
        .get(format!("{}/echo-tag", server.url()))
        .header("X-Tag", "blue")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({ "tag": "blue" })
    );
    within("shutdown", server.shutdown()).await;
}

/// Serving purges failed runs past `failed_retention` (at start-up, then
/// hourly), and keeps those still within it.
#[tokio::test(flavor = "multi_thread")]
async fn failed_runs_past_their_retention_are_purged_while_serving() {
    use flow_runtime::store::{Finish, NewExecution, Store as _};
    let store = std::sync::Arc::new(flow_runtime::MemoryStore::new());
    store
        .enqueue(NewExecution::queued("old-failure", "hook", json!({})))
        .await
        .unwrap();
    let claimed = store
        .claim("test", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let failed = Finish {
        status: Status::Failed,
        result: None,
        error: Some("boom".into()),
        error_step: None,
    };
    store
        .finish("old-failure", &claimed.lease().unwrap(), failed)
        .await
        .unwrap();
    let old_enough = Duration::from_millis(50);
    tokio::time::sleep(old_enough * 2).await;
    let mut options = common::options(&[
        ("SINK_URL", "http://127.0.0.1:9"),
        ("HOOK_SECRET", HOOK_SECRET),
        ("API_KEY", API_KEY),
    ]);
    options.store = Some(store.clone());
    options.failed_retention = Some(old_enough);
    let rt = Runtime::new(integration(), options).unwrap();
    let server = common::serve(&rt, None).await;
    within("the purge of the old failed run", async {
        while store.get("old-failure").await.unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    within("shutdown", server.shutdown()).await;
}

/// A step output nested too deep to be read back from the store fails that
/// step with a clear error; text of that depth inside a string passes the
/// intake (it is a string), so only the step can catch it.
#[tokio::test]
async fn a_step_output_nested_too_deep_fails_the_step() {
    let sink = Sink::start();
    let server = start(&sink, None).await;
    let post_text = |depth: usize| {
        let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        serde_json::to_vec(&json!({ "text": text })).unwrap()
    };

    let (status, answer) = post(
        &server,
        "/decode",
        "application/json",
        &post_text(100),
        None,
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["execution_id"].as_str().unwrap();
    let e = expect_status(server.runtime(), id, Status::Failed).await;
    assert_eq!(e.error_step.as_deref(), Some("parsed"), "{e:#?}");
    assert_eq!(
        e.error.as_deref(),
        Some("json.decode: the output nests deeper than 64 levels and cannot be stored"),
        "{e:#?}"
    );

    let (status, answer) = post(&server, "/decode", "application/json", &post_text(64), None).await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["execution_id"].as_str().unwrap();
    expect_status(server.runtime(), id, Status::Succeeded).await;
}

/// An `http.*` answer larger than `max_response:` fails the step for good
/// (it would only come again); a smaller one is read whole.
#[tokio::test]
async fn an_answer_larger_than_max_response_fails_the_step() {
    let sink = Sink::start();
    let big = json!({ "pad": "x".repeat(2000) });
    sink.on("GET", "/big", [flow_testkit::Reply::json(200, big.clone())]);
    let server = start(&sink, None).await;
    let big_url = format!("{}/big", sink.url());
    let body = serde_json::to_vec(&json!({ "url": big_url, "limit": 1000 })).unwrap();
    let (status, answer) = post(&server, "/fetch", "application/json", &body, None).await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["execution_id"].as_str().unwrap();
    let e = expect_status(server.runtime(), id, Status::Failed).await;
    let error = e.error.unwrap_or_default();
    assert!(
        error.contains("the response is larger than 1000 bytes"),
        "{error}"
    );

    sink.on("GET", "/big", [flow_testkit::Reply::json(200, big)]);
    let body = serde_json::to_vec(&json!({ "url": big_url, "limit": 100_000 })).unwrap();
    let (status, answer) = post(&server, "/fetch", "application/json", &body, None).await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["execution_id"].as_str().unwrap();
    expect_status(server.runtime(), id, Status::Succeeded).await;
    within("shutdown", server.shutdown()).await;
}

/// The HTTP client of `http.*` steps follows at most 10 redirects (its own
/// policy, `core::outbound`, whose refusal names the limit).
#[tokio::test]
async fn an_endless_redirect_fails_the_step_after_ten() {
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hits.clone();
    let app = axum::Router::new().route(
        "/loop",
        axum::routing::get(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { axum::response::Redirect::to("/loop") }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let looping = format!("http://{}/loop", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let sink = Sink::start();
    let server = start(&sink, None).await;
    let body = serde_json::to_vec(&json!({ "url": looping, "limit": 1000 })).unwrap();
    let (status, answer) = post(&server, "/fetch", "application/json", &body, None).await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["execution_id"].as_str().unwrap();
    let e = expect_status(server.runtime(), id, Status::Failed).await;
    let error = e.error.unwrap_or_default();
    assert!(error.contains("too many redirects (at most 10)"), "{error}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 11);
    within("shutdown", server.shutdown()).await;
}

/// Everything the server sends on `read` until it closes the connection
/// (a reset, which follows the answer when the server leaves a body
/// unread, counts as closed).
async fn read_until_closed(mut read: impl tokio::io::AsyncRead + Unpin) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Opens a connection, sends `head`, then one byte every 100 ms for as
/// long as the server reads them; returns what the server answered
/// before closing the connection and how long that took.
async fn trickle(addr: std::net::SocketAddr, head: &str) -> (String, Duration) {
    let started = std::time::Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let (read, mut write) = stream.into_split();
    // The pace of the attack, not a wait for readiness.
    let slow = tokio::spawn(async move {
        while write.write_all(b"x").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let answer = within(
        "the server to cut off the slow caller",
        read_until_closed(read),
    )
    .await;
    slow.abort();
    (answer, started.elapsed())
}

/// A caller sending its body (or headers) a byte at a time is cut off
/// after the request timeout, and meanwhile other callers are served,
/// two pipelined requests on one connection among them.
#[tokio::test]
async fn a_body_or_headers_trickled_byte_by_byte_are_cut_off_at_the_request_timeout() {
    let sink = Sink::start();
    let server = start_limited(&sink, |l| l.request_timeout = Duration::from_secs(1)).await;

    let body_head = "POST /raw HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n\
                     Content-Length: 1000\r\n\r\n";
    let slow_body = tokio::spawn(trickle(server.addr(), body_head));
    let headers_head = "GET /_flow/healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ";
    let slow_headers = tokio::spawn(trickle(server.addr(), headers_head));

    // Served while the slow callers hold their connections.
    let (status, _) = post(&server, "/raw", "text/plain", b"quick", None).await;
    assert_eq!(status, 202);
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    stream
        .write_all(
            b"GET /_flow/healthz HTTP/1.1\r\nHost: t\r\n\r\n\
              GET /_flow/healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let pipelined = within("two pipelined answers", read_until_closed(stream)).await;
    assert_eq!(
        pipelined.matches("HTTP/1.1 200 OK").count(),
        2,
        "{pipelined}"
    );

    // 100 s of trickling if nothing cut it off.
    let (answer, took) = slow_body.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.ends_with(r#"{"error":"the request body did not arrive in time"}"#),
        "{answer}"
    );
    assert!(took < Duration::from_secs(5), "cut off after {took:?}");
    let (answer, took) = slow_headers.await.unwrap();
    assert!(!answer.contains("200 OK"), "{answer}");
    assert!(took < Duration::from_secs(5), "cut off after {took:?}");

    within("shutdown", server.shutdown()).await;
}

/// POSTs `{}` to `path`: the answer's status, `Retry-After` and body.
async fn post_empty(server: &ServerHandle, path: &str) -> (u16, Option<String>, Value) {
    let a = flow_testkit::post_raw(&format!("{}{path}", server.url()), b"{}", &[]).await;
    (
        a.status,
        a.header("retry-after").map(str::to_string),
        a.body,
    )
}

/// Starts a request to the `held` flow and waits until its run holds
/// (the sink holds the flow's call until the test opens the gate).
async fn hold(
    server: &ServerHandle,
    sink: &Sink,
) -> tokio::task::JoinHandle<(u16, Option<String>, Value)> {
    sink.on("POST", "/held", [flow_testkit::Reply::ok().held()]);
    let url = server.url();
    let held = tokio::spawn(async move {
        let a = flow_testkit::post_raw(&format!("{url}/held"), b"{}", &[]).await;
        (
            a.status,
            a.header("retry-after").map(str::to_string),
            a.body,
        )
    });
    sink.wait_for_path("POST", "/held", 1, common::WAIT).await;
    held
}

/// A step's own `timeout`, shorter than its sync run's, still ends the
/// attempt: only an attempt limit the run's deadline ends first goes
/// untimed (the caller would wait 30 s, beyond the test's bounded wait).
#[tokio::test]
async fn a_sync_runs_step_times_out_at_its_own_limit_before_the_runs() {
    let sink = Sink::start();
    let server = start(&sink, None).await;
    let rt = server.runtime().clone();
    sink.on(
        "POST",
        "/held_step_timeout",
        [flow_testkit::Reply::ok().held()],
    );

    let (status, _, body) =
        within("the sync call", post_empty(&server, "/held_step_timeout")).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"], "run failed");
    let e = stored(&rt, "held_step_timeout", "the failed run", |e| {
        e.status.is_final()
    })
    .await;
    assert_eq!(e.status, Status::Failed);
    assert_eq!(e.error.as_deref(), Some("http.post timed out after 200ms"));

    sink.open_gate();
    within("shutdown", server.shutdown()).await;
}

/// Beyond `--max-in-flight` requests being handled, the next is refused at
/// once with `503` and `Retry-After`; the admin API still answers.
#[tokio::test]
async fn requests_beyond_the_in_flight_cap_are_refused_with_retry_after() {
    let sink = Sink::start();
    let server = start_limited(&sink, |l| l.max_in_flight = 1).await;

    let held = hold(&server, &sink).await;
    let (status, retry_after, body) = post_empty(&server, "/held").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(
        body,
        json!({ "error": "too many requests in flight; try again" })
    );
    let (status, _) = post(&server, "/raw", "text/plain", b"x", None).await;
    assert_eq!(status, 503, "webhooks count too");
    let health = flow_testkit::get(&format!("{}/_flow/healthz", server.url()), &[]).await;
    assert_eq!(health.status, 200, "the admin API is not capped");

    sink.open_gate();
    assert_eq!(within("the held request", held).await.unwrap().0, 200);
    // Its place is free again.
    assert_eq!(post_empty(&server, "/held").await.0, 200);
    let metrics = flow_testkit::get(&format!("{}/_flow/metrics", server.url()), &[]).await;
    let metrics = metrics.body.as_str().unwrap_or_default().to_string();
    assert!(
        metrics.contains("flow_http_requests_total{route=\"/held\",status=\"503\"} 1"),
        "{metrics}"
    );

    within("shutdown", server.shutdown()).await;
}

/// Beyond `--max-sync-runs` sync runs, the next sync call is refused with
/// `503` and `Retry-After`, while webhooks are still taken.
#[tokio::test]
async fn sync_calls_beyond_the_sync_run_cap_are_refused_with_retry_after() {
    let sink = Sink::start();
    let server = start_limited(&sink, |l| l.max_sync_runs = 1).await;

    let held = hold(&server, &sink).await;
    let (status, retry_after, body) = post_empty(&server, "/held").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(
        body,
        json!({ "error": "too many sync runs in progress; try again" })
    );
    let (status, _) = post(&server, "/raw", "text/plain", b"x", None).await;
    assert_eq!(status, 202, "webhooks are not sync runs");

    sink.open_gate();
    assert_eq!(within("the held request", held).await.unwrap().0, 200);
    assert_eq!(post_empty(&server, "/held").await.0, 200);

    within("shutdown", server.shutdown()).await;
}

/// Calls the sync flow `flow` (whose call to the sink is held) on a raw
/// connection and hangs up once the run has started.
async fn call_and_hang_up(server: &ServerHandle, sink: &Sink, flow: &str) {
    sink.on(
        "POST",
        &format!("/{flow}"),
        [flow_testkit::Reply::ok().held()],
    );
    let mut caller = TcpStream::connect(server.addr()).await.unwrap();
    let request = format!(
        "POST /{flow} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: 2\r\n\r\n{{}}"
    );
    caller.write_all(request.as_bytes()).await.unwrap();
    sink.wait_for_path("POST", &format!("/{flow}"), 1, common::WAIT)
        .await;
    drop(caller);
}

/// The first stored execution of `flow` that `pick` accepts (polled).
async fn stored(
    rt: &Runtime,
    flow: &str,
    what: &str,
    pick: impl Fn(&flow_runtime::store::Execution) -> bool,
) -> flow_runtime::store::Execution {
    let filter = || flow_runtime::store::ExecutionFilter {
        flow: Some(flow.into()),
        ..Default::default()
    };
    flow_testkit::poll_until(common::WAIT, what, || async {
        let runs = rt.store().list(filter()).await.unwrap();
        runs.into_iter().find(&pick)
    })
    .await
}

/// A sync caller that hangs up does not leave its run going on: the run
/// still ends at the flow's `timeout`, is recorded as timed out, and holds
/// its place under the sync-run cap until then.
#[tokio::test]
async fn a_hung_up_callers_sync_run_ends_at_its_timeout_and_counts_until_then() {
    let sink = Sink::start();
    let server = start_limited(&sink, |l| l.max_sync_runs = 1).await;
    let rt = server.runtime().clone();

    call_and_hang_up(&server, &sink, "held_briefly").await;

    // The run (3 s timeout) still holds the only place.
    let (status, retry_after, _) = post_empty(&server, "/held_briefly").await;
    assert_eq!((status, retry_after.as_deref()), (503, Some("1")));

    let e = stored(&rt, "held_briefly", "the abandoned run", |e| {
        e.status.is_final()
    })
    .await;
    assert_eq!(e.status, Status::Failed);
    assert_eq!(e.error.as_deref(), Some("timed out after 3s"));

    // Its place was given back.
    sink.open_gate();
    assert_eq!(post_empty(&server, "/held_briefly").await.0, 200);

    within("shutdown", server.shutdown()).await;
}

/// With `fallback: async`, a hung-up caller's run is what the caller would
/// have got: stored at its timeout, and carried on to its end.
#[tokio::test]
async fn a_hung_up_callers_run_with_fallback_async_is_stored_at_its_timeout_and_goes_on() {
    let sink = Sink::start();
    let server = start(&sink, None).await;
    let rt = server.runtime().clone();

    call_and_hang_up(&server, &sink, "held_async").await;
    let running = stored(&rt, "held_async", "the stored run", |_| true).await;
    assert_eq!(running.status, Status::Running);
    sink.open_gate();
    let done = stored(&rt, "held_async", "the run's end", |e| e.status.is_final()).await;
    assert_eq!((done.id, done.status), (running.id, Status::Succeeded));

    within("shutdown", server.shutdown()).await;
}

/// A sync run left by its caller lives in a task of its own; when the
/// runtime stops (process exit), that task is dropped, and so is the run,
/// without handing itself on again (which recursed until the stack
/// overflowed).
#[test]
fn a_runtime_stopping_drops_a_sync_run_whose_caller_left() {
    let sink = Sink::start();
    sink.on("POST", "/held", [flow_testkit::Reply::ok().held()]);
    let tokio_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio_rt.block_on(async {
        let rt = runtime(&sink);
        let trigger = flow_runtime::engine::SyncTrigger::new(json!({ "body": {} }), None);
        let mut run = rt.start_sync("held", trigger);
        let waiting = tokio::time::timeout(common::WAIT, run.wait());
        tokio::select! {
            _ = waiting => panic!("the held run ended"),
            _ = sink.wait_for_path("POST", "/held", 1, common::WAIT) => {}
        }
        drop(run);
    });
    drop(tokio_rt);
}
