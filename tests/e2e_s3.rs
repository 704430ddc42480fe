//! End to end: `examples/s3_drop_folder.flow` against an S3 emulator (moto,
//! `FLOW_TEST_AWS_ENDPOINT`; skipped with a printed reason when unset, a
//! failure under `FLOW_TEST_REQUIRE_SERVICES=1`). Each object is one run;
//! a good one is posted line by line, archived and moved to
//! `incoming/processed/`; a malformed one fails its run and stays.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{admin_executions, poll_until, Service, Sink};

const ADMIN: &str = "admin-token-s3";
const WAIT: Duration = Duration::from_secs(30);

/// A bucket of the test's own (moto takes unsigned requests).
async fn new_bucket(endpoint: &str) -> String {
    let id = flow_runtime::engine::new_execution_id().to_ascii_lowercase();
    let bucket = format!(
        "e2e-{}",
        id.replace(|c: char| !c.is_ascii_alphanumeric(), "")
    );
    put(&format!("{endpoint}/{bucket}"), "").await;
    bucket
}

/// An unsigned PUT the emulator accepts.
async fn put(url: &str, body: &str) {
    let answer = flow_testkit::request("PUT", url, Some(body.as_bytes().to_vec()), &[]).await;
    assert!(
        (200..300).contains(&answer.status),
        "PUT {url}: {}",
        answer.status
    );
}

async fn put_object(endpoint: &str, bucket: &str, key: &str, body: &str) {
    put(&format!("{endpoint}/{bucket}/{key}"), body).await;
}

/// The bucket's keys, sorted.
async fn keys(endpoint: &str, bucket: &str) -> Vec<String> {
    let answer = flow_testkit::get(&format!("{endpoint}/{bucket}?list-type=2"), &[]).await;
    let xml = answer.body.as_str().unwrap_or_default().to_string();
    let mut keys: Vec<String> = xml
        .split("<Key>")
        .skip(1)
        .filter_map(|k| k.split_once("</Key>").map(|(k, _)| k.to_string()))
        .collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_drop_folder_example_imports_moves_and_keeps_bad_files() {
    let test = "the_s3_drop_folder_example_imports_moves_and_keeps_bad_files";
    let Some(endpoint) = flow_testkit::service_url("FLOW_TEST_AWS_ENDPOINT", test) else {
        return;
    };
    let bucket = new_bucket(&endpoint).await;
    put_object(
        &endpoint,
        &bucket,
        "incoming/orders-1.csv",
        "order_id,sku,quantity\nSO-1,A-1,2\nSO-1,B-2,1\n",
    )
    .await;
    put_object(
        &endpoint,
        &bucket,
        "incoming/orders-2.csv",
        "order_id,sku,quantity\nSO-2,A-1,x\n",
    )
    .await;
    let shop = Sink::start();
    let binary = support::build_example("examples/s3_drop_folder.flow");
    let svc = Service::start(
        &binary,
        &[
            ("SHOP_URL", shop.url()),
            ("DROP_BUCKET", &bucket),
            ("AWS_KEY", "AKIDE2EKEY"),
            ("AWS_SECRET", "e2e-secret-key"),
            ("AWS_ENDPOINT", &endpoint),
            ("FLOW_ADMIN_TOKEN", ADMIN),
        ],
        &[],
    );

    let lines = shop.wait_for_path("POST", "/order-lines", 2, WAIT).await;
    assert_eq!(
        lines[0].body,
        json!({ "order": "SO-1", "sku": "A-1", "quantity": 2, "source": "orders-1.csv" })
    );
    let want = [
        "archive/orders-1.csv",
        "incoming/orders-2.csv",
        "incoming/processed/orders-1.csv",
    ];
    poll_until(
        WAIT,
        "the good file archived and moved, the bad one kept",
        || async { (keys(&endpoint, &bucket).await == want).then_some(()) },
    )
    .await;
    let failed = poll_until(WAIT, "the bad file's failed run", || async {
        admin_executions(&svc, "flow=import_orders&status=failed", ADMIN)
            .await
            .into_iter()
            .next()
    })
    .await;
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains("quantity"), "{error}");
    assert!(!svc.stderr().contains("e2e-secret-key"), "a key in the log");
}
