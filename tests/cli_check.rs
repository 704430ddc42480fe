//! `flowc check` as editors and CI use it: exit codes and the
//! `--format json` shape; `flowc explain`.

use std::process::Command;

use serde_json::Value;

fn flowc(args: &[&str], dir: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("flowc runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn exit_codes_say_ok_errors_or_usage() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ok = dir.path().join("ok.flow");
    std::fs::write(
        &ok,
        "integration ok\nflow f {\n  trigger deploy\n  skip \"nothing\"\n}\n",
    )
    .expect("write");
    let bad = dir.path().join("bad.flow");
    std::fs::write(
        &bad,
        "integration bad\nflow f {\n  trigger deploy\n  let x = 1\n  skip \"${y}\"\n}\n",
    )
    .expect("write");
    assert_eq!(flowc(&["check", "ok.flow"], dir.path()).0, 0);
    let (code, _, stderr) = flowc(&["check", "bad.flow"], dir.path());
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("E0100") && stderr.contains("W0001"),
        "{stderr}"
    );
    assert_eq!(flowc(&["check", "missing.flow"], dir.path()).0, 2);
    assert_eq!(
        flowc(&["check"], dir.path()).0,
        2,
        "no file is a usage error"
    );
}

#[test]
fn json_format_is_one_object_per_diagnostic() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.flow");
    std::fs::write(
        &bad,
        "integration bad\nflow f {\n  trigger deploy\n  let x = 1\n  skip \"${y}\"\n}\n",
    )
    .expect("write");
    let (code, stdout, _) = flowc(&["check", "--format", "json", "bad.flow"], dir.path());
    assert_eq!(code, 1);
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is a JSON object"))
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let error = lines.iter().find(|d| d["code"] == "E0100").expect("E0100");
    let mut keys: Vec<&str> = error
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "code",
            "column",
            "end_column",
            "end_line",
            "file",
            "help",
            "line",
            "message",
            "severity"
        ]
    );
    assert_eq!(error["severity"], "error");
    assert_eq!(error["file"], "bad.flow");
    // `y` in `skip "${y}"` on line 5: 1-based line and columns.
    assert_eq!(
        (error["line"].as_u64(), error["column"].as_u64()),
        (Some(5), Some(11))
    );
    assert_eq!(
        (error["end_line"].as_u64(), error["end_column"].as_u64()),
        (Some(5), Some(12))
    );
    let warning = lines.iter().find(|d| d["code"] == "W0001").expect("W0001");
    assert_eq!(warning["severity"], "warning");
    assert!(warning["help"].is_string());
}

#[test]
fn explain_prints_the_codes_page() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, stdout, _) = flowc(&["explain", "e0404"], dir.path());
    assert_eq!(code, 0);
    assert!(stdout.starts_with("## E0404"), "{stdout}");
    assert!(
        stdout.contains("Wrong:") && stdout.contains("Fixed:"),
        "{stdout}"
    );
    assert_eq!(flowc(&["explain", "E9999"], dir.path()).0, 2);
}
