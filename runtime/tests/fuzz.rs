//! Fuzzing what a caller controls (issue #16): request bodies decoded
//! against body types, and the `verify:`/`auth:` checks fed arbitrary
//! headers. Neither may panic; a decoded body is always storable; no
//! arbitrary input passes a check whose secrets it does not know, and
//! every correctly signed body passes. Mutants start from the corpora in
//! `fuzz/corpus/{decode,verify}/` (see `flow_testkit::fuzz`).
//!
//! `cargo test` runs a short pass; a real run:
//! `FLOW_FUZZ_SECONDS=600 FLOW_FUZZ_SAVE=1 cargo test -p flow_runtime --release --test fuzz`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use base64::Engine as _;
use flow_runtime::core::nesting;
use flow_runtime::triggers::http::{authenticate, decode_body, verify};
use flow_runtime::{Auth, FieldSchema, Schema, Verify};
use flow_testkit::fuzz::Fuzz;
use flow_testkit::{hmac_hex, hmac_sha256};

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(name)
}

/// Body types covering every kind of schema, recursion included.
fn schemas() -> Vec<Schema> {
    flow_runtime::schema::register_types(&[(
        "Node",
        Schema::Record(vec![
            FieldSchema::new("name", Schema::String),
            FieldSchema::new("children", Schema::list(Schema::Ref("Node"))),
        ]),
    )]);
    let order = Schema::Record(vec![
        FieldSchema::new("id", Schema::String),
        FieldSchema::new("n", Schema::Optional(Box::new(Schema::Int))),
        FieldSchema::new("tags", Schema::list(Schema::String)),
        FieldSchema::new("price", Schema::Float),
        FieldSchema::new("paid", Schema::Bool),
        FieldSchema::new("at", Schema::Optional(Box::new(Schema::Time))),
        FieldSchema::new("kind", Schema::Literals(vec!["a", "b"])),
        FieldSchema::new("extra", Schema::Map(Box::new(Schema::Json))),
        FieldSchema::new("site", Schema::Optional(Box::new(Schema::Url))),
        FieldSchema::new("wait", Schema::Optional(Box::new(Schema::Duration))),
    ]);
    vec![
        Schema::Json,
        Schema::String,
        Schema::Bytes,
        Schema::Int,
        Schema::list(order.clone()),
        order,
        Schema::Ref("Node"),
        Schema::Optional(Box::new(Schema::Map(Box::new(Schema::Float)))),
    ]
}

#[test]
fn fuzz_body_decoding() {
    let schemas = schemas();
    let seeds = [
        r#"{"id":"o-1","n":2,"tags":["x"],"price":1.5,"paid":true,"at":"2026-01-02T03:04:05Z","kind":"a","extra":{"k":[1,{"z":null}]},"site":"https://x.example/a?b","wait":"5m"}"#,
        r#"[{"id":"o-2","tags":[],"price":0,"paid":false,"kind":"b","extra":{}}]"#,
        r#"{"name":"root","children":[{"name":"leaf","children":[]}]}"#,
        r#"{"a":1e308,"b":-0.0,"c":"\ud83d\ude00"}"#,
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
        "9223372036854775807",
    ];
    Fuzz {
        name: "decode",
        corpus: corpus("decode"),
        seeds: seeds.iter().map(|s| s.as_bytes().to_vec()).collect(),
        dictionary: &[
            b"{",
            b"}",
            b"[",
            b"]",
            b"\"",
            b":",
            b",",
            b"null",
            b"true",
            b"1e999",
            b"-1",
            b"\\u0000",
            b"\\ud800",
            b"\"id\":",
            b"\"children\":[",
            b"\"kind\":\"c\"",
            b"\"at\":\"2026-13-45T99:00:00Z\"",
            b"\"wait\":\"5x\"",
            b"\"site\":\"::\"",
        ],
    }
    .run(|input| {
        // The first byte picks the body type and whether empty is allowed.
        let (pick, body) = input.split_first().map_or((0, input), |(p, b)| (*p, b));
        let schema = &schemas[usize::from(pick) % schemas.len()];
        let allow_empty = pick & 0x80 != 0;
        match decode_body(schema, body, allow_empty) {
            Ok(value) => {
                // What intake accepts must be storable and read back.
                assert!(nesting::check_value(&value).is_ok(), "stored too deep");
                let text = serde_json::to_string(&value).expect("serialisable");
                let back: serde_json::Value = serde_json::from_str(&text).expect("reads back");
                assert_eq!(back, value, "round trip");
                vec![format!(
                    "{}:ok:{}",
                    usize::from(pick) % schemas.len(),
                    text.len().ilog2()
                )]
            }
            Err(resp) => vec![format!(
                "{}:{}:{}",
                usize::from(pick) % schemas.len(),
                resp.status().as_u16(),
                body.len().max(1).ilog2()
            )],
        }
    });
}

const SECRET: &str = "whsec_dGhlIGZ1enplciBkb2VzIG5vdCBrbm93IHRoaXM=";
const NOW: i64 = 1_750_000_000;

/// The signature checks and the auth checks under test, by name.
type Checks = (Vec<(&'static str, Verify)>, Vec<(&'static str, Auth)>);

fn checks() -> Checks {
    let secrets = || vec![SECRET.to_string(), "second".to_string()];
    let tolerance = Duration::from_secs(300);
    let verifies = vec![
        (
            "hmac",
            Verify::Hmac {
                header: "X-Signature",
                secrets: secrets(),
            },
        ),
        (
            "stripe",
            Verify::Stripe {
                secrets: secrets(),
                tolerance,
            },
        ),
        (
            "standard",
            Verify::StandardWebhooks {
                secrets: secrets(),
                tolerance,
            },
        ),
    ];
    let auths = vec![
        ("bearer", Auth::Bearer { tokens: secrets() }),
        (
            "basic",
            Auth::Basic {
                user: "acme".into(),
                passwords: secrets(),
            },
        ),
        (
            "api_key",
            Auth::ApiKey {
                header: "X-Api-Key",
                keys: secrets(),
            },
        ),
    ];
    (verifies, auths)
}

const HEADERS: &[&str] = &[
    "x-signature",
    "stripe-signature",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "authorization",
    "x-api-key",
];

/// Splits the input at 0xFF bytes: one value per header of [`HEADERS`],
/// then the body.
fn headers_and_body(input: &[u8]) -> (HeaderMap, &[u8]) {
    let mut parts = input.split(|b| *b == 0xFF);
    let mut headers = HeaderMap::new();
    for name in HEADERS {
        let Some(part) = parts.next() else { break };
        if let Ok(value) = HeaderValue::from_bytes(part) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    let used: usize = input
        .split(|b| *b == 0xFF)
        .take(HEADERS.len())
        .map(|p| p.len() + 1)
        .sum();
    (headers, input.get(used..).unwrap_or_default())
}

fn signed_correctly(name: &str, body: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    let mut set = |k: &'static str, v: String| {
        h.insert(k, HeaderValue::from_str(&v).expect("ASCII"));
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    match name {
        "hmac" => set("x-signature", hmac_hex(SECRET, body)),
        "stripe" => {
            let signed = [format!("{NOW}.").as_bytes(), body].concat();
            set(
                "stripe-signature",
                format!("t={NOW},v1={}", hmac_hex(SECRET, &signed)),
            );
        }
        _ => {
            let key = b64.decode(&SECRET["whsec_".len()..]).expect("base64 key");
            let signed = [format!("msg_1.{NOW}.").as_bytes(), body].concat();
            set("webhook-id", "msg_1".into());
            set("webhook-timestamp", NOW.to_string());
            set(
                "webhook-signature",
                format!("v1,{}", b64.encode(hmac_sha256(&key, &signed))),
            );
        }
    }
    h
}

#[test]
fn fuzz_signature_and_credential_checks() {
    let (verifies, auths) = checks();
    let seeds: Vec<Vec<u8>> = vec![
        b"sha256=00ff\xfft=1750000000,v1=abcd\xffmsg_1\xff1750000000\xffv1,AAAA\xffBearer x\xffkey\xff{\"a\":1}".to_vec(),
        b"\xff\xff\xff\xff\xffBasic YWNtZTpzZWNvbmQ=\xff\xffbody".to_vec(),
        Vec::new(),
    ];
    Fuzz {
        name: "verify",
        corpus: corpus("verify"),
        seeds,
        dictionary: &[
            b"\xff",
            b"sha256=",
            b"t=",
            b",v1=",
            b"v1,",
            b" v1,",
            b"Bearer ",
            b"Basic ",
            b"bearer  ",
            b"whsec_",
            b"1750000000",
            b"-1",
            b"99999999999999999999",
            b"=",
            b"secondsecond",
            b"second",
            b"acme:",
            b"YWNtZTpzZWNvbmQ=",
        ],
    }
    .run(|input| {
        let (headers, body) = headers_and_body(input);
        let mut features = Vec::new();
        for (name, check) in &verifies {
            let result = verify(check, &headers, body, NOW);
            // The fuzzer cannot know SECRET; "second" is guessable, but a
            // signature over the body under it is not (HMAC).
            assert!(result.is_err(), "{name} admitted {input:?}");
            features.push(format!("{name}: {}", result.unwrap_err().message));
            let good = signed_correctly(name, body);
            assert_eq!(
                verify(check, &good, body, NOW),
                Ok(()),
                "{name}: a correct signature"
            );
        }
        for (name, check) in &auths {
            let result = authenticate(check, &headers);
            // "second" is a configured credential: the fuzzer may find it.
            let knows = input.windows(6).any(|w| w == b"second")
                || input.windows(16).any(|w| w == b"YWNtZTpzZWNvbmQ=");
            assert!(result.is_err() || knows, "{name} admitted {input:?}");
            features.push(format!("{name}: {}", result.is_ok()));
        }
        features
    });
}
