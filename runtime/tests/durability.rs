//! Durable execution, end to end: the example binary `orders_relay` runs as
//! a real process on the default SQLite store in a temporary directory,
//! driven over real sockets, with a local sink standing in for the
//! receiving service. Processes are killed (SIGKILL), stopped (SIGTERM) and
//! restarted on the same database file.
//!
//! Waits are bounded and driven by what the sink or the admin API report;
//! ports come from the OS.

use std::collections::{BTreeMap, HashMap};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flow_runtime::store::{ExecutionFilter, SqliteOptions, SqliteStore, Status, Store};
use flow_testkit::{client, example_binary, run_binary_in, Received, Reply, Service, Sink};
use serde_json::{json, Value};
use tokio::sync::watch;

/// Upper bound of every wait.
const WAIT: Duration = Duration::from_secs(40);
const ADMIN: &str = "admin-tok-7f3a9";
const TOKEN: &str = "sink-tok-c0ffee42";
/// Upper bound of one request to the service.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- binary

/// The example binary, built once per test run (cargo makes this a no-op
/// when it is fresh) in the same target directory and profile as the tests.
fn binary() -> PathBuf {
    example_binary("flow_runtime", "orders_relay")
}

// --------------------------------------------------------------- service

fn env_for(sink: &Sink) -> Vec<(String, String)> {
    vec![
        ("SINK_URL".into(), sink.url().into()),
        ("SINK_TOKEN".into(), TOKEN.into()),
        ("FLOW_ADMIN_TOKEN".into(), ADMIN.into()),
    ]
}

/// `env` as a process gets it, with the logs the tests read at `info`.
fn with_logs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    let mut pairs = vec![("RUST_LOG", "info")];
    pairs.extend(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    pairs
}

/// `orders_relay serve --addr 127.0.0.1:0 ARGS` in `dir` (so the store is
/// `dir/orders_relay.db`), once it listens; killed when dropped.
fn serve(dir: &Path, env: &[(String, String)], args: &[&str]) -> Service {
    Service::start_in(dir, &binary(), &with_logs(env), args)
}

// ------------------------------------------------------------------ sink

/// The `Idempotency-Key` header of a request the sink received.
fn idempotency_key(hit: &Received) -> &str {
    hit.header("idempotency-key").unwrap_or("")
}

/// How many requests carried each idempotency key.
fn per_key(sink: &Sink) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for h in sink.requests() {
        *m.entry(idempotency_key(&h).to_string()).or_insert(0) += 1;
    }
    m
}

// ---------------------------------------------------------------- client

/// POSTs an order; `Err` when the service is not there (killed, stopping).
async fn post_order(
    http: &reqwest::Client,
    base: &str,
    delivery: &str,
    id: &str,
    lines: &[&str],
) -> Result<(u16, Value), reqwest::Error> {
    let r = http
        .post(format!("{base}/orders"))
        .header("x-delivery-id", delivery)
        .json(&json!({ "id": id, "lines": lines }))
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

/// `202` (or `200` duplicate) → the execution id.
fn accepted(answer: &(u16, Value)) -> String {
    assert!(
        answer.0 == 202 || (answer.0 == 200 && answer.1["duplicate"] == json!(true)),
        "{answer:?}"
    );
    answer.1["execution_id"].as_str().unwrap().to_string()
}

async fn admin_get(http: &reqwest::Client, svc: &Service, path: &str) -> Value {
    let r = http
        .get(svc.at(path))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

/// Polls the admin API (bounded) until the execution has `status`.
async fn wait_status(http: &reqwest::Client, svc: &Service, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let e = admin_get(http, svc, &format!("/_flow/executions/{id}")).await;
        if e["status"] == json!(status) {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "execution {id} is not {status}: {e:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn step<'a>(exec: &'a Value, key: &str) -> &'a Value {
    exec["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == json!(key))
        .unwrap_or_else(|| panic!("no step {key} in {exec:#}"))
}

/// The binary's CLI (`executions`, `replay`) against a running service.
fn cli(dir: &Path, args: &[&str], token: &str) -> (i32, String, String) {
    let env = [("FLOW_ADMIN_TOKEN".to_string(), token.to_string())];
    let out = run_binary_in(dir, &binary(), &with_logs(&env), args, WAIT);
    (out.code.unwrap_or(-1), out.stdout, out.stderr)
}

fn open_db(dir: &Path) -> SqliteStore {
    SqliteStore::open(dir.join("orders_relay.db"), SqliteOptions::default()).unwrap()
}

// ----------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_loses_nothing_acknowledged_and_repeats_only_steps_in_flight() {
    const ORDERS: usize = 120;
    const CLIENTS: usize = 4;
    const WORKERS: usize = 4;
    // Every call takes a while, so runs are mid-way when the process dies.
    let sink = Sink::responding(|_, _| Reply {
        delay: Duration::from_millis(15),
        ..Reply::ok()
    });
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&sink);
    let workers = WORKERS.to_string();
    let mut svc = serve(dir.path(), &env, &["--workers", &workers]);

    // Clients send orders at a steady pace and, like webhook senders,
    // retry a delivery (same X-Delivery-Id) until it is acknowledged.
    let (base_tx, base_rx) = watch::channel(svc.url().to_string());
    let acked: Arc<Mutex<BTreeMap<usize, String>>> = Arc::default();
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let mut base_rx = base_rx.clone();
        let acked = acked.clone();
        clients.push(tokio::spawn(async move {
            let http = client(HTTP_TIMEOUT);
            for i in (c..ORDERS).step_by(CLIENTS) {
                loop {
                    let base = base_rx.borrow_and_update().clone();
                    let id = format!("o{i}");
                    match post_order(&http, &base, &format!("d{i}"), &id, &["a", "b", "c"]).await {
                        Ok(answer) if answer.0 == 202 || answer.0 == 200 => {
                            acked.lock().unwrap().insert(i, accepted(&answer));
                            break;
                        }
                        // Not acknowledged: wait for the service to be back.
                        _ => {
                            let _ = tokio::time::timeout(WAIT, base_rx.changed()).await;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }

    // Kill while clients are still sending and a run is half-way (its first
    // call made, its third not yet).
    let progress = acked.clone();
    sink.wait_until(WAIT, "a run half-way", |h| {
        progress.lock().unwrap().len() >= 40
            && h.iter().any(|x| {
                idempotency_key(x)
                    .strip_suffix("/send[0]")
                    .is_some_and(|id| {
                        let third = format!("{id}/send[2]");
                        !h.iter().any(|y| idempotency_key(y) == third)
                    })
            })
    })
    .await;
    svc.kill();
    let killed_at = Instant::now();
    let acked_at_kill = acked.lock().unwrap().len();
    assert!(
        acked_at_kill < ORDERS,
        "the clients were done before the kill"
    );

    let svc = serve(dir.path(), &env, &["--workers", &workers]);
    base_tx.send_replace(svc.url().to_string());
    for c in clients {
        tokio::time::timeout(WAIT, c).await.unwrap().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), ORDERS);

    // Every acknowledged event runs to completion.
    let expected: Vec<String> = acked
        .values()
        .flat_map(|id| ["send[0]", "send[1]", "send[2]", "done"].map(|s| format!("{id}/{s}")))
        .collect();
    sink.wait_until(WAIT, "every acknowledged order to be done", |hits| {
        let seen: std::collections::HashSet<&str> = hits.iter().map(idempotency_key).collect();
        expected.iter().all(|k| seen.contains(k.as_str()))
    })
    .await;
    let http = client(HTTP_TIMEOUT);
    for id in acked.values() {
        wait_status(&http, &svc, id, "succeeded").await;
    }

    // Each step reached the sink once, except steps in flight at the kill
    // (at most one per worker), which may have reached it twice.
    let hits = sink.requests();
    let mut repeated = Vec::new();
    for (key, n) in per_key(&sink) {
        assert!(n <= 2, "{key} sent {n} times");
        if n == 2 {
            let first = hits.iter().find(|h| idempotency_key(h) == key).unwrap();
            assert!(
                first.at < killed_at,
                "{key} was repeated but was not in flight at the kill"
            );
            repeated.push(key);
        }
    }
    assert!(repeated.len() <= WORKERS, "repeated: {repeated:?}");
    // The kill really interrupted runs: some started before it and ended after.
    let interrupted = acked.values().any(|id| {
        let first = hits
            .iter()
            .find(|h| idempotency_key(h).starts_with(id.as_str()));
        let done = hits
            .iter()
            .find(|h| idempotency_key(h) == format!("{id}/done"));
        matches!((first, done), (Some(f), Some(d)) if f.at < killed_at && d.at > killed_at)
    });
    assert!(interrupted, "no run was in progress at the kill");
    assert!(
        svc.stderr()
            .contains("resuming runs interrupted by the previous stop"),
        "{}",
        svc.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_of_the_receiver_is_ridden_out_by_retries() {
    const ORDERS: usize = 12;
    let down = Arc::new(AtomicBool::new(true));
    let d = down.clone();
    let sink = Sink::responding(move |_, _| {
        if d.load(Ordering::SeqCst) {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let svc = serve(dir.path(), &env_for(&sink), &["--workers", "32"]);
    let http = client(HTTP_TIMEOUT);
    let mut ids = Vec::new();
    for i in 0..ORDERS {
        let answer = post_order(
            &http,
            svc.url(),
            &format!("out-{i}"),
            &format!("o{i}"),
            &["x", "y"],
        )
        .await
        .unwrap();
        assert_eq!(answer.0, 202, "{answer:?}");
        ids.push(accepted(&answer));
    }
    // The outage lasts until every run has been refused at least twice.
    let keys: Vec<String> = ids.iter().map(|id| format!("{id}/send[0]")).collect();
    sink.wait_until(WAIT, "two refusals per run", |hits| {
        keys.iter().all(|k| {
            hits.iter()
                .filter(|h| idempotency_key(h) == k.as_str())
                .count()
                >= 2
        })
    })
    .await;
    down.store(false, Ordering::SeqCst);

    let done: Vec<String> = ids.iter().map(|id| format!("{id}/done")).collect();
    sink.wait_until(WAIT, "every order to be done", |hits| {
        done.iter()
            .all(|k| hits.iter().any(|h| idempotency_key(h) == k.as_str()))
    })
    .await;
    let per_key = per_key(&sink);
    for id in &ids {
        let e = wait_status(&http, &svc, id, "succeeded").await;
        // The retries are in the record: attempts match what the sink saw.
        for key in ["send[0]", "send[1]", "done"] {
            let s = step(&e, key);
            assert_eq!(s["status"], json!("succeeded"), "{e:#}");
            assert_eq!(
                s["attempts"].as_u64().unwrap() as usize,
                per_key[&format!("{id}/{key}")],
                "{key} of {id}: {e:#}"
            );
        }
        assert!(
            step(&e, "send[0]")["attempts"].as_u64().unwrap() >= 3,
            "{e:#}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_is_replayed_after_the_fix_and_resumes_after_its_last_finished_step() {
    let fixed = Arc::new(AtomicBool::new(false));
    let f = fixed.clone();
    let sink = Sink::responding(move |hit, _| {
        if hit.body["line"] == json!("poison") && !f.load(Ordering::SeqCst) {
            Reply {
                body: json!({ "error": "unknown article" }),
                ..Reply::status(500)
            }
        } else {
            Reply::ok()
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&sink);
    let mut svc = serve(dir.path(), &env, &[]);
    let http = client(HTTP_TIMEOUT);
    let mut ids = Vec::new();
    for n in ["a", "b"] {
        let answer = post_order(
            &http,
            svc.url(),
            &format!("rep-{n}"),
            n,
            &["ok1", "poison", "ok2"],
        )
        .await
        .unwrap();
        ids.push(accepted(&answer));
    }
    for id in &ids {
        let e = wait_status(&http, &svc, id, "failed").await;
        assert_eq!(e["error_step"], json!("send[1]"), "{e:#}");
        assert!(e["error"].as_str().unwrap().contains("HTTP 500"), "{e:#}");
        assert_eq!(step(&e, "send[0]")["status"], json!("succeeded"));
        let failed = step(&e, "send[1]");
        assert_eq!(
            (failed["status"].clone(), failed["attempts"].clone()),
            (json!("failed"), json!(9))
        );
        assert!(
            failed["error"]
                .as_str()
                .unwrap()
                .contains("unknown article"),
            "{e:#}"
        );
    }
    // `executions --failed` lists both.
    let (code, out, err) = cli(
        dir.path(),
        &["executions", "--failed", "--url", svc.url()],
        ADMIN,
    );
    assert_eq!(code, 0, "{err}");
    assert!(ids.iter().all(|id| out.contains(id.as_str())), "{out}");

    // Failed runs survive a restart; fix the cause, replay one through the
    // admin API and the other through the CLI.
    assert!(svc.terminate(WAIT).success());
    let svc = serve(dir.path(), &env, &[]);
    fixed.store(true, Ordering::SeqCst);
    let r = http
        .post(svc.at(&format!("/_flow/executions/{}/replay", ids[0])))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let (code, out, err) = cli(dir.path(), &["replay", &ids[1], "--url", svc.url()], ADMIN);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&ids[1]), "{out}");

    let per_key = |sink: &Sink, k: &str| per_key(sink).get(k).copied().unwrap_or(0);
    for id in &ids {
        let e = wait_status(&http, &svc, id, "succeeded").await;
        assert_eq!(e["attempts"], json!(2), "{e:#}");
        assert!(e["error"].is_null());
        // Resumed after the last finished step: send[0] was not sent again.
        assert_eq!(per_key(&sink, &format!("{id}/send[0]")), 1);
        assert_eq!(per_key(&sink, &format!("{id}/send[1]")), 10, "9 failed + 1");
        assert_eq!(per_key(&sink, &format!("{id}/send[2]")), 1);
        assert_eq!(per_key(&sink, &format!("{id}/done")), 1);
        assert_eq!(step(&e, "send[1]")["status"], json!("succeeded"));
    }
    // An unknown execution cannot be replayed.
    let r = http
        .post(svc.at("/_flow/executions/nope/replay"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedupe_keys_hold_across_a_crash() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&sink);
    let http = client(HTTP_TIMEOUT);
    let mut svc = serve(dir.path(), &env, &[]);
    let first = post_order(&http, svc.url(), "delivery-77", "o77", &["x"])
        .await
        .unwrap();
    assert_eq!(first.0, 202, "{first:?}");
    let id = accepted(&first);
    wait_status(&http, &svc, &id, "succeeded").await;
    svc.kill();

    let svc = serve(dir.path(), &env, &[]);
    let again = post_order(&http, svc.url(), "delivery-77", "o77", &["x"])
        .await
        .unwrap();
    assert_eq!(
        again,
        (200, json!({ "execution_id": id, "duplicate": true }))
    );
    let other = post_order(&http, svc.url(), "delivery-78", "o78", &["x"])
        .await
        .unwrap();
    assert_eq!(other.0, 202);
    let other = accepted(&other);
    wait_status(&http, &svc, &other, "succeeded").await;
    let list = admin_get(&http, &svc, "/_flow/executions?flow=order_received").await;
    assert_eq!(list["executions"].as_array().unwrap().len(), 2, "{list:#}");
    assert_eq!(per_key(&sink)[&format!("{id}/done")], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_finishes_what_it_can_and_leaves_the_rest_queued() {
    // Calls for the "slow" orders hang until the gate opens.
    let sink = Sink::responding(|hit, _| {
        if hit.path.starts_with("/lines/slow") {
            Reply {
                hold: true,
                ..Reply::ok()
            }
        } else {
            Reply::ok()
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&sink);
    let mut svc = serve(
        dir.path(),
        &env,
        &["--workers", "2", "--drain-timeout", "1s"],
    );
    let http = client(HTTP_TIMEOUT);
    let mut acked = Vec::new();
    for name in ["slow-1", "slow-2", "fast-1", "fast-2", "fast-3"] {
        let a = post_order(&http, svc.url(), name, name, &["x", "y"])
            .await
            .unwrap();
        assert_eq!(a.0, 202);
        acked.push(accepted(&a));
    }
    // Both workers are stuck in the slow orders; the fast ones wait in the queue.
    sink.wait_until(WAIT, "both slow calls", |h| {
        h.iter()
            .filter(|x| x.path.starts_with("/lines/slow"))
            .count()
            == 2
    })
    .await;
    let status = svc.terminate(WAIT);
    assert!(status.success(), "{status:?}\n{}", svc.stderr());
    // Intake is closed.
    assert!(post_order(&http, svc.url(), "late", "late", &["x"])
        .await
        .is_err());
    let log = svc.stderr();
    assert_eq!(
        log.matches("left queued for the next start").count(),
        2,
        "{log}"
    );

    // Nothing is left running: the interrupted and the waiting runs are queued.
    {
        let db = open_db(dir.path());
        let running = db
            .list(ExecutionFilter {
                status: Some(Status::Running),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(running.is_empty(), "{running:#?}");
        for id in &acked {
            let e = db.get(id).await.unwrap().unwrap();
            assert_eq!(e.status, Status::Queued, "{e:#?}");
        }
    }

    sink.open_gate();
    let svc = serve(dir.path(), &env, &[]);
    for id in &acked {
        wait_status(&http, &svc, id, "succeeded").await;
    }
    let per_key = per_key(&sink);
    for id in &acked[..2] {
        // In flight at the deadline: sent again after the restart.
        assert_eq!(per_key[&format!("{id}/send[0]")], 2);
        assert_eq!(per_key[&format!("{id}/send[1]")], 1);
    }
    for id in &acked[2..] {
        assert_eq!(per_key[&format!("{id}/send[0]")], 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_leave_the_process_as_text() {
    // The receiver echoes the credentials it got into its error answer.
    let sink = Sink::responding(|hit, _| {
        if hit.body["line"] == json!("leak") {
            Reply {
                body: json!({ "error": format!("rejected credentials {}", hit.header("authorization").unwrap_or("")) }),
                ..Reply::status(401)
            }
        } else {
            Reply::ok()
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let mut svc = serve(dir.path(), &env_for(&sink), &[]);
    let http = client(HTTP_TIMEOUT);
    let leak = accepted(
        &post_order(&http, svc.url(), "s-1", "s1", &["leak"])
            .await
            .unwrap(),
    );
    let failed = wait_status(&http, &svc, &leak, "failed").await;
    // The secret went through the error path, masked.
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("rejected credentials Bearer ***"),
        "{failed:#}"
    );
    assert!(sink
        .requests()
        .iter()
        .any(|h| h.header("authorization") == Some(format!("Bearer {TOKEN}").as_str())));
    // Nothing stored for this run carries it either (errors are masked
    // before they are written).
    let mut stored = Vec::new();
    for f in ["orders_relay.db", "orders_relay.db-wal"] {
        if let Ok(mut file) = std::fs::File::open(dir.path().join(f)) {
            file.read_to_end(&mut stored).unwrap();
        }
    }
    assert!(!stored.is_empty());
    assert!(
        !stored.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
        "the token is in the database file"
    );

    // An event carrying a secret value: stored as received (replay needs
    // it), shown masked.
    let carrier = accepted(
        &post_order(&http, svc.url(), &format!("s-2 {ADMIN}"), "s2", &[TOKEN])
            .await
            .unwrap(),
    );
    let shown = wait_status(&http, &svc, &carrier, "succeeded").await;
    assert_eq!(
        shown["trigger"]["body"]["lines"],
        json!(["***"]),
        "{shown:#}"
    );

    let mut texts = vec![
        failed.to_string(),
        shown.to_string(),
        admin_get(&http, &svc, "/_flow/executions")
            .await
            .to_string(),
        admin_get(&http, &svc, "/_flow/executions?status=failed")
            .await
            .to_string(),
        admin_get(&http, &svc, "/_flow/flows").await.to_string(),
    ];
    let (_, out, err) = cli(dir.path(), &["executions", "--url", svc.url()], ADMIN);
    texts.push(out + &err);
    let (code, out, err) = cli(
        dir.path(),
        &["replay", &leak, "--url", svc.url()],
        "wrong-token",
    );
    assert_eq!(code, 1);
    texts.push(out + &err);
    let (_, out, err) = cli(dir.path(), &["check-config"], ADMIN);
    texts.push(out + &err);
    assert!(svc.terminate(WAIT).success());
    let log = svc.stderr();
    assert!(log.contains("rejected credentials Bearer ***"), "{log}");
    texts.push(log);
    for text in &texts {
        for secret in [TOKEN, ADMIN] {
            assert!(!text.contains(secret), "{secret} leaked in:\n{text}");
        }
    }
}
