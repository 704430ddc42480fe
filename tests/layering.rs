//! The top-level modules of a crate form a one-way graph: no module reaches,
//! through its `crate::x` references, a module that reaches it back.
//!
//! A top-level module is `src/x.rs` together with `src/x/`. Its edges are
//! the `crate::y` paths in its code (including `use crate::{y, z}`), with
//! comments, string literals, `#[cfg(test)]` items and `tests.rs` files left
//! out: test code may reach across layers. `lib.rs` and `main.rs` are the
//! roots that list the modules, not modules themselves.
//!
//! The runtime goes further: its modules are the layers of
//! docs/architecture.md, and each may use only those below it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Which top-level modules each top-level module references.
type ModuleGraph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn compiler_modules_form_no_import_cycle() {
    assert_acyclic("src");
}

#[test]
fn runtime_modules_form_no_import_cycle() {
    assert_acyclic("runtime/src");
}

/// The runtime's layers, bottom first (docs/architecture.md); modules on
/// one line are adapters side by side and may not use each other.
const RUNTIME_LAYERS: &[&[&str]] = &[
    &["core"],
    &["store"],
    &["engine"],
    &["io"],
    &["brokers", "steps", "triggers"],
    &["host"],
    &["instances"],
    &["testing"],
    &["cli"],
];

#[test]
fn runtime_modules_use_only_lower_layers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("runtime/src");
    let graph = module_graph(&dir);
    let layer_of = |module: &str| RUNTIME_LAYERS.iter().position(|l| l.contains(&module));
    let mut wrong = Vec::new();
    for (module, uses) in &graph {
        let Some(layer) = layer_of(module) else {
            wrong.push(format!("{module} is in no layer of RUNTIME_LAYERS"));
            continue;
        };
        for used in uses {
            if layer_of(used).is_none_or(|l| l >= layer) {
                wrong.push(format!("{module} uses {used}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "runtime modules reaching up or sideways:\n  {}",
        wrong.join("\n  ")
    );
}

#[test]
fn a_cycle_between_modules_is_found_and_named() {
    let dir = std::env::temp_dir().join(format!("flowc-layering-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("b")).unwrap();
    fs::write(dir.join("lib.rs"), "pub mod a;\npub mod b;\n").unwrap();
    fs::write(dir.join("a.rs"), "use crate::b::inner;\n").unwrap();
    fs::write(dir.join("b.rs"), "mod inner;\n").unwrap();
    fs::write(
        dir.join("b/inner.rs"),
        "// crate::c in a comment\nuse crate::{a, b};\n",
    )
    .unwrap();
    let graph = module_graph(&dir);
    fs::remove_dir_all(&dir).unwrap();
    assert_eq!(find_cycle(&graph), Some(names(&["a", "b", "a"])));
}

#[test]
fn test_code_and_comments_make_no_edges() {
    let source = r#"
//! See [`crate::doc_only`].
use crate::real;
const TEXT: &str = "crate::in_a_string { ";
#[cfg(test)]
mod tests {
    use crate::from_tests;
    fn brace() -> char { '{' }
}
#[cfg(test)]
mod more_tests;
fn after<'a>(x: &'a str) -> &'a str { crate::after::f(x) }
"#;
    let edges = crate_references(&production_code(source));
    assert_eq!(edges, names(&["after", "real"]).into_iter().collect());
}

/// Fails, printing the cycle, when the top-level modules of the crate whose
/// sources are in `src_dir` (relative to the workspace root) import each
/// other in a cycle.
fn assert_acyclic(src_dir: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(src_dir);
    let graph = module_graph(&dir);
    assert!(graph.len() > 1, "no modules found in {}", dir.display());
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "import cycle between the top-level modules of {src_dir}: {}\nmodule graph:\n{}",
            cycle.join(" -> "),
            graph
                .iter()
                .map(|(module, uses)| format!("  {module} -> {}", join(uses)))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

fn join(names: &BTreeSet<String>) -> String {
    names.iter().cloned().collect::<Vec<_>>().join(", ")
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Every top-level module of `dir` with the other top-level modules it names.
fn module_graph(dir: &Path) -> ModuleGraph {
    let modules = top_level_modules(dir);
    modules
        .iter()
        .map(|module| {
            let mut uses = BTreeSet::new();
            for file in module_files(dir, module) {
                let source = fs::read_to_string(&file).unwrap();
                uses.extend(crate_references(&production_code(&source)));
            }
            uses.retain(|used| used != module && modules.contains(used));
            (module.clone(), uses)
        })
        .collect()
}

fn top_level_modules(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter_map(|path| {
            let name = path.file_stem()?.to_str()?.to_string();
            let is_module = path.is_dir() || path.extension().is_some_and(|ext| ext == "rs");
            (is_module && name != "lib" && name != "main").then_some(name)
        })
        .collect()
}

/// `dir/module.rs` and every `.rs` file under `dir/module/`, except
/// `tests.rs` files (unit tests kept beside the code).
fn module_files(dir: &Path, module: &str) -> Vec<PathBuf> {
    let mut files = vec![dir.join(format!("{module}.rs"))];
    collect_rs_files(&dir.join(module), &mut files);
    files.retain(|file| file.is_file() && !file.ends_with("tests.rs"));
    files
}

fn collect_rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for path in entries.map(|entry| entry.unwrap().path()) {
        if path.is_dir() {
            collect_rs_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// The source with comments, string and char literals blanked out and every
/// item marked `#[cfg(test)]` removed, so that only code that is compiled
/// into the crate remains.
fn production_code(source: &str) -> String {
    let code = blank_comments_and_literals(source);
    let mut kept = String::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("#[cfg(test)]") {
        kept.push_str(&rest[..at]);
        rest = skip_item(&rest[at + "#[cfg(test)]".len()..]);
    }
    kept.push_str(rest);
    kept
}

/// What follows the item at the start of `code`: an item ends at its first
/// `;` outside braces (`mod tests;`) or at the brace closing its body.
fn skip_item(code: &str) -> &str {
    let mut depth = 0usize;
    for (i, c) in code.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 1 => return &code[i + 1..],
            '}' => depth = depth.saturating_sub(1),
            ';' if depth == 0 => return &code[i + 1..],
            _ => {}
        }
    }
    ""
}

/// Replaces comments and the contents of string and char literals with
/// spaces, so that braces and paths inside them are not taken for code.
/// Raw strings (`r#"..."#`) and lifetimes (`'a`) are told apart from
/// ordinary strings and char literals.
fn blank_comments_and_literals(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        let rest = &chars[i..];
        let end = match rest {
            ['/', '/', ..] => i + rest.iter().position(|&c| c == '\n').unwrap_or(rest.len()),
            ['/', '*', ..] => i + block_comment_len(rest),
            ['r', '#' | '"', ..] if raw_string_len(rest).is_some() => {
                i + raw_string_len(rest).unwrap_or(1)
            }
            ['"', ..] => i + quoted_len(rest, '"'),
            ['\'', '\\', ..] | ['\'', _, '\'', ..] => i + quoted_len(rest, '\''),
            [c, ..] => {
                out.push(*c);
                i += 1;
                continue;
            }
            [] => break,
        };
        out.extend(
            chars[i..end]
                .iter()
                .map(|&c| if c == '\n' { '\n' } else { ' ' }),
        );
        i = end;
    }
    out
}

/// Length of the `/* ... */` comment at the start of `rest` (they nest).
fn block_comment_len(rest: &[char]) -> usize {
    let (mut depth, mut i) = (0usize, 0);
    while i < rest.len() {
        match (rest[i], rest.get(i + 1)) {
            ('/', Some('*')) => (depth, i) = (depth + 1, i + 2),
            ('*', Some('/')) if depth == 1 => return i + 2,
            ('*', Some('/')) => (depth, i) = (depth - 1, i + 2),
            _ => i += 1,
        }
    }
    rest.len()
}

/// Length of the string or char literal opened by `quote` at the start of
/// `rest`, escapes included.
fn quoted_len(rest: &[char], quote: char) -> usize {
    let mut i = 1;
    while i < rest.len() {
        match rest[i] {
            '\\' => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    rest.len()
}

/// Length of the raw string `r#"..."#` at the start of `rest`, if it is one.
fn raw_string_len(rest: &[char]) -> Option<usize> {
    let hashes = rest[1..].iter().take_while(|&&c| c == '#').count();
    if rest.get(1 + hashes) != Some(&'"') {
        return None;
    }
    let body_start = 2 + hashes;
    (body_start..rest.len())
        .find(|&i| {
            rest[i] == '"'
                && rest.len() > i + hashes
                && rest[i + 1..=i + hashes].iter().all(|&c| c == '#')
        })
        .map(|close| close + 1 + hashes)
        .or(Some(rest.len()))
}

/// The first segment of every `crate::x` path, and each name in
/// `crate::{x, y::z}`.
fn crate_references(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let preceded_by_ident = code[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        if preceded_by_ident {
            continue;
        }
        let after = &code[at + "crate::".len()..];
        match after.strip_prefix('{') {
            Some(group) => found.extend(group_heads(group)),
            None => {
                found.insert(leading_ident(after));
            }
        }
    }
    found.retain(|name| !name.is_empty());
    found
}

/// The first segment of each path in a `{a, b::c, d::{e, f}}` group
/// (`group` starts just after the opening brace).
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = vec![leading_ident(group.trim_start())];
    let mut depth = 0usize;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => heads.push(leading_ident(group[i + 1..].trim_start())),
            _ => {}
        }
    }
    heads
}

fn leading_ident(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// A path `a -> b -> ... -> a` through the graph, if there is one.
fn find_cycle(graph: &ModuleGraph) -> Option<Vec<String>> {
    let mut finished = BTreeSet::new();
    for start in graph.keys() {
        let mut path = Vec::new();
        if let Some(cycle) = cycle_from(graph, start, &mut path, &mut finished) {
            return Some(cycle);
        }
    }
    None
}

/// Depth-first search from `module`; `path` holds the modules on the way
/// here, `finished` those whose every successor was searched already.
fn cycle_from(
    graph: &ModuleGraph,
    module: &str,
    path: &mut Vec<String>,
    finished: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if let Some(at) = path.iter().position(|m| m == module) {
        let mut cycle = path[at..].to_vec();
        cycle.push(module.to_string());
        return Some(cycle);
    }
    if finished.contains(module) {
        return None;
    }
    path.push(module.to_string());
    for next in graph.get(module).into_iter().flatten() {
        if let Some(cycle) = cycle_from(graph, next, path, finished) {
            return Some(cycle);
        }
    }
    path.pop();
    finished.insert(module.to_string());
    None
}
