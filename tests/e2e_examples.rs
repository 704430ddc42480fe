//! End to end: every example builds; every binary answers `--version` and
//! `--help`, and refuses to start without its config (exit 2, naming every
//! missing entry); builds from parallel tests don't disturb each other.

mod support;

use std::path::Path;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use support::{build_example, build_into, run_binary, workspace};

/// What the tests know about each example.
struct Example {
    file: &'static str,
    integration: &'static str,
    flows: &'static [&'static str],
    /// `(entry, ENV_VAR)` for the entries without default.
    required: &'static [(&'static str, &'static str)],
    /// Routes `--help` lists.
    routes: &'static [&'static str],
}

const EXAMPLES: &[Example] = &[
    Example {
        file: "examples/bug_export.flow",
        integration: "bug_export",
        flows: &["issue_labelled"],
        required: &[
            ("tracker_url", "TRACKER_URL"),
            ("tracker_token", "TRACKER_TOKEN"),
            ("webhook_secret", "WEBHOOK_SECRET"),
        ],
        routes: &["POST /hooks/issues"],
    },
    Example {
        file: "examples/crm_contacts.flow",
        integration: "crm_contacts",
        flows: &["copy_contacts"],
        required: &[
            ("crm_url", "CRM_URL"),
            ("crm_token_url", "CRM_TOKEN_URL"),
            ("crm_client_id", "CRM_CLIENT_ID"),
            ("crm_client_secret", "CRM_CLIENT_SECRET"),
            ("helpdesk_url", "HELPDESK_URL"),
            ("helpdesk_key", "HELPDESK_KEY"),
        ],
        routes: &[],
    },
    Example {
        file: "examples/crm_events.flow",
        integration: "crm_events",
        flows: &["crm_webhook", "opportunity_updated", "contact_created"],
        required: &[
            ("warehouse_url", "WAREHOUSE_URL"),
            ("warehouse_token", "WAREHOUSE_TOKEN"),
        ],
        routes: &["POST /crm/events"],
    },
    Example {
        file: "examples/crm_helpdesk.flow",
        integration: "crm_helpdesk",
        flows: &["contact_to_helpdesk", "user_to_crm", "ticket_to_crm"],
        required: &[
            ("crm_url", "CRM_URL"),
            ("crm_token", "CRM_TOKEN"),
            ("helpdesk_url", "HELPDESK_URL"),
            ("helpdesk_token", "HELPDESK_TOKEN"),
        ],
        routes: &[
            "POST /crm/contacts",
            "POST /helpdesk/users",
            "POST /helpdesk/tickets",
        ],
    },
    Example {
        file: "examples/crm_per_customer.flow",
        integration: "crm_per_customer",
        flows: &[
            "register_hook",
            "unregister_hook",
            "contact_created",
            "sync_changes",
        ],
        required: &[
            ("crm_url", "CRM_URL"),
            ("crm_token_url", "CRM_TOKEN_URL"),
            ("client_id", "CLIENT_ID"),
            ("client_secret", "CLIENT_SECRET"),
        ],
        routes: &["POST /contacts"],
    },
    Example {
        file: "examples/customer_lookup.flow",
        integration: "customer_lookup",
        flows: &["get_customer"],
        required: &[("crm_url", "CRM_URL"), ("crm_key", "CRM_KEY")],
        routes: &["GET /customers/{id}"],
    },
    Example {
        file: "examples/db_export.flow",
        integration: "db_export",
        flows: &["create_table", "order_changed", "export_orders"],
        required: &[("db_url", "DB_URL")],
        routes: &["POST /orders"],
    },
    Example {
        file: "examples/email_orders.flow",
        integration: "email_orders",
        flows: &["import_order_emails"],
        required: &[("imap_url", "IMAP_URL"), ("shop_url", "SHOP_URL")],
        routes: &[],
    },
    Example {
        file: "examples/file_import.flow",
        integration: "order_file_import",
        flows: &["import_orders", "import_stock_counts"],
        required: &[("shop_url", "SHOP_URL")],
        routes: &[],
    },
    Example {
        file: "examples/inventory_sync.flow",
        integration: "inventory_sync",
        flows: &["stock_changed"],
        required: &[
            ("erp_url", "ERP_URL"),
            ("erp_token", "ERP_TOKEN"),
            ("webhook_secret", "WEBHOOK_SECRET"),
        ],
        routes: &["POST /inventory"],
    },
    Example {
        file: "examples/kafka_orders.flow",
        integration: "kafka_orders",
        flows: &["order_to_api"],
        required: &[
            ("kafka_url", "KAFKA_URL"),
            ("api_url", "API_URL"),
            ("api_token", "API_TOKEN"),
        ],
        routes: &[],
    },
    Example {
        file: "examples/nightly_poll.flow",
        integration: "ticket_import",
        flows: &["poll_tickets", "weekly_summary"],
        required: &[("tickets_url", "TICKETS_URL"), ("sink_url", "SINK_URL")],
        routes: &[],
    },
    Example {
        file: "examples/order_xml_export.flow",
        integration: "order_xml_export",
        flows: &["order_placed"],
        required: &[("webhook_secret", "WEBHOOK_SECRET")],
        routes: &["POST /orders"],
    },
    Example {
        file: "examples/quickstart.flow",
        integration: "quickstart",
        flows: &["order_received", "order_count", "summary"],
        required: &[],
        routes: &["POST /orders", "GET /orders/count"],
    },
    Example {
        file: "examples/report_export.flow",
        integration: "weekly_report",
        flows: &["weekly_orders_report"],
        required: &[
            ("sftp_folder", "SFTP_FOLDER"),
            ("sftp_key", "SFTP_KEY"),
            ("smtp_url", "SMTP_URL"),
            ("finance_email", "FINANCE_EMAIL"),
            ("shop_url", "SHOP_URL"),
        ],
        routes: &[],
    },
    Example {
        file: "examples/s3_drop_folder.flow",
        integration: "s3_drop_folder",
        flows: &["import_orders"],
        required: &[
            ("shop_url", "SHOP_URL"),
            ("drop_bucket", "DROP_BUCKET"),
            ("aws_key", "AWS_KEY"),
            ("aws_secret", "AWS_SECRET"),
        ],
        routes: &[],
    },
    Example {
        file: "examples/shop_erp.flow",
        integration: "shop_erp",
        flows: &["order_paid", "stock_to_shop"],
        required: &[
            ("shop_url", "SHOP_URL"),
            ("shop_token", "SHOP_TOKEN"),
            ("webhook_secret", "WEBHOOK_SECRET"),
            ("erp_url", "ERP_URL"),
            ("erp_token", "ERP_TOKEN"),
        ],
        routes: &["POST /shop/orders/paid"],
    },
    Example {
        file: "examples/shop_events.flow",
        integration: "shop_events",
        flows: &["order_event"],
        required: &[
            ("erp_url", "ERP_URL"),
            ("erp_token", "ERP_TOKEN"),
            ("webhook_secret", "WEBHOOK_SECRET"),
        ],
        routes: &["POST /shop/events"],
    },
    Example {
        file: "examples/webhook_registration.flow",
        integration: "shop_orders",
        flows: &["register_webhooks", "unregister_webhooks", "order_created"],
        required: &[("shop_url", "SHOP_URL"), ("shop_token", "SHOP_TOKEN")],
        routes: &["POST /shop/orders"],
    },
];

const QUICK: Duration = Duration::from_secs(30);

#[test]
fn every_example_is_covered_here() {
    let mut files: Vec<String> = std::fs::read_dir(workspace().join("examples"))
        .expect("examples/")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".flow"))
        .map(|n| format!("examples/{n}"))
        .collect();
    files.sort();
    let known: Vec<&str> = EXAMPLES.iter().map(|e| e.file).collect();
    assert_eq!(
        files, known,
        "add each example to EXAMPLES in tests/e2e_examples.rs"
    );
}

#[test]
fn every_example_builds_and_answers_version_and_help() {
    for ex in EXAMPLES {
        let binary = build_example(ex.file);
        assert_eq!(
            binary.file_name().and_then(|n| n.to_str()),
            Some(ex.integration)
        );

        // `NAME VERSION (flowc X, source sha256:HASH)`, HASH of the source.
        let source = std::fs::read(workspace().join(ex.file)).expect("example source");
        let hash = hex::encode(Sha256::digest(&source));
        let done = run_binary(&binary, &[], &["--version"], QUICK);
        assert_eq!(done.code, Some(0), "{done:#?}");
        assert_eq!(
            done.stdout.trim(),
            format!(
                "{} {} (flowc {}, source sha256:{hash})",
                ex.integration,
                &hash[..12],
                env!("CARGO_PKG_VERSION")
            )
        );

        let done = run_binary(&binary, &[], &["--help"], QUICK);
        assert_eq!(done.code, Some(0), "{done:#?}");
        let help = &done.stdout;
        for flow in ex.flows {
            assert!(
                help.contains(flow),
                "{}: --help misses flow {flow}:\n{help}",
                ex.file
            );
        }
        for route in ex.routes {
            assert!(
                help.contains(route),
                "{}: --help misses {route}:\n{help}",
                ex.file
            );
        }
        for (_, var) in ex.required {
            assert!(
                help.contains(var),
                "{}: --help misses {var}:\n{help}",
                ex.file
            );
        }
    }
}

/// Runs `args` with `env` and checks exit code 2 and a message naming
/// exactly the `missing` entries.
fn assert_refuses(
    binary: &Path,
    ex: &Example,
    env: &[(&str, &str)],
    args: &[&str],
    missing: &[(&str, &str)],
) {
    let done = run_binary(binary, env, args, QUICK);
    let what = format!("{} {args:?} with {env:?}", ex.integration);
    assert_eq!(done.code, Some(2), "{what}: {done:#?}");
    assert!(
        !done.stdout.contains("listening on"),
        "{what} started anyway: {done:#?}"
    );
    let n = missing.len();
    let problems = format!("({n} problem{})", if n == 1 { "" } else { "s" });
    assert!(done.stderr.contains(&problems), "{what}: {}", done.stderr);
    for (entry, var) in ex.required {
        let named = done.stderr.contains(&format!("{entry} ("));
        if missing.iter().any(|(e, _)| e == entry) {
            assert!(named, "{what}: {entry} not named:\n{}", done.stderr);
            assert!(
                done.stderr.contains(var),
                "{what}: {var} not named:\n{}",
                done.stderr
            );
        } else {
            assert!(!named, "{what}: {entry} is set:\n{}", done.stderr);
        }
    }
}

#[test]
fn missing_config_exits_2_naming_every_missing_entry() {
    for ex in EXAMPLES {
        let binary = build_example(ex.file);
        if ex.required.is_empty() {
            // Defaults for everything: the config is valid as it is.
            let done = run_binary(&binary, &[], &["check-config"], QUICK);
            assert_eq!(done.code, Some(0), "{}: {done:#?}", ex.file);
            continue;
        }
        for args in [
            &["serve", "--addr", "127.0.0.1:0"][..],
            &["check-config"][..],
        ] {
            // Nothing set: every required entry is named, in one message.
            assert_refuses(&binary, ex, &[], args, ex.required);
            // The first one set: all the others (with one required entry,
            // setting it makes the config complete).
            if ex.required.len() > 1 {
                let (_, first_var) = ex.required[0];
                let env = [(first_var, "http://127.0.0.1:9")];
                assert_refuses(&binary, ex, &env, args, &ex.required[1..]);
            }
        }
    }
}

#[test]
fn an_empty_signature_secret_stops_the_binary_naming_it() {
    let binary = build_example("examples/inventory_sync.flow");
    let env = [
        ("ERP_URL", "http://erp.example.com"),
        ("ERP_TOKEN", "erp-secret-token"),
        ("WEBHOOK_SECRET", ""),
    ];
    for args in [
        &["serve", "--addr", "127.0.0.1:0"][..],
        &["check-config"][..],
    ] {
        let done = run_binary(&binary, &env, args, QUICK);
        assert_eq!(done.code, Some(2), "{args:?}: {done:#?}");
        assert!(!done.stdout.contains("listening on"), "{done:#?}");
        assert!(
            done.stderr
                .contains("webhook_secret (environment variable WEBHOOK_SECRET): empty")
                && done
                    .stderr
                    .contains("flow `stock_changed` checks request signatures"),
            "{args:?}: {}",
            done.stderr
        );
    }
}

#[test]
fn check_config_accepts_a_complete_config_and_masks_secrets() {
    let ex = EXAMPLES
        .iter()
        .find(|e| e.integration == "inventory_sync")
        .expect("inventory_sync in EXAMPLES");
    let binary = build_example(ex.file);
    let env = [
        ("ERP_URL", "http://erp.example.com"),
        ("ERP_TOKEN", "erp-secret-token"),
        ("WEBHOOK_SECRET", "hook-secret-value"),
    ];
    let done = run_binary(&binary, &env, &["check-config"], QUICK);
    assert_eq!(done.code, Some(0), "{done:#?}");
    assert!(done.stdout.contains("erp_url"), "{done:#?}");
    assert!(done.stdout.contains("http://erp.example.com"), "{done:#?}");
    for secret in ["erp-secret-token", "hook-secret-value"] {
        assert!(
            !done.stdout.contains(secret) && !done.stderr.contains(secret),
            "{done:#?}"
        );
    }

    // A `--config` file fills in what the environment does not set, and
    // the environment wins over it.
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("inventory.toml");
    std::fs::write(
        &file,
        "erp_url = \"http://from-file.example.com\"\n\
         erp_token = \"file-token-value\"\n\
         webhook_secret = \"file-secret-value\"\n",
    )
    .expect("write config file");
    let file_arg = file.to_string_lossy().into_owned();
    let env = [("ERP_URL", "http://from-env.example.com")];
    let done = run_binary(
        &binary,
        &env,
        &["--config", &file_arg, "check-config"],
        QUICK,
    );
    assert_eq!(done.code, Some(0), "{done:#?}");
    assert!(
        done.stdout.contains("http://from-env.example.com"),
        "{done:#?}"
    );
    assert!(!done.stdout.contains("from-file"), "{done:#?}");
    assert!(!done.stdout.contains("file-token-value"), "{done:#?}");

    // A value that does not parse as its type is named too, with the
    // missing ones.
    let env = [("ERP_URL", "not a url"), ("ERP_TOKEN", "erp-secret-token")];
    let done = run_binary(&binary, &env, &["check-config"], QUICK);
    assert_eq!(done.code, Some(2), "{done:#?}");
    assert!(done.stderr.contains("(2 problems)"), "{}", done.stderr);
    assert!(done.stderr.contains("ERP_URL"), "{}", done.stderr);
    assert!(done.stderr.contains("webhook_secret"), "{}", done.stderr);
    assert!(!done.stderr.contains("erp-secret-token"), "{}", done.stderr);
}

/// Two integrations built at the same time into one cache: cargo's lock
/// on the shared target directory serialises them, and both binaries
/// work. A fresh doc comment each time makes both really compile.
#[test]
fn two_builds_at_once_share_the_cache() {
    let nonce = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let sources: Vec<(String, std::path::PathBuf)> = ["e2e_parallel_a", "e2e_parallel_b"]
        .iter()
        .map(|name| {
            let path = dir.path().join(format!("{name}.flow"));
            let source = format!(
                "/// Built by two_builds_at_once_share_the_cache ({nonce}).\n\
                 integration {name}\n\n\
                 config {{\n  sink_url: Url\n}}\n\n\
                 flow ping {{\n  trigger webhook POST \"/{name}\"\n\n  \
                 step forward = http.post(\"${{config.sink_url}}/{name}\", json: trigger.body)\n}}\n"
            );
            std::fs::write(&path, source).expect("write flow");
            (name.to_string(), path)
        })
        .collect();
    let builds: Vec<_> = sources
        .iter()
        .map(|(name, path)| {
            let out = dir.path().join(format!("out-{name}"));
            let path = path.clone();
            std::thread::spawn(move || build_into(&path, &out))
        })
        .collect();
    let binaries: Vec<_> = builds
        .into_iter()
        .map(|b| b.join().expect("build thread"))
        .collect();
    for ((name, _), binary) in sources.iter().zip(&binaries) {
        let done = run_binary(binary, &[], &["--version"], QUICK);
        assert_eq!(done.code, Some(0), "{done:#?}");
        assert!(done.stdout.starts_with(&format!("{name} ")), "{done:#?}");
        let done = run_binary(binary, &[], &["--help"], QUICK);
        assert!(done.stdout.contains(&nonce), "{done:#?}");
        assert!(done.stdout.contains(&format!("POST /{name}")), "{done:#?}");
    }
}
