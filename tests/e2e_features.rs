//! A binary is built with only the optional clients its code can use
//! (docs/tools.md, "Optional clients"): without one, its URLs fail for good
//! with a message naming `flowc build --with`, and `--with` adds it.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::run_binary;

/// A flow that writes to a folder from config, without `auth:`: flowc
/// compiles no SFTP client for it.
const PROGRAM: &str = r#"integration local_writer
config {
  folder: String
}
flow put {
  trigger schedule every 1h
  step w = file.write("${config.folder}/a.txt", "x")
}
"#;

fn program(dir: &Path) -> PathBuf {
    let path = dir.join("local_writer.flow");
    std::fs::write(&path, PROGRAM).unwrap();
    path
}

/// Runs the flow once with `folder`; returns the exit code and stdout.
fn run_put(binary: &Path, folder: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("tick.json");
    std::fs::write(&input, r#"{ "fired_at": "2026-11-30T06:00:00Z" }"#).unwrap();
    let done = run_binary(
        binary,
        &[("FOLDER", folder)],
        &["run", "put", "--input", input.to_str().unwrap()],
        Duration::from_secs(60),
    );
    (done.code, format!("{}\n{}", done.stdout, done.stderr))
}

#[test]
fn without_the_sftp_feature_an_sftp_url_fails_naming_the_option() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let binary = support::build_into(program(src.path()), out.path());

    let local = tempfile::tempdir().unwrap();
    let (code, output) = run_put(&binary, local.path().to_str().unwrap());
    assert_eq!(code, Some(0), "{output}");
    assert!(local.path().join("a.txt").is_file());

    let (code, output) = run_put(&binary, "sftp://u@127.0.0.1:1/tmp");
    assert_eq!(code, Some(1), "{output}");
    assert!(
        output.contains("this binary was built without SFTP support")
            && output.contains("flowc build --with sftp"),
        "{output}"
    );
}

/// The same featureless binary has no PostgreSQL client: `--store
/// postgres://` (or `FLOW_STORE`) is refused before anything runs, exit 2,
/// naming the option (and never the URL's password).
#[test]
fn without_the_postgres_feature_a_postgres_store_is_refused_naming_the_option() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let binary = support::build_into(program(src.path()), out.path());
    let url = "postgres://app:s3cret@127.0.0.1:1/flow";
    let local = tempfile::tempdir().unwrap();
    let folder = local.path().to_str().unwrap();
    let input = local.path().join("tick.json");
    std::fs::write(&input, r#"{ "fired_at": "2026-11-30T06:00:00Z" }"#).unwrap();
    let input = input.to_str().unwrap();
    let by_flag = run_binary(
        &binary,
        &[("FOLDER", folder)],
        &["run", "put", "--input", input, "--store", url],
        Duration::from_secs(60),
    );
    let by_env = run_binary(
        &binary,
        &[("FOLDER", folder), ("FLOW_STORE", url)],
        &["serve", "--addr", "127.0.0.1:0"],
        Duration::from_secs(60),
    );
    for done in [by_flag, by_env] {
        let output = format!("{}\n{}", done.stdout, done.stderr);
        assert_eq!(done.code, Some(2), "{output}");
        assert!(
            output.contains(
                "this binary was built without PostgreSQL support (--store postgres://); \
                 rebuild it with `flowc build --with postgres`"
            ),
            "{output}"
        );
        assert!(!output.contains("s3cret"), "{output}");
    }
    assert!(!local.path().join("a.txt").exists());
}

/// `--with sftp,otel`: the SFTP client, and the OTLP exporter, which no
/// code ever shows a need for (one build for both keeps the tests' cold
/// builds few).
#[test]
fn with_adds_a_client_the_code_does_not_show() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let built = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(["build", "--debug", "--with", "sftp,otel", "-o"])
        .arg(out.path())
        .arg(program(src.path()))
        .env("FLOWC_CACHE_DIR", support::cache_dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&built.stderr);
    assert!(built.status.success(), "{stderr}");
    let (code, output) = run_put(&out.path().join("local_writer"), "sftp://u@127.0.0.1:1/tmp");
    // The client is there: the URL gets as far as the missing `auth:`.
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains("needs `auth:`"), "{output}");
    assert!(!output.contains("built without SFTP support"), "{output}");

    // The exporter is there: the run's span reaches the collector (sent
    // at exit), and no warning asks for a rebuild.
    let collector = support::Sink::start();
    let local = tempfile::tempdir().unwrap();
    let input = local.path().join("tick.json");
    std::fs::write(&input, r#"{ "fired_at": "2026-11-30T06:00:00Z" }"#).unwrap();
    let done = run_binary(
        &out.path().join("local_writer"),
        &[
            ("FOLDER", local.path().to_str().unwrap()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url()),
        ],
        &["run", "put", "--input", input.to_str().unwrap()],
        Duration::from_secs(60),
    );
    let output = format!("{}\n{}", done.stdout, done.stderr);
    assert_eq!(done.code, Some(0), "{output}");
    assert!(!output.contains("--with otel"), "{output}");
    let exported = collector.requests_to("POST", "/v1/traces");
    assert!(!exported.is_empty(), "no trace exported: {output}");
    assert_eq!(
        exported[0].header("content-type"),
        Some("application/x-protobuf")
    );
}

#[test]
fn with_refuses_unknown_names() {
    let src = tempfile::tempdir().unwrap();
    let built = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(["build", "--with", "sftp,ldap"])
        .arg(program(src.path()))
        .env("FLOWC_CACHE_DIR", support::cache_dir())
        .output()
        .unwrap();
    assert_eq!(built.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&built.stderr);
    assert!(
        stderr.contains("ldap") && stderr.contains("sftp"),
        "{stderr}"
    );
}
