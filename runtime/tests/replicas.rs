//! Several replicas of one binary (`examples/replicated.rs`) on one
//! PostgreSQL database (`FLOW_TEST_POSTGRES_URL`; each test on a schema of
//! its own), as real processes: webhooks spread across replicas run once
//! each, schedule ticks run once, a replica killed mid-run has its run
//! finished by another, a replica stopped past its lease cannot write its
//! stale result, and a delivery repeated to another replica is deduplicated.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::response::IntoResponse as _;
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::watch;

mod pg_support;

const ADMIN: &str = "replicas-admin-token";
/// Leases are short here so take-overs happen within a test.
const LEASE: &str = "2s";
const LEASE_DURATION: Duration = Duration::from_secs(2);
/// Bound of every wait.
const WAIT: Duration = Duration::from_secs(30);

/// The example binary, built once per test run in the tests' profile.
fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>");
        let target_dir = profile_dir.parent().expect("target dir");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev".to_string(),
            Some(other) => other.to_string(),
        };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args(["build", "--quiet", "-p", "flow_runtime"])
            .args(["--example", "replicated", "--profile", &profile])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("run cargo");
        assert!(
            out.status.success(),
            "cannot build the example: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bin = profile_dir
            .join("examples")
            .join(format!("replicated{}", std::env::consts::EXE_SUFFIX));
        assert!(bin.exists(), "{} is missing", bin.display());
        bin
    })
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
        let mut cmd = Command::new(binary());
        cmd.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        cmd.env("RUST_LOG", "info")
            .env("SINK_URL", self.sink.url())
            .env("REPLICA", name)
            .env("FLOW_STORE", &self.url)
            .env("FLOW_STORE_SCHEMA", &self.schema)
            .env("FLOW_ADMIN_TOKEN", ADMIN)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .args(["serve", "--addr", "127.0.0.1:0", "--workers", "4"])
            .args(["--lease", LEASE]);
        let mut child = cmd.spawn().expect("start a replica");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut replica = Replica {
            name: name.to_string(),
            child: Some(child),
            url: String::new(),
            log,
        };
        let deadline = Instant::now() + WAIT;
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("listening on ") {
                        replica.url = url.trim().to_string();
                        return replica;
                    }
                }
                Err(_) => panic!("replica {name} did not get ready:\n{}", replica.log()),
            }
        }
    }

    async fn done(self) {
        pg_support::drop_schema(&self.url, &self.schema).await;
    }
}

/// A running replica (killed when dropped).
struct Replica {
    name: String,
    child: Option<Child>,
    url: String,
    log: Arc<Mutex<String>>,
}

impl Replica {
    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn pid(&self) -> String {
        self.child.as_ref().expect("running").id().to_string()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid()])
            .status()
            .expect("kill");
        assert!(ok.success(), "kill {sig} {}", self.name);
    }

    /// SIGKILL: no chance to clean up or give its runs back.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL");
            let _ = c.wait();
        }
    }

    /// Waits (bounded) until the log contains `text`.
    async fn wait_log(&self, text: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.log().contains(text) {
            assert!(
                Instant::now() < deadline,
                "replica {} never logged {text:?}:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // A stopped process must be continued to die promptly.
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- replica {} log ---\n{}", self.name, self.log());
        }
    }
}

/// One request the sink received.
#[derive(Debug, Clone)]
struct Hit {
    at: Instant,
    path: String,
    body: Value,
}

/// The receiving service: records every request on arrival; the first
/// request to a path in `hold` waits for [`Sink::open_gate`].
#[derive(Clone)]
struct Sink {
    addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
    count: watch::Sender<usize>,
    gate: watch::Sender<bool>,
}

impl Sink {
    async fn start(hold: &[&str]) -> Sink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink = Sink {
            addr: listener.local_addr().unwrap(),
            hits: Arc::default(),
            count: watch::channel(0).0,
            gate: watch::channel(false).0,
        };
        let hold: Vec<String> = hold.iter().map(|p| p.to_string()).collect();
        let s = sink.clone();
        let app = Router::new().fallback(move |req: Request| {
            let s = s.clone();
            let hold = hold.clone();
            async move {
                let path = req.uri().path().to_string();
                let bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
                    .await
                    .unwrap_or_default();
                let first = {
                    let mut hits = s.hits.lock().unwrap();
                    let first = !hits.iter().any(|h| h.path == path);
                    hits.push(Hit {
                        at: Instant::now(),
                        path: path.clone(),
                        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                    });
                    first
                };
                s.count.send_modify(|n| *n += 1);
                if first && hold.contains(&path) {
                    let mut gate = s.gate.subscribe();
                    let _ = gate.wait_for(|open| *open).await;
                }
                axum::Json(json!({})).into_response()
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        sink
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    fn at(&self, path: &str) -> Vec<Hit> {
        self.hits().into_iter().filter(|h| h.path == path).collect()
    }

    fn open_gate(&self) {
        self.gate.send_replace(true);
    }

    /// Waits (bounded) until the recorded requests satisfy `pred`.
    async fn wait_until(&self, what: &str, pred: impl Fn(&[Hit]) -> bool) {
        let mut rx = self.count.subscribe();
        let hits = self.hits.clone();
        let r = tokio::time::timeout(WAIT, rx.wait_for(|_| pred(&hits.lock().unwrap()))).await;
        assert!(
            r.is_ok(),
            "timed out waiting for {what}; the sink got {:?}",
            self.hits().iter().map(|h| &h.path).collect::<Vec<_>>()
        );
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// POSTs job `id` to a replica; returns `(status, answer)`.
async fn post_job(http: &reqwest::Client, to: &Replica, id: &str) -> (u16, Value) {
    let r = http
        .post(format!("{}/jobs", to.url))
        .header("x-job-id", id)
        .json(&json!({ "id": id }))
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST /jobs to {}: {e}", to.name));
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn execution(http: &reqwest::Client, on: &Replica, id: &str) -> Value {
    let r = http
        .get(format!("{}/_flow/executions/{id}", on.url))
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

fn replica_of(hit: &Hit) -> String {
    hit.body["replica"].as_str().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_spread_across_replicas_run_once_each_and_repeats_are_deduplicated() {
    let sink = Sink::start(&[]).await;
    let Some(cluster) = Cluster::new("webhooks_spread_across_replicas", sink).await else {
        return;
    };
    let replicas: Vec<Replica> = ["a", "b", "c"].iter().map(|n| cluster.start(n)).collect();
    let http = client();
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
        .wait_until("every job done", |hits| {
            hits.iter().filter(|h| h.path.starts_with("/done/")).count() >= JOBS
        })
        .await;
    // Exactly once each: no job's work or report reached the sink twice.
    let mut per_path: HashMap<String, usize> = HashMap::new();
    let mut by_replica: HashMap<String, usize> = HashMap::new();
    for h in cluster.sink.hits() {
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
    let sink = Sink::start(&[]).await;
    let Some(cluster) = Cluster::new("schedule_ticks_run_once_across_replicas", sink).await else {
        return;
    };
    let started = Instant::now();
    let replicas: Vec<Replica> = ["a", "b", "c"].iter().map(|n| cluster.start(n)).collect();
    // `every 2s` for about 20 s: each tick reaches the sink once.
    const TICKS: usize = 10;
    cluster
        .sink
        .wait_until("ten ticks", |hits| {
            hits.iter().filter(|h| h.path == "/tick").count() >= TICKS
        })
        .await;
    let elapsed = started.elapsed();
    let ticks = cluster.sink.at("/tick");
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
    let sink = Sink::start(&["/work/slow"]).await;
    let Some(cluster) = Cluster::new("a_replica_killed_mid_run", sink).await else {
        return;
    };
    let http = client();
    let mut a = cluster.start("a");
    let (status, answer) = post_job(&http, &a, "slow").await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["execution_id"].as_str().unwrap().to_string();
    // A is in the middle of the run (its call is held by the sink).
    cluster
        .sink
        .wait_until("a's call", |hits| {
            hits.iter().any(|h| h.path == "/work/slow")
        })
        .await;
    a.kill();
    let killed = Instant::now();
    let b = cluster.start("b");
    let _c = cluster.start("c");
    cluster
        .sink
        .wait_until("the run finished elsewhere", |hits| {
            hits.iter().any(|h| h.path == "/done/slow")
        })
        .await;
    let taken_over_in = killed.elapsed();
    // Lease expiry plus one poll, with room for a slow machine.
    assert!(
        taken_over_in < LEASE_DURATION + Duration::from_secs(8),
        "took {taken_over_in:?}"
    );
    let done = cluster.sink.at("/done/slow");
    assert_eq!(done.len(), 1, "{done:?}");
    assert_ne!(replica_of(&done[0]), "a");
    // The step in flight at the kill was repeated (at least once); nothing else.
    assert_eq!(cluster.sink.at("/work/slow").len(), 2);
    let e = wait_status(&http, &b, &id, "succeeded").await;
    assert_eq!(e["attempts"], json!(2));
    assert!(done[0].at > killed);
    cluster.sink.open_gate();
    drop(b);
    cluster.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_past_its_lease_cannot_write_its_stale_result() {
    let sink = Sink::start(&["/work/stall"]).await;
    let Some(cluster) = Cluster::new("a_replica_stopped_past_its_lease", sink).await else {
        return;
    };
    let http = client();
    let a = cluster.start("a");
    let (status, answer) = post_job(&http, &a, "stall").await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["execution_id"].as_str().unwrap().to_string();
    cluster
        .sink
        .wait_until("a's call", |hits| {
            hits.iter().any(|h| h.path == "/work/stall")
        })
        .await;
    // A stalls (GC pause, VM migration, partition) past its lease.
    a.signal("-STOP");
    let b = cluster.start("b");
    cluster
        .sink
        .wait_until("b finishing the run", |hits| {
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
    let done = cluster.sink.at("/done/stall");
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
        .wait_until("the next job", |hits| {
            hits.iter().any(|h| h.path == "/done/after")
        })
        .await;
    drop((a, b));
    cluster.done().await;
}
