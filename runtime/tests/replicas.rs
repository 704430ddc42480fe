//! Several replicas of one binary (`examples/replicated.rs`) on one
//! PostgreSQL database (`FLOW_TEST_POSTGRES_URL`; each test on a schema of
//! its own), as real processes: webhooks spread across replicas run once
//! each, schedule ticks run once, a replica killed mid-run has its run
//! finished by another, a replica stopped past its lease cannot write its
//! stale result, and a delivery repeated to another replica is deduplicated.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use flow_testkit::{client, example_binary, wait_until, Received, Reply, Service, Sink};
use serde_json::{json, Value};

mod pg_support;

const ADMIN: &str = "replicas-admin-token";
/// Leases are short here so take-overs happen within a test.
const LEASE: &str = "2s";
const LEASE_DURATION: Duration = Duration::from_secs(2);
/// Bound of every wait.
const WAIT: Duration = Duration::from_secs(30);
/// Upper bound of one request to a replica.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The example binary, built once per test run in the tests' profile.
fn binary() -> PathBuf {
    example_binary("flow_runtime", "replicated")
}

/// One database schema shared by the replicas of a test.
struct Cluster {
    url: String,
    schema: String,
    sink: Sink,
    dir: tempfile::TempDir,
}

impl Cluster {
    async fn new(test: &str, sink: Sink) -> Option<Cluster> {
        let url = pg_support::url(test)?;
        Some(Cluster {
            url,
            schema: pg_support::schema_name(),
            sink,
            dir: tempfile::tempdir().unwrap(),
        })
    }

    /// Starts replica `name`; returns once it listens.
    fn start(&self, name: &str) -> Replica {
        let env = [
            ("RUST_LOG", "info"),
            ("SINK_URL", self.sink.url()),
            ("REPLICA", name),
            ("FLOW_STORE", &self.url),
            ("FLOW_STORE_SCHEMA", &self.schema),
            ("FLOW_ADMIN_TOKEN", ADMIN),
        ];
        let args = ["--workers", "4", "--lease", LEASE];
        Replica {
            name: name.to_string(),
            service: Service::start_in(self.dir.path(), &binary(), &env, &args),
        }
    }

    async fn done(self) {
        pg_support::drop_schema(&self.url, &self.schema).await;
    }
}

/// A running replica (killed when dropped, also when stopped: SIGKILL
/// ends a stopped process too).
struct Replica {
    name: String,
    service: Service,
}

impl Replica {
    fn url(&self) -> &str {
        self.service.url()
    }

    /// Sends `sig` (`-STOP`, `-CONT`, ...).
    fn signal(&self, sig: &str) {
        self.service.signal(sig);
    }

    /// SIGKILL: no chance to clean up or give its runs back.
    fn kill(&mut self) {
        self.service.kill();
    }

    /// Waits (bounded) until the log contains `text`.
    async fn wait_log(&self, text: &str) {
        let what = format!("replica {} to log {text:?}", self.name);
        wait_until(WAIT, &what, || self.service.stderr().contains(text)).await;
    }
}

/// The receiving service: records every request on arrival; the first
/// request to a path in `hold` waits for [`Sink::open_gate`].
fn sink_holding_first(hold: &[&str]) -> Sink {
    let hold: Vec<String> = hold.iter().map(|p| p.to_string()).collect();
    Sink::responding(move |request, earlier| {
        if earlier == 0 && hold.contains(&request.path) {
            Reply::ok().held()
        } else {
            Reply::ok()
        }
    })
}

/// POSTs job `id` to a replica; returns `(status, answer)`.
async fn post_job(http: &reqwest::Client, to: &Replica, id: &str) -> (u16, Value) {
    let r = http
        .post(format!("{}/jobs", to.url()))
        .header("x-job-id", id)
        .json(&json!({ "id": id }))
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST /jobs to {}: {e}", to.name));
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn execution(http: &reqwest::Client, on: &Replica, id: &str) -> Value {
    let r = http
        .get(format!("{}/_flow/executions/{id}", on.url()))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "execution {id}");
    r.json().await.unwrap()
}

/// Polls the admin API (bounded) until the execution has `status`.
async fn wait_status(http: &reqwest::Client, on: &Replica, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let e = execution(http, on, id).await;
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

fn replica_of(hit: &Received) -> String {
    hit.body["replica"].as_str().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_spread_across_replicas_run_once_each_and_repeats_are_deduplicated() {
    let sink = sink_holding_first(&[]);
    let Some(cluster) = Cluster::new("webhooks_spread_across_replicas", sink).await else {
        return;
    };
    let replicas: Vec<Replica> = ["a", "b", "c"].iter().map(|n| cluster.start(n)).collect();
    let http = client(HTTP_TIMEOUT);
    const JOBS: usize = 60;
    let mut first_ids = HashMap::new();
    for i in 0..JOBS {
        let id = format!("job-{i}");
        let (status, answer) = post_job(&http, &replicas[i % 3], &id).await;
        assert_eq!(status, 202, "{answer}");
        first_ids.insert(id, answer["execution_id"].as_str().unwrap().to_string());
    }
    // Every delivery repeated to another replica is recognised there.
    for i in (0..JOBS).step_by(3) {
        let id = format!("job-{i}");
        let (status, answer) = post_job(&http, &replicas[(i + 1) % 3], &id).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["duplicate"], json!(true));
        assert_eq!(
            answer["execution_id"].as_str(),
            Some(first_ids[&id].as_str())
        );
    }
    cluster
        .sink
        .wait_until(WAIT, "every job done", |hits| {
            hits.iter().filter(|h| h.path.starts_with("/done/")).count() >= JOBS
        })
        .await;
    // Exactly once each: no job's work or report reached the sink twice.
    let mut per_path: HashMap<String, usize> = HashMap::new();
    let mut by_replica: HashMap<String, usize> = HashMap::new();
    for h in cluster.sink.requests() {
        if h.path.starts_with("/work/") || h.path.starts_with("/done/") {
            *per_path.entry(h.path.clone()).or_default() += 1;
        }
        if h.path.starts_with("/done/") {
            *by_replica.entry(replica_of(&h)).or_default() += 1;
        }
    }
    for i in 0..JOBS {
        for kind in ["work", "done"] {
            let path = format!("/{kind}/job-{i}");
            assert_eq!(per_path.get(&path), Some(&1), "{path}: {per_path:?}");
        }
    }
    assert!(
        by_replica.len() >= 2,
        "the runs were not spread across replicas: {by_replica:?}"
    );
    let e = wait_status(&http, &replicas[2], &first_ids["job-0"], "succeeded").await;
    assert_eq!(e["attempts"], json!(1));
    drop(replicas);
    cluster.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_ticks_run_once_across_replicas() {
    let sink = sink_holding_first(&[]);
    let Some(cluster) = Cluster::new("schedule_ticks_run_once_across_replicas", sink).await else {
        return;
    };
    let started = Instant::now();
    let replicas: Vec<Replica> = ["a", "b", "c"].iter().map(|n| cluster.start(n)).collect();
    // `every 2s` for about 20 s: each tick reaches the sink once.
    const TICKS: usize = 10;
    cluster
        .sink
        .wait_until(WAIT, "ten ticks", |hits| {
            hits.iter().filter(|h| h.path == "/tick").count() >= TICKS
        })
        .await;
    let elapsed = started.elapsed();
    let ticks = cluster.sink.requests_to("*", "/tick");
    let mut fired: Vec<chrono::DateTime<chrono::Utc>> = ticks
        .iter()
        .map(|h| {
            h.body["fired_at"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .unwrap_or_else(|| panic!("fired_at in {}", h.body))
                .with_timezone(&chrono::Utc)
        })
        .collect();
    let n = fired.len();
    fired.sort();
    fired.dedup();
    assert_eq!(fired.len(), n, "a tick ran twice: {ticks:?}");
    // On the 2 s grid; a tick is skipped only when the previous run was
    // still going (a very slow machine), never run twice.
    let mut skipped = 0;
    for pair in fired.windows(2) {
        let gap = (pair[1] - pair[0]).num_milliseconds();
        assert!(gap > 0 && gap % 2000 == 0, "{fired:?}");
        skipped += gap / 2000 - 1;
    }
    assert!(skipped <= 2, "{skipped} ticks skipped: {fired:?}");
    assert!(
        n <= elapsed.as_secs() as usize / 2 + 1,
        "{n} ticks in {elapsed:?}"
    );
    let runners: std::collections::HashSet<String> = ticks.iter().map(replica_of).collect();
    assert!(!runners.is_empty());
    drop(replicas);
    cluster.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_run_has_its_run_finished_by_another() {
    let sink = sink_holding_first(&["/work/slow"]);
    let Some(cluster) = Cluster::new("a_replica_killed_mid_run", sink).await else {
        return;
    };
    let http = client(HTTP_TIMEOUT);
    let mut a = cluster.start("a");
    let (status, answer) = post_job(&http, &a, "slow").await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["execution_id"].as_str().unwrap().to_string();
    // A is in the middle of the run (its call is held by the sink).
    cluster
        .sink
        .wait_until(WAIT, "a's call", |hits| {
            hits.iter().any(|h| h.path == "/work/slow")
        })
        .await;
    a.kill();
    let killed = Instant::now();
    let b = cluster.start("b");
    let _c = cluster.start("c");
    cluster
        .sink
        .wait_until(WAIT, "the run finished elsewhere", |hits| {
            hits.iter().any(|h| h.path == "/done/slow")
        })
        .await;
    let taken_over_in = killed.elapsed();
    // Lease expiry plus one poll, with room for a slow machine.
    assert!(
        taken_over_in < LEASE_DURATION + Duration::from_secs(8),
        "took {taken_over_in:?}"
    );
    let done = cluster.sink.requests_to("*", "/done/slow");
    assert_eq!(done.len(), 1, "{done:?}");
    assert_ne!(replica_of(&done[0]), "a");
    // The step in flight at the kill was repeated (at least once); nothing else.
    assert_eq!(cluster.sink.requests_to("*", "/work/slow").len(), 2);
    let e = wait_status(&http, &b, &id, "succeeded").await;
    assert_eq!(e["attempts"], json!(2));
    assert!(done[0].at > killed);
    cluster.sink.open_gate();
    drop(b);
    cluster.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_past_its_lease_cannot_write_its_stale_result() {
    let sink = sink_holding_first(&["/work/stall"]);
    let Some(cluster) = Cluster::new("a_replica_stopped_past_its_lease", sink).await else {
        return;
    };
    let http = client(HTTP_TIMEOUT);
    let a = cluster.start("a");
    let (status, answer) = post_job(&http, &a, "stall").await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["execution_id"].as_str().unwrap().to_string();
    cluster
        .sink
        .wait_until(WAIT, "a's call", |hits| {
            hits.iter().any(|h| h.path == "/work/stall")
        })
        .await;
    // A stalls (GC pause, VM migration, partition) past its lease.
    a.signal("-STOP");
    let b = cluster.start("b");
    cluster
        .sink
        .wait_until(WAIT, "b finishing the run", |hits| {
            hits.iter().any(|h| h.path == "/done/stall")
        })
        .await;
    let e = wait_status(&http, &b, &id, "succeeded").await;
    assert_eq!(e["attempts"], json!(2));
    // A wakes up, gets the answer to its old call, and must not record it
    // nor go on to the next step.
    cluster.sink.open_gate();
    a.signal("-CONT");
    a.wait_log("lease lost").await;
    let done = cluster.sink.requests_to("*", "/done/stall");
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(replica_of(&done[0]), "b");
    let e = execution(&http, &b, &id).await;
    assert_eq!(e["status"], json!("succeeded"));
    assert_eq!(e["attempts"], json!(2));
    let keys: Vec<&str> = e["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["work", "done"]);
    // A is still serving afterwards.
    let (status, _) = post_job(&http, &a, "after").await;
    assert_eq!(status, 202);
    cluster
        .sink
        .wait_until(WAIT, "the next job", |hits| {
            hits.iter().any(|h| h.path == "/done/after")
        })
        .await;
    drop((a, b));
    cluster.done().await;
}
