//! Embeds the runtime crate's sources into flowc, so that `flowc build`
//! works from any directory after `cargo install --path .`: the driver
//! writes them into its cache and builds generated crates against them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let runtime = root.join("runtime");
    let mut files = vec![runtime.join("Cargo.toml")];
    collect(&runtime.join("src"), &mut files);
    files.sort();
    let mut out = String::from("/// (path relative to the runtime crate, contents)\npub const RUNTIME_FILES: &[(&str, &str)] = &[\n");
    for f in &files {
        let rel = f.strip_prefix(&runtime).expect("under runtime/");
        let rel = rel.to_string_lossy().replace('\\', "/");
        writeln!(
            out,
            "    ({rel:?}, include_str!({:?})),",
            f.display().to_string()
        )
        .expect("string write");
        println!("cargo:rerun-if-changed={}", f.display());
    }
    out.push_str("];\n");
    let lock = root.join("Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    println!("cargo:rerun-if-changed={}", runtime.join("src").display());
    writeln!(out, "/// The workspace's Cargo.lock: generated crates pin the same versions.\npub const CARGO_LOCK: &str = include_str!({:?});", lock.display().to_string()).expect("string write");
    let dest =
        PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("runtime_files.rs");
    std::fs::write(dest, out).expect("write runtime_files.rs");
}

/// The runtime's sources, and the files of the executions page that it
/// embeds with `include_str!` (`src/triggers/http/ui/`).
const EMBEDDED_EXTENSIONS: &[&str] = &["rs", "html", "css", "js", "svg"];

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else if path
            .extension()
            .is_some_and(|e| EMBEDDED_EXTENSIONS.iter().any(|x| e == *x))
        {
            out.push(path);
        }
    }
}
