//! `sql.query(db, sql, args:, as: [T])` → rows and `sql.execute(db, sql,
//! args:)` → rows changed, on PostgreSQL, MySQL/MariaDB and SQLite.
//!
//! # Connections
//!
//! `db` is a URL, usually a `Secret` config entry; its scheme picks the
//! driver:
//!
//! * `postgres://` / `postgresql://` (libpq URL syntax): tokio-postgres with
//!   a deadpool pool of up to [`POOL_SIZE`] connections, built by the
//!   PostgreSQL store's `new_pool`. No TLS (like the store). Feature
//!   `postgres` (`sql/postgres.rs`).
//! * `mysql://` / `mariadb://`: `mysql_async`'s pool (up to [`POOL_SIZE`]
//!   connections), no TLS. Feature `mysql` (`sql/mysql.rs`).
//!
//! A binary built without a driver's feature fails the step on its URLs
//! with a message naming `flowc build --with FEATURE`.
//! * `sqlite://PATH`: relative to the working directory,
//!   `sqlite:///ABS/PATH` for an absolute path, `sqlite://:memory:` for a
//!   private in-memory database. One connection (SQLite serialises writers
//!   anyway), used on Tokio's blocking threads, `busy_timeout` 5 s.
//!
//! Each distinct URL gets its pool on first use, kept for the life of the
//! process (SQLite: per absolute path). Pools connect lazily, so a database
//! that is down at start-up only fails the steps that use it.
//!
//! # Parameters
//!
//! `args:` is a list of JSON values bound in order to `$1, $2, ...`
//! (PostgreSQL) or `?` (MySQL, SQLite): the statement and the values travel
//! separately, so a value can never change the statement. `null` → NULL,
//! `Bool` → boolean (1/0 on MySQL and SQLite), `Int` → 64-bit integer,
//! `Float` → double, `String` (and `Time`, an RFC 3339 string) → text, an
//! object or list → its JSON text. On MySQL a string that is an RFC 3339
//! time (`2026-03-01T10:00:00Z`, what a Flow `Time` is) is bound as a
//! `DATETIME` in UTC instead, since MySQL refuses that text for `DATETIME`
//! and `TIMESTAMP` columns. On PostgreSQL every value is sent in the
//! text format and the server parses it as the parameter's type, so `$1`
//! compared with an `integer`, `numeric`, `timestamptz`, `date`, `uuid` or
//! `jsonb` column takes the matching Flow value without casts.
//!
//! # Rows
//!
//! Each row becomes an object keyed by column name (the last of duplicate
//! names wins: alias them), then the list is decoded with the `as:` schema
//! ([`crate::core::schema::Schema::decode`]); errors name the row (1-based) and
//! the column: `sql.query: row 3, column qty: expected Int, got "x"`.
//! Integers → `Int`, floating point → `Float`, `numeric`/`decimal` →
//! `Int` when integral, else `Float`, text → `String`, booleans → `Bool`
//! (MySQL and SQLite store 1/0: an `Int` 0 or 1 decodes into a `Bool`
//! field), timestamps → RFC 3339 strings (`Time`; a PostgreSQL `timestamp`
//! without time zone and MySQL `DATETIME` are read as UTC), dates →
//! `"YYYY-MM-DD"`, `json`/`jsonb` → the JSON value, binary → base64
//! (`Bytes`), `uuid` → its text. Other PostgreSQL types (arrays, intervals,
//! ranges, ...) fail the step naming the column: cast them in the query
//! (`tags::text`).
//!
//! # Errors
//!
//! A connection that cannot be made or breaks, a pool timeout, a deadlock,
//! a serialization failure or a busy SQLite database are retried; an
//! invalid URL, SQL errors (syntax, unknown table, constraint violations,
//! wrong parameter count) and rows that do not decode fail the step at
//! once, with the database's message. Messages name the database as
//! `postgres://host:port/db` without the user name or password: the URL
//! itself is never logged or stored.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use futures::future::{BoxFuture, FutureExt as _};
use serde_json::{Map, Value};

use crate::core::error::StepError;
use crate::core::schema::{float_value, Schema};
use crate::engine::ctx::{Args, StepCall};
use crate::steps::row_path;

/// The module of an optional driver in a binary built without its
/// feature: the URL is refused with a permanent error (`$refusal`) that
/// says how to rebuild, so no options or pool ever exist (both types are
/// empty).
#[cfg(not(all(feature = "mysql", feature = "postgres")))]
macro_rules! driver_without {
    ($refusal:expr) => {
        use serde_json::Value;

        use super::{Outcome, SqlError};

        /// Never made: [`parse`] refuses every URL.
        #[derive(Clone)]
        pub(super) enum Opts {}
        /// Never made: no [`Opts`] to make it from.
        pub(super) enum Pool {}

        pub(super) fn parse(_url: &str) -> Result<(Opts, String), String> {
            Err($refusal.into())
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
    };
}

// One module per optional driver, swapped for one that refuses its URLs
// when the binary is built without the driver's feature (docs/tools.md).
#[cfg(feature = "mysql")]
mod mysql;
#[cfg(not(feature = "mysql"))]
mod mysql {
    driver_without!(
        "this binary was built without MySQL support (`sql.*` on mysql://); \
         rebuild it with `flowc build --with mysql`"
    );
}
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(not(feature = "postgres"))]
mod postgres {
    driver_without!(
        "this binary was built without PostgreSQL support (`sql.*` on postgres://); \
         rebuild it with `flowc build --with postgres`"
    );
}

/// Most connections one process opens to one database.
#[cfg_attr(not(any(feature = "mysql", feature = "postgres")), allow(dead_code))]
pub(crate) const POOL_SIZE: usize = 4;

/// How long SQLite waits for another writer's lock before failing (the
/// failure is then retried as the step says).
const SQLITE_BUSY: Duration = Duration::from_secs(5);

/// `sql.query(db, sql, args:, as:)`.
pub(super) fn query(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    async move { run("sql.query", &call.args, true).await }.boxed()
}

/// `sql.execute(db, sql, args:)`.
pub(super) fn execute(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    async move { run("sql.execute", &call.args, false).await }.boxed()
}

/// Runs one statement; `rows` for `sql.query` (decoded rows), else the
/// number of rows changed.
pub(crate) async fn run(func: &str, args: &Args, rows: bool) -> Result<Value, StepError> {
    let url = args
        .param(0, "db")
        .as_str()
        .ok_or_else(|| StepError::permanent(format!("{func}: `db` must be a connection URL")))?;
    let sql = args
        .param(1, "sql")
        .as_str()
        .ok_or_else(|| StepError::permanent(format!("{func}: `sql` must be a String")))?;
    let params = match args.param(2, "args") {
        Value::Null => Vec::new(),
        Value::Array(items) => items.clone(),
        _ => {
            return Err(StepError::permanent(format!(
                "{func}: `args` must be a list"
            )))
        }
    };
    let target = Target::parse(url).map_err(|e| StepError::permanent(format!("{func}: {e}")))?;
    let name = target.display();
    let fail = |e: SqlError| e.into_step_error(func, &name);
    let db = database(&target).map_err(fail)?;
    let sql = sql.to_string();
    let result = match &*db {
        Db::Postgres(pool) => postgres::run(pool, &sql, &params, rows).await,
        Db::MySql(pool) => mysql::run(pool, &sql, &params, rows).await,
        Db::Sqlite(conn) => {
            let conn = conn.clone();
            tokio::task::spawn_blocking(move || sqlite_run(&conn, &sql, &params, rows))
                .await
                .unwrap_or_else(|e| Err(SqlError::Retry(format!("the query task failed: {e}"))))
        }
    };
    match result.map_err(fail)? {
        Outcome::Rows(list) => decode_rows(func, list, args.as_schema.as_ref()),
        Outcome::Changed(n) => Ok(Value::from(i64::try_from(n).unwrap_or(i64::MAX))),
    }
}

/// Decodes rows with `as:`, naming the row and the column on failure.
fn decode_rows(func: &str, rows: Vec<Value>, schema: Option<&Schema>) -> Result<Value, StepError> {
    let rows = Value::Array(rows);
    let Some(schema) = schema else {
        return Ok(rows);
    };
    let rows = bools_from_ints(schema, rows, 0);
    schema
        .decode(&rows)
        .map_err(|e| StepError::permanent(format!("{func}: {}", row_path(&e.to_string(), 1))))
}

/// MySQL and SQLite have no boolean type: `1`/`0` where the schema
/// expects a `Bool` become `true`/`false`.
fn bools_from_ints(schema: &Schema, value: Value, depth: usize) -> Value {
    if depth > 64 {
        return value;
    }
    match (schema, value) {
        (Schema::Bool, Value::Number(n)) if n.as_i64() == Some(1) => Value::Bool(true),
        (Schema::Bool, Value::Number(n)) if n.as_i64() == Some(0) => Value::Bool(false),
        (Schema::Optional(inner), v) => bools_from_ints(inner, v, depth + 1),
        (Schema::Ref(name), v) => match crate::core::schema::lookup_type(name) {
            Some(s) => bools_from_ints(&s, v, depth + 1),
            None => v,
        },
        (Schema::List(item), Value::Array(items)) => Value::Array(
            items
                .into_iter()
                .map(|v| bools_from_ints(item, v, depth + 1))
                .collect(),
        ),
        (Schema::Record(fields), Value::Object(mut m)) => {
            for f in fields {
                if let Some(v) = m.remove(f.wire_name) {
                    m.insert(
                        f.wire_name.to_string(),
                        bools_from_ints(&f.schema, v, depth + 1),
                    );
                }
            }
            Value::Object(m)
        }
        (_, v) => v,
    }
}

/// What a statement gave back.
enum Outcome {
    Rows(Vec<Value>),
    Changed(u64),
}

/// A failure, before it is worded for the step.
#[derive(Debug)]
enum SqlError {
    /// Worth another attempt (connection, pool, deadlock, busy).
    Retry(String),
    /// The statement or its values are wrong; retrying cannot help.
    Permanent(String),
}

impl SqlError {
    fn into_step_error(self, func: &str, db: &str) -> StepError {
        match self {
            SqlError::Retry(m) => StepError::retryable(format!("{func} on {db}: {m}")),
            SqlError::Permanent(m) => StepError::permanent(format!("{func} on {db}: {m}")),
        }
    }
}

/// A parsed `db` URL.
#[derive(Clone)]
enum Target {
    Postgres(Box<postgres::Opts>, String),
    MySql(Box<mysql::Opts>, String),
    /// An absolute path, or `None` for `:memory:`.
    Sqlite(Option<PathBuf>),
}

impl Target {
    /// Parses a connection URL. Errors never quote it (it may hold a
    /// password).
    fn parse(url: &str) -> Result<Target, String> {
        let url = url.trim();
        let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("postgres" | "postgresql") => {
                let (config, key) = postgres::parse(url)?;
                Ok(Target::Postgres(Box::new(config), key))
            }
            Some("mysql" | "mariadb") => {
                let rest = &url[url.find("://").map_or(0, |i| i + 3)..];
                let (opts, normal) = mysql::parse(rest)?;
                Ok(Target::MySql(Box::new(opts), normal))
            }
            Some("sqlite") => {
                let path = &url["sqlite://".len()..];
                if path.is_empty() {
                    return Err("the SQLite URL names no file (sqlite://PATH, sqlite:///ABSOLUTE/PATH or sqlite://:memory:)".into());
                }
                if path == ":memory:" {
                    return Ok(Target::Sqlite(None));
                }
                let path = std::path::absolute(path)
                    .map_err(|e| format!("cannot resolve the SQLite path `{path}`: {e}"))?;
                Ok(Target::Sqlite(Some(path)))
            }
            Some(other) => Err(format!(
                "unsupported database URL scheme `{other}://` (use postgres://, mysql:// or sqlite://)"
            )),
            None => Err(
                "`db` is not a database URL (postgres://..., mysql://... or sqlite://PATH)".into(),
            ),
        }
    }

    /// The database as messages name it: no user name, no password.
    fn display(&self) -> String {
        match self {
            Target::Postgres(c, _) => postgres::display(c),
            Target::MySql(o, _) => mysql::display(o),
            Target::Sqlite(Some(p)) => format!("sqlite://{}", p.display()),
            Target::Sqlite(None) => "sqlite://:memory:".into(),
        }
    }

    /// The key of the process-wide pool cache.
    fn key(&self) -> String {
        match self {
            Target::Postgres(_, url) | Target::MySql(_, url) => url.clone(),
            Target::Sqlite(Some(p)) => format!("sqlite://{}", p.display()),
            Target::Sqlite(None) => "sqlite://:memory:".into(),
        }
    }
}

/// One database's connections.
enum Db {
    Postgres(postgres::Pool),
    MySql(mysql::Pool),
    Sqlite(Arc<Mutex<rusqlite::Connection>>),
}

fn pools() -> &'static Mutex<HashMap<String, Arc<Db>>> {
    static POOLS: OnceLock<Mutex<HashMap<String, Arc<Db>>>> = OnceLock::new();
    POOLS.get_or_init(Default::default)
}

/// The cached pool of `target`, created on first use (PostgreSQL and MySQL
/// pools connect when a statement needs a connection; SQLite opens here).
fn database(target: &Target) -> Result<Arc<Db>, SqlError> {
    let key = target.key();
    let mut cache = crate::core::sync::lock(pools());
    if let Some(db) = cache.get(&key) {
        return Ok(db.clone());
    }
    let db = match target {
        Target::Postgres(config, _) => Db::Postgres(postgres::pool(config)?),
        Target::MySql(opts, _) => Db::MySql(mysql::pool(opts)?),
        Target::Sqlite(path) => {
            let conn = match path {
                Some(p) => rusqlite::Connection::open(p),
                None => rusqlite::Connection::open_in_memory(),
            }
            .map_err(|e| SqlError::Retry(format!("cannot open the database: {e}")))?;
            conn.busy_timeout(SQLITE_BUSY)
                .map_err(|e| SqlError::Retry(format!("cannot open the database: {e}")))?;
            Db::Sqlite(Arc::new(Mutex::new(conn)))
        }
    };
    let db = Arc::new(db);
    cache.insert(key, db.clone());
    Ok(db)
}

// ---- flowc test

/// `sql.query` and `sql.execute` for `flowc test` (no network): a
/// `sqlite://` database is a file under `sqlite/` in the test's working
/// directory (a fresh, empty database per test; `sqlite://:memory:` and
/// absolute paths too), so flows can create, fill and read tables in their
/// tests. PostgreSQL and MySQL URLs fail the step at once.
pub(crate) fn test_steps() -> Vec<(&'static str, crate::engine::registry::StepFn)> {
    vec![
        ("sql.query", test_query as crate::engine::registry::StepFn),
        ("sql.execute", test_execute),
    ]
}

fn test_query(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    async move { run_in_test("sql.query", call.args, true).await }.boxed()
}

fn test_execute(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    async move { run_in_test("sql.execute", call.args, false).await }.boxed()
}

async fn run_in_test(func: &str, mut args: Args, rows: bool) -> Result<Value, StepError> {
    let url = args
        .param(0, "db")
        .as_str()
        .unwrap_or_default()
        .trim()
        .to_string();
    let Some(path) = url.strip_prefix("sqlite://") else {
        let scheme = url.split_once("://").map_or("", |(s, _)| s);
        return Err(StepError::permanent(format!(
            "{func}: {scheme}:// databases are not available in flowc test (no network); \
             use a sqlite:// URL in the test's `config {{ ... }}` (a fresh SQLite file per test), \
             or keep the query in a flow that the test does not run"
        )));
    };
    let local = format!(
        "sqlite://sqlite/{}",
        path.trim_start_matches('/').replace(':', "_")
    );
    if let Some(parent) = std::path::Path::new(&local["sqlite://".len()..]).parent() {
        std::fs::create_dir_all(parent).map_err(|e| {
            StepError::permanent(format!("{func}: cannot create {}: {e}", parent.display()))
        })?;
    }
    if args.positional.is_empty() {
        args.named.retain(|(n, _)| *n != "db");
        args.named.insert(0, ("db", Value::String(local)));
    } else {
        args.positional[0] = Value::String(local);
    }
    run(func, &args, rows).await
}

// ---- SQLite

fn sqlite_error(e: rusqlite::Error) -> SqlError {
    use rusqlite::ErrorCode;
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::CannotOpen
            ) =>
        {
            SqlError::Retry(e.to_string())
        }
        _ => SqlError::Permanent(e.to_string()),
    }
}

fn sqlite_param(v: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as S;
    match v {
        Value::Null => S::Null,
        Value::Bool(b) => S::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => S::Integer(i),
            None => S::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => S::Text(s.clone()),
        other => S::Text(other.to_string()),
    }
}

fn sqlite_run(
    conn: &Mutex<rusqlite::Connection>,
    sql: &str,
    params: &[Value],
    rows: bool,
) -> Result<Outcome, SqlError> {
    let conn = crate::core::sync::lock(conn);
    let mut stmt = conn.prepare_cached(sql).map_err(sqlite_error)?;
    let expected = stmt.parameter_count();
    if expected != params.len() {
        return Err(SqlError::Permanent(format!(
            "the statement has {expected} parameter{}, `args` has {} value{}",
            if expected == 1 { "" } else { "s" },
            params.len(),
            if params.len() == 1 { "" } else { "s" }
        )));
    }
    let values: Vec<rusqlite::types::Value> = params.iter().map(sqlite_param).collect();
    let bound = rusqlite::params_from_iter(values.iter());
    if !rows {
        let n = stmt.execute(bound).map_err(sqlite_error)?;
        return Ok(Outcome::Changed(u64::try_from(n).unwrap_or(u64::MAX)));
    }
    let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
    let mut found = stmt.query(bound).map_err(sqlite_error)?;
    let mut out = Vec::new();
    while let Some(row) = found.next().map_err(sqlite_error)? {
        let mut object = Map::new();
        for (c, name) in names.iter().enumerate() {
            use rusqlite::types::ValueRef as R;
            let value = match row.get_ref(c).map_err(sqlite_error)? {
                R::Null => Value::Null,
                R::Integer(i) => Value::from(i),
                R::Real(f) => float_value(f),
                R::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
                R::Blob(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
            };
            object.insert(name.clone(), value);
        }
        out.push(Value::Object(object));
    }
    Ok(Outcome::Rows(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_display_without_credentials() {
        #[cfg(feature = "postgres")]
        {
            let t = Target::parse("postgres://app:s3cret@db.internal:6543/shop").unwrap();
            assert_eq!(t.display(), "postgres://db.internal:6543/shop");
            let e = Target::parse("postgres://app:s3cret@/x?port=zz")
                .err()
                .unwrap();
            assert!(!e.contains("s3cret"), "{e}");
        }
        #[cfg(not(feature = "postgres"))]
        {
            let e = Target::parse("postgres://app:s3cret@db.internal:6543/shop")
                .err()
                .unwrap();
            assert!(e.contains("flowc build --with postgres"), "{e}");
            assert!(!e.contains("s3cret"), "{e}");
        }
        let t = Target::parse("mariadb://app:s3cret@db.internal/shop").unwrap();
        assert_eq!(t.display(), "mysql://db.internal:3306/shop");
        let t = Target::parse("sqlite:///var/lib/app.db").unwrap();
        assert_eq!(t.display(), "sqlite:///var/lib/app.db");
        assert!(matches!(
            Target::parse("sqlite://:memory:"),
            Ok(Target::Sqlite(None))
        ));
        let e = Target::parse("oracle://app:s3cret@db/x").err().unwrap();
        assert!(
            e.contains("unsupported database URL scheme `oracle://`"),
            "{e}"
        );
        assert!(!e.contains("s3cret"));
    }

    #[tokio::test]
    async fn flowc_test_refuses_servers_and_runs_sqlite_in_its_folder() {
        let args = Args::new()
            .arg(Value::String(
                "postgres://app:s3cret@db.internal/shop".into(),
            ))
            .arg(Value::String("SELECT 1".into()));
        let e = run_in_test("sql.query", args, true).await.unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("postgres:// databases are not available in flowc test"),
            "{text}"
        );
        assert!(!text.contains("s3cret"), "{text}");

        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let args = Args::new()
            .arg(Value::String(url))
            .arg(Value::String("SELECT $1 AS a, ? AS b".into()))
            .kw("args", serde_json::json!([1, "x"]));
        let rows = run("sql.query", &args, true).await.unwrap();
        assert_eq!(rows, serde_json::json!([{ "a": 1, "b": "x" }]));
    }

    #[test]
    fn decode_errors_name_row_and_column() {
        assert_eq!(
            row_path("[2].qty: expected Int, got \"x\"", 1),
            "row 3, column qty: expected Int, got \"x\""
        );
        assert_eq!(
            row_path("expected [Json], got 1", 1),
            "expected [Json], got 1"
        );
    }
}
