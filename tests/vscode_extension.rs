//! The VS Code extension under `editors/vscode/`: its JSON files parse, the
//! manifest points at files that exist, the grammar's includes resolve, its
//! patterns are well-formed (balanced groups and classes; the `regex` crate
//! is not a dependency, and TextMate uses Oniguruma anyway), and every
//! keyword of the language's grammar is highlighted.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("editors/vscode")
}

fn read_json(rel: &str) -> Value {
    let path = dir().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel} is not JSON: {e}"))
}

#[test]
fn manifest_declares_language_grammar_and_client() {
    let pkg = read_json("package.json");
    let lang = &pkg["contributes"]["languages"][0];
    assert_eq!(lang["id"], "flow");
    assert!(lang["extensions"]
        .as_array()
        .is_some_and(|e| e.iter().any(|x| x == ".flow")));
    let config = lang["configuration"]
        .as_str()
        .expect("language configuration");
    assert!(dir().join(config).is_file());
    let grammar = &pkg["contributes"]["grammars"][0];
    assert_eq!(grammar["language"], "flow");
    assert_eq!(grammar["scopeName"], "source.flow");
    let path = grammar["path"].as_str().expect("grammar path");
    assert!(dir().join(path).is_file());
    let main = pkg["main"].as_str().expect("main");
    let js = std::fs::read_to_string(dir().join(main)).expect("extension.js");
    assert!(js.contains("\"lsp\"") && js.contains("vscode-languageclient"));
    assert!(pkg["dependencies"]["vscode-languageclient"].is_string());
    assert!(
        !dir().join("node_modules").exists(),
        "do not vendor node_modules"
    );
}

#[test]
fn language_configuration() {
    let conf = read_json("language-configuration.json");
    assert_eq!(conf["comments"]["lineComment"], "//");
    let brackets: Vec<String> = conf["brackets"]
        .as_array()
        .expect("brackets")
        .iter()
        .map(|p| {
            format!(
                "{}{}",
                p[0].as_str().unwrap_or(""),
                p[1].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(brackets, ["{}", "[]", "()"]);
    let pairs = conf["autoClosingPairs"]
        .as_array()
        .expect("autoClosingPairs");
    assert!(pairs.iter().any(|p| p["open"] == "\""));
}

/// Every `match`/`begin`/`end` pattern, and every `include` target.
fn collect<'a>(v: &'a Value, patterns: &mut Vec<&'a str>, includes: &mut Vec<&'a str>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("match" | "begin" | "end", Value::String(s)) => patterns.push(s),
                    ("match" | "begin" | "end", other) => panic!("{k} is not a string: {other}"),
                    ("include", Value::String(s)) => includes.push(s),
                    _ => collect(v, patterns, includes),
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                collect(v, patterns, includes);
            }
        }
        _ => {}
    }
}

/// Balanced `(...)`, `{...}` outside classes and `[...]` classes, with
/// escapes skipped.
fn well_formed(pattern: &str) -> bool {
    let mut depth = 0i32;
    let mut in_class = false;
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.next().is_none() => return false,
            '\\' => {}
            '[' if !in_class => in_class = true,
            ']' if in_class => in_class = false,
            '(' if !in_class => depth += 1,
            ')' if !in_class => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => {}
        }
    }
    depth == 0 && !in_class && !pattern.is_empty()
}

#[test]
fn grammar_is_well_formed_and_covers_every_keyword() {
    let grammar = read_json("syntaxes/flow.tmLanguage.json");
    assert_eq!(grammar["scopeName"], "source.flow");
    let repo = grammar["repository"].as_object().expect("repository");
    let mut patterns = Vec::new();
    let mut includes = Vec::new();
    collect(&grammar, &mut patterns, &mut includes);
    assert!(patterns.len() > 20);
    for p in &patterns {
        assert!(well_formed(p), "malformed pattern: {p}");
    }
    for inc in includes {
        if let Some(name) = inc.strip_prefix('#') {
            assert!(
                repo.contains_key(name),
                "include {inc} has no repository entry"
            );
        } else {
            assert!(inc == "$self" || inc == "$base", "unexpected include {inc}");
        }
    }

    // Words of the keyword patterns.
    let mut kw_patterns = Vec::new();
    collect(
        &grammar["repository"]["keywords"],
        &mut kw_patterns,
        &mut Vec::new(),
    );
    let words: BTreeSet<&str> = kw_patterns
        .iter()
        .flat_map(|p| p.split(|c: char| !c.is_ascii_alphanumeric() && c != '_'))
        .collect();

    // Every keyword of the pest grammar (`kw_NAME = @{ "NAME" ...`).
    let pest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("grammar/flow.pest"))
            .expect("grammar/flow.pest");
    let keywords: Vec<&str> = pest
        .lines()
        .filter(|l| l.starts_with("kw_"))
        .filter_map(|l| l.split('"').nth(1))
        .collect();
    assert!(keywords.len() > 40, "{keywords:?}");
    // `rename` is highlighted by its own rule, after `@`.
    let missing: Vec<&&str> = keywords
        .iter()
        .filter(|k| !words.contains(**k) && **k != "rename")
        .collect();
    assert!(missing.is_empty(), "keywords not highlighted: {missing:?}");
    assert!(repo["rename"]["match"]
        .as_str()
        .is_some_and(|m| m.contains("rename")));

    // And every reserved word listed in docs/language.md §1.
    let reserved = "let step if else match for in dispatch skip fail respond true false null \
                    and or not as flow type integration test trigger";
    for w in reserved.split_whitespace() {
        assert!(words.contains(w), "reserved word `{w}` not highlighted");
    }
}
