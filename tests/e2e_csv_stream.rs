//! End to end: a 2 GiB CSV file imported by `csv.chunks`
//! (`tests/flows/big_csv.flow`) with the binary's memory bounded, and
//! every row delivered once although the binary is killed (SIGKILL) half
//! way: the resumed run reads the file again, its finished chunks replay
//! from the journal, and only the chunk in flight at the kill is sent
//! again, with the same `Idempotency-Key`.

mod support;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use support::{Received, Service, Sink};

/// The file's size (at least).
const FILE_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// `size:` of the flow's chunks.
const CHUNK: u64 = 2000;
/// The bound on the binary's peak resident memory.
const MAX_RSS: u64 = 64 * 1024 * 1024;
/// Generous: the file is read once and a half on a busy 2-core machine.
const IMPORT: Duration = Duration::from_secs(900);

/// What the generated file holds: rows and the sum of their `qty`.
struct Written {
    rows: u64,
    qty: u64,
}

/// Writes a CSV of about `bytes` bytes: rows of ~1 KB (a long note), ids
/// from 1.
fn write_csv(path: &Path, bytes: u64) -> Written {
    let file = std::fs::File::create(path).unwrap();
    let mut out = std::io::BufWriter::with_capacity(8 << 20, file);
    out.write_all(b"id,sku,qty,note\n").unwrap();
    let note = "n".repeat(990);
    let (mut written, mut rows, mut qty) = (16u64, 0u64, 0u64);
    while written < bytes {
        rows += 1;
        let q = rows % 7;
        qty += q;
        let line = format!("{rows},sku-{},{q},\"{note}, {rows}\"\n", rows % 1000);
        written += line.len() as u64;
        out.write_all(line.as_bytes()).unwrap();
    }
    out.flush().unwrap();
    Written { rows, qty }
}

/// The chunk posts by idempotency key (a re-sent chunk counts once).
fn chunks(received: &[Received]) -> BTreeMap<String, &Received> {
    received
        .iter()
        .map(|r| (r.header("idempotency-key").unwrap_or("").to_string(), r))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_2_gib_csv_is_imported_in_bounded_memory_and_once_after_a_crash() {
    let binary = support::build_example("tests/flows/big_csv.flow");
    let sink = Sink::start();
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir(work.path().join("inbox")).unwrap();
    let written = write_csv(&work.path().join("inbox/big.csv"), FILE_BYTES);
    let expected_chunks = written.rows.div_ceil(CHUNK) as usize;
    let env = [("SINK_URL", sink.url())];

    let mut first = Service::start_in(work.path(), &binary, &env, &[]);
    sink.wait_until(IMPORT, "half of the chunks", |r| {
        r.len() >= expected_chunks / 2
    })
    .await;
    let first_peak = first.peak_rss();
    first.kill();
    let sent_before_kill = sink.requests().len();
    assert!(sent_before_kill < expected_chunks, "killed after the end");

    let mut second = Service::start_in(work.path(), &binary, &env, &[]);
    let processed = work.path().join("inbox/processed/big.csv");
    support::wait_until(IMPORT, "the file moved after its run", || {
        processed.exists()
    })
    .await;
    let second_peak = second.peak_rss();
    second.terminate(Duration::from_secs(30));

    let received = sink.requests();
    let by_key = chunks(&received);
    assert_eq!(by_key.len(), expected_chunks, "each chunk under one key");
    assert!(
        received.len() <= expected_chunks + 1,
        "{} posts for {expected_chunks} chunks: only the one in flight at the kill may repeat",
        received.len()
    );
    let (mut rows, mut qty) = (0u64, 0u64);
    let mut firsts: Vec<u64> = Vec::new();
    for hit in by_key.values() {
        rows += hit.body["count"].as_u64().unwrap();
        qty += hit.body["qty"].as_u64().unwrap();
        firsts.push(hit.body["first"].as_u64().unwrap());
    }
    firsts.sort_unstable();
    let expected_firsts: Vec<u64> = (0..expected_chunks as u64).map(|i| i * CHUNK + 1).collect();
    assert_eq!(firsts, expected_firsts, "every chunk once, none skipped");
    assert_eq!((rows, qty), (written.rows, written.qty), "every row once");

    for (when, peak) in [
        ("before the kill", first_peak),
        ("after the restart", second_peak),
    ] {
        eprintln!(
            "peak RSS {when}: {:.1} MiB",
            peak as f64 / (1024.0 * 1024.0)
        );
        assert!(
            peak < MAX_RSS,
            "peak RSS {when} {peak} bytes, more than {MAX_RSS}"
        );
    }
}
