//! The HTTP side: webhook and sync routes for flows, the admin API under
//! `/_flow/`, and the serve loop with graceful shutdown and bounded intake
//! (timeouts and caps, [`IntakeLimits`]).
//!
//! Webhook requests are checked in this order: credentials (`auth:`, 401),
//! size (413), content type (415), signature (`verify:`, 401), nesting depth, JSON and body type (400), dedupe (200 with the
//! first execution id); then the execution is stored and the answer is `202
//! {"execution_id"}`. Sync requests run the flow inline within the timeout.

// Early-return helpers carry the finished error `Response`; boxing it would
// only add noise on a path that ends the request anyway.
#![allow(clippy::result_large_err)]

mod access;
mod admin;
pub mod callback;
mod intake;
mod session;
mod sync;
mod ui;
mod webhook;

pub use access::{authenticate, verify, Refused};
pub use admin::require_admin_token;
pub use intake::{
    serve, IntakeLimits, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_SYNC_RUNS,
    DEFAULT_REQUEST_TIMEOUT,
};
pub use sync::{answer as sync_answer, SyncAnswer};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodFilter, MethodRouter};
use axum::{Json, Router};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use subtle::ConstantTimeEq as _;
use tokio::time::Instant;

use crate::core::headers::{header_map, mask_credentials};
use crate::core::schema::Schema;
use crate::core::slots::Slots;
use crate::engine::integration::{FlowDef, TriggerDef, DEFAULT_MAX_BODY};
use crate::engine::{Runtime, SyncTrigger};
use crate::store::{Execution, ExecutionFilter, Status, StepRecord};

fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// The axum router of everything HTTP: flow routes (webhook and sync),
/// `/_flow/*` (the admin endpoints need `admin_token`; without one they
/// answer 403), request metrics, the limits of [`IntakeLimits`] but the
/// connection cap and header timeout (those are [`serve`]'s), and
/// `callbacks`: `X-Callback-Url` is honoured (`None`: callbacks are off).
pub fn router(
    rt: &Runtime,
    admin_token: Option<&str>,
    limits: &IntakeLimits,
    callbacks: Option<Arc<callback::Callbacks>>,
) -> Router {
    let request_timeout = limits.request_timeout;
    let sync_runs = Slots::new(limits.max_sync_runs);
    let mut by_path: HashMap<&'static str, MethodRouter> = HashMap::new();
    for def in rt.flows() {
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
        let rt = rt.clone();
        let def = def.clone();
        let sync_runs = sync_runs.clone();
        let callbacks = callbacks.clone();
        let handler = move |params: Option<Path<HashMap<String, String>>>, req: Request| {
            let rt = rt.clone();
            let def = def.clone();
            let sync_runs = sync_runs.clone();
            let callbacks = callbacks.clone();
            async move {
                let deadline = Instant::now() + request_timeout;
                let params = params.map(|Path(p)| p).unwrap_or_default();
                match def.trigger {
                    TriggerDef::Sync { .. } => {
                        sync::handler(rt, def, params, req, &sync_runs, deadline, callbacks).await
                    }
                    _ => webhook::handler(rt, def, req, deadline).await,
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
    // The admin API answers within the request timeout too; a layer that
    // boxes is fine there, off the flows' path.
    let admin = admin::router(rt, admin_token).layer(axum::middleware::from_fn_with_state(
        request_timeout,
        intake::admin_within,
    ));
    router.merge(admin).layer(TrackLayer {
        rt: rt.clone(),
        in_flight: Slots::new(limits.max_in_flight),
    })
}

/// Caps the requests in flight ([`IntakeLimits::max_in_flight`]) and counts
/// every answered request by route pattern and status
/// (`flow_http_requests_total`), refusals included.
#[derive(Clone)]
struct TrackLayer {
    rt: Runtime,
    in_flight: Arc<Slots>,
}

impl<S> tower_layer::Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track {
            inner,
            rt: self.rt.clone(),
            in_flight: self.in_flight.clone(),
        }
    }
}

/// The service of [`TrackLayer`].
#[derive(Clone)]
struct Track<S> {
    inner: S,
    rt: Runtime,
    in_flight: Arc<Slots>,
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
        // The admin API is not capped: health checks and metrics must
        // answer when the flows are overloaded, and the connection cap
        // bounds them.
        let admin = route
            .as_ref()
            .is_some_and(|r| r.as_str().starts_with("/_flow/"));
        let slot = if admin {
            None
        } else {
            self.in_flight.try_take()
        };
        let inner = (admin || slot.is_some()).then(|| self.inner.call(req));
        Tracked {
            inner,
            route,
            rt: self.rt.clone(),
            _slot: slot,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Track`]: the route's answer (`503` when
    /// the request was refused, `inner` is `None`), counted when it is
    /// ready. Holds the request's in-flight slot until then.
    struct Tracked<F> {
        #[pin]
        inner: Option<F>,
        route: Option<MatchedPath>,
        rt: Runtime,
        _slot: Option<crate::core::slots::Slot>,
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
        let result = match this.inner.as_pin_mut() {
            Some(inner) => std::task::ready!(inner.poll(cx)),
            None => Ok(intake::busy("too many requests in flight; try again")),
        };
        if let Ok(resp) = &result {
            let route = this.route.as_ref().map_or("unmatched", MatchedPath::as_str);
            this.rt.metrics().count_http(route, resp.status().as_u16());
        }
        std::task::Poll::Ready(result)
    }
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

/// Reads the body within `max` bytes, answering 413 beyond it, and by
/// `deadline`, answering 408 (a caller trickling the body must not hold
/// the request for longer).
async fn read_body(
    headers: &HeaderMap,
    body: axum::body::Body,
    max: usize,
    deadline: Instant,
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
    // A body already received completes on the first poll, before the
    // timer is even registered.
    let Ok(read) = tokio::time::timeout_at(deadline, axum::body::to_bytes(body, max)).await else {
        return Err(intake::body_too_slow());
    };
    match read {
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

/// Parses and validates a request body against the trigger's body type:
/// the value the flow sees, or the `400` (`415` is decided before) the
/// caller gets. Public for the fuzz tests (`runtime/tests/fuzz.rs`).
pub fn decode_body(schema: &Schema, bytes: &[u8], allow_empty: bool) -> Result<Value, Response> {
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
        crate::core::nesting::check_text(bytes).map_err(|too_deep| {
            error_response(StatusCode::BAD_REQUEST, format!("request body {too_deep}"))
        })?;
        serde_json::from_slice(bytes)
            .map_err(|e| error_response(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")))?
    };
    schema
        .decode_owned(value)
        .map_err(|e| error_response(StatusCode::BAD_REQUEST, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_nested_too_deep_are_refused_before_parsing() {
        let deep = format!("{}{}", "[".repeat(127), "]".repeat(127));
        let resp = decode_body(&Schema::Json, deep.as_bytes(), false).unwrap_err();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let fine = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(decode_body(&Schema::Json, fine.as_bytes(), false).is_ok());
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
