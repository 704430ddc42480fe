//! End to end: schedules. `tests/flows/ticker.flow` fires every second
//! while served; `examples/nightly_poll.flow`'s polling flow is run once
//! with `BINARY run`.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{run_binary, Reply, Service, Sink};

fn time(v: &Value) -> chrono::DateTime<chrono::Utc> {
    let text = v.as_str().unwrap_or_else(|| panic!("not a Time: {v}"));
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text:?} is not RFC 3339: {e}"))
        .to_utc()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fires_every_second() {
    let sink = Sink::start();
    let binary = support::build_example("tests/flows/ticker.flow");
    let _svc = Service::start(&binary, &[("SINK_URL", sink.url())], &[]);

    let ticks = sink
        .wait_for_path("POST", "/tick", 3, Duration::from_secs(15))
        .await;
    let first = &ticks[0].body;
    assert!(
        first["previous"].is_null(),
        "the first tick has no previous: {first}"
    );
    for pair in ticks.windows(2) {
        let (a, b) = (&pair[0].body, &pair[1].body);
        assert_eq!(b["previous"], a["at"], "each tick names the one before");
        let gap = time(&b["at"]) - time(&a["at"]);
        assert!(
            gap >= chrono::Duration::milliseconds(1000),
            "ticks {a} and {b} are less than the period apart"
        );
    }
}

#[test]
fn the_polling_flow_forwards_new_tickets_once() {
    let sink = Sink::start();
    sink.on(
        "GET",
        "/tickets",
        [Reply::json(
            200,
            json!({ "tickets": [
                { "id": 1, "title": "Printer on fire", "updated_at": "2024-05-02T10:00:00Z" },
                { "id": 2, "title": "Coffee machine empty", "updated_at": "2024-05-01T09:00:00Z" },
                { "id": 3, "title": "Wi-Fi slow", "updated_at": "2024-04-30T08:00:00Z" },
            ] }),
        )],
    );
    let binary = support::build_example("examples/nightly_poll.flow");
    let done = run_binary(
        &binary,
        &[("TICKETS_URL", sink.url()), ("SINK_URL", sink.url())],
        &["run", "poll_tickets"],
        Duration::from_secs(60),
    );
    assert_eq!(done.code, Some(0), "{done:#?}");
    let outcome: Value = serde_json::from_str(done.stdout.trim())
        .unwrap_or_else(|e| panic!("{:?}: {e}", done.stdout));
    assert_eq!(outcome["flow"], "poll_tickets");
    assert_eq!(outcome["status"], "succeeded", "{outcome:#}");

    let polls = sink.requests_to("GET", "/tickets");
    assert_eq!(polls.len(), 1, "{}", sink.summary());
    assert_eq!(
        polls[0].query, "since=1970-01-01T00%3A00%3A00Z",
        "the first poll starts at the default cursor"
    );
    let mut forwarded: Vec<i64> = sink
        .requests_to("POST", "/tickets")
        .iter()
        .map(|r| r.body["id"].as_i64().expect("ticket id"))
        .collect();
    forwarded.sort_unstable();
    assert_eq!(forwarded, [1, 2, 3], "{}", sink.summary());

    // With no new tickets, the run is skipped.
    sink.on(
        "GET",
        "/tickets",
        [Reply::json(200, json!({ "tickets": [] }))],
    );
    let done = run_binary(
        &binary,
        &[("TICKETS_URL", sink.url()), ("SINK_URL", sink.url())],
        &["run", "poll_tickets"],
        Duration::from_secs(60),
    );
    assert_eq!(done.code, Some(0), "{done:#?}");
    let outcome: Value = serde_json::from_str(done.stdout.trim()).expect("JSON outcome");
    assert_eq!(outcome["status"], "skipped", "{outcome:#}");
    assert_eq!(outcome["result"], json!({ "skipped": "no new tickets" }));
    assert_eq!(sink.requests_to("POST", "/tickets").len(), 3);
}

#[test]
fn a_finally_failed_run_runs_its_on_failure_block() {
    let sink = Sink::start();
    sink.on(
        "POST",
        "/summary",
        [Reply::json(500, json!({ "error": "warehouse down" }))],
    );
    let binary = support::build_example("examples/nightly_poll.flow");
    // `retry 3 backoff 1s..1m` (the default): four attempts in about 7 s.
    let done = run_binary(
        &binary,
        &[("TICKETS_URL", sink.url()), ("SINK_URL", sink.url())],
        &["run", "weekly_summary"],
        Duration::from_secs(60),
    );
    assert_eq!(done.code, Some(1), "{done:#?}");
    let outcome: Value = serde_json::from_str(done.stdout.trim())
        .unwrap_or_else(|e| panic!("{:?}: {e}", done.stdout));
    assert_eq!(outcome["status"], "failed", "{outcome:#}");
    assert_eq!(outcome["error_step"], "summary", "{outcome:#}");
    let error = outcome["error"].as_str().unwrap_or_default();
    assert!(error.contains("500"), "{error}");

    assert_eq!(
        sink.requests_to("POST", "/summary").len(),
        4,
        "{}",
        sink.summary()
    );
    let alerts = sink.requests_to("POST", "/alerts");
    assert_eq!(alerts.len(), 1, "{}", sink.summary());
    assert_eq!(alerts[0].body["run"], outcome["execution_id"]);
    assert!(
        alerts[0].body["error"]
            .as_str()
            .is_some_and(|e| e.contains("500")),
        "{}",
        alerts[0].body
    );
}

/// Scheduled data import: the cursor is kept in the store, so the next
/// poll — here in a new process on the same store, as after a restart —
/// asks only for what came after it, and forwards only that.
#[test]
fn the_polling_cursor_survives_a_restart() {
    let sink = Sink::start();
    sink.on(
        "GET",
        "/tickets",
        [
            Reply::json(
                200,
                json!({ "tickets": [
                    { "id": 1, "title": "Printer on fire", "updated_at": "2024-05-02T10:00:00Z" },
                    { "id": 2, "title": "Coffee machine empty", "updated_at": "2024-05-01T09:00:00Z" },
                ] }),
            ),
            Reply::json(
                200,
                json!({ "tickets": [
                    { "id": 3, "title": "Wi-Fi slow", "updated_at": "2024-05-03T08:00:00Z" },
                ] }),
            ),
        ],
    );
    let binary = support::build_example("examples/nightly_poll.flow");
    let work = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", work.path().join("poll.db").display());
    let env = [("TICKETS_URL", sink.url()), ("SINK_URL", sink.url())];
    for _ in 0..2 {
        let done = run_binary(
            &binary,
            &env,
            &["--store", &store, "run", "poll_tickets"],
            Duration::from_secs(60),
        );
        assert_eq!(done.code, Some(0), "{done:#?}");
    }
    let polls = sink.requests_to("GET", "/tickets");
    let queries: Vec<&str> = polls.iter().map(|r| r.query.as_str()).collect();
    assert_eq!(
        queries,
        [
            "since=1970-01-01T00%3A00%3A00Z",
            "since=2024-05-02T10%3A00%3A00Z"
        ],
        "the second process starts from the first one's cursor"
    );
    let forwarded: Vec<i64> = sink
        .requests_to("POST", "/tickets")
        .iter()
        .map(|r| r.body["id"].as_i64().expect("ticket id"))
        .collect();
    assert_eq!(forwarded.len(), 3, "{}", sink.summary());
    assert_eq!(forwarded.iter().filter(|id| **id == 3).count(), 1);
}
