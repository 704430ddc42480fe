//! `file.*` steps and files triggers on `s3://` paths through an `aws:`
//! connection, against an S3 emulator (moto, `FLOW_TEST_AWS_ENDPOINT`;
//! skipped with a printed reason when unset). Each test makes its own
//! bucket.

mod common;
mod pg_support;

use std::path::Path;
use std::time::Duration;

use flow_runtime::engine::new_execution_id;
use flow_runtime::store::{Execution, StepRecord};
use flow_runtime::{
    json, ops, AfterRun, Args, Config, Ctx, FilesTrigger, FlowDef, FlowFuture, Integration,
    Outcome, Runtime, Schema, Status, StepOptions, TriggerDef, Value,
};

use common::aws::{connections, endpoint};

/// A new bucket with a name of its own (moto takes unsigned requests).
async fn new_bucket(endpoint: &str) -> String {
    let bucket = format!("t-{}", uuid_like());
    let resp = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .expect("create bucket");
    assert!(resp.status().is_success(), "{resp:?}");
    bucket
}

fn uuid_like() -> String {
    new_execution_id()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Objects in `bucket` under `prefix`, by unsigned ListObjectsV2.
async fn keys(endpoint: &str, bucket: &str, prefix: &str) -> Vec<String> {
    let xml = reqwest::get(format!("{endpoint}/{bucket}?list-type=2&prefix={prefix}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    xml.split("<Key>")
        .skip(1)
        .filter_map(|k| k.split_once("</Key>").map(|(k, _)| k.to_string()))
        .collect()
}

async fn put_object(endpoint: &str, bucket: &str, key: &str, body: Vec<u8>) {
    let resp = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}/{key}"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{resp:?}");
}

fn quick_retries() -> StepOptions {
    StepOptions {
        retry: 2,
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(10),
        ..StepOptions::default()
    }
}

fn input(cx: &Ctx, name: &str, rel: &str) -> Value {
    let input = ops::field(cx.trigger(), "input");
    Value::String(ops::interp(&[ops::field(&input, name), json!(rel)]))
}

/// Every file step on S3 and moves both ways with a local folder.
fn exchange(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let s3 = |rel| input(&cx, "s3", rel);
        let local = |rel| input(&cx, "local", rel);
        let steps: Vec<(&str, &str, Args)> = vec![
            (
                "write",
                "file.write",
                Args::new()
                    .arg(s3("in/report.csv"))
                    .arg(json!("a,b\n1,2\n")),
            ),
            ("list", "file.list", Args::new().arg(s3("in/*.csv"))),
            ("read", "file.read", Args::new().arg(s3("in/report.csv"))),
            (
                "rename",
                "file.move",
                Args::new()
                    .arg(s3("in/report.csv"))
                    .arg(s3("done/report.csv")),
            ),
            (
                "download",
                "file.move",
                Args::new()
                    .arg(s3("done/report.csv"))
                    .arg(local("/down/report.csv")),
            ),
            (
                "upload",
                "file.move",
                Args::new()
                    .arg(local("/down/report.csv"))
                    .arg(s3("up/report.csv")),
            ),
            (
                "big_upload",
                "file.move",
                Args::new().arg(local("/big.bin")).arg(s3("up/big.bin")),
            ),
            ("big_list", "file.list", Args::new().arg(s3("up/*.bin"))),
            (
                "delete",
                "file.delete",
                Args::new().arg(s3("up/report.csv")),
            ),
            (
                "delete_again",
                "file.delete",
                Args::new().arg(s3("up/report.csv")),
            ),
        ];
        for (name, call, args) in steps {
            let args = args.kw("via", json!("cloud"));
            cx.step(name, quick_retries(), call, args).await?;
        }
        Ok(Outcome::Succeeded)
    })
}

/// `file.write` of content over a part's size: a multipart upload.
fn multipart_write(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let content = Value::String("x".repeat(9 * 1024 * 1024 + 5));
        let args = Args::new()
            .arg(input(&cx, "s3", "out/big.txt"))
            .arg(content)
            .kw("via", json!("cloud"));
        cx.step("write", quick_retries(), "file.write", args)
            .await?;
        Ok(Outcome::Succeeded)
    })
}

fn read_missing(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let args = Args::new()
            .arg(input(&cx, "s3", "nope.csv"))
            .kw("via", json!("cloud"));
        cx.step("fetch", quick_retries(), "file.read", args).await?;
        Ok(Outcome::Succeeded)
    })
}

fn without_via(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let args = Args::new().arg(input(&cx, "s3", "a.csv"));
        cx.step("fetch", quick_retries(), "file.read", args).await?;
        Ok(Outcome::Succeeded)
    })
}

fn flows(_: &Config) -> Vec<FlowDef> {
    let def = common::dispatched;
    vec![
        def("exchange", exchange),
        def("multipart_write", multipart_write),
        def("read_missing", read_missing),
        def("without_via", without_via),
    ]
}

fn integration() -> Integration {
    Integration {
        connections,
        ..common::integration("s3_steps", flows)
    }
}

async fn run(rt: &Runtime, flow: &str, bucket: &str, local: &Path) -> (Execution, Vec<StepRecord>) {
    let input = json!({
        "s3": format!("s3://{bucket}/"),
        "local": local.display().to_string(),
    });
    let id = new_execution_id();
    let exec = rt
        .run_inline(id.clone(), flow, json!({ "input": input }))
        .await
        .expect("run");
    let journal = rt.store().journal(&id).await.expect("journal");
    (exec, journal)
}

fn output<'a>(journal: &'a [StepRecord], key: &str) -> &'a Value {
    journal
        .iter()
        .find(|r| r.key == key)
        .and_then(|r| r.output.as_ref())
        .unwrap_or_else(|| panic!("no output for step {key}: {journal:#?}"))
}

fn text(file: &Value) -> String {
    ops::file_content(file, "text")
        .expect("a File with content")
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn file_steps_work_on_s3_paths() {
    let Some(endpoint) = endpoint("file_steps_work_on_s3_paths") else {
        return;
    };
    let bucket = new_bucket(&endpoint).await;
    let local = tempfile::tempdir().unwrap();
    // Two and a half parts: the upload streams it in three.
    let big = vec![7u8; 20 * 1024 * 1024 + 123];
    std::fs::write(local.path().join("big.bin"), &big).unwrap();
    let rt = Runtime::new(integration(), common::options(&[])).unwrap();

    let (exec, journal) = run(&rt, "exchange", &bucket, local.path()).await;
    assert_eq!(exec.status, Status::Succeeded, "{exec:#?}");

    let path = |key: &str| json!(format!("s3://{bucket}/{key}"));
    let written = output(&journal, "write");
    assert_eq!(written["path"], path("in/report.csv"));
    assert_eq!(
        (written["name"].clone(), written["size"].clone()),
        (json!("report.csv"), json!(8))
    );
    assert!(written["modified"].is_string(), "{written}");
    let listed = output(&journal, "list").as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(text(&listed[0]), "a,b\n1,2\n");
    assert_eq!(text(output(&journal, "read")), "a,b\n1,2\n");
    assert_eq!(output(&journal, "rename")["path"], path("done/report.csv"));
    let downloaded = local.path().join("down/report.csv");
    assert_eq!(
        output(&journal, "download")["path"],
        json!(downloaded.display().to_string())
    );
    assert_eq!(text(output(&journal, "upload")), "a,b\n1,2\n");
    let big_listed = output(&journal, "big_list").as_array().unwrap();
    assert_eq!(big_listed.len(), 1);
    assert_eq!(big_listed[0]["size"], json!(big.len()));
    assert!(
        big_listed[0].get("bytes").is_none(),
        "a large object is a reference"
    );
    assert_eq!(output(&journal, "delete"), &json!(true));
    assert_eq!(output(&journal, "delete_again"), &json!(false));
    // Every move removed its source.
    assert!(!downloaded.exists() && !local.path().join("big.bin").exists());
    assert_eq!(keys(&endpoint, &bucket, "").await, ["up/big.bin"]);
    let stored = reqwest::get(format!("{endpoint}/{bucket}/up/big.bin"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(stored == big, "the multipart upload holds the file");
}

#[tokio::test]
async fn a_large_write_is_a_multipart_upload() {
    let Some(endpoint) = endpoint("a_large_write_is_a_multipart_upload") else {
        return;
    };
    let bucket = new_bucket(&endpoint).await;
    let local = tempfile::tempdir().unwrap();
    let rt = Runtime::new(integration(), common::options(&[])).unwrap();
    let (exec, _) = run(&rt, "multipart_write", &bucket, local.path()).await;
    assert_eq!(exec.status, Status::Succeeded, "{exec:#?}");
    let head = reqwest::Client::new()
        .head(format!("{endpoint}/{bucket}/out/big.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.headers()["content-length"],
        (9 * 1024 * 1024 + 5).to_string().as_str()
    );
    // A multipart object's ETag ends in `-PARTS`.
    let etag = head.headers()["etag"].to_str().unwrap().to_string();
    assert!(etag.trim_matches('"').ends_with("-2"), "{etag}");
}

#[tokio::test]
async fn s3_errors_name_the_path_and_no_key() {
    let Some(endpoint) = endpoint("s3_errors_name_the_path_and_no_key") else {
        return;
    };
    let bucket = new_bucket(&endpoint).await;
    let local = tempfile::tempdir().unwrap();
    let rt = Runtime::new(integration(), common::options(&[])).unwrap();

    let (exec, journal) = run(&rt, "read_missing", &bucket, local.path()).await;
    assert_eq!(exec.status, Status::Failed, "{exec:#?}");
    let error = exec.error.unwrap_or_default();
    assert!(
        error.contains(&format!("file.read: s3://{bucket}/nope.csv: HTTP 404")),
        "{error}"
    );
    assert!(
        !error.contains("test-secret-key") && !error.contains("AKIDTESTKEY"),
        "{error}"
    );
    assert_eq!(journal[0].attempts, 1, "a missing object is not retried");

    let (exec, _) = run(&rt, "without_via", &bucket, local.path()).await;
    let error = exec.error.unwrap_or_default();
    assert!(
        error.contains("needs `via:` naming an `aws:` connection"),
        "{error}"
    );
}

/// A files flow on an S3 prefix: each object's run stores its text.
fn imported(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let file = ops::field(cx.trigger(), "file");
        let text = ops::file_content(&file, "text").unwrap_or_default();
        if text.as_str().is_some_and(|t| t.contains("FAIL")) {
            return Err(flow_runtime::RunError::fail("a bad file"));
        }
        Ok(Outcome::Succeeded)
    })
}

fn files_flows(config: &Config) -> Vec<FlowDef> {
    vec![FlowDef {
        name: "import",
        doc: "",
        trigger: TriggerDef::Files(FilesTrigger {
            glob: config.fill("${config.glob}"),
            every: Duration::from_millis(200),
            batch: false,
            after: AfterRun::MoveTo("done/"),
            auth: None,
            via: Some("cloud"),
            done_marker: None,
        }),
        run: imported,
        on_failure: None,
    }]
}

/// A replica's store: a PostgreSQL store of its own on the shared schema.
async fn pg_store(url: &str, schema: &str) -> std::sync::Arc<dyn flow_runtime::Store> {
    let options = flow_runtime::store::PostgresOptions {
        url: url.to_string(),
        schema: schema.to_string(),
        pool_size: 4,
    };
    let store = flow_runtime::store::PostgresStore::open(options)
        .await
        .unwrap_or_else(|e| panic!("cannot open the PostgreSQL store: {e}"));
    std::sync::Arc::new(store)
}

/// A runtime scanning `glob` on `store` (one replica).
fn replica(glob: &str, store: std::sync::Arc<dyn flow_runtime::Store>) -> Runtime {
    let integration = Integration {
        config: vec![common::config_entry("glob", Schema::String)],
        connections,
        ..common::integration("s3_drop", files_flows)
    };
    let options = flow_runtime::RuntimeOptions {
        store: Some(store),
        ..common::options(&[("GLOB", glob)])
    };
    Runtime::new(integration, options).unwrap()
}

#[tokio::test]
async fn s3_objects_are_claimed_once_across_replicas_and_moved_after_success() {
    let test = "s3_objects_are_claimed_once_across_replicas_and_moved_after_success";
    let (Some(endpoint), Some(pg)) = (endpoint(test), pg_support::url(test)) else {
        return;
    };
    let bucket = new_bucket(&endpoint).await;
    for (key, body) in [
        ("in/a.csv", "a\n1\n"),
        ("in/b.csv", "b\n2\n"),
        ("in/bad.csv", "FAIL\n"),
        ("in/skip.txt", "x"),
    ] {
        put_object(&endpoint, &bucket, key, body.as_bytes().to_vec()).await;
    }
    // Two replicas: two runtimes, each with its own connection pool to
    // one PostgreSQL schema.
    let schema = pg_support::schema_name();
    let glob = format!("s3://{bucket}/in/*.csv");
    let one = replica(&glob, pg_store(&pg, &schema).await);
    let two = replica(&glob, pg_store(&pg, &schema).await);
    let servers = [
        common::serve(&one, None).await,
        common::serve(&two, None).await,
    ];

    // The objects left in `in/` (not in `in/done/`), sorted.
    let left = || async {
        let mut left = keys(&endpoint, &bucket, "in/").await;
        left.retain(|k| !k.starts_with("in/done/"));
        left.sort();
        left
    };
    common::within("the good objects moved to done/", async {
        loop {
            let mut done = keys(&endpoint, &bucket, "in/done/").await;
            done.sort();
            let failed = one
                .store()
                .count(flow_runtime::store::ExecutionFilter {
                    status: Some(Status::Failed),
                    ..Default::default()
                })
                .await
                .unwrap();
            let moved = done == ["in/done/a.csv", "in/done/b.csv"];
            // A move is a copy, then a delete: wait for both.
            if moved && failed == 1 && left().await == ["in/bad.csv", "in/skip.txt"] {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let runs = one
        .store()
        .list(flow_runtime::store::ExecutionFilter::default())
        .await
        .unwrap();
    assert_eq!(runs.len(), 3, "one run per object: {runs:#?}");
    // Scans go on: nothing is claimed again, the failed object stays.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let again = one
        .store()
        .count(flow_runtime::store::ExecutionFilter::default())
        .await
        .unwrap();
    assert_eq!(again, 3, "no object is imported twice");
    assert_eq!(
        left().await,
        ["in/bad.csv", "in/skip.txt"],
        "a failed object stays in place"
    );
    for server in servers {
        server.shutdown().await;
    }
    drop((one, two));
    pg_support::drop_schema(&pg, &schema).await;
}
