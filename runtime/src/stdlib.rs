//! The standard library's implementations, by qualified name (LANGUAGE.md §8).
//!
//! Effectful components (`http.*`, `file.*`, `email.send`, `sql.*`, `state.set`) are [`StepFn`]s called
//! through [`crate::Ctx::step`]; pure functions (`json.*`, `csv.*`,
//! `xml.*`, `time.*`, `crypto.*`, `env.version`) are [`PureFn`]s called through [`call_pure`]
//! from any expression. Argument conventions are listed in `runtime/API.md`.

mod csv;
pub(crate) mod email;
mod file;
mod http;
mod pure;
pub(crate) mod sql;
mod xml;

use std::collections::HashMap;
use std::sync::RwLock;

use futures::future::{BoxFuture, FutureExt as _};
use serde_json::Value;

use crate::ctx::{Args, StepCall};
use crate::engine::StepFn;
use crate::error::{RunError, StepError};

pub(crate) use file::{complete_file, file_json, file_value, glob_match, split_glob};
pub(crate) use http::request_url;
pub(crate) use pure::hmac_hex;
pub use pure::PureFn;

/// The built-in step implementations.
pub(crate) fn step_fns() -> HashMap<&'static str, StepFn> {
    let mut m: HashMap<&'static str, StepFn> = HashMap::new();
    m.insert("http.get", http::get);
    m.insert("http.post", http::post);
    m.insert("http.put", http::put);
    m.insert("http.patch", http::patch);
    m.insert("http.delete", http::delete);
    m.insert("state.set", state_set);
    m.insert("file.read", file::read);
    m.insert("file.write", file::write);
    m.insert("file.append", file::append);
    m.insert("file.move", file::move_file);
    m.insert("file.delete", file::delete);
    m.insert("file.list", file::list);
    m.insert("email.send", email::send);
    m.insert("sql.query", sql::query);
    m.insert("sql.execute", sql::execute);
    #[cfg(feature = "nats")]
    m.insert("nats.publish", crate::subscribe::nats::publish);
    #[cfg(feature = "redis")]
    m.insert("redis.xadd", crate::subscribe::redis::xadd);
    #[cfg(feature = "amqp")]
    m.insert("amqp.publish", crate::subscribe::amqp::publish);
    #[cfg(feature = "mqtt")]
    m.insert("mqtt.publish", crate::subscribe::mqtt::publish);
    m
}

/// The pure function registered under `name`, if any.
pub fn pure_fn(name: &str) -> Option<PureFn> {
    pure::lookup(name)
}

/// Calls a pure stdlib function by qualified name (`json.encode`, `time.now`, ...).
pub fn call_pure(name: &str, args: Args) -> Result<Value, RunError> {
    match pure::lookup(name) {
        Some(f) => f(&args),
        None => Err(RunError::new(format!("unknown stdlib function `{name}`"))),
    }
}

static VERSION: RwLock<String> = RwLock::new(String::new());

pub(crate) fn set_version(v: &str) {
    let mut g = match VERSION.write() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    *g = v.to_string();
}

pub(crate) fn version() -> String {
    match VERSION.read() {
        Ok(g) => g.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

/// `state.set(key, value)`: stores a small durable value; returns the value.
fn state_set(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    async move {
        let key = call
            .args
            .get(0)
            .as_str()
            .ok_or_else(|| StepError::permanent("state.set: the key must be a String"))?
            .to_string();
        let value = call.args.get(1).clone();
        call.cx
            .runtime()
            .store()
            .state_set(&key, value.clone())
            .await
            .map_err(|e| StepError::retryable(e.to_string()))?;
        call.cx.state_put(&key, value.clone());
        Ok(value)
    }
    .boxed()
}

/// Rewrites a decode path `[2].qty: ...` as `row 3, column qty: ...`, where
/// list index 0 is row `first_row` (csv.decode: 2, after the header line;
/// sql.query: 1). Other messages are returned as they are.
pub(crate) fn row_path(message: &str, first_row: usize) -> String {
    let Some(rest) = message.strip_prefix('[') else {
        return message.to_string();
    };
    let Some((index, rest)) = rest.split_once(']') else {
        return message.to_string();
    };
    let Ok(index) = index.parse::<usize>() else {
        return message.to_string();
    };
    match rest.strip_prefix('.') {
        Some(field) => format!("row {}, column {field}", index + first_row),
        None => format!("row {}{rest}", index + first_row),
    }
}
