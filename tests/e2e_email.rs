//! End to end: `email.send` over SMTP. `tests/flows/email_report.flow`
//! writes a CSV file on a webhook and mails it as an attachment; the
//! binary's `smtp_url` points at the test SMTP server in
//! `tests/support/smtp.rs`, which records what it receives. Also: a
//! recipient the server rejects fails the run with the server's answer, and
//! the file's `test` blocks run with email mocked (a failing one lists the
//! emails sent).

mod support;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::json;
use support::smtp::{Mime, SmtpServer};
use support::{post_json, run_binary, wait_execution, Service};

const ADMIN: &str = "admin-token-e2e-email";
const WAIT: Duration = Duration::from_secs(20);

fn binary() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| support::build_example("tests/flows/email_report.flow"))
}

fn service(smtp_url: &str) -> Service {
    Service::start(
        binary(),
        &[("SMTP_URL", smtp_url), ("FLOW_ADMIN_TOKEN", ADMIN)],
        &[],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_written_csv_file_is_mailed_as_an_attachment() {
    let smtp = SmtpServer::start();
    let svc = service(&format!("{}?tls=none", smtp.url()));
    let body = json!({
        "to": "ops@example.com",
        "week": "2026-W48",
        "rows": [
            { "sku": "widget", "quantity": 3 },
            { "sku": "gadget, large", "quantity": 12 },
        ],
    });
    let (status, answer) = post_json(&svc.at("/report"), &body, &[]).await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["execution_id"].as_str().expect("execution_id");
    let exec = wait_execution(svc.url(), id, ADMIN, WAIT).await;
    assert_eq!(exec["status"], "succeeded", "{exec:#}");

    let got = smtp.wait_for(1, WAIT);
    assert_eq!(got.len(), 1, "one message: {got:?}");
    let msg = &got[0];
    assert_eq!(msg.from, "reports@example.com");
    assert_eq!(msg.to, ["ops@example.com"]);
    let mime = Mime::parse(&msg.data);
    assert_eq!(mime.header("Subject"), Some("Stock report 2026-W48"));
    assert_eq!(mime.header("To"), Some("ops@example.com"));
    let message_id = mime.header("Message-ID").expect("a Message-ID");
    assert!(
        message_id.starts_with(&format!("<{id}.mail@")),
        "{message_id}"
    );
    assert_eq!(
        mime.text().expect("a text body"),
        "Hello,\r\n\r\nthe stock report for week 2026-W48 is attached (2 rows).\r\n"
    );
    assert_eq!(mime.attachment_names(), ["stock-2026-W48.csv"]);
    let csv = mime.attachment("stock-2026-W48.csv").expect("the CSV");
    assert!(
        csv.header("Content-Type")
            .unwrap_or("")
            .starts_with("text/csv"),
        "{:?}",
        csv.headers
    );
    // Byte for byte what file.write wrote.
    let written = std::fs::read(svc.dir().join("reports/stock-2026-W48.csv")).expect("the file");
    assert_eq!(csv.body, written);
    assert_eq!(
        String::from_utf8_lossy(&csv.body),
        "sku,quantity\nwidget,3\n\"gadget, large\",12\n"
    );

    // The journal keeps the result: the admin API shows the step succeeded.
    let steps = exec["steps"].as_array().cloned().unwrap_or_default();
    assert!(
        steps
            .iter()
            .any(|s| s["key"] == "mail" && s["status"] == "succeeded" && s["output"] == true),
        "{exec:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_recipient_fails_the_run_with_the_servers_answer() {
    let smtp = SmtpServer::start();
    smtp.reject_rcpt("550 5.1.1 <nobody@example.com>: recipient address rejected");
    let svc = service(&smtp.url());
    let body = json!({
        "to": "nobody@example.com",
        "week": "2026-W49",
        "rows": [{ "sku": "widget", "quantity": 1 }],
    });
    let (status, answer) = post_json(&svc.at("/report"), &body, &[]).await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["execution_id"].as_str().expect("execution_id");
    let exec = wait_execution(svc.url(), id, ADMIN, WAIT).await;
    assert_eq!(exec["status"], "failed", "{exec:#}");
    let error = exec["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!(
            "email.send: recipient <nobody@example.com> refused by {}: 550 5.1.1 <nobody@example.com>: recipient address rejected",
            smtp.addr()
        )),
        "{exec:#}"
    );
    // Permanent: one attempt, not retried.
    assert!(!error.contains("attempts"), "{error}");
    assert_eq!(exec["error_step"], "mail", "{exec:#}");
    assert!(smtp.received().is_empty());
}

#[test]
fn the_flows_test_blocks_run_with_email_mocked() {
    // No SMTP server anywhere: the test blocks must not touch the network.
    let out = run_binary(binary(), &[], &["test", "--filter", "the report"], WAIT);
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("1 passed, 0 failed"), "{}", out.stdout);
    let out = run_binary(binary(), &[], &["test", "--filter", "bad recipient"], WAIT);
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);

    // A failing test lists what its runs mailed.
    let out = run_binary(binary(), &[], &["test"], WAIT);
    assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("2 passed, 1 failed"), "{}", out.stdout);
    assert!(
        out.stdout.contains(
            "note: email.send to ops@example.com \"Stock report 2026-W50\" attaching stock-2026-W50.csv"
        ),
        "{}",
        out.stdout
    );
}
