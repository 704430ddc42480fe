//! Webhook routes: check, store, answer `202`.

use super::*;

/// `deadline`: the body must have arrived and the event be stored by then.
pub(super) async fn handler(
    rt: Runtime,
    def: Arc<FlowDef>,
    req: Request,
    deadline: Instant,
) -> Response {
    let TriggerDef::Webhook {
        body: schema,
        verify,
        auth,
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
    if let Err(refused) = access::check_auth(def.name, auth.as_ref(), &headers) {
        return refused;
    }
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
        deadline,
    )
    .await
    {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    if let Err(refused) = access::check_signature(def.name, verify.as_ref(), &headers, &bytes) {
        return refused;
    }
    let body = match decode_body(schema, &bytes, false) {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    // Built by moving the parts in (`json!` would copy them).
    let mut trigger = crate::core::ops::record([
        ("body", body),
        ("headers", Value::Object(header_map(&headers))),
        ("query", Value::Object(query)),
        ("received_at", crate::core::ops::format_time(Utc::now())),
    ]);
    let key = dedupe.and_then(|f| f(&trigger));
    // Stored, so without credentials: signature and dedupe key, which
    // needed them, are done.
    if let Some(Value::Object(headers)) = trigger.get_mut("headers") {
        mask_credentials(headers);
    }
    // Past the deadline the caller gets a 503 and will retry; the event may
    // still be stored meanwhile (a dedupe key catches the repeat).
    let Ok(submitted) = tokio::time::timeout_at(deadline, rt.submit(def.name, trigger, key)).await
    else {
        return intake::not_answered_in_time();
    };
    match submitted {
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
