//! `flowc fmt`: for every example, every `tests/check_ok`, `tests/flows`
//! and `tests/fmt` program (the last ones deliberately ugly: odd spacing,
//! missing and extra commas, comments everywhere), and for generated
//! variations of each (indentation stripped, everything on one line,
//! blank lines everywhere):
//!
//! - formatting is idempotent: `fmt(fmt(x)) == fmt(x)`;
//! - it never changes meaning: the tree is the same modulo spans, the
//!   checker reports the same diagnostics, and the generated Rust is the
//!   same;
//! - every comment survives, once.
//!
//! Also: the examples are formatted (`flowc fmt --check examples/*.flow`
//! passes), and the command's `--check`, in-place and syntax-error modes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use flowc::fmt::{comments, format_source};

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn flow_files(dir: &str) -> Vec<PathBuf> {
    let dir = workspace().join(dir);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "flow"))
        .collect();
    files.sort();
    files
}

fn corpus() -> Vec<(String, String)> {
    let mut files = Vec::new();
    for dir in [
        "examples",
        "benches",
        "tests/check_ok",
        "tests/flows",
        "tests/fmt",
    ] {
        files.extend(flow_files(dir));
    }
    assert!(files.len() >= 10, "only {} files", files.len());
    // The diagnostics cases that parse (their mistakes are the checker's
    // business): odd but valid syntax, which must format as well.
    files.extend(flow_files("tests/diagnostics"));
    files
        .into_iter()
        .filter_map(|p| {
            let source = fs::read_to_string(&p).expect("readable");
            let parses = flowc::syntax::parse_file(&source).is_ok();
            parses.then(|| (p.display().to_string(), source))
        })
        .collect()
}

/// The tree's debug form with every `Span { start: .., end: .. }` erased.
fn tree_without_spans(source: &str) -> String {
    let file = flowc::syntax::parse_file(source).expect("parses");
    let text = format!("{file:?}");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(i) = rest.find("Span { start: ") {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let end = after.find('}').expect("span closes") + 1;
        out.push_str("Span");
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// What the checker and code generation make of a program: the
/// diagnostics (code and message) and, if it checks, the generated Rust.
/// Files the program names are read from `dir`.
fn meaning(source: &str, dir: Option<&Path>) -> (Vec<String>, Option<String>) {
    let file = flowc::syntax::parse_file(source).expect("parses");
    let checked = flowc::check::check_in(&file, dir);
    let diagnostics = checked
        .diagnostics
        .iter()
        .map(|d| format!("{} {}", d.code.as_str(), d.message))
        .collect();
    let code = (!checked.has_errors() && flowc::codegen::unsupported(&file).is_empty())
        // The source text only feeds the embedded source hash.
        .then(|| flowc::codegen::generate(&file, &checked.program, ""));
    (diagnostics, code)
}

fn comment_texts(source: &str) -> Vec<String> {
    let mut texts: Vec<String> = comments(source).into_iter().map(|c| c.text).collect();
    texts.sort();
    texts
}

/// Asserts the three properties for one source text of the file `path`
/// (`name` says which variation); returns the formatted text.
fn assert_formats_well(path: &str, name: &str, source: &str) -> String {
    let dir = Path::new(path).parent();
    let once = format_source(source).unwrap_or_else(|d| panic!("{name} does not parse: {d:?}"));
    let twice = format_source(&once)
        .unwrap_or_else(|d| panic!("{name}: the formatted text does not parse: {d:?}\n{once}"));
    assert_eq!(once, twice, "{name}: formatting is not idempotent");
    assert_eq!(
        tree_without_spans(source),
        tree_without_spans(&once),
        "{name}: the tree changed\n{once}"
    );
    let (diags_before, code_before) = meaning(source, dir);
    let (diags_after, code_after) = meaning(&once, dir);
    assert_eq!(diags_before, diags_after, "{name}: diagnostics changed");
    assert_eq!(code_before, code_after, "{name}: generated code changed");
    assert_eq!(
        comment_texts(source),
        comment_texts(&once),
        "{name}: comments lost or duplicated\n{once}"
    );
    for line in once.lines() {
        assert!(!line.ends_with(' '), "{name}: trailing space in {line:?}");
    }
    assert!(once.ends_with('\n') && !once.ends_with("\n\n"), "{name}");
    once
}

#[test]
fn formatting_is_idempotent_and_keeps_meaning_and_comments() {
    for (name, source) in corpus() {
        assert_formats_well(&name, &name, &source);
    }
}

// ---------------------------------------------------------------- variations

/// Rewrites every run of whitespace outside strings with `f(run,
/// after_comment)`. Strings, with their interpolations, are kept whole.
fn map_whitespace(source: &str, f: impl Fn(&str, bool) -> String) -> String {
    let bytes = source.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    let mut after_comment = false;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_whitespace() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            out.push_str(&f(&source[start..i], after_comment));
            after_comment = false;
        } else if source[i..].starts_with("//") {
            let end = source[i..].find('\n').map_or(source.len(), |n| i + n);
            out.push_str(&source[i..end]);
            i = end;
            after_comment = true;
        } else if b == b'"' {
            let end = string_end(source, i);
            out.push_str(&source[i..end]);
            i = end;
        } else {
            let c = source[i..].chars().next().expect("char");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The end of the string literal opening at `start` (interpolations hold
/// code, which may hold strings and braces).
fn string_end(source: &str, start: usize) -> usize {
    let bytes = source.as_bytes();
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                let mut depth = 0;
                i += 1;
                while i < bytes.len() {
                    match bytes[i] {
                        b'{' => depth += 1,
                        b'}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        b'"' => {
                            i = string_end(source, i);
                            continue;
                        }
                        _ => {}
                    }
                    i += 1;
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    source.len()
}

/// Newlines kept, indentation and spacing collapsed.
fn unindented(source: &str) -> String {
    map_whitespace(source, |run, _| {
        let newlines = run.matches('\n').count();
        if newlines == 0 {
            " ".to_string()
        } else {
            "\n".repeat(newlines)
        }
    })
}

/// Everything on one line, but for the line ends that close comments.
fn one_line(source: &str) -> String {
    map_whitespace(source, |_, after_comment| {
        if after_comment { "\n" } else { " " }.to_string()
    })
}

/// A blank line and odd indentation between any two tokens.
fn spread(source: &str) -> String {
    map_whitespace(source, |_, _| "\n\n     ".to_string())
}

#[test]
fn generated_variations_format_well() {
    for (name, source) in corpus() {
        let formatted = format_source(&source).expect("parses");
        let variant = unindented(&source);
        let out = assert_formats_well(&name, &format!("{name} (unindented)"), &variant);
        assert_eq!(
            out, formatted,
            "{name}: the layout depends on the source's indentation"
        );
        assert_formats_well(&name, &format!("{name} (one line)"), &one_line(&source));
        assert_formats_well(&name, &format!("{name} (spread)"), &spread(&source));
    }
}

// ---------------------------------------------------------------- details

#[test]
fn ugly_input_gets_the_canonical_layout() {
    let source = "integration   x\nconfig{a:Url b: Int=1,}\ntype T{x:Int,y:[String]}\n\
                  flow f{trigger webhook POST \"/x\"{body:T}\n\
                  step s=http.post(\"${config.a}/y\",json:{ n : trigger.body.x,},) retry 3\n\
                  if s.status==200{skip \"ok\"}}\n";
    let expected = "integration x

config {
  a: Url
  b: Int = 1
}

type T {
  x: Int
  y: [String]
}

flow f {
  trigger webhook POST \"/x\" {
    body: T
  }
  step s = http.post(\"${config.a}/y\", json: { n: trigger.body.x }) retry 3
  if s.status == 200 { skip \"ok\" }
}
";
    assert_eq!(format_source(source).expect("parses"), expected);
}

#[test]
fn instance_statements_get_the_canonical_layout() {
    let source = "integration x\nflow f{trigger webhook POST \"/x\"}\n\
                  test \"a\"{instance   \"acme\"\n  from\"customers/acme.toml\" // acme\n\
                  run f with {body:{}}}\ntest \"b\" { instance\n\"globex\" run f with {body:{}} }\n";
    let expected = "integration x

flow f {
  trigger webhook POST \"/x\"
}

test \"a\" {
  instance \"acme\" from \"customers/acme.toml\" // acme
  run f with { body: {} }
}

test \"b\" {
  instance \"globex\"
  run f with { body: {} }
}
";
    assert_eq!(format_source(source).expect("parses"), expected);
}

#[test]
fn long_records_and_calls_break_one_entry_per_line() {
    let source = "integration x\nflow f {\n  trigger webhook POST \"/x\"\n  \
                  let r = { first_name: trigger.body.first_name, last_name: trigger.body.last_name }\n  \
                  let e = json.encode({ first_name: trigger.body.first_name, last_name: trigger.body.last_name })\n  \
                  skip \"${r} ${e}\"\n}\n";
    let expected = "integration x

flow f {
  trigger webhook POST \"/x\"
  let r = {
    first_name: trigger.body.first_name,
    last_name: trigger.body.last_name,
  }
  let e = json.encode({
    first_name: trigger.body.first_name,
    last_name: trigger.body.last_name,
  })
  skip \"${r} ${e}\"
}
";
    assert_eq!(format_source(source).expect("parses"), expected);
}

#[test]
fn comments_keep_their_places() {
    let source = "// head\n/// doc\nintegration x // after name\n\n\n\
                  flow f { // after brace\n  trigger webhook POST \"/x\"\n\n\n  // own line\n  \
                  let a = 1 // trailing\n  let b = [1, // one\n  2]\n  skip \"${a} ${b}\"\n  \
                  // before the end\n}\n// tail\n";
    let expected = "// head
/// doc
integration x // after name

flow f { // after brace
  trigger webhook POST \"/x\"

  // own line
  let a = 1 // trailing
  let b = [
    1, // one
    2,
  ]
  skip \"${a} ${b}\"
  // before the end
}
// tail
";
    assert_eq!(format_source(source).expect("parses"), expected);
}

#[test]
fn syntax_errors_are_reported_not_formatted() {
    let diagnostics = format_source("integration x\nflow f {\n").expect_err("syntax error");
    assert!(!diagnostics.is_empty());
}

// ---------------------------------------------------------------- the command

fn flowc(args: &[&str], dir: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("flowc runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn examples_are_formatted() {
    for path in flow_files("examples")
        .into_iter()
        .chain(flow_files("benches"))
    {
        let source = fs::read_to_string(&path).expect("readable");
        let formatted = format_source(&source).expect("parses");
        assert!(
            formatted == source,
            "{} is not formatted: run `flowc fmt {}`\n{}",
            path.display(),
            path.display(),
            flowc::fmt::diff_summary(&path.display().to_string(), &source, &formatted)
        );
    }
    let mut args = vec!["fmt".to_string(), "--check".to_string()];
    args.extend(
        flow_files("examples")
            .iter()
            .map(|p| p.display().to_string()),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = flowc(&args, workspace());
    assert_eq!(code, 0, "{stdout}{stderr}");
}

#[test]
fn check_lists_unformatted_files_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ugly = "integration x\nflow f {   trigger deploy\n skip   \"done\" }\n";
    let tidy = "integration x\n\nflow f {\n  trigger deploy\n  skip \"done\"\n}\n";
    fs::write(dir.path().join("ugly.flow"), ugly).expect("write");
    fs::write(dir.path().join("tidy.flow"), tidy).expect("write");

    let (code, stdout, stderr) = flowc(&["fmt", "--check", "ugly.flow", "tidy.flow"], dir.path());
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("Diff in ugly.flow:"), "{stdout}");
    assert!(stdout.contains("-flow f {   trigger deploy"), "{stdout}");
    assert!(stdout.contains("+  trigger deploy"), "{stdout}");
    assert!(!stdout.contains("tidy.flow"), "{stdout}");
    assert!(
        stderr.contains("1 file(s) would be reformatted: ugly.flow"),
        "{stderr}"
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("ugly.flow")).expect("read"),
        ugly
    );

    let (code, _, stderr) = flowc(&["fmt", "--check", "tidy.flow"], dir.path());
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn fmt_rewrites_files_in_place() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("x.flow");
    fs::write(
        &path,
        "integration x\nflow f {   trigger deploy\n skip   \"done\" }\n",
    )
    .expect("write");
    let (code, _, stderr) = flowc(&["fmt", "x.flow"], dir.path());
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("formatted x.flow"), "{stderr}");
    assert_eq!(
        fs::read_to_string(&path).expect("read"),
        "integration x\n\nflow f {\n  trigger deploy\n  skip \"done\"\n}\n"
    );
    // No temporary file left behind.
    let names: Vec<_> = fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["x.flow"]);
    let (code, _, stderr) = flowc(&["fmt", "--check", "x.flow"], dir.path());
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_file_with_syntax_errors_is_left_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("broken.flow");
    let source = "integration x\nflow f {   trigger deploy\n skip   \"done\"\n";
    fs::write(&path, source).expect("write");
    for args in [
        &["fmt", "broken.flow"][..],
        &["fmt", "--check", "broken.flow"],
    ] {
        let (code, _, stderr) = flowc(args, dir.path());
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("E0001"), "{stderr}");
        assert!(
            stderr.contains("broken.flow: not formatted (syntax errors)"),
            "{stderr}"
        );
        assert_eq!(fs::read_to_string(&path).expect("read"), source);
    }
}

#[test]
fn a_missing_file_is_an_io_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, _, stderr) = flowc(&["fmt", "nope.flow"], dir.path());
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cannot read nope.flow"), "{stderr}");
}
