//! End to end: files triggers (`tests/flows/files.flow`) on local folders.
//! One run per file, moved to `processed/` after success; a malformed file
//! fails its own run, stays for a retry and does not hold up the others; a
//! fixed version is taken; batches; done markers; a crash mid-run resumes
//! without claiming the file twice.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use support::{admin_executions, poll_until, Reply, Service, Sink};

const ADMIN: &str = "admin-token-files";
const WAIT: Duration = Duration::from_secs(20);

fn start(dir: &Path, sink: &Sink) -> Service {
    let binary = support::build_example("tests/flows/files.flow");
    Service::start_in(
        dir,
        &binary,
        &[("SINK_URL", sink.url()), ("FLOW_ADMIN_TOKEN", ADMIN)],
        &[],
    )
}

/// Writes a file the way a careful producer would not: directly in place
/// (the scanner's two looks must cope).
fn put(dir: &Path, rel: &str, content: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .filter(|e| e.path().is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_file_is_one_run_and_a_bad_file_waits_for_its_fix() {
    let sink = Sink::start();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    put(dir, "inbox/a.csv", "sku,quantity\nA-1,2\nA-2,3\n");
    put(dir, "inbox/b.csv", "sku,quantity\nB-1,two\n");
    put(dir, "inbox/c.csv", "sku,quantity\nC-1,7\n");
    let svc = start(dir, &sink);

    let got = sink.wait_for_path("POST", "/lines", 2, WAIT).await;
    let mut files: Vec<&str> = got
        .iter()
        .map(|r| r.body["file"].as_str().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["a.csv", "c.csv"]);
    let a = got.iter().find(|r| r.body["file"] == "a.csv").unwrap();
    assert_eq!(
        a.body["lines"],
        json!([{ "sku": "A-1", "quantity": 2 }, { "sku": "A-2", "quantity": 3 }])
    );

    // Good files move to processed/ beside them; the bad one stays.
    support::wait_until(WAIT, "a.csv and c.csv in processed/", || {
        names(&dir.join("inbox/processed")) == ["a.csv", "c.csv"]
    })
    .await;
    assert_eq!(names(&dir.join("inbox")), ["b.csv"]);

    // Its run failed with an error naming the row and the column.
    let failed = poll_until(WAIT, "b.csv's failed run", || async {
        let list = admin_executions(&svc, "flow=orders&status=failed", ADMIN).await;
        list.into_iter().next()
    })
    .await;
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("quantity") && error.contains("row"),
        "the error names the row and column: {error}"
    );

    // A fixed version (new size and time) is a new file: taken at once,
    // without waiting for the failed version's backoff.
    put(dir, "inbox/b.csv", "sku,quantity\nB-1,2\n");
    let got = sink.wait_for_path("POST", "/lines", 3, WAIT).await;
    assert!(got.iter().any(|r| r.body["file"] == "b.csv"));
    support::wait_until(WAIT, "b.csv in processed/", || {
        names(&dir.join("inbox/processed")) == ["a.csv", "b.csv", "c.csv"]
    })
    .await;

    // Each file version went to exactly one run.
    let all = admin_executions(&svc, "flow=orders", ADMIN).await;
    assert_eq!(all.len(), 4, "a, b (bad), b (fixed), c: {all:#?}");
    assert_eq!(sink.requests_to("POST", "/lines").len(), 3);
}

/// A files trigger's folder from the config: `"${config.drop_folder}/*.json"`
/// watches the folder `DROP_FOLDER` names, here outside the working
/// directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_from_the_config_is_watched() {
    let sink = Sink::start();
    let work = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let folder = elsewhere.path().join("partner-drop");
    put(&folder, "order-1.json", "{}");
    let binary = support::build_example("tests/flows/files.flow");
    let folder_text = folder.display().to_string();
    let _svc = Service::start_in(
        work.path(),
        &binary,
        &[
            ("SINK_URL", sink.url()),
            ("FLOW_ADMIN_TOKEN", ADMIN),
            ("DROP_FOLDER", &folder_text),
        ],
        &[],
    );
    let got = sink.wait_for_path("POST", "/configured", 1, WAIT).await;
    assert_eq!(got[0].body, json!({ "name": "order-1.json" }));
    support::wait_until(WAIT, "order-1.json in processed/", || {
        names(&folder.join("processed")) == ["order-1.json"]
    })
    .await;
    assert!(!work.path().join("drop").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_file_is_retried_with_backoff_until_the_sink_recovers() {
    let sink = Sink::start();
    sink.on(
        "POST",
        "/lines",
        [
            Reply::json(503, json!({ "error": "down" })),
            Reply::json(200, json!({})),
        ],
    );
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    put(dir, "inbox/a.csv", "sku,quantity\nA-1,1\n");
    let svc = start(dir, &sink);
    // The step has `retry 0`: the run fails, and the file's run is replayed.
    support::wait_until(WAIT, "a.csv in processed/", || {
        names(&dir.join("inbox/processed")) == ["a.csv"]
    })
    .await;
    assert_eq!(
        sink.requests_to("POST", "/lines").len(),
        2,
        "one failed post, one that worked"
    );
    let runs = admin_executions(&svc, "flow=orders", ADMIN).await;
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(
        (runs[0]["status"].as_str(), runs[0]["attempts"].as_u64()),
        (Some("succeeded"), Some(2))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_takes_all_files_of_a_scan_and_deletes_them() {
    let sink = Sink::start();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let svc = start(dir, &sink);
    // All three appear at once: the folder is renamed into place.
    put(dir, "staging/x.txt", "1");
    put(dir, "staging/y.txt", "2");
    put(dir, "staging/z.txt", "3");
    std::fs::rename(dir.join("staging"), dir.join("batch")).unwrap();

    let got = sink.wait_for_path("POST", "/batch", 1, WAIT).await;
    assert_eq!(got[0].body["names"], json!(["x.txt", "y.txt", "z.txt"]));
    support::wait_until(WAIT, "the batch's files deleted", || {
        names(&dir.join("batch")).is_empty()
    })
    .await;
    assert!(!dir.join("batch/processed").exists());
    let runs = admin_executions(&svc, "flow=batches", ADMIN).await;
    assert_eq!(runs.len(), 1, "{runs:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_done_marker_holds_a_file_back_until_it_exists() {
    let sink = Sink::start();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let _svc = start(dir, &sink);
    put(dir, "marked/early.txt", "no marker yet");
    put(dir, "marked/ready.txt", "hello");
    put(dir, "marked/ready.txt.done", "");

    let got = sink.wait_for_path("POST", "/marked", 1, WAIT).await;
    assert_eq!(got[0].body, json!({ "name": "ready.txt", "text": "hello" }));
    support::wait_until(WAIT, "ready.txt archived, its marker gone", || {
        names(&dir.join("marked/archive")) == ["ready.txt"]
            && names(&dir.join("marked")) == ["early.txt"]
    })
    .await;
    // early.txt was there before ready.txt and is still not taken.
    assert_eq!(sink.requests_to("POST", "/marked").len(), 1);

    put(dir, "marked/early.txt.done", "");
    let got = sink.wait_for_path("POST", "/marked", 2, WAIT).await;
    assert_eq!(got[1].body["name"], "early.txt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_run_resumes_without_claiming_the_file_twice() {
    let sink = Sink::start();
    // The first post hangs long enough to kill the binary during it.
    sink.on(
        "POST",
        "/lines",
        [
            Reply::json(200, json!({})).after(Duration::from_secs(30)),
            Reply::json(200, json!({})),
        ],
    );
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    put(dir, "inbox/a.csv", "sku,quantity\nA-1,1\n");
    let mut svc = start(dir, &sink);
    sink.wait_for_path("POST", "/lines", 1, WAIT).await;
    svc.kill();
    assert_eq!(
        names(&dir.join("inbox")),
        ["a.csv"],
        "not moved: the run did not finish"
    );

    let svc = start(dir, &sink);
    support::wait_until(WAIT, "a.csv in processed/", || {
        names(&dir.join("inbox/processed")) == ["a.csv"]
    })
    .await;
    let runs = admin_executions(&svc, "flow=orders", ADMIN).await;
    assert_eq!(runs.len(), 1, "one run for the file, resumed: {runs:#?}");
    assert_eq!(runs[0]["status"], "succeeded");
}

// ------------------------------------------------- examples/file_import.flow

fn start_file_import(dir: &Path, shop: &Sink) -> Service {
    let binary = support::build_example("examples/file_import.flow");
    Service::start_in(
        dir,
        &binary,
        &[("SHOP_URL", shop.url()), ("FLOW_ADMIN_TOKEN", ADMIN)],
        &[],
    )
}

const BERLIN: &str = r#"<?xml version="1.0"?>
<count warehouse="berlin">
  <counted_at>2026-11-30T05:00:00Z</counted_at>
  <item sku="A-1" quantity="5"/>
  <item sku="B-2" quantity="0"/>
</count>"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_import_example_posts_csv_lines_and_xml_counts() {
    let shop = Sink::start();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    put(
        dir,
        "inbox/orders-1.csv",
        "order_id,sku,quantity,unit_price\nSO-1,A-1,2,9.5\nSO-1,B-2,1,20\n",
    );
    put(
        dir,
        "inbox/orders-2.csv",
        "order_id,sku,quantity,unit_price\nSO-2,A-1,x,9.5\n",
    );
    put(dir, "stock/berlin.xml", BERLIN);
    put(
        dir,
        "stock/paris.xml",
        r#"<count warehouse="paris"><counted_at>2026-11-30T05:00:00Z</counted_at><item sku="C-3" quantity="12"/></count>"#,
    );
    let svc = start_file_import(dir, &shop);

    let lines = shop.wait_for_path("POST", "/order-lines", 2, WAIT).await;
    assert_eq!(
        lines[0].body,
        json!({ "order": "SO-1", "sku": "A-1", "quantity": 2, "unit_price": 9.5, "source": "orders-1.csv" })
    );
    let berlin = shop.wait_for_path("PUT", "/stock/berlin", 1, WAIT).await;
    assert_eq!(
        berlin[0].body["items"],
        json!([{ "sku": "A-1", "quantity": 5 }, { "sku": "B-2", "quantity": 0 }])
    );
    shop.wait_for_path("PUT", "/stock/paris", 1, WAIT).await;

    support::wait_until(
        WAIT,
        "the CSV moved, the XML deleted, the bad CSV kept",
        || {
            names(&dir.join("inbox/processed")) == ["orders-1.csv"]
                && names(&dir.join("inbox")) == ["orders-2.csv"]
                && names(&dir.join("stock")).is_empty()
        },
    )
    .await;
    let failed = poll_until(WAIT, "the bad CSV's failed run", || async {
        admin_executions(&svc, "flow=import_orders&status=failed", ADMIN)
            .await
            .into_iter()
            .next()
    })
    .await;
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains("quantity"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_xml_file_fails_its_run_naming_the_element() {
    let shop = Sink::start();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    put(
        dir,
        "stock/bad.xml",
        r#"<count warehouse="rome"><counted_at>2026-11-30T05:00:00Z</counted_at><item sku="A-1" quantity="many"/></count>"#,
    );
    let svc = start_file_import(dir, &shop);
    let failed = poll_until(WAIT, "the bad XML's failed run", || async {
        admin_executions(&svc, "flow=import_stock_counts&status=failed", ADMIN)
            .await
            .into_iter()
            .next()
    })
    .await;
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("/count/item[1]/@quantity") || error.contains("/count/item/@quantity"),
        "the error names the element path: {error}"
    );
    assert_eq!(names(&dir.join("stock")), ["bad.xml"], "kept for a retry");
    assert!(shop.requests().is_empty());
}

// ------------------------------------------------------------------ SFTP

#[path = "support/sshd.rs"]
mod sshd;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_on_an_sftp_server_are_taken_once_and_moved() {
    let Some(server) = sshd::Sshd::start("files_on_an_sftp_server_are_taken_once_and_moved") else {
        return;
    };
    let sink = Sink::start();
    let inbox = server.data_dir().join("in");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::write(inbox.join("a.csv"), "id\n1\n").unwrap();
    std::fs::write(inbox.join("b.csv"), "id\n2\n").unwrap();
    std::fs::write(inbox.join("ignored.txt"), "not a csv").unwrap();

    // User, host, port and folder of the trigger's source from the config.
    let work = tempfile::tempdir().unwrap();
    let binary = support::build_example("tests/flows/sftp_import.flow");
    let folder = inbox.display().to_string();
    let port = server.port().to_string();
    let known_hosts = server.scratch("kh").join("known_hosts");
    std::fs::write(&known_hosts, server.known_hosts_line()).unwrap();
    let svc_dir = work.path().join("svc");
    std::fs::create_dir_all(&svc_dir).unwrap();
    let _svc = Service::start_in(
        &svc_dir,
        &binary,
        &[
            ("SINK_URL", sink.url()),
            ("SFTP_USER", server.user()),
            ("SFTP_HOST", "127.0.0.1"),
            ("SFTP_PORT", &port),
            ("SFTP_FOLDER", &folder),
            ("SFTP_KEY", server.client_key()),
            ("FLOW_SFTP_KNOWN_HOSTS", known_hosts.to_str().unwrap()),
        ],
        &[],
    );

    let got = sink.wait_for_path("POST", "/files", 2, WAIT).await;
    let mut seen: Vec<(String, String)> = got
        .iter()
        .map(|r| {
            (
                r.body["name"].as_str().unwrap().to_string(),
                r.body["text"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("a.csv".to_string(), "id\n1\n".to_string()),
            ("b.csv".to_string(), "id\n2\n".to_string())
        ]
    );
    support::wait_until(WAIT, "both files moved to in/done/ on the server", || {
        names(&inbox.join("done")) == ["a.csv", "b.csv"] && names(&inbox) == ["ignored.txt"]
    })
    .await;
    assert_eq!(sink.requests_to("POST", "/files").len(), 2);
}
