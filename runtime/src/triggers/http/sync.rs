//! Sync routes: run the flow while the caller waits; a run past its
//! timeout answers `202` and carries on (with `fallback: async`).

use std::borrow::Cow;

use super::callback::{self, Callbacks};
use super::*;
use crate::core::redact::Redactor;

/// The header naming a sync run's execution: a constant, as a name given
/// as text is parsed again for every answer (about 600 instructions).
const X_EXECUTION_ID: HeaderName = HeaderName::from_static("x-execution-id");

/// What a finished sync run answers over HTTP: its `respond` (a status
/// outside 100..=999 is a 500), 204 without one, 200 `{"skipped": reason}`
/// for `skip`, 500 `{"error": "run failed", "execution_id": id}` when it
/// failed. The caller may be anyone on the internet, so a failure says no
/// more than that: the error (an upstream body, an SQL error, a panic) is
/// in the execution record, behind the admin token. The one description of
/// it, used by the server and by the test runner's `expect response`.
pub struct SyncAnswer<'a> {
    /// The HTTP status.
    pub status: u16,
    /// The JSON body; `None` for an empty one (204).
    pub body: Option<Cow<'a, Value>>,
    /// Headers given to `respond`, values as text.
    pub headers: Vec<(&'a str, String)>,
}

/// The [`SyncAnswer`] of a finished execution.
pub fn answer(exec: &Execution) -> SyncAnswer<'_> {
    let plain = |status, body| SyncAnswer {
        status,
        body: Some(Cow::Owned(body)),
        headers: Vec::new(),
    };
    match (exec.status, &exec.result) {
        (Status::Succeeded, Some(r)) if r.get("status").is_some() => SyncAnswer {
            status: r["status"]
                .as_u64()
                .and_then(|s| u16::try_from(s).ok())
                .filter(|s| StatusCode::from_u16(*s).is_ok())
                .unwrap_or(500),
            body: Some(Cow::Borrowed(&r["body"])),
            headers: match r.get("headers") {
                Some(Value::Object(h)) => h
                    .iter()
                    .map(|(k, v)| (k.as_str(), crate::core::ops::display(v)))
                    .collect(),
                _ => Vec::new(),
            },
        },
        (Status::Succeeded, _) => SyncAnswer {
            status: 204,
            body: None,
            headers: Vec::new(),
        },
        (Status::Skipped, result) => plain(
            200,
            json!({ "skipped": result.as_ref().map_or(Value::Null, |r| r["skipped"].clone()) }),
        ),
        _ => plain(500, run_failed_body(&exec.id)),
    }
}

/// The body of a failed sync run's answer.
fn run_failed_body(id: &str) -> Value {
    json!({ "error": "run failed", "execution_id": id })
}

/// The answer when a sync run ended without an execution (its flow
/// panicked): as for a failed run, the detail goes to the log only.
fn run_aborted(id: &str, why: &str, redactor: &Redactor) -> Response {
    tracing::error!(execution_id = %id, error = %redactor.redact(why), "sync run aborted");
    let mut resp = (StatusCode::INTERNAL_SERVER_ERROR, Json(run_failed_body(id))).into_response();
    if let Ok(v) = HeaderValue::from_str(id) {
        resp.headers_mut().insert(X_EXECUTION_ID, v);
    }
    resp
}

/// The HTTP response for a finished sync execution.
fn sync_response(exec: &Execution) -> Response {
    let answer = answer(exec);
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = match &answer.body {
        Some(body) => (status, Json(body.as_ref())).into_response(),
        None => status.into_response(),
    };
    for (k, v) in answer.headers {
        match (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            (Ok(n), Ok(v)) => {
                resp.headers_mut().insert(n, v);
            }
            _ => tracing::warn!(header = %k, "invalid response header dropped"),
        }
    }
    if let Ok(v) = HeaderValue::from_str(&exec.id) {
        resp.headers_mut().insert(X_EXECUTION_ID, v);
    }
    resp
}

/// `sync_runs` caps the runs going on; `deadline` is when the body must
/// have arrived (the run then has the flow's `timeout`).
pub(super) async fn handler(
    rt: Runtime,
    def: Arc<FlowDef>,
    params: HashMap<String, String>,
    req: Request,
    sync_runs: &Arc<Slots>,
    deadline: Instant,
    callbacks: Option<Arc<Callbacks>>,
) -> Response {
    let TriggerDef::Sync {
        body: schema,
        timeout,
        fallback_async,
        reads_headers,
        verify,
        auth,
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
    if let Err(refused) = access::check_auth(def.name, auth.as_ref(), &headers) {
        return refused;
    }
    let query = query_map(&parts.uri);
    let bytes = match read_body(&headers, body, DEFAULT_MAX_BODY, deadline).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    if !bytes.is_empty() && !raw_body(schema) && !is_json_content_type(&headers) {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected Content-Type: application/json",
        );
    }
    if let Err(refused) = access::check_signature(def.name, verify.as_ref(), &headers, &bytes) {
        return refused;
    }
    let body = match decode_body(schema, &bytes, true) {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    // Taken only now, so that a caller trickling its body holds no run's
    // place; held by the run until it ends, also if the caller hangs up.
    let Some(slot) = sync_runs.try_take() else {
        return intake::busy("too many sync runs in progress; try again");
    };
    let params: Map<String, Value> = params
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let callback = match callback::requested(callbacks.as_deref(), &headers, *fallback_async) {
        Ok(url) => url,
        Err(resp) => return resp,
    };
    // Built by moving the parts in (`json!` would copy them).
    let mut fields = vec![
        ("params", Value::Object(params)),
        ("body", body),
        ("query", Value::Object(query)),
        ("received_at", crate::core::ops::format_time(Utc::now())),
    ];
    // Without credentials: the trigger is stored when the run fails or
    // outlives its timeout.
    let trigger = if *reads_headers {
        let mut seen_headers = header_map(&headers);
        mask_credentials(&mut seen_headers);
        fields.push(("headers", Value::Object(seen_headers)));
        SyncTrigger::new(crate::core::ops::record(fields), None)
    } else {
        // Masked only if the run is stored (`SyncTrigger::recorded`).
        SyncTrigger::new(crate::core::ops::record(fields), Some(headers))
    };
    let mut run = rt.start_sync(def.name, trigger);
    run.hold(slot);
    let id = run.id().to_string();
    // Counted from the run's start, as the run itself counts it (its steps'
    // timers are left out when this ends them first).
    let deadline = run.deadline(*timeout);
    match tokio::time::timeout_at(deadline, run.wait()).await {
        Ok(Ok(exec)) => sync_response(&exec),
        Ok(Err(e)) => run_aborted(&id, &e, rt.redactor()),
        Err(_) if *fallback_async => {
            // The 202 promises the run will finish (and its callback): store
            // them first.
            let callback = callback
                .zip(callbacks.as_deref())
                .map(|(url, callbacks)| callbacks.register(&id, url));
            let calls_back = callbacks.filter(|_| callback.is_some());
            match run.persist(callback).await {
                Ok(true) => {}
                Ok(false) => {
                    // It ended just now: answer with its outcome.
                    return match run.wait().await {
                        Ok(exec) => sync_response(&exec),
                        Err(e) => run_aborted(&id, &e, rt.redactor()),
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
            // An instance's admin API is under its prefix (`serve --instances`).
            let status_url = match rt.instance() {
                Some(instance) => format!("/i/{instance}/_flow/executions/{id}"),
                None => format!("/_flow/executions/{id}"),
            };
            tokio::spawn(async move {
                // Its end is in the store: the delivery task sends the
                // callback from there.
                let _ = run.wait().await;
                if let Some(callbacks) = calls_back {
                    callbacks.ended();
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
                crate::engine::integration::human_duration(*timeout)
            );
            run.abandon(&message).await;
            let mut resp = error_response(StatusCode::GATEWAY_TIMEOUT, message);
            if let Ok(v) = HeaderValue::from_str(&id) {
                resp.headers_mut().insert(X_EXECUTION_ID, v);
            }
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(error: &str) -> Execution {
        Execution {
            id: "exec-1".into(),
            flow: "lookup".into(),
            status: Status::Failed,
            trigger: Value::Null,
            dedupe_key: None,
            created_at: Utc::now(),
            started_at: None,
            finished_at: None,
            attempts: 1,
            result: None,
            error: Some(error.into()),
            error_step: Some("fetch".into()),
            lease_owner: None,
            lease_expires: None,
            lease_epoch: 0,
        }
    }

    #[test]
    fn a_failed_run_answers_only_that_it_failed_and_its_id() {
        let exec = failed("GET http://crm/x: HTTP 500: ERROR: relation \"users\" does not exist");
        let a = answer(&exec);
        assert_eq!(a.status, 500);
        assert_eq!(
            a.body.map(Cow::into_owned),
            Some(json!({ "error": "run failed", "execution_id": "exec-1" }))
        );
        assert!(a.headers.is_empty());
    }
}
