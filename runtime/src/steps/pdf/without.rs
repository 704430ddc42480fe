//! `pdf.*` in a binary built without the `pdf` feature (the PDF crates
//! and the font are compiled only into binaries that need them): the names
//! are still known, and every call fails with a message that says how to
//! rebuild, instead of "unknown stdlib function".

use serde_json::Value;

use crate::core::error::RunError;
use crate::engine::ctx::Args;
use crate::engine::registry::PureFn;

/// The `pdf.*` functions by qualified name, each refusing to run.
pub(super) const FNS: [(&str, PureFn); 2] = [("pdf.report", report), ("pdf.text", text)];

fn not_built(func: &str) -> RunError {
    RunError::new(format!(
        "{func}: this binary was built without PDF support (pdf.report, pdf.text); \
         rebuild it with `flowc build --with pdf`"
    ))
}

fn report(_: &Args) -> Result<Value, RunError> {
    Err(not_built("pdf.report"))
}

fn text(_: &Args) -> Result<Value, RunError> {
    Err(not_built("pdf.text"))
}
