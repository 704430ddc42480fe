//! The PostgreSQL server of tests: `FLOW_TEST_POSTGRES_URL` (e.g.
//! `postgres://postgres@127.0.0.1:5432/postgres`). Without it a test
//! prints why it skips, unless `FLOW_TEST_REQUIRE_SERVICES=1` (CI), where a
//! missing server fails. Each test gets a schema of its own, so tests run
//! in parallel on one database.

#![allow(dead_code)]

/// The server's URL, or `None` (printed) when the test should skip.
pub fn url(test: &str) -> Option<String> {
    flow_testkit::service_url("FLOW_TEST_POSTGRES_URL", test)
}

/// A fresh, unused schema name.
pub fn schema_name() -> String {
    format!("flow_test_{}", uuid::Uuid::new_v4().simple())
}

/// Connects for test bookkeeping (the connection runs on a task).
pub async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to FLOW_TEST_POSTGRES_URL: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// Drops a test's schema with everything in it.
pub async fn drop_schema(url: &str, schema: &str) {
    let client = admin(url).await;
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await
        .unwrap_or_else(|e| panic!("cannot drop schema {schema}: {e}"));
}
