//! How the SQL stores keep a value (a trigger, a journal entry's output, a
//! run's result, a state entry).
//!
//! Most values are kept as JSON text: compact enough, fast to write, and
//! readable with the database's own tools. A value holding binary data is
//! not: the runtime carries a `Bytes` value as base64 text (see
//! [`crate::core::bytes`]), a third larger than the data, and JSON text
//! would keep it so. Such a value, one with a string of at least
//! [`BINARY_MIN_CHARS`] characters that is canonical base64, is kept as
//! CBOR (RFC 8949) behind the self-describe tag, with each such string as a
//! byte string of the data itself. Reading turns the byte strings back into
//! the same base64 text, so a value reads back exactly as it was written in
//! either form, and rows written as JSON text before stay readable.
//!
//! A text that merely looks like base64 (a long run of letters) is kept as
//! bytes too; it reads back as the same text, so nothing can tell.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ciborium::value::{Integer, Value as Cbor};
use serde_json::{Map, Number, Value};

use super::{json_error, StoreResult};

/// The CBOR self-describe tag (RFC 8949 §3.4.6), which starts every value
/// kept as CBOR: its first byte, 0xd9, cannot start JSON text.
const SELF_DESCRIBE: u64 = 55_799;
const SELF_DESCRIBE_PREFIX: [u8; 3] = [0xd9, 0xd9, 0xf7];

/// Shortest base64 text kept as bytes (768 bytes of data): below it, the
/// third saved is not worth a second format.
pub(crate) const BINARY_MIN_CHARS: usize = 1024;

/// A value in its stored form.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Encoded {
    /// JSON text: a value without binary data.
    Json(String),
    /// CBOR behind the self-describe tag: a value with binary data.
    Cbor(Vec<u8>),
}

impl Encoded {
    /// The stored form of `value`.
    pub(crate) fn of(value: &Value) -> StoreResult<Encoded> {
        if !holds_binary(value) {
            return serde_json::to_string(value)
                .map(Encoded::Json)
                .map_err(json_error);
        }
        let tagged = Cbor::Tag(SELF_DESCRIBE, Box::new(to_cbor(value)));
        let mut out = Vec::new();
        ciborium::into_writer(&tagged, &mut out)
            .map_err(|e| super::StoreError::Backend(format!("cannot encode a value: {e}")))?;
        Ok(Encoded::Cbor(out))
    }

    /// The stored form as bytes (a PostgreSQL `bytea`).
    #[cfg(feature = "postgres")]
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        match self {
            Encoded::Json(text) => text.into_bytes(),
            Encoded::Cbor(bytes) => bytes,
        }
    }
}

/// SQLite keeps JSON text as `TEXT` (readable with `sqlite3`) and CBOR as a
/// `BLOB`; a column's declared type does not restrict either.
impl rusqlite::ToSql for Encoded {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Encoded::Json(text) => ValueRef::Text(text.as_bytes()),
            Encoded::Cbor(bytes) => ValueRef::Blob(bytes),
        }))
    }
}

/// The value stored as `bytes`, in either form.
pub(crate) fn decode(bytes: &[u8]) -> Result<Value, String> {
    if bytes.starts_with(&SELF_DESCRIBE_PREFIX) {
        let cbor: Cbor = ciborium::from_reader(bytes).map_err(|e| e.to_string())?;
        from_cbor(cbor)
    } else {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

fn holds_binary(value: &Value) -> bool {
    match value {
        Value::String(s) => looks_binary(s),
        Value::Array(items) => items.iter().any(holds_binary),
        Value::Object(fields) => fields.values().any(holds_binary),
        _ => false,
    }
}

/// Long enough, and made only of base64's characters in its length: the
/// cheap test before decoding.
fn looks_binary(s: &str) -> bool {
    s.len() >= BINARY_MIN_CHARS
        && s.len() % 4 == 0
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}

/// The data of `s` if it is canonical padded base64: only then does its
/// encoding give `s` back, which is what makes keeping the data enough.
/// (`STANDARD` refuses other padding and stray trailing bits.)
fn binary_of(s: &str) -> Option<Vec<u8>> {
    looks_binary(s).then(|| STANDARD.decode(s).ok()).flatten()
}

fn to_cbor(value: &Value) -> Cbor {
    match value {
        Value::Null => Cbor::Null,
        Value::Bool(b) => Cbor::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Cbor::Integer(i.into()),
            (_, Some(u), _) => Cbor::Integer(u.into()),
            (_, _, Some(f)) => Cbor::Float(f),
            // Not reached without serde_json's arbitrary precision.
            _ => Cbor::Text(n.to_string()),
        },
        Value::String(s) => match binary_of(s) {
            Some(data) => Cbor::Bytes(data),
            None => Cbor::Text(s.clone()),
        },
        Value::Array(items) => Cbor::Array(items.iter().map(to_cbor).collect()),
        Value::Object(fields) => Cbor::Map(
            fields
                .iter()
                .map(|(k, v)| (Cbor::Text(k.clone()), to_cbor(v)))
                .collect(),
        ),
    }
}

fn from_cbor(cbor: Cbor) -> Result<Value, String> {
    Ok(match cbor {
        Cbor::Null => Value::Null,
        Cbor::Bool(b) => Value::Bool(b),
        Cbor::Integer(i) => integer(i)?,
        Cbor::Float(f) => Number::from_f64(f)
            .map(Value::Number)
            .ok_or("a number that is not finite")?,
        Cbor::Text(s) => Value::String(s),
        Cbor::Bytes(data) => Value::String(STANDARD.encode(data)),
        Cbor::Array(items) => {
            Value::Array(items.into_iter().map(from_cbor).collect::<Result<_, _>>()?)
        }
        Cbor::Map(entries) => {
            let mut fields = Map::with_capacity(entries.len());
            for (key, value) in entries {
                let Cbor::Text(key) = key else {
                    return Err("a map key that is not text".into());
                };
                fields.insert(key, from_cbor(value)?);
            }
            Value::Object(fields)
        }
        Cbor::Tag(_, inner) => from_cbor(*inner)?,
        _ => return Err("a CBOR item that no value is stored as".into()),
    })
}

fn integer(i: Integer) -> Result<Value, String> {
    let wide = i128::from(i);
    if let Ok(n) = i64::try_from(wide) {
        Ok(Value::from(n))
    } else if let Ok(n) = u64::try_from(wide) {
        Ok(Value::from(n))
    } else {
        Err("an integer out of range".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 256) as u8).collect()
    }

    fn round_trip(value: &Value) -> Encoded {
        let encoded = Encoded::of(value).unwrap();
        let bytes = encoded.clone().into_bytes();
        assert_eq!(&decode(&bytes).unwrap(), value);
        encoded
    }

    #[test]
    fn values_without_binary_data_stay_json_text() {
        let value = json!({"a": [1, -2, 2.5, null, true], "s": "some text ".repeat(500), "é": "ü"});
        let Encoded::Json(text) = round_trip(&value) else {
            panic!("not JSON text");
        };
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), value);
        // Short base64 is not worth a second format.
        assert!(matches!(
            round_trip(&json!(STANDARD.encode(data(700)))),
            Encoded::Json(_)
        ));
    }

    #[test]
    fn binary_data_is_kept_as_bytes_and_reads_back_as_the_same_text() {
        let bytes = STANDARD.encode(data(1 << 20));
        let value = json!({
            "file": {"name": "a.pdf", "bytes": bytes},
            "list": [bytes, "short", i64::MIN, u64::MAX, 0.1, {"deep": [[bytes]]}],
        });
        let Encoded::Cbor(stored) = round_trip(&value) else {
            panic!("not CBOR");
        };
        assert!(stored.starts_with(&SELF_DESCRIBE_PREFIX));
        let json_len = serde_json::to_string(&value).unwrap().len();
        // Three copies of 1 MiB: about 3 MiB instead of 4.
        assert!(
            stored.len() < 3 * (1 << 20) + 200,
            "{} bytes stored, {json_len} as JSON",
            stored.len()
        );
    }

    #[test]
    fn text_that_only_looks_like_base64_reads_back_unchanged() {
        let letters = "A".repeat(2048);
        assert!(matches!(round_trip(&json!(letters)), Encoded::Cbor(_)));
        // Not canonical: stray bits in the last character, missing padding,
        // whitespace. Each stays text.
        let mut odd = STANDARD.encode(data(1025));
        odd.pop();
        odd.pop();
        odd.push_str("B=");
        for text in [odd, STANDARD.encode(data(1024)).replace('=', "A")] {
            round_trip(&json!(text));
        }
        let wrapped = format!("{} ", STANDARD.encode(data(2000)));
        assert!(matches!(round_trip(&json!(wrapped)), Encoded::Json(_)));
    }

    #[test]
    fn rows_written_as_json_text_read_as_before() {
        assert_eq!(decode(br#"{"a": 1}"#).unwrap(), json!({"a": 1}));
        assert!(decode(b"{not json").is_err());
        let mut damaged = Encoded::of(&json!(STANDARD.encode(data(4096))))
            .unwrap()
            .into_bytes();
        damaged.truncate(100);
        assert!(decode(&damaged).is_err());
    }
}
