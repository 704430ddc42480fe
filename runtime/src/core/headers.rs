//! HTTP headers as values, with credentials masked before they are stored.

use axum::http::HeaderMap;
use serde_json::{Map, Value};

use crate::core::redact::MASK;

/// HTTP headers as a JSON record (a trigger's `headers`, an `http.*`
/// step's `headers`): lowercase names, repeated headers joined with `, `.
pub fn header_map(headers: &HeaderMap) -> Map<String, Value> {
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

/// Whether a header carries a credential and is stored masked:
/// `Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie`, and any
/// name containing `key`, `token`, `secret` or `signature` (`X-Api-Key`,
/// `X-Hub-Signature-256`, ...). `name` is lowercase, as in a [`HeaderMap`].
pub fn is_credential(name: &str) -> bool {
    matches!(
        name,
        "authorization" | "proxy-authorization" | "cookie" | "set-cookie"
    ) || names_a_credential_word(name.as_bytes())
}

/// Whether `name` contains `key`, `token`, `secret` or `signature`: one pass
/// dispatching on the first letter, as this runs for every header of every
/// request and response (four `str::contains` cost ten times as much).
fn names_a_credential_word(name: &[u8]) -> bool {
    (0..name.len()).any(|at| {
        let rest = &name[at..];
        match rest[0] {
            b'k' => rest.starts_with(b"key"),
            b't' => rest.starts_with(b"token"),
            b's' => rest.starts_with(b"secret") || rest.starts_with(b"signature"),
            _ => false,
        }
    })
}

/// Replaces the value of every credential header ([`is_credential`]) in a
/// headers record ([`header_map`]) with `***`, before the record is stored:
/// a trigger or a step output lives in the store and the admin API for its
/// whole retention, readable by anyone with the admin token. Done after
/// signature checks and dedupe keys, which need the real values.
pub fn mask_credentials(headers: &mut Map<String, Value>) {
    for (name, value) in headers.iter_mut() {
        if is_credential(name) {
            *value = Value::String(MASK.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn request_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer abc"),
            ("proxy-authorization", "Basic eA=="),
            ("cookie", "sid=1"),
            ("set-cookie", "sid=2"),
            ("x-api-key", "k1"),
            ("x-auth-token", "t1"),
            ("x-hub-signature-256", "sha256=00"),
            ("x-client-secret", "s1"),
            ("content-type", "application/json"),
            ("x-delivery-id", "d1"),
        ] {
            h.append(k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn credential_headers_are_masked_others_kept() {
        let mut map = header_map(&request_headers());
        mask_credentials(&mut map);
        for (name, value) in &map {
            let kept = matches!(name.as_str(), "content-type" | "x-delivery-id");
            assert_eq!(value == MASK, !kept, "{name}: {value}");
        }
        assert_eq!(map["x-delivery-id"], "d1");
    }
}
