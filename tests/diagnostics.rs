//! Data-driven diagnostics tests: every `tests/diagnostics/*.flow` file is
//! a whole program with exactly one mistake, named in its first line
//! (`// expect: E0102`). Each must report that code and no other error,
//! and its rendered diagnostics are snapshot-tested (Gleam-style framing),
//! so messages, spans and help lines are reviewed like code.
//!
//! Together the files must cover every code in `Code::ALL`.
//!
//! Update snapshots with `INSTA_UPDATE=always cargo test --test diagnostics`
//! (or `cargo insta review`), then read the changed `.snap` files.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use flowc::check::check_source_in;
use flowc::diagnostics::{render, Code, Diagnostic};

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/diagnostics");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "flow"))
        .collect();
    files.sort();
    files
}

/// The code named by the `// expect: CODE` first line.
fn expected_code(name: &str, source: &str) -> Result<Code, String> {
    let first = source.lines().next().unwrap_or_default();
    let code = first
        .strip_prefix("// expect:")
        .ok_or_else(|| format!("{name}: first line must be `// expect: CODE`"))?;
    Code::parse(code).ok_or_else(|| format!("{name}: unknown code `{}`", code.trim()))
}

/// Why the diagnostics do not match the expectation, if they do not.
fn mismatch(expected: Code, diagnostics: &[Diagnostic]) -> Option<String> {
    let codes: Vec<&str> = diagnostics.iter().map(|d| d.code.as_str()).collect();
    if !diagnostics.iter().any(|d| d.code == expected) {
        return Some(format!("expected {}, got {codes:?}", expected.as_str()));
    }
    let other_error = diagnostics
        .iter()
        .any(|d| d.is_error() && d.code != expected);
    other_error.then(|| {
        format!(
            "expected only {} among the errors, got {codes:?}",
            expected.as_str()
        )
    })
}

#[test]
fn every_wrong_program_reports_its_code() {
    let files = cases();
    assert!(files.len() >= 70, "only {} cases", files.len());
    let mut failures = Vec::new();
    let mut covered = BTreeSet::new();
    let mut snapshots = Vec::new();
    for path in &files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let source = fs::read_to_string(path).unwrap_or_default();
        let expected = match expected_code(&name, &source) {
            Ok(code) => code,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        covered.insert(expected);
        // Files a case names (a test's `instance ... from "FILE"`) are
        // next to it.
        let diagnostics = check_source_in(&source, path.parent()).diagnostics;
        if let Some(why) = mismatch(expected, &diagnostics) {
            failures.push(format!("{name}: {why}"));
        }
        let rendered = render(&name, &source, &diagnostics, false);
        let stem = name.trim_end_matches(".flow").to_string();
        snapshots.push((
            stem,
            format!("----- SOURCE CODE\n{source}\n----- DIAGNOSTICS\n{rendered}"),
        ));
    }
    let missing: Vec<&str> = Code::ALL
        .iter()
        .filter(|c| !covered.contains(*c))
        .map(|c| c.as_str())
        .collect();
    if !missing.is_empty() {
        failures.push(format!("no case expects {missing:?}"));
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    for (stem, text) in snapshots {
        insta::assert_snapshot!(stem, text);
    }
}
