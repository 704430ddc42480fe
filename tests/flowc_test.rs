//! `flowc test`: every example's test blocks pass; a file whose tests fail
//! exits 1 and shows the expected against the actual; `--filter`; a file
//! without tests passes; a test runs as an instance with its TOML file.

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
fn a_test_runs_as_an_instance_with_its_file() {
    let out = flowc_test(&["tests/flows/instance_tests.flow"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    for line in [
        // The file's URL, `batch = "25"` read as an Int, the endpoint
        // under /i/acme; the test's config over the file; no file.
        "test acme's contacts reach acme's CRM ... ok",
        "test the test's config wins over the file ... ok",
        "test an instance without a file has the test's config ... ok",
        "test the deploy flow registers the instance's endpoint ... ok",
        // Wrong on purpose: the call goes to the file's CRM, and the
        // endpoint is the instance's.
        "test the file's CRM is called, not another ... FAILED",
        "    expected: POST https://globex.example/contacts",
        "test the endpoint is the instance's ... FAILED",
        "    expected: POST https://acme.example/contacts  json {\"callback\":\"https://flows.example/contacts\"}",
        "4 passed, 2 failed",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "missing line {line:?} in:\n{stdout}"
        );
    }
    let actual = "    actual:   POST https://acme.example/contacts  json \
                  {\"batch\":25,\"callback\":\"https://flows.example/i/acme/contacts\",\
                  \"email\":\"ada@acme.example\",\"name\":\"Ada\"}";
    assert_eq!(
        stdout.lines().filter(|l| *l == actual).count(),
        2,
        "{actual:?} twice in:\n{stdout}"
    );
    // The file's secret is redacted like any config secret.
    assert!(!stdout.contains("acme-token"), "{stdout}");
}

#[test]
fn an_instance_file_is_checked_before_building() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("customers")).unwrap();
    std::fs::write(
        dir.path().join("customers/acme.toml"),
        "api_url = \"https://acme.example\"\nretries = \"three\"\n",
    )
    .unwrap();
    let flow = dir.path().join("relay.flow");
    std::fs::write(
        &flow,
        "integration relay\n\nconfig {\n  api_url: Url\n  retries: Int = 1\n}\n\n\
         flow relay {\n  trigger webhook POST \"/x\" {\n    auth: none\n  }\n\n  \
         step send = http.post(\"${config.api_url}/x?n=${config.retries}\", json: trigger.body)\n}\n\n\
         test \"acme\" {\n  instance \"acme\" from \"customers/acme.toml\"\n  \
         run relay with { body: {} }\n}\n",
    )
    .unwrap();
    let out = flowc_test(&[flow.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("customers/acme.toml:2: `retries` is not a valid Int"),
        "{stderr}"
    );
    assert!(!stderr.contains("Compiling"), "{stderr}");
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
