//! HTTP headers as values.

use axum::http::HeaderMap;
use serde_json::{Map, Value};

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
