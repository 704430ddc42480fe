//! `docs/diagnostics.md` is the reference of every code and what
//! `flowc explain` prints. Its examples are programs, so they are checked:
//! each section's "Wrong" program reports the section's code, its "Fixed"
//! program reports no error and not that code, and every code has a
//! section. A ```toml block between the label and the program, whose first
//! line is `# PATH`, is a file next to the program (a test's `instance ...
//! from "PATH"`).

use std::fs;
use std::path::Path;

use tempfile::TempDir;

use flowc::check::check_source_in;
use flowc::diagnostics::Code;

/// The page's sections: (heading line, body up to the next section).
fn sections(page: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find("\n## ") {
        let after = &rest[start + 1..];
        let end = after[3..].find("\n## ").map_or(after.len(), |i| i + 3);
        let section = &after[..end];
        let heading = section.lines().next().unwrap_or_default();
        out.push((heading, section));
        rest = &after[end..];
    }
    out
}

/// The first ```flow block after `label` in a section.
fn block<'a>(section: &'a str, label: &str) -> Option<&'a str> {
    let after = &section[section.find(label)? + label.len()..];
    let open = after.find("```flow\n")? + "```flow\n".len();
    let body = &after[open..];
    Some(&body[..body.find("\n```")?])
}

/// The files of the ```toml blocks between `label` and its ```flow block,
/// written to a new folder: where the program is checked.
fn files_of(section: &str, label: &str) -> TempDir {
    let dir = tempfile::tempdir().expect("temporary folder");
    let Some(at) = section.find(label) else {
        return dir;
    };
    let after = &section[at + label.len()..];
    let mut rest = &after[..after.find("```flow\n").unwrap_or(after.len())];
    while let Some(open) = rest.find("```toml\n") {
        let body = &rest[open + "```toml\n".len()..];
        let Some(end) = body.find("\n```") else { break };
        let text = &body[..end];
        let first = text.lines().next().unwrap_or_default();
        if let Some(name) = first.strip_prefix("# ") {
            let path = dir.path().join(name.trim());
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).expect("folder for a doc's file");
            }
            fs::write(&path, text).expect("a doc's file");
        }
        rest = &body[end + 4..];
    }
    dir
}

fn codes_of(source: &str, dir: &Path) -> Vec<Code> {
    check_source_in(source, Some(dir))
        .diagnostics
        .iter()
        .map(|d| d.code)
        .collect()
}

#[test]
fn every_section_shows_its_code_wrong_and_fixed() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/diagnostics.md");
    let page = fs::read_to_string(&path).expect("docs/diagnostics.md");
    let mut failures = Vec::new();
    let mut documented = Vec::new();
    for (heading, section) in sections(&page) {
        let Some(code) = heading
            .strip_prefix("## ")
            .and_then(|h| h.split(':').next())
            .and_then(Code::parse)
        else {
            continue;
        };
        documented.push(code);
        let expected_heading = format!("## {}: {}", code.as_str(), code.title());
        if heading != expected_heading {
            failures.push(format!(
                "heading `{heading}`, expected `{expected_heading}`"
            ));
        }
        let name = code.as_str();
        let (Some(wrong), Some(fixed)) = (block(section, "Wrong:"), block(section, "Fixed:"))
        else {
            failures.push(format!("{name}: needs a Wrong: and a Fixed: ```flow block"));
            continue;
        };
        // Whole programs; E0006's mistake is where `integration` is.
        if !fixed.starts_with("integration ") || !wrong.contains("integration ") {
            failures.push(format!("{name}: the programs must be whole files"));
        }
        let wrong_dir = files_of(section, "Wrong:");
        let fixed_dir = files_of(section, "Fixed:");
        let wrong_codes = codes_of(wrong, wrong_dir.path());
        if !wrong_codes.contains(&code) {
            failures.push(format!("{name}: the wrong program reports {wrong_codes:?}"));
        }
        let fixed_diags = check_source_in(fixed, Some(fixed_dir.path())).diagnostics;
        if fixed_diags.iter().any(|d| d.is_error() || d.code == code) {
            let got: Vec<&str> = fixed_diags.iter().map(|d| d.code.as_str()).collect();
            failures.push(format!("{name}: the fixed program reports {got:?}"));
        }
        if code
            .explanation()
            .is_none_or(|e| !e.starts_with(&expected_heading))
        {
            failures.push(format!("{name}: `flowc explain` does not find the section"));
        }
    }
    for code in Code::ALL {
        if !documented.contains(code) {
            failures.push(format!("{}: no section", code.as_str()));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
