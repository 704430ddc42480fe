//! The admin API under `/_flow/`: health, readiness, metrics, flows, and
//! executions (list, show, replay) behind the admin token.

use super::*;

/// The state of the admin routes.
#[derive(Clone)]
struct Admin {
    rt: Runtime,
    /// `FLOW_ADMIN_TOKEN`; `None` disables the protected endpoints (403).
    token: Option<Arc<str>>,
}

/// `/_flow/*`.
pub(super) fn router(rt: &Runtime, token: Option<&str>) -> Router {
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
        .with_state(Admin {
            rt: rt.clone(),
            token: token.map(Arc::from),
        })
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
            "text/plain; version=0.0.4; charset=utf-8",
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
            })
        })
        .collect();
    Json(json!({ "integration": rt.integration().name, "version": rt.integration().version(), "flows": flows }))
        .into_response()
}

fn check_admin(token: Option<&str>, headers: &HeaderMap) -> Result<(), Response> {
    let Some(token) = token else {
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
    State(Admin { rt, token }): State<Admin>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Err(resp) = check_admin(token.as_deref(), &headers) {
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
        ..ExecutionFilter::default()
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
    State(Admin { rt, token }): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(resp) = check_admin(token.as_deref(), &headers) {
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
    State(Admin { rt, token }): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(resp) = check_admin(token.as_deref(), &headers) {
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
