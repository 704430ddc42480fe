//! Every whole program shown in the README and docs/language.md checks:
//! a ```flow block that contains an `integration` line is a program a
//! reader may copy, so it must be valid (blocks without one are fragments).

use std::path::Path;

fn flow_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```flow") => current = Some(String::new()),
            (Some(_), l) if l.starts_with("```") => blocks.extend(current.take()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn whole_programs_in_the_docs_check() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for doc in ["README.md", "docs/language.md"] {
        let text = std::fs::read_to_string(root.join(doc)).expect("doc exists");
        for block in flow_blocks(&text) {
            if !block
                .lines()
                .any(|l| l.trim_start().starts_with("integration "))
            {
                continue;
            }
            let result = flowc::check::check_source(&block);
            let errors: Vec<_> = result.diagnostics.iter().filter(|d| d.is_error()).collect();
            assert!(
                errors.is_empty(),
                "{doc}: a program does not check:\n{block}\n{errors:#?}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 3, "only {checked} programs found");
}
