//! The nesting limit of JSON accepted from outside and written to the store.
//!
//! serde_json refuses to parse text nested deeper than 128 levels. A body
//! just under that limit parses at intake, but once wrapped in the trigger
//! record (`{"body": …}`) and written to the store it can no longer be read
//! back, and every claim or listing that meets the row fails. So input is
//! held to [`MAX_DEPTH`] levels — far below the parser's limit, far above
//! any real payload — before it is parsed, and values are held to it before
//! they are stored.
//!
//! Depth counts open arrays and objects: `1` and `"x"` are depth 0, `[]`
//! is 1, `{"a": [1]}` is 2.

use serde_json::Value;

/// The deepest nesting accepted, in levels of arrays and objects.
pub const MAX_DEPTH: usize = 64;

/// Why input was refused: it nests deeper than [`MAX_DEPTH`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooDeep;

impl std::fmt::Display for TooDeep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "nests deeper than {MAX_DEPTH} levels")
    }
}

impl std::error::Error for TooDeep {}

/// Checks JSON text before it is parsed: one pass over the bytes counting
/// brackets outside strings, so it is cheap, allocates nothing and cannot
/// overflow the stack whatever the input. Text that is not JSON passes (the
/// parser reports it); only the depth is judged here.
pub fn check_text(bytes: &[u8]) -> Result<(), TooDeep> {
    // Text with no more opening brackets than the limit, wherever they
    // are, cannot nest deeper: a count the compiler vectorises (about a
    // tenth of the byte-by-byte scan's cost on a typical webhook body).
    let opening = bytes.iter().filter(|&&b| b == b'[' || b == b'{').count();
    if opening <= MAX_DEPTH {
        return Ok(());
    }
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(TooDeep);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Checks a value before it is stored (a step's output): stops at the
/// first container past [`MAX_DEPTH`], so the recursion is at most that
/// deep whatever the value. Allocates nothing and skips scalars: it runs on
/// every step's output (a queue of every node, each container's children
/// behind a boxed iterator, cost the relay about 1,600 instructions a
/// request).
pub fn check_value(value: &Value) -> Result<(), TooDeep> {
    within(value, MAX_DEPTH)
}

/// Whether `value` nests at most `levels` levels of arrays and objects.
fn within(value: &Value, levels: usize) -> Result<(), TooDeep> {
    let check = |child: &Value| match child {
        Value::Array(_) | Value::Object(_) => within(child, levels - 1),
        _ => Ok(()),
    };
    match value {
        Value::Array(_) | Value::Object(_) if levels == 0 => Err(TooDeep),
        Value::Array(items) => items.iter().try_for_each(check),
        Value::Object(fields) => fields.values().try_for_each(check),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn text_at_the_limit_passes_and_one_deeper_is_refused() {
        assert_eq!(check_text(nested(MAX_DEPTH).as_bytes()), Ok(()));
        assert_eq!(check_text(nested(MAX_DEPTH + 1).as_bytes()), Err(TooDeep));
        assert_eq!(check_text(nested(127).as_bytes()), Err(TooDeep));
    }

    #[test]
    fn siblings_do_not_add_up() {
        let wide = format!("[{}]", vec![nested(MAX_DEPTH - 1); 100].join(","));
        assert_eq!(check_text(wide.as_bytes()), Ok(()));
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        let quoted = format!(r#"{{"a": "{}", "b": "\"[[[", "c": "\\"}}"#, "[".repeat(200));
        assert_eq!(check_text(quoted.as_bytes()), Ok(()));
        // An escaped quote does not end the string; an escaped backslash does not escape it.
        let deep_after_string = format!(r#"["\\"{}"#, "{".repeat(MAX_DEPTH));
        assert_eq!(check_text(deep_after_string.as_bytes()), Err(TooDeep));
    }

    #[test]
    fn objects_count_like_arrays() {
        let deep = format!(
            "{}{}",
            r#"{"a":"#.repeat(MAX_DEPTH + 1),
            "}".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(check_text(deep.as_bytes()), Err(TooDeep));
    }

    #[test]
    fn malformed_text_is_left_to_the_parser() {
        for text in ["", "]]]]", "\"unterminated [[[", "{{{"] {
            assert_eq!(check_text(text.as_bytes()), Ok(()), "{text}");
        }
    }

    #[test]
    fn values_are_measured_like_text() {
        let at_limit: Value = serde_json::from_str(&nested(MAX_DEPTH)).unwrap();
        assert_eq!(check_value(&at_limit), Ok(()));
        let too_deep = Value::Array(vec![at_limit]);
        assert_eq!(check_value(&too_deep), Err(TooDeep));
        assert_eq!(check_value(&Value::Null), Ok(()));
        assert_eq!(check_value(&serde_json::json!({"a": [], "b": {}})), Ok(()));
    }

    #[test]
    fn a_value_too_deep_for_recursion_is_measured_without_it() {
        let mut v = Value::Null;
        for _ in 0..100_000 {
            v = Value::Array(vec![v]);
        }
        assert_eq!(check_value(&v), Err(TooDeep));
        // Dropping it would recurse; this test only needs the check.
        std::mem::forget(v);
    }
}
