//! The front end never panics, whatever the input. Every example and
//! `tests/check_ok` program is mutated thousands of times in total (chars
//! and tokens deleted, duplicated and swapped, truncation, stray
//! punctuation) with a fixed-seed PRNG, and each mutant is checked inside
//! `catch_unwind`. A few dozen mutants also go through the real `flowc
//! check` binary, which must exit 0 or 1 without a panic message.

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::Command;

use flow_testkit::fuzz::Rng;
use flowc::check::check_source;

/// Mutants per source program.
const PER_PROGRAM: usize = 150;
/// Mutants run through the CLI binary.
const CLI_MUTANTS: usize = 50;
const PUNCTUATION: &[char] = &[
    '{', '}', '(', ')', '[', ']', ':', ',', '.', '"', '=', '>', '?', '|',
];

fn programs() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in ["examples", "tests/check_ok"] {
        let Ok(entries) = fs::read_dir(root.join(dir)) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "flow"))
            .collect();
        paths.sort();
        for path in paths {
            if let Ok(source) = fs::read_to_string(&path) {
                out.push((path, source));
            }
        }
    }
    out
}

/// Char ranges of the whitespace-separated tokens of `chars`.
fn tokens(chars: &[char]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in chars.iter().enumerate() {
        match (c.is_whitespace(), start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, chars.len()));
    }
    out
}

/// Applies one random mutation.
fn mutate_once(chars: &mut Vec<char>, rng: &mut Rng) {
    if chars.is_empty() {
        chars.push(PUNCTUATION[rng.below(PUNCTUATION.len())]);
        return;
    }
    let at = rng.below(chars.len());
    match rng.below(9) {
        0 => {
            chars.remove(at);
        }
        1 => chars.insert(at, chars[at]),
        2 if at + 1 < chars.len() => chars.swap(at, at + 1),
        3 => chars.truncate(at),
        4 => chars.insert(at, PUNCTUATION[rng.below(PUNCTUATION.len())]),
        n => {
            let toks = tokens(chars);
            if toks.len() < 2 {
                return;
            }
            let i = rng.below(toks.len() - 1);
            let (s, e) = toks[i];
            let (s2, e2) = toks[i + 1];
            match n {
                5 => {
                    chars.drain(s..e);
                }
                6 => {
                    let copy: Vec<char> = chars[s..e].to_vec();
                    chars.splice(e..e, std::iter::once(' ').chain(copy));
                }
                _ => {
                    // Swap two neighbouring tokens.
                    let first: Vec<char> = chars[s..e].to_vec();
                    let second: Vec<char> = chars[s2..e2].to_vec();
                    chars.splice(s2..e2, first);
                    chars.splice(s..e, second);
                }
            }
        }
    }
}

/// A mutant of `source` with one to three mutations.
fn mutant(source: &str, rng: &mut Rng) -> String {
    let mut chars: Vec<char> = source.chars().collect();
    for _ in 0..=rng.below(3) {
        mutate_once(&mut chars, rng);
    }
    chars.into_iter().collect()
}

#[test]
fn checking_mutants_never_panics() {
    let programs = programs();
    assert!(!programs.is_empty());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut panicked: Vec<String> = Vec::new();
    let mut total = 0;
    for (path, source) in &programs {
        for _ in 0..PER_PROGRAM {
            let m = mutant(source, &mut rng);
            total += 1;
            let result = panic::catch_unwind(AssertUnwindSafe(|| check_source(&m)));
            if result.is_err() && panicked.len() < 5 {
                panicked.push(format!("--- mutant of {}:\n{m}", path.display()));
            }
        }
    }
    assert!(total >= 2000, "only {total} mutants");
    assert!(
        panicked.is_empty(),
        "check_source panicked on:\n{}",
        panicked.join("\n")
    );
}

#[test]
fn the_cli_survives_mutants() {
    let programs = programs();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    for i in 0..CLI_MUTANTS {
        let (_, source) = &programs[i % programs.len()];
        let file = dir.path().join(format!("mutant_{i}.flow"));
        fs::write(&file, mutant(source, &mut rng)).expect("write mutant");
        let out = Command::new(env!("CARGO_BIN_EXE_flowc"))
            .arg("check")
            .arg(&file)
            .output()
            .expect("run flowc");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let code = out.status.code();
        assert!(
            matches!(code, Some(0 | 1)) && !stderr.contains("panicked"),
            "flowc check {} exited {code:?}:\n{stderr}\n--- source:\n{}",
            file.display(),
            fs::read_to_string(&file).unwrap_or_default()
        );
    }
}
