//! `flowc build`'s progress lines, with a stand-in for cargo (the `CARGO`
//! variable pointing at a script) so that no real compilation runs: one
//! line per stage with the elapsed time and cargo's output kept back; `-v`
//! shows it; a failing cargo's output is shown in full.
#![cfg(unix)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Prints a `Compiling` line on stderr like cargo, then either fails or
/// reports artifacts as JSON (when asked for JSON messages) and writes the
/// binary where flowc expects it.
const FAKE_CARGO: &str = r#"#!/usr/bin/env bash
target=""; profile=debug; manifest=""; json=0
while [ $# -gt 0 ]; do
  case "$1" in
    --target-dir) target="$2"; shift;;
    --manifest-path) manifest="$2"; shift;;
    --release) profile=release;;
    --message-format=*) json=1;;
  esac
  shift
done
name=$(basename "$(dirname "$manifest")")
echo "   Compiling serde v1.0.0 (fake cargo's own output)" >&2
if [ "$FAKE_CARGO_FAIL" = 1 ]; then
  echo "error[E0425]: cannot find value \`x\` in this scope (fake)" >&2
  echo "error: could not compile \`$name\` (bin \"$name\") due to 1 previous error" >&2
  exit 101
fi
if [ $json = 1 ]; then
  echo '{"reason":"compiler-artifact","target":{"name":"serde"},"fresh":false}'
  echo '{"reason":"compiler-artifact","target":{"name":"flow_runtime"},"fresh":false}'
  echo '{"reason":"compiler-artifact","target":{"name":"'"$name"'"},"fresh":false}'
  echo '{"reason":"build-finished","success":true}'
fi
mkdir -p "$target/$profile/deps"
touch "$target/$profile/deps/libflow_runtime-0123456789abcdef.rlib"
printf '#!/bin/sh\necho fake binary\n' > "$target/$profile/$name"
chmod +x "$target/$profile/$name"
"#;

struct Setup {
    dir: tempfile::TempDir,
    cargo: PathBuf,
    flow: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let cargo = dir.path().join("fake-cargo");
    fs::write(&cargo, FAKE_CARGO).expect("write script");
    fs::set_permissions(&cargo, fs::Permissions::from_mode(0o755)).expect("chmod");
    let flow = dir.path().join("tiny.flow");
    fs::write(
        &flow,
        "integration tiny\n\nflow f {\n  trigger deploy\n  skip \"nothing to do\"\n}\n",
    )
    .expect("write flow");
    Setup { dir, cargo, flow }
}

fn build(setup: &Setup, extra: &[&str], fail: bool) -> (i32, String) {
    let out_dir = setup.dir.path().join("bin");
    let out = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .arg("build")
        .args(extra)
        .arg("-o")
        .arg(&out_dir)
        .arg(&setup.flow)
        .env("CARGO", &setup.cargo)
        .env("FLOWC_CACHE_DIR", setup.dir.path().join("cache"))
        .env("FAKE_CARGO_FAIL", if fail { "1" } else { "0" })
        .env("NO_COLOR", "1")
        .output()
        .expect("flowc runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The stage words of the progress lines, in order.
fn stages(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

fn has_elapsed_time(line: &str) -> bool {
    line.trim_end().ends_with("s]") || line.contains(" in ")
}

#[test]
fn progress_lines_replace_cargos_output() {
    let setup = setup();
    let (code, stderr) = build(&setup, &[], false);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stages(&stderr),
        [
            "Checking",
            "Generating",
            "Compiling",
            "Compiling",
            "Finished",
            "Binary"
        ],
        "{stderr}"
    );
    assert!(
        stderr.contains("Compiling the runtime: first build with this flowc"),
        "{stderr}"
    );
    assert!(stderr.contains("   Compiling tiny ["), "{stderr}");
    assert!(stderr.contains("Finished tiny (release) in "), "{stderr}");
    for line in stderr.lines().filter(|l| !l.contains("Binary")) {
        assert!(has_elapsed_time(line), "no elapsed time: {line:?}");
    }
    assert!(!stderr.contains("fake cargo's own output"), "{stderr}");
    let binary = setup.dir.path().join("bin/tiny");
    assert!(binary.is_file());

    // The runtime is built now: the next build does not announce a first
    // build (the stand-in still reports a crate compiled, as cargo would
    // after a change of the runtime's dependencies).
    let (code, stderr) = build(&setup, &["--debug"], false);
    assert_eq!(code, 0, "{stderr}");
    let (code, stderr) = build(&setup, &["--debug"], false);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("first build"), "{stderr}");
    assert!(stderr.contains("Finished tiny (debug) in "), "{stderr}");
}

#[test]
fn verbose_shows_cargos_output() {
    let setup = setup();
    let (code, stderr) = build(&setup, &["-v"], false);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("fake cargo's own output"), "{stderr}");
    assert!(stderr.contains("Finished tiny"), "{stderr}");
}

#[test]
fn a_failing_cargo_is_shown_in_full() {
    let setup = setup();
    let (code, stderr) = build(&setup, &[], true);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("fake cargo's own output"), "{stderr}");
    assert!(
        stderr.contains("error[E0425]: cannot find value `x` in this scope (fake)"),
        "{stderr}"
    );
    assert!(stderr.contains("could not compile `tiny-"), "{stderr}");
    assert!(!stderr.contains("Finished"), "{stderr}");
    assert!(!setup.dir.path().join("bin/tiny").exists());
}

#[test]
fn a_missing_cargo_is_named() {
    let mut setup = setup();
    setup.cargo = Path::new("/nonexistent/cargo").to_path_buf();
    let (code, stderr) = build(&setup, &[], false);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cannot run cargo"), "{stderr}");
}
