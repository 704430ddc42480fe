//! Valid programs check cleanly. `tests/check_ok/*.flow` completes every
//! snippet of LANGUAGE.md sections 2-9 into a whole program (each trigger
//! kind with its options, every statement and expression form, tests); they
//! and the `examples/` must report no error, and the `check_ok` files no
//! warning either: a false diagnostic on a valid program is a checker bug.

use std::fs;
use std::path::{Path, PathBuf};

use flowc::check::check_source_in;
use flowc::diagnostics::render;

fn flow_files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "flow"))
        .collect();
    files.sort();
    files
}

/// The rendered diagnostics (errors only, or all) of each file that has
/// any.
fn failures(files: &[PathBuf], errors_only: bool) -> Vec<String> {
    let mut out = Vec::new();
    for path in files {
        let source = fs::read_to_string(path).unwrap_or_default();
        let diagnostics: Vec<_> = check_source_in(&source, path.parent())
            .diagnostics
            .into_iter()
            .filter(|d| d.is_error() || !errors_only)
            .collect();
        if !diagnostics.is_empty() {
            let name = path.display().to_string();
            out.push(render(&name, &source, &diagnostics, false));
        }
    }
    out
}

#[test]
fn language_snippets_check_without_diagnostics() {
    let files = flow_files("tests/check_ok");
    assert!(files.len() >= 10, "only {} programs", files.len());
    let failed = failures(&files, false);
    assert!(failed.is_empty(), "\n{}", failed.join("\n"));
}

#[test]
fn examples_check_without_errors() {
    let files = flow_files("examples");
    assert!(!files.is_empty());
    let failed = failures(&files, true);
    assert!(failed.is_empty(), "\n{}", failed.join("\n"));
}
