//! The language at run time: every expression form computes what
//! docs/language.md says, and statements end runs as they should.
//! Runs `BINARY run FLOW --input FILE.json` on tests/flows/language.flow.

mod support;

use std::time::Duration;

use serde_json::{json, Value};

fn run(binary: &std::path::Path, flow: &str, input: Value) -> Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let input_file = dir.path().join("input.json");
    std::fs::write(&input_file, input.to_string()).expect("write input");
    let input_path = input_file.to_string_lossy().into_owned();
    let done = support::run_binary(
        binary,
        &[],
        &["run", flow, "--input", &input_path],
        Duration::from_secs(60),
    );
    serde_json::from_str(done.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "outcome is not JSON ({e}):\n{}\n{}",
            done.stdout, done.stderr
        )
    })
}

fn order(status: &str, quantities: &[i64]) -> Value {
    let skus = ["tea", "cup", "pot"];
    let lines: Vec<Value> = quantities
        .iter()
        .zip(skus)
        .map(|(q, sku)| json!({ "sku": sku, "quantity": q, "price": 2.5 }))
        .collect();
    json!({ "id": "o-7", "status": status, "lines": lines, "extra": { "count": 4 } })
}

#[test]
fn expressions_compute_what_the_language_defines() {
    let binary = support::build_example("tests/flows/language.flow");
    let outcome = run(
        &binary,
        "evaluate",
        json!({ "body": order("paid", &[1, 3, 4]) }),
    );
    assert_eq!(outcome["status"], "succeeded", "{outcome:#}");
    let body = &outcome["result"]["body"];
    let expected = json!({
        "quantities": [1, 3, 4],
        "total": 20.0,
        "int_math": [3, 1, -6, 14],
        "float_math": 3.5,
        "logic": [true, true, false, true],
        "big": ["cup", "pot"],
        "first_note": "none",
        "second": "cup",
        "tenth": "missing",
        "label": "live",
        "size": "large",
        "extra_count": 5,
        "parsed": 42,
        "text": "o-7: 3 lines, 20 total, [1,2] null true",
        "joined": "1+3+4",
        "words": ["tea", "cups"],
        "shout": "O-7",
        "has_tea": true,
        "later": "11:30",
        "gap_ms": 5_400_000,
        "csv": "sku,qty\ntea,1\ncup,3\npot,4\n",
        "decoded_sum": 6,
        "sha": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    });
    for (key, value) in expected.as_object().expect("object") {
        assert_eq!(&body[key], value, "field `{key}` of {body:#}");
    }
    // `env.version`: the first 12 hex digits of the source's SHA-256.
    let source = std::fs::read(support::workspace().join("tests/flows/language.flow")).unwrap();
    let version = &hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&source))[..12];
    assert_eq!(body["version"], json!(version), "{body:#}");
}

#[test]
fn statements_end_runs_as_they_should() {
    let binary = support::build_example("tests/flows/language.flow");
    let ok = run(
        &binary,
        "statements",
        json!({ "input": order("open", &[1, 2]) }),
    );
    assert_eq!(ok["status"], "succeeded", "{ok:#}");

    let failed = run(
        &binary,
        "statements",
        json!({ "input": order("open", &[1, 0]) }),
    );
    assert_eq!(failed["status"], "failed", "{failed:#}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap_or("")
            .contains("line cup has no quantity"),
        "{failed:#}"
    );

    let bulk = run(
        &binary,
        "statements",
        json!({ "input": order("open", &[500]) }),
    );
    assert_eq!(bulk["status"], "skipped", "{bulk:#}");

    let void = run(
        &binary,
        "statements",
        json!({ "input": order("void", &[1]) }),
    );
    assert_eq!(void["status"], "skipped", "{void:#}");
    assert!(void.to_string().contains("void order o-7"), "{void:#}");

    // `file.write("out/${trigger.input.id}.txt")`: run data cannot take
    // the path out of `out/`.
    let mut escaping = order("open", &[1, 2]);
    escaping["id"] = json!("../escaped");
    let refused = run(&binary, "statements", json!({ "input": escaping }));
    assert_eq!(refused["status"], "failed", "{refused:#}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap_or("")
            .contains(r#"file.write: `path` "out/../escaped.txt" leaves the folder "out/""#),
        "{refused:#}"
    );
}
