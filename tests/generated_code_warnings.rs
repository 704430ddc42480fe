//! The generated code of every example (and of the relay benchmark and the
//! end-to-end tests' flows) compiles with rustc's warnings denied: the
//! generated file allows no warning but clippy's, and this proves it needs
//! none.
//!
//! Each file is one test (one cargo invocation), built like `flowc build
//! --debug` into the shared flowc cache with the hidden build option
//! `deny_warnings` — an attribute in the generated `main.rs`, so the
//! runtime compiled there for the end-to-end tests is reused as it is.
//! The crates are named apart from `flowc build`'s (`-warnings`), so the
//! two never rebuild each other's.

mod support;

use std::path::Path;

/// One `#[test]` per file, and the list of files they cover.
macro_rules! compiles_without_warnings {
    ($($test:ident: $path:literal,)*) => {
        $(
            #[test]
            fn $test() {
                compile_with_warnings_denied($path);
            }
        )*

        /// Every file a test above builds.
        const COVERED: &[&str] = &[$($path),*];
    };
}

compiles_without_warnings! {
    example_bug_export: "examples/bug_export.flow",
    example_crm_events: "examples/crm_events.flow",
    example_crm_helpdesk: "examples/crm_helpdesk.flow",
    example_crm_per_customer: "examples/crm_per_customer.flow",
    example_customer_lookup: "examples/customer_lookup.flow",
    example_db_export: "examples/db_export.flow",
    example_email_orders: "examples/email_orders.flow",
    example_file_import: "examples/file_import.flow",
    example_inventory_sync: "examples/inventory_sync.flow",
    example_crm_contacts: "examples/crm_contacts.flow",
    example_kafka_orders: "examples/kafka_orders.flow",
    example_nightly_poll: "examples/nightly_poll.flow",
    example_order_xml_export: "examples/order_xml_export.flow",
    example_quickstart: "examples/quickstart.flow",
    example_report_export: "examples/report_export.flow",
    example_s3_drop_folder: "examples/s3_drop_folder.flow",
    example_shop_erp: "examples/shop_erp.flow",
    example_shop_events: "examples/shop_events.flow",
    example_webhook_registration: "examples/webhook_registration.flow",
    bench_completion: "benches/completion.flow",
    bench_everything: "benches/everything.flow",
    bench_relay: "benches/relay.flow",
    flow_big_csv: "tests/flows/big_csv.flow",
    flow_big_move: "tests/flows/big_move.flow",
    flow_big_move_s3: "tests/flows/big_move_s3.flow",
    flow_bytes: "tests/flows/bytes.flow",
    flow_callers: "tests/flows/callers.flow",
    flow_connections: "tests/flows/connections.flow",
    flow_email_in: "tests/flows/email_in.flow",
    flow_email_report: "tests/flows/email_report.flow",
    flow_failing_tests: "tests/flows/failing_tests.flow",
    flow_files: "tests/flows/files.flow",
    flow_instance_tests: "tests/flows/instance_tests.flow",
    flow_language: "tests/flows/language.flow",
    flow_no_leaks: "tests/flows/no_leaks.flow",
    flow_poison: "tests/flows/poison.flow",
    flow_renames: "tests/flows/renames.flow",
    flow_sftp_import: "tests/flows/sftp_import.flow",
    flow_slow_lookup: "tests/flows/slow_lookup.flow",
    flow_small_body: "tests/flows/small_body.flow",
    flow_subscribe_amqp: "tests/flows/subscribe_amqp.flow",
    flow_subscribe_bridge: "tests/flows/subscribe_bridge.flow",
    flow_subscribe_kafka: "tests/flows/subscribe_kafka.flow",
    flow_subscribe_mqtt: "tests/flows/subscribe_mqtt.flow",
    flow_subscribe_nats: "tests/flows/subscribe_nats.flow",
    flow_subscribe_redis: "tests/flows/subscribe_redis.flow",
    flow_subscribe_sqs: "tests/flows/subscribe_sqs.flow",
    flow_ticker: "tests/flows/ticker.flow",
    flow_xml_orders: "tests/flows/xml_orders.flow",
}

fn compile_with_warnings_denied(relative: &str) {
    let path = support::workspace().join(relative);
    let source = std::fs::read_to_string(&path).expect("readable flow file");
    let file = flowc::syntax::parse_file(&source).expect("parses");
    let checked = flowc::check::check_in(&file, path.parent());
    assert!(
        !checked.has_errors(),
        "{relative} has errors: {:?}",
        checked.diagnostics
    );
    assert!(
        flowc::codegen::unsupported(&file).is_empty(),
        "{relative} uses what flowc does not build yet: take it off the list"
    );
    let code = flowc::codegen::generate(&file, &checked.program, &source);
    let opts = flowc::build::BuildOptions {
        cache_dir: support::cache_dir(),
        features: flowc::codegen::runtime_features(&file)
            .into_iter()
            .map(String::from)
            .collect(),
        deny_warnings: true,
        ..flowc::build::BuildOptions::from_env(false, false)
    };
    let name = format!(
        "{}-warnings",
        flowc::build::crate_name(&file.integration.name, &path)
    );
    let graph_svg = flowc::graph::render(&file, &source, flowc::graph::Format::Svg);
    let sources = flowc::build::Sources {
        main_rs: &code,
        graph_svg: &graph_svg,
    };
    if let Err(e) = flowc::build::build(&name, &sources, &opts) {
        panic!("the code generated for {relative} does not compile without warnings:\n{e}");
    }
}

#[test]
fn every_flow_file_has_a_warnings_test() {
    let root = support::workspace();
    let mut files = Vec::new();
    for folder in ["benches", "examples", "tests/flows"] {
        files.extend(flow_file_names(&root.join(folder)).map(|f| format!("{folder}/{f}")));
    }
    let missing: Vec<&String> = files
        .iter()
        .filter(|f| !COVERED.contains(&f.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "add these to `compiles_without_warnings!`: {missing:?}"
    );
}

/// The names of the `.flow` files in `dir`.
fn flow_file_names(dir: &Path) -> impl Iterator<Item = String> {
    std::fs::read_dir(dir)
        .expect("folder exists")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".flow"))
}
