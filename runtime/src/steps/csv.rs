//! `csv.encode` / `csv.decode`: RFC 4180 text with a header row.

use serde_json::{Map, Value};

use crate::core::error::RunError;
use crate::core::ops::display;
use crate::engine::ctx::Args;
use crate::steps::row_path;

/// `csv.encode(rows, columns:)`: one line per record under a header row;
/// fields containing `,`, `"`, CR or LF are quoted. Without `columns:` the
/// fields of the first row, in order, are the columns.
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
    let mut out = String::new();
    push_line(&mut out, columns.iter().map(String::as_str));
    for (i, row) in rows.iter().enumerate() {
        let Value::Object(record) = row else {
            return Err(RunError::new(format!(
                "csv.encode: row {} is not a record",
                i + 1
            )));
        };
        let cells: Vec<String> = columns
            .iter()
            .map(|c| match record.get(c) {
                None | Some(Value::Null) => String::new(),
                Some(v) => display(v),
            })
            .collect();
        push_line(&mut out, cells.iter().map(String::as_str));
    }
    Ok(Value::String(out))
}

fn push_line<'a>(out: &mut String, cells: impl Iterator<Item = &'a str>) {
    for (i, cell) in cells.enumerate() {
        if i > 0 {
            out.push(',');
        }
        if cell.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&cell.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(cell);
        }
    }
    out.push('\n');
}

/// `csv.decode(text, as: [T])`: records keyed by the header row, cells as
/// strings, then decoded into `T` (a cell of an `Int` field must hold an
/// integer, ...). Errors name the row (1-based, the header is row 1) and
/// the column.
pub(super) fn decode(args: &Args) -> Result<Value, RunError> {
    let text = args
        .param(0, "text")
        .as_str()
        .ok_or_else(|| RunError::new("csv.decode: `text` must be a String"))?;
    let mut lines = parse(text)?.into_iter();
    let header = lines.next().unwrap_or_default();
    let mut rows = Vec::new();
    for (i, cells) in lines.enumerate() {
        if cells.len() == 1 && cells[0].is_empty() {
            continue; // a blank line
        }
        if cells.len() != header.len() {
            return Err(RunError::new(format!(
                "csv.decode: row {} has {} cells, the header has {}",
                i + 2,
                cells.len(),
                header.len()
            )));
        }
        let record: Map<String, Value> = header
            .iter()
            .cloned()
            .zip(cells.into_iter().map(Value::String))
            .collect();
        rows.push(Value::Object(record));
    }
    let rows = Value::Array(rows);
    match &args.as_schema {
        Some(schema) => schema
            .decode_text_cells(&rows)
            .map_err(|e| RunError::new(format!("csv.decode: {}", row_path(&e.to_string(), 2)))),
        None => Ok(rows),
    }
}

/// Splits CSV text into rows of cells, honouring quotes.
fn parse(text: &str) -> Result<Vec<Vec<String>>, RunError> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut cell = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    let mut line = 1;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => {
                if c == '\n' {
                    line += 1;
                }
                cell.push(c);
            }
            (false, '"') if cell.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut cell)),
            (false, '\r') if chars.peek() == Some(&'\n') => {}
            (false, '\n') => {
                line += 1;
                row.push(std::mem::take(&mut cell));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => cell.push(c),
        }
    }
    if quoted {
        return Err(RunError::new(format!(
            "csv.decode: unclosed quote (line {line})"
        )));
    }
    if !cell.is_empty() || !row.is_empty() {
        row.push(cell);
        rows.push(row);
    }
    Ok(rows)
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
}
