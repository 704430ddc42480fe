//! The client side: requests to the services under test, answers read as
//! JSON, webhook signatures.

use std::collections::HashMap;
use std::time::Duration;

use hmac::{Hmac, Mac as _};
use serde_json::Value;

/// How long [`request`] waits for an answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A client whose requests fail after `timeout` (so a test never hangs on
/// a service that stopped answering).
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("HTTP client")
}

/// An HTTP answer: status, lowercase headers, body as JSON (`Null` when
/// empty, a JSON string when not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Value,
}

impl Answer {
    /// A header by name (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_named(&self.headers, name)
    }
}

/// Sends one request (a new client each time: tests run on runtimes of
/// their own, and a pooled connection must not outlive its runtime).
pub async fn request(
    method: &str,
    url: &str,
    body: Option<Vec<u8>>,
    headers: &[(&str, &str)],
) -> Answer {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("HTTP method");
    let mut req = client(REQUEST_TIMEOUT).request(method.clone(), url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(body) = body {
        req = req.body(body);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = header_map(resp.headers());
    let bytes = resp.bytes().await.unwrap_or_default();
    Answer {
        status,
        headers,
        body: json_or_text(&bytes),
    }
}

/// POSTs the exact bytes `body` as `application/json` (unless `headers`
/// set another content type).
pub async fn post_raw(url: &str, body: &[u8], headers: &[(&str, &str)]) -> Answer {
    let mut all = headers.to_vec();
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        all.push(("Content-Type", "application/json"));
    }
    request("POST", url, Some(body.to_vec()), &all).await
}

/// POSTs `body` as JSON: `(status, JSON answer)`.
pub async fn post_json(url: &str, body: &Value, headers: &[(&str, &str)]) -> (u16, Value) {
    let a = post_raw(url, body.to_string().as_bytes(), headers).await;
    (a.status, a.body)
}

/// GET with headers.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> Answer {
    request("GET", url, None, headers).await
}

/// The lowercase hex HMAC-SHA256 of `body` under `secret`, as a webhook
/// sender signs it (the form `verify: hmac_sha256(...)` expects).
pub fn hmac_hex(secret: &str, body: &[u8]) -> String {
    hex::encode(hmac_sha256(secret.as_bytes(), body))
}

/// The HMAC-SHA256 of `msg` under `key`.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key size");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// Headers by lowercase name; repeated headers joined with `, `.
pub(crate) fn header_map(headers: &axum::http::HeaderMap) -> HashMap<String, String> {
    let mut map: HashMap<String, String> = HashMap::new();
    for (k, v) in headers {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        map.entry(k.as_str().to_string())
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(&v);
            })
            .or_insert(v);
    }
    map
}

/// A header of a [`header_map`] by name (any case).
pub(crate) fn header_named<'a>(
    headers: &'a HashMap<String, String>,
    name: &str,
) -> Option<&'a str> {
    headers.get(&name.to_ascii_lowercase()).map(String::as_str)
}

/// A body as JSON: `Null` when empty (or only whitespace), a JSON string
/// when it is not JSON.
pub(crate) fn json_or_text(bytes: &[u8]) -> Value {
    let text = String::from_utf8_lossy(bytes);
    if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.into_owned()))
    }
}
