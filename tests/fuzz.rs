//! Fuzzing the front end (issue #16): `flowc check` on arbitrary text
//! never panics, and neither does what follows a clean check (rendering
//! the diagnostics, formatting, generating Rust). Mutants start from every
//! `.flow` file in the repository plus the corpus kept in
//! `fuzz/corpus/check/` (see `flow_testkit::fuzz` and docs/security.md).
//!
//! `cargo test` runs a short pass; a real run:
//! `FLOW_FUZZ_SECONDS=600 FLOW_FUZZ_SAVE=1 cargo test --release --test fuzz`.

use std::fs;
use std::path::{Path, PathBuf};

use flow_testkit::fuzz::Fuzz;
use flowc::check::check_source;
use flowc::diagnostics::render;

/// Every `.flow` file of the repository's examples and tests.
fn flow_files() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in [
        "examples",
        "tests/check_ok",
        "tests/flows",
        "tests/diagnostics",
        "benches",
    ] {
        let Ok(entries) = fs::read_dir(root.join(dir)) else {
            continue;
        };
        files.extend(
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "flow")),
        );
    }
    files.sort();
    files.iter().filter_map(|p| fs::read(p).ok()).collect()
}

const DICTIONARY: &[&[u8]] = &[
    b"integration ",
    b"flow ",
    b"type ",
    b"config {",
    b"trigger ",
    b"webhook POST \"/x\" ",
    b"sync GET \"/a/{id}\" timeout 5s ",
    b"schedule every 5m",
    b"step s = ",
    b"http.get(",
    b"respond 200, ",
    b"skip \"x\"",
    b"dispatch ",
    b"match ",
    b"for x in ",
    b"if ",
    b"else ",
    b"let ",
    b"${",
    b"}",
    b"=>",
    b"??",
    b"?.",
    b"as ",
    b"retry 3 backoff 1s..1m",
    b"on failure {",
    b"test \"t\" {",
    b"mock ",
    b"expect ",
    b"verify: stripe(secret: config.s)",
    b"auth: bearer([config.a, config.b])",
    b"auth: none",
    b"@rename(\"X\") ",
    b"[",
    b"]",
    b"99999999999999999999",
    b"1.5e308",
    b"0ms",
    b"\"\\u{10ffff}\"",
    b"\xf0\x9f\x92\xa9",
    b"Secret",
    b"Json",
    b"Map<",
    b"Int?",
    b"[Item]",
    b"trigger.body.",
    b"config.",
];

#[test]
fn fuzz_check_and_what_follows() {
    let mut seeds = flow_files();
    seeds.push(Vec::new());
    Fuzz {
        name: "check",
        corpus: Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/check"),
        seeds,
        dictionary: DICTIONARY,
    }
    .run(|input| {
        let source = String::from_utf8_lossy(input);
        let checked = check_source(&source);
        let _ = render("fuzz.flow", &source, &checked.diagnostics, false);
        let mut features: Vec<String> = checked
            .diagnostics
            .iter()
            .map(|d| d.code.as_str().to_string())
            .collect();
        if !checked.diagnostics.iter().any(|d| d.is_error()) {
            // A valid program also formats and generates code.
            let _ = flowc::fmt::format_source(&source);
            if let Ok(file) = flowc::syntax::parse_file(&source) {
                let _ = flowc::codegen::generate(&file, &checked.program, &source);
            }
            features.push("ok".into());
        }
        features
    });
}
