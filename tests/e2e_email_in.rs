//! End to end: email triggers (`tests/flows/email_in.flow`) on a Dovecot
//! started per test (`tests/support/dovecot.rs`, `FLOW_TEST_DOVECOT`).
//! Messages run in the order they arrived and move to `Processed` once
//! their run is stored; CSV attachments reach the flow as Files; a
//! malformed message is one failed run, left in place and marked, and
//! does not block the others; a message delivered again runs once; a
//! SIGKILL in the middle of a burst loses nothing; `after: seen` flags and
//! leaves. The binary talks TLS to the server (STARTTLS or IMAPS, trusting
//! the test certificate through `FLOW_IMAP_CA_FILE`); the test appends its
//! mail over a plain loopback connection.

mod support;

#[path = "support/dovecot.rs"]
mod dovecot;

use std::path::Path;
use std::time::Duration;

use dovecot::Dovecot;
use flow_runtime::triggers::email::imap::{Mailbox, Target, FAILED_KEYWORD};
use support::{admin_executions, poll_until, Received, Reply, Service, Sink};

const ADMIN: &str = "admin-token-email";
const WAIT: Duration = Duration::from_secs(30);

/// A message with a subject and Message-ID, optionally with a CSV file.
fn mail(subject: &str, csv: Option<(&str, &str)>) -> Vec<u8> {
    let head = format!(
        "From: Shop <shop@example.com>\r\nTo: orders@example.org\r\n\
         Subject: {subject}\r\nMessage-ID: <{subject}@example.com>\r\nMIME-Version: 1.0\r\n"
    );
    let Some((name, content)) = csv else {
        return format!("{head}Content-Type: text/plain\r\n\r\nHello {subject}\r\n").into_bytes();
    };
    format!(
        "{head}Content-Type: multipart/mixed; boundary=\"part\"\r\n\r\n\
         --part\r\nContent-Type: text/plain\r\n\r\nHello {subject}\r\n\
         --part\r\nContent-Type: text/csv\r\n\
         Content-Disposition: attachment; filename=\"{name}\"\r\n\r\n{content}\r\n--part--\r\n"
    )
    .into_bytes()
}

/// The test's own session on the server's INBOX (plain, on loopback).
async fn inbox(server: &Dovecot) -> Mailbox {
    let target = Target::parse(&server.plain_url()).expect("test URL");
    Mailbox::open(&target, "INBOX").await.expect("open INBOX")
}

/// UIDs matching `query` in `mailbox`.
async fn search(server: &Dovecot, mailbox: &str, query: &str) -> Vec<u32> {
    let target = Target::parse(&server.plain_url()).expect("test URL");
    let mut session = Mailbox::open(&target, mailbox).await.expect("open mailbox");
    let uids = session.search(query).await.expect("search");
    session.close().await;
    uids
}

/// Delivers `messages` to `mailbox`, in this order.
async fn deliver(server: &Dovecot, mailbox: &str, messages: &[Vec<u8>]) {
    let mut session = inbox(server).await;
    for m in messages {
        session.append(mailbox, m).await.expect("append");
    }
    session.close().await;
}

/// Builds the test integration once for all tests of this file, with
/// PostgreSQL (the replicas' test runs it with `--store postgres://`; one
/// build, one feature set, for every test).
fn binary() -> std::path::PathBuf {
    support::build_example_with("tests/flows/email_in.flow", &["postgres"])
}

/// Starts the test integration in `dir` on `url`.
fn start(dir: &Path, server: &Dovecot, url: &str, sink: &Sink, args: &[&str]) -> Service {
    start_binary(&binary(), dir, server, url, ("SINK_URL", sink.url()), args)
}

/// Starts `binary` in `dir` on `url` (trusting the server's certificate)
/// with one more config entry, `sink`, naming the sink.
fn start_binary(
    binary: &Path,
    dir: &Path,
    server: &Dovecot,
    url: &str,
    sink: (&str, &str),
    args: &[&str],
) -> Service {
    let ca = server.ca_file().display().to_string();
    let env = [
        ("FLOW_ADMIN_TOKEN", ADMIN),
        ("IMAP_URL", url),
        sink,
        ("FLOW_IMAP_CA_FILE", ca.as_str()),
    ];
    Service::start_in(dir, binary, &env, args)
}

/// The `subject` of each request to `path`, in order of arrival.
fn subjects(requests: &[Received], path: &str) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.path == path)
        .map(|r| r.body["subject"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Waits until `mailbox` holds exactly `n` messages matching `query`.
async fn wait_count(server: &Dovecot, mailbox: &str, query: &str, n: usize) {
    let what = format!("{n} message(s) {query} in {mailbox}");
    poll_until(WAIT, &what, || async {
        (search(server, mailbox, query).await.len() == n).then_some(())
    })
    .await;
}

/// Runs of `flow` with `status`, once at least `n` are listed.
async fn wait_runs(svc: &Service, flow: &str, status: &str, n: usize) -> Vec<serde_json::Value> {
    let query = format!("flow={flow}&status={status}&limit=1000");
    let what = format!("{n} {status} run(s) of `{flow}`");
    poll_until(WAIT, &what, || async {
        let runs = admin_executions(svc, &query, ADMIN).await;
        (runs.len() >= n).then_some(runs)
    })
    .await
}

/// A server with the `Receipts` mailbox the second flow reads.
async fn server(test: &str) -> Option<Dovecot> {
    let server = Dovecot::start(test)?;
    let mut session = inbox(&server).await;
    session
        .ensure_exists("Receipts")
        .await
        .expect("create Receipts");
    session.close().await;
    Some(server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_run_in_order_with_their_attachments_then_move() {
    let Some(server) = server("email in order").await else {
        return;
    };
    let messages: Vec<Vec<u8>> = (1..=4)
        .map(|i| match i {
            2 => mail("order-2", Some(("order-2.csv", "sku,qty\nA-1,2\nB-7,1\n"))),
            _ => mail(&format!("order-{i}"), None),
        })
        .collect();
    deliver(&server, "INBOX", &messages).await;
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    // One worker: runs execute in the order they were stored.
    let mut svc = start(
        dir.path(),
        &server,
        &server.starttls_url(),
        &sink,
        &["--workers", "1"],
    );
    let got = sink.wait_for_path("POST", "/mail", 4, WAIT).await;
    assert_eq!(
        subjects(&got, "/mail"),
        ["order-1", "order-2", "order-3", "order-4"]
    );
    let second = &got[1].body;
    assert_eq!(second["from"], "shop@example.com");
    assert_eq!(second["to"], serde_json::json!(["orders@example.org"]));
    assert_eq!(second["message_id"], "order-2@example.com");
    assert_eq!(
        second["text"].as_str().map(str::trim),
        Some("Hello order-2")
    );
    assert_eq!(second["html"], serde_json::Value::Null);
    assert_eq!(second["attachments"], 1);
    let lines = sink.wait_for_path("POST", "/lines", 1, WAIT).await;
    assert_eq!(lines[0].body["file"], "order-2.csv");
    assert_eq!(
        lines[0].body["lines"],
        serde_json::json!([{ "sku": "A-1", "qty": 2 }, { "sku": "B-7", "qty": 1 }])
    );
    wait_count(&server, "INBOX", "ALL", 0).await;
    wait_count(&server, "Processed", "ALL", 4).await;
    let log = svc.stderr();
    svc.terminate(WAIT);
    assert!(
        !log.contains(dovecot::PASSWORD),
        "the password was logged:\n{log}"
    );
    assert!(!log.contains("p%40ss"), "the password was logged:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_message_is_one_failed_run_left_in_place_and_marked() {
    let Some(server) = server("email malformed").await else {
        return;
    };
    let garbage = b"this is not an email\r\n".to_vec();
    deliver(
        &server,
        "INBOX",
        &[mail("before", None), garbage, mail("after", None)],
    )
    .await;
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    let mut svc = start(dir.path(), &server, &server.imaps_url(), &sink, &[]);
    let got = sink.wait_for_path("POST", "/mail", 2, WAIT).await;
    let mut handled = subjects(&got, "/mail");
    handled.sort();
    assert_eq!(handled, ["after", "before"]);
    let failed = wait_runs(&svc, "orders", "failed", 1).await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    let marked = format!("KEYWORD {FAILED_KEYWORD}");
    wait_count(&server, "INBOX", &marked, 1).await;
    wait_count(&server, "INBOX", "ALL", 1).await;
    // Later polls pass the marked message by: a message delivered now is
    // handled, and still one failed run.
    deliver(&server, "INBOX", &[mail("later", None)]).await;
    sink.wait_for_path("POST", "/mail", 3, WAIT).await;
    let failed = wait_runs(&svc, "orders", "failed", 1).await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    svc.terminate(WAIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_delivered_again_runs_once() {
    let Some(server) = server("email redelivery").await else {
        return;
    };
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    let mut svc = start(dir.path(), &server, &server.starttls_url(), &sink, &[]);
    deliver(&server, "INBOX", &[mail("once", None)]).await;
    sink.wait_for_path("POST", "/mail", 1, WAIT).await;
    wait_count(&server, "Processed", "ALL", 1).await;
    // The same message again (same Message-ID), then another one: once the
    // other one ran, the repeat was seen and stored nothing new.
    deliver(&server, "INBOX", &[mail("once", None), mail("next", None)]).await;
    let got = sink.wait_for_path("POST", "/mail", 2, WAIT).await;
    assert_eq!(subjects(&got, "/mail"), ["once", "next"]);
    wait_count(&server, "INBOX", "ALL", 0).await;
    wait_count(&server, "Processed", "ALL", 3).await;
    assert_eq!(subjects(&sink.requests(), "/mail"), ["once", "next"]);
    svc.terminate(WAIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_during_a_burst_loses_nothing() {
    let Some(server) = server("email crash").await else {
        return;
    };
    let names: Vec<String> = (1..=8).map(|i| format!("burst-{i}")).collect();
    let burst: Vec<Vec<u8>> = names.iter().map(|n| mail(n, None)).collect();
    deliver(&server, "INBOX", &burst).await;
    let sink = Sink::start();
    // Runs hang in their first step until the gate opens: the kill finds
    // runs stored and moved, runs in flight, and mail not yet fetched.
    sink.on("POST", "/mail", [Reply::ok().held()]);
    let dir = tempfile::tempdir().unwrap();
    let url = server.starttls_url();
    let mut svc = start(dir.path(), &server, &url, &sink, &[]);
    sink.wait_for_path("POST", "/mail", 1, WAIT).await;
    svc.kill();
    sink.open_gate();
    let mut svc = start(dir.path(), &server, &url, &sink, &[]);
    let what = "every message of the burst at the sink";
    sink.wait_until(WAIT, what, |got| {
        let seen = subjects(got, "/mail");
        names.iter().all(|n| seen.contains(n))
    })
    .await;
    wait_count(&server, "INBOX", "ALL", 0).await;
    wait_count(&server, "Processed", "ALL", 8).await;
    // One run per message: the ones stored before the kill were not
    // stored again.
    let runs = wait_runs(&svc, "orders", "succeeded", 8).await;
    assert_eq!(runs.len(), 8, "{runs:?}");
    svc.terminate(WAIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_seen_flags_the_message_and_leaves_it() {
    let Some(server) = server("email after seen").await else {
        return;
    };
    deliver(&server, "Receipts", &[mail("receipt-1", None)]).await;
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    let mut svc = start(dir.path(), &server, &server.imaps_url(), &sink, &[]);
    let got = sink.wait_for_path("POST", "/receipts", 1, WAIT).await;
    assert_eq!(got[0].body["subject"], "receipt-1");
    wait_count(&server, "Receipts", "SEEN", 1).await;
    wait_count(&server, "Receipts", "ALL", 1).await;
    // A seen message is not taken again: the next one is the only new run.
    deliver(&server, "Receipts", &[mail("receipt-2", None)]).await;
    sink.wait_for_path("POST", "/receipts", 2, WAIT).await;
    let runs = wait_runs(&svc, "receipts", "succeeded", 2).await;
    assert_eq!(runs.len(), 2, "{runs:?}");
    svc.terminate(WAIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_email_orders_example_posts_each_csv_line() {
    let Some(server) = Dovecot::start("email_orders example") else {
        return;
    };
    let csv = "order_id,sku,quantity\nSO-7,A-1,2\nSO-7,C-3,5\n";
    deliver(&server, "INBOX", &[mail("SO-7", Some(("SO-7.csv", csv)))]).await;
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    let binary = support::build_example("examples/email_orders.flow");
    let url = server.imaps_url();
    let mut svc = start_binary(
        &binary,
        dir.path(),
        &server,
        &url,
        ("SHOP_URL", sink.url()),
        &[],
    );
    let lines = sink.wait_for_path("POST", "/order-lines", 2, WAIT).await;
    let mut posted: Vec<_> = lines
        .iter()
        .map(|r| (r.body["sku"].clone(), r.body["quantity"].clone()))
        .collect();
    posted.sort_by_key(|(sku, _)| sku.to_string());
    assert_eq!(
        posted,
        [
            (serde_json::json!("A-1"), serde_json::json!(2)),
            (serde_json::json!("C-3"), serde_json::json!(5))
        ]
    );
    assert_eq!(lines[0].body["customer"], "shop@example.com");
    assert_eq!(lines[0].body["file"], "SO-7.csv");
    wait_count(&server, "Imported", "ALL", 1).await;
    wait_count(&server, "INBOX", "ALL", 0).await;
    svc.terminate(WAIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_mailbox_run_each_message_once() {
    let test = "email two replicas";
    let Some(pg) = support::service_url("FLOW_TEST_POSTGRES_URL", test) else {
        return;
    };
    let Some(server) = server(test).await else {
        return;
    };
    let names: Vec<String> = (1..=10).map(|i| format!("shared-{i}")).collect();
    let burst: Vec<Vec<u8>> = names.iter().map(|n| mail(n, None)).collect();
    deliver(&server, "INBOX", &burst).await;
    let sink = Sink::start();
    let schema = format!("email_in_{}", std::process::id());
    let args = ["--store", pg.as_str(), "--store-schema", schema.as_str()];
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let url = server.starttls_url();
    // Both poll at start-up, so both fetch the same messages.
    let mut replicas: Vec<Service> = dirs
        .iter()
        .map(|d| start(d.path(), &server, &url, &sink, &args))
        .collect();
    let deadline = tokio::time::Instant::now() + WAIT;
    while search(&server, "Processed", "ALL").await.len() < 10 {
        if tokio::time::Instant::now() > deadline {
            panic!(
                "not all 10 messages moved to Processed within {WAIT:?}\nreplica 1:\n{}\nreplica 2:\n{}",
                replicas[0].stderr(),
                replicas[1].stderr()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let runs = wait_runs(&replicas[0], "orders", "succeeded", 10).await;
    assert_eq!(runs.len(), 10, "{runs:?}");
    let mut handled = subjects(
        &sink.wait_for_path("POST", "/mail", 10, WAIT).await,
        "/mail",
    );
    handled.sort();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(handled, expected, "each message once");
    // A message one replica finds already moved by the other is done, not
    // a failed poll.
    for svc in &mut replicas {
        svc.terminate(WAIT);
        let log = svc.stderr();
        assert!(!log.contains("email poll failed"), "{log}");
    }
}
