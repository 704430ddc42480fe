//! Run-time type descriptors and the JSON validation built on them.
//!
//! Generated code emits a [`Schema`] for every named type, trigger body, `as
//! T` conversion and `as:` argument. At run time values are plain JSON
//! ([`Value`]); [`Schema::decode`] checks a wire value against the declared
//! type and renames wire field names (`@rename`) to declared names,
//! [`Schema::encode`] does the reverse.
//!
//! Representation of the language's types as JSON:
//!
//! | type | JSON |
//! |---|---|
//! | `Int` | integer (i64) |
//! | `Float` | number (an integer is accepted and widened) |
//! | `Duration` | integer milliseconds (a string like `"30s"` is accepted) |
//! | `Time` | RFC 3339 string |
//! | `Url`, `Secret`, `String` | string |
//! | `Bytes` | base64 string |
//! | records | objects (extra fields ignored, missing optional fields → `null`) |
//! | `[T]`, `Map<T>`, `T?` | array, object, `null` or the value |
//!
//! Named types are referenced with [`Schema::Ref`] and looked up in a
//! process-wide registry filled by [`register_types`] (the runtime does it
//! from `Integration::types` at start-up), which allows recursive types.

use std::fmt;
use std::sync::{Arc, OnceLock, RwLock};

use base64::Engine as _;
use serde_json::{Map, Value};

/// A run-time type descriptor. See the module documentation for the mapping
/// to JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum Schema {
    /// `String`.
    String,
    /// `Int` (i64).
    Int,
    /// `Float` (f64).
    Float,
    /// `Bool`.
    Bool,
    /// `Time`, an RFC 3339 string.
    Time,
    /// `Duration`, integer milliseconds.
    Duration,
    /// `Url`, an absolute URL string.
    Url,
    /// `Secret`, a string that is never printed.
    Secret,
    /// `Bytes`, a base64 string.
    Bytes,
    /// `Json`: anything.
    Json,
    /// `[T]`.
    List(Box<Schema>),
    /// `T?`: `null` or a `T`.
    Optional(Box<Schema>),
    /// `Map<T>`: an object with string keys.
    Map(Box<Schema>),
    /// `"a" | "b"`: one of the listed strings.
    Literals(Vec<&'static str>),
    /// An inline or named record.
    Record(Vec<FieldSchema>),
    /// A named type, resolved through the registry (see [`register_types`]).
    Ref(&'static str),
}

/// One field of a [`Schema::Record`].
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSchema {
    /// The declared name (what flow code uses).
    pub name: &'static str,
    /// The name on the wire (`@rename("Item-Name")`); usually equal to `name`.
    pub wire_name: &'static str,
    /// The field's type. An [`Schema::Optional`] field may be missing.
    pub schema: Schema,
}

impl FieldSchema {
    /// A field whose wire name equals its declared name.
    pub fn new(name: &'static str, schema: Schema) -> Self {
        FieldSchema {
            name,
            wire_name: name,
            schema,
        }
    }

    /// A field with a different wire name (`@rename`).
    pub fn renamed(name: &'static str, wire_name: &'static str, schema: Schema) -> Self {
        FieldSchema {
            name,
            wire_name,
            schema,
        }
    }
}

/// A value that does not match its schema: the JSON path, what was expected
/// and what was found. Displays as `updates[1].quantity: expected Int, got "five"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// JSON path from the decoded root (`updates[1].quantity`); empty for the root.
    pub path: String,
    /// The expected type, as the language spells it (`Int`, `[Update]`, `"add" | "remove"`).
    pub expected: String,
    /// A short description of what was found (`"five"`, `an object`, `nothing`).
    pub got: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        if self.got == MISSING {
            write!(f, "missing field, expected {}", self.expected)
        } else {
            write!(f, "expected {}, got {}", self.expected, self.got)
        }
    }
}

impl std::error::Error for DecodeError {}

const MISSING: &str = "nothing";

// FNV: looked up for every `Schema::Ref` of every decoded value.
type Registry = RwLock<crate::core::fnv::FnvHashMap<&'static str, Arc<Schema>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// Registers named types for [`Schema::Ref`]. Later registrations of the same
/// name replace earlier ones (one integration per process is the norm).
pub fn register_types(types: &[(&'static str, Schema)]) {
    let mut map = crate::core::sync::write(registry());
    for (name, schema) in types {
        map.insert(name, Arc::new(schema.clone()));
    }
}

/// Looks up a named type registered with [`register_types`].
pub fn lookup_type(name: &str) -> Option<Arc<Schema>> {
    let map = crate::core::sync::read(registry());
    map.get(name).cloned()
}

/// Nesting limit for decoding, against pathological or cyclic schemas.
const MAX_DEPTH: usize = 256;

impl Schema {
    /// `[T]`.
    pub fn list(item: Schema) -> Schema {
        Schema::List(Box::new(item))
    }

    /// `T?`.
    pub fn optional(inner: Schema) -> Schema {
        Schema::Optional(Box::new(inner))
    }

    /// `Map<T>`.
    pub fn map(value: Schema) -> Schema {
        Schema::Map(Box::new(value))
    }

    /// The type as the language writes it, for messages.
    pub fn describe(&self) -> String {
        match self {
            Schema::String => "String".into(),
            Schema::Int => "Int".into(),
            Schema::Float => "Float".into(),
            Schema::Bool => "Bool".into(),
            Schema::Time => "Time".into(),
            Schema::Duration => "Duration".into(),
            Schema::Url => "Url".into(),
            Schema::Secret => "Secret".into(),
            Schema::Bytes => "Bytes".into(),
            Schema::Json => "Json".into(),
            Schema::List(item) => format!("[{}]", item.describe()),
            Schema::Optional(inner) => format!("{}?", inner.describe()),
            Schema::Map(v) => format!("Map<{}>", v.describe()),
            Schema::Literals(lits) => lits
                .iter()
                .map(|l| format!("{l:?}"))
                .collect::<Vec<_>>()
                .join(" | "),
            Schema::Record(_) => "an object".into(),
            Schema::Ref(name) => (*name).into(),
        }
    }

    /// Whether a missing record field of this type is allowed (and becomes `null`).
    fn is_optional(&self) -> bool {
        match self {
            Schema::Optional(_) | Schema::Json => true,
            Schema::Ref(name) => lookup_type(name).is_some_and(|s| s.is_optional()),
            _ => false,
        }
    }

    /// Validates a wire value and converts it to the runtime representation:
    /// wire names → declared names, missing optional fields → `null`, Int →
    /// Float where a Float is expected, `"30s"` → 30000 for Durations.
    pub fn decode(&self, value: &Value) -> Result<Value, DecodeError> {
        self.decode_owned(value.clone())
    }

    /// [`Schema::decode`] for values read from text formats (CSV cells, XML
    /// text), where every scalar arrives as a string: strings are first
    /// parsed as the Int, Float, Bool or Duration the schema expects, and an
    /// empty string is `null` for an optional. A string that does not parse
    /// is left as is, so the error names it (`expected Int, got "three"`).
    pub fn decode_text_cells(&self, value: &Value) -> Result<Value, DecodeError> {
        self.decode_owned(self.coerce_text(value, 0))
    }

    fn coerce_text(&self, value: &Value, depth: usize) -> Value {
        if depth > MAX_DEPTH {
            return value.clone();
        }
        let text = value.as_str().map(str::trim);
        match (self, value) {
            (Schema::Int, _) => text
                .and_then(|t| t.parse::<i64>().ok())
                .map_or_else(|| value.clone(), Value::from),
            (Schema::Float, _) => text
                .and_then(|t| t.parse::<f64>().ok())
                .map_or_else(|| value.clone(), float_value),
            (Schema::Bool, _) => match text {
                Some("true") => Value::Bool(true),
                Some("false") => Value::Bool(false),
                _ => value.clone(),
            },
            (Schema::Optional(_), Value::String(s)) if s.trim().is_empty() => Value::Null,
            (Schema::Optional(inner), _) => inner.coerce_text(value, depth + 1),
            (Schema::List(item), Value::Array(items)) => Value::Array(
                items
                    .iter()
                    .map(|v| item.coerce_text(v, depth + 1))
                    .collect(),
            ),
            (Schema::Map(inner), Value::Object(m)) => Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), inner.coerce_text(v, depth + 1)))
                    .collect(),
            ),
            (Schema::Record(fields), Value::Object(m)) => {
                let mut out = m.clone();
                for f in fields {
                    if let Some(v) = m.get(f.wire_name) {
                        out.insert(f.wire_name.to_string(), f.schema.coerce_text(v, depth + 1));
                    }
                }
                Value::Object(out)
            }
            (Schema::Ref(name), _) => match lookup_type(name) {
                Some(schema) => schema.coerce_text(value, depth + 1),
                None => value.clone(),
            },
            _ => value.clone(),
        }
    }

    /// [`Schema::decode`] of a value the caller gives up: checked and
    /// converted in place, so a valid value costs no copies (the path of
    /// request bodies). Same result and errors as [`Schema::decode`].
    pub fn decode_owned(&self, mut value: Value) -> Result<Value, DecodeError> {
        self.decode_in(&mut value, &Path::Root, 0)?;
        Ok(value)
    }

    fn decode_in(
        &self,
        value: &mut Value,
        path: &Path<'_>,
        depth: usize,
    ) -> Result<(), DecodeError> {
        if depth > MAX_DEPTH {
            return Err(mismatch(path, "a value nested less deeply".into(), value));
        }
        let ok = |valid: bool, value: &Value| {
            if valid {
                Ok(())
            } else {
                Err(mismatch(path, self.describe(), value))
            }
        };
        match self {
            Schema::Json => Ok(()),
            Schema::String | Schema::Secret => ok(value.is_string(), value),
            Schema::Url => ok(value.as_str().is_some_and(|s| parse_url(s).is_ok()), value),
            Schema::Time => ok(
                value
                    .as_str()
                    .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok()),
                value,
            ),
            Schema::Bytes => ok(
                value
                    .as_str()
                    .is_some_and(|s| base64::engine::general_purpose::STANDARD.decode(s).is_ok()),
                value,
            ),
            Schema::Int => match as_int(value) {
                Some(i) => {
                    if !value.is_i64() {
                        *value = Value::from(i);
                    }
                    Ok(())
                }
                None => ok(false, value),
            },
            Schema::Float => match value.as_f64() {
                Some(f) => {
                    if !value.is_f64() {
                        *value = float_value(f);
                    }
                    Ok(())
                }
                None => ok(false, value),
            },
            Schema::Bool => ok(value.is_boolean(), value),
            Schema::Duration => {
                let ms = match value {
                    Value::String(s) => parse_duration_ms(s),
                    _ => as_int(value).filter(|i| *i >= 0),
                };
                match ms {
                    Some(ms) => {
                        *value = Value::from(ms);
                        Ok(())
                    }
                    None => ok(false, value),
                }
            }
            Schema::Literals(lits) => ok(value.as_str().is_some_and(|s| lits.contains(&s)), value),
            Schema::Optional(inner) => match value {
                Value::Null => Ok(()),
                _ => inner.decode_in(value, path, depth + 1),
            },
            Schema::List(item) => match value {
                Value::Array(items) => {
                    for (i, v) in items.iter_mut().enumerate() {
                        item.decode_in(v, &Path::Index(path, i), depth + 1)?;
                    }
                    Ok(())
                }
                _ => ok(false, value),
            },
            Schema::Map(inner) => match value {
                Value::Object(entries) => {
                    for (k, v) in entries.iter_mut() {
                        inner.decode_in(v, &Path::Key(path, k), depth + 1)?;
                    }
                    Ok(())
                }
                _ => ok(false, value),
            },
            Schema::Record(fields) => match value {
                Value::Object(entries) => decode_record(fields, entries, path, depth),
                _ => ok(false, value),
            },
            Schema::Ref(name) => match lookup_type(name) {
                // Name the type, not "an object", when the shape is wrong.
                Some(schema) => match &*schema {
                    Schema::Record(_) if !value.is_object() => ok(false, value),
                    s => s.decode_in(value, path, depth + 1),
                },
                None => Err(DecodeError {
                    path: path.render(),
                    expected: format!("{name} (a type unknown to this binary)"),
                    got: describe_value(value),
                }),
            },
        }
    }

    /// Converts a runtime value to its wire form: declared field names →
    /// wire names (`@rename`). Values that do not match are passed through.
    pub fn encode(&self, value: &Value) -> Value {
        self.encode_at(value, 0)
    }

    fn encode_at(&self, value: &Value, depth: usize) -> Value {
        if depth > MAX_DEPTH {
            return value.clone();
        }
        match (self, value) {
            (Schema::Optional(inner), v) => inner.encode_at(v, depth + 1),
            (Schema::List(item), Value::Array(items)) => {
                Value::Array(items.iter().map(|v| item.encode_at(v, depth + 1)).collect())
            }
            (Schema::Map(inner), Value::Object(entries)) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), inner.encode_at(v, depth + 1)))
                    .collect(),
            ),
            (Schema::Record(fields), Value::Object(entries)) => {
                let mut out = Map::new();
                for field in fields {
                    if let Some(v) = entries.get(field.name) {
                        out.insert(
                            field.wire_name.to_string(),
                            field.schema.encode_at(v, depth + 1),
                        );
                    }
                }
                Value::Object(out)
            }
            (Schema::Ref(name), v) => match lookup_type(name) {
                Some(schema) => schema.encode_at(v, depth + 1),
                None => v.clone(),
            },
            (_, v) => v.clone(),
        }
    }
}

/// A record's fields checked and converted in place: wire names → declared
/// names, undeclared fields dropped, missing optional fields → `null`.
/// Errors come in field order, as the fields are declared.
fn decode_record(
    fields: &[FieldSchema],
    entries: &mut Map<String, Value>,
    path: &Path<'_>,
    depth: usize,
) -> Result<(), DecodeError> {
    let missing = |field: &FieldSchema, here: &Path<'_>| DecodeError {
        path: here.render(),
        expected: field.schema.describe(),
        got: MISSING.into(),
    };
    if fields.iter().all(|f| f.name == f.wire_name) {
        // The common case: every value stays where it is.
        for field in fields {
            let here = Path::Key(path, field.wire_name);
            match entries.get_mut(field.wire_name) {
                Some(v) => field.schema.decode_in(v, &here, depth + 1)?,
                None if field.schema.is_optional() => {
                    entries.insert(field.name.to_string(), Value::Null);
                }
                None => return Err(missing(field, &here)),
            }
        }
        if entries.len() != fields.len() {
            entries.retain(|k, _| fields.iter().any(|f| f.name == k.as_str()));
        }
        return Ok(());
    }
    // Renamed fields: values move from their wire names to declared names.
    let mut wire = std::mem::take(entries);
    for field in fields {
        let here = Path::Key(path, field.wire_name);
        let v = match wire.remove(field.wire_name) {
            Some(mut v) => {
                field.schema.decode_in(&mut v, &here, depth + 1)?;
                v
            }
            None if field.schema.is_optional() => Value::Null,
            None => return Err(missing(field, &here)),
        };
        entries.insert(field.name.to_string(), v);
    }
    Ok(())
}

/// Where a value sits in the decoded document, built on the stack while
/// decoding and turned into text (`updates[1].quantity`) only for an error.
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl Path<'_> {
    fn render(&self) -> String {
        let mut out = String::new();
        self.render_into(&mut out);
        out
    }

    fn render_into(&self, out: &mut String) {
        match self {
            Path::Root => {}
            Path::Key(parent, key) => {
                parent.render_into(out);
                push_key(out, key);
            }
            Path::Index(parent, i) => {
                parent.render_into(out);
                out.push_str(&format!("[{i}]"));
            }
        }
    }
}

fn push_key(path: &mut String, key: &str) {
    let plain = !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
    } else {
        path.push_str(&format!("[{key:?}]"));
    }
}

fn mismatch(path: &Path<'_>, expected: String, value: &Value) -> DecodeError {
    DecodeError {
        path: path.render(),
        expected,
        got: describe_value(value),
    }
}

/// A short description of a value for error messages: strings quoted (and
/// shortened), numbers and booleans as written, `an object`, `a list`, `null`.
pub fn describe_value(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            const MAX: usize = 40;
            if s.chars().count() > MAX {
                let short: String = s.chars().take(MAX).collect();
                format!("{:?}", format!("{short}..."))
            } else {
                format!("{s:?}")
            }
        }
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// An Int from a JSON number: integers, and floats with no fractional part.
fn as_int(value: &Value) -> Option<i64> {
    let n = value.as_number()?;
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    if f.fract() == 0.0 && (-9.2e18..=9.2e18).contains(&f) {
        // In range and integral: the cast is exact enough for an Int.
        Some(f as i64)
    } else {
        None
    }
}

/// A JSON number from an f64 (non-finite values become `null`, which
/// arithmetic helpers prevent by failing first).
pub(crate) fn float_value(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// Parses an absolute URL (scheme and host required for http/https).
pub(crate) fn parse_url(s: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(s).map_err(|e| e.to_string())?;
    if matches!(url.scheme(), "http" | "https") && url.host_str().is_none_or(str::is_empty) {
        return Err("missing host".into());
    }
    Ok(url)
}

/// `%XX`-decodes the user name or password of a URL (`Url::username`
/// keeps them encoded); `None` when it is not valid UTF-8 once decoded.
#[cfg(any(feature = "email", feature = "email_in"))]
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Parses a duration literal: `500ms`, `30s`, `2m`, `1h`, `1d`, combinations
/// like `1h30m`, or a plain number of milliseconds.
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(ms) = s.parse::<i64>() {
        return (ms >= 0).then_some(ms);
    }
    let mut total: i64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total = total.checked_add(n.checked_mul(factor)?)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn update() -> Schema {
        Schema::Record(vec![
            FieldSchema::renamed("item", "Item-Name", Schema::String),
            FieldSchema::new("action", Schema::Literals(vec!["add", "remove"])),
            FieldSchema::new("quantity", Schema::Int),
            FieldSchema::new("note", Schema::optional(Schema::String)),
        ])
    }

    fn event() -> Schema {
        Schema::Record(vec![
            FieldSchema::new("event", Schema::Literals(vec!["INVENTORY_UPDATE"])),
            FieldSchema::new("updates", Schema::list(update())),
        ])
    }

    #[test]
    fn decodes_and_renames() {
        let v = json!({"event": "INVENTORY_UPDATE", "extra": 1, "updates": [
            {"Item-Name": "w", "action": "add", "quantity": 2}
        ]});
        let d = event().decode(&v).unwrap();
        assert_eq!(
            d,
            json!({"event": "INVENTORY_UPDATE", "updates": [
                {"item": "w", "action": "add", "quantity": 2, "note": null}
            ]})
        );
        let back = event().encode(&d);
        assert_eq!(back["updates"][0]["Item-Name"], json!("w"));
        assert!(back["updates"][0].get("item").is_none());
    }

    #[test]
    fn errors_name_renamed_fields_as_on_the_wire() {
        let e = update()
            .decode(&json!({"action": "add", "quantity": 1}))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"["Item-Name"]: missing field, expected String"#
        );
    }

    #[test]
    fn error_names_path_and_types() {
        let v = json!({"event": "INVENTORY_UPDATE", "updates": [
            {"Item-Name": "w", "action": "add", "quantity": 2},
            {"Item-Name": "g", "action": "add", "quantity": "five"}
        ]});
        let e = event().decode(&v).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"updates[1].quantity: expected Int, got "five""#
        );

        let v = json!({"event": "INVENTORY_UPDATE", "updates": [{"Item-Name": "w", "action": "move", "quantity": 1}]});
        assert_eq!(
            event().decode(&v).unwrap_err().to_string(),
            r#"updates[0].action: expected "add" | "remove", got "move""#
        );
        let v =
            json!({"event": "INVENTORY_UPDATE", "updates": [{"Item-Name": "w", "action": "add"}]});
        assert_eq!(
            event().decode(&v).unwrap_err().to_string(),
            "updates[0].quantity: missing field, expected Int"
        );
        let v = json!({"event": "INVENTORY_UPDATE", "updates": {"a": 1}});
        assert_eq!(
            event().decode(&v).unwrap_err().to_string(),
            "updates: expected [an object], got an object"
        );
        assert_eq!(
            Schema::Int.decode(&json!([1])).unwrap_err().to_string(),
            "expected Int, got a list"
        );
        let long = "x".repeat(100);
        let e = Schema::Int.decode(&json!(long)).unwrap_err().to_string();
        assert!(e.len() < 70, "{e}");
        let e = Schema::map(Schema::Int)
            .decode(&json!({"a b": true}))
            .unwrap_err();
        assert_eq!(e.to_string(), r#"["a b"]: expected Int, got true"#);
    }

    #[test]
    fn decode_owned_checks_in_place() {
        let rec = Schema::Record(vec![
            FieldSchema::new("n", Schema::Int),
            FieldSchema::new("f", Schema::Float),
            FieldSchema::new("d", Schema::Duration),
            FieldSchema::new("note", Schema::optional(Schema::String)),
        ]);
        let v = json!({"n": 2.0, "f": 1, "d": "2s", "extra": [1, 2]});
        assert_eq!(
            rec.decode_owned(v.clone()).unwrap(),
            json!({"n": 2, "f": 1.0, "d": 2000, "note": null})
        );
        assert_eq!(rec.decode(&v).unwrap(), rec.decode_owned(v).unwrap());
        let e = Schema::list(rec)
            .decode_owned(json!([{"n": 1, "f": 1, "d": 1}, {"n": 1, "f": "x", "d": 1}]))
            .unwrap_err();
        assert_eq!(e.to_string(), r#"[1].f: expected Float, got "x""#);
    }

    #[test]
    fn scalars() {
        assert_eq!(Schema::Float.decode(&json!(3)).unwrap(), json!(3.0));
        assert_eq!(Schema::Int.decode(&json!(3.0)).unwrap(), json!(3));
        assert!(Schema::Int.decode(&json!(3.5)).is_err());
        assert_eq!(
            Schema::Duration.decode(&json!("1m30s")).unwrap(),
            json!(90_000)
        );
        assert_eq!(Schema::Duration.decode(&json!(250)).unwrap(), json!(250));
        assert!(Schema::Duration.decode(&json!("soon")).is_err());
        assert!(Schema::Time.decode(&json!("2024-01-02T03:04:05Z")).is_ok());
        assert!(Schema::Time.decode(&json!("yesterday")).is_err());
        assert!(Schema::Url.decode(&json!("https://x.example/a")).is_ok());
        assert!(Schema::Url.decode(&json!("not a url")).is_err());
        assert!(Schema::Bytes.decode(&json!("aGVsbG8=")).is_ok());
        assert!(Schema::Bytes.decode(&json!("!!")).is_err());
        assert_eq!(
            Schema::optional(Schema::Int).decode(&Value::Null).unwrap(),
            Value::Null
        );
        assert_eq!(
            Schema::Json.decode(&json!({"a": [1]})).unwrap(),
            json!({"a": [1]})
        );
    }

    #[test]
    fn refs_and_recursion() {
        register_types(&[
            (
                "SchemaTestNode",
                Schema::Record(vec![
                    FieldSchema::new("name", Schema::String),
                    FieldSchema::new("children", Schema::list(Schema::Ref("SchemaTestNode"))),
                ]),
            ),
            ("SchemaTestMaybe", Schema::optional(Schema::Int)),
        ]);
        let tree = Schema::Ref("SchemaTestNode");
        let v = json!({"name": "a", "children": [{"name": "b", "children": []}]});
        assert_eq!(tree.decode(&v).unwrap(), v);
        let bad = json!({"name": "a", "children": [{"name": 1, "children": []}]});
        assert_eq!(
            tree.decode(&bad).unwrap_err().to_string(),
            "children[0].name: expected String, got 1"
        );
        assert_eq!(
            tree.decode(&json!("x")).unwrap_err().to_string(),
            r#"expected SchemaTestNode, got "x""#
        );
        let rec = Schema::Record(vec![FieldSchema::new("m", Schema::Ref("SchemaTestMaybe"))]);
        assert_eq!(rec.decode(&json!({})).unwrap(), json!({"m": null}));
        assert!(Schema::Ref("SchemaTestNope").decode(&json!(1)).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        assert_eq!(parse_duration_ms("2m"), Some(120_000));
        assert_eq!(parse_duration_ms("1d"), Some(86_400_000));
        assert_eq!(parse_duration_ms("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration_ms("10"), Some(10));
        assert_eq!(parse_duration_ms("s"), None);
        assert_eq!(parse_duration_ms("5 parsecs"), None);
        assert_eq!(parse_duration_ms("99999999999999999d"), None);
    }
}
