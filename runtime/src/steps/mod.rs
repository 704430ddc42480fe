//! The standard library's implementations, by qualified name (LANGUAGE.md §8).
//!
//! Effectful components (`http.*`, `file.*`, `email.send`, `sql.*`,
//! `state.set`) are [`StepFn`]s called through [`crate::Ctx::step`]; pure
//! functions (`json.*`, `csv.*`, `xml.*`, `time.*`, `crypto.*`, `pdf.*`) are
//! [`PureFn`]s called through [`call_pure`] from any expression. Both reach
//! the engine through [`register`]. Argument conventions are listed in
//! `runtime/API.md`.
//!
//! [`StepFn`]: crate::engine::registry::StepFn
//! [`PureFn`]: crate::engine::registry::PureFn

mod csv;
#[cfg(feature = "email")]
pub(crate) mod email;
mod file;
mod http;
// PDF writing and reading with the `pdf` feature; without it, a module
// whose functions refuse, naming the rebuild.
#[cfg(feature = "pdf")]
mod pdf;
#[cfg(not(feature = "pdf"))]
#[path = "pdf/without.rs"]
mod pdf;
mod pure;
pub(crate) mod sql;
mod xml;

use futures::future::{BoxFuture, FutureExt as _};
use serde_json::Value;

use crate::core::error::{RunError, StepError};
use crate::engine::ctx::{Args, StepCall};
use crate::engine::registry::StepRegistry;

pub use csv::CsvRows;
pub(crate) use file::confine;
pub(crate) use http::request_url;

/// Registers the standard library: its steps and pure functions.
pub fn register(registry: &mut StepRegistry) {
    registry
        .step("http.get", http::get)
        .step("http.post", http::post)
        .step("http.put", http::put)
        .step("http.patch", http::patch)
        .step("http.delete", http::delete)
        .step("state.set", state_set)
        .step("file.read", file::read)
        .step("file.write", file::write)
        .step("file.append", file::append)
        // Streamed between machines: it fails when it stops moving.
        .self_timed_step("file.move", file::move_file)
        .step("file.delete", file::delete)
        .step("file.list", file::list)
        .step("sql.query", sql::query)
        .step("sql.execute", sql::execute);
    // Only in binaries that call it: flowc turns the feature on for them.
    #[cfg(feature = "email")]
    registry.step("email.send", email::send);
    for (name, f) in pure::PURE_FNS.into_iter().chain(pdf::FNS) {
        registry.pure(name, f);
    }
}

/// Calls a pure stdlib function by qualified name (`json.encode`, `time.now`, ...).
pub fn call_pure(name: &str, args: Args) -> Result<Value, RunError> {
    match pure::lookup(name) {
        Some(f) => f(&args),
        None => Err(RunError::new(format!("unknown stdlib function `{name}`"))),
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
            .services()
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
