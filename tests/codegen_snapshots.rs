//! Golden generated code for every example: a change in code generation
//! shows up as a reviewable diff of `flowc emit` output. (That the code
//! compiles and runs is covered by the end-to-end tests, which build every
//! example.)

use std::path::Path;

#[test]
fn generated_code_of_every_example() {
    let mut examples: Vec<_> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"))
            .expect("examples/ exists")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "flow"))
            .collect();
    examples.sort();
    assert!(!examples.is_empty());
    for path in examples {
        let source = std::fs::read_to_string(&path).expect("readable example");
        let file = flowc::syntax::parse_file(&source).expect("example parses");
        let checked = flowc::check::check(&file);
        assert!(
            !checked.has_errors(),
            "{} has errors: {:?}",
            path.display(),
            checked.diagnostics
        );
        if !flowc::codegen::unsupported(&file).is_empty() {
            continue;
        }
        let code = flowc::codegen::generate(&file, &checked.program, &source);
        assert!(
            syn::parse_file(&code).is_ok(),
            "{}: generated code does not parse",
            path.display()
        );
        let name = path
            .file_stem()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        insta::assert_snapshot!(format!("emit_{name}"), code);
    }
}
