//! `for x in items parallel N { body }`.

use serde_json::Value;

use crate::core::error::RunError;
use crate::engine::integration::Outcome;

/// Runs `for x in items parallel N { body }`: at most `limit` iterations at
/// once, each given its index (pass it to [`crate::Ctx::with_index`]) and item. An
/// iteration returns `Ok(None)` to go on, or `Ok(Some(outcome))` to end the
/// run (`skip`); the first error or outcome wins and the other iterations are
/// dropped.
pub async fn parallel<F, Fut>(
    items: Vec<Value>,
    limit: usize,
    body: F,
) -> Result<Option<Outcome>, RunError>
where
    F: FnMut(usize, Value) -> Fut,
    Fut: std::future::Future<Output = Result<Option<Outcome>, RunError>>,
{
    use futures::stream::{self, StreamExt as _};
    let mut body = body;
    let mut results = stream::iter(items.into_iter().enumerate().map(|(i, v)| body(i, v)))
        .buffer_unordered(limit.max(1));
    while let Some(r) = results.next().await {
        if let Some(outcome) = r? {
            return Ok(Some(outcome));
        }
    }
    Ok(None)
}
