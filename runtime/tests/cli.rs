//! The command line of a generated binary, run as a real process: the
//! example `inventory_sync` (built by `cargo test` along with the tests).

mod common;

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use flow_testkit::Sink;
use serde_json::Value;

fn binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?.parent()?;
    let bin = dir
        .join("examples")
        .join(format!("inventory_sync{}", std::env::consts::EXE_SUFFIX));
    bin.exists().then_some(bin)
}

/// The example binary with a clean environment (only PATH and the given vars).
fn command(env: &[(&str, &str)]) -> Option<Command> {
    let Some(bin) = binary() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "the example binary inventory_sync is not built"
        );
        eprintln!("skipped: the example binary is not built (run `cargo test -p flow_runtime` without --test)");
        return None;
    };
    let mut cmd = Command::new(bin);
    cmd.env_clear();
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    Some(cmd)
}

const ENV: [(&str, &str); 3] = [
    ("ERP_URL", "http://127.0.0.1:9/"),
    ("ERP_TOKEN", "erp-token-cli"),
    ("WEBHOOK_SECRET", "whsec-cli-1"),
];

#[test]
fn version_and_help() {
    let Some(mut cmd) = command(&[]) else { return };
    let out = cmd.arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "inventory_sync 3f2a9c1b4d5e (flowc 0.1.0, source sha256:3f2a9c1b4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8)"
    );
    let Some(mut cmd) = command(&[]) else { return };
    let out = cmd.arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "Keeps the ERP's stock levels in step with the inventory app.",
        "stock_changed  (webhook POST /inventory)",
        "One webhook call carries several updates; each becomes one ERP call.",
        "heartbeat  (schedule every 300ms)",
        "GET /stock/{item}  -> get_stock",
        "ERP_URL  erp_url: Url (required)",
        "Base URL of the ERP's REST API.",
        "PUBLIC_URL  public_url: Url (default \"http://localhost:8080\")",
        "serve",
        "check-config",
    ] {
        assert!(help.contains(needle), "missing {needle:?} in:\n{help}");
    }
}

#[test]
fn check_config_names_every_missing_entry_and_exits_2() {
    let Some(mut cmd) = command(&[("WEBHOOK_SECRET", "whsec-cli-2"), ("PUBLIC_URL", "nope")])
    else {
        return;
    };
    let out = cmd.arg("check-config").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid configuration (3 problems)"), "{err}");
    assert!(err.contains("erp_url (Url): missing"), "{err}");
    assert!(err.contains("erp_token (Secret): missing"), "{err}");
    assert!(
        err.contains("public_url (Url): environment variable PUBLIC_URL=\"nope\" is not valid"),
        "{err}"
    );

    let Some(mut cmd) = command(&ENV) else { return };
    let out = cmd.arg("check-config").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("erp_token = ***"), "{text}");
    assert!(!text.contains("erp-token-cli"), "{text}");
}

#[test]
fn run_one_flow_in_the_foreground() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.json");
    std::fs::write(&input, r#"{"input": {"count": 0}}"#).unwrap();
    let Some(mut cmd) = command(&ENV) else { return };
    let out = cmd
        .args(["run", "audit", "--input"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outcome: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(outcome["status"], "skipped");
    assert_eq!(outcome["result"]["skipped"], "empty delivery");

    // A failing run exits 1 (the ERP at port 9 is unreachable), without
    // printing the token.
    std::fs::write(&input, r#"{"input": {"count": 1}}"#).unwrap();
    let Some(mut cmd) = command(&ENV) else { return };
    let out = cmd
        .args(["run", "audit", "--input"])
        .arg(&input)
        .env("RUST_LOG", "off")
        .output();
    let out = out.unwrap();
    // StepOptions::default() retries 3 times with 1s..; bounded by the test runner.
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outcome: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(outcome["status"], "failed");
    assert_eq!(outcome["error_step"], "log");

    let Some(mut cmd) = command(&ENV) else { return };
    let out = cmd.args(["run", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn store_options_are_checked_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut cmd) = command(&ENV) else { return };
    let out = cmd
        .current_dir(dir.path())
        .args([
            "--store",
            "mongodb://nope",
            "serve",
            "--addr",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unsupported --store") && err.contains("use `sqlite://PATH`"),
        "{err}"
    );

    let Some(mut cmd) = command(&ENV) else { return };
    let out = cmd
        .current_dir(dir.path())
        .args(["--store", "sqlite://no/such/dir/x.db", "deploy"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot open the store") && err.contains("does not exist"),
        "{err}"
    );

    let Some(mut cmd) = command(&ENV) else { return };
    let out = cmd
        .current_dir(dir.path())
        .args(["--durability", "sometimes", "serve"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing created"
    );
}

#[test]
fn callbacks_need_a_secret_and_valid_hosts() {
    let dir = tempfile::tempdir().unwrap();
    for (hosts, secret) in [
        ("hooks.example.com", None),
        ("hooks.example.com", Some("")),
        ("bad host", Some("cb-secret-cli")),
    ] {
        let mut env = ENV.to_vec();
        env.push(("FLOW_CALLBACK_HOSTS", hosts));
        if let Some(secret) = secret {
            env.push(("FLOW_CALLBACK_SECRET", secret));
        }
        let Some(mut cmd) = command(&env) else { return };
        let out = cmd
            .current_dir(dir.path())
            .args(["serve", "--addr", "127.0.0.1:0"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{hosts} {secret:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        let named = if secret.is_some_and(|s| !s.is_empty()) {
            "callback host \"bad host\""
        } else {
            "FLOW_CALLBACK_SECRET"
        };
        assert!(err.contains(named), "{err}");
    }
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing created"
    );
}

/// Kills the server process if the test fails before stopping it.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test]
async fn serve_prints_its_address_and_stops_on_sigterm() {
    let sink = Sink::start();
    let url = sink.url().to_string();
    let env = [
        ("ERP_URL", url.as_str()),
        ("ERP_TOKEN", "erp-token-cli"),
        ("WEBHOOK_SECRET", "whsec-cli-3"),
        ("FLOW_ADMIN_TOKEN", "admin-cli"),
    ];
    let Some(mut cmd) = command(&env) else { return };
    // `serve` keeps its store in ./inventory_sync.db: a fresh directory.
    let dir = tempfile::tempdir().unwrap();
    let mut guard = KillOnDrop(Some(
        cmd.current_dir(dir.path())
            .args(["--log-format", "json", "serve", "--addr", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let child = guard.0.as_mut().unwrap();
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(common::WAIT)
        .expect("no `listening on` line");
    let base = line.strip_prefix("listening on ").expect(&line).to_string();

    let health = reqwest::get(format!("{base}/_flow/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    // The deploy flow registered the webhook with the (local) ERP.
    sink.wait_until(common::WAIT, "the deploy registration", |r| {
        r.iter().any(|x| x.path == "/webhooks")
    })
    .await;
    // The step's call reached the sink; the run records its success just
    // after: wait for that (bounded), or the listing below races it.
    let listing_url = format!("{base}/_flow/executions?flow=register");
    flow_testkit::poll_until(common::WAIT, "the register run to succeed", || async {
        let list = reqwest::Client::new()
            .get(&listing_url)
            .bearer_auth("admin-cli")
            .send()
            .await
            .unwrap();
        assert_eq!(list.status(), 200);
        let body = list.text().await.unwrap();
        body.contains("\"succeeded\"").then_some(())
    })
    .await;

    // `executions` and `replay` talk to the running server's admin API.
    let Some(mut cmd) = command(&[("FLOW_ADMIN_TOKEN", "admin-cli")]) else {
        return;
    };
    let out = cmd
        .args(["executions", "--flow", "register", "--url", &base])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        listing.contains("register") && listing.contains("succeeded"),
        "{listing}"
    );
    let id = listing.split_whitespace().next().unwrap().to_string();
    let Some(mut cmd) = command(&[("FLOW_ADMIN_TOKEN", "admin-cli")]) else {
        return;
    };
    let out = cmd.args(["replay", &id, "--url", &base]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));
    let Some(mut cmd) = command(&[]) else { return };
    let out = cmd.args(["executions", "--url", &base]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "no token");

    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (done_tx, done_rx) = mpsc::channel();
    let mut child = guard.0.take().unwrap();
    std::thread::spawn(move || {
        let status = child.wait();
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
        }
        let _ = done_tx.send((status, stderr));
    });
    let (status, stderr) = done_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("did not stop on SIGTERM");
    assert!(status.unwrap().success(), "{stderr}");
    // The default store is a file in the working directory.
    assert!(dir.path().join("inventory_sync.db").exists());
    // JSON logs carry the run's execution id and flow, and no secrets.
    let run_line = stderr
        .lines()
        .find(|l| l.contains("\"run succeeded\"") && l.contains("register"))
        .unwrap_or_else(|| panic!("no run log line in:\n{stderr}"));
    let v: Value = serde_json::from_str(run_line).unwrap();
    assert!(
        v["span"]["execution_id"].is_string() || v["spans"][0]["execution_id"].is_string(),
        "{run_line}"
    );
    assert!(!stderr.contains("erp-token-cli"));
    assert!(!stderr.contains("admin-cli\""));
}
