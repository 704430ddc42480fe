//! End to end: one binary serving `examples/crm_per_customer.flow` for many
//! customers (`serve --instances`, issue #22), each customer's CRM a
//! stand-in of its own (`tests/support/crm.rs`):
//!
//! - three instances are isolated: hooks registered at their own CRM with
//!   their own `/i/NAME/...` URL, webhooks reach their own CRM with their
//!   own token, each schedule polls its own CRM from its own cursor, each
//!   instance's admin API lists its own executions;
//! - a paused instance answers `503` and stops polling until resumed;
//! - deleting an instance runs its remove flow against its own CRM, then
//!   its endpoints and record are gone;
//! - a config with a missing entry is refused (`422` naming it), a bad
//!   name too (`400`);
//! - without `FLOW_MASTER_KEY` the server refuses to start (exit 2);
//! - with a SQLite store, no instance secret is readable in its files;
//! - two replicas on one PostgreSQL store (`FLOW_TEST_POSTGRES_URL`): an
//!   instance created through one is served by the other, and each tick
//!   runs once;
//! - the CLI (`instances put/list/pause/resume/delete`).
//!
//! And the same example for one customer, without instances (plain `serve`,
//! config from the environment).

mod support;

#[path = "support/crm.rs"]
mod crm;

use std::collections::HashSet;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use crm::{Call, Crm};
use serde_json::{json, Value};
use support::{post_json, request, run_binary, wait_execution, Answer, Service};

const ADMIN: &str = "admin-token-instances-e2e";
const WAIT: Duration = Duration::from_secs(30);
const EXAMPLE: &str = "examples/crm_per_customer.flow";

/// The example with PostgreSQL (the replicas' test runs it with `--store
/// postgres://`; one build, one feature set, for every test of the file).
fn binary() -> PathBuf {
    support::build_example_with(EXAMPLE, &["postgres"])
}

/// 32 random bytes, base64: a `FLOW_MASTER_KEY`.
fn master_key() -> String {
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .expect("read /dev/urandom");
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// `serve --instances` with `store` (`memory`, `sqlite://...`, ...) and
/// `extra` arguments, under `key`.
fn serve_instances(key: &str, store: &str, extra: &[&str]) -> Service {
    let mut args = vec!["--instances", "--store", store];
    args.extend_from_slice(extra);
    Service::start(
        &binary(),
        &[("FLOW_MASTER_KEY", key), ("FLOW_ADMIN_TOKEN", ADMIN)],
        &args,
    )
}

/// A request to the admin API with the admin token.
async fn admin(svc: &Service, method: &str, path: &str, body: Option<Value>) -> Answer {
    let bearer = format!("Bearer {ADMIN}");
    let mut headers = vec![("Authorization", bearer.as_str())];
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    let body = body.map(|b| b.to_string().into_bytes());
    request(method, &svc.at(path), body, &headers).await
}

/// `PUT /_flow/instances/{name}` with `{"config": config}`.
async fn put_instance(svc: &Service, name: &str, config: Value) -> Answer {
    let path = format!("/_flow/instances/{name}");
    admin(svc, "PUT", &path, Some(json!({ "config": config }))).await
}

/// Creates instance `name` for `crm` (the test fails unless `201`);
/// returns the instance.
async fn create(svc: &Service, name: &str, crm: &Crm) -> Value {
    let a = put_instance(svc, name, crm.config()).await;
    assert_eq!(a.status, 201, "PUT instance {name}: {}", a.body);
    a.body
}

/// A contact as the CRM reports it to the webhook.
fn contact(id: &str) -> Value {
    json!({ "id": id, "email": format!(" {id}@Example.com "), "name": format!("Name {id}") })
}

/// POSTs a contact to instance `name`'s webhook: `(status, answer)`.
async fn send_contact(svc: &Service, name: &str, id: &str) -> (u16, Value) {
    post_json(&svc.at(&format!("/i/{name}/contacts")), &contact(id), &[]).await
}

/// POSTs a contact to instance `name`'s webhook (`202`), waits for its
/// run to succeed and returns the execution id.
async fn contact_run(svc: &Service, name: &str, id: &str) -> String {
    let (status, answer) = send_contact(svc, name, id).await;
    assert_eq!(status, 202, "webhook of {name}: {answer}");
    let exec_id = answer["execution_id"]
        .as_str()
        .expect("execution_id")
        .to_string();
    let exec = wait_listed(svc, name, "contact_created", &exec_id).await;
    assert_eq!(exec["status"], "succeeded", "{exec:#}");
    exec_id
}

/// Waits until execution `id` of `flow` has ended, as instance `name`'s
/// admin API lists it, and returns it.
async fn wait_listed(svc: &Service, name: &str, flow: &str, id: &str) -> Value {
    let what = format!("execution {id} of {name} to end");
    support::poll_until(WAIT, &what, || async {
        instance_executions(svc, name, flow)
            .await
            .into_iter()
            .find(|e| e["id"] == id)
            .filter(|e| {
                matches!(
                    e["status"].as_str(),
                    Some("succeeded" | "failed" | "skipped")
                )
            })
    })
    .await
}

/// The `since` of each poll of the change feed.
fn since(polls: &[Call]) -> Vec<String> {
    polls
        .iter()
        .map(|c| c.query.get("since").cloned().unwrap_or_default())
        .collect()
}

/// Fails unless every call to `crm` that carried a token carried one
/// `crm` issued, and none was refused.
fn assert_own_tokens(crm: &Crm, name: &str) {
    let issued = crm.tokens();
    assert!(!issued.is_empty(), "{name}: no token issued");
    for c in crm.calls() {
        if let Some(t) = &c.token {
            assert!(issued.contains(t), "{name}: foreign token {t} on {c:?}");
        }
    }
    assert_eq!(
        crm.refused(),
        0,
        "{name}: calls refused:\n{}",
        crm.summary()
    );
}

/// Waits until `crm` has been polled at least `n` more times than now.
async fn more_polls(crm: &Crm, n: usize, what: &str) {
    let now = crm.polls().len();
    crm.wait_for(WAIT, what, |calls| {
        calls.iter().filter(|c| c.path == "/changes").count() >= now + n
    })
    .await;
}

/// Waits (bounded) until `still` is not polled for 3 s while `moving` is
/// polled at least twice in the same 3 s.
async fn polls_stopped(still: &Crm, moving: &Crm) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (s0, m0) = (still.polls().len(), moving.polls().len());
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (s1, m1) = (still.polls().len(), moving.polls().len());
        if s1 == s0 && m1 >= m0 + 2 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the paused instance kept polling ({s0} -> {s1}) or the other stopped ({m0} -> {m1})"
        );
    }
}

/// The executions instance `name`'s admin API lists for `flow`.
async fn instance_executions(svc: &Service, name: &str, flow: &str) -> Vec<Value> {
    let a = admin(
        svc,
        "GET",
        &format!("/i/{name}/_flow/executions?flow={flow}"),
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["executions"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_against_three_crms_are_isolated() {
    let names = ["acme", "bolt", "cobalt"];
    let crms: Vec<Crm> = names
        .iter()
        .map(|n| Crm::start(&format!("client-{n}"), &format!("secret-{n}-Xk29")))
        .collect();
    let svc = serve_instances(&master_key(), "memory", &[]);

    // Each PUT runs the deploy flow before answering: the hook is
    // registered at its own CRM with its own URL, with its own token.
    for (name, crm) in names.iter().zip(&crms) {
        let inst = create(&svc, name, crm).await;
        assert_eq!(inst["name"], *name, "{inst:#}");
        assert_eq!(inst["paused"], false, "{inst:#}");
        assert_eq!(inst["config"]["client_secret"], "***", "{inst:#}");
        assert_eq!(inst["config"]["client_id"], format!("client-{name}"));
        let endpoint = inst["endpoints"]["contact_created"]
            .as_str()
            .unwrap_or_else(|| panic!("no endpoint for contact_created: {inst:#}"))
            .to_string();
        assert_eq!(endpoint, svc.at(&format!("/i/{name}/contacts")));
        assert_eq!(crm.hooks(), [endpoint], "{name}'s hooks");
        let registered = crm.calls_to("POST", "/hooks");
        assert_eq!(registered.len(), 1, "{name}: {}", crm.summary());
        assert!(
            registered[0].token.is_some(),
            "{name}: hook sent without token"
        );
    }
    let listed = admin(&svc, "GET", "/_flow/instances", None).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let mut listed_names: Vec<&str> = listed.body["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    listed_names.sort_unstable();
    assert_eq!(listed_names, names);
    for i in listed.body["instances"].as_array().into_iter().flatten() {
        assert_eq!(i["config"]["client_secret"], "***", "{i:#}");
    }

    // Webhooks: a contact sent to one instance reaches its own CRM only.
    let mut runs = Vec::new();
    for (name, crm) in names.iter().zip(&crms) {
        let id = format!("c-{name}");
        runs.push(contact_run(&svc, name, &id).await);
        let notes = crm.calls_to("POST", &format!("/contacts/{id}/notes"));
        assert_eq!(notes.len(), 1, "{name}: {}", crm.summary());
        assert_eq!(notes[0].body["email"], format!("{id}@example.com"));
    }
    for (name, crm) in names.iter().zip(&crms) {
        let notes: Vec<Call> = crm
            .calls()
            .into_iter()
            .filter(|c| c.path.starts_with("/contacts/"))
            .collect();
        assert_eq!(notes.len(), 1, "{name}: {}", crm.summary());
        assert_eq!(notes[0].path, format!("/contacts/c-{name}/notes"));
    }

    // Each instance's admin API lists its own executions only.
    for (i, name) in names.iter().enumerate() {
        let listed = instance_executions(&svc, name, "contact_created").await;
        let ids: Vec<&str> = listed.iter().filter_map(|e| e["id"].as_str()).collect();
        assert_eq!(ids, [runs[i].as_str()], "{name}: {listed:#?}");
        assert_eq!(listed[0]["instance"], *name, "{:#}", listed[0]);
    }

    // Schedules: each CRM is polled from cursor 0; a change at bolt's CRM
    // moves bolt's cursor only.
    for (name, crm) in names.iter().zip(&crms) {
        more_polls(crm, 1, &format!("a poll of {name}'s CRM")).await;
    }
    crms[1].add_change("c-bolt-1");
    crms[1]
        .wait_for(WAIT, "bolt's cursor to move to 1", |calls| {
            calls.iter().any(|c| {
                c.path == "/changes" && c.query.get("since").map(String::as_str) == Some("1")
            })
        })
        .await;
    let acks = crms[1].calls_to("POST", "/acks");
    assert_eq!(acks.len(), 1, "{}", crms[1].summary());
    assert_eq!(acks[0].body, json!({ "seq": 1, "contact": "c-bolt-1" }));
    // Two more polls at the others, after bolt's cursor moved: still 0.
    for (name, crm) in [(names[0], &crms[0]), (names[2], &crms[2])] {
        more_polls(crm, 2, &format!("two more polls of {name}'s CRM")).await;
        assert!(
            since(&crm.polls()).iter().all(|s| s == "0"),
            "{name}'s cursor moved: {:?}",
            since(&crm.polls())
        );
        assert!(crm.calls_to("POST", "/acks").is_empty(), "{name}");
    }
    for (name, crm) in names.iter().zip(&crms) {
        assert_own_tokens(crm, name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_admin_api_shows_its_own_executions_by_id() {
    let a = Crm::start("client-a", "secret-a-Ex61");
    let b = Crm::start("client-b", "secret-b-Ex62");
    let svc = serve_instances(&master_key(), "memory", &[]);
    create(&svc, "acme", &a).await;
    create(&svc, "bolt", &b).await;
    let run = contact_run(&svc, "acme", "c-a").await;

    let exec = wait_execution(&svc.at("/i/acme"), &run, ADMIN, WAIT).await;
    assert_eq!(exec["flow"], "contact_created", "{exec:#}");
    assert_eq!(exec["status"], "succeeded", "{exec:#}");
    assert_eq!(exec["instance"], "acme", "{exec:#}");
    let path = format!("/i/bolt/_flow/executions/{run}");
    let other = admin(&svc, "GET", &path, None).await;
    assert_eq!(other.status, 404, "{}", other.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_instance_answers_503_and_stops_polling_until_resumed() {
    let a = Crm::start("client-a", "secret-a-Pq71");
    let b = Crm::start("client-b", "secret-b-Pq72");
    let svc = serve_instances(&master_key(), "memory", &[]);
    create(&svc, "a", &a).await;
    create(&svc, "b", &b).await;
    more_polls(&a, 1, "a poll of a's CRM").await;
    more_polls(&b, 1, "a poll of b's CRM").await;

    let paused = admin(&svc, "POST", "/_flow/instances/a/pause", None).await;
    assert_eq!(paused.status, 200, "{}", paused.body);
    assert_eq!(paused.body["paused"], true, "{}", paused.body);
    let shown = admin(&svc, "GET", "/_flow/instances/a", None).await;
    assert_eq!(shown.body["paused"], true, "{}", shown.body);

    let (status, answer) = send_contact(&svc, "a", "c-paused").await;
    assert_eq!(status, 503, "{answer}");
    assert!(answer["error"].is_string(), "not a JSON error: {answer}");
    polls_stopped(&a, &b).await;
    // b is not disturbed.
    contact_run(&svc, "b", "c-b").await;
    assert!(
        a.calls().iter().all(|c| !c.path.starts_with("/contacts/")),
        "{}",
        a.summary()
    );

    let resumed = admin(&svc, "POST", "/_flow/instances/a/resume", None).await;
    assert_eq!(resumed.status, 200, "{}", resumed.body);
    assert_eq!(resumed.body["paused"], false, "{}", resumed.body);
    more_polls(&a, 2, "a's CRM polled again after resume").await;
    contact_run(&svc, "a", "c-a").await;
    assert_eq!(a.calls_to("POST", "/contacts/c-a/notes").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_instance_runs_its_remove_flow_against_its_own_crm() {
    let a = Crm::start("client-a", "secret-a-Dl11");
    let b = Crm::start("client-b", "secret-b-Dl12");
    let svc = serve_instances(&master_key(), "memory", &[]);
    let inst_a = create(&svc, "a", &a).await;
    create(&svc, "b", &b).await;
    let hook_a = inst_a["endpoints"]["contact_created"]
        .as_str()
        .expect("a's endpoint")
        .to_string();
    assert_eq!(a.hooks(), std::slice::from_ref(&hook_a));
    contact_run(&svc, "a", "c-a").await;

    let deleted = admin(&svc, "DELETE", "/_flow/instances/a", None).await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(deleted.body["name"], "a", "{}", deleted.body);
    let removed = deleted.body["removed"].as_array().expect("removed");
    assert_eq!(removed.len(), 1, "{:#}", deleted.body);
    assert_eq!(removed[0]["flow"], "unregister_hook");
    assert_eq!(removed[0]["status"], "succeeded", "{:#}", removed[0]);
    assert!(removed[0]["execution_id"].is_string(), "{:#}", removed[0]);

    // The hook was removed at a's CRM, with a's token, and only there.
    let unregistered = a.calls_to("DELETE", "/hooks");
    assert_eq!(unregistered.len(), 1, "{}", a.summary());
    assert_eq!(unregistered[0].query.get("url"), Some(&hook_a));
    assert!(a.hooks().is_empty());
    assert_own_tokens(&a, "a");
    assert!(b.calls_to("DELETE", "/hooks").is_empty(), "{}", b.summary());
    assert_eq!(b.hooks().len(), 1);

    let (status, answer) = send_contact(&svc, "a", "c-gone").await;
    assert_eq!(status, 404, "{answer}");
    let gone = admin(&svc, "GET", "/_flow/instances/a", None).await;
    assert_eq!(gone.status, 404, "{}", gone.body);
    let gone = admin(&svc, "GET", "/i/a/_flow/executions", None).await;
    assert_eq!(gone.status, 404, "{}", gone.body);
    let listed = admin(&svc, "GET", "/_flow/instances", None).await;
    let names: Vec<&str> = listed.body["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(names, ["b"]);
    // b goes on.
    contact_run(&svc, "b", "c-b").await;
    // a is polled no more.
    polls_stopped(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_updated_instance_uses_its_new_config_and_keeps_its_state() {
    let old = Crm::start("client-old", "secret-old-Up41");
    let new = Crm::start("client-new", "secret-new-Up42");
    let svc = serve_instances(&master_key(), "memory", &[]);
    create(&svc, "acme", &old).await;
    old.add_change("c-1");
    old.wait_for(WAIT, "the cursor to move to 1", |calls| {
        calls
            .iter()
            .any(|c| c.path == "/changes" && c.query.get("since").map(String::as_str) == Some("1"))
    })
    .await;

    let updated = put_instance(&svc, "acme", new.config()).await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.body["config"]["client_id"], "client-new");
    assert_eq!(updated.body["config"]["client_secret"], "***");
    let shown = admin(&svc, "GET", "/_flow/instances/acme", None).await;
    assert_eq!(shown.body["config"]["crm_url"], new.url(), "{}", shown.body);
    // The update ran the remove flow against the old CRM and the deploy
    // flow against the new one: the hook moved.
    assert!(old.hooks().is_empty(), "{}", old.summary());
    assert_eq!(
        new.hooks(),
        [svc.at("/i/acme/contacts")],
        "{}",
        new.summary()
    );

    // The schedule now polls the new CRM, with its tokens, from the
    // instance's cursor; the old CRM is polled no more.
    more_polls(&new, 2, "polls of the new CRM").await;
    polls_stopped(&old, &new).await;
    assert!(
        since(&new.polls()).iter().all(|s| s == "1"),
        "the cursor was not kept: {:?}",
        since(&new.polls())
    );
    contact_run(&svc, "acme", "c-2").await;
    assert_eq!(new.calls_to("POST", "/contacts/c-2/notes").len(), 1);
    assert!(old.calls_to("POST", "/contacts/c-2/notes").is_empty());
    assert_own_tokens(&new, "new");
    assert_own_tokens(&old, "old");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_with_a_missing_entry_is_refused_with_422_naming_it() {
    let crm = Crm::start("client-x", "secret-x-Mi55");
    let svc = serve_instances(&master_key(), "memory", &[]);

    let mut config = crm.config();
    config
        .as_object_mut()
        .expect("an object")
        .remove("client_secret");
    let refused = put_instance(&svc, "x", config).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    let error = refused.body["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("invalid configuration"),
        "{}",
        refused.body
    );
    let problems = refused.body["problems"].as_array().expect("problems");
    assert_eq!(problems.len(), 1, "{}", refused.body);
    assert!(
        problems[0]
            .as_str()
            .is_some_and(|p| p.contains("client_secret")),
        "{}",
        refused.body
    );

    // A malformed entry and a missing one: both named.
    let mut config = crm.config();
    config["crm_url"] = json!("not a url");
    config
        .as_object_mut()
        .expect("an object")
        .remove("client_id");
    let refused = put_instance(&svc, "x", config).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    let problems = refused.body["problems"].to_string();
    assert!(problems.contains("crm_url"), "{}", refused.body);
    assert!(problems.contains("client_id"), "{}", refused.body);
    // The secret given is not echoed.
    assert!(!refused.body.to_string().contains("secret-x-Mi55"));

    // Without the admin token, nothing.
    let path = svc.at("/_flow/instances/x");
    let body = json!({ "config": crm.config() }).to_string().into_bytes();
    let refused = request(
        "PUT",
        &path,
        Some(body),
        &[("Content-Type", "application/json")],
    )
    .await;
    assert_eq!(refused.status, 401, "{}", refused.body);

    // A bad name.
    for bad in ["Acme", "-acme", "a_b", &"x".repeat(41)] {
        let a = put_instance(&svc, bad, crm.config()).await;
        assert_eq!(a.status, 400, "{bad}: {}", a.body);
    }

    // Nothing was created, nothing ran.
    let gone = admin(&svc, "GET", "/_flow/instances/x", None).await;
    assert_eq!(gone.status, 404, "{}", gone.body);
    let listed = admin(&svc, "GET", "/_flow/instances", None).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.body["instances"], json!([]), "{}", listed.body);
    assert!(crm.calls().is_empty(), "{}", crm.summary());
}

#[test]
fn without_a_master_key_the_server_refuses_to_start() {
    let done = run_binary(
        &binary(),
        &[("FLOW_ADMIN_TOKEN", ADMIN)],
        &[
            "serve",
            "--instances",
            "--addr",
            "127.0.0.1:0",
            "--store",
            "memory",
        ],
        WAIT,
    );
    assert_eq!(done.code, Some(2), "{done:?}");
    assert!(done.stderr.contains("FLOW_MASTER_KEY"), "{}", done.stderr);
    assert!(!done.stdout.contains("listening on"), "{}", done.stdout);
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("read the store folder") {
            let path = entry.expect("a folder entry").path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_secrets_are_not_readable_in_the_sqlite_store() {
    let dir = tempfile::tempdir().expect("store folder");
    let store = format!("sqlite://{}", dir.path().join("x.db").display());
    let key = master_key();
    let crms = [
        Crm::start("client-one", "client-secret-one-Vb93kQ"),
        Crm::start("client-two", "client-secret-two-Wc04lR"),
    ];
    let mut svc = serve_instances(&key, &store, &[]);
    for (name, crm) in ["one", "two"].iter().zip(&crms) {
        create(&svc, name, crm).await;
        contact_run(&svc, name, &format!("c-{name}")).await;
        more_polls(crm, 1, &format!("a poll of {name}'s CRM")).await;
    }
    // Updated: the new secret is sealed too (200, not 201).
    let mut config = crms[1].config();
    config["client_id"] = json!("client-two");
    let updated = put_instance(&svc, "two", config).await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.body["config"]["client_secret"], "***");
    let status = svc.terminate(WAIT);
    assert!(status.success(), "{status:?}\n{}", svc.stderr());

    for name in ["one", "two"] {
        let db = dir.path().join("x.instances").join(format!("{name}.db"));
        assert!(
            db.is_file(),
            "no store {} for instance {name}",
            db.display()
        );
    }
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let files = files_under(dir.path());
    assert!(files.len() >= 3, "{files:?}");
    for secret in ["client-secret-one-Vb93kQ", "client-secret-two-Wc04lR"] {
        let forms = [
            secret.to_string(),
            b64(secret),
            b64(&format!("client-one:{secret}")),
            b64(&format!("client-two:{secret}")),
        ];
        for file in &files {
            let bytes = std::fs::read(file).expect("read a store file");
            for form in &forms {
                assert!(
                    !bytes.windows(form.len()).any(|w| w == form.as_bytes()),
                    "{form} is readable in {}",
                    file.display()
                );
            }
        }
    }
    // Nor in the log.
    for secret in ["client-secret-one-Vb93kQ", "client-secret-two-Wc04lR"] {
        assert!(!svc.stderr().contains(secret), "{secret} in the log");
    }

    // Restarted with the same key, the instances and their secrets are back.
    let svc = serve_instances(&key, &store, &[]);
    let listed = admin(&svc, "GET", "/_flow/instances", None).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.body["instances"].as_array().map(Vec::len), Some(2));
    more_polls(&crms[0], 1, "a poll of one's CRM after the restart").await;
    assert_own_tokens(&crms[0], "one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_postgres_replicas_serve_every_instance_and_tick_once() {
    let test = "two_postgres_replicas_serve_every_instance_and_tick_once";
    let Some(pg) = support::service_url("FLOW_TEST_POSTGRES_URL", test) else {
        return;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let schema = format!("inst_{}_{}", std::process::id(), nanos % 100_000);
    let key = master_key();
    let args = ["--store-schema", schema.as_str()];
    let one = serve_instances(&key, &pg, &args);
    let two = serve_instances(&key, &pg, &args);
    let names = ["north", "south"];
    let crms = [
        Crm::start("client-north", "secret-north-Pg11"),
        Crm::start("client-south", "secret-south-Pg22"),
    ];
    for (name, crm) in names.iter().zip(&crms) {
        create(&one, name, crm).await;
    }

    // Replica two picks the instances up from the registry.
    for name in names {
        let path = format!("/_flow/instances/{name}");
        support::poll_until(WAIT, &format!("{name} on replica two"), || async {
            let a = admin(&two, "GET", &path, None).await;
            (a.status == 200).then_some(a)
        })
        .await;
        support::poll_until(
            WAIT,
            &format!("{name}'s webhook on replica two"),
            || async {
                let (status, answer) = send_contact(&two, name, &format!("c-{name}")).await;
                assert!(status == 202 || status == 404, "{status} {answer}");
                (status == 202).then_some(())
            },
        )
        .await;
    }
    for (name, crm) in names.iter().zip(&crms) {
        crm.wait_for(WAIT, &format!("{name}'s note"), |calls| {
            calls
                .iter()
                .any(|c| c.path == format!("/contacts/c-{name}/notes"))
        })
        .await;
    }

    // Each tick of each instance runs once, whichever replica runs it.
    for (name, crm) in names.iter().zip(&crms) {
        more_polls(crm, 6, &format!("six polls of {name}'s CRM")).await;
    }
    for (name, crm) in names.iter().zip(&crms) {
        let ticks: Vec<String> = crm
            .polls()
            .iter()
            .map(|c| c.query.get("tick").cloned().unwrap_or_default())
            .collect();
        let distinct: HashSet<&String> = ticks.iter().collect();
        assert_eq!(
            distinct.len(),
            ticks.len(),
            "{name}: a tick ran twice: {ticks:?}"
        );
        // The deploy flow ran once, on the replica that created it.
        assert_eq!(crm.calls_to("POST", "/hooks").len(), 1, "{}", crm.summary());
        assert_own_tokens(crm, name);
    }
    // Both replicas list both.
    for svc in [&one, &two] {
        let listed = admin(svc, "GET", "/_flow/instances", None).await;
        assert_eq!(listed.body["instances"].as_array().map(Vec::len), Some(2));
    }

    // Paused through replica one: replica two answers 503 for it too, and
    // neither replica polls its CRM.
    let paused = admin(&one, "POST", "/_flow/instances/north/pause", None).await;
    assert_eq!(paused.status, 200, "{}", paused.body);
    support::poll_until(WAIT, "north paused on replica two", || async {
        let (status, _) = send_contact(&two, "north", "c-late").await;
        assert!(status == 503 || status == 202, "{status}");
        (status == 503).then_some(())
    })
    .await;
    polls_stopped(&crms[0], &crms[1]).await;
    // Deleted through replica one: gone from replica two too.
    let deleted = admin(&one, "DELETE", "/_flow/instances/south", None).await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(crms[1].calls_to("DELETE", "/hooks").len(), 1);
    support::poll_until(WAIT, "south gone from replica two", || async {
        let (status, _) = send_contact(&two, "south", "c-gone").await;
        (status == 404).then_some(())
    })
    .await;
    drop((one, two));

    // Each instance has a schema of its own; no secret is readable in any
    // of the three.
    let (client, conn) = tokio_postgres::connect(&pg, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to FLOW_TEST_POSTGRES_URL: {e}"));
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    // Every schema of this test (the integration's, each instance's, and
    // any a deletion put aside).
    let schemas: Vec<String> = client
        .query(
            "SELECT schema_name::text FROM information_schema.schemata \
             WHERE schema_name = $1 OR schema_name LIKE $1 || '\\_%'",
            &[&schema],
        )
        .await
        .expect("list schemas")
        .iter()
        .map(|r| r.get(0))
        .collect();
    for must in [schema.clone(), format!("{schema}_i_north")] {
        assert!(schemas.contains(&must), "no schema {must} in {schemas:?}");
    }
    for s in &schemas {
        let tables = client
            .query(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
                &[s],
            )
            .await
            .expect("list tables");
        for row in tables {
            let table: String = row.get(0);
            let dump = client
                .query(&format!("SELECT t::text FROM \"{s}\".\"{table}\" t"), &[])
                .await
                .expect("read a table");
            for row in dump {
                let text: String = row.get(0);
                for secret in ["secret-north-Pg11", "secret-south-Pg22"] {
                    assert!(!text.contains(secret), "{secret} readable in {s}.{table}");
                }
            }
        }
    }
    let drop_all: String = schemas
        .iter()
        .map(|s| format!("DROP SCHEMA IF EXISTS \"{s}\" CASCADE;"))
        .collect();
    client
        .batch_execute(&drop_all)
        .await
        .expect("drop the schemas");
    drop(client);
    let _ = task.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_manages_instances_through_a_running_server() {
    let crm = Crm::start("client-cli", "secret-cli-Ct77");
    let svc = serve_instances(&master_key(), "memory", &[]);
    let dir = tempfile::tempdir().expect("config folder");
    let toml = dir.path().join("acme.toml");
    let config = crm.config();
    let text: String = ["crm_url", "crm_token_url", "client_id", "client_secret"]
        .iter()
        .map(|k| format!("{k} = {}\n", config[k]))
        .collect();
    std::fs::write(&toml, text).expect("write the config");
    let bin = binary();
    let cli = |args: &[&str]| {
        let mut all = vec!["instances"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--url", svc.url()]);
        let done = run_binary(&bin, &[("FLOW_ADMIN_TOKEN", ADMIN)], &all, WAIT);
        assert_eq!(done.code, Some(0), "instances {args:?}: {done:?}");
        assert!(
            !done.stdout.contains("secret-cli-Ct77") && !done.stderr.contains("secret-cli-Ct77"),
            "the secret was printed: {done:?}"
        );
        done
    };

    cli(&[
        "put",
        "acme",
        "--config",
        toml.to_str().expect("UTF-8 path"),
    ]);
    let shown = admin(&svc, "GET", "/_flow/instances/acme", None).await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert_eq!(crm.hooks(), [svc.at("/i/acme/contacts")]);
    let listed = cli(&["list"]);
    assert!(listed.stdout.contains("acme"), "{listed:?}");

    cli(&["pause", "acme"]);
    let shown = admin(&svc, "GET", "/_flow/instances/acme", None).await;
    assert_eq!(shown.body["paused"], true, "{}", shown.body);
    cli(&["resume", "acme"]);
    let shown = admin(&svc, "GET", "/_flow/instances/acme", None).await;
    assert_eq!(shown.body["paused"], false, "{}", shown.body);

    cli(&["delete", "acme"]);
    let gone = admin(&svc, "GET", "/_flow/instances/acme", None).await;
    assert_eq!(gone.status, 404, "{}", gone.body);
    assert!(crm.hooks().is_empty(), "{}", crm.summary());

    // Without the admin token the CLI is refused.
    let done = run_binary(&bin, &[], &["instances", "list", "--url", svc.url()], WAIT);
    assert_ne!(done.code, Some(0), "{done:?}");
}

/// The example for one customer, as before instances: plain `serve`, the
/// config from the environment, the hook registered at start-up and
/// removed by `undeploy`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_serves_one_customer_without_instances() {
    let crm = Crm::start("client-solo", "secret-solo-Sg31");
    let dir = tempfile::tempdir().expect("working folder");
    let public = "https://flow.example.test";
    let token_url = crm.token_url();
    let env = [
        ("CRM_URL", crm.url()),
        ("CRM_TOKEN_URL", token_url.as_str()),
        ("CLIENT_ID", "client-solo"),
        ("CLIENT_SECRET", "secret-solo-Sg31"),
        ("PUBLIC_URL", public),
        ("FLOW_ADMIN_TOKEN", ADMIN),
    ];
    let mut svc = Service::start_in(dir.path(), &binary(), &env, &[]);

    let hook = format!("{public}/contacts");
    crm.wait_for(WAIT, "the hook registered", |calls| {
        calls
            .iter()
            .any(|c| c.method == "POST" && c.path == "/hooks")
    })
    .await;
    assert_eq!(crm.hooks(), std::slice::from_ref(&hook));

    let (status, answer) = post_json(&svc.at("/contacts"), &contact("c-1"), &[]).await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["execution_id"].as_str().expect("execution_id");
    let exec = wait_execution(svc.url(), id, ADMIN, WAIT).await;
    assert_eq!(exec["status"], "succeeded", "{exec:#}");
    let notes = crm.calls_to("POST", "/contacts/c-1/notes");
    assert_eq!(notes.len(), 1, "{}", crm.summary());
    assert_eq!(
        notes[0].body,
        json!({ "text": "Welcome, Name c-1", "email": "c-1@example.com" })
    );

    more_polls(&crm, 1, "a poll").await;
    assert!(since(&crm.polls()).iter().all(|s| s == "0"));
    crm.add_change("c-7");
    crm.add_change("c-8");
    crm.wait_for(WAIT, "the cursor to move to 2", |calls| {
        calls
            .iter()
            .any(|c| c.path == "/changes" && c.query.get("since").map(String::as_str) == Some("2"))
    })
    .await;
    let acks: Vec<Value> = crm
        .calls_to("POST", "/acks")
        .into_iter()
        .map(|c| c.body)
        .collect();
    assert_eq!(
        acks,
        [
            json!({ "seq": 1, "contact": "c-7" }),
            json!({ "seq": 2, "contact": "c-8" })
        ]
    );
    assert_own_tokens(&crm, "solo");

    let status = svc.terminate(WAIT);
    assert!(status.success(), "{status:?}");
    let done = support::run_binary_in(dir.path(), &binary(), &env, &["undeploy"], WAIT);
    assert_eq!(done.code, Some(0), "{done:?}");
    let removed = crm.calls_to("DELETE", "/hooks");
    assert_eq!(removed.len(), 1, "{}", crm.summary());
    assert_eq!(removed[0].query.get("url"), Some(&hook));
    assert!(crm.hooks().is_empty());
}
