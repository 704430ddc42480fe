//! `sql.*` on `mysql://` and `mariadb://` URLs: `mysql_async`'s pool, no TLS
//! (compiled with the `mysql` feature; see `driver_without!` in sql.rs).

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::core::schema::float_value;

use super::{Outcome, SqlError, POOL_SIZE};

/// Parsed connection options.
pub(super) type Opts = mysql_async::Opts;
/// One database's connections.
pub(super) type Pool = mysql_async::Pool;

/// Parses a `mysql://` URL (`rest` is what follows `://`); returns the
/// options and the URL as the pool cache keys it.
pub(super) fn parse(rest: &str) -> Result<(Opts, String), String> {
    let normal = format!("mysql://{rest}");
    let opts = mysql_async::Opts::from_url(&normal).map_err(|e| {
        format!("invalid MySQL URL (mysql://user:password@host:port/database): {e}")
    })?;
    Ok((opts, normal))
}

/// The database as messages name it: no user name, no password.
pub(super) fn display(o: &Opts) -> String {
    format!(
        "mysql://{}:{}/{}",
        o.ip_or_hostname(),
        o.tcp_port(),
        o.db_name().unwrap_or("")
    )
}

/// A pool of up to [`POOL_SIZE`] connections, made when needed.
pub(super) fn pool(opts: &Opts) -> Result<Pool, SqlError> {
    let constraints = mysql_async::PoolConstraints::new(0, POOL_SIZE)
        .ok_or_else(|| SqlError::Permanent("invalid pool size".into()))?;
    let opts = mysql_async::OptsBuilder::from_opts(opts.clone()).pool_opts(
        mysql_async::PoolOpts::default()
            .with_constraints(constraints)
            .with_inactive_connection_ttl(Duration::from_secs(300)),
    );
    Ok(mysql_async::Pool::new(opts))
}

fn mysql_error(e: mysql_async::Error) -> SqlError {
    use mysql_async::{DriverError, Error};
    match e {
        Error::Server(s) => {
            let message = format!("{} ({}, SQLSTATE {})", s.message, s.code, s.state);
            // Lock wait timeout, deadlock, too many connections.
            if matches!(s.code, 1205 | 1213 | 1040) {
                SqlError::Retry(message)
            } else {
                SqlError::Permanent(message)
            }
        }
        Error::Url(u) => SqlError::Permanent(format!("invalid URL: {u}")),
        Error::Driver(
            d @ (DriverError::StmtParamsMismatch { .. }
            | DriverError::StmtParamsNumberExceedsLimit { .. }
            | DriverError::MixedParams
            | DriverError::Params(_)),
        ) => SqlError::Permanent(d.to_string()),
        other => SqlError::Retry(other.to_string()),
    }
}

fn mysql_param(v: &Value) -> mysql_async::Value {
    match v {
        Value::Null => mysql_async::Value::NULL,
        Value::Bool(b) => mysql_async::Value::Int(i64::from(*b)),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => mysql_async::Value::Int(i),
            (None, Some(u)) => mysql_async::Value::UInt(u),
            _ => mysql_async::Value::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => match mysql_time(s) {
            Some(t) => t,
            None => mysql_async::Value::Bytes(s.clone().into_bytes()),
        },
        other => mysql_async::Value::Bytes(other.to_string().into_bytes()),
    }
}

/// An RFC 3339 time (a Flow `Time`) as a MySQL `DATETIME` in UTC: MySQL
/// refuses `2026-03-01T10:00:00Z` for a `DATETIME` column in strict mode.
fn mysql_time(s: &str) -> Option<mysql_async::Value> {
    use chrono::{Datelike as _, Timelike as _};
    if s.len() < 20 || s.as_bytes().get(10) != Some(&b'T') {
        return None;
    }
    let t = chrono::DateTime::parse_from_rfc3339(s).ok()?.naive_utc();
    Some(mysql_async::Value::Date(
        u16::try_from(t.year()).ok()?,
        u8::try_from(t.month()).ok()?,
        u8::try_from(t.day()).ok()?,
        u8::try_from(t.hour()).ok()?,
        u8::try_from(t.minute()).ok()?,
        u8::try_from(t.second()).ok()?,
        t.nanosecond() / 1000,
    ))
}

pub(super) async fn run(
    pool: &mysql_async::Pool,
    sql: &str,
    params: &[Value],
    rows: bool,
) -> Result<Outcome, SqlError> {
    use mysql_async::prelude::Queryable as _;
    let mut conn = pool.get_conn().await.map_err(mysql_error)?;
    let params = if params.is_empty() {
        mysql_async::Params::Empty
    } else {
        mysql_async::Params::Positional(params.iter().map(mysql_param).collect())
    };
    if !rows {
        conn.exec_drop(sql, params).await.map_err(mysql_error)?;
        return Ok(Outcome::Changed(conn.affected_rows()));
    }
    let found: Vec<mysql_async::Row> = conn.exec(sql, params).await.map_err(mysql_error)?;
    let mut out = Vec::with_capacity(found.len());
    for (i, row) in found.into_iter().enumerate() {
        let columns = row.columns();
        let mut object = Map::new();
        for (column, value) in columns.iter().zip(row.unwrap()) {
            let name = column.name_str().into_owned();
            let value = mysql_value(column, value)
                .map_err(|e| SqlError::Permanent(format!("row {}, column {name}: {e}", i + 1)))?;
            object.insert(name, value);
        }
        out.push(Value::Object(object));
    }
    Ok(Outcome::Rows(out))
}

fn mysql_value(column: &mysql_async::Column, v: mysql_async::Value) -> Result<Value, String> {
    use mysql_async::consts::{ColumnFlags, ColumnType as C};
    use mysql_async::Value as M;
    let ty = column.column_type();
    Ok(match v {
        M::NULL => Value::Null,
        M::Int(i) => Value::from(i),
        M::UInt(u) => Value::from(u),
        M::Float(f) => float_value(f64::from(f)),
        M::Double(f) => float_value(f),
        M::Bytes(b) => match ty {
            C::MYSQL_TYPE_DECIMAL | C::MYSQL_TYPE_NEWDECIMAL => {
                let s = String::from_utf8_lossy(&b);
                match s.parse::<i64>() {
                    Ok(i) => Value::from(i),
                    Err(_) => s
                        .parse::<f64>()
                        .map(float_value)
                        .map_err(|_| format!("decimal {s} is not a number"))?,
                }
            }
            C::MYSQL_TYPE_JSON => {
                serde_json::from_slice(&b).map_err(|e| format!("invalid JSON: {e}"))?
            }
            _ => {
                let binary = column.flags().contains(ColumnFlags::BINARY_FLAG)
                    && column.character_set() == 63;
                match String::from_utf8(b) {
                    Ok(s) if !binary => Value::String(s),
                    Ok(s) => Value::String(base64::engine::general_purpose::STANDARD.encode(s)),
                    Err(e) => Value::String(
                        base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
                    ),
                }
            }
        },
        M::Date(y, mo, d, h, mi, s, us) => {
            if ty == C::MYSQL_TYPE_DATE {
                Value::String(format!("{y:04}-{mo:02}-{d:02}"))
            } else if us == 0 {
                Value::String(format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"))
            } else {
                Value::String(format!(
                    "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{us:06}Z"
                ))
            }
        }
        M::Time(neg, days, h, mi, s, us) => {
            let hours = u64::from(days) * 24 + u64::from(h);
            let sign = if neg { "-" } else { "" };
            if us == 0 {
                Value::String(format!("{sign}{hours:02}:{mi:02}:{s:02}"))
            } else {
                Value::String(format!("{sign}{hours:02}:{mi:02}:{s:02}.{us:06}"))
            }
        }
    })
}
