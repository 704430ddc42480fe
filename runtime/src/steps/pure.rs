//! Pure stdlib functions: `json.*`, `csv.*`, `xml.*`, `time.*`, `crypto.*`,
//! `base64.*` (and `pdf.*`, listed in its own module: `super::pdf::FNS`).

use std::fmt::Write as _;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::core::error::RunError;
use crate::core::hmac::hmac_hex;
use crate::core::ops::{display, format_time};
use crate::engine::ctx::Args;
use crate::engine::registry::PureFn;

/// The pure functions by qualified name.
pub(super) const PURE_FNS: [(&str, PureFn); 15] = [
    ("json.encode", json_encode),
    ("json.decode", json_decode),
    ("csv.encode", super::csv::encode),
    ("csv.decode", super::csv::decode),
    ("xml.encode", super::xml::encode),
    ("xml.decode", super::xml::decode),
    ("time.now", time_now),
    ("time.today", time_today),
    ("time.format", time_format),
    ("time.parse", time_parse),
    ("crypto.hmac_sha256", hmac_sha256),
    ("crypto.sha256", sha256),
    ("crypto.uuid", uuid),
    ("base64.encode", base64_encode),
    ("base64.decode", base64_decode),
];

/// The pure function `name`: one of [`PURE_FNS`] or `pdf.*` (which, in a
/// binary built without the `pdf` feature, fails naming the rebuild).
pub(super) fn lookup(name: &str) -> Option<PureFn> {
    PURE_FNS
        .iter()
        .chain(&super::pdf::FNS)
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
}

fn string_arg<'a>(args: &'a Args, i: usize, func: &str, what: &str) -> Result<&'a str, RunError> {
    args.get(i)
        .as_str()
        .ok_or_else(|| RunError::new(format!("{func}: {what} must be a String")))
}

/// `json.encode(value)` → compact JSON text.
fn json_encode(args: &Args) -> Result<Value, RunError> {
    let v = match &args.as_schema {
        Some(s) => s.encode(args.get(0)),
        None => args.get(0).clone(),
    };
    Ok(Value::String(v.to_string()))
}

/// `json.decode(text, as: T)` → the value (validated when `as:` is given).
fn json_decode(args: &Args) -> Result<Value, RunError> {
    let text = string_arg(args, 0, "json.decode", "the text")?;
    let v: Value = serde_json::from_str(text)
        .map_err(|e| RunError::new(format!("json.decode: invalid JSON: {e}")))?;
    match &args.as_schema {
        Some(s) => s
            .decode(&v)
            .map_err(|e| RunError::new(format!("json.decode: {e}"))),
        None => Ok(v),
    }
}

/// `base64.encode(data)` → base64 text. A `Bytes` value already is its
/// base64 text (normalised here); a String is encoded as UTF-8.
fn base64_encode(args: &Args) -> Result<Value, RunError> {
    let data = args
        .data(0, "data")
        .map_err(|e| RunError::new(format!("base64.encode: {e}")))?
        .unwrap_or_default();
    Ok(Value::String(crate::core::bytes::encode(&data)))
}

/// `base64.decode(text)` → Bytes (the standard padded form).
fn base64_decode(args: &Args) -> Result<Value, RunError> {
    let text = string_arg(args, 0, "base64.decode", "the text")?;
    let data = crate::core::bytes::decode(text)
        .map_err(|e| RunError::new(format!("base64.decode: the text is {e}")))?;
    Ok(Value::String(crate::core::bytes::encode(&data)))
}

/// `time.now()` → the current Time.
fn time_now(_: &Args) -> Result<Value, RunError> {
    Ok(format_time(Utc::now()))
}

/// `time.today()` → today's midnight (UTC) as a Time.
fn time_today(_: &Args) -> Result<Value, RunError> {
    let midnight = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc());
    midnight
        .map(format_time)
        .ok_or_else(|| RunError::new("time.today: no midnight today"))
}

/// `time.format(t, "%Y-%m-%d")` → strftime formatting in the time's own offset.
fn time_format(args: &Args) -> Result<Value, RunError> {
    let t = string_arg(args, 0, "time.format", "the time")?;
    let fmt = match args.param(1, "pattern") {
        Value::Null => "%Y-%m-%dT%H:%M:%SZ",
        v => v
            .as_str()
            .ok_or_else(|| RunError::new("time.format: the pattern must be a String"))?,
    };
    let t = DateTime::parse_from_rfc3339(t)
        .map_err(|_| RunError::new(format!("time.format: {t:?} is not a Time")))?;
    let mut out = String::new();
    // An invalid specifier makes Display fail; write! reports it instead of panicking.
    write!(out, "{}", t.format(fmt))
        .map_err(|_| RunError::new(format!("time.format: invalid format {fmt:?}")))?;
    Ok(Value::String(out))
}

/// `time.parse(text [, format])` → a Time. Without a format: RFC 3339 or
/// `YYYY-MM-DD`; with one: strftime, with or without an offset (UTC assumed)
/// or a date only (midnight UTC).
fn time_parse(args: &Args) -> Result<Value, RunError> {
    let text = string_arg(args, 0, "time.parse", "the text")?.trim();
    let fmt = args.param(1, "pattern").as_str();
    let fail = || RunError::new(format!("time.parse: cannot parse {text:?} as a time"));
    let t = match fmt {
        None => match DateTime::parse_from_rfc3339(text) {
            Ok(t) => t.with_timezone(&Utc),
            Err(_) => NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| d.and_utc())
                .ok_or_else(fail)?,
        },
        Some(f) => {
            if let Ok(t) = DateTime::parse_from_str(text, f) {
                t.with_timezone(&Utc)
            } else if let Ok(t) = NaiveDateTime::parse_from_str(text, f) {
                t.and_utc()
            } else {
                NaiveDate::parse_from_str(text, f)
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|d| d.and_utc())
                    .ok_or_else(fail)?
            }
        }
    };
    Ok(format_time(t))
}

/// `crypto.hmac_sha256(key, message)` → lowercase hex.
fn hmac_sha256(args: &Args) -> Result<Value, RunError> {
    let key = display(args.get(0));
    let msg = display(args.get(1));
    Ok(Value::String(hmac_hex(key.as_bytes(), msg.as_bytes())))
}

/// `crypto.sha256(text)` → lowercase hex.
fn sha256(args: &Args) -> Result<Value, RunError> {
    let text = display(args.get(0));
    Ok(Value::String(hex::encode(Sha256::digest(text.as_bytes()))))
}

/// `crypto.uuid()` → a random UUID (v4).
fn uuid(_: &Args) -> Result<Value, RunError> {
    Ok(Value::String(uuid::Uuid::new_v4().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::schema::{FieldSchema, Schema};
    use serde_json::json;

    fn call(name: &str, args: Args) -> Result<Value, RunError> {
        crate::steps::call_pure(name, args)
    }

    #[test]
    fn json_functions() {
        assert_eq!(
            call("json.encode", Args::new().arg(json!({"a": [1, "x"]}))).unwrap(),
            json!(r#"{"a":[1,"x"]}"#)
        );
        assert_eq!(
            call("json.decode", Args::new().arg(json!("[1,2]"))).unwrap(),
            json!([1, 2])
        );
        let schema = Schema::Record(vec![FieldSchema::new("id", Schema::Int)]);
        let e = call(
            "json.decode",
            Args::new().arg(json!(r#"{"id":"x"}"#)).decode_as(schema),
        )
        .unwrap_err();
        assert_eq!(e.message, r#"json.decode: id: expected Int, got "x""#);
        assert!(call("json.decode", Args::new().arg(json!("{"))).is_err());
        assert!(call("nope.nope", Args::new()).is_err());
    }

    #[test]
    fn time_functions() {
        let now = call("time.now", Args::new()).unwrap();
        assert!(crate::core::ops::parse_time(&now).is_some());
        let today = call("time.today", Args::new()).unwrap();
        assert!(today.as_str().unwrap().ends_with("T00:00:00Z"), "{today}");
        let t = json!("2024-03-05T10:20:30+01:00");
        assert_eq!(
            call(
                "time.format",
                Args::new().arg(t.clone()).arg(json!("%Y-%m-%d %H:%M"))
            )
            .unwrap(),
            json!("2024-03-05 10:20")
        );
        assert!(call("time.format", Args::new().arg(t).arg(json!("%Q"))).is_err());
        assert_eq!(
            call("time.parse", Args::new().arg(json!("2024-03-05"))).unwrap(),
            json!("2024-03-05T00:00:00Z")
        );
        assert_eq!(
            call(
                "time.parse",
                Args::new()
                    .arg(json!("05/03/2024 10:00"))
                    .arg(json!("%d/%m/%Y %H:%M"))
            )
            .unwrap(),
            json!("2024-03-05T10:00:00Z")
        );
        assert!(call("time.parse", Args::new().arg(json!("never"))).is_err());
    }

    #[test]
    fn crypto_functions() {
        // RFC 4231 test case 2.
        assert_eq!(
            call(
                "crypto.hmac_sha256",
                Args::new()
                    .arg(json!("Jefe"))
                    .arg(json!("what do ya want for nothing?"))
            )
            .unwrap(),
            json!("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
        assert_eq!(
            call("crypto.sha256", Args::new().arg(json!("abc"))).unwrap(),
            json!("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        let u = call("crypto.uuid", Args::new()).unwrap();
        assert_eq!(u.as_str().unwrap().len(), 36);
    }
}
