//! The build driver: writes a generated crate into flowc's cache and runs
//! cargo on it.
//!
//! Layout of the cache (`$FLOWC_CACHE_DIR`, else `$XDG_CACHE_HOME/flowc`,
//! else `~/.cache/flowc`):
//!
//! ```text
//! runtime-<hash>/     the flow_runtime sources embedded in this flowc
//! crates/<name>-<h>/  one generated crate per integration source file
//! target/             one cargo target dir shared by all of them
//! ```
//!
//! The runtime directory is named after a hash of its sources, so every
//! integration built by the same flowc shares one compiled runtime, and the
//! shared target directory means the runtime's dependencies compile once
//! per machine. The generated crate gets flowc's own `Cargo.lock`, so it
//! builds with the dependency versions flowc was tested with.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/runtime_files.rs"));
}

/// What to build and how.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub cache_dir: PathBuf,
    /// Release (optimised) or debug build.
    pub release: bool,
    /// Show cargo's own output instead of a summary.
    pub verbose: bool,
    /// The runtime's optional features to turn on (see
    /// [`crate::codegen::runtime_features`]).
    pub features: Vec<String>,
    /// Compile the generated crate with `#![deny(warnings)]`: flowc's own
    /// tests prove with it that generated code is warning-free. It is an
    /// attribute in `main.rs`, not a `RUSTFLAGS` setting, so the runtime
    /// compiled in the cache is reused as it is.
    #[doc(hidden)]
    pub deny_warnings: bool,
}

impl BuildOptions {
    pub fn from_env(release: bool, verbose: bool) -> BuildOptions {
        BuildOptions {
            cache_dir: default_cache_dir(),
            release,
            verbose,
            features: Vec::new(),
            deny_warnings: false,
        }
    }
}

pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FLOWC_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("flowc");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".cache").join("flowc"),
        None => std::env::temp_dir().join("flowc-cache"),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot write the generated crate to {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("cannot run cargo: {0} (is the Rust toolchain installed and on PATH?)")]
    CargoMissing(io::Error),
    #[error(
        "cargo failed to compile the generated code (a bug of flowc: please report it)\n{output}"
    )]
    Cargo { output: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `contents` unless the file already holds exactly that, so cargo's
/// freshness check (by mtime) sees no change on a rebuild of the same code.
fn write_if_changed(path: &Path, contents: &str) -> Result<(), BuildError> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == contents) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    // Write a file of our own, then rename it into place: another flowc
    // building into the same cache at the same time (parallel tests, two
    // terminals) never sees, nor lets cargo read, a half-written file.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, contents).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(path)(e)
    })
}

/// Writes the embedded runtime into the cache (once per runtime version)
/// and returns its directory.
pub fn install_runtime(cache: &Path) -> Result<PathBuf, BuildError> {
    let mut hasher = Sha256::new();
    for (path, contents) in embedded::RUNTIME_FILES {
        hasher.update(path.as_bytes());
        hasher.update(contents.as_bytes());
    }
    let hash = hex::encode(hasher.finalize());
    let dir = cache.join(format!("runtime-{}", &hash[..16]));
    for (path, contents) in embedded::RUNTIME_FILES {
        let contents = if *path == "Cargo.toml" {
            standalone_manifest(contents)
        } else {
            (*contents).to_string()
        };
        write_if_changed(&dir.join(path), &contents)?;
    }
    Ok(dir)
}

/// The runtime's manifest inherits from flowc's workspace; outside it,
/// those keys are spelled out.
fn standalone_manifest(manifest: &str) -> String {
    manifest
        .lines()
        .filter_map(|line| match line.split('.').next().map(str::trim) {
            Some("version") if line.contains("workspace") => {
                Some(format!("version = {:?}", env!("CARGO_PKG_VERSION")))
            }
            Some("edition") if line.contains("workspace") => Some("edition = \"2021\"".into()),
            Some("rust-version" | "license") if line.contains("workspace") => None,
            _ => Some(line.to_string()),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// The manifest of a generated crate.
fn crate_manifest(name: &str, runtime_dir: &Path, features: &[String]) -> String {
    format!(
        r#"# Generated by flowc {version}. Do not edit: rebuild with `flowc build`.
[package]
name = "{name}"
version = "{version}"
edition = "2021"
publish = false

[dependencies]
flow_runtime = {{ path = {runtime:?}{features} }}

# Line tables only: backtraces keep file and line, while binaries stay a
# fraction of the size and link faster than with full debug info.
[profile.dev]
debug = "line-tables-only"

# The runtime never changes under a given flowc: see the release profile.
[profile.dev.package."*"]
incremental = false

[profile.release]
opt-level = 3
codegen-units = 16
incremental = true
debug = false
strip = "debuginfo"

# The runtime and its dependencies in one codegen unit each (about 4% fewer
# instructions per request, docs/performance.md): slower to compile, but
# only the first build with a runtime compiles them. The integration's own
# crate keeps 16 units, so a rebuild stays quick. Not incremental: the
# runtime (a path dependency, which cargo would otherwise compile
# incrementally) never changes under a given flowc, so the incremental
# cache would only cost time and disk on the first build.
[profile.release.package."*"]
codegen-units = 1
incremental = false

# Except the runtime crate itself, in two: it is the last unit of a cold
# build and compiles alone, one core idle, for most of a minute; two units
# are 11 s shorter on this 2-core machine for 0.7% more instructions per
# relay request (docs/performance.md).
[profile.release.package.flow_runtime]
codegen-units = 2

# SQLite's C code at -O2 (SQLite's own default) instead of -O3: a third
# less compile time for the longest single job of a cold build.
[profile.release.package.libsqlite3-sys]
opt-level = 2

# A crate of its own, never a member of a surrounding workspace.
[workspace]
"#,
        version = env!("CARGO_PKG_VERSION"),
        runtime = runtime_dir.display().to_string(),
        features = if features.is_empty() {
            String::new()
        } else {
            format!(", features = {features:?}")
        },
    )
}

/// A stage of a build, reported as it starts (see [`build_with_progress`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The runtime (or some of its dependencies) is being compiled;
    /// `first_time`: the first build with this flowc's runtime and profile,
    /// which compiles all of it (a few minutes).
    CompilingRuntime { first_time: bool },
    /// The integration's own crate is being compiled and linked.
    Compiling,
}

/// The name of a generated crate (and of its binary in the shared target
/// directory): the integration's name and a hash of where its source is,
/// so two `.flow` files that name the same integration never share (or
/// race on) a crate or a binary.
pub fn crate_name(integration: &str, source: &Path) -> String {
    let place = std::fs::canonicalize(source).unwrap_or_else(|_| source.to_path_buf());
    let hash = hex::encode(Sha256::digest(place.to_string_lossy().as_bytes()));
    format!("{integration}-{}", &hash[..10])
}

/// What flowc generates for an integration: the files of its crate's
/// `src/`.
pub struct Sources<'a> {
    /// `main.rs`: the code (`codegen::generate`).
    pub main_rs: &'a str,
    /// `graph.svg`: the drawing of the flows (`graph::Format::Svg`), which
    /// `main.rs` embeds for the executions page.
    pub graph_svg: &'a str,
}

/// Builds the generated `sources` as crate `name` (see [`crate_name`]) and
/// returns the path of the binary in the shared target directory.
pub fn build(name: &str, sources: &Sources, opts: &BuildOptions) -> Result<PathBuf, BuildError> {
    build_with_progress(name, sources, opts, &mut |_| {})
}

/// [`build`], calling `progress` as each stage starts. Without
/// `opts.verbose`, cargo's output is kept back (it runs with JSON messages,
/// which tell when the runtime is ready) and shown only when it fails.
pub fn build_with_progress(
    name: &str,
    sources: &Sources,
    opts: &BuildOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<PathBuf, BuildError> {
    let runtime = install_runtime(&opts.cache_dir)?;
    let crate_dir = opts.cache_dir.join("crates").join(name);
    write_if_changed(
        &crate_dir.join("Cargo.toml"),
        &crate_manifest(name, &runtime, &opts.features),
    )?;
    let main_rs = if opts.deny_warnings {
        format!("#![deny(warnings)]\n{}", sources.main_rs)
    } else {
        sources.main_rs.to_string()
    };
    write_if_changed(&crate_dir.join("src").join("graph.svg"), sources.graph_svg)?;
    write_if_changed(&crate_dir.join("src").join("main.rs"), &main_rs)?;
    let lock = crate_dir.join("Cargo.lock");
    if !lock.exists() {
        write_if_changed(&lock, embedded::CARGO_LOCK)?;
    }
    let target = opts.cache_dir.join("target");
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(crate_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target);
    if opts.release {
        cmd.arg("--release");
    }
    // Don't let a surrounding `cargo test` leak its settings into ours.
    for var in [
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let profile = if opts.release { "release" } else { "debug" };
    // A marker in the runtime's folder, written after the first successful
    // build with it and these features: without it (or without a compiled
    // runtime in the target folder), the runtime is about to be compiled.
    // Each feature set is a runtime of its own in the target folder (cargo
    // hashes features into its artifacts' names), so builds with different
    // sets never recompile each other's.
    let marker = runtime.join(format!(".built-{profile}{}", marker_suffix(&opts.features)));
    let first_time = !marker.exists() || !runtime_compiled(&target.join(profile));
    if first_time {
        progress(Progress::CompilingRuntime { first_time });
    }
    let (success, output) = if opts.verbose {
        progress(Progress::Compiling);
        let status = cmd.status().map_err(BuildError::CargoMissing)?;
        (status.success(), String::new())
    } else {
        run_quietly(&mut cmd, first_time, progress)?
    };
    if !success {
        return Err(BuildError::Cargo { output });
    }
    // Best effort: without the marker the next build only says once more
    // that it compiles the runtime.
    let _ = std::fs::write(&marker, "");
    Ok(target.join(profile).join(exe_name(name)))
}

/// `-email-sftp` for those features, empty for none.
fn marker_suffix(features: &[String]) -> String {
    features.iter().map(|f| format!("-{f}")).collect()
}

/// Is there a compiled `flow_runtime` library in this profile's folder?
fn runtime_compiled(profile_dir: &Path) -> bool {
    std::fs::read_dir(profile_dir.join("deps")).is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("libflow_runtime-") && name.ends_with(".rlib")
        })
    })
}

/// Runs cargo with JSON messages on stdout: reports
/// [`Progress::CompilingRuntime`] when a crate other than the integration is
/// compiled (unless `runtime_reported`), [`Progress::Compiling`] once the
/// runtime is ready, and returns whether cargo succeeded with its full
/// output (stderr, where diagnostics are rendered, then any stdout line that
/// is not a JSON message).
fn run_quietly(
    cmd: &mut Command,
    mut runtime_reported: bool,
    progress: &mut dyn FnMut(Progress),
) -> Result<(bool, String), BuildError> {
    use std::io::{BufRead, Read};
    use std::process::Stdio;

    cmd.arg("--message-format=json-render-diagnostics")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(BuildError::CargoMissing)?;
    let stderr = child.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    });
    let mut other = String::new();
    let mut compiling = false;
    if let Some(stdout) = child.stdout.take() {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            match serde_json::from_str::<serde_json::Value>(&line) {
                Ok(message) => {
                    let artifact = message["reason"] == "compiler-artifact";
                    let runtime_ready = artifact && message["target"]["name"] == "flow_runtime";
                    let compiled = artifact && message["fresh"] == false;
                    if compiled && !compiling && !runtime_reported {
                        runtime_reported = true;
                        progress(Progress::CompilingRuntime { first_time: false });
                    }
                    if runtime_ready && !compiling {
                        compiling = true;
                        progress(Progress::Compiling);
                    }
                }
                Err(_) => {
                    other.push_str(&line);
                    other.push('\n');
                }
            }
        }
    }
    let status = child.wait().map_err(BuildError::CargoMissing)?;
    let mut output = stderr
        .and_then(|reader| reader.join().ok())
        .unwrap_or_default();
    output.push_str(&other);
    Ok((status.success(), output))
}

fn exe_name(name: &str) -> String {
    format!("{name}{}", std::env::consts::EXE_SUFFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_manifest_stands_alone() {
        let (_, manifest) = embedded::RUNTIME_FILES
            .iter()
            .find(|(p, _)| *p == "Cargo.toml")
            .expect("runtime manifest embedded");
        let standalone = standalone_manifest(manifest);
        assert!(!standalone.contains("workspace"), "{standalone}");
        assert!(standalone.contains("name = \"flow_runtime\""));
        assert!(standalone.contains("edition = \"2021\""));
    }

    #[test]
    fn runtime_sources_are_embedded() {
        assert!(embedded::RUNTIME_FILES
            .iter()
            .any(|(p, _)| *p == "src/lib.rs"));
        // The executions page, which the runtime includes with include_str!.
        for page_file in [
            "app.html",
            "app.css",
            "app.js",
            "favicon.svg",
            "signin.html",
            "disabled.html",
        ] {
            let path = format!("src/triggers/http/ui/{page_file}");
            assert!(
                embedded::RUNTIME_FILES.iter().any(|(p, _)| *p == path),
                "{path} not embedded"
            );
        }
        assert!(embedded::CARGO_LOCK.contains("name = \"flow_runtime\""));
    }
}
