//! The HTTP side: webhook and sync routes for flows, the admin API under
//! `/_flow/`, and the serve loop with graceful shutdown.
//!
//! Webhook requests are checked in this order: size (413), content type
//! (415), signature (401), JSON and body type (400), dedupe (200 with the
//! first execution id); then the execution is stored and the answer is `202
//! {"execution_id"}`. Sync requests run the flow inline within the timeout.

// Early-return helpers carry the finished error `Response`; boxing it would
// only add noise on a path that ends the request anyway.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodFilter, MethodRouter};
use axum::{Json, Router};
use base64::Engine as _;
use chrono::Utc;
use serde_json::{json, Map, Value};
use subtle::ConstantTimeEq as _;
use tokio::task::JoinHandle;

use crate::engine::{Runtime, SyncTrigger};
use crate::integration::{FlowDef, HmacVerify, TriggerDef, DEFAULT_MAX_BODY};
use crate::schema::Schema;
use crate::store::{Execution, ExecutionFilter, Status, StepRecord};

/// A running server. Dropping it does not stop the server; call
/// [`ServerHandle::shutdown`].
pub struct ServerHandle {
    addr: SocketAddr,
    rt: Runtime,
    task: JoinHandle<()>,
}

impl ServerHandle {
    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The runtime being served.
    pub fn runtime(&self) -> &Runtime {
        &self.rt
    }

    /// Stops accepting requests, drains in-flight runs (up to the drain
    /// timeout) and returns when everything has stopped.
    pub async fn shutdown(self) {
        self.rt.begin_shutdown();
        self.wait().await;
    }

    /// Waits until the server has stopped (after [`Runtime::begin_shutdown`]).
    pub async fn wait(self) {
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "server task failed");
        }
    }
}

fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

impl Runtime {
    /// Binds `addr`, puts runs interrupted by an earlier stop back in the
    /// queue, starts the worker pool, the schedulers, the retention purge
    /// and (for a new version) the deploy flows, and serves HTTP until
    /// shutdown. At shutdown, intake stops first, then in-flight runs get
    /// until the drain deadline; runs still going then are put back in the
    /// queue (journal kept) for the next start.
    pub async fn serve(&self, addr: SocketAddr) -> std::io::Result<ServerHandle> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        if let Ok(mut u) = self.inner.local_url.lock() {
            *u = Some(format!("http://{addr}"));
        }
        self.resume_interrupted()
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let router = self.router();
        let workers = self.start_workers();
        let mut schedulers = crate::schedule::start(self);
        schedulers.extend(crate::files::start(self));
        schedulers.extend(crate::subscribe::start(self));
        let purger = self.start_purger();

        let rt = self.clone();
        let deployer = tokio::spawn(async move {
            if let Err(e) = rt.deploy_if_new().await {
                tracing::error!(error = %rt.redactor().redact(&e.to_string()), "deploy flows failed");
            }
        });

        let mut shutdown = self.inner.shutdown.subscribe();
        let server = tokio::spawn(async move {
            let signal = async move {
                let _ = shutdown.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(signal)
                .await
            {
                tracing::error!(error = %e, "server error");
            }
        });
        self.inner.ready.store(true, Ordering::SeqCst);
        tracing::info!(%addr, "listening");

        let rt = self.clone();
        let task = tokio::spawn(async move {
            let mut shutdown = rt.inner.shutdown.subscribe();
            let _ = shutdown.wait_for(|s| *s).await;
            tracing::info!("shutting down: draining in-flight runs");
            let deadline = tokio::time::Instant::now() + rt.inner.drain_timeout;
            for s in schedulers {
                s.abort();
            }
            if let Some(p) = purger {
                p.abort();
            }
            deployer.abort();
            let server_abort = server.abort_handle();
            if tokio::time::timeout_at(deadline, server).await.is_err() {
                tracing::warn!("requests still open at the drain deadline");
                server_abort.abort();
            }
            for mut w in workers {
                if tokio::time::timeout_at(deadline, &mut w).await.is_err() {
                    tracing::warn!("a run was still going at the drain deadline");
                    w.abort();
                    // Wait until the aborted task is gone, so it writes nothing more.
                    let _ = w.await;
                }
            }
            rt.release_in_flight().await;
            tracing::info!("stopped");
        });
        Ok(ServerHandle {
            addr,
            rt: self.clone(),
            task,
        })
    }

    /// The axum router: flow routes, `/_flow/*`, request metrics.
    pub fn router(&self) -> Router {
        let mut by_path: HashMap<&'static str, MethodRouter> = HashMap::new();
        for def in self.flows() {
            let Some((method, path)) = def.trigger.route() else {
                continue;
            };
            let filter = Method::from_bytes(method.as_bytes())
                .ok()
                .and_then(|m| MethodFilter::try_from(m).ok());
            let Some(filter) = filter else {
                tracing::error!(
                    flow = def.name,
                    method,
                    "unsupported HTTP method; route not served"
                );
                continue;
            };
            let rt = self.clone();
            let def = def.clone();
            let handler = move |params: Option<Path<HashMap<String, String>>>, req: Request| {
                let rt = rt.clone();
                let def = def.clone();
                async move {
                    let params = params.map(|Path(p)| p).unwrap_or_default();
                    match def.trigger {
                        TriggerDef::Sync { .. } => sync_handler(rt, def, params, req).await,
                        _ => webhook_handler(rt, def, req).await,
                    }
                }
            };
            let entry = by_path.remove(path).unwrap_or_default();
            by_path.insert(path, entry.on(filter, handler));
        }
        let mut router = Router::new();
        for (path, mr) in by_path {
            router = router.route(path, mr);
        }
        let admin = Router::new()
            .route(
                "/_flow/healthz",
                get(|| async { Json(json!({ "status": "ok" })) }),
            )
            .route("/_flow/readyz", get(readyz))
            .route("/_flow/metrics", get(metrics))
            .route("/_flow/flows", get(flows_listing))
            .route("/_flow/executions", get(list_executions))
            .route("/_flow/executions/{id}", get(get_execution))
            .route("/_flow/executions/{id}/replay", post(replay_execution))
            .with_state(self.clone());
        router.merge(admin).layer(TrackLayer(self.clone()))
    }
}

/// Counts every answered request by route pattern and status
/// (`flow_http_requests_total`).
#[derive(Clone)]
struct TrackLayer(Runtime);

impl<S> tower_layer::Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track {
            inner,
            rt: self.0.clone(),
        }
    }
}

/// The service of [`TrackLayer`].
#[derive(Clone)]
struct Track<S> {
    inner: S,
    rt: Runtime,
}

impl<S> tower_service::Service<Request> for Track<S>
where
    S: tower_service::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Tracked<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let route = req.extensions().get::<MatchedPath>().cloned();
        Tracked {
            inner: self.inner.call(req),
            route,
            rt: self.rt.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Track`]: counts the answer when it is ready.
    struct Tracked<F> {
        #[pin]
        inner: F,
        route: Option<MatchedPath>,
        rt: Runtime,
    }
}

impl<F, E> std::future::Future for Tracked<F>
where
    F: std::future::Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let Ok(resp) = &result {
            let route = this.route.as_ref().map_or("unmatched", MatchedPath::as_str);
            this.rt
                .inner
                .metrics
                .count_http(route, resp.status().as_u16());
        }
        std::task::Poll::Ready(result)
    }
}

/// HTTP headers as a JSON record (a trigger's `headers`, an `http.*`
/// step's `headers`): lowercase names, repeated headers joined with `, `.
pub(crate) fn header_map(headers: &HeaderMap) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in headers {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        match out.get_mut(k.as_str()) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&v);
            }
            _ => {
                out.insert(k.as_str().to_string(), Value::String(v));
            }
        }
    }
    out
}

fn query_map(uri: &axum::http::Uri) -> Map<String, Value> {
    if uri.query().is_none() {
        return Map::new();
    }
    Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|Query(pairs)| {
            pairs
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the body schema takes the raw body rather than JSON.
fn raw_body(schema: &Schema) -> bool {
    match schema {
        Schema::String | Schema::Bytes => true,
        Schema::Optional(inner) => raw_body(inner),
        _ => false,
    }
}

fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return false;
    };
    // On bytes, without allocating: this runs for every request.
    let value = value.as_bytes();
    let end = value.iter().position(|b| *b == b';').unwrap_or(value.len());
    let media_type = value[..end].trim_ascii();
    let Some(slash) = media_type.iter().position(|b| *b == b'/') else {
        return false;
    };
    let (kind, subtype) = (&media_type[..slash], &media_type[slash + 1..]);
    let ends_with_json =
        subtype.len() >= 5 && subtype[subtype.len() - 5..].eq_ignore_ascii_case(b"+json");
    kind.eq_ignore_ascii_case(b"application")
        && (subtype.eq_ignore_ascii_case(b"json") || ends_with_json)
}

/// Reads the body within `max`, answering 413 beyond it.
async fn read_body(
    headers: &HeaderMap,
    body: axum::body::Body,
    max: usize,
) -> Result<Bytes, Response> {
    let too_large = || {
        error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than {max} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    match axum::body::to_bytes(body, max).await {
        Ok(b) => Ok(b),
        Err(e) => {
            if chain_contains(&e, "length limit exceeded") {
                Err(too_large())
            } else {
                Err(error_response(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the request body: {e}"),
                ))
            }
        }
    }
}

fn chain_contains(e: &(dyn std::error::Error + 'static), needle: &str) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.to_string().contains(needle) {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Constant-time check of `header` = hex HMAC-SHA256(secret, body),
/// optionally prefixed `sha256=`.
pub fn verify_signature(verify: &HmacVerify, headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(given) = headers.get(verify.header).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let given = given.trim();
    let given = given.strip_prefix("sha256=").unwrap_or(given);
    let expected = crate::stdlib::hmac_hex(verify.secret.as_bytes(), body);
    given.len() == expected.len() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// Parses and validates a request body against the trigger's body type.
fn decode_body(schema: &Schema, bytes: &[u8], allow_empty: bool) -> Result<Value, Response> {
    if raw_body(schema) {
        if bytes.is_empty() && allow_empty {
            return Ok(Value::Null);
        }
        let is_bytes = match schema {
            Schema::Optional(inner) => **inner == Schema::Bytes,
            s => *s == Schema::Bytes,
        };
        if is_bytes {
            return Ok(Value::String(
                base64::engine::general_purpose::STANDARD.encode(bytes),
            ));
        }
        return match std::str::from_utf8(bytes) {
            Ok(s) => Ok(Value::String(s.to_string())),
            Err(_) => Err(error_response(
                StatusCode::BAD_REQUEST,
                "request body is not valid UTF-8",
            )),
        };
    }
    let value: Value = if bytes.is_empty() && allow_empty {
        Value::Null
    } else {
        serde_json::from_slice(bytes)
            .map_err(|e| error_response(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")))?
    };
    schema
        .decode_owned(value)
        .map_err(|e| error_response(StatusCode::BAD_REQUEST, e.to_string()))
}

async fn webhook_handler(rt: Runtime, def: Arc<FlowDef>, req: Request) -> Response {
    let TriggerDef::Webhook {
        body: schema,
        verify,
        dedupe,
        max_body,
        ..
    } = &def.trigger
    else {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR, "not a webhook flow");
    };
    if rt.is_shutting_down() {
        return error_response(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    if !raw_body(schema) && !is_json_content_type(&headers) {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected Content-Type: application/json",
        );
    }
    let query = query_map(&parts.uri);
    let bytes = match read_body(
        &headers,
        body,
        if *max_body == 0 {
            DEFAULT_MAX_BODY
        } else {
            *max_body
        },
    )
    .await
    {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    if let Some(v) = verify {
        if !verify_signature(v, &headers, &bytes) {
            tracing::warn!(
                flow = def.name,
                "rejected a request with a missing or invalid signature"
            );
            return error_response(
                StatusCode::UNAUTHORIZED,
                format!("missing or invalid signature in {}", v.header),
            );
        }
    }
    let body = match decode_body(schema, &bytes, false) {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    // Built by moving the parts in (`json!` would copy them).
    let trigger = crate::ops::record([
        ("body", body),
        ("headers", Value::Object(header_map(&headers))),
        ("query", Value::Object(query)),
        ("received_at", crate::ops::format_time(Utc::now())),
    ]);
    let key = dedupe.and_then(|f| f(&trigger));
    match rt.submit(def.name, trigger, key).await {
        Ok(s) if s.duplicate => (
            StatusCode::OK,
            Json(json!({ "execution_id": s.execution_id, "duplicate": true })),
        )
            .into_response(),
        Ok(s) => (
            StatusCode::ACCEPTED,
            Json(json!({ "execution_id": s.execution_id })),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot store the event");
            error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot store the event; try again",
            )
        }
    }
}

/// The HTTP answer for a finished sync execution.
fn sync_response(exec: &Execution, redactor: &crate::redact::Redactor) -> Response {
    let mut resp = match exec.status {
        Status::Succeeded => match &exec.result {
            Some(r) if r.get("status").is_some() => {
                let status = r["status"]
                    .as_u64()
                    .and_then(|s| u16::try_from(s).ok())
                    .and_then(|s| StatusCode::from_u16(s).ok())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let mut resp = (status, Json(&r["body"])).into_response();
                if let Some(Value::Object(h)) = r.get("headers") {
                    for (k, v) in h {
                        let name = HeaderName::from_bytes(k.as_bytes());
                        let value = HeaderValue::from_str(&crate::ops::display(v));
                        match (name, value) {
                            (Ok(n), Ok(v)) => {
                                resp.headers_mut().insert(n, v);
                            }
                            _ => tracing::warn!(header = %k, "invalid response header dropped"),
                        }
                    }
                }
                resp
            }
            _ => StatusCode::NO_CONTENT.into_response(),
        },
        Status::Skipped => (
            StatusCode::OK,
            Json(json!({ "skipped": exec.result.as_ref().map_or(Value::Null, |r| r["skipped"].clone()) })),
        )
            .into_response(),
        _ => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            redactor.redact_string(exec.error.clone().unwrap_or_else(|| "run failed".into())),
        ),
    };
    if let Ok(v) = HeaderValue::from_str(&exec.id) {
        resp.headers_mut().insert("x-execution-id", v);
    }
    resp
}

async fn sync_handler(
    rt: Runtime,
    def: Arc<FlowDef>,
    params: HashMap<String, String>,
    req: Request,
) -> Response {
    let TriggerDef::Sync {
        body: schema,
        timeout,
        fallback_async,
        reads_headers,
        ..
    } = &def.trigger
    else {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR, "not a sync flow");
    };
    if rt.is_shutting_down() {
        return error_response(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    let query = query_map(&parts.uri);
    let bytes = match read_body(&headers, body, DEFAULT_MAX_BODY).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    if !bytes.is_empty() && !raw_body(schema) && !is_json_content_type(&headers) {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected Content-Type: application/json",
        );
    }
    let body = match decode_body(schema, &bytes, true) {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let params: Map<String, Value> = params
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let callback = headers
        .get("x-callback-url")
        .filter(|_| *fallback_async)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // Built by moving the parts in (`json!` would copy them).
    let mut fields = vec![
        ("params", Value::Object(params)),
        ("body", body),
        ("query", Value::Object(query)),
        ("received_at", crate::ops::format_time(Utc::now())),
    ];
    let trigger = if *reads_headers {
        fields.push(("headers", Value::Object(header_map(&headers))));
        SyncTrigger::new(crate::ops::record(fields), None)
    } else {
        SyncTrigger::new(crate::ops::record(fields), Some(headers))
    };
    let mut run = rt.start_sync(def.name, trigger);
    let id = run.id().to_string();
    match tokio::time::timeout(*timeout, run.wait()).await {
        Ok(Ok(exec)) => sync_response(&exec, rt.redactor()),
        Ok(Err(e)) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("run aborted: {e}"),
        ),
        Err(_) if *fallback_async => {
            // The 202 promises the run will finish: store it first.
            match run.persist().await {
                Ok(true) => {}
                Ok(false) => {
                    // It ended just now: answer with its outcome.
                    return match run.wait().await {
                        Ok(exec) => sync_response(&exec, rt.redactor()),
                        Err(e) => error_response(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            format!("run aborted: {e}"),
                        ),
                    };
                }
                Err(e) => {
                    tracing::error!(execution_id = %id, error = %e, "cannot store the execution");
                    return error_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "cannot store the execution; try again",
                    );
                }
            }
            let status_url = format!("/_flow/executions/{id}");
            let rt2 = rt.clone();
            let id2 = id.clone();
            tokio::spawn(async move {
                let exec = match run.wait().await {
                    Ok(exec) => exec,
                    Err(_) => return,
                };
                if let Some(url) = callback {
                    post_callback(&rt2, &url, &id2, &exec).await;
                }
            });
            (
                StatusCode::ACCEPTED,
                Json(json!({ "execution_id": id, "status_url": status_url })),
            )
                .into_response()
        }
        Err(_) => {
            let message = format!(
                "timed out after {}",
                crate::integration::human_duration(*timeout)
            );
            run.abandon(&message).await;
            let mut resp = error_response(StatusCode::GATEWAY_TIMEOUT, message);
            if let Ok(v) = HeaderValue::from_str(&id) {
                resp.headers_mut().insert("x-execution-id", v);
            }
            resp
        }
    }
}

/// POSTs `{ execution_id, status, body }` (plus `http_status` and `error`)
/// to the caller's `X-Callback-Url`, with a few attempts.
async fn post_callback(rt: &Runtime, url: &str, id: &str, exec: &Execution) {
    let result = exec.result.clone().unwrap_or(Value::Null);
    let payload = json!({
        "execution_id": id,
        "status": exec.status.as_str(),
        "http_status": result.get("status").cloned().unwrap_or(Value::Null),
        "body": result.get("body").cloned().unwrap_or(Value::Null),
        "error": exec.error.as_ref().map(|e| rt.redactor().redact_string(e.clone())),
    });
    for attempt in 1..=3u32 {
        match rt.http_client().post(url).json(&payload).send().await {
            Ok(r) if r.status().is_success() => {
                tracing::info!(execution_id = id, "callback delivered");
                return;
            }
            Ok(r) => tracing::warn!(
                execution_id = id,
                status = r.status().as_u16(),
                attempt,
                "callback refused"
            ),
            Err(e) => {
                tracing::warn!(execution_id = id, error = %e.without_url(), attempt, "callback failed")
            }
        }
        tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
    }
}

async fn readyz(State(rt): State<Runtime>) -> Response {
    if rt.inner.ready.load(Ordering::SeqCst) {
        Json(json!({ "status": "ready" })).into_response()
    } else {
        error_response(StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

async fn metrics(State(rt): State<Runtime>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        rt.metrics_text(),
    )
        .into_response()
}

async fn flows_listing(State(rt): State<Runtime>) -> Response {
    let flows: Vec<Value> = rt
        .flows()
        .iter()
        .map(|f| {
            json!({
                "name": f.name,
                "doc": f.doc,
                "trigger": f.trigger.describe(),
                "endpoint": rt.endpoint(f.name, None).ok(),
            })
        })
        .collect();
    Json(json!({ "integration": rt.integration().name, "version": rt.integration().version(), "flows": flows }))
        .into_response()
}

fn check_admin(rt: &Runtime, headers: &HeaderMap) -> Result<(), Response> {
    let Some(token) = &rt.inner.admin_token else {
        return Err(error_response(
            StatusCode::FORBIDDEN,
            "the admin API is disabled: set FLOW_ADMIN_TOKEN to enable it",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if given.len() == token.len() && bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
        Ok(())
    } else {
        let mut resp = error_response(StatusCode::UNAUTHORIZED, "missing or invalid bearer token");
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        Err(resp)
    }
}

fn summary(e: &Execution, rt: &Runtime) -> Value {
    json!({
        "id": e.id,
        "flow": e.flow,
        "status": e.status,
        "created_at": e.created_at,
        "started_at": e.started_at,
        "finished_at": e.finished_at,
        "attempts": e.attempts,
        "error": e.error.as_ref().map(|m| rt.redactor().redact_string(m.clone())),
        "error_step": e.error_step,
    })
}

/// The trigger as shown by the admin API: secrets masked, and credentials
/// headers masked whatever their value.
fn shown_trigger(rt: &Runtime, trigger: &Value) -> Value {
    let mut t = rt.redactor().redact_value(trigger);
    if let Some(Value::Object(h)) = t.get_mut("headers") {
        for name in ["authorization", "cookie", "proxy-authorization"] {
            if let Some(v) = h.get_mut(name) {
                *v = Value::String(crate::redact::MASK.into());
            }
        }
    }
    t
}

fn step_json(rt: &Runtime, s: &StepRecord) -> Value {
    json!({
        "key": s.key,
        "call": s.call,
        "status": s.status,
        "attempts": s.attempts,
        "started_at": s.started_at,
        "finished_at": s.finished_at,
        "duration_ms": (s.finished_at - s.started_at).num_milliseconds(),
        "output": s.output.as_ref().map(|o| rt.redactor().redact_value(o)),
        "error": s.error,
    })
}

#[derive(serde::Deserialize)]
struct ListQuery {
    status: Option<String>,
    flow: Option<String>,
    limit: Option<usize>,
}

async fn list_executions(
    State(rt): State<Runtime>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Err(resp) = check_admin(&rt, &headers) {
        return resp;
    }
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => match Status::parse(s) {
            Some(s) => Some(s),
            None => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "unknown status {s:?}; use queued, running, succeeded, failed or skipped"
                    ),
                )
            }
        },
    };
    let filter = ExecutionFilter {
        status,
        flow: q.flow.filter(|f| !f.is_empty()),
        limit: q.limit.unwrap_or(100).min(1000),
    };
    match rt.store().list(filter).await {
        Ok(list) => Json(json!({
            "executions": list.iter().map(|e| summary(e, &rt)).collect::<Vec<_>>()
        }))
        .into_response(),
        Err(e) => error_response(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn get_execution(
    State(rt): State<Runtime>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(resp) = check_admin(&rt, &headers) {
        return resp;
    }
    let exec = match rt.store().get(&id).await {
        Ok(Some(e)) => e,
        Ok(None) => return error_response(StatusCode::NOT_FOUND, format!("no execution {id}")),
        Err(e) => return error_response(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let steps = rt.store().journal(&id).await.unwrap_or_default();
    let mut v = summary(&exec, &rt);
    if let Value::Object(m) = &mut v {
        m.insert("trigger".into(), shown_trigger(&rt, &exec.trigger));
        m.insert(
            "result".into(),
            exec.result
                .as_ref()
                .map_or(Value::Null, |r| rt.redactor().redact_value(r)),
        );
        m.insert(
            "steps".into(),
            Value::Array(steps.iter().map(|s| step_json(&rt, s)).collect()),
        );
    }
    Json(v).into_response()
}

async fn replay_execution(
    State(rt): State<Runtime>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(resp) = check_admin(&rt, &headers) {
        return resp;
    }
    match rt.store().get(&id).await {
        Ok(Some(e)) if !e.status.is_final() => {
            return error_response(
                StatusCode::CONFLICT,
                format!("execution {id} is still {}", e.status),
            )
        }
        Ok(Some(_)) => {}
        Ok(None) => return error_response(StatusCode::NOT_FOUND, format!("no execution {id}")),
        Err(e) => return error_response(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
    match rt.store().requeue(&id).await {
        Ok(Some(_)) => {
            rt.notify_workers();
            tracing::info!(execution_id = %id, "replay queued");
            (
                StatusCode::ACCEPTED,
                Json(json!({ "execution_id": id, "status": "queued" })),
            )
                .into_response()
        }
        Ok(None) => error_response(StatusCode::NOT_FOUND, format!("no execution {id}")),
        Err(e) => error_response(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_verification() {
        let v = HmacVerify {
            header: "X-Signature",
            secret: "topsecret".into(),
        };
        let body = br#"{"a":1}"#;
        let good = crate::stdlib::hmac_hex(b"topsecret", body);
        let mut h = HeaderMap::new();
        assert!(!verify_signature(&v, &h, body), "missing header");
        h.insert("x-signature", HeaderValue::from_str(&good).unwrap());
        assert!(verify_signature(&v, &h, body));
        h.insert(
            "x-signature",
            HeaderValue::from_str(&format!("sha256={good}")).unwrap(),
        );
        assert!(verify_signature(&v, &h, body));
        assert!(!verify_signature(&v, &h, b"{\"a\":2}"), "other body");
        h.insert(
            "x-signature",
            HeaderValue::from_str(&good.to_uppercase()).unwrap(),
        );
        assert!(
            !verify_signature(&v, &h, body),
            "uppercase hex is not the documented form"
        );
        h.insert("x-signature", HeaderValue::from_static("sha256="));
        assert!(!verify_signature(&v, &h, body));
    }

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        assert!(!is_json_content_type(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert!(is_json_content_type(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/vnd.api+json"),
        );
        assert!(is_json_content_type(&h));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(!is_json_content_type(&h));
        for (value, json) in [
            ("Application/JSON", true),
            (" application/problem+JSON ; q=1", true),
            ("application/json5", false),
            ("text/json", false),
            ("application", false),
            ("json", false),
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            assert_eq!(is_json_content_type(&h), json, "{value}");
        }
    }
}
