//! End to end: `examples/db_export.flow` against PostgreSQL
//! (`FLOW_TEST_POSTGRES_URL`; skipped with a printed reason when unset,
//! failing when `FLOW_TEST_REQUIRE_SERVICES=1`). A fresh schema holds the
//! `orders` table (the URL's `search_path` points at it); the export flow is
//! run with `BINARY run export_orders` and its CSV file read back; a second
//! run with the same store starts from the saved cursor.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{run_binary, service_url};

/// Runs psql-free bookkeeping statements on a connection of its own.
async fn admin(url: &str, statements: &str) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to FLOW_TEST_POSTGRES_URL: {e}"));
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    client
        .batch_execute(statements)
        .await
        .unwrap_or_else(|e| panic!("{statements}: {e}"));
    drop(client);
    let _ = task.await;
}

fn csv_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|x| x == "csv"));
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_export_writes_changed_rows_to_csv() {
    let Some(url) = service_url(
        "FLOW_TEST_POSTGRES_URL",
        "a_scheduled_export_writes_changed_rows_to_csv",
    ) else {
        return;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let schema = format!("flow_e2e_{}_{nanos}", std::process::id());
    admin(
        &url,
        &format!(
            "CREATE SCHEMA {schema};
             CREATE TABLE {schema}.orders (id BIGINT PRIMARY KEY, customer TEXT NOT NULL, total NUMERIC(12,2) NOT NULL, updated_at TIMESTAMPTZ NOT NULL);
             INSERT INTO {schema}.orders VALUES
               (1, 'Ada', 12.50, '2026-03-01T10:00:00Z'),
               (2, 'Grace, Hopper', 7, '2026-03-01T11:00:00Z'),
               (3, 'x''; DROP TABLE orders; --', 0.99, '2026-03-01T09:00:00Z');"
        ),
    )
    .await;
    let sep = if url.contains('?') { '&' } else { '?' };
    let db_url = format!("{url}{sep}options=-c%20search_path%3D{schema}");

    let binary = support::build_example("examples/db_export.flow");
    let work = tempfile::tempdir().unwrap();
    let exports = work.path().join("exports");
    let store = format!("sqlite://{}", work.path().join("store.db").display());
    let env = [
        ("DB_URL", db_url.as_str()),
        ("EXPORT_DIR", exports.to_str().unwrap()),
    ];
    let run = || {
        let done = run_binary(
            &binary,
            &env,
            &["--store", &store, "run", "export_orders"],
            Duration::from_secs(60),
        );
        assert_eq!(done.code, Some(0), "{done:#?}");
        assert!(
            !done.stderr.contains(db_url.as_str()) && !done.stdout.contains(db_url.as_str()),
            "the database URL is never printed: {done:#?}"
        );
        let outcome: Value = serde_json::from_str(done.stdout.trim())
            .unwrap_or_else(|e| panic!("{:?}: {e}", done.stdout));
        outcome
    };

    let outcome = run();
    assert_eq!(outcome["status"], "succeeded", "{outcome:#}");
    let files = csv_files(&exports);
    assert_eq!(files.len(), 1, "{files:?}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert_eq!(
        text,
        "id,customer,total,updated_at\n\
         2,\"Grace, Hopper\",7,2026-03-01T11:00:00Z\n\
         1,Ada,12.5,2026-03-01T10:00:00Z\n\
         3,x'; DROP TABLE orders; --,0.99,2026-03-01T09:00:00Z\n",
    );

    // The cursor is the newest exported time: nothing changed since.
    let outcome = run();
    assert_eq!(outcome["status"], "skipped", "{outcome:#}");

    // A changed row is exported on its own by the next run.
    admin(
        &url,
        &format!("UPDATE {schema}.orders SET total = 13, updated_at = '2026-03-02T08:00:00Z' WHERE id = 1"),
    )
    .await;
    let outcome = run();
    assert_eq!(outcome["status"], "succeeded", "{outcome:#}");
    let files = csv_files(&exports);
    let newest = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .find(|t| t.contains("2026-03-02"))
        .unwrap_or_else(|| panic!("no export with the changed row: {files:?}"));
    assert_eq!(
        newest,
        "id,customer,total,updated_at\n1,Ada,13,2026-03-02T08:00:00Z\n"
    );

    admin(&url, &format!("DROP SCHEMA {schema} CASCADE")).await;
}
