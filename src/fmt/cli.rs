//! The `flowc fmt [--check] FILE...` command.
//!
//! Without `--check`, files that change are rewritten in place, atomically
//! (a temporary file beside the original, then a rename). With `--check`,
//! nothing is written: each file that would change is listed with a short
//! line diff. A file with syntax errors is never touched; its diagnostics
//! are printed.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::format_source;
use crate::diagnostics;

/// Exit code: everything formatted (or, with `--check`, already so).
pub const EXIT_OK: u8 = 0;
/// Exit code: syntax errors, or with `--check` a file that would change.
pub const EXIT_CHANGES: u8 = 1;
/// Exit code: a file could not be read or written.
pub const EXIT_IO: u8 = 2;

/// Diff lines shown per file by `--check`.
const MAX_DIFF_LINES: usize = 40;

/// Runs `flowc fmt`; returns the exit code.
pub fn run(files: &[PathBuf], check: bool, color: bool) -> u8 {
    let mut failed = false;
    let mut io_error = false;
    let mut would_change = Vec::new();
    for path in files {
        let name = path.display().to_string();
        let source = match std::fs::read_to_string(path) {
            Ok(source) => source,
            Err(e) => {
                eprintln!("error: cannot read {name}: {e}");
                io_error = true;
                continue;
            }
        };
        let formatted = match format_source(&source) {
            Ok(text) => text,
            Err(diags) => {
                eprint!("{}", diagnostics::render(&name, &source, &diags, color));
                eprintln!("{name}: not formatted (syntax errors)");
                failed = true;
                continue;
            }
        };
        if formatted == source {
            continue;
        }
        if check {
            print!("{}", diff_summary(&name, &source, &formatted));
            would_change.push(name);
        } else if let Err(e) = write_atomically(path, &formatted) {
            eprintln!("error: cannot write {name}: {e}");
            io_error = true;
        } else {
            eprintln!("formatted {name}");
        }
    }
    let _ = std::io::stdout().flush();
    if !would_change.is_empty() {
        eprintln!(
            "{} file(s) would be reformatted: {}\nrun `flowc fmt {}` to format them",
            would_change.len(),
            would_change.join(", "),
            would_change.join(" ")
        );
    }
    if io_error {
        EXIT_IO
    } else if failed || !would_change.is_empty() {
        EXIT_CHANGES
    } else {
        EXIT_OK
    }
}

/// Replaces `path` with `contents` through a temporary file in the same
/// folder, keeping the file's permissions.
fn write_atomically(path: &Path, contents: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{file_name}.fmt-{}.tmp", std::process::id()));
    let result = std::fs::write(&tmp, contents)
        .and_then(|()| {
            let permissions = std::fs::metadata(path)?.permissions();
            std::fs::set_permissions(&tmp, permissions)
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `Diff in NAME:` and the changed lines, `-` before and `+` after, in
/// hunks headed by their line number in the original; at most
/// [`MAX_DIFF_LINES`] lines.
pub fn diff_summary(name: &str, before: &str, after: &str) -> String {
    let old: Vec<&str> = before.lines().collect();
    let new: Vec<&str> = after.lines().collect();
    let ops = line_diff(&old, &new);
    let mut out = format!("Diff in {name}:\n");
    let mut shown = 0;
    let mut in_hunk = false;
    let mut omitted = 0;
    for op in ops {
        let (line, mark) = match op {
            Op::Same => {
                in_hunk = false;
                continue;
            }
            Op::Del(i) => (old.get(i).copied().unwrap_or_default(), ('-', i)),
            Op::Add(i, at) => (new.get(i).copied().unwrap_or_default(), ('+', at)),
        };
        if shown >= MAX_DIFF_LINES {
            omitted += 1;
            continue;
        }
        if !in_hunk {
            out.push_str(&format!("@@ line {} @@\n", mark.1 + 1));
            in_hunk = true;
        }
        out.push(mark.0);
        out.push_str(line);
        out.push('\n');
        shown += 1;
    }
    if omitted > 0 {
        out.push_str(&format!("... and {omitted} more changed line(s)\n"));
    }
    if before.lines().eq(after.lines()) {
        out.push_str("(line endings or the final newline change)\n");
    }
    out
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Same,
    Del(usize),
    /// A line of the new text, inserted before line `.1` of the old.
    Add(usize, usize),
}

/// A line diff: the common prefix and suffix, and a longest common
/// subsequence of the rest (or, for very long middles, all of it replaced).
fn line_diff(old: &[&str], new: &[&str]) -> Vec<Op> {
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let suffix = old
        .iter()
        .rev()
        .zip(new.iter().rev())
        .take(old.len().min(new.len()) - prefix)
        .take_while(|(a, b)| a == b)
        .count();
    let (o, n) = (
        old.get(prefix..old.len() - suffix).unwrap_or_default(),
        new.get(prefix..new.len() - suffix).unwrap_or_default(),
    );
    let mut ops: Vec<Op> = (0..prefix).map(|_| Op::Same).collect();
    if o.len().saturating_mul(n.len()) > 4_000_000 {
        ops.extend((0..o.len()).map(|i| Op::Del(prefix + i)));
        ops.extend((0..n.len()).map(|j| Op::Add(prefix + j, prefix + o.len())));
    } else {
        // lcs[i][j]: length of the LCS of o[i..] and n[j..].
        let width = n.len() + 1;
        let mut lcs = vec![0usize; (o.len() + 1) * width];
        for i in (0..o.len()).rev() {
            for j in (0..n.len()).rev() {
                let value = if o.get(i) == n.get(j) {
                    lcs.get((i + 1) * width + j + 1).copied().unwrap_or(0) + 1
                } else {
                    let down = lcs.get((i + 1) * width + j).copied().unwrap_or(0);
                    let right = lcs.get(i * width + j + 1).copied().unwrap_or(0);
                    down.max(right)
                };
                if let Some(cell) = lcs.get_mut(i * width + j) {
                    *cell = value;
                }
            }
        }
        let at = |i: usize, j: usize| lcs.get(i * width + j).copied().unwrap_or(0);
        let (mut i, mut j) = (0, 0);
        while i < o.len() || j < n.len() {
            if i < o.len() && j < n.len() && o.get(i) == n.get(j) {
                ops.push(Op::Same);
                i += 1;
                j += 1;
            } else if i < o.len() && (j == n.len() || at(i + 1, j) >= at(i, j + 1)) {
                ops.push(Op::Del(prefix + i));
                i += 1;
            } else {
                ops.push(Op::Add(prefix + j, prefix + i));
                j += 1;
            }
        }
    }
    ops.extend((0..suffix).map(|_| Op::Same));
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_summary_shows_changed_lines_only() {
        let summary = diff_summary("x.flow", "a\nb\nc\nd\n", "a\nB\nc\nd\ne\n");
        assert_eq!(
            summary,
            "Diff in x.flow:\n@@ line 2 @@\n-b\n+B\n@@ line 5 @@\n+e\n"
        );
    }
}
