//! End to end: the scheduled file export, `examples/report_export.flow`.
//! One run of the weekly report (`BINARY run`, as the Monday tick would
//! start it) fetches the week's orders from a local HTTP server, writes the
//! CSV report and its PDF twin to a folder, uploads the CSV to a real SFTP
//! server (sshd on loopback) and mails both to the test SMTP server; the
//! test checks the query, the files, the uploaded file and the email with
//! its attachments. The PDF's text is read back twice: with poppler's
//! `pdftotext` (`FLOW_TEST_PDFTOTEXT`) and with the runtime's `pdf.text`.

#[path = "support/sshd.rs"]
mod sshd;
mod support;

use std::time::Duration;

use base64::Engine as _;

use serde_json::json;
use support::smtp::{Mime, SmtpServer};
use support::{run_binary, Reply, Sink};

const WAIT: Duration = Duration::from_secs(20);
const REPORT: &str = "orders-2026-11-30.csv";
const PDF_REPORT: &str = "orders-2026-11-30.pdf";

#[test]
fn the_weekly_report_is_kept_uploaded_and_mailed() {
    let Some(server) = sshd::Sshd::start("the_weekly_report_is_kept_uploaded_and_mailed") else {
        return;
    };
    let shop = Sink::start();
    shop.on(
        "GET",
        "/orders",
        [Reply::json(
            200,
            json!({ "orders": [
                { "id": "SO-1", "placed_at": "2026-11-24T10:00:00Z", "customer": "Ann", "total": 19.5, "currency": "EUR" },
                { "id": "SO-2", "placed_at": "2026-11-27T16:30:00Z", "customer": "Lee, Bo", "total": 120, "currency": "EUR" },
            ] }),
        )],
    );
    let smtp = SmtpServer::start();
    let work = tempfile::tempdir().unwrap();
    let reports = work.path().join("reports");
    let input = work.path().join("tick.json");
    std::fs::write(&input, r#"{ "fired_at": "2026-11-30T06:00:00Z" }"#).unwrap();
    let known_hosts = server.scratch("kh").join("known_hosts");
    std::fs::write(&known_hosts, server.known_hosts_line()).unwrap();
    let smtp_url = format!("{}?tls=none", smtp.url());
    let folder = server.data_url("accounting/inbox");

    let binary = support::build_example("examples/report_export.flow");
    let done = run_binary(
        &binary,
        &[
            ("SHOP_URL", shop.url()),
            ("REPORT_DIR", reports.to_str().unwrap()),
            ("SFTP_FOLDER", &folder),
            ("SFTP_KEY", server.client_key()),
            ("FLOW_SFTP_KNOWN_HOSTS", known_hosts.to_str().unwrap()),
            ("SMTP_URL", &smtp_url),
            ("FINANCE_EMAIL", "finance@example.com"),
        ],
        &[
            "run",
            "weekly_orders_report",
            "--input",
            input.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(
        done.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        done.stdout,
        done.stderr
    );

    // The week before the tick.
    let asked = shop.requests_to("GET", "/orders");
    assert_eq!(asked.len(), 1);
    assert_eq!(
        asked[0].query,
        "since=2026-11-23T06%3A00%3A00Z&until=2026-11-30T06%3A00%3A00Z"
    );

    // The report kept locally.
    let kept = std::fs::read_to_string(reports.join(REPORT)).expect("the local report");
    assert_eq!(
        kept,
        "id,placed_at,customer,total,currency\n\
         SO-1,2026-11-24T10:00:00Z,Ann,19.5,EUR\n\
         SO-2,2026-11-27T16:30:00Z,\"Lee, Bo\",120,EUR\n"
    );
    // The same bytes on the SFTP server.
    let uploaded = std::fs::read_to_string(server.data_dir().join("accounting/inbox").join(REPORT))
        .expect("the uploaded report");
    assert_eq!(uploaded, kept);

    // And by email, attached.
    let got = smtp.wait_for(1, WAIT);
    assert_eq!(got[0].to, ["finance@example.com"]);
    let mime = Mime::parse(&got[0].data);
    assert_eq!(
        mime.header("Subject"),
        Some("Weekly orders report 2026-11-30")
    );
    assert!(mime
        .text()
        .unwrap_or_default()
        .contains("the 2 orders placed between 2026-11-23T06:00:00Z and 2026-11-30T06:00:00Z"));
    let attached = mime.attachment(REPORT).expect("the report attached");
    assert_eq!(String::from_utf8_lossy(&attached.body), kept);

    // The PDF: kept, attached byte for byte, and every row readable.
    let pdf = std::fs::read(reports.join(PDF_REPORT)).expect("the PDF report");
    assert!(pdf.starts_with(b"%PDF-"));
    let attached = mime.attachment(PDF_REPORT).expect("the PDF attached");
    assert_eq!(attached.body, pdf);
    let read_back = flow_runtime::call_pure(
        "pdf.text",
        flow_runtime::Args::new().arg(json!({
            "name": PDF_REPORT,
            "bytes": base64::engine::general_purpose::STANDARD.encode(&pdf),
        })),
    )
    .expect("pdf.text reads the report");
    assert_report_text(read_back.as_str().unwrap_or_default());
    if let Some(pdftotext) =
        support::service_url("FLOW_TEST_PDFTOTEXT", "the weekly report read by pdftotext")
    {
        let out = std::process::Command::new(&pdftotext)
            .args(["-layout", reports.join(PDF_REPORT).to_str().unwrap(), "-"])
            .output()
            .expect("pdftotext runs");
        assert!(out.status.success(), "{out:?}");
        assert_report_text(&String::from_utf8_lossy(&out.stdout));
    }
}

/// The PDF report's title, paragraph and every cell of both rows.
fn assert_report_text(text: &str) {
    for expected in [
        "Orders 2026-11-23 to 2026-11-30",
        "2 orders placed in the week before Monday 30 November 2026.",
        "order",
        "customer",
        "SO-1",
        "2026-11-24 10:00",
        "Ann",
        "19.5 EUR",
        "SO-2",
        "2026-11-27 16:30",
        "Lee, Bo",
        "120 EUR",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
}
