//! `sql.*` on `postgres://` and `postgresql://` URLs: tokio-postgres with a
//! deadpool pool built like the PostgreSQL store's, no TLS (compiled with
//! the `postgres` feature; see `driver_without!` in sql.rs).

use std::error::Error as _;

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::core::schema::float_value;

use super::{Outcome, SqlError, POOL_SIZE};

/// Parsed connection options.
pub(super) type Opts = tokio_postgres::Config;
/// One database's connections.
pub(super) type Pool = deadpool_postgres::Pool;

/// Parses a `postgres://` URL (libpq syntax); returns the options and the
/// URL as the pool cache keys it. Errors never quote the URL.
pub(super) fn parse(url: &str) -> Result<(Opts, String), String> {
    let config: tokio_postgres::Config = url.parse().map_err(|e| {
        format!("invalid PostgreSQL URL (postgres://user:password@host:port/database): {e}")
    })?;
    if config.get_hosts().is_empty() {
        return Err(
            "the PostgreSQL URL names no host (postgres://user:password@host:port/database)".into(),
        );
    }
    Ok((config, url.to_string()))
}

/// The database as messages name it: no user name, no password.
pub(super) fn display(c: &Opts) -> String {
    let host = match c.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => String::new(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    format!("postgres://{host}:{port}/{}", c.get_dbname().unwrap_or(""))
}

/// A pool of up to [`POOL_SIZE`] connections, made when needed (built like
/// the PostgreSQL store's).
pub(super) fn pool(config: &Opts) -> Result<Pool, SqlError> {
    crate::store::postgres::new_pool(config, POOL_SIZE)
        .map_err(|e| SqlError::Permanent(format!("cannot create the connection pool: {e}")))
}

/// A JSON value bound in PostgreSQL's text format: the server parses it as
/// the parameter's type.
#[derive(Debug)]
struct PgText(Option<String>);

impl PgText {
    fn new(v: &Value) -> PgText {
        PgText(match v {
            Value::Null => None,
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        })
    }
}

impl tokio_postgres::types::ToSql for PgText {
    fn to_sql(
        &self,
        _ty: &tokio_postgres::types::Type,
        out: &mut tokio_postgres::types::private::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            None => Ok(tokio_postgres::types::IsNull::Yes),
            Some(s) => {
                out.extend_from_slice(s.as_bytes());
                Ok(tokio_postgres::types::IsNull::No)
            }
        }
    }

    fn accepts(_ty: &tokio_postgres::types::Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &tokio_postgres::types::Type) -> tokio_postgres::types::Format {
        tokio_postgres::types::Format::Text
    }

    tokio_postgres::types::to_sql_checked!();
}

/// A column value as raw bytes in PostgreSQL's binary format.
struct PgRaw<'a>(Option<&'a [u8]>);

impl<'a> tokio_postgres::types::FromSql<'a> for PgRaw<'a> {
    fn from_sql(
        _ty: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(PgRaw(Some(raw)))
    }

    fn from_sql_null(
        _ty: &tokio_postgres::types::Type,
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(PgRaw(None))
    }

    fn accepts(_ty: &tokio_postgres::types::Type) -> bool {
        true
    }
}

fn pg_error(e: &tokio_postgres::Error) -> SqlError {
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            let message = format!(
                "{} ({code}){}",
                db.message(),
                db.detail().map(|d| format!(": {d}")).unwrap_or_default()
            );
            // Connection exceptions, serialization failures and deadlocks,
            // insufficient resources, operator intervention (shutdown).
            let transient = code.starts_with("08")
                || code == "40001"
                || code == "40P01"
                || code.starts_with("53")
                || code.starts_with("57P");
            if transient {
                SqlError::Retry(message)
            } else {
                SqlError::Permanent(message)
            }
        }
        None => {
            let detail = e.source().map(|s| format!(": {s}")).unwrap_or_default();
            SqlError::Retry(format!("{e}{detail}"))
        }
    }
}

/// Runs one statement on `pool`.
pub(super) async fn run(
    pool: &Pool,
    sql: &str,
    params: &[Value],
    rows: bool,
) -> Result<Outcome, SqlError> {
    let client = pool.get().await.map_err(|e| match e {
        deadpool_postgres::PoolError::Backend(e) => pg_error(&e),
        other => SqlError::Retry(format!("cannot get a connection: {other}")),
    })?;
    let stmt = client.prepare_cached(sql).await.map_err(|e| pg_error(&e))?;
    if stmt.params().len() != params.len() {
        return Err(SqlError::Permanent(format!(
            "the statement has {} parameter{}, `args` has {} value{}",
            stmt.params().len(),
            if stmt.params().len() == 1 { "" } else { "s" },
            params.len(),
            if params.len() == 1 { "" } else { "s" }
        )));
    }
    let values: Vec<PgText> = params.iter().map(PgText::new).collect();
    let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = values
        .iter()
        .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    if !rows {
        let n = client
            .execute(&stmt, &refs)
            .await
            .map_err(|e| pg_error(&e))?;
        return Ok(Outcome::Changed(n));
    }
    let found = client.query(&stmt, &refs).await.map_err(|e| pg_error(&e))?;
    let mut out = Vec::with_capacity(found.len());
    for (i, row) in found.iter().enumerate() {
        let mut object = Map::new();
        for (c, column) in row.columns().iter().enumerate() {
            let raw: PgRaw = row.try_get(c).map_err(|e| pg_error(&e))?;
            let value = match raw.0 {
                None => Value::Null,
                Some(bytes) => pg_value(column.type_(), bytes).map_err(|e| {
                    SqlError::Permanent(format!("row {}, column {}: {e}", i + 1, column.name()))
                })?,
            };
            object.insert(column.name().to_string(), value);
        }
        out.push(Value::Object(object));
    }
    Ok(Outcome::Rows(out))
}

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from the Unix epoch to PostgreSQL's.
const PG_EPOCH_DAYS: i64 = 10_957;

/// A column value (binary format) as JSON.
fn pg_value(ty: &tokio_postgres::types::Type, b: &[u8]) -> Result<Value, String> {
    use tokio_postgres::types::Type as T;
    let fixed = |n: usize| -> Result<&[u8], String> {
        if b.len() == n {
            Ok(b)
        } else {
            Err(format!("a {} value of {} bytes", ty.name(), b.len()))
        }
    };
    let text = || {
        std::str::from_utf8(b)
            .map(|s| Value::String(s.to_string()))
            .map_err(|_| format!("{} text that is not UTF-8", ty.name()))
    };
    Ok(match ty {
        t if *t == T::BOOL => Value::Bool(fixed(1)?[0] != 0),
        t if *t == T::INT2 => Value::from(i16::from_be_bytes(arr(fixed(2)?))),
        t if *t == T::INT4 => Value::from(i32::from_be_bytes(arr(fixed(4)?))),
        t if *t == T::INT8 => Value::from(i64::from_be_bytes(arr(fixed(8)?))),
        t if *t == T::OID => Value::from(u32::from_be_bytes(arr(fixed(4)?))),
        t if *t == T::FLOAT4 => float_value(f64::from(f32::from_be_bytes(arr(fixed(4)?)))),
        t if *t == T::FLOAT8 => float_value(f64::from_be_bytes(arr(fixed(8)?))),
        t if *t == T::NUMERIC => pg_numeric(b)?,
        t if [T::TEXT, T::VARCHAR, T::BPCHAR, T::NAME, T::UNKNOWN, T::CHAR].contains(t) => text()?,
        t if *t == T::JSON => {
            serde_json::from_slice(b).map_err(|e| format!("invalid json: {e}"))?
        }
        t if *t == T::JSONB => match b.split_first() {
            Some((1, rest)) => {
                serde_json::from_slice(rest).map_err(|e| format!("invalid jsonb: {e}"))?
            }
            _ => return Err("jsonb in an unknown format version".into()),
        },
        t if *t == T::TIMESTAMPTZ || *t == T::TIMESTAMP => {
            let micros = i64::from_be_bytes(arr(fixed(8)?));
            match chrono::DateTime::from_timestamp_micros(micros.saturating_add(PG_EPOCH_MICROS)) {
                Some(t) => Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
                None => Value::String(if micros > 0 { "infinity" } else { "-infinity" }.into()),
            }
        }
        t if *t == T::DATE => {
            let days = i64::from(i32::from_be_bytes(arr(fixed(4)?)));
            let date = chrono::DateTime::from_timestamp((days + PG_EPOCH_DAYS) * 86_400, 0)
                .ok_or_else(|| "a date out of range".to_string())?;
            Value::String(date.format("%Y-%m-%d").to_string())
        }
        t if *t == T::TIME => {
            let micros = i64::from_be_bytes(arr(fixed(8)?));
            let t = chrono::NaiveTime::from_num_seconds_from_midnight_opt(
                u32::try_from(micros / 1_000_000).unwrap_or(0),
                u32::try_from((micros % 1_000_000) * 1000).unwrap_or(0),
            )
            .ok_or_else(|| "a time out of range".to_string())?;
            Value::String(t.format("%H:%M:%S%.f").to_string())
        }
        t if *t == T::UUID => {
            let h = hex::encode(fixed(16)?);
            Value::String(format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            ))
        }
        t if *t == T::BYTEA => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        other => {
            return Err(format!(
                "type {} cannot be read by sql.query; cast it in the query (`COLUMN::text`)",
                other.name()
            ))
        }
    })
}

fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[..N]);
    a
}

/// `numeric` in binary: ndigits, weight, sign, dscale, then base-10000
/// digits. An `Int` when it has no fraction and fits, else a `Float`.
fn pg_numeric(b: &[u8]) -> Result<Value, String> {
    let word = |i: usize| -> Result<u16, String> {
        b.get(i * 2..i * 2 + 2)
            .map(|s| u16::from_be_bytes([s[0], s[1]]))
            .ok_or_else(|| "a truncated numeric".to_string())
    };
    let ndigits = usize::from(word(0)?);
    let weight = i32::from(word(1)? as i16);
    let sign = word(2)?;
    let scale = word(3)?;
    if sign == 0xC000 {
        return Ok(Value::String("NaN".into()));
    }
    let mut text = String::new();
    if sign == 0x4000 {
        text.push('-');
    }
    // Integer part: digit groups 0..=weight.
    if weight < 0 {
        text.push('0');
    }
    for g in 0..=weight.max(-1) {
        let g = usize::try_from(g).unwrap_or(0);
        let d = if g < ndigits { word(4 + g)? } else { 0 };
        if g == 0 {
            text.push_str(&d.to_string());
        } else {
            text.push_str(&format!("{d:04}"));
        }
    }
    if scale > 0 {
        let mut frac = String::new();
        let first = usize::try_from(weight + 1).unwrap_or(0);
        // Leading zero groups when weight < -1.
        for _ in 0..usize::try_from(-(weight + 1)).unwrap_or(0) {
            frac.push_str("0000");
        }
        for g in first..ndigits {
            frac.push_str(&format!("{:04}", word(4 + g)?));
        }
        let scale = usize::from(scale);
        while frac.len() < scale {
            frac.push('0');
        }
        frac.truncate(scale);
        text.push('.');
        text.push_str(&frac);
    }
    if scale == 0 {
        if let Ok(i) = text.parse::<i64>() {
            return Ok(Value::from(i));
        }
    }
    text.parse::<f64>()
        .map(float_value)
        .map_err(|_| format!("numeric {text} is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_display_without_credentials() {
        let (c, key) = parse("postgres://app:s3cret@db.internal:6543/shop").unwrap();
        assert_eq!(display(&c), "postgres://db.internal:6543/shop");
        assert_eq!(key, "postgres://app:s3cret@db.internal:6543/shop");
        let e = parse("postgres://app:s3cret@/x?port=zz").err().unwrap();
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[test]
    fn numeric_binary_decodes() {
        // 12345.678: ndigits 3, weight 1, sign +, dscale 3: 1 2345 6780.
        let b: Vec<u8> = [3u16, 1, 0, 3, 1, 2345, 6780]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect();
        assert_eq!(pg_numeric(&b).unwrap(), serde_json::json!(12345.678));
        // -42: ndigits 1, weight 0, sign -, dscale 0.
        let b: Vec<u8> = [1u16, 0, 0x4000, 0, 42]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect();
        assert_eq!(pg_numeric(&b).unwrap(), serde_json::json!(-42));
        // 0.0005: ndigits 1, weight -1, dscale 4: 5 (0.0005 = 5 * 10000^-1).
        let b: Vec<u8> = [1u16, 0xFFFF, 0, 4, 5]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect();
        assert_eq!(pg_numeric(&b).unwrap(), serde_json::json!(0.0005));
    }
}
