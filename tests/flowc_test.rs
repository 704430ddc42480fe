//! `flowc test`: every example's test blocks pass; a file whose tests fail
//! exits 1 and shows the expected against the actual; `--filter`; a file
//! without tests passes.

mod support;

use std::process::{Command, Output};

use support::{cache_dir, workspace};

fn flowc_test(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flowc"))
        .arg("test")
        .args(args)
        .current_dir(workspace())
        .env("FLOWC_CACHE_DIR", cache_dir())
        .output()
        .unwrap_or_else(|e| panic!("cannot run flowc: {e}"))
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The closing `N passed, M failed` lines.
fn tallies(stdout: &str) -> Vec<(usize, usize)> {
    stdout
        .lines()
        .filter_map(|l| {
            let (p, f) = l.split_once(" passed, ")?;
            Some((p.parse().ok()?, f.strip_suffix(" failed")?.parse().ok()?))
        })
        .collect()
}

#[test]
fn every_example_has_tests_and_they_pass() {
    let mut examples: Vec<String> = std::fs::read_dir(workspace().join("examples"))
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            name.ends_with(".flow").then(|| format!("examples/{name}"))
        })
        .collect();
    examples.sort();
    let args: Vec<&str> = examples.iter().map(String::as_str).collect();
    let out = flowc_test(&args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let tallies = tallies(&stdout);
    assert_eq!(tallies.len(), examples.len(), "{stdout}");
    for (passed, failed) in tallies {
        assert!(passed >= 1 && failed == 0, "{stdout}");
    }
}

#[test]
fn failing_expectations_exit_1_and_show_expected_and_actual() {
    let out = flowc_test(&["tests/flows/failing_tests.flow"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    for line in [
        "test the message is sent ... ok",
        "test a wrong expectation fails ... FAILED",
        "  expect http POST http://api.test/messages with json {\"text\":\"hello\"}",
        "    expected: POST http://api.test/messages  json {\"text\":\"hello\"}",
        "    actual:   POST http://api.test/messages  json {\"text\":\"hi\",\"to\":\"ops\"}",
        "  expect status failed",
        "    expected: failed",
        "    actual:   succeeded",
        "    actual:   failed (step send: no mock for POST http://api.test/messages (this test mocks no HTTP calls))",
        "  config entry `api_url` has no default: give it a value in the test's `config { api_url: ... }`",
        "  expect http POST http://api.test/messages with headers {authorization}",
        "1 passed, 4 failed",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "missing line {line:?} in:\n{stdout}"
        );
    }
    // Expected headers are named, never shown: they are often credentials.
    for secret in ["not-the-token", "token-in-the-test"] {
        assert!(!stdout.contains(secret), "{secret} shown in:\n{stdout}");
    }
}

#[test]
fn the_tests_of_new_projects_pass() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for pattern in ["webhook", "schedule", "sync", "files"] {
        let name = format!("new_{pattern}");
        let made = Command::new(env!("CARGO_BIN_EXE_flowc"))
            .args(["new", &name, "--pattern", pattern])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(made.status.success(), "{}", text(&made).1);
        files.push(dir.path().join(&name).join(format!("{name}.flow")));
    }
    let args: Vec<&str> = files.iter().map(|f| f.to_str().unwrap()).collect();
    let out = flowc_test(&args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let tallies = tallies(&stdout);
    assert_eq!(tallies.len(), 4, "{stdout}");
    assert!(tallies.iter().all(|(p, f)| *p >= 1 && *f == 0), "{stdout}");
}

#[test]
fn filter_runs_only_matching_tests() {
    let out = flowc_test(&[
        "tests/flows/failing_tests.flow",
        "--filter",
        "message is sent",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(tallies(&stdout), [(1, 0)], "{stdout}");
    assert!(!stdout.contains("FAILED"), "{stdout}");
}

#[test]
fn a_file_without_tests_passes() {
    let out = flowc_test(&["tests/flows/ticker.flow"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("no test blocks"), "{stderr}");
}
