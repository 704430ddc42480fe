//! Loading the integration's `config { ... }` block at start-up
//! (LANGUAGE.md §3).
//!
//! For each [`ConfigEntry`], in order of precedence: the environment variable
//! (the entry's `env "NAME"`, or the name in UPPER_SNAKE case), then the
//! value in the `--config FILE.toml`, then the default. Entries without a
//! value and without a default are required, unless their type is optional.
//! Every problem is collected so that one message names them all.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::core::redact::Redactor;
use crate::core::schema::{lookup_type, parse_duration_ms, parse_url, Schema};

/// One entry of the `config` block, emitted by generated code.
#[derive(Debug, Clone)]
pub struct ConfigEntry {
    /// The entry's name (`erp_url`), as used in `config.erp_url`.
    pub name: &'static str,
    /// The environment variable given with `env "NAME"`; `None` means the
    /// name in UPPER_SNAKE case.
    pub env: Option<&'static str>,
    /// The entry's type.
    pub schema: Schema,
    /// The default value in runtime representation (Durations as ms).
    pub default: Option<Value>,
    /// The entry's doc comment (may be empty).
    pub doc: &'static str,
    /// Whether the value must never be printed (type `Secret`, or a type containing it).
    pub secret: bool,
}

impl ConfigEntry {
    /// The environment variable this entry is read from.
    pub fn env_var(&self) -> String {
        match self.env {
            Some(name) => name.to_string(),
            None => self.name.to_ascii_uppercase(),
        }
    }

    /// Whether the entry is a `Secret` (or holds one): never shown, always redacted.
    pub fn is_secret(&self) -> bool {
        self.secret || contains_secret(&self.schema)
    }
}

fn contains_secret(schema: &Schema) -> bool {
    match schema {
        Schema::Secret => true,
        Schema::List(s) | Schema::Optional(s) | Schema::Map(s) => contains_secret(s),
        Schema::Record(fields) => fields.iter().any(|f| contains_secret(&f.schema)),
        _ => false,
    }
}

/// Where environment variables come from: the process, or (in tests) a map.
#[derive(Debug, Clone, Default)]
pub enum EnvSource {
    /// `std::env::var`.
    #[default]
    Process,
    /// A fixed set of variables; nothing else is visible.
    Map(HashMap<String, String>),
}

impl EnvSource {
    /// A fixed set of variables from pairs.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        EnvSource::Map(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    /// Reads a variable; unset and non-Unicode values are `None`.
    pub fn get(&self, name: &str) -> Option<String> {
        match self {
            EnvSource::Process => std::env::var(name).ok(),
            EnvSource::Map(m) => m.get(name).cloned(),
        }
    }
}

/// The loaded configuration: the object `config` refers to in flow code.
#[derive(Debug, Clone)]
pub struct Config {
    values: Value,
    redactor: Redactor,
}

impl Config {
    /// Builds a config directly from values (tests and `flowc test`); the
    /// listed secret values are registered for redaction.
    pub fn from_values(values: Map<String, Value>, secrets: &[&str]) -> Self {
        let redactor = Redactor::new();
        for s in secrets {
            redactor.add(s);
        }
        Config {
            values: Value::Object(values),
            redactor,
        }
    }

    /// All entries as one JSON object.
    pub fn value(&self) -> &Value {
        &self.values
    }

    /// One entry (`null` if unknown).
    pub fn get(&self, name: &str) -> &Value {
        static NULL: Value = Value::Null;
        self.values.get(name).unwrap_or(&NULL)
    }

    /// One entry as a string (empty if it is not a string); handy for trigger
    /// options such as an HMAC secret.
    pub fn str(&self, name: &str) -> String {
        self.get(name).as_str().unwrap_or_default().to_string()
    }

    /// `template` with each `${config.NAME}` replaced by that entry's value
    /// (a files trigger's glob, `"${config.inbox}/*.csv"`). An entry that has
    /// no value (only in `--help`, which loads no config) stays as written.
    pub fn fill(&self, template: &str) -> String {
        const MARK: &str = "${config.";
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(start) = rest.find(MARK) {
            let after = &rest[start + MARK.len()..];
            let Some(end) = after.find('}') else { break };
            out.push_str(&rest[..start]);
            match self.get(&after[..end]) {
                Value::String(value) => out.push_str(value),
                // A port: `sftp://${config.user}@${config.host}:${config.port}/in`.
                Value::Number(n) => out.push_str(&n.to_string()),
                _ => out.push_str(&rest[start..start + MARK.len() + end + 1]),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }

    /// The redactor that knows this config's secret values.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }
}

/// Every problem found while loading the config; displays as one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// One line per problem, each naming its entry.
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "invalid configuration ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Loads every entry from the environment, the optional TOML file and the
/// defaults. Secret values are added to the returned config's redactor.
pub fn load(
    entries: &[ConfigEntry],
    file: Option<&Path>,
    env: &EnvSource,
) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();
    let file_values = match file {
        None => Map::new(),
        Some(path) => match read_toml(path) {
            Ok(values) => values,
            Err(e) => {
                problems.push(e);
                Map::new()
            }
        },
    };
    let file_name = file
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "the --config file".into());
    let source = ValueSource {
        values: file_values,
        name: file_name,
        missing_hint: None,
    };
    load_with(entries, source, env, problems)
}

/// Loads every entry from `values` (an instance's config, given as JSON)
/// and the defaults only: the process environment is not consulted, so one
/// instance's missing entry is never filled in from the host's.
pub fn load_values(
    entries: &[ConfigEntry],
    values: Map<String, Value>,
) -> Result<Config, ConfigError> {
    let source = ValueSource {
        values,
        name: "the instance's config".into(),
        missing_hint: Some("set it in the instance's config"),
    };
    load_with(entries, source, &EnvSource::Map(HashMap::new()), Vec::new())
}

/// Structured config values and how to name where they come from.
struct ValueSource {
    values: Map<String, Value>,
    /// "config.toml", "the instance's config".
    name: String,
    /// What a missing entry's message advises; `None`: the environment
    /// variable or the `--config` file.
    missing_hint: Option<&'static str>,
}

fn load_with(
    entries: &[ConfigEntry],
    source: ValueSource,
    env: &EnvSource,
    mut problems: Vec<String>,
) -> Result<Config, ConfigError> {
    let ValueSource {
        values: file_values,
        name: file_name,
        missing_hint,
    } = source;
    for key in file_values.keys() {
        if !entries.iter().any(|e| e.name == key) {
            problems.push(format!("{file_name}: unknown config entry `{key}`"));
        }
    }

    let redactor = Redactor::new();
    let mut values = Map::new();
    for entry in entries {
        let var = entry.env_var();
        let secret = entry.is_secret();
        let ty = entry.schema.describe();
        let result = if let Some(text) = env.get(&var) {
            parse_text(&entry.schema, &text).map_err(|why| {
                if secret {
                    format!(
                        "{} ({ty}): environment variable {var} is not valid: {why}",
                        entry.name
                    )
                } else {
                    format!(
                        "{} ({ty}): environment variable {var}={text:?} is not valid: {why}",
                        entry.name
                    )
                }
            })
        } else if let Some(v) = file_values.get(entry.name) {
            from_structured(&entry.schema, v).map_err(|why| {
                format!(
                    "{} ({ty}): value in {file_name} is not valid: {why}",
                    entry.name
                )
            })
        } else if let Some(default) = &entry.default {
            Ok(default.clone())
        } else if is_optional(&entry.schema) {
            Ok(Value::Null)
        } else {
            Err(match missing_hint {
                Some(hint) => format!("{} ({ty}): missing; {hint}", entry.name),
                None => format!(
                    "{} ({ty}): missing; set environment variable {var} or `{}` in the --config file",
                    entry.name, entry.name
                ),
            })
        };
        match result {
            Ok(v) => {
                if secret {
                    collect_strings(&v, &mut |s| redactor.add(s));
                }
                values.insert(entry.name.to_string(), v);
            }
            // A malformed secret could still be echoed by a parser message.
            Err(p) => problems.push(p),
        }
    }
    if problems.is_empty() {
        Ok(Config {
            values: Value::Object(values),
            redactor,
        })
    } else {
        let problems = problems
            .into_iter()
            .map(|p| redactor.redact_string(p))
            .collect();
        Err(ConfigError { problems })
    }
}

fn is_optional(schema: &Schema) -> bool {
    match schema {
        Schema::Optional(_) => true,
        Schema::Ref(name) => lookup_type(name).is_some_and(|s| is_optional(&s)),
        _ => false,
    }
}

fn collect_strings(v: &Value, f: &mut impl FnMut(&str)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(items) => items.iter().for_each(|i| collect_strings(i, f)),
        Value::Object(m) => m.values().for_each(|i| collect_strings(i, f)),
        _ => {}
    }
}

pub(crate) fn read_toml(path: &Path) -> Result<Map<String, Value>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("config file {} is not valid TOML: {e}", path.display()))?;
    Ok(table
        .into_iter()
        .map(|(k, v)| (k, toml_to_json(v)))
        .collect())
}

fn toml_to_json(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => crate::core::schema::float_value(f),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => {
            Value::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect())
        }
    }
}

/// A value from the TOML file: strings for scalar types are parsed as in the
/// environment (`"30s"`, `"42"`), everything else is decoded by the schema.
fn from_structured(schema: &Schema, v: &Value) -> Result<Value, String> {
    match (schema, v) {
        (Schema::Json, _) => Ok(v.clone()),
        (_, Value::String(s)) if !is_structured(schema) => parse_text(schema, s),
        _ => schema.decode(v).map_err(|e| e.to_string()),
    }
}

fn is_structured(schema: &Schema) -> bool {
    match schema {
        Schema::List(_) | Schema::Map(_) | Schema::Record(_) | Schema::Json => true,
        Schema::Optional(inner) => is_structured(inner),
        Schema::Ref(name) => lookup_type(name).is_some_and(|s| is_structured(&s)),
        _ => false,
    }
}

/// Parses one textual value (an environment variable) as `schema`.
pub fn parse_text(schema: &Schema, text: &str) -> Result<Value, String> {
    let expected = || format!("expected {}", schema.describe());
    match schema {
        Schema::Optional(inner) => {
            if text.is_empty() {
                Ok(Value::Null)
            } else {
                parse_text(inner, text)
            }
        }
        Schema::String | Schema::Secret => Ok(Value::String(text.to_string())),
        Schema::Int => text
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| expected()),
        Schema::Float => match text.trim().parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(crate::core::schema::float_value(f)),
            _ => Err(expected()),
        },
        Schema::Bool => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Value::Bool(true)),
            "false" | "0" | "no" | "off" => Ok(Value::Bool(false)),
            _ => Err("expected Bool (true or false)".into()),
        },
        Schema::Duration => parse_duration_ms(text)
            .map(Value::from)
            .ok_or_else(|| "expected Duration such as 500ms, 30s, 5m, 1h".into()),
        Schema::Url => parse_url(text.trim())
            .map(|_| Value::String(text.trim().to_string()))
            .map_err(|e| format!("expected Url ({e})")),
        Schema::Time => chrono::DateTime::parse_from_rfc3339(text.trim())
            .map(|_| Value::String(text.trim().to_string()))
            .map_err(|_| "expected Time (RFC 3339, e.g. 2024-05-01T12:00:00Z)".into()),
        Schema::Bytes => base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map(|_| Value::String(text.trim().to_string()))
            .map_err(|_| "expected Bytes (base64)".into()),
        Schema::Literals(lits) => {
            if lits.contains(&text) {
                Ok(Value::String(text.to_string()))
            } else {
                Err(expected())
            }
        }
        Schema::Json => {
            Ok(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string())))
        }
        Schema::Ref(name) => match lookup_type(name) {
            Some(s) if !is_structured(&s) => parse_text(&s, text),
            _ => parse_json_text(schema, text),
        },
        Schema::List(_) | Schema::Map(_) | Schema::Record(_) => parse_json_text(schema, text),
    }
}

fn parse_json_text(schema: &Schema, text: &str) -> Result<Value, String> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| format!("expected {} as JSON text ({e})", schema.describe()))?;
    schema.decode(&v).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::schema::FieldSchema;
    use serde_json::json;

    fn entries() -> Vec<ConfigEntry> {
        let e = |name, schema, default: Option<Value>| ConfigEntry {
            name,
            env: None,
            schema,
            default,
            doc: "",
            secret: false,
        };
        vec![
            e("erp_url", Schema::Url, None),
            ConfigEntry {
                secret: true,
                ..e("erp_token", Schema::Secret, None)
            },
            e("batch_size", Schema::Int, Some(json!(100))),
            ConfigEntry {
                env: Some("INVENTORY_REGION"),
                ..e("region", Schema::String, Some(json!("eu")))
            },
            e("poll", Schema::Duration, Some(json!(30_000))),
            e("ratio", Schema::Float, Some(json!(0.5))),
            e("enabled", Schema::Bool, Some(json!(false))),
            e("tags", Schema::list(Schema::String), Some(json!([]))),
            e("nickname", Schema::optional(Schema::String), None),
            e(
                "limits",
                Schema::Record(vec![FieldSchema::new("max", Schema::Int)]),
                Some(json!({"max": 1})),
            ),
        ]
    }

    #[test]
    fn templates_are_filled_with_text_and_numbers() {
        let env = EnvSource::from_pairs([
            ("ERP_URL", "https://erp.example.com"),
            ("ERP_TOKEN", "t"),
            ("BATCH_SIZE", "2222"),
        ]);
        let config = load(&entries(), None, &env).unwrap();
        assert_eq!(
            config.fill("sftp://u@${config.region}:${config.batch_size}/in/${config.unknown}"),
            "sftp://u@eu:2222/in/${config.unknown}"
        );
    }

    #[test]
    fn every_missing_entry_is_named_once() {
        let err = load(&entries(), None, &EnvSource::from_pairs::<&str, &str>([])).unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        let text = err.to_string();
        assert!(
            text.starts_with("invalid configuration (2 problems):"),
            "{text}"
        );
        assert!(
            text.contains("erp_url (Url): missing; set environment variable ERP_URL"),
            "{text}"
        );
        assert!(
            text.contains("erp_token (Secret): missing; set environment variable ERP_TOKEN"),
            "{text}"
        );
    }

    #[test]
    fn malformed_values_are_named_and_secrets_not_echoed() {
        let env = EnvSource::from_pairs([
            ("ERP_URL", "not a url"),
            ("ERP_TOKEN", "hunter2"),
            ("BATCH_SIZE", "lots"),
            ("POLL", "soon"),
            ("ENABLED", "maybe"),
            ("TAGS", "[1]"),
        ]);
        let err = load(&entries(), None, &env).unwrap_err();
        let text = err.to_string();
        assert_eq!(err.problems.len(), 5, "{text}");
        assert!(
            text.contains(
                r#"erp_url (Url): environment variable ERP_URL="not a url" is not valid"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"batch_size (Int): environment variable BATCH_SIZE="lots" is not valid: expected Int"#), "{text}");
        assert!(text.contains("poll (Duration)"), "{text}");
        assert!(text.contains("enabled (Bool)"), "{text}");
        assert!(text.contains("tags ([String]): environment variable TAGS=\"[1]\" is not valid: [0]: expected String, got 1"), "{text}");
        assert!(!text.contains("hunter2"));
    }

    #[test]
    fn precedence_env_over_file_over_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "erp_url = \"http://file.example\"\nerp_token = \"filetoken\"\nbatch_size = 7\nregion = \"us\"\npoll = \"2m\"\ntags = [\"a\"]\n[limits]\nmax = 9\n",
        )
        .unwrap();
        let env = EnvSource::from_pairs([
            ("ERP_URL", "https://env.example/api"),
            ("INVENTORY_REGION", "ap"),
            ("ENABLED", "yes"),
            ("RATIO", "2"),
        ]);
        let cfg = load(&entries(), Some(&path), &env).unwrap();
        assert_eq!(cfg.get("erp_url"), &json!("https://env.example/api"));
        assert_eq!(cfg.get("erp_token"), &json!("filetoken"));
        assert_eq!(cfg.get("batch_size"), &json!(7));
        assert_eq!(cfg.get("region"), &json!("ap"));
        assert_eq!(cfg.get("poll"), &json!(120_000));
        assert_eq!(cfg.get("ratio"), &json!(2.0));
        assert_eq!(cfg.get("enabled"), &json!(true));
        assert_eq!(cfg.get("tags"), &json!(["a"]));
        assert_eq!(cfg.get("limits"), &json!({"max": 9}));
        assert_eq!(cfg.get("nickname"), &Value::Null);
        assert_eq!(cfg.redactor().redact("token=filetoken"), "token=***");
        assert_eq!(cfg.str("erp_token"), "filetoken");
    }

    #[test]
    fn unknown_file_keys_and_bad_toml_are_problems() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "erp_urll = \"x\"\n").unwrap();
        let env = EnvSource::from_pairs([("ERP_URL", "http://a"), ("ERP_TOKEN", "token-1")]);
        let err = load(&entries(), Some(&path), &env).unwrap_err();
        assert!(
            err.to_string().contains("unknown config entry `erp_urll`"),
            "{err}"
        );
        std::fs::write(&path, "= broken").unwrap();
        let err = load(&entries(), Some(&path), &env).unwrap_err();
        assert!(err.to_string().contains("not valid TOML"), "{err}");
    }

    #[test]
    fn env_json_for_records() {
        let env = EnvSource::from_pairs([
            ("ERP_URL", "http://a"),
            ("ERP_TOKEN", "token-2"),
            ("LIMITS", "{\"max\": 3}"),
        ]);
        let cfg = load(&entries(), None, &env).unwrap();
        assert_eq!(cfg.get("limits"), &json!({"max": 3}));
    }
}
