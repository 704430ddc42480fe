//! `pdf.report` and `pdf.text` (LANGUAGE.md §14), built with the `pdf`
//! feature: the arguments here, the page layout in [`layout`], the file in
//! [`write`], the reading in [`read`].
//!
//! Writing: pdf-writer lays the file out object by object. Text is set in
//! DejaVu Sans (bytes from the `dejavu` crate; its licence, Bitstream
//! Vera's, allows embedding in documents), embedded as a subset of the
//! glyphs used (subsetter) in a CID-keyed Type 0 font with a ToUnicode map,
//! so that every character can be searched, copied and extracted. CIDs are
//! handed out per character in order of first use and mapped to glyphs by
//! a CIDToGIDMap: a character the font lacks (CJK, say) still has a CID of
//! its own, drawn as the missing-glyph box but extracted as itself. One
//! font only: the title and the header row are made bold by stroking the
//! glyph outlines as well as filling them, which spares every binary a
//! second 700 KB font. Nothing depends on the clock or on chance (no dates,
//! no document ID; the subset's tag is a hash of its characters), so the
//! same input gives the same bytes.
//!
//! Layout, on A4 with 15 mm margins:
//! - the title (16 pt, bold) and the paragraph `text` (10 pt) wrap at
//!   spaces (a word wider than the page is broken), `\n` starts a new line,
//!   and both flow over as many pages as they need;
//! - the table (8 pt) spans the text width. A column's natural width is its
//!   widest line, header or cell, capped at 40% of the table; the widths
//!   are then scaled together to fill the width, so they stay proportional
//!   to the content and no column crowds out the others. A table that does
//!   not fit even with every column at most 80 pt wide goes on landscape A4;
//! - a cell wraps at spaces up to 6 lines (a header 3); the rest is cut and
//!   the last line kept ends with "…", so every row fits on a page and a row
//!   never splits over two;
//! - the header row (grey, bold) starts the table on every page; every
//!   page's footer says "Page i of n".
//!
//! Reading: pdf-extract (on lopdf) puts the characters of each page in
//! reading order from their positions; pages are separated by a line
//! holding only a form feed. Inputs over 64 MiB are refused before they
//! are parsed, and a panic inside the reader (it `unwrap`s on some damaged
//! files) is caught and reported as a damaged file.

mod layout;
mod read;
mod write;

use base64::Engine as _;
use serde_json::Value;

use crate::core::error::RunError;
use crate::core::ops::display;
use crate::engine::ctx::Args;
use crate::engine::registry::PureFn;

/// The `pdf.*` functions by qualified name.
pub(super) const FNS: [(&str, PureFn); 2] = [("pdf.report", report), ("pdf.text", text)];

/// `pdf.text` refuses larger inputs.
const MAX_INPUT: usize = 64 * 1024 * 1024;

/// `pdf.report(title, rows, columns:, text:)` → the PDF as Bytes (base64).
fn report(args: &Args) -> Result<Value, RunError> {
    let report = Report::from_args(args)?;
    let pdf = report.render()?;
    Ok(Value::String(crate::core::bytes::encode(&pdf)))
}

fn report_error(why: impl std::fmt::Display) -> RunError {
    RunError::new(format!("pdf.report: {why}"))
}

/// The arguments of `pdf.report`, cells already turned into text.
struct Report {
    title: String,
    text: Option<String>,
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Report {
    fn from_args(args: &Args) -> Result<Report, RunError> {
        let title = match args.param(0, "title") {
            Value::String(t) => clean(t),
            _ => return Err(report_error("`title` must be a String")),
        };
        let rows = args
            .param(1, "rows")
            .as_array()
            .ok_or_else(|| report_error("`rows` must be a list of records"))?;
        let columns: Vec<String> = match args.param(2, "columns") {
            Value::Null => match rows.first() {
                Some(Value::Object(first)) => first.keys().cloned().collect(),
                _ => Vec::new(),
            },
            Value::Array(cols) => cols.iter().map(display).collect(),
            _ => return Err(report_error("`columns` must be a list of Strings")),
        };
        let text = match args.param(3, "text") {
            Value::Null => None,
            Value::String(t) if t.trim().is_empty() => None,
            Value::String(t) => Some(clean(t)),
            _ => return Err(report_error("`text` must be a String")),
        };
        let rows = rows
            .iter()
            .enumerate()
            .map(|(i, row)| match row {
                Value::Object(record) => Ok(columns
                    .iter()
                    .map(|c| clean(&cell(record.get(c))))
                    .collect()),
                _ => Err(report_error(format!("row {} is not a record", i + 1))),
            })
            .collect::<Result<_, _>>()?;
        let columns = columns.iter().map(|c| clean(c)).collect();
        Ok(Report {
            title,
            text,
            columns,
            rows,
        })
    }

    /// Lays the report out and writes the PDF file.
    fn render(&self) -> Result<Vec<u8>, RunError> {
        write::write_pdf(&self.title, layout::lay_out(self)?)
    }
}

/// A cell's text: strings as they are, other values as JSON, null empty.
fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(v) => display(v),
    }
}

/// `text` with tabs as spaces and other control characters but `\n`
/// dropped: the font has no glyph for them.
fn clean(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            '\t' => Some(' '),
            '\n' => Some('\n'),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect()
}

/// `pdf.text(file)` → the text of every page; pages are separated by a
/// line holding only a form feed (`\f`).
fn text(args: &Args) -> Result<Value, RunError> {
    let data = input_bytes(args.param(0, "file"))?;
    read::extract(&data).map(Value::String)
}

fn text_error(why: impl std::fmt::Display) -> RunError {
    RunError::new(format!("pdf.text: {why}"))
}

/// The content of a File value (its `bytes`, else its `text`), or of Bytes.
fn input_bytes(file: &Value) -> Result<Vec<u8>, RunError> {
    let encoded = match file {
        Value::String(b) => b,
        Value::Object(f) => match (f.get("bytes"), f.get("text")) {
            (Some(Value::String(b)), _) => b,
            (_, Some(Value::String(t))) => {
                check_size(t.len())?;
                return Ok(t.as_bytes().to_vec());
            }
            _ => return Err(text_error("the File has neither `bytes` nor `text`")),
        },
        _ => return Err(text_error("`file` must be a File (or Bytes)")),
    };
    // Before decoding: base64 holds 3 bytes in every 4 characters.
    check_size(encoded.len() / 4 * 3)?;
    base64::engine::general_purpose::STANDARD
        .decode(encoded.as_bytes())
        .map_err(|e| text_error(format!("the file's bytes are not valid base64 ({e})")))
}

fn check_size(len: usize) -> Result<(), RunError> {
    if len > MAX_INPUT {
        return Err(text_error(format!(
            "the file is {:.1} MiB; at most 64 MiB is read",
            len as f64 / (1024.0 * 1024.0)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::registry::StepRegistry;

    #[test]
    fn both_functions_are_registered_and_found() {
        let mut registry = StepRegistry::new();
        crate::steps::register(&mut registry);
        for (name, _) in FNS {
            assert!(registry.pure_fn(name).is_some(), "{name}");
            assert!(super::super::pure::lookup(name).is_some(), "{name}");
        }
    }

    #[test]
    fn cells_show_strings_as_they_are_and_other_values_as_json() {
        use serde_json::json;
        assert_eq!(cell(Some(&json!("a \"b\""))), "a \"b\"");
        assert_eq!(cell(Some(&json!(2.5))), "2.5");
        assert_eq!(cell(Some(&json!(true))), "true");
        assert_eq!(cell(Some(&json!({ "k": [1, null] }))), r#"{"k":[1,null]}"#);
        assert_eq!(cell(Some(&Value::Null)), "");
        assert_eq!(cell(None), "");
        assert_eq!(clean("a\tb\r\nc\u{7}"), "a b\nc");
    }
}
