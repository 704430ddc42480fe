//! `sql.query` / `sql.execute` through the engine (the stdlib StepFns and
//! their journal) on each backend: SQLite (a temp file, always), PostgreSQL
//! (`FLOW_TEST_POSTGRES_URL`, a fresh schema per test) and MariaDB/MySQL
//! (`FLOW_TEST_MYSQL_URL`, a fresh database per test). A missing server
//! skips its test with a printed reason, or fails it when
//! `FLOW_TEST_REQUIRE_SERVICES=1`.

mod common;

use flow_runtime::engine::new_execution_id;
use flow_runtime::schema::FieldSchema;
use flow_runtime::{
    json, ops, Args, Config, Ctx, FlowDef, FlowFuture, Integration, Outcome, Runtime, Schema,
    Status, StepOptions, TriggerDef, Value,
};

/// Two retries 10 ms apart: a permanent error must still end after one attempt.
fn quick_retries() -> StepOptions {
    StepOptions {
        retry: 2,
        backoff_min: std::time::Duration::from_millis(10),
        backoff_max: std::time::Duration::from_millis(10),
        ..StepOptions::default()
    }
}

fn item_schema() -> Schema {
    Schema::list(Schema::Record(vec![
        FieldSchema::new("id", Schema::Int),
        FieldSchema::new("name", Schema::String),
        FieldSchema::new("qty", Schema::Int),
        FieldSchema::new("price", Schema::Float),
        FieldSchema::new("active", Schema::Bool),
        FieldSchema::new("seen", Schema::Time),
        FieldSchema::new("note", Schema::optional(Schema::String)),
    ]))
}

/// One statement per run: `input` is `{ db, sql, args, kind, as }`.
fn one(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let input = ops::field(cx.trigger(), "input");
        let kind = ops::field(&input, "kind");
        let mut args = Args::new()
            .arg(ops::field(&input, "db"))
            .arg(ops::field(&input, "sql"))
            .kw("args", ops::field(&input, "args"));
        let call = if kind == json!("query") {
            args = match ops::field(&input, "as").as_str() {
                Some("item") => args.decode_as(item_schema()),
                Some("qty") => {
                    args.decode_as(Schema::list(Schema::Record(vec![FieldSchema::new(
                        "qty",
                        Schema::Int,
                    )])))
                }
                _ => args.decode_as(Schema::list(Schema::Json)),
            };
            "sql.query"
        } else {
            "sql.execute"
        };
        cx.step("stmt", quick_retries(), call, args).await?;
        Ok(Outcome::Succeeded)
    })
}

fn flows(_: &Config) -> Vec<FlowDef> {
    vec![FlowDef {
        name: "one",
        doc: "",
        trigger: TriggerDef::Dispatch {
            input: Schema::Json,
        },
        run: one,
        on_failure: None,
    }]
}

fn integration() -> Integration {
    common::integration("sql_steps", flows)
}

struct Db {
    rt: Runtime,
    url: String,
}

/// What one statement gave: the run's status, the step's output or error,
/// and its attempts.
struct Ran {
    status: Status,
    output: Value,
    error: String,
    attempts: u32,
}

impl Db {
    fn new(url: String) -> Db {
        Db {
            rt: Runtime::new(integration(), common::options(&[])).unwrap(),
            url,
        }
    }

    async fn run(&self, kind: &str, sql: &str, args: Value, as_: &str) -> Ran {
        let id = new_execution_id();
        let input = json!({ "db": self.url, "sql": sql, "args": args, "kind": kind, "as": as_ });
        let exec = self
            .rt
            .run_inline(id.clone(), "one", json!({ "input": input }))
            .await
            .expect("run");
        let journal = self.rt.store().journal(&id).await.expect("journal");
        let step = journal.first().cloned();
        Ran {
            status: exec.status,
            output: step
                .as_ref()
                .and_then(|s| s.output.clone())
                .unwrap_or(Value::Null),
            error: exec.error.unwrap_or_default(),
            attempts: step.map_or(0, |s| s.attempts),
        }
    }

    async fn ok(&self, kind: &str, sql: &str, args: Value, as_: &str) -> Value {
        let r = self.run(kind, sql, args, as_).await;
        assert_eq!(r.status, Status::Succeeded, "{sql}: {}", r.error);
        r.output
    }

    async fn fails(&self, kind: &str, sql: &str, args: Value, as_: &str) -> String {
        let r = self.run(kind, sql, args, as_).await;
        assert_eq!(r.status, Status::Failed, "{sql} should fail");
        assert_eq!(r.attempts, 1, "{sql}: a permanent error is not retried");
        r.error
    }
}

/// The same checks on every backend. `t` is the (qualified) table name,
/// `p(n)` the n-th placeholder, `ddl` the table's column types.
async fn exercise(db: &Db, t: &str, p: fn(usize) -> String, ddl: &str) {
    db.ok(
        "execute",
        &format!("CREATE TABLE {t} ({ddl})"),
        json!([]),
        "",
    )
    .await;
    let insert = format!(
        "INSERT INTO {t} (id, name, qty, price, active, seen, note) VALUES ({}, {}, {}, {}, {}, {}, {})",
        p(1),
        p(2),
        p(3),
        p(4),
        p(5),
        p(6),
        p(7)
    );
    let evil = "x'; DROP TABLE items; --";
    let n = db
        .ok(
            "execute",
            &insert,
            json!([1, evil, 3, 2.5, true, "2026-03-01T10:00:00Z", null]),
            "",
        )
        .await;
    assert_eq!(n, json!(1));
    db.ok(
        "execute",
        &insert,
        json!([2, "plain", 0, 10, false, "2026-03-02T11:30:00Z", "a note"]),
        "",
    )
    .await;

    // Typed rows; the injection attempt is stored verbatim.
    let rows = db
        .ok(
            "query",
            &format!(
                "SELECT id, name, qty, price, active, seen, note FROM {t} WHERE id >= {} ORDER BY id",
                p(1)
            ),
            json!([1]),
            "item",
        )
        .await;
    assert_eq!(rows[0]["name"], json!(evil));
    assert_eq!(rows[0]["qty"], json!(3));
    assert_eq!(rows[0]["price"], json!(2.5));
    assert_eq!(rows[0]["active"], json!(true));
    assert_eq!(rows[0]["note"], json!(null));
    assert_eq!(rows[1]["active"], json!(false));
    assert_eq!(rows[1]["price"], json!(10.0));
    assert_eq!(rows[1]["note"], json!("a note"));
    let seen = rows[0]["seen"].as_str().unwrap_or_default();
    assert!(seen.starts_with("2026-03-01T10:00:00"), "{seen}");

    // A value equal to the evil string finds its row: bound, not spliced.
    let found = db
        .ok(
            "query",
            &format!("SELECT id FROM {t} WHERE name = {}", p(1)),
            json!([evil]),
            "",
        )
        .await;
    assert_eq!(found, json!([{ "id": 1 }]));

    // Rows changed by an UPDATE.
    let n = db
        .ok(
            "execute",
            &format!("UPDATE {t} SET qty = qty + 1 WHERE id <= {}", p(1)),
            json!([2]),
            "",
        )
        .await;
    assert_eq!(n, json!(2));

    // A row that does not decode names the row and the column.
    let e = db
        .fails(
            "query",
            &format!("SELECT name AS qty FROM {t} ORDER BY id"),
            json!([]),
            "qty",
        )
        .await;
    assert!(
        e.contains(&format!(
            "sql.query: row 1, column qty: expected Int, got \"{evil}\""
        )),
        "{e}"
    );

    // SQL errors are permanent and carry the database's message.
    let e = db
        .fails("query", &format!("SELEC id FROM {t}"), json!([]), "")
        .await;
    assert!(e.contains("sql.query on ") && e.contains("syntax"), "{e}");
    let e = db
        .fails(
            "execute",
            &insert,
            json!([1, "dup", 1, 1, true, "2026-03-01T10:00:00Z", null]),
            "",
        )
        .await;
    let lower = e.to_lowercase();
    assert!(
        lower.contains("duplicate") || lower.contains("unique"),
        "a primary key violation: {e}"
    );
    let e = db
        .fails(
            "query",
            &format!("SELECT id FROM {t} WHERE id = {}", p(1)),
            json!([]),
            "",
        )
        .await;
    assert!(e.contains("parameter"), "a missing value: {e}");

    // The table is still there after everything.
    let all = db
        .ok(
            "query",
            &format!("SELECT id FROM {t} ORDER BY id"),
            json!([]),
            "",
        )
        .await;
    assert_eq!(all, json!([{ "id": 1 }, { "id": 2 }]));
}

fn numbered(n: usize) -> String {
    format!("${n}")
}

fn question(_: usize) -> String {
    "?".to_string()
}

fn fresh_name() -> String {
    format!("flow_sql_{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn sqlite_query_execute_types_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::new(format!("sqlite://{}", dir.path().join("app.db").display()));
    exercise(
        &db,
        "items",
        question,
        "id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER NOT NULL, price REAL NOT NULL, active BOOLEAN NOT NULL, seen TEXT NOT NULL, note TEXT",
    )
    .await;
}

#[tokio::test]
async fn postgres_query_execute_types_and_errors() {
    let Some(url) = flow_testkit::service_url(
        "FLOW_TEST_POSTGRES_URL",
        "postgres_query_execute_types_and_errors",
    ) else {
        return;
    };
    let schema = fresh_name();
    let db = Db::new(url);
    db.ok("execute", &format!("CREATE SCHEMA {schema}"), json!([]), "")
        .await;
    exercise(
        &db,
        &format!("{schema}.items"),
        numbered,
        "id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty BIGINT NOT NULL, price NUMERIC(10,2) NOT NULL, active BOOLEAN NOT NULL, seen TIMESTAMPTZ NOT NULL, note VARCHAR(50)",
    )
    .await;
    // Types read back: jsonb, date, uuid, float; `?` is jsonb's operator.
    let row = db
        .ok(
            "query",
            "SELECT '{\"a\": [1]}'::jsonb AS j, DATE '2026-02-03' AS d, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u, 0.25::float8 AS f, $1::jsonb ? 'a' AS has",
            json!([{ "a": 1 }]),
            "",
        )
        .await;
    assert_eq!(
        row,
        json!([{ "j": { "a": [1] }, "d": "2026-02-03", "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "f": 0.25, "has": true }])
    );
    db.ok(
        "execute",
        &format!("DROP SCHEMA {schema} CASCADE"),
        json!([]),
        "",
    )
    .await;
}

#[tokio::test]
async fn mysql_query_execute_types_and_errors() {
    let Some(url) = flow_testkit::service_url(
        "FLOW_TEST_MYSQL_URL",
        "mysql_query_execute_types_and_errors",
    ) else {
        return;
    };
    let database = fresh_name();
    let db = Db::new(url);
    db.ok(
        "execute",
        &format!("CREATE DATABASE {database}"),
        json!([]),
        "",
    )
    .await;
    exercise(
        &db,
        &format!("{database}.items"),
        question,
        "id INT PRIMARY KEY, name TEXT NOT NULL, qty BIGINT NOT NULL, price DECIMAL(10,2) NOT NULL, active BOOLEAN NOT NULL, seen DATETIME NOT NULL, note VARCHAR(50)",
    )
    .await;
    db.ok(
        "execute",
        &format!("DROP DATABASE {database}"),
        json!([]),
        "",
    )
    .await;
}

#[tokio::test]
async fn an_unreachable_database_is_retried_and_the_password_never_shown() {
    let port = flow_testkit::free_port();
    for url in [
        format!("postgres://app:hunter2secret@127.0.0.1:{port}/shop"),
        format!("mysql://app:hunter2secret@127.0.0.1:{port}/shop"),
    ] {
        let db = Db::new(url.clone());
        let r = db.run("query", "SELECT 1", json!([]), "").await;
        assert_eq!(r.status, Status::Failed, "{url}");
        assert_eq!(r.attempts, 3, "{url}: retried twice: {}", r.error);
        assert!(!r.error.contains("hunter2secret"), "{}", r.error);
        assert!(
            r.error.contains(&format!("127.0.0.1:{port}/shop")),
            "{}",
            r.error
        );
    }
    let db = Db::new("oracle://app:hunter2secret@127.0.0.1/x".into());
    let e = db.fails("query", "SELECT 1", json!([]), "").await;
    assert!(e.contains("unsupported database URL scheme"), "{e}");
    assert!(!e.contains("hunter2secret"), "{e}");
}
