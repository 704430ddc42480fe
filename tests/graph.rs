//! `flowc graph`: snapshots of every example's graph in both formats, the
//! page `docs/graphs.md` (which this test keeps true: it fails while the
//! page is stale, and `FLOWC_UPDATE_DOCS=1` rewrites it), and the command.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use flowc::graph::{render, Format};

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn examples() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(workspace().join("examples"))
        .expect("examples/ exists")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "flow"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    files
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .expect("file name")
        .to_string_lossy()
        .into_owned()
}

fn graph_of(path: &Path, format: Format) -> String {
    let source = fs::read_to_string(path).expect("readable");
    let file = flowc::syntax::parse_file(&source).expect("example parses");
    render(&file, &source, format)
}

#[test]
fn graph_of_every_example() {
    for path in examples() {
        let name = stem(&path);
        insta::assert_snapshot!(format!("{name}_mermaid"), graph_of(&path, Format::Mermaid));
        insta::assert_snapshot!(format!("{name}_dot"), graph_of(&path, Format::Dot));
    }
}

/// Mermaid's rules that GitHub's renderer enforces and that are easy to
/// break: a `flowchart` header, alphanumeric ids, labels in double quotes
/// with no raw `"` inside, balanced `subgraph`/`end`.
#[test]
fn mermaid_output_keeps_to_the_syntax_github_renders() {
    for path in examples() {
        let text = graph_of(&path, Format::Mermaid);
        let mut lines = text.lines().filter(|l| !l.starts_with("%%"));
        assert_eq!(lines.next(), Some("flowchart TD"));
        let mut depth = 0i32;
        for line in lines {
            let line = line.trim();
            if line.starts_with("subgraph ") {
                depth += 1;
            } else if line == "end" {
                depth -= 1;
            }
            let id: String = line
                .split_once(' ')
                .map_or(line, |(first, _)| first)
                .split(['(', '[', '{'])
                .next()
                .unwrap_or_default()
                .to_string();
            if !["subgraph", "end", "classDef", "class"].contains(&id.as_str()) {
                assert!(
                    id.chars().all(|c| c.is_ascii_alphanumeric()),
                    "{}: id {id:?} in {line:?}",
                    path.display()
                );
            }
            // Every `"` opens or closes a label: an even count per line.
            assert_eq!(line.matches('"').count() % 2, 0, "{line}");
        }
        assert_eq!(depth, 0, "{}", path.display());
    }
}

fn graphs_page() -> String {
    let mut page = String::from(
        "# Graphs of the examples\n\n\
         `flowc graph FILE` draws an integration's flows: each flow's trigger, its\n\
         steps, branches (`if` conditions and `match` arms), loops, `dispatch`es\n\
         (dashed edges to the dispatched flow) and its ends (`respond`, `skip`,\n\
         `fail`). See [tools.md](tools.md#flowc-graph) for the command.\n\n\
         This page is generated from `examples/` by `tests/graph.rs`, which fails\n\
         when it is stale; after changing an example, refresh it with\n\
         `FLOWC_UPDATE_DOCS=1 cargo test --test graph`.\n",
    );
    for path in examples() {
        let name = stem(&path);
        let source = fs::read_to_string(&path).expect("readable");
        let file = flowc::syntax::parse_file(&source).expect("example parses");
        page.push_str(&format!(
            "\n## {name}\n\n[examples/{name}.flow](../examples/{name}.flow)"
        ));
        if let Some(doc) = file.doc.as_deref().and_then(|d| d.lines().next()) {
            page.push_str(&format!(": {doc}"));
        }
        page.push_str(&format!(
            "\n\n```mermaid\n{}```\n",
            render(&file, &source, Format::Mermaid)
        ));
    }
    page
}

#[test]
fn docs_graphs_page_is_up_to_date() {
    let path = workspace().join("docs/graphs.md");
    let expected = graphs_page();
    if std::env::var_os("FLOWC_UPDATE_DOCS").is_some() {
        fs::write(&path, &expected).expect("write docs/graphs.md");
        return;
    }
    let actual = fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "docs/graphs.md is stale: run `FLOWC_UPDATE_DOCS=1 cargo test --test graph`"
    );
}

#[test]
fn the_command_prints_the_graph() {
    let path = workspace().join("examples/crm_events.flow");
    for (flag, format) in [("mermaid", Format::Mermaid), ("dot", Format::Dot)] {
        let out = Command::new(env!("CARGO_BIN_EXE_flowc"))
            .args(["graph", "--format", flag])
            .arg(&path)
            .output()
            .expect("flowc runs");
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            graph_of(&path, format)
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .arg("graph")
        .arg(&path)
        .output()
        .expect("flowc runs");
    assert!(String::from_utf8_lossy(&out.stdout)
        .starts_with("%% integration crm_events\nflowchart TD\n"));
}

#[test]
fn a_file_with_syntax_errors_has_no_graph() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("broken.flow");
    fs::write(&path, "integration x\nflow f {\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .arg("graph")
        .arg(&path)
        .env("NO_COLOR", "1")
        .output()
        .expect("flowc runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("E0001"));
}
