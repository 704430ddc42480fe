//! The value a run sees as `trigger`, per trigger kind.

use serde_json::{json, Map, Value};

use crate::engine::integration::TriggerDef;
use crate::engine::Runtime;

/// Completes a trigger value given on the command line or by `flowc test`
/// with the fields the trigger kind provides (`headers`, `query`,
/// `received_at`, ...), and decodes its body or input by the flow's schema.
pub fn complete_trigger(rt: &Runtime, flow: &str, given: Value) -> Result<Value, String> {
    let def = rt
        .flow(flow)
        .ok_or_else(|| format!("no flow named `{flow}`"))?;
    let mut t = match given {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        other => {
            return Err(format!(
                "the trigger value must be an object, got {}",
                crate::core::schema::describe_value(&other)
            ))
        }
    };
    let now = crate::core::ops::format_time(chrono::Utc::now());
    let mut default = |k: &str, v: Value| {
        if t.get(k).is_none_or(Value::is_null) {
            t.insert(k.to_string(), v);
        }
    };
    match &def.trigger {
        TriggerDef::Webhook { .. } | TriggerDef::Sync { .. } => {
            default("headers", json!({}));
            default("query", json!({}));
            default("received_at", now);
            if matches!(def.trigger, TriggerDef::Sync { .. }) {
                default("params", json!({}));
            }
        }
        TriggerDef::Cron { .. } | TriggerDef::Every { .. } => {
            default("fired_at", now);
            default("previous", Value::Null);
        }
        TriggerDef::Deploy | TriggerDef::Remove => return Ok(rt.deploy_trigger()),
        TriggerDef::Files(_) => {
            if let Some(f) = t.get_mut("file") {
                *f = crate::core::files::complete_file(f, &now);
            }
            if let Some(Value::Array(fs)) = t.get_mut("files") {
                for f in fs {
                    *f = crate::core::files::complete_file(f, &now);
                }
            }
        }
        TriggerDef::Email(_) => {
            if let Some(Value::Array(fs)) =
                t.get_mut("message").and_then(|m| m.get_mut("attachments"))
            {
                for f in fs {
                    *f = crate::core::files::complete_file(f, &now);
                }
            }
        }
        TriggerDef::Subscribe(s) => {
            default("subject", json!(s.subject));
            default("headers", json!({}));
        }
        TriggerDef::Dispatch { .. } => {}
    }
    let (field, schema) = match &def.trigger {
        TriggerDef::Webhook { body, .. } | TriggerDef::Sync { body, .. } => ("body", body),
        TriggerDef::Subscribe(s) => ("body", &s.body),
        TriggerDef::Dispatch { input } => ("input", input),
        _ => return Ok(Value::Object(t)),
    };
    let raw = t.get(field).cloned().unwrap_or(Value::Null);
    let decoded = schema.decode(&raw).map_err(|e| format!("{field}: {e}"))?;
    t.insert(field.to_string(), decoded);
    Ok(Value::Object(t))
}
