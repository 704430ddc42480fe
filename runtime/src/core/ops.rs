//! Expression helpers that generated code calls for the language's operators
//! and methods.
//!
//! The type checker has already proved the operands' types, so each helper
//! dispatches on the JSON shape: two integers are `Int`s, a number with a
//! fraction is a `Float`, a string beside an integer in `+`/`-` is `Time ±
//! Duration`, two strings in `-` are `Time - Time`. Anything the checker
//! should have rejected becomes a [`RunError`], never a panic.

use std::cmp::Ordering;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use crate::core::error::RunError;
use crate::core::schema::{float_value, Schema};

/// A numeric operand.
#[derive(Clone, Copy)]
enum Num {
    Int(i64),
    Float(f64),
}

fn num(v: &Value) -> Option<Num> {
    let n = v.as_number()?;
    if let Some(i) = n.as_i64() {
        Some(Num::Int(i))
    } else {
        n.as_f64().map(Num::Float)
    }
}

fn to_f64(n: Num) -> f64 {
    match n {
        // Int → Float widening, as the language allows.
        Num::Int(i) => i as f64,
        Num::Float(f) => f,
    }
}

fn finite(op: &str, f: f64) -> Result<Value, RunError> {
    if f.is_finite() {
        Ok(float_value(f))
    } else {
        Err(RunError::new(format!(
            "{op}: result is not a finite number"
        )))
    }
}

fn type_error(op: &str, a: &Value, b: &Value) -> RunError {
    RunError::new(format!(
        "cannot apply `{op}` to {} and {}",
        crate::core::schema::describe_value(a),
        crate::core::schema::describe_value(b)
    ))
}

/// Parses a `Time` value (RFC 3339).
pub fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    let s = v.as_str()?;
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Formats a `Time` value: RFC 3339 in UTC, with fractional seconds only when present.
pub fn format_time(t: DateTime<Utc>) -> Value {
    Value::String(t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

fn time_plus(t: &Value, ms: i64, op: &str) -> Result<Value, RunError> {
    let time = parse_time(t).ok_or_else(|| RunError::new(format!("`{op}`: {t} is not a Time")))?;
    let out = time
        .checked_add_signed(chrono::Duration::milliseconds(ms))
        .ok_or_else(|| RunError::new(format!("`{op}`: time out of range")))?;
    Ok(format_time(out))
}

fn arith(
    op: &str,
    a: &Value,
    b: &Value,
    int: fn(i64, i64) -> Option<i64>,
    float: fn(f64, f64) -> f64,
) -> Result<Value, RunError> {
    match (num(a), num(b)) {
        (Some(Num::Int(x)), Some(Num::Int(y))) => int(x, y)
            .map(Value::from)
            .ok_or_else(|| RunError::new(format!("integer overflow in {x} {op} {y}"))),
        (Some(x), Some(y)) => finite(op, float(to_f64(x), to_f64(y))),
        _ => Err(type_error(op, a, b)),
    }
}

/// `a + b`: Int, Float, or `Time + Duration` (`Duration + Time` too).
pub fn add(a: &Value, b: &Value) -> Result<Value, RunError> {
    match (a, b) {
        (Value::String(_), Value::Number(_)) => time_plus(a, as_ms(b, "+")?, "+"),
        (Value::Number(_), Value::String(_)) => time_plus(b, as_ms(a, "+")?, "+"),
        _ => arith("+", a, b, i64::checked_add, |x, y| x + y),
    }
}

fn as_ms(v: &Value, op: &str) -> Result<i64, RunError> {
    v.as_i64()
        .ok_or_else(|| RunError::new(format!("`{op}`: {v} is not a Duration")))
}

/// `a - b`: Int, Float, `Time - Duration` → Time, `Time - Time` → Duration (ms).
pub fn sub(a: &Value, b: &Value) -> Result<Value, RunError> {
    match (a, b) {
        (Value::String(_), Value::Number(_)) => {
            let ms = as_ms(b, "-")?
                .checked_neg()
                .ok_or_else(|| RunError::new("`-`: duration out of range"))?;
            time_plus(a, ms, "-")
        }
        (Value::String(_), Value::String(_)) => match (parse_time(a), parse_time(b)) {
            (Some(x), Some(y)) => Ok(Value::from((x - y).num_milliseconds())),
            _ => Err(type_error("-", a, b)),
        },
        _ => arith("-", a, b, i64::checked_sub, |x, y| x - y),
    }
}

/// `a * b`.
pub fn mul(a: &Value, b: &Value) -> Result<Value, RunError> {
    arith("*", a, b, i64::checked_mul, |x, y| x * y)
}

fn is_zero(v: &Value) -> bool {
    match num(v) {
        Some(Num::Int(0)) => true,
        Some(Num::Float(f)) => f == 0.0,
        _ => false,
    }
}

/// `a / b`: Int division truncates; division by zero is an error.
pub fn div(a: &Value, b: &Value) -> Result<Value, RunError> {
    if is_zero(b) {
        return Err(RunError::new("division by zero"));
    }
    arith("/", a, b, i64::checked_div, |x, y| x / y)
}

/// `a % b`: remainder with the sign of `a`; by zero is an error.
pub fn rem(a: &Value, b: &Value) -> Result<Value, RunError> {
    if is_zero(b) {
        return Err(RunError::new("division by zero"));
    }
    arith("%", a, b, i64::checked_rem, |x, y| x % y)
}

/// `-a`.
pub fn neg(a: &Value) -> Result<Value, RunError> {
    match num(a) {
        Some(Num::Int(i)) => i
            .checked_neg()
            .map(Value::from)
            .ok_or_else(|| RunError::new(format!("integer overflow in -{i}"))),
        Some(Num::Float(f)) => finite("-", -f),
        None => Err(RunError::new(format!(
            "cannot negate {}",
            crate::core::schema::describe_value(a)
        ))),
    }
}

/// `not a`.
pub fn not(a: &Value) -> Result<Value, RunError> {
    match a {
        Value::Bool(b) => Ok(Value::Bool(!b)),
        _ => Err(RunError::new(format!(
            "`not` needs a Bool, got {}",
            crate::core::schema::describe_value(a)
        ))),
    }
}

/// Structural equality where `1 == 1.0` (Int and Float compare numerically).
pub fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => match (num(a), num(b)) {
            (Some(Num::Int(x)), Some(Num::Int(y))) => x == y,
            (Some(x), Some(y)) => to_f64(x) == to_f64(y),
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w)))
        }
        _ => a == b,
    }
}

/// `a == b`.
pub fn eq(a: &Value, b: &Value) -> Result<Value, RunError> {
    Ok(Value::Bool(equal(a, b)))
}

/// `a != b`.
pub fn ne(a: &Value, b: &Value) -> Result<Value, RunError> {
    Ok(Value::Bool(!equal(a, b)))
}

fn compare(op: &str, a: &Value, b: &Value) -> Result<Ordering, RunError> {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => match (num(a), num(b)) {
            (Some(Num::Int(x)), Some(Num::Int(y))) => Ok(x.cmp(&y)),
            (Some(x), Some(y)) => to_f64(x)
                .partial_cmp(&to_f64(y))
                .ok_or_else(|| type_error(op, a, b)),
            _ => Err(type_error(op, a, b)),
        },
        (Value::String(x), Value::String(y)) => match (parse_time(a), parse_time(b)) {
            // Times compare as instants, whatever their offsets.
            (Some(s), Some(t)) => Ok(s.cmp(&t)),
            _ => Ok(x.cmp(y)),
        },
        _ => Err(type_error(op, a, b)),
    }
}

/// `a < b` (numbers, strings, Times).
pub fn lt(a: &Value, b: &Value) -> Result<Value, RunError> {
    Ok(Value::Bool(compare("<", a, b)? == Ordering::Less))
}

/// `a <= b`.
pub fn le(a: &Value, b: &Value) -> Result<Value, RunError> {
    Ok(Value::Bool(compare("<=", a, b)? != Ordering::Greater))
}

/// `a > b`.
pub fn gt(a: &Value, b: &Value) -> Result<Value, RunError> {
    Ok(Value::Bool(compare(">", a, b)? == Ordering::Greater))
}

/// `a >= b`.
pub fn ge(a: &Value, b: &Value) -> Result<Value, RunError> {
    Ok(Value::Bool(compare(">=", a, b)? != Ordering::Less))
}

/// The value of a condition: only `true` is true (`null` and everything else is false).
pub fn truthy(v: &Value) -> bool {
    matches!(v, Value::Bool(true))
}

/// `a.name` and `a?.name`: the field, or `null` when `a` is not an object or
/// has no such field.
pub fn field(v: &Value, name: &str) -> Value {
    match v {
        Value::Object(m) => m.get(name).cloned().unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// `a.name` without cloning: a borrowed field, or `null` (generated code
/// reads field chains such as `trigger.body.updates` through it, cloning only
/// the value it finally needs).
pub fn get<'a>(v: &'a Value, name: &str) -> &'a Value {
    static NULL: Value = Value::Null;
    match v {
        Value::Object(m) => m.get(name).unwrap_or(&NULL),
        _ => &NULL,
    }
}

/// The value at `path` in `v`, moved out of it (what [`get`] would borrow;
/// `null` where a field is missing). For a `respond` whose body is part of
/// a step's output that nothing reads afterwards: no copy.
pub fn take(mut v: Value, path: &[&str]) -> Value {
    for name in path {
        v = match v {
            Value::Object(mut m) => m.remove(*name).unwrap_or(Value::Null),
            _ => Value::Null,
        };
    }
    v
}

/// `.text` / `.bytes` of a `File`: the content, or an error for a file too
/// large to hold in a run (passed by reference: `core::files::INLINE_LIMIT`)
/// that says how to read it instead.
pub fn file_content(file: &Value, field: &str) -> Result<Value, RunError> {
    // `files.first()?.text` of no file at all.
    if file.is_null() {
        return Ok(Value::Null);
    }
    if let Some(content) = file.get(field) {
        return Ok(content.clone());
    }
    // A File holds its content once, as `bytes`; `.text` is its UTF-8
    // reading (invalid sequences replaced).
    if let (Some(Value::String(bytes)), "text") = (file.get("bytes"), field) {
        let data = crate::core::bytes::decode(bytes)
            .map_err(|e| RunError::new(format!("`.text` of a File: its bytes are {e}")))?;
        return Ok(Value::String(String::from_utf8_lossy(&data).into_owned()));
    }
    let name = file.get("name").and_then(Value::as_str).unwrap_or("a file");
    let size = file.get("size").and_then(Value::as_u64).unwrap_or(0);
    Err(RunError::new(format!(
        "`.{field}` of {name}: the file ({size} bytes) is too large to hold in a run; read it row by row with `csv.rows`, or move it with `file.move`"
    )))
}

/// `respond STATUS, ...`: the status as a `u16` (the checker guarantees an
/// Int; a computed one out of range is a run error).
pub fn status(v: &Value) -> Result<u16, RunError> {
    v.as_i64()
        .and_then(|n| u16::try_from(n).ok())
        .filter(|n| (100..=599).contains(n))
        .ok_or_else(|| RunError::new(format!("respond: {} is not an HTTP status", display(v))))
}

/// `parallel N`: the limit as a `usize`, at least 1.
pub fn limit(v: &Value) -> Result<usize, RunError> {
    v.as_i64()
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| *n >= 1)
        .ok_or_else(|| RunError::new(format!("parallel: {} is not a positive Int", display(v))))
}

/// A dedupe key from a value: `null` (e.g. a missing header) means "do not
/// dedupe this request".
pub fn dedupe_key(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        other => Some(display(other)),
    }
}

/// `a[i]`: list element (out of range or negative → `null`) or map entry by
/// string key (missing → `null`).
pub fn index(v: &Value, i: &Value) -> Value {
    match (v, i) {
        (Value::Array(items), _) => i
            .as_i64()
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| items.get(i))
            .cloned()
            .unwrap_or(Value::Null),
        (Value::Object(m), Value::String(k)) => m.get(k).cloned().unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// `a ?? b`: `a` unless it is `null`. (Both sides are evaluated; generated
/// code that needs laziness branches on `a.is_null()` itself.)
pub fn coalesce(a: Value, b: Value) -> Value {
    if a.is_null() {
        b
    } else {
        a
    }
}

/// How a value prints inside `${}`: strings raw, numbers plain (`5`, `2.5`),
/// booleans and `null` as words, lists and records as compact JSON.
pub fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(_) => match num(v) {
            Some(Num::Int(i)) => i.to_string(),
            Some(Num::Float(f)) => f.to_string(),
            None => v.to_string(),
        },
        _ => v.to_string(),
    }
}

/// Appends [`display`] of `v` to `out` (string interpolation without
/// intermediate strings).
pub fn display_into(out: &mut String, v: &Value) {
    match v {
        Value::String(s) => out.push_str(s),
        other => out.push_str(&display(other)),
    }
}

/// String interpolation: concatenates [`display`] of each part. Literal
/// text is passed as `Value::String`.
pub fn interp(parts: &[Value]) -> String {
    parts.iter().map(display).collect()
}

/// `x as T`: validates and converts through the schema; the error names the
/// JSON path (`items[2].id: expected Int, got "x"`).
pub fn as_type(v: &Value, schema: &Schema) -> Result<Value, RunError> {
    let converted = match (schema, v) {
        // `5 as String`, `true as String`: the printed form.
        (Schema::String, Value::Number(_) | Value::Bool(_)) => Ok(Value::String(display(v))),
        // `"42" as Int`, `"true" as Bool`: strings are parsed, as in CSV cells.
        _ => schema.decode_text_cells(v),
    };
    converted.map_err(|e| RunError::new(format!("`as` conversion failed: {e}")))
}

/// The items of a list for `for` loops; `null` iterates zero times.
pub fn iter(v: &Value) -> Result<Vec<Value>, RunError> {
    match v {
        Value::Array(items) => Ok(items.clone()),
        Value::Null => Ok(Vec::new()),
        _ => Err(RunError::new(format!(
            "cannot iterate over {}",
            crate::core::schema::describe_value(v)
        ))),
    }
}

fn not_a(what: &str, method: &str, v: &Value) -> RunError {
    RunError::new(format!(
        "`.{method}()` needs {what}, got {}",
        crate::core::schema::describe_value(v)
    ))
}

/// `.len()` of a list, string (characters) or map.
pub fn len(v: &Value) -> Result<Value, RunError> {
    let n = match v {
        Value::Array(a) => a.len(),
        Value::String(s) => s.chars().count(),
        Value::Object(m) => m.len(),
        _ => return Err(not_a("a list, string or map", "len", v)),
    };
    Ok(Value::from(n))
}

/// `.first()`: the first item or `null`.
pub fn first(v: &Value) -> Result<Value, RunError> {
    match v {
        Value::Array(a) => Ok(a.first().cloned().unwrap_or(Value::Null)),
        _ => Err(not_a("a list", "first", v)),
    }
}

/// `response.link(rel)`: the URL of the response's RFC 8288 `Link` header
/// entry with relation `rel` (`<https://...?page=3>; rel="next"`), or
/// `null`. Relations are compared without case; an entry may name several
/// (`rel="next last"`).
pub fn link(response: &Value, rel: &Value) -> Result<Value, RunError> {
    let rel = rel.as_str().ok_or_else(|| not_a("a String", "link", rel))?;
    let header = get(get(response, "headers"), "link");
    let Some(header) = header.as_str() else {
        return Ok(Value::Null);
    };
    Ok(link_target(header, rel).map_or(Value::Null, Value::from))
}

fn link_target(header: &str, rel: &str) -> Option<String> {
    let mut rest = header;
    loop {
        let open = rest.find('<')?;
        let close = open + rest[open..].find('>')?;
        let target = &rest[open + 1..close];
        let params_end = rest[close..].find('<').map_or(rest.len(), |i| close + i);
        let params = &rest[close + 1..params_end];
        let names_rel = params.split(';').any(|p| {
            let Some((name, value)) = p.split_once('=') else {
                return false;
            };
            name.trim().eq_ignore_ascii_case("rel")
                && value
                    .trim()
                    .trim_end_matches(',')
                    .trim()
                    .trim_matches('"')
                    .split_whitespace()
                    .any(|r| r.eq_ignore_ascii_case(rel))
        });
        if names_rel {
            return Some(target.trim().to_string());
        }
        rest = &rest[params_end..];
    }
}

/// The URL of the page after `current` in `for page in http.pages(...)`:
/// `next` (what the `next:` lambda returned) resolved against the current
/// page's URL, or `null` to stop. A next page equal to the current one
/// would loop for ever: that is an error.
pub fn next_page(current: &Value, next: Value) -> Result<Value, RunError> {
    let Some(text) = next.as_str().filter(|t| !t.is_empty()) else {
        return Ok(Value::Null);
    };
    let base = current.as_str().and_then(|c| reqwest::Url::parse(c).ok());
    let resolved = match base {
        Some(base) => base.join(text).map(String::from).map_err(|e| {
            RunError::new(format!("http.pages: the next page's URL is invalid: {e}"))
        })?,
        None => text.to_string(),
    };
    if Some(resolved.as_str()) == current.as_str() {
        return Err(RunError::new(
            "http.pages: `next` gave the URL of the page just fetched (it would be fetched for ever)",
        ));
    }
    Ok(Value::String(resolved))
}

/// `.contains(x)`: list membership, substring, or map key.
pub fn contains(v: &Value, x: &Value) -> Result<Value, RunError> {
    let found = match (v, x) {
        (Value::Array(a), _) => a.iter().any(|item| equal(item, x)),
        (Value::String(s), Value::String(sub)) => s.contains(sub.as_str()),
        (Value::Object(m), Value::String(k)) => m.contains_key(k),
        _ => return Err(not_a("a list, string or map", "contains", v)),
    };
    Ok(Value::Bool(found))
}

/// `.join(sep)`: items printed as in interpolation, separated by `sep`.
pub fn join(v: &Value, sep: &Value) -> Result<Value, RunError> {
    let items = match v {
        Value::Array(a) => a,
        _ => return Err(not_a("a list", "join", v)),
    };
    let sep = display(sep);
    Ok(Value::String(
        items.iter().map(display).collect::<Vec<_>>().join(&sep),
    ))
}

/// `.sum()`: Int when all items are Ints (overflow is an error), else Float; `0` when empty.
pub fn sum(v: &Value) -> Result<Value, RunError> {
    let items = match v {
        Value::Array(a) => a,
        _ => return Err(not_a("a list", "sum", v)),
    };
    let mut total = Value::from(0);
    for item in items {
        total = add(&total, item)?;
    }
    Ok(total)
}

/// `.map(x => ...)`.
pub fn map(v: &Value, f: impl Fn(&Value) -> Result<Value, RunError>) -> Result<Value, RunError> {
    match v {
        Value::Array(a) => Ok(Value::Array(a.iter().map(f).collect::<Result<_, _>>()?)),
        _ => Err(not_a("a list", "map", v)),
    }
}

/// `.filter(x => ...)`: keeps items for which `f` returns `true`.
pub fn filter(v: &Value, f: impl Fn(&Value) -> Result<Value, RunError>) -> Result<Value, RunError> {
    match v {
        Value::Array(a) => {
            let mut out = Vec::new();
            for item in a {
                if truthy(&f(item)?) {
                    out.push(item.clone());
                }
            }
            Ok(Value::Array(out))
        }
        _ => Err(not_a("a list", "filter", v)),
    }
}

fn string_method(v: &Value, method: &str, f: fn(&str) -> String) -> Result<Value, RunError> {
    match v {
        Value::String(s) => Ok(Value::String(f(s))),
        _ => Err(not_a("a String", method, v)),
    }
}

/// `.lower()`.
pub fn lower(v: &Value) -> Result<Value, RunError> {
    string_method(v, "lower", str::to_lowercase)
}

/// `.upper()`.
pub fn upper(v: &Value) -> Result<Value, RunError> {
    string_method(v, "upper", str::to_uppercase)
}

/// `.trim()`.
pub fn trim(v: &Value) -> Result<Value, RunError> {
    string_method(v, "trim", |s| s.trim().to_string())
}

/// `.split(sep)`: a list of strings.
pub fn split(v: &Value, sep: &Value) -> Result<Value, RunError> {
    match (v, sep) {
        (Value::String(s), Value::String(sep)) => Ok(Value::Array(
            s.split(sep.as_str())
                .map(|p| Value::String(p.to_string()))
                .collect(),
        )),
        _ => Err(not_a("a String and a String separator", "split", v)),
    }
}

/// Builds a record value from `(name, value)` pairs (record literals).
pub fn record<K: Into<String>>(entries: impl IntoIterator<Item = (K, Value)>) -> Value {
    // Inserted one by one: for the few fields of a record literal this is
    // cheaper than `collect`, which buffers, sorts and bulk-builds. A later
    // duplicate replaces an earlier one either way.
    let mut map = Map::new();
    for (k, v) in entries {
        map.insert(k.into(), v);
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_content_is_read_derived_or_refused() {
        use serde_json::json;
        let file = json!({ "name": "a.csv", "size": 3, "bytes": "YSxi" });
        assert_eq!(file_content(&file, "text").unwrap(), "a,b");
        assert_eq!(file_content(&file, "bytes").unwrap(), "YSxi");
        assert_eq!(file_content(&Value::Null, "text").unwrap(), Value::Null);
        let big = json!({ "name": "big.csv", "size": 9_000_000_000u64 });
        let err = file_content(&big, "text").unwrap_err().to_string();
        assert!(err.contains("big.csv") && err.contains("csv.rows"), "{err}");
    }

    #[test]
    fn take_moves_out_what_get_would_borrow() {
        use serde_json::json;
        let output = || json!({ "status": 200, "body": { "ok": true, "n": [1, 2] } });
        for path in [
            &[][..],
            &["body"],
            &["body", "n"],
            &["body", "nope"],
            &["status", "x"],
        ] {
            let mut expected = output();
            for name in path {
                expected = get(&expected, name).clone();
            }
            assert_eq!(take(output(), path), expected, "{path:?}");
        }
    }

    #[test]
    fn link_finds_a_relation_among_several() {
        let resp = |link: &str| serde_json::json!({ "headers": { "link": link } });
        let header = r#"<https://api.test/items?page=1>; rel="first", <https://api.test/items?page=3>; rel="next last""#;
        let get = |rel: &str| link(&resp(header), &Value::from(rel)).unwrap();
        assert_eq!(get("next"), "https://api.test/items?page=3");
        assert_eq!(get("LAST"), "https://api.test/items?page=3");
        assert_eq!(get("first"), "https://api.test/items?page=1");
        assert_eq!(get("prev"), Value::Null);
        let unquoted = link(&resp("</items?page=2>; rel=next"), &Value::from("next")).unwrap();
        assert_eq!(unquoted, "/items?page=2");
        let none = link(&serde_json::json!({ "headers": {} }), &Value::from("next")).unwrap();
        assert_eq!(none, Value::Null);
    }

    #[test]
    fn the_next_page_is_resolved_and_never_the_same_page() {
        let current = Value::from("https://api.test/items?page=2");
        let next = |v: Value| next_page(&current, v);
        assert_eq!(
            next(Value::from("/items?page=3")).unwrap(),
            "https://api.test/items?page=3"
        );
        assert_eq!(
            next(Value::from("https://other.test/x")).unwrap(),
            "https://other.test/x"
        );
        assert_eq!(next(Value::Null).unwrap(), Value::Null);
        assert_eq!(next(Value::from("")).unwrap(), Value::Null);
        assert!(next(Value::from("?page=2")).is_err());
    }
    use serde_json::json;

    #[test]
    fn arithmetic() {
        assert_eq!(add(&json!(2), &json!(3)).unwrap(), json!(5));
        assert_eq!(add(&json!(2), &json!(0.5)).unwrap(), json!(2.5));
        assert_eq!(div(&json!(7), &json!(2)).unwrap(), json!(3));
        assert_eq!(div(&json!(7.0), &json!(2)).unwrap(), json!(3.5));
        assert_eq!(rem(&json!(-7), &json!(2)).unwrap(), json!(-1));
        assert!(div(&json!(1), &json!(0))
            .unwrap_err()
            .message
            .contains("division by zero"));
        assert!(rem(&json!(1), &json!(0.0)).is_err());
        assert!(add(&json!(i64::MAX), &json!(1))
            .unwrap_err()
            .message
            .contains("overflow"));
        assert!(div(&json!(i64::MIN), &json!(-1)).is_err());
        assert!(neg(&json!(i64::MIN)).is_err());
        assert_eq!(neg(&json!(5)).unwrap(), json!(-5));
        assert!(mul(&json!(1e308), &json!(10.0)).is_err());
        assert!(add(&json!("a"), &json!("b")).is_err());
        assert!(add(&json!(true), &json!(1)).is_err());
    }

    #[test]
    fn time_arithmetic() {
        let t = json!("2024-01-01T00:00:00Z");
        assert_eq!(
            add(&t, &json!(90_000)).unwrap(),
            json!("2024-01-01T00:01:30Z")
        );
        assert_eq!(
            sub(&t, &json!(1000)).unwrap(),
            json!("2023-12-31T23:59:59Z")
        );
        assert_eq!(
            sub(
                &json!("2024-01-01T01:00:00+01:00"),
                &json!("2023-12-31T23:00:00Z")
            )
            .unwrap(),
            json!(3_600_000)
        );
        assert!(add(&json!("nope"), &json!(1)).is_err());
        assert_eq!(
            lt(
                &json!("2024-01-01T01:00:00+02:00"),
                &json!("2024-01-01T00:00:00Z")
            )
            .unwrap(),
            json!(true)
        );
    }

    #[test]
    fn comparisons() {
        assert_eq!(eq(&json!(1), &json!(1.0)).unwrap(), json!(true));
        assert_eq!(
            eq(&json!({"a": [1]}), &json!({"a": [1.0]})).unwrap(),
            json!(true)
        );
        assert_eq!(ne(&json!("a"), &json!("b")).unwrap(), json!(true));
        assert_eq!(lt(&json!(1), &json!(1.5)).unwrap(), json!(true));
        assert_eq!(ge(&json!("b"), &json!("a")).unwrap(), json!(true));
        assert_eq!(le(&json!(2), &json!(2)).unwrap(), json!(true));
        assert_eq!(gt(&json!(2), &json!(3)).unwrap(), json!(false));
        assert!(lt(&json!(1), &json!("a")).is_err());
        assert!(truthy(&json!(true)));
        assert!(!truthy(&Value::Null));
        assert_eq!(not(&json!(false)).unwrap(), json!(true));
    }

    #[test]
    fn access() {
        let v = json!({"a": {"b": [10, 20]}});
        assert_eq!(field(&field(&v, "a"), "b"), json!([10, 20]));
        assert_eq!(field(&v, "zz"), Value::Null);
        assert_eq!(field(&Value::Null, "a"), Value::Null);
        assert_eq!(index(&json!([10, 20]), &json!(1)), json!(20));
        assert_eq!(index(&json!([10, 20]), &json!(5)), Value::Null);
        assert_eq!(index(&json!([10, 20]), &json!(-1)), Value::Null);
        assert_eq!(index(&json!({"k": 1}), &json!("k")), json!(1));
        assert_eq!(coalesce(Value::Null, json!(3)), json!(3));
        assert_eq!(coalesce(json!(0), json!(3)), json!(0));
    }

    #[test]
    fn interpolation() {
        let s = interp(&[
            json!("n="),
            json!(5),
            json!(" f="),
            json!(2.5),
            json!(" g="),
            json!(3.0),
            json!(" "),
            json!({"a": "b"}),
            json!(" "),
            json!(true),
            json!(" "),
            Value::Null,
        ]);
        assert_eq!(s, r#"n=5 f=2.5 g=3 {"a":"b"} true null"#);
    }

    #[test]
    fn methods() {
        let l = json!([1, 2, 3]);
        assert_eq!(len(&l).unwrap(), json!(3));
        assert_eq!(len(&json!("héllo")).unwrap(), json!(5));
        assert_eq!(first(&l).unwrap(), json!(1));
        assert_eq!(first(&json!([])).unwrap(), Value::Null);
        assert_eq!(contains(&l, &json!(2.0)).unwrap(), json!(true));
        assert_eq!(contains(&json!("abc"), &json!("bc")).unwrap(), json!(true));
        assert_eq!(join(&json!(["a", 1]), &json!(",")).unwrap(), json!("a,1"));
        assert_eq!(sum(&l).unwrap(), json!(6));
        assert_eq!(sum(&json!([1, 0.5])).unwrap(), json!(1.5));
        assert_eq!(sum(&json!([])).unwrap(), json!(0));
        assert!(sum(&json!([i64::MAX, 1])).is_err());
        let doubled = map(&l, |x| mul(x, &json!(2))).unwrap();
        assert_eq!(doubled, json!([2, 4, 6]));
        let odd = filter(&l, |x| eq(&rem(x, &json!(2))?, &json!(1))).unwrap();
        assert_eq!(odd, json!([1, 3]));
        assert!(map(&l, |_| Err(RunError::new("boom"))).is_err());
        assert_eq!(lower(&json!("AbC")).unwrap(), json!("abc"));
        assert_eq!(upper(&json!("AbC")).unwrap(), json!("ABC"));
        assert_eq!(trim(&json!("  x ")).unwrap(), json!("x"));
        assert_eq!(
            split(&json!("a,b"), &json!(",")).unwrap(),
            json!(["a", "b"])
        );
        assert!(lower(&json!(1)).is_err());
        assert_eq!(iter(&Value::Null).unwrap(), Vec::<Value>::new());
        assert!(iter(&json!("x")).is_err());
        assert_eq!(record([("a", json!(1))]), json!({"a": 1}));
    }

    #[test]
    fn as_conversion() {
        let e = as_type(
            &json!({"id": "x"}),
            &Schema::Record(vec![crate::core::schema::FieldSchema::new(
                "id",
                Schema::Int,
            )]),
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            r#"`as` conversion failed: id: expected Int, got "x""#
        );
        assert_eq!(as_type(&json!(3), &Schema::Float).unwrap(), json!(3.0));
    }
}
