//! HTTP headers as values, with credentials masked before they are stored.

use axum::http::HeaderMap;
use serde_json::{Map, Value};

use crate::core::redact::MASK;

/// HTTP headers as a JSON record (a trigger's `headers`, an `http.*`
/// step's `headers`): lowercase names, repeated headers joined with `, `.
pub fn header_map(headers: &HeaderMap) -> Map<String, Value> {
    let mut out = Map::new();
    // A name's values come one after the other: joined here, so that each
    // name is inserted once (no lookup before every insertion).
    let mut pending: Option<(&str, String)> = None;
    for (k, v) in headers {
        let v = String::from_utf8_lossy(v.as_bytes());
        match &mut pending {
            Some((name, joined)) if *name == k.as_str() => {
                joined.push_str(", ");
                joined.push_str(&v);
            }
            _ => {
                if let Some((name, joined)) = pending.replace((k.as_str(), v.into_owned())) {
                    insert_joined(&mut out, name, joined);
                }
            }
        }
    }
    if let Some((name, joined)) = pending {
        insert_joined(&mut out, name, joined);
    }
    out
}

/// Inserts header `name`'s `value`, after any values of it inserted before
/// (should a map ever yield a name's values apart).
fn insert_joined(out: &mut Map<String, Value>, name: &str, value: String) {
    if let Some(Value::String(mut earlier)) = out.insert(name.to_string(), Value::String(value)) {
        if let Some(Value::String(later)) = out.get_mut(name) {
            earlier.push_str(", ");
            earlier.push_str(later);
            *later = earlier;
        }
    }
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
    fn repeated_headers_are_joined_in_order() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("accept", "a"),
            ("x-one", "1"),
            ("accept", "b"),
            ("accept", "c"),
        ] {
            h.append(k, HeaderValue::from_static(v));
        }
        let map = header_map(&h);
        assert_eq!(map["accept"], "a, b, c");
        assert_eq!(map["x-one"], "1");
        assert_eq!(map.len(), 2);
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
