//! A test's `instance "NAME" [from "FILE.toml"]` (docs/language.md §9):
//! the name is an instance name, and the file's values are exactly what
//! an instance's config may hold (`PUT /_flow/instances/NAME {"config":
//! ...}`), checked against the config block here, at compile time. The
//! values are kept in [`super::Program::instance_configs`] for codegen, so
//! the test binary needs no file.
//!
//! The rules mirror the runtime's (`core::config::from_structured`): a
//! string for a scalar type is read like an environment variable (`"30s"`,
//! `"42"`), other values are decoded by the type. Values are never shown
//! in messages (the file may hold secrets), only their kind.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Map, Value};
use toml::Spanned;

use crate::diagnostics::{Code, Diagnostic};
use crate::syntax::ast::{self, Span};

use super::expr::url_problem;
use super::suggest::did_you_mean;
use super::types::Type;
use super::Checker;

/// An instance name: `[a-z0-9][a-z0-9-]{0,39}` (it is a URL segment,
/// `/i/NAME/...`), the rule of the runtime's `instances::registry::valid_name`.
pub(super) fn valid_instance_name(name: &str) -> bool {
    let b = name.as_bytes();
    let ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty() && b.len() <= 40 && ok(&b[0]) && b[1..].iter().all(|c| ok(c) || *c == b'-')
}

impl Checker<'_> {
    /// `instance "NAME" [from "FILE"]` at `stmt`; `earlier` is the test's
    /// previous `instance` statement and `run` its first `run`, if any.
    pub(super) fn test_instance(
        &mut self,
        stmt: Span,
        name: &ast::StrLit,
        file: Option<&ast::StrLit>,
        earlier: Option<Span>,
        run: Option<Span>,
    ) {
        if let Some(first) = earlier {
            self.error(
                Diagnostic::new(
                    Code::BadInstance,
                    stmt,
                    "a test runs as one instance: `instance` is given twice",
                )
                .with_label("second `instance`")
                .with_secondary(first, "first given here")
                .with_help(
                    "keep one `instance` statement; write another test for the other instance",
                ),
            );
        } else if let Some(run) = run {
            self.error(
                Diagnostic::new(
                    Code::BadInstance,
                    stmt,
                    "`instance` after `run`: the test's runs would not be the instance's",
                )
                .with_label("after the first `run`")
                .with_secondary(run, "the first run")
                .with_help("move `instance` above the first `run`"),
            );
        }
        if !valid_instance_name(&name.value) {
            self.error(
                Diagnostic::new(
                    Code::BadInstance,
                    name.span,
                    format!("{:?} is not an instance name", name.value),
                )
                .with_label("not an instance name")
                .with_help(
                    "an instance name is 1 to 40 lowercase letters, digits and `-`, \
                     starting with a letter or digit (it is part of the URLs: /i/NAME/...)",
                ),
            );
        }
        if let Some(file) = file {
            if let Some(values) = self.instance_file(file) {
                self.program.instance_configs.insert(file.span, values);
            }
        }
    }

    /// Reads and checks the TOML file; `None` after a diagnostic.
    fn instance_file(&mut self, file: &ast::StrLit) -> Option<Map<String, Value>> {
        let shown = &file.value;
        let path = match &self.base_dir {
            Some(dir) => dir.join(shown),
            None => PathBuf::from(shown),
        };
        let text = match read_config_file(&path) {
            Ok(t) => t,
            Err(why) => {
                self.error(
                    Diagnostic::new(
                        Code::BadInstanceFile,
                        file.span,
                        format!("cannot read the instance config {shown:?}: {why}"),
                    )
                    .with_label("cannot be read")
                    .with_help(
                        "the path is relative to the folder of this .flow file; \
                         or leave out `from ...` to use only the test's `config { ... }`",
                    ),
                );
                return None;
            }
        };
        let table: BTreeMap<Spanned<String>, Spanned<toml::Value>> = match toml::from_str(&text) {
            Ok(t) => t,
            Err(e) => {
                let at = e
                    .span()
                    .map(|s| format!("line {}: ", line_of(&text, s.start)))
                    .unwrap_or_default();
                self.error(
                    Diagnostic::new(
                        Code::BadInstanceFile,
                        file.span,
                        format!(
                            "the instance config {shown:?} is not valid TOML: {at}{}",
                            e.message().trim_end()
                        ),
                    )
                    .with_label("not valid TOML")
                    .with_help("write one `name = value` line per config entry"),
                );
                return None;
            }
        };
        let mut values = Map::new();
        let mut ok = true;
        for (key, value) in table {
            let line = line_of(&text, key.span().start);
            let key = key.into_inner();
            let Some(ty) = self.config.get(&key).map(|c| c.0.clone()) else {
                let names: Vec<String> = self.config.keys().cloned().collect();
                let mut d = Diagnostic::new(
                    Code::BadInstanceConfig,
                    file.span,
                    format!("{shown}:{line}: `{key}` is not a config entry"),
                )
                .with_label("sets an unknown config entry");
                d = match did_you_mean(&key, names.iter().map(String::as_str)) {
                    Some(s) => d.with_help(format!("did you mean `{s}`?")),
                    None if names.is_empty() => d.with_help("this integration has no config block"),
                    None => d.with_help(format!("config entries: {}", names.join(", "))),
                };
                self.error(d);
                ok = false;
                continue;
            };
            let value = to_json(value.into_inner());
            if let Err(why) = self.fits(&ty, &value, 0) {
                self.error(
                    Diagnostic::new(
                        Code::BadInstanceConfig,
                        file.span,
                        format!("{shown}:{line}: `{key}` is not a valid {ty}: {why}"),
                    )
                    .with_label(format!("`{key}` does not fit its type"))
                    .with_help(format!(
                        "the config block declares `{key}: {ty}`; \
                         the file's values are read like an instance's config"
                    )),
                );
                ok = false;
                continue;
            }
            values.insert(key, value);
        }
        ok.then_some(values)
    }

    /// Whether `v` (from the file) is a valid config value of type `ty`;
    /// `Err` says why not, without showing the value.
    fn fits(&self, ty: &Type, v: &Value, depth: usize) -> Result<(), String> {
        if depth > 32 {
            return Err("nested too deeply".into());
        }
        let expected = || format!("expected {ty}, got {}", kind(v));
        match (ty, v) {
            (Type::Json | Type::Error, _) => Ok(()),
            (Type::Optional(inner), Value::String(s)) if s.is_empty() && is_scalar(inner) => Ok(()),
            (Type::Optional(inner), _) => self.fits(inner, v, depth + 1),
            (Type::Named(n), _) => match self.program.types.get(&**n).cloned() {
                Some(record) => match v {
                    Value::Object(m) => {
                        for field in &record.fields {
                            if let Some(fv) = m.get(&field.name) {
                                self.fits(&field.ty, fv, depth + 1)
                                    .map_err(|e| format!("`{}`: {e}", field.name))?;
                            }
                        }
                        Ok(())
                    }
                    _ => Err(expected()),
                },
                None => match self.program.aliases.get(&**n).cloned() {
                    Some(t) => self.fits(&t, v, depth + 1),
                    None => Ok(()),
                },
            },
            (Type::Record(record), Value::Object(m)) => {
                for field in &record.fields {
                    match m.get(&field.name) {
                        Some(fv) => self
                            .fits(&field.ty, fv, depth + 1)
                            .map_err(|e| format!("`{}`: {e}", field.name))?,
                        None if matches!(field.ty, Type::Optional(_) | Type::Json) => {}
                        None => return Err(format!("`{}` is missing", field.name)),
                    }
                }
                Ok(())
            }
            (Type::List(item), Value::Array(items)) => {
                for (i, iv) in items.iter().enumerate() {
                    self.fits(item, iv, depth + 1)
                        .map_err(|e| format!("item {}: {e}", i + 1))?;
                }
                Ok(())
            }
            (Type::Map(inner), Value::Object(m)) => {
                for (k, iv) in m {
                    self.fits(inner, iv, depth + 1)
                        .map_err(|e| format!("`{k}`: {e}"))?;
                }
                Ok(())
            }
            // A string for a scalar type is read like an environment
            // variable.
            (_, Value::String(s)) if is_scalar(ty) => {
                text_fits(ty, s).ok_or_else(|| format!("expected {ty}{}", scalar_hint(ty)))
            }
            (Type::Int, Value::Number(n)) => {
                let whole = n.as_i64().is_some() || n.as_f64().is_some_and(|f| f.fract() == 0.0);
                if whole {
                    Ok(())
                } else {
                    Err(expected())
                }
            }
            (Type::Float, Value::Number(_)) | (Type::Bool, Value::Bool(_)) => Ok(()),
            (Type::Duration, Value::Number(n)) => {
                if n.as_i64().is_some_and(|i| i >= 0) {
                    Ok(())
                } else {
                    Err("expected Duration: milliseconds (a whole number, not negative) or text such as \"30s\"".into())
                }
            }
            _ => Err(expected()),
        }
    }
}

/// Types whose values a string gives (as an environment variable would).
fn is_scalar(ty: &Type) -> bool {
    matches!(
        ty,
        Type::String
            | Type::Secret
            | Type::Int
            | Type::Float
            | Type::Bool
            | Type::Duration
            | Type::Url
            | Type::Time
            | Type::Bytes
            | Type::Lits(_)
    )
}

/// Whether `text` is a valid value of the scalar type `ty`, read like the
/// runtime reads an environment variable (`core::config::parse_text`).
fn text_fits(ty: &Type, text: &str) -> Option<()> {
    let t = text.trim();
    let ok = match ty {
        Type::String | Type::Secret => true,
        Type::Int => t.parse::<i64>().is_ok(),
        Type::Float => t.parse::<f64>().is_ok_and(f64::is_finite),
        Type::Bool => matches!(
            t.to_ascii_lowercase().as_str(),
            "true" | "1" | "yes" | "on" | "false" | "0" | "no" | "off"
        ),
        Type::Duration => duration_ms(t).is_some(),
        Type::Url => url_problem(t, &Type::Url).is_none(),
        Type::Time => chrono::DateTime::parse_from_rfc3339(t).is_ok(),
        Type::Bytes => is_base64(t),
        Type::Lits(lits) => lits.contains(text),
        _ => false,
    };
    ok.then_some(())
}

fn scalar_hint(ty: &Type) -> &'static str {
    match ty {
        Type::Int => " (a whole number)",
        Type::Float => " (a number)",
        Type::Bool => " (true or false)",
        Type::Duration => " such as \"500ms\", \"30s\", \"5m\", \"1h\"",
        Type::Url => " (such as \"https://host/path\")",
        Type::Time => " (RFC 3339, such as \"2024-05-01T12:00:00Z\")",
        Type::Bytes => " (base64)",
        _ => "",
    }
}

/// `500ms`, `30s`, `1h30m` or a number of milliseconds
/// (`core::schema::parse_duration_ms`).
fn duration_ms(s: &str) -> Option<i64> {
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

/// Standard base64 with padding, as the runtime decodes `Bytes`.
fn is_base64(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    s.len() % 4 == 0
        && s.len() - body.len() <= 2
        && body
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
}

/// A TOML value as the JSON an instance's config holds (as the runtime
/// reads a `--config` file: a date-time becomes its text).
fn to_json(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        // TOML allows `nan` and `inf`, which JSON cannot hold: text, so
        // that the type check names them.
        toml::Value::Float(f) => serde_json::Number::from_f64(f)
            .map_or_else(|| Value::String(f.to_string()), Value::Number),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.into_iter().map(to_json).collect()),
        toml::Value::Table(t) => {
            Value::Object(t.into_iter().map(|(k, v)| (k, to_json(v))).collect())
        }
    }
}

/// What kind of value `v` is, for messages (never the value itself).
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a float",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a table",
    }
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).unwrap_or(text).matches('\n').count() + 1
}

/// The largest instance config file read: a config block's values are a
/// few lines.
const MAX_FILE: u64 = 1 << 20;

/// The text of a regular file of at most [`MAX_FILE`] bytes (never a
/// device or a pipe, which could block `flowc check` or the editor).
fn read_config_file(path: &std::path::Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| io_reason(&e))?;
    if !meta.is_file() {
        return Err("not a file".into());
    }
    if meta.len() > MAX_FILE {
        return Err(format!("larger than {} KiB", MAX_FILE / 1024));
    }
    std::fs::read_to_string(path).map_err(|e| io_reason(&e))
}

/// An I/O error's reason without the OS error number.
fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => {
            let text = e.to_string();
            match text.find(" (os error") {
                Some(i) => text[..i].to_string(),
                None => text,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names() {
        for ok in ["acme", "a", "0", "acme-2", &"a".repeat(40)] {
            assert!(valid_instance_name(ok), "{ok}");
        }
        for bad in ["", "-acme", "Acme", "ac me", "ac_me", "é", &"a".repeat(41)] {
            assert!(!valid_instance_name(bad), "{bad}");
        }
    }

    #[test]
    fn only_small_regular_files_are_read() {
        let dir = std::env::temp_dir();
        assert_eq!(read_config_file(&dir), Err("not a file".to_string()));
        assert_eq!(
            read_config_file(&dir.join("flowc-no-such-file.toml")),
            Err("no such file".to_string())
        );
    }

    #[test]
    fn scalar_text_is_read_like_the_environment() {
        assert!(text_fits(&Type::Duration, "1h30m").is_some());
        assert!(text_fits(&Type::Duration, "soon").is_none());
        assert!(text_fits(&Type::Int, " 42 ").is_some());
        assert!(text_fits(&Type::Bool, "yes").is_some());
        assert!(text_fits(&Type::Url, "https://acme.example").is_some());
        assert!(text_fits(&Type::Url, "acme.example").is_none());
        assert!(text_fits(&Type::Bytes, "aGk=").is_some());
        assert!(text_fits(&Type::Bytes, "aGk").is_none());
    }
}
