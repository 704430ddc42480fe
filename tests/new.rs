//! `flowc new`: each pattern's integration checks with no diagnostic at
//! all, is already formatted, has a test block and doc comments, and (but
//! for `files`) passes `flowc build`'s support check; the command makes the
//! folder, refuses a non-empty one and bad names.

use std::fs;
use std::path::Path;
use std::process::Command;

use flowc::new::{create, flow_source, readme, validate_name, Pattern};

#[test]
fn every_pattern_checks_cleanly_and_is_formatted() {
    for pattern in Pattern::ALL {
        let name = format!("my_{}_integration", pattern.as_str());
        let source = flow_source(&name, pattern);
        let p = pattern.as_str();
        let checked = flowc::check::check_source(&source);
        assert!(
            checked.diagnostics.is_empty(),
            "{p}:\n{}",
            flowc::diagnostics::render(p, &source, &checked.diagnostics, false)
        );
        assert_eq!(
            flowc::fmt::format_source(&source).expect("parses"),
            source,
            "{p} is not formatted"
        );
        let file = flowc::syntax::parse_file(&source).expect("parses");
        assert_eq!(file.integration.name, name);
        assert!(file.doc.is_some(), "{p}: no doc comment on the integration");
        assert!(
            file.items
                .iter()
                .any(|i| matches!(i, flowc::syntax::ast::Item::Test(_))),
            "{p}: no test block"
        );
        for item in &file.items {
            if let flowc::syntax::ast::Item::Flow(flow) = item {
                assert!(flow.doc.is_some(), "{p}: flow {} has no doc", flow.name);
            }
        }
        let unsupported = flowc::codegen::unsupported(&file);
        assert!(unsupported.is_empty(), "{p}: {unsupported:?}");
    }
}

#[test]
fn the_readme_says_how_to_check_test_build_and_run() {
    for pattern in Pattern::ALL {
        let text = readme("orders", pattern);
        for needle in [
            "# orders\n",
            "flowc check orders.flow",
            "flowc test orders.flow",
            "flowc build orders.flow -o bin/",
            "bin/orders serve",
            "flowc run orders.flow",
        ] {
            assert!(text.contains(needle), "{}: no {needle:?}", pattern.as_str());
        }
        assert!(!text.contains("__NAME__"));
    }
}

#[test]
fn names_must_be_flow_identifiers() {
    for good in ["orders", "order_sync", "_x", "a1"] {
        assert!(validate_name(good).is_ok(), "{good}");
    }
    for bad in [
        "",
        "Orders",
        "order-sync",
        "1x",
        "match",
        "fn",
        "a b",
        "___",
        "ordérs",
    ] {
        assert!(validate_name(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn create_writes_the_folder_and_refuses_a_non_empty_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let written = create(dir.path(), "orders", Pattern::Sync).expect("created");
    assert_eq!(written.len(), 2);
    let flow = fs::read_to_string(dir.path().join("orders/orders.flow")).expect("flow");
    assert_eq!(flow, flow_source("orders", Pattern::Sync));
    assert!(dir.path().join("orders/README.md").is_file());
    assert!(create(dir.path(), "orders", Pattern::Sync).is_err());
    // An empty folder is fine.
    fs::create_dir(dir.path().join("empty")).expect("mkdir");
    create(dir.path(), "empty", Pattern::Webhook).expect("created in an empty folder");
}

fn flowc_new(args: &[&str], dir: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .arg("new")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("flowc runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_command() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, stderr) = flowc_new(&["shop_orders", "--pattern", "schedule"], dir.path());
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("shop_orders.flow"), "{stderr}");
    let flow = dir.path().join("shop_orders/shop_orders.flow");
    assert_eq!(
        fs::read_to_string(&flow).expect("flow"),
        flow_source("shop_orders", Pattern::Schedule)
    );

    // The default pattern is webhook; the file checks with the real binary.
    let (code, stderr) = flowc_new(&["hooks"], dir.path());
    assert_eq!(code, 0, "{stderr}");
    let out = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(["check", "hooks/hooks.flow"])
        .current_dir(dir.path())
        .output()
        .expect("flowc runs");
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (code, stderr) = flowc_new(&["shop_orders"], dir.path());
    assert_eq!(code, 2);
    assert!(
        stderr.contains("already exists and is not empty"),
        "{stderr}"
    );

    let (code, stderr) = flowc_new(&["Shop-Orders"], dir.path());
    assert_eq!(code, 2);
    assert!(stderr.contains("not a valid integration name"), "{stderr}");
    assert!(!dir.path().join("Shop-Orders").exists());
}
