//! End to end: who may call an endpoint (`tests/flows/callers.flow`,
//! LANGUAGE.md §11). Credentials (`auth:`) on sync and webhook routes,
//! Stripe and Standard Webhooks signatures (valid, stale, rotated
//! secret), the implicit `webhook-id` dedupe, and an empty secret at
//! start-up. A refused request is answered `401` and nothing runs.

mod support;

use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use support::{get, hmac_hex, hmac_sha256, post_raw, run_binary, Answer, Service, Sink};

const WAIT: Duration = Duration::from_secs(20);
const B64: base64::engine::general_purpose::GeneralPurpose =
    base64::engine::general_purpose::STANDARD;
/// The Standard Webhooks secret's key bytes, and the secret as configured.
const STANDARD_KEY: &[u8] = b"a 24-byte key for tests!";

fn standard_secret() -> String {
    format!("whsec_{}", B64.encode(STANDARD_KEY))
}

fn env(sink: &Sink) -> Vec<(&'static str, String)> {
    vec![
        ("SINK_URL", sink.url().to_string()),
        ("API_TOKEN", "token-current".into()),
        ("NEXT_API_TOKEN", "token-next".into()),
        ("PARTNER_USER", "acme".into()),
        ("PARTNER_PASSWORD", "pa:ss word".into()),
        ("PARTNER_KEY", "key-123".into()),
        ("STRIPE_SECRET", "whsec_new".into()),
        ("OLD_STRIPE_SECRET", "whsec_old".into()),
        ("WEBHOOK_SECRET", standard_secret()),
    ]
}

fn start(sink: &Sink) -> Service {
    let binary = support::build_example("tests/flows/callers.flow");
    let env = env(sink);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Service::start(&binary, &env, &[])
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn stripe_signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let signed = [format!("{timestamp}.").as_bytes(), body].concat();
    format!("t={timestamp},v1={}", hmac_hex(secret, &signed))
}

fn standard_headers(id: &str, timestamp: i64, body: &[u8]) -> Vec<(&'static str, String)> {
    let signed = [format!("{id}.{timestamp}.").as_bytes(), body].concat();
    let signature = B64.encode(hmac_sha256(STANDARD_KEY, &signed));
    vec![
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", format!("v1,{signature}")),
    ]
}

async fn post(url: &str, body: &[u8], headers: &[(&'static str, String)]) -> Answer {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    post_raw(url, body, &headers).await
}

fn assert_refused(a: &Answer, what: &str) {
    assert_eq!(a.status, 401, "{what}: {a:?}");
    assert!(a.body["error"].is_string(), "{what}: {a:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_routes_need_their_credentials() {
    let sink = Sink::start();
    let svc = start(&sink);

    let url = svc.at("/lookup/c-1");
    let none = get(&url, &[]).await;
    assert_refused(&none, "no token");
    assert_eq!(none.header("www-authenticate"), Some("Bearer"), "{none:?}");
    let wrong = get(&url, &[("Authorization", "Bearer token-curren")]).await;
    assert_refused(&wrong, "a prefix of the token");
    for token in ["token-current", "token-next"] {
        let ok = get(&url, &[("Authorization", &format!("Bearer {token}"))]).await;
        assert_eq!(
            (ok.status, &ok.body),
            (200, &json!({ "id": "c-1" })),
            "{token}"
        );
    }

    let url = svc.at("/partner/basic");
    let body = br#"{"id":"e-1"}"#;
    let basic = |pair: &str| vec![("Authorization", format!("Basic {}", B64.encode(pair)))];
    let refused = post(&url, body, &basic("acme:wrong")).await;
    assert_refused(&refused, "wrong password");
    assert!(
        refused
            .header("www-authenticate")
            .is_some_and(|c| c.starts_with("Basic realm=")),
        "{refused:?}"
    );
    let ok = post(&url, body, &basic("acme:pa:ss word")).await;
    assert_eq!((ok.status, &ok.body), (200, &json!({ "id": "e-1" })));
    // Credentials are checked before the body: a bad body with bad
    // credentials is a 401, not a 400 that would tell what the route takes.
    let refused = post(&url, b"not json", &[]).await;
    assert_refused(&refused, "no credentials, bad body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_webhook_stores_and_runs_nothing() {
    let sink = Sink::start();
    let svc = start(&sink);
    let url = svc.at("/partner/key");
    let body = br#"{"id":"k-1"}"#;
    for key in ["", "key-12", "key-1234"] {
        let a = post(&url, body, &[("X-Api-Key", key.to_string())]).await;
        assert_refused(&a, key);
    }
    let a = post(&url, br#"{"id":"k-2"}"#, &[("X-Api-Key", "key-123".into())]).await;
    assert_eq!(a.status, 202, "{a:?}");
    let calls = sink.wait_for(1, WAIT).await;
    // Only the admitted event ran (the refused ones were never stored:
    // they would have run first).
    assert_eq!(calls[0].body, json!({ "id": "k-2" }), "{}", sink.summary());
    assert_eq!(sink.requests().len(), 1, "{}", sink.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_signatures_valid_stale_and_rotated() {
    let sink = Sink::start();
    let svc = start(&sink);
    let url = svc.at("/stripe");
    let body = br#"{"id":"evt_1"}"#;
    let signed =
        |secret: &str, at: i64| vec![("Stripe-Signature", stripe_signature(secret, at, body))];

    let stale = post(&url, body, &signed("whsec_new", now() - 180)).await;
    assert_refused(&stale, "older than the 2m tolerance");
    assert!(
        stale.body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("tolerance"),
        "{stale:?}"
    );
    let unsigned = post(&url, body, &[]).await;
    assert_refused(&unsigned, "no signature");
    let forged = post(&url, body, &signed("whsec_guess", now())).await;
    assert_refused(&forged, "another secret");

    let current = post(&url, body, &signed("whsec_new", now())).await;
    assert_eq!(current.status, 202, "{current:?}");
    let rotated = post(
        &url,
        br#"{"id":"evt_2"}"#,
        &[(
            "Stripe-Signature",
            stripe_signature("whsec_old", now() - 60, br#"{"id":"evt_2"}"#),
        )],
    )
    .await;
    assert_eq!(
        rotated.status, 202,
        "the previous secret still works: {rotated:?}"
    );

    let calls = sink.wait_for(2, WAIT).await;
    let mut ids: Vec<Value> = calls.iter().map(|c| c.body.clone()["id"].clone()).collect();
    ids.sort_by_key(Value::to_string);
    assert_eq!(ids, [json!("evt_1"), json!("evt_2")], "{}", sink.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_webhooks_signed_deduplicated_and_replay_proof() {
    let sink = Sink::start();
    let svc = start(&sink);
    let url = svc.at("/standard");
    let body = br#"{"id":"inv-1"}"#;

    let first = post(&url, body, &standard_headers("msg_1", now(), body)).await;
    assert_eq!(first.status, 202, "{first:?}");
    // The sender retries the same message: deduplicated by `webhook-id`.
    let again = post(&url, body, &standard_headers("msg_1", now(), body)).await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.body["duplicate"], true, "{again:?}");
    assert_eq!(again.body["execution_id"], first.body["execution_id"]);

    // A captured request replayed an hour later, or with a new id.
    let stale = post(&url, body, &standard_headers("msg_2", now() - 3600, body)).await;
    assert_refused(&stale, "an hour old");
    let mut renamed = standard_headers("msg_1", now(), body);
    renamed[0].1 = "msg_3".into();
    let renamed = post(&url, body, &renamed).await;
    assert_refused(&renamed, "a new id on a signed message");

    sink.wait_for(1, WAIT).await;
    assert_eq!(sink.requests().len(), 1, "{}", sink.summary());
}

#[test]
fn an_empty_credential_stops_the_binary_naming_it() {
    let sink = Sink::start();
    let binary = support::build_example("tests/flows/callers.flow");
    let mut env = env(&sink);
    for (name, value) in &mut env {
        if *name == "NEXT_API_TOKEN" {
            value.clear();
        }
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let done = run_binary(&binary, &env, &["serve", "--addr", "127.0.0.1:0"], WAIT);
    assert_eq!(done.code, Some(2), "{done:#?}");
    assert!(!done.stdout.contains("listening on"), "{done:#?}");
    assert!(
        done.stderr
            .contains("next_api_token (environment variable NEXT_API_TOKEN): empty")
            && done
                .stderr
                .contains("flow `lookup` checks callers' credentials"),
        "{}",
        done.stderr
    );
}
