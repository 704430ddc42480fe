//! `sql.*` on `mysql://` in a binary built without the `mysql` feature:
//! the URL is refused with a permanent error that says how to rebuild, so
//! no options or pool ever exist (both types are empty).

use serde_json::Value;

use super::{Outcome, SqlError};

/// Never made: [`parse`] refuses every URL.
#[derive(Clone)]
pub(super) enum Opts {}
/// Never made: no [`Opts`] to make it from.
pub(super) enum Pool {}

pub(super) fn parse(_rest: &str) -> Result<(Opts, String), String> {
    Err(
        "this binary was built without MySQL support (`sql.*` on mysql://); \
         rebuild it with `flowc build --with mysql`"
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
