//! Golden generated code for every example: a change in code generation
//! shows up as a reviewable diff of `flowc emit` output, one test (and one
//! snapshot, `emit_<example>`) per example. That the code compiles without
//! warnings is `generated_code_warnings.rs`; that it runs, the end-to-end
//! tests.

use std::path::Path;

/// One `#[test]` per example, and the list of examples they cover.
macro_rules! snapshot_tests {
    ($($example:ident),* $(,)?) => {
        $(
            #[test]
            fn $example() {
                assert_generated_code_snapshot(stringify!($example));
            }
        )*

        /// Every example a test above snapshots.
        const COVERED: &[&str] = &[$(stringify!($example)),*];
    };
}

snapshot_tests! {
    bug_export,
    crm_contacts,
    crm_events,
    crm_helpdesk,
    crm_per_customer,
    customer_lookup,
    db_export,
    email_orders,
    file_import,
    inventory_sync,
    kafka_orders,
    nightly_poll,
    order_xml_export,
    quickstart,
    report_export,
    s3_drop_folder,
    shop_erp,
    shop_events,
    webhook_registration,
}

fn examples_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn assert_generated_code_snapshot(example: &str) {
    let path = examples_dir().join(format!("{example}.flow"));
    let source = std::fs::read_to_string(&path).expect("readable example");
    let file = flowc::syntax::parse_file(&source).expect("example parses");
    let checked = flowc::check::check_in(&file, Some(&examples_dir()));
    assert!(
        !checked.has_errors(),
        "{} has errors: {:?}",
        path.display(),
        checked.diagnostics
    );
    assert!(
        flowc::codegen::unsupported(&file).is_empty(),
        "{example} uses what flowc does not build yet"
    );
    let code = flowc::codegen::generate(&file, &checked.program, &source);
    assert!(
        syn::parse_file(&code).is_ok(),
        "{}: generated code does not parse",
        path.display()
    );
    insta::assert_snapshot!(format!("emit_{example}"), code);
}

#[test]
fn every_example_has_a_snapshot_test() {
    let missing: Vec<String> = std::fs::read_dir(examples_dir())
        .expect("examples/ exists")
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".flow").map(str::to_string)
        })
        .filter(|example| !COVERED.contains(&example.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "add these examples to `snapshot_tests!`: {missing:?}"
    );
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

#[test]
fn an_instance_file_is_embedded_in_the_test() {
    let dir = tempfile::tempdir().expect("temporary folder");
    std::fs::write(
        dir.path().join("acme.toml"),
        "api_url = \"https://acme.example\"\nbatch = \"25\"\nwait = \"30s\"\n",
    )
    .expect("write");
    let source = "integration probe\n\nconfig {\n  api_url: Url\n  batch: Int = 1\n  wait: Duration = 1s\n}\n\n\
                  flow relay {\n  trigger webhook POST \"/x\" {\n    auth: none\n  }\n\n  \
                  step send = http.post(\"${config.api_url}/x?n=${config.batch}&w=${config.wait}\", json: trigger.body)\n}\n\n\
                  test \"acme\" {\n  instance \"acme\" from \"acme.toml\"\n  run relay with { body: {} }\n}\n\n\
                  test \"no file\" {\n  instance \"globex\"\n  config {\n    api_url: \"http://globex.test\"\n  }\n  run relay with { body: {} }\n}\n";
    let file = flowc::syntax::parse_file(source).expect("parses");
    let checked = flowc::check::check_in(&file, Some(dir.path()));
    assert!(!checked.has_errors(), "{:?}", checked.diagnostics);
    let code = flowc::codegen::generate(&file, &checked.program, source);
    // The values as the file gives them: the runtime reads them like an
    // instance's config (text for an Int or a Duration).
    let flat: String = code.split_whitespace().collect::<Vec<_>>().join(" ");
    let acme = r#"instance: Some(TestInstance { name: "acme", config: "{\"api_url\":\"https://acme.example\",\"batch\":\"25\",\"wait\":\"30s\"}", }),"#;
    assert!(flat.contains(acme), "{code}");
    let globex = r#"instance: Some(TestInstance { name: "globex", config: "{}", }),"#;
    assert!(flat.contains(globex), "{code}");
}
