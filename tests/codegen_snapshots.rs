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

/// The code generated for `source`, which must check without errors.
fn emit(source: &str) -> String {
    let file = flowc::syntax::parse_file(source).expect("parses");
    let checked = flowc::check::check(&file);
    assert!(!checked.has_errors(), "{:?}", checked.diagnostics);
    flowc::codegen::generate(&file, &checked.program, source)
}

/// A sync flow whose body is `body` (and `on failure` block `on_failure`).
fn sync_flow(body: &str, on_failure: &str) -> String {
    format!(
        "integration probe\n\nflow answer {{\n  trigger sync POST \"/answer/{{id}}\" timeout 5s\n\n{body}\n{on_failure}\n}}\n"
    )
}

#[test]
fn sync_flows_say_whether_they_read_the_request_headers() {
    let cases = [
        // Other parts of the trigger only.
        (
            "  respond 200, { id: trigger.params.id, at: trigger.received_at, b: trigger.body }",
            "",
            false,
        ),
        ("  respond 200, { tag: trigger.headers[\"x-tag\"] ?? \"\" }", "", true),
        // The whole trigger may reach them.
        ("  let t = trigger\n  respond 200, { id: t.params.id }", "", true),
        // In the `on failure` block too.
        (
            "  respond 200, {}",
            "  on failure {\n    step alert = http.post(\"http://alerts.test\", json: { tag: trigger.headers[\"x-tag\"] ?? \"\" })\n  }",
            true,
        ),
    ];
    for (body, on_failure, reads) in cases {
        let code = emit(&sync_flow(body, on_failure));
        assert!(
            code.contains(&format!("reads_headers: {reads}")),
            "expected reads_headers: {reads} for\n{body}\n{on_failure}\n---\n{code}"
        );
    }
}
