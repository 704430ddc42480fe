//! `sql.*` on `postgres://` in a binary built without the `postgres`
//! feature: the URL is refused with a permanent error that says how to
//! rebuild, so no options or pool ever exist (both types are empty).

use serde_json::Value;

use super::{Outcome, SqlError};

/// Never made: [`parse`] refuses every URL.
#[derive(Clone)]
pub(super) enum Opts {}
/// Never made: no [`Opts`] to make it from.
pub(super) enum Pool {}

pub(super) fn parse(_url: &str) -> Result<(Opts, String), String> {
    Err(
        "this binary was built without PostgreSQL support (`sql.*` on postgres://); \
         rebuild it with `flowc build --with postgres`"
            .into(),
    )
}

pub(super) fn display(o: &Opts) -> String {
    match *o {}
}

pub(super) fn pool(o: &Opts) -> Result<Pool, SqlError> {
    match *o {}
}

pub(super) async fn run(
    pool: &Pool,
    _sql: &str,
    _params: &[Value],
    _rows: bool,
) -> Result<Outcome, SqlError> {
    match *pool {}
}
