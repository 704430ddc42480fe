//! `http.get/post/put/patch/delete(url, json:, body:, headers:, query:,
//! bearer:, basic:, ok:, as:)` → `{ status, body, text, headers }`.
//!
//! Every request carries an `Idempotency-Key` derived from the execution id
//! and the step identity, identical on every retry and replay, so servers
//! that honour it apply the call once. A non-2xx answer whose status is not
//! listed in `ok:` is a retryable step failure naming the status; a `429`
//! or `503` with `Retry-After` is retried that much later instead of after
//! the step's backoff.

use std::time::Duration;

use axum::body::Bytes;
use chrono::{DateTime, Utc};
use futures::future::{BoxFuture, FutureExt as _};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::Method;
use serde_json::Value;

use crate::core::error::{error_chain, StepError};
use crate::core::ops::display;
use crate::core::outbound::read_body;
use crate::core::plain_http::{Answer, Outgoing, Sent};
use crate::core::redact::url_for_errors;
use crate::engine::connection::Credentials;
use crate::engine::ctx::StepCall;

pub(super) fn get(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    request(Method::GET, call).boxed()
}

pub(super) fn post(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    request(Method::POST, call).boxed()
}

pub(super) fn put(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    request(Method::PUT, call).boxed()
}

pub(super) fn patch(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    request(Method::PATCH, call).boxed()
}

pub(super) fn delete(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    request(Method::DELETE, call).boxed()
}

/// The URL an `http.*` call (`name`, e.g. `http.post`) requests: its first
/// argument with the `query:` pairs appended. Shared with the test mocks
/// so they match exactly what a real call would send.
pub(crate) fn request_url(
    name: &str,
    args: &crate::engine::ctx::Args,
) -> Result<reqwest::Url, StepError> {
    let url_text = args
        .get(0)
        .as_str()
        .ok_or_else(|| StepError::permanent(format!("{name}: the URL must be a String")))?;
    let mut url = parse_url_cached(url_text).map_err(|e| {
        StepError::permanent(format!(
            "{name}: invalid URL {:?}: {e}",
            url_for_errors(url_text)
        ))
    })?;
    if let Some(Value::Object(q)) = args.get_named("query") {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in q {
            if !v.is_null() {
                pairs.append_pair(k, &display(v));
            }
        }
    }
    Ok(url)
}

/// [`crate::core::schema::parse_url`] with a one-entry cache per thread: a flow
/// calls the same configured URL run after run, and parsing it (about 6,000
/// instructions) is a noticeable part of a short request.
fn parse_url_cached(text: &str) -> Result<reqwest::Url, String> {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(String, reqwest::Url)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((t, url)) = &*last {
            if t == text {
                return Ok(url.clone());
            }
        }
        let url = crate::core::schema::parse_url(text)?;
        *last = Some((text.to_string(), url.clone()));
        Ok(url)
    })
}

async fn request(method: Method, call: StepCall) -> Result<Value, StepError> {
    let args = &call.args;
    let name = match method {
        Method::GET => "http.get",
        Method::POST => "http.post",
        Method::PUT => "http.put",
        Method::PATCH => "http.patch",
        Method::DELETE => "http.delete",
        _ => "http",
    };
    let url = request_url(name, args)?;
    // For error messages only: the URL without its query, which may carry
    // a key.
    let what = {
        let (method, url) = (method.clone(), url.clone());
        move || format!("{method} {}", url_for_errors(url.as_str()))
    };
    let req = outgoing(name, method, url, &call)?;
    let limit = args
        .get_named("max_response")
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_MAX_RESPONSE);
    let hint = "raise `max_response:` if it is expected";
    let services = call.cx.services();
    let answer = match (services.connections().via(args)?, services.plain_http()) {
        (Some(connection), _) => {
            let resp = send_via(connection, req, &call, &what).await?;
            answer_of(resp, limit, hint, &what).await?
        }
        (None, Some(plain)) if req.is_plain() => match plain.send(req, limit, hint, &what).await? {
            Sent::Answered(answer) => answer,
            // A redirect to HTTPS: the rest of the chain through reqwest.
            Sent::ToReqwest(req) => {
                by_reqwest(req, services.http_client(), limit, hint, &what).await?
            }
        },
        (None, _) => by_reqwest(req, services.http_client(), limit, hint, &what).await?,
    };
    response_value(answer, args, &what)
}

// Header names as values, not text: no parsing per call.
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The request of an `http.*` call: its headers (with an `Idempotency-Key`
/// and the run's `traceparent` unless given), credentials and body.
fn outgoing(
    name: &str,
    method: Method,
    url: reqwest::Url,
    call: &StepCall,
) -> Result<Outgoing, StepError> {
    let args = &call.args;
    let mut headers = HeaderMap::new();
    if let Some(Value::Object(h)) = args.get_named("headers") {
        for (k, v) in h {
            if v.is_null() {
                continue;
            }
            let hname = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| StepError::permanent(format!("{name}: invalid header name {k:?}")))?;
            let hvalue = HeaderValue::from_str(&display(v)).map_err(|_| {
                StepError::permanent(format!("{name}: invalid value for header {k:?}"))
            })?;
            headers.append(hname, hvalue);
        }
    }
    if !headers.contains_key(IDEMPOTENCY_KEY) {
        // Concatenated rather than `format!`ed: this runs for every call.
        let id = call.cx.execution_id();
        let mut key = String::with_capacity(id.len() + 1 + call.step.len());
        key.push_str(id);
        key.push('/');
        key.push_str(&call.step);
        if let Ok(value) = HeaderValue::try_from(key) {
            headers.insert(IDEMPOTENCY_KEY, value);
        }
    }
    if !headers.contains_key(TRACEPARENT) {
        // The run's trace goes on with the callee (W3C trace context);
        // one given in `headers:` is the flow's choice and is kept.
        // Hex digits and dashes: always a valid header value.
        if let Ok(value) = HeaderValue::from_bytes(&call.traceparent().header_bytes()) {
            headers.insert(TRACEPARENT, value);
        }
    }
    if let Some(credentials) = Credentials::of_call(args) {
        credentials.apply_to(&mut headers)?;
    }
    let body = if let Some(json) = args.get_named("json").filter(|v| !v.is_null()) {
        let bytes = serde_json::to_vec(json)
            .map_err(|e| StepError::permanent(format!("{name}: cannot encode `json:`: {e}")))?;
        if !headers.contains_key(CONTENT_TYPE) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        Some(Bytes::from(bytes))
    } else if let Some(body) = args
        .data(usize::MAX, "body")
        .map_err(|e| StepError::permanent(format!("{name}: {e}")))?
    {
        if !headers.contains_key(CONTENT_TYPE) {
            let binary = args.get_named("body_bytes") == Some(&Value::Bool(true));
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static(if binary {
                    "application/octet-stream"
                } else {
                    "text/plain; charset=utf-8"
                }),
            );
        }
        Some(Bytes::from(body))
    } else {
        None
    };
    Ok(Outgoing {
        method,
        url,
        headers,
        body,
    })
}

/// Sends `req` with reqwest (which follows redirects itself).
async fn by_reqwest(
    req: Outgoing,
    client: &reqwest::Client,
    limit: u64,
    hint: &str,
    what: &(dyn Fn() -> String + Sync),
) -> Result<Answer, StepError> {
    let resp = req
        .into_reqwest(client)
        .send()
        .await
        .map_err(|e| send_error(what, e))?;
    answer_of(resp, limit, hint, what).await
}

/// A reqwest response read the same way as a plain one.
async fn answer_of(
    resp: reqwest::Response,
    limit: u64,
    hint: &str,
    what: &(dyn Fn() -> String + Sync),
) -> Result<Answer, StepError> {
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = read_body(resp, limit, hint, what).await?;
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// `{ status, body, text, headers }` of an answer, or the step's error for
/// a status that is neither 2xx nor listed in `ok:`.
fn response_value(
    answer: Answer,
    args: &crate::engine::ctx::Args,
    what: &(dyn Fn() -> String + Sync),
) -> Result<Value, StepError> {
    let Answer {
        status,
        headers: raw_headers,
        body: bytes,
    } = answer;
    let retry_after = match status.as_u16() {
        429 | 503 => raw_headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, Utc::now())),
        _ => None,
    };
    // Journaled, so without credentials (`Set-Cookie`, tokens).
    let mut headers = crate::core::headers::header_map(&raw_headers);
    crate::core::headers::mask_credentials(&mut headers);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    // `.bytes` only for programs that read it (codegen passes `keep_bytes`):
    // the base64 copy would cost every other call time and journal space.
    let raw = (args.get_named("keep_bytes") == Some(&Value::Bool(true)))
        .then(|| Value::String(crate::core::bytes::encode(&bytes)));

    let accepted = args
        .get_named("ok")
        .and_then(Value::as_array)
        .is_some_and(|ok| {
            ok.iter()
                .any(|s| s.as_u64() == Some(u64::from(status.as_u16())))
        });
    if !status.is_success() && !accepted {
        let snippet: String = text.chars().take(200).collect();
        let reason = status.canonical_reason().unwrap_or("");
        return Err(StepError {
            retry_after,
            ..StepError::retryable(format!(
                "{}: HTTP {} {reason}{}{snippet}",
                what(),
                status.as_u16(),
                if snippet.is_empty() { "" } else { ": " }
            ))
        });
    }

    let body = if status.is_success() {
        match &args.as_schema {
            Some(schema) => {
                let parsed: Value = serde_json::from_str(&text).map_err(|e| {
                    StepError::permanent(format!("{}: response body is not JSON ({e})", what()))
                })?;
                schema
                    .decode_owned(parsed)
                    .map_err(|e| StepError::permanent(format!("{}: response body: {e}", what())))?
            }
            None => loose_json(&text),
        }
    } else {
        loose_json(&text)
    };
    // Moved in: `json!` would copy each part.
    let mut response = crate::core::ops::record([
        ("status", Value::from(status.as_u16())),
        ("body", body),
        ("text", Value::String(text)),
        ("headers", Value::Object(headers)),
    ]);
    if let (Some(raw), Value::Object(fields)) = (raw, &mut response) {
        fields.insert("bytes".into(), raw);
    }
    Ok(response)
}

fn send_error(what: &(dyn Fn() -> String + Sync), e: reqwest::Error) -> StepError {
    StepError::retryable(format!("{}: {}", what(), error_chain(&e.without_url())))
}

/// Sends `req` through a connection: after the connection's limit lets it
/// go, with the connection's credentials. An OAuth2 access token refused
/// with `401` is replaced and the request sent once more at once (not a
/// retry of the step: the token, not the request, was stale).
async fn send_via(
    connection: &crate::engine::connection::Connection,
    req: Outgoing,
    call: &StepCall,
    what: &(dyn Fn() -> String + Sync),
) -> Result<reqwest::Response, StepError> {
    let services = call.cx.services();
    let (store, http) = (services.store().as_ref(), services.http_client());
    let mut refreshed = false;
    loop {
        let mut this = req.copy();
        connection.wait_turn(store).await?;
        let credentials = connection.credentials(store, http).await?;
        credentials.apply_to(&mut this.headers)?;
        let resp = this
            .into_reqwest(http)
            .send()
            .await
            .map_err(|e| send_error(what, e))?;
        let stale_token = resp.status() == reqwest::StatusCode::UNAUTHORIZED
            && matches!(credentials, Credentials::OAuth2(_));
        if !stale_token || refreshed {
            return Ok(resp);
        }
        connection.refused(&credentials).await;
        refreshed = true;
    }
}

/// A body without `as:`: JSON if it parses, `null` if empty, else the text.
fn loose_json(text: &str) -> Value {
    if text.trim().is_empty() {
        return Value::Null;
    }
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// Default of `max_response:`: a step's answer is held in memory and
/// journaled, so an endless or huge one must not take the service down.
pub(crate) const DEFAULT_MAX_RESPONSE: u64 = 16 * 1024 * 1024;

/// The wait a `Retry-After` header asks for: delay-seconds (`120`) or an
/// HTTP date (`Wed, 21 Oct 2026 07:28:00 GMT`; one in the past is no
/// wait). `None` for anything else (the step's backoff applies).
fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod retry_after_tests {
    use super::*;

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let now = DateTime::parse_from_rfc3339("2026-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let parse = |v: &str| parse_retry_after(v, now);
        assert_eq!(parse("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            parse("Wed, 21 Oct 2026 07:28:30 GMT"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse("Wed, 21 Oct 2026 07:27:00 GMT"), Some(Duration::ZERO));
        for bad in ["", "soon", "-5", "1.5", "Wed, 32 Oct 2026 07:28:30 GMT"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
