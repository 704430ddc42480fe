//! End to end: `Bytes` (LANGUAGE.md §14) in a built binary,
//! `tests/flows/bytes.flow`. A binary file goes out as an HTTP body, comes
//! back as an answer's `.bytes` and is written unchanged; base64 text
//! becomes bytes; and the text of a PDF (made by `pdf.report`, as the
//! weekly report example does) is read by `pdf.text`.

mod support;

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use flow_runtime::{Args, Value};
use serde_json::json;
use support::{run_binary_in, Reply, Sink};

const RUN: Duration = Duration::from_secs(60);

/// Runs `flow` once with the File `{ name, bytes }` as its trigger.
fn run_with_file(dir: &Path, sink: &Sink, out: &Path, flow: &str, name: &str, data: &[u8]) {
    let binary = support::build_example("tests/flows/bytes.flow");
    let input = dir.join("input.json");
    let file = json!({ "file": {
        "name": name,
        "bytes": base64::engine::general_purpose::STANDARD.encode(data),
    } });
    std::fs::write(&input, file.to_string()).unwrap();
    let done = run_binary_in(
        dir,
        &binary,
        &[("SINK_URL", sink.url()), ("OUT_DIR", out.to_str().unwrap())],
        &["run", flow, "--input", input.to_str().unwrap()],
        RUN,
    );
    assert_eq!(
        done.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        done.stdout,
        done.stderr
    );
}

#[test]
fn binary_data_goes_out_comes_back_and_is_written_unchanged() {
    // Every byte value, most of them not UTF-8.
    let blob: Vec<u8> = (0..=255u8).rev().collect();
    let sink = Sink::start();
    sink.on("GET", "/blob", [Reply::bytes(200, blob.clone())]);
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");

    run_with_file(work.path(), &sink, &out, "copy_blob", "a.bin", &blob);

    let uploaded = sink.requests_to("PUT", "/blob");
    assert_eq!(uploaded.len(), 1);
    assert_eq!(uploaded[0].raw, blob, "the body is the file's bytes");
    assert_eq!(
        uploaded[0].header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(std::fs::read(out.join("a.bin")).unwrap(), blob);
    assert_eq!(
        std::fs::read(out.join("decoded.bin")).unwrap(),
        [0x00, 0x01, 0x02, 0xff]
    );
    assert_eq!(
        std::fs::read_to_string(out.join("note.txt")).unwrap(),
        "size 256"
    );
    let noted = sink.requests_to("POST", "/note");
    assert_eq!(noted.len(), 1);
    let expected = format!(
        "base64 {}",
        base64::engine::general_purpose::STANDARD.encode(&blob)
    );
    assert_eq!(String::from_utf8_lossy(&noted[0].raw), expected);
    assert_eq!(
        noted[0].header("content-type"),
        Some("text/plain; charset=utf-8"),
        "a text body is sent as text"
    );
}

#[test]
fn the_text_of_a_pdf_is_read_in_order() {
    let rows: Vec<Value> = (1..=120)
        .map(|i| json!({ "order": format!("SO-{i:04}"), "customer": format!("Kunde Müller {i}"), "total": i * 3 }))
        .collect();
    let report = flow_runtime::call_pure(
        "pdf.report",
        Args::new()
            .arg(json!("Orders of the week"))
            .arg(Value::Array(rows))
            .kw("text", json!("Every order, one per row.")),
    )
    .expect("a report");
    let pdf = base64::engine::general_purpose::STANDARD
        .decode(report.as_str().expect("Bytes are base64 text"))
        .unwrap();
    assert!(pdf.starts_with(b"%PDF-"));

    let sink = Sink::start();
    let work = tempfile::tempdir().unwrap();
    run_with_file(
        work.path(),
        &sink,
        &work.path().join("out"),
        "import_pdf",
        "orders.pdf",
        &pdf,
    );

    let sent = sink.requests_to("POST", "/");
    assert_eq!(sent.len(), 1, "{}", sink.summary());
    assert_eq!(sent[0].body["name"], "orders.pdf");
    let text = sent[0].body["text"].as_str().expect("the text");
    assert!(text.contains("Orders of the week"), "{text}");
    assert!(text.contains("Every order, one per row."), "{text}");
    // Every row, in order.
    let mut from = 0;
    for i in 1..=120 {
        let order = format!("SO-{i:04}");
        let at = text[from..]
            .find(&order)
            .unwrap_or_else(|| panic!("{order} after byte {from} in:\n{text}"));
        from += at + order.len();
    }
    assert!(text.contains("Kunde Müller 120"), "{text}");
}
