//! Binaries built once per test process: the example binaries of a
//! workspace crate (by cargo), or anything a test builds itself.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use crate::lock;

/// The binary of `example` of the workspace package `package`, built once
/// per test process (cargo makes it a no-op when it is fresh) in the same
/// target directory and profile as the running test. Panics with cargo's
/// output when the build fails.
pub fn example_binary(package: &str, example: &str) -> PathBuf {
    build_once(
        &format!("cargo build -p {package} --example {example}"),
        || build_example(package, example),
    )
}

/// The result of `build()` for `what`, built by the first caller in this
/// test process; later callers, from any test, wait for and reuse it.
pub fn build_once(what: &str, build: impl FnOnce() -> PathBuf) -> PathBuf {
    type Builds = Mutex<HashMap<String, Arc<OnceLock<PathBuf>>>>;
    static BUILDS: OnceLock<Builds> = OnceLock::new();
    let cell = lock(BUILDS.get_or_init(Default::default))
        .entry(what.to_string())
        .or_default()
        .clone();
    cell.get_or_init(build).clone()
}

fn build_example(package: &str, example: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    // The test runs from target/<profile>/deps/.
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
        .args(["build", "--quiet", "-p", package, "--example", example])
        .args(["--profile", &profile])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "cannot build the example {example}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = profile_dir
        .join("examples")
        .join(format!("{example}{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.exists(), "{} is missing", bin.display());
    bin
}
