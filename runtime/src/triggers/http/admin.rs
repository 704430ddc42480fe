//! The admin API under `/_flow/`: health, readiness, metrics, flows, and
//! executions (list, show, replay, replay of the failed ones) behind the
//! admin token, or a session of the executions page (`ui.rs`).

use super::session::{self, Sessions};
use super::*;

/// The state of the admin routes.
#[derive(Clone)]
pub(super) struct Admin {
    pub(super) rt: Runtime,
    /// `FLOW_ADMIN_TOKEN`; `None` disables the protected endpoints (403).
    pub(super) token: Option<Arc<str>>,
    /// The executions page's sign-in sessions.
    pub(super) sessions: Arc<Sessions>,
    /// Where these routes are served from the outside: `/i/NAME` for an
    /// instance (`serve --instances`), else empty. The page's links and its
    /// cookie's path start with it.
    pub(super) prefix: Arc<str>,
}

/// Most runs one `replay-failed` call puts back in the queue (the caller
/// calls again for more), and most counted per flow and status.
const BULK_LIMIT: usize = 1_000;

/// `/_flow/*`: the admin API and the executions page.
pub(super) fn router(rt: &Runtime, token: Option<&str>) -> Router {
    let admin = Admin {
        rt: rt.clone(),
        token: token.map(Arc::from),
        sessions: Arc::new(Sessions::new()),
        prefix: rt
            .instance()
            .map_or_else(|| Arc::from(""), |name| Arc::from(format!("/i/{name}"))),
    };
    api_router().merge(super::ui::router()).with_state(admin)
}

fn api_router() -> Router<Admin> {
    Router::new()
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
        .route("/_flow/executions/replay-failed", post(replay_failed))
        .route("/_flow/flows/counts", get(flow_counts))
}

async fn readyz(State(Admin { rt, .. }): State<Admin>) -> Response {
    if rt.is_ready() {
        Json(json!({ "status": "ready" })).into_response()
    } else {
        error_response(StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

async fn metrics(State(Admin { rt, .. }): State<Admin>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        rt.metrics_text(),
    )
        .into_response()
}

async fn flows_listing(State(Admin { rt, .. }): State<Admin>) -> Response {
    let flows: Vec<Value> = rt
        .flows()
        .iter()
        .map(|f| {
            json!({
                "name": f.name,
                "doc": f.doc,
                "trigger": f.trigger.describe(),
                "endpoint": rt.endpoint(f.name, None).ok(),
                "next_tick": crate::triggers::schedule::next_tick(&f.trigger, Utc::now())
                    .map(crate::core::ops::format_time),
            })
        })
        .collect();
    Json(json!({
        "integration": rt.integration().name,
        "version": rt.integration().version(),
        "flows": flows,
        "graph": !rt.integration().graph.is_empty(),
    }))
    .into_response()
}

/// Who may use the protected endpoints: a caller with the bearer token, or
/// the executions page's browser with a live session. A session's
/// state-changing request (`changes_state`) must also come from this site
/// and carry the session's CSRF token: the cookie alone is sent by the
/// browser whoever made it send the request.
pub(super) fn authorize(
    admin: &Admin,
    headers: &HeaderMap,
    changes_state: bool,
) -> Result<(), Response> {
    let Some(token) = admin.token.as_deref() else {
        return Err(error_response(
            StatusCode::FORBIDDEN,
            "the admin API is disabled: set FLOW_ADMIN_TOKEN to enable it",
        ));
    };
    if headers.contains_key(header::AUTHORIZATION) || !session::has_session_cookie(headers) {
        return check_bearer(token, headers);
    }
    let Some(csrf) = admin.sessions.csrf_of(headers) else {
        return Err(unauthorized("the session has ended: sign in again"));
    };
    if !changes_state {
        return Ok(());
    }
    if session::cross_site(headers) {
        return Err(error_response(
            StatusCode::FORBIDDEN,
            "cross-site request refused: its Origin is not this service",
        ));
    }
    let given = headers
        .get(session::CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if session::tokens_match(&csrf, given) {
        Ok(())
    } else {
        Err(error_response(
            StatusCode::FORBIDDEN,
            "missing or wrong X-Flow-CSRF header (GET /_flow/ui/session gives it)",
        ))
    }
}

/// The bearer check of the admin API for routes outside it (the instances
/// API): 403 without an admin token, 401 without the right bearer token.
pub fn require_admin_token(token: Option<&str>, headers: &HeaderMap) -> Result<(), Response> {
    match token {
        Some(token) => check_bearer(token, headers),
        None => Err(error_response(
            StatusCode::FORBIDDEN,
            "the admin API is disabled: set FLOW_ADMIN_TOKEN to enable it",
        )),
    }
}

fn check_bearer(token: &str, headers: &HeaderMap) -> Result<(), Response> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if session::tokens_match(token, given) {
        Ok(())
    } else {
        Err(unauthorized("missing or invalid bearer token"))
    }
}

fn unauthorized(message: &str) -> Response {
    let mut resp = error_response(StatusCode::UNAUTHORIZED, message);
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

fn summary(e: &Execution, rt: &Runtime) -> Value {
    let mut shown = json!({
        "id": e.id,
        "flow": e.flow,
        "status": e.status,
        "created_at": e.created_at,
        "started_at": e.started_at,
        "finished_at": e.finished_at,
        "attempts": e.attempts,
        "error": e.error.as_ref().map(|m| rt.redactor().redact_string(m.clone())),
        "error_step": e.error_step,
    });
    if let Some(instance) = rt.instance() {
        shown["instance"] = json!(instance);
    }
    shown
}

/// The trigger as shown by the admin API: secrets masked, and credentials
/// headers masked whatever their value.
fn shown_trigger(rt: &Runtime, trigger: &Value) -> Value {
    let mut t = rt.redactor().redact_value(trigger);
    if let Some(Value::Object(h)) = t.get_mut("headers") {
        for name in ["authorization", "cookie", "proxy-authorization"] {
            if let Some(v) = h.get_mut(name) {
                *v = Value::String(crate::core::redact::MASK.into());
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
        "input": s.input.as_ref().map(|i| rt.redactor().redact_value(i)),
        "output": s.output.as_ref().map(|o| rt.redactor().redact_value(o)),
        "error": s.error,
    })
}

/// The query of `GET /_flow/executions` (and of `replay-failed`, which
/// takes its filters but not `status`, `before` or `limit`).
#[derive(serde::Deserialize)]
struct ListQuery {
    status: Option<String>,
    flow: Option<String>,
    limit: Option<usize>,
    /// Created at or after (RFC 3339).
    since: Option<String>,
    /// Created before (RFC 3339).
    until: Option<String>,
    /// An execution id or a dedupe key.
    q: Option<String>,
    /// The paging cursor: the last id of the previous page.
    before: Option<String>,
}

/// An empty parameter counts as absent (a form's empty field).
fn given(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

fn parse_status(status: Option<&str>) -> Result<Option<Status>, Response> {
    match status {
        None | Some("") => Ok(None),
        Some(s) => Status::parse(s).map(Some).ok_or_else(|| {
            error_response(
                StatusCode::BAD_REQUEST,
                format!("unknown status {s:?}; use queued, running, succeeded, failed or skipped"),
            )
        }),
    }
}

fn parse_time(name: &str, value: Option<String>) -> Result<Option<DateTime<Utc>>, Response> {
    let Some(value) = given(value) else {
        return Ok(None);
    };
    DateTime::parse_from_rfc3339(&value)
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|e| {
            error_response(
                StatusCode::BAD_REQUEST,
                format!("{name} is not an RFC 3339 time (like 2026-01-31T12:00:00Z): {e}"),
            )
        })
}

impl ListQuery {
    /// The store filter this query asks for.
    fn filter(self) -> Result<ExecutionFilter, Response> {
        Ok(ExecutionFilter {
            status: parse_status(self.status.as_deref())?,
            flow: given(self.flow),
            limit: self.limit.unwrap_or(100).min(1000),
            since: parse_time("since", self.since)?,
            until: parse_time("until", self.until)?,
            search: given(self.q),
            before: given(self.before),
        })
    }
}

async fn list_executions(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Err(resp) = authorize(&admin, &headers, false) {
        return resp;
    }
    let filter = match q.filter() {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let rt = &admin.rt;
    match rt.store().list(filter).await {
        Ok(list) => Json(json!({
            "executions": list.iter().map(|e| summary(e, rt)).collect::<Vec<_>>()
        }))
        .into_response(),
        Err(e) => error_response(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// `POST /_flow/executions/replay-failed`: replays the failed runs that
/// match `flow`, `since`, `until` and `q`, newest first, at most
/// [`BULK_LIMIT`] per call.
async fn replay_failed(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Err(resp) = authorize(&admin, &headers, true) {
        return resp;
    }
    let mut filter = match q.filter() {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    filter.status = Some(Status::Failed);
    filter.before = None;
    filter.limit = BULK_LIMIT;
    let rt = &admin.rt;
    let failed = match rt.store().list(filter).await {
        Ok(list) => list,
        Err(e) => return error_response(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let mut ids = Vec::with_capacity(failed.len());
    for e in failed {
        match rt.store().requeue(&e.id).await {
            // Replayed meanwhile by someone else: still running, not ours.
            Ok(Some(again)) if again.status == Status::Queued => ids.push(e.id),
            Ok(_) => {}
            Err(err) => return error_response(StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
        }
    }
    if !ids.is_empty() {
        rt.notify_workers();
    }
    tracing::info!(replayed = ids.len(), "bulk replay of failed runs queued");
    Json(json!({ "replayed": ids.len(), "ids": ids, "limit": BULK_LIMIT })).into_response()
}

/// `GET /_flow/flows/counts`: each flow's runs by status, each count
/// capped at [`BULK_LIMIT`] (`capped` says where it was reached).
async fn flow_counts(State(admin): State<Admin>, headers: HeaderMap) -> Response {
    if let Err(resp) = authorize(&admin, &headers, false) {
        return resp;
    }
    let statuses = [
        Status::Queued,
        Status::Running,
        Status::Succeeded,
        Status::Failed,
        Status::Skipped,
    ];
    let mut flows = Map::new();
    for def in admin.rt.flows() {
        let mut counts = Map::new();
        for status in statuses {
            let filter = ExecutionFilter {
                status: Some(status),
                flow: Some(def.name.to_string()),
                limit: BULK_LIMIT,
                ..ExecutionFilter::default()
            };
            match admin.rt.store().count(filter).await {
                Ok(n) => counts.insert(status.as_str().into(), json!(n)),
                Err(e) => return error_response(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            };
        }
        flows.insert(def.name.to_string(), Value::Object(counts));
    }
    Json(json!({ "flows": flows, "cap": BULK_LIMIT })).into_response()
}

async fn get_execution(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(resp) = authorize(&admin, &headers, false) {
        return resp;
    }
    let rt = admin.rt;
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
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(resp) = authorize(&admin, &headers, true) {
        return resp;
    }
    let rt = admin.rt;
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
