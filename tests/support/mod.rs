//! Shared by the end-to-end tests (`mod support;` in each `tests/e2e_*.rs`):
//! building `.flow` files with the real `flowc` and reading the admin API
//! of the generated binaries. Running them, the sink, the HTTP helpers,
//! the service URLs and bounded polling come from `flow_testkit` (shared
//! with the runtime's tests) and are re-exported here.
//!
//! Nothing here sleeps for a fixed time to synchronise: readiness is read
//! from the binary's `listening on` line and every wait polls a condition
//! with a deadline.

// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use flow_testkit::build_once;
use serde_json::Value;

// Re-exported for the test files, each of which uses a different part.
#[allow(unused_imports)]
pub use flow_testkit::{
    get, hmac_hex, hmac_sha256, poll_until, post_json, post_raw, request, run_binary,
    run_binary_in, service_url, wait_until, Answer, Finished, Received, Reply, Service, Sink,
    START_TIMEOUT,
};

pub mod smtp;

/// The flowc workspace (root of the repository).
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// flowc's cache for the tests: `$FLOWC_CACHE_DIR` if set, else
/// `<workspace>/target/flowc-cache`, so the runtime compiles once per test
/// run and stays compiled across runs.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("FLOWC_CACHE_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace().join("target").join("flowc-cache"),
    }
}

/// Where this test file puts the binaries it builds:
/// `target/tmp/flowc-e2e/<test file>/`. Each test file has its own, so
/// test files never overwrite each other's binaries.
fn out_root() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("flowc-e2e")
        .join(env!("CARGO_CRATE_NAME"))
}

/// Builds `flow` (a path relative to the workspace, or absolute) with
/// `flowc build --debug -o OUT_DIR` and returns the binary. Panics with
/// flowc's output when the build fails.
pub fn build_into(flow: impl AsRef<Path>, out_dir: &Path) -> PathBuf {
    build_into_with(flow, out_dir, &[])
}

/// [`build_into`] with `--with FEATURES` (none: no `--with`), e.g.
/// `["postgres"]` for a binary run with `--store postgres://`. Each set of
/// features is a runtime compile of its own: keep the sets few.
pub fn build_into_with(flow: impl AsRef<Path>, out_dir: &Path, with: &[&str]) -> PathBuf {
    let flow = workspace().join(flow.as_ref());
    let started = Instant::now();
    let mut command = Command::new(env!("CARGO_BIN_EXE_flowc"));
    command.arg("build").arg("--debug");
    if !with.is_empty() {
        command.arg("--with").arg(with.join(","));
    }
    let output = command
        .arg("-o")
        .arg(out_dir)
        .arg(&flow)
        .env("FLOWC_CACHE_DIR", cache_dir())
        .output()
        .unwrap_or_else(|e| panic!("cannot run flowc: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "flowc build {} failed ({}):\n{stderr}",
        flow.display(),
        output.status
    );
    // flowc names the installed binary on its last line: `Binary PATH`.
    let binary = stderr
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Binary "))
        .next_back()
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("flowc did not name the binary it built:\n{stderr}"));
    assert!(binary.is_file(), "{} is not a file", binary.display());
    eprintln!(
        "built {} in {:.1}s",
        flow.display(),
        started.elapsed().as_secs_f64()
    );
    binary
}

/// Builds `flow` once per test file (later calls, from any test of the
/// file, wait for and reuse the first build) into
/// `target/tmp/flowc-e2e/<test file>/<flow file stem>/`.
pub fn build_example(flow: impl AsRef<Path>) -> PathBuf {
    build_example_with(flow, &[])
}

/// [`build_example`] with `flowc build --with FEATURES`: once per test
/// file and set of features, into
/// `target/tmp/flowc-e2e/<test file>/<flow file stem>+<features>/` (no
/// suffix without features).
pub fn build_example_with(flow: impl AsRef<Path>, with: &[&str]) -> PathBuf {
    let flow = flow.as_ref();
    let suffix: String = with.iter().map(|f| format!("+{f}")).collect();
    build_once(&format!("flowc build {}{suffix}", flow.display()), || {
        let stem = flow
            .file_stem()
            .map_or_else(|| "flow".into(), |s| s.to_string_lossy().into_owned());
        build_into_with(flow, &out_root().join(format!("{stem}{suffix}")), with)
    })
}

// ---------------------------------------------------------------------------
// The admin API of a generated binary
// ---------------------------------------------------------------------------

/// `GET /_flow/executions/{id}` with the admin token: `(status, JSON)`.
pub async fn admin_execution(url: &str, id: &str, token: &str) -> (u16, Value) {
    let bearer = format!("Bearer {token}");
    let a = get(
        &format!("{url}/_flow/executions/{id}"),
        &[("Authorization", &bearer)],
    )
    .await;
    (a.status, a.body)
}

/// `GET /_flow/executions?{query}` with the admin token: the listed
/// executions (the test fails unless the answer is 200).
pub async fn admin_executions(svc: &Service, query: &str, token: &str) -> Vec<Value> {
    let bearer = format!("Bearer {token}");
    let a = get(
        &svc.at(&format!("/_flow/executions?{query}")),
        &[("Authorization", &bearer)],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["executions"].as_array().cloned().unwrap_or_default()
}

/// Polls the admin API until execution `id` has ended (succeeded, failed
/// or skipped) and returns it; fails the test after `timeout`.
pub async fn wait_execution(url: &str, id: &str, token: &str, timeout: Duration) -> Value {
    let what = format!("execution {id} to end");
    poll_until(timeout, &what, || async {
        let (status, exec) = admin_execution(url, id, token).await;
        assert_eq!(status, 200, "admin API: {exec}");
        matches!(
            exec["status"].as_str(),
            Some("succeeded" | "failed" | "skipped")
        )
        .then_some(exec)
    })
    .await
}
