//! The HTTP side of `serve --instances`: the instances API under
//! `/_flow/instances` (admin token), each instance's routes under
//! `/i/NAME/`, and the process that serves them.

// Early returns carry the finished error `Response`, as in the admin API.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use tower_service::Service as _;

use super::{Instances, Refusal, Route, RECONCILE_EVERY};
use crate::host::ServerHandle;
use crate::triggers::http::require_admin_token;

#[derive(Clone)]
struct Api {
    instances: Instances,
    token: Option<Arc<str>>,
    /// How long a caller may take to send a PUT's body.
    body_timeout: Duration,
}

/// The largest PUT body: an instance's config.
const MAX_PUT_BODY: usize = 1024 * 1024;

/// `/_flow/instances…` and `/i/NAME/…`.
fn router(instances: Instances, token: Option<&str>, body_timeout: Duration) -> Router {
    let api = Api {
        instances,
        token: token.map(Arc::from),
        body_timeout,
    };
    Router::new()
        .route("/_flow/instances", get(list))
        .route("/_flow/instances/{name}", get(show).put(put).delete(delete))
        .route("/_flow/instances/{name}/pause", post(pause))
        .route("/_flow/instances/{name}/resume", post(resume))
        .route("/i/{name}", any(dispatch))
        .route("/i/{name}/{*rest}", any(dispatch))
        .with_state(api)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut body = json!({ "error": self.message });
        if !self.problems.is_empty() {
            body["problems"] = json!(self.problems);
        }
        (status, Json(body)).into_response()
    }
}

fn authorize(api: &Api, headers: &HeaderMap) -> Result<(), Response> {
    require_admin_token(api.token.as_deref(), headers)
}

async fn list(State(api): State<Api>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&api, &headers) {
        return r;
    }
    match api.instances.list().await {
        Ok(views) => {
            let all: Vec<Value> = views.into_iter().map(|v| v.json).collect();
            Json(json!({ "instances": all })).into_response()
        }
        Err(r) => r.into_response(),
    }
}

async fn show(State(api): State<Api>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&api, &headers) {
        return r;
    }
    match api.instances.get(&name).await {
        Ok(v) => Json(v.json).into_response(),
        Err(r) => r.into_response(),
    }
}

/// `PUT /_flow/instances/NAME` with `{"config": {...}}`. The caller is
/// checked before its body is read, and the body must arrive within the
/// request timeout.
async fn put(State(api): State<Api>, Path(name): Path<String>, req: Request) -> Response {
    if let Err(r) = authorize(&api, req.headers()) {
        return r;
    }
    let read = axum::body::to_bytes(req.into_body(), MAX_PUT_BODY);
    let body = match tokio::time::timeout(api.body_timeout, read).await {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {MAX_PUT_BODY} bytes"),
            )
        }
        Err(_) => {
            return error(
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive in time",
            )
        }
    };
    let config = match parse_put(&body) {
        Ok(c) => c,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let instances = api.instances.clone();
    match detached(async move { instances.put(&name, config).await }).await {
        Ok((created, v)) => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, Json(v.json)).into_response()
        }
        Err(r) => r.into_response(),
    }
}

/// Runs a change to completion even if the caller hangs up (dropping it
/// halfway would leave an instance started but not recorded, or stopped
/// but still listed).
async fn detached<T: Send + 'static>(
    change: impl std::future::Future<Output = Result<T, Refusal>> + Send + 'static,
) -> Result<T, Refusal> {
    tokio::spawn(change)
        .await
        .unwrap_or_else(|_| Err(Refusal::new(500, "the change failed; see the log")))
}

/// The body of a PUT: a JSON object whose `config` is an object.
fn parse_put(body: &[u8]) -> Result<Map<String, Value>, String> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| format!("the body is not JSON ({e}): send {{\"config\": {{...}}}}"))?;
    let Value::Object(mut top) = value else {
        return Err("the body must be a JSON object: {\"config\": {...}}".into());
    };
    if let Some(key) = top.keys().find(|k| *k != "config") {
        return Err(format!(
            "unknown field `{key}`: send {{\"config\": {{...}}}}"
        ));
    }
    match top.remove("config") {
        Some(Value::Object(config)) => Ok(config),
        Some(_) => Err("`config` must be an object of config entries".into()),
        None => Err("missing `config`: send {\"config\": {...}}".into()),
    }
}

async fn pause(State(api): State<Api>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    set_paused(api, name, headers, true).await
}

async fn resume(State(api): State<Api>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    set_paused(api, name, headers, false).await
}

async fn set_paused(api: Api, name: String, headers: HeaderMap, paused: bool) -> Response {
    if let Err(r) = authorize(&api, &headers) {
        return r;
    }
    let instances = api.instances.clone();
    match detached(async move { instances.set_paused(&name, paused).await }).await {
        Ok(v) => Json(v.json).into_response(),
        Err(r) => r.into_response(),
    }
}

async fn delete(State(api): State<Api>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&api, &headers) {
        return r;
    }
    let instances = api.instances.clone();
    let deleting = name.clone();
    match detached(async move { instances.delete(&deleting).await }).await {
        Ok(removed) => {
            let control = api.instances.control();
            let removed: Vec<Value> = removed
                .iter()
                .map(|e| {
                    json!({
                        "execution_id": e.id,
                        "flow": e.flow,
                        "status": e.status,
                        "result": e.result.as_ref().map(|v| control.redactor().redact_value(v)),
                    })
                })
                .collect();
            Json(json!({ "name": name, "removed": removed })).into_response()
        }
        Err(r) => r.into_response(),
    }
}

/// A request to `/i/NAME/REST` goes to instance NAME's router as `/REST`.
async fn dispatch(
    State(api): State<Api>,
    Path(params): Path<Vec<(String, String)>>,
    req: Request,
) -> Response {
    let name = params.first().map(|(_, v)| v.as_str()).unwrap_or("");
    let mut router = match api.instances.route(name) {
        Route::To(r) => r,
        Route::Paused => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("instance {name:?} is paused"),
            )
        }
        Route::Unknown => {
            return error(StatusCode::NOT_FOUND, format!("no instance named {name:?}"))
        }
    };
    let (mut parts, body) = req.into_parts();
    let prefix_len = "/i/".len() + name.len();
    let rest = &parts.uri.path()[prefix_len..];
    let path = if rest.is_empty() { "/" } else { rest };
    let target = match parts.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    parts.uri = match target.parse::<Uri>() {
        Ok(u) => u,
        Err(_) => return error(StatusCode::BAD_REQUEST, "invalid path"),
    };
    // The outer route's match (its path parameters, its matched path) is
    // not the instance's: left in, axum would add the inner route's
    // parameters to it and every `Path` extractor would see too many.
    parts.extensions = Default::default();
    match router
        .call(Request::from_parts(parts, Body::new(body)))
        .await
    {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

/// Serves the instances: the control runtime's `/_flow/` routes (health,
/// readiness, its metrics), the instances API and every instance's routes;
/// starts the instances the store holds and reconciles with it every
/// [`RECONCILE_EVERY`] (other replicas' changes). At shutdown, intake stops
/// first, then every instance drains.
pub async fn serve(
    instances: Instances,
    addr: std::net::SocketAddr,
) -> std::io::Result<ServerHandle> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let control = instances.control().clone();
    let settings = &instances.shared.settings;
    if let Some(token) = &settings.admin_token {
        control.redactor().add(token);
    }
    control.set_local_url(format!("http://{addr}"));
    // Weak: the control runtime must not keep the instances alive.
    let weak = Arc::downgrade(&instances.shared);
    control.set_metrics_source(Arc::new(move || match weak.upgrade() {
        Some(shared) => Instances { shared }.metrics_text(),
        None => String::new(),
    }));
    let router = crate::triggers::http::router(
        &control,
        settings.admin_token.as_deref(),
        &settings.intake,
        None,
    )
    .merge(router(
        instances.clone(),
        settings.admin_token.as_deref(),
        settings.intake.request_timeout,
    ));
    instances.reconcile().await;
    let reconciler = {
        let instances = instances.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(RECONCILE_EVERY);
            let mut purge = tokio::time::interval(super::PURGE_RETIRED_EVERY);
            every.tick().await;
            loop {
                tokio::select! {
                    _ = every.tick() => instances.reconcile().await,
                    _ = purge.tick() => instances.purge_retired().await,
                }
            }
        })
    };
    let server = tokio::spawn(crate::triggers::http::serve(
        listener,
        router,
        control.clone(),
        settings.intake,
    ));
    tracing::info!(%addr, "listening (instances)");
    let rt = control.clone();
    let task = tokio::spawn(async move {
        rt.shutdown_started().await;
        tracing::info!("shutting down: draining every instance");
        let deadline = tokio::time::Instant::now() + rt.drain_timeout();
        reconciler.abort();
        crate::host::stop_server(server, deadline).await;
        instances.stop_all().await;
        tracing::info!("stopped");
    });
    Ok(ServerHandle::new(addr, control, task))
}
