//! `pdf.report` and `pdf.text` through `call_pure`, as generated code calls
//! them: reports read back by `pdf.text`, and, when `FLOW_TEST_PDFTOTEXT`
//! names poppler's `pdftotext` (CI sets it), by poppler too, with
//! `pdffonts` (from the same folder) checking that the font is embedded.

#![cfg(feature = "pdf")]

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use flow_runtime::{call_pure, Args, RunError};
use serde_json::{json, Value};

/// `pdf.report(title, rows, columns:, text:)`: required arguments by
/// position, the others by name (as generated code passes them).
fn report(title: &str, rows: Value, columns: Option<Value>, text: Option<&str>) -> Vec<u8> {
    let mut args = Args::new().arg(json!(title)).arg(rows);
    if let Some(c) = columns {
        args = args.kw("columns", c);
    }
    if let Some(t) = text {
        args = args.kw("text", json!(t));
    }
    let encoded = call_pure("pdf.report", args).expect("pdf.report");
    base64::engine::general_purpose::STANDARD
        .decode(encoded.as_str().expect("Bytes are a String"))
        .expect("Bytes are base64")
}

/// A `File` value holding `data`, as `file.read` makes it.
fn file(data: &[u8]) -> Value {
    json!({
        "path": "/in/report.pdf",
        "name": "report.pdf",
        "size": data.len(),
        "modified": null,
        "text": String::from_utf8_lossy(data),
        "bytes": base64::engine::general_purpose::STANDARD.encode(data),
    })
}

/// `pdf.text(file)` of a File holding `data`.
fn text_of(data: &[u8]) -> Result<String, RunError> {
    let text = call_pure("pdf.text", Args::new().arg(file(data)))?;
    Ok(text.as_str().expect("a String").to_string())
}

/// Asserts that `needles` occur in `haystack` in this order.
#[track_caller]
fn assert_in_order(haystack: &str, needles: &[&str]) {
    let mut from = 0;
    for needle in needles {
        match haystack[from..].find(needle) {
            Some(at) => from += at + needle.len(),
            None => {
                panic!("{needle:?} missing (or out of order) after byte {from} in:\n{haystack}")
            }
        }
    }
}

fn stock() -> Value {
    json!([
        { "sku": "A-100", "name": "Widget", "qty": 3, "price": 9.5, "active": true, "note": null },
        { "sku": "B-200", "name": "Gadget", "qty": 12, "price": 120, "active": false, "note": { "k": [1, 2] } }
    ])
}

const STOCK_COLUMNS: [&str; 6] = ["sku", "name", "qty", "price", "active", "note"];

#[test]
fn a_report_reads_back_title_paragraph_and_every_cell_in_order() {
    let pdf = report(
        "Stock report",
        stock(),
        Some(json!(STOCK_COLUMNS)),
        Some("Levels at the close of the day."),
    );
    assert!(pdf.starts_with(b"%PDF-"));
    let text = text_of(&pdf).unwrap();
    assert_in_order(
        &text,
        &[
            "Stock report",
            "Levels at the close of the day.",
            "sku name qty price active note",
            "A-100 Widget 3 9.5 true",
            "B-200 Gadget 12 120 false {\"k\":[1,2]}",
            "Page 1 of 1",
        ],
    );
    assert!(!text.contains("null"), "a null cell is empty: {text}");
}

#[test]
fn default_columns_are_the_first_rows_fields() {
    let rows = json!([
        { "sku": "A-100", "qty": 3 },
        { "sku": "B-200", "qty": 4, "extra": "not-shown" }
    ]);
    let first: Vec<String> = rows[0].as_object().unwrap().keys().cloned().collect();
    let text = text_of(&report("Defaults", rows, None, None)).unwrap();
    assert_in_order(&text, &[&first.join(" ")]);
    assert!(
        !text.contains("extra") && !text.contains("not-shown"),
        "{text}"
    );
}

#[test]
fn columns_choose_and_order_the_cells() {
    let rows = json!([{ "alpha": "first-a", "beta": "first-b", "gamma": "first-c" }]);
    let columns = json!(["gamma", "alpha", "missing"]);
    let text = text_of(&report("Chosen", rows, Some(columns), None)).unwrap();
    assert_in_order(&text, &["gamma alpha missing", "first-c first-a"]);
    assert!(!text.contains("first-b"), "{text}");
}

#[test]
fn zero_rows_give_the_header_alone() {
    let columns = json!(["when", "what"]);
    let text = text_of(&report("Empty", json!([]), Some(columns), None)).unwrap();
    assert_in_order(&text, &["Empty", "when what", "Page 1 of 1"]);
    // No rows and no columns: the title alone.
    let bare = text_of(&report("Nothing", json!([]), None, None)).unwrap();
    let lines: Vec<&str> = bare
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines, ["Nothing", "Page 1 of 1"]);
}

#[test]
fn two_thousand_rows_span_pages_with_the_header_on_each() {
    let rows: Vec<Value> = (1..=2000)
        .map(|i| json!({ "Identifier": format!("row-{i:04}"), "Label": format!("item {i}"), "Amount": i * 3 }))
        .collect();
    let columns = json!(["Identifier", "Label", "Amount"]);
    let text = text_of(&report("Big", Value::Array(rows), Some(columns), None)).unwrap();
    let pages: Vec<&str> = text.split("\n\u{c}\n").collect();
    assert!(pages.len() >= 10, "{} pages", pages.len());
    for (i, page) in pages.iter().enumerate() {
        assert_eq!(
            page.matches("Identifier Label Amount").count(),
            1,
            "page {}:\n{page}",
            i + 1
        );
        let footer = format!("Page {} of {}", i + 1, pages.len());
        assert!(page.ends_with(&footer), "page {}:\n{page}", i + 1);
    }
    for i in 1..=2000 {
        let row = format!("row-{i:04} item {i} {}", i * 3);
        assert_eq!(text.matches(&row).count(), 1, "{row}");
    }
    assert_in_order(
        &text,
        &["row-0001", "row-0002", "row-1000", "row-1999", "row-2000"],
    );
}

#[test]
fn the_same_input_gives_the_same_bytes() {
    let rows = json!([{ "x": "é €", "y": 1 }, { "x": "日本", "y": 2 }]);
    let a = report("Same", rows.clone(), None, Some("text"));
    let b = report("Same", rows, None, Some("text"));
    assert_eq!(a, b);
    let other = report("Same", json!([{ "x": "é €", "y": 3 }]), None, Some("text"));
    assert_ne!(a, other);
}

#[test]
fn non_ascii_text_round_trips() {
    let rows = json!([
        { "Ville": "Zürich", "Prix": "12,50 €" },
        { "Ville": "Montréal", "Prix": "œuvre ß Ωμέγα" }
    ]);
    let columns = json!(["Ville", "Prix"]);
    let pdf = report(
        "Café résumé",
        rows,
        Some(columns),
        Some("Déjà vu: ü, €, “quotes”."),
    );
    let text = text_of(&pdf).unwrap();
    assert_in_order(
        &text,
        &[
            "Café résumé",
            "Déjà vu: ü, €, “quotes”.",
            "Zürich 12,50 €",
            "Montréal œuvre ß Ωμέγα",
        ],
    );
}

#[test]
fn characters_the_font_lacks_are_still_extracted() {
    let text = text_of(&report(
        "CJK",
        json!([{ "名前": "東京タワー" }]),
        None,
        None,
    ))
    .unwrap();
    assert_in_order(&text, &["名前", "東京タワー"]);
}

#[test]
fn long_cells_are_cut_with_an_ellipsis() {
    let long = "lorem ipsum dolor sit amet ".repeat(200);
    let rows = json!([{ "id": "x1", "note": long }, { "id": "x2", "note": "short" }]);
    let text = text_of(&report("Long", rows, Some(json!(["id", "note"])), None)).unwrap();
    assert_in_order(&text, &["x1", "lorem ipsum", "…", "x2 short"]);
    assert!(
        text.matches("lorem").count() < 100,
        "cut, not all 200 copies: {text}"
    );
}

#[test]
fn wide_tables_go_landscape() {
    let row: serde_json::Map<String, Value> = (0..12)
        .map(|i| {
            (
                format!("column number {i}"),
                json!(format!("a value of some length {i}")),
            )
        })
        .collect();
    let wide = report("Wide", json!([row]), None, None);
    assert!(String::from_utf8_lossy(&wide).contains("/MediaBox [0 0 841.89 595.28]"));
    let narrow = report("Narrow", json!([{ "a": 1 }]), None, None);
    assert!(String::from_utf8_lossy(&narrow).contains("/MediaBox [0 0 595.28 841.89]"));
}

#[test]
fn bad_report_arguments_are_named() {
    let err = |args: Args| call_pure("pdf.report", args).unwrap_err().message;
    assert_eq!(
        err(Args::new().arg(json!(1)).arg(json!([]))),
        "pdf.report: `title` must be a String"
    );
    assert_eq!(
        err(Args::new().arg(json!("t")).arg(json!({}))),
        "pdf.report: `rows` must be a list of records"
    );
    assert_eq!(
        err(Args::new().arg(json!("t")).arg(json!([{ "a": 1 }, 2]))),
        "pdf.report: row 2 is not a record"
    );
    assert_eq!(
        err(Args::new()
            .arg(json!("t"))
            .arg(json!([]))
            .kw("columns", json!("a"))),
        "pdf.report: `columns` must be a list of Strings"
    );
    assert_eq!(
        err(Args::new()
            .arg(json!("t"))
            .arg(json!([]))
            .kw("text", json!(3))),
        "pdf.report: `text` must be a String"
    );
}

#[test]
fn text_refuses_what_is_not_a_readable_pdf() {
    let err = |data: &[u8]| text_of(data).unwrap_err().message;
    assert_eq!(err(b""), "pdf.text: the file is empty");
    assert_eq!(
        err(b"hello, world"),
        "pdf.text: not a PDF file (no %PDF- header)"
    );
    let garbage: Vec<u8> = (0..5000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    assert_eq!(err(&garbage), "pdf.text: not a PDF file (no %PDF- header)");
    let mut after_header = b"%PDF-1.7\n".to_vec();
    after_header.extend_from_slice(&garbage);
    let e = err(&after_header);
    assert!(e.starts_with("pdf.text: the PDF is damaged"), "{e}");
    let pdf = report("Cut short", stock(), None, None);
    for cut in [9, 100, pdf.len() / 3, pdf.len() / 2, pdf.len() - 40] {
        let e = err(&pdf[..cut]);
        assert!(
            e.starts_with("pdf.text: the PDF is damaged"),
            "cut at {cut}: {e}"
        );
    }
}

#[test]
fn text_takes_bytes_and_refuses_other_values() {
    let pdf = report("Bytes", json!([]), None, None);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&pdf);
    let text = call_pure("pdf.text", Args::new().arg(json!(b64))).unwrap();
    assert!(text.as_str().unwrap().starts_with("Bytes"), "{text}");
    let err = |v: Value| {
        call_pure("pdf.text", Args::new().arg(v))
            .unwrap_err()
            .message
    };
    assert_eq!(err(json!(5)), "pdf.text: `file` must be a File (or Bytes)");
    assert_eq!(
        err(json!({ "name": "x" })),
        "pdf.text: the File has neither `bytes` nor `text`"
    );
    let e = err(json!("not base64!"));
    assert!(
        e.starts_with("pdf.text: the file's bytes are not valid base64"),
        "{e}"
    );
}

#[test]
fn text_refuses_inputs_over_64_mib_before_decoding() {
    let huge = "A".repeat(64 * 1024 * 1024 / 3 * 4 + 8);
    let e = call_pure("pdf.text", Args::new().arg(json!({ "bytes": huge }))).unwrap_err();
    assert!(
        e.message
            .starts_with("pdf.text: the file is 64.0 MiB; at most 64 MiB"),
        "{e}"
    );
}

#[test]
fn encrypted_pdfs_need_their_password() {
    use pdf_extract::{Document, EncryptionState, EncryptionVersion, Object, Permissions};
    let pdf = report("Secret", json!([{ "a": "hidden" }]), None, None);
    let encrypt = |user_password: &str| {
        let mut doc = Document::load_mem(&pdf).unwrap();
        let id = Object::string_literal(b"0123456789abcdef".to_vec());
        doc.trailer.set("ID", vec![id.clone(), id]);
        let version = EncryptionVersion::V2 {
            document: &doc,
            owner_password: "owner",
            user_password,
            key_length: 128,
            permissions: Permissions::default(),
        };
        let state = EncryptionState::try_from(version).unwrap();
        doc.encrypt(&state).unwrap();
        let mut out = Vec::new();
        doc.save_to(&mut out).unwrap();
        out
    };
    let e = text_of(&encrypt("user")).unwrap_err();
    assert_eq!(
        e.message,
        "pdf.text: the PDF is encrypted (it needs a password)"
    );
    // An empty user password (permissions only) opens without one.
    let open = text_of(&encrypt("")).unwrap();
    assert!(open.contains("hidden"), "{open}");
}

/// poppler's `pdftotext`, from `FLOW_TEST_PDFTOTEXT`, or `None` (the test
/// is skipped, saying so; a failure in CI).
fn pdftotext(test: &str) -> Option<PathBuf> {
    flow_testkit::service_url("FLOW_TEST_PDFTOTEXT", test).map(PathBuf::from)
}

/// Runs `tool args... file` on `pdf` written to a temporary file: stdout.
fn run_on(tool: &Path, args: &[&str], pdf: &[u8], to_stdout: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.pdf");
    std::fs::write(&path, pdf).unwrap();
    let mut cmd = Command::new(tool);
    cmd.args(args).arg(&path);
    if to_stdout {
        cmd.arg("-");
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", tool.display()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {stderr}", tool.display());
    assert!(
        stderr.trim().is_empty(),
        "{} complained: {stderr}",
        tool.display()
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

#[test]
fn pdftotext_shows_every_cell() {
    let Some(tool) = pdftotext("pdftotext_shows_every_cell") else {
        return;
    };
    let rows: Vec<Value> = (1..=300)
        .map(|i| json!({ "sku": format!("SKU-{i:03}"), "name": format!("Café {i}"), "price": format!("{i},00 €") }))
        .collect();
    let pdf = report(
        "Prices",
        Value::Array(rows),
        None,
        Some("Every price, in euros."),
    );
    let text = run_on(&tool, &["-enc", "UTF-8"], &pdf, true);
    assert_in_order(&text, &["Prices", "Every price, in euros."]);
    for i in 1..=300 {
        for cell in [
            format!("SKU-{i:03}"),
            format!("Café {i}"),
            format!("{i},00 €"),
        ] {
            assert!(text.contains(&cell), "{cell} missing from:\n{text}");
        }
    }
    let pages = text.matches('\u{c}').count();
    assert!(pages > 1, "{pages} pages");
    // The header row (name, price, sku) on every page.
    assert_eq!(
        text.matches("sku").count(),
        pages,
        "a header per page:\n{text}"
    );
}

#[test]
fn pdffonts_shows_the_font_embedded() {
    let Some(tool) = pdftotext("pdffonts_shows_the_font_embedded") else {
        return;
    };
    let pdffonts = tool.with_file_name("pdffonts");
    let pdf = report("Fonts", stock(), None, Some("Ünïcödé €"));
    let listing = run_on(&pdffonts, &[], &pdf, false);
    // name type... encoding emb sub uni object-number generation
    let fonts: Vec<Vec<&str>> = listing
        .lines()
        .skip(2)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(fonts.len(), 1, "{listing}");
    let font = &fonts[0];
    assert!(font[0].ends_with("+DejaVuSans"), "{listing}");
    let flags = &font[font.len() - 5..font.len() - 2];
    assert_eq!(
        flags,
        ["yes", "yes", "yes"],
        "embedded, subset, ToUnicode:\n{listing}"
    );
}

#[test]
fn damaged_pdfs_give_errors_not_panics() {
    // The reader panics on some of these (a quarter, with pdf-extract
    // 0.12): each must come back as an error, or as text.
    let pdf = report("Damaged", stock(), None, Some("Some text."));
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..300 {
        let mut damaged = pdf.clone();
        for _ in 0..next() % 8 + 1 {
            let at = (next() % damaged.len() as u64) as usize;
            damaged[at] = next() as u8;
        }
        if let Err(e) = text_of(&damaged) {
            assert!(e.message.starts_with("pdf.text: "), "{e}");
        }
    }
}
