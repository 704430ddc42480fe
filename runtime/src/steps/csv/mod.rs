//! `csv.encode` / `csv.decode`: RFC 4180 text with a header row, through
//! the `csv` crate; `delimiter:` for `;` and tab files, a UTF-8 byte-order
//! mark skipped when reading and written on request (`bom: true`, for
//! spreadsheet programs).

mod rows;

use serde_json::{Map, Value};

use crate::core::error::RunError;
use crate::core::ops::display;
use crate::engine::ctx::Args;
use crate::steps::row_path;

pub use rows::CsvRows;

/// The UTF-8 byte-order mark some programs put before the header row.
const BOM: &str = "\u{feff}";

/// `delimiter:`: one ASCII character (`","` unless given).
fn delimiter(args: &Args, func: &str) -> Result<u8, RunError> {
    match args.get_named("delimiter") {
        None | Some(Value::Null) => Ok(b','),
        Some(Value::String(d)) if d.len() == 1 && d.is_ascii() && d != "\"" && d != "\n" => {
            Ok(d.as_bytes()[0])
        }
        Some(other) => Err(RunError::new(format!(
            "{func}: `delimiter` must be one character such as \",\", \";\" or \"\\t\", not {}",
            display(other)
        ))),
    }
}

/// `csv.encode(rows, columns:, delimiter:, bom:)`: one line per record under
/// a header row; a cell is quoted when it holds the delimiter, a quote, CR
/// or LF. Without `columns:` the fields of the first row, in order, are the
/// columns.
pub(super) fn encode(args: &Args) -> Result<Value, RunError> {
    let rows = args
        .param(0, "rows")
        .as_array()
        .ok_or_else(|| RunError::new("csv.encode: `rows` must be a list"))?;
    let columns: Vec<String> = match args.param(1, "columns") {
        Value::Array(cols) => cols.iter().map(display).collect(),
        _ => match rows.first() {
            Some(Value::Object(first)) => first.keys().cloned().collect(),
            _ => Vec::new(),
        },
    };
    let mut writer = csv::WriterBuilder::new()
        .delimiter(delimiter(args, "csv.encode")?)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    let failed = |e: csv::Error| RunError::new(format!("csv.encode: {e}"));
    writer.write_record(&columns).map_err(failed)?;
    for (i, row) in rows.iter().enumerate() {
        let Value::Object(record) = row else {
            return Err(RunError::new(format!(
                "csv.encode: row {} is not a record",
                i + 1
            )));
        };
        let cells = columns.iter().map(|c| match record.get(c) {
            None | Some(Value::Null) => String::new(),
            Some(v) => display(v),
        });
        writer.write_record(cells).map_err(failed)?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| RunError::new(format!("csv.encode: {}", e.error())))?;
    let mut text =
        String::from_utf8(bytes).map_err(|_| RunError::new("csv.encode: the text is not UTF-8"))?;
    if args.get_named("bom") == Some(&Value::Bool(true)) {
        text.insert_str(0, BOM);
    }
    Ok(Value::String(text))
}

/// `csv.decode(text, as: [T], delimiter:)`: records keyed by the header
/// row, cells as strings, then decoded into `T` (a cell of an `Int` field
/// must hold an integer, ...). Errors name the row (1-based, the header is
/// row 1) and the column. A byte-order mark before the header is skipped;
/// blank lines are skipped.
pub(super) fn decode(args: &Args) -> Result<Value, RunError> {
    let text = args
        .param(0, "text")
        .as_str()
        .ok_or_else(|| RunError::new("csv.decode: `text` must be a String"))?;
    let text = text.strip_prefix(BOM).unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter(args, "csv.decode")?)
        .flexible(true)
        .from_reader(text.as_bytes());
    let failed = |e: csv::Error| csv_error("csv.decode", &e);
    let header: Vec<String> = reader
        .headers()
        .map_err(failed)?
        .iter()
        .map(str::to_string)
        .collect();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(failed)?;
        let row = record
            .position()
            .map_or(rows.len() + 2, |p| p.line() as usize);
        if record.len() != header.len() {
            return Err(short_row("csv.decode", row, record.len(), header.len()));
        }
        let fields: Map<String, Value> = header
            .iter()
            .cloned()
            .zip(record.iter().map(|c| Value::String(c.to_string())))
            .collect();
        rows.push(Value::Object(fields));
    }
    let rows = Value::Array(rows);
    match &args.as_schema {
        Some(schema) => schema
            .decode_text_cells(&rows)
            .map_err(|e| RunError::new(format!("csv.decode: {}", row_path(&e.to_string(), 2)))),
        None => Ok(rows),
    }
}

/// A reader's error as a run error: the line, and no bytes of the cell.
fn csv_error(func: &str, e: &csv::Error) -> RunError {
    let line = e
        .position()
        .map_or(String::new(), |p| format!(" (line {})", p.line()));
    let what = match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "a cell is not UTF-8".to_string(),
        _ => e.to_string(),
    };
    RunError::new(format!("{func}: {what}{line}"))
}

/// A row with another number of cells than the header.
fn short_row(func: &str, row: impl std::fmt::Display, cells: usize, columns: usize) -> RunError {
    RunError::new(format!(
        "{func}: row {row} has {cells} cells, the header has {columns}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::schema::{FieldSchema, Schema};
    use serde_json::json;

    #[test]
    fn encodes_with_quoting() {
        let args = Args::new()
            .arg(json!([{ "sku": "a", "qty": 1 }, { "sku": "b,\"c\"", "qty": 2 }]))
            .kw("columns", json!(["sku", "qty"]));
        assert_eq!(
            encode(&args).unwrap(),
            json!("sku,qty\na,1\n\"b,\"\"c\"\"\",2\n")
        );
    }

    #[test]
    fn decodes_into_a_type_naming_row_and_column() {
        let row = Schema::Record(vec![
            FieldSchema::new("sku", Schema::String),
            FieldSchema::new("qty", Schema::Int),
        ]);
        let ok = Args::new()
            .arg(json!("sku,qty\n\"x,y\",2\r\nb,3\n"))
            .decode_as(Schema::list(row.clone()));
        assert_eq!(
            decode(&ok).unwrap(),
            json!([{ "sku": "x,y", "qty": 2 }, { "sku": "b", "qty": 3 }])
        );
        let bad = Args::new()
            .arg(json!("sku,qty\na,1\nb,three\n"))
            .decode_as(Schema::list(row));
        let err = decode(&bad).unwrap_err().to_string();
        assert!(err.contains("row 3, column qty"), "{err}");
        assert!(err.contains("three"), "{err}");
    }

    #[test]
    fn semicolons_a_byte_order_mark_and_blank_lines() {
        let args = Args::new()
            .arg(json!(
                "\u{feff}sku;note\n\na;\"x;y\"\n\nb;\"say \"\"hi\"\"\"\n"
            ))
            .kw("delimiter", json!(";"));
        assert_eq!(
            decode(&args).unwrap(),
            json!([{ "sku": "a", "note": "x;y" }, { "sku": "b", "note": "say \"hi\"" }])
        );
        let tabs = Args::new()
            .arg(json!([{ "a": "1\t2", "b": "c" }]))
            .kw("columns", json!(["a", "b"]))
            .kw("delimiter", json!("\t"))
            .kw("bom", json!(true));
        assert_eq!(encode(&tabs).unwrap(), json!("\u{feff}a\tb\n\"1\t2\"\tc\n"));
        let bad = Args::new()
            .arg(json!("a\n1\n"))
            .kw("delimiter", json!(";;"));
        assert!(decode(&bad)
            .unwrap_err()
            .to_string()
            .contains("one character"));
    }

    #[test]
    fn a_short_row_is_named() {
        let args = Args::new().arg(json!("a,b\n1,2\n3\n"));
        let err = decode(&args).unwrap_err().to_string();
        assert!(err.contains("row 3 has 1 cells, the header has 2"), "{err}");
    }
}
