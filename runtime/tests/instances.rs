//! `serve --instances` through the runtime's API: one integration served
//! for two customers, each with its own config, CRM and store; the
//! instances API's answers (201/200/422/404/503/401), the lifecycle flows
//! against each instance's own CRM, and configs sealed in the store.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{config_entry, flow, integration, within};
use flow_runtime::core::seal::{Keyring, MasterKey};
use flow_runtime::instances::{InstanceSettings, InstanceStores, Instances};
use flow_runtime::{
    json, ops, Args, Config, Ctx, FlowDef, FlowFuture, Integration, Outcome, Runtime,
    RuntimeOptions, Schema, ServerHandle, SqliteOptions, SqliteStore, Store, TriggerDef, Value,
};
use flow_testkit::{Reply, Sink};

const TOKEN: &str = "admin-token-1234";
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn crm(cx: &Ctx, path: &str) -> Value {
    Value::String(ops::interp(&[
        ops::field(cx.config(), "crm_url"),
        json!(path),
    ]))
}

fn key_header(cx: &Ctx) -> Value {
    json!({ "x-api-key": ops::field(cx.config(), "api_key") })
}

/// Forwards the contact to the instance's CRM with its key.
fn contact(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let body = ops::field(cx.trigger(), "body");
        let args = Args::new()
            .arg(crm(&cx, "/contacts"))
            .kw("json", body)
            .kw("headers", key_header(&cx));
        cx.step("send", common::no_retry(), "http.post", args)
            .await?;
        Ok(Outcome::Succeeded)
    })
}

/// Registers the instance's webhook URL at its CRM.
fn register(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let url = ops::field(&ops::field(cx.trigger(), "endpoints"), "contact");
        let args = Args::new()
            .arg(crm(&cx, "/hooks"))
            .kw("json", json!({ "url": url }))
            .kw("headers", key_header(&cx));
        cx.step("register", common::no_retry(), "http.post", args)
            .await?;
        Ok(Outcome::Succeeded)
    })
}

/// Unregisters it.
fn unregister(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let args = Args::new()
            .arg(crm(&cx, "/hooks"))
            .kw("headers", key_header(&cx));
        cx.step("unregister", common::no_retry(), "http.delete", args)
            .await?;
        Ok(Outcome::Succeeded)
    })
}

/// Tells the instance's CRM about each tick.
fn tick(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let args = Args::new()
            .arg(crm(&cx, "/ticks"))
            .kw("json", cx.trigger().clone())
            .kw("headers", key_header(&cx));
        cx.step("tick", common::no_retry(), "http.post", args)
            .await?;
        Ok(Outcome::Succeeded)
    })
}

/// A lookup slower than its sync timeout: answered `202` with where to
/// look for its outcome.
fn slow_lookup(_cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(Outcome::Succeeded)
    })
}

fn flows(_: &Config) -> Vec<FlowDef> {
    vec![
        flow(
            "slow_lookup",
            TriggerDef::Sync {
                method: "POST",
                path: "/lookup",
                body: Schema::Json,
                timeout: Duration::from_millis(50),
                fallback_async: true,
                reads_headers: false,
                verify: None,
                auth: None,
            },
            slow_lookup,
        ),
        flow("contact", common::json_webhook("/contacts", None), contact),
        flow(
            "tick",
            TriggerDef::Every {
                period: Duration::from_secs(1),
                catch_up: false,
            },
            tick,
        ),
        flow("register", TriggerDef::Deploy, register),
        flow("unregister", TriggerDef::Remove, unregister),
    ]
}

fn crm_integration() -> Integration {
    Integration {
        config: vec![
            config_entry("crm_url", Schema::Url),
            config_entry("api_key", Schema::Secret),
        ],
        ..integration("crm_sync", flows)
    }
}

fn settings(stores: InstanceStores, keys: Keyring) -> InstanceSettings {
    InstanceSettings {
        stores,
        workers: 2,
        drain_timeout: Duration::from_secs(5),
        lease: Duration::from_secs(30),
        retention: None,
        failed_retention: None,
        catch_up_window: Duration::from_secs(60),
        admin_token: Some(TOKEN.into()),
        intake: Default::default(),
        callbacks: None,
        redactor: flow_runtime::Redactor::new(),
        keys,
    }
}

/// Serves the instances of the CRM integration, the records in `store`.
async fn serve(store: Option<Arc<dyn Store>>, stores: InstanceStores) -> ServerHandle {
    let keys = Keyring::new(MasterKey::parse("FLOW_MASTER_KEY", KEY).unwrap());
    serve_with(store, stores, keys).await
}

async fn serve_with(
    store: Option<Arc<dyn Store>>,
    stores: InstanceStores,
    keys: Keyring,
) -> ServerHandle {
    let control = Runtime::new(
        Integration {
            flows: |_| Vec::new(),
            ..integration("crm_sync", |_| Vec::new())
        },
        RuntimeOptions {
            store,
            ..common::options(&[])
        },
    )
    .unwrap();
    let instances = Instances::new(crm_integration(), control, settings(stores, keys));
    flow_runtime::instances::serve(instances, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn crm_sink() -> Sink {
    let sink = Sink::start();
    for (method, path) in [
        ("POST", "/hooks"),
        ("DELETE", "/hooks"),
        ("POST", "/contacts"),
    ] {
        sink.on(method, path, std::iter::repeat_n(Reply::ok(), 100));
    }
    sink
}

async fn call(method: &str, url: &str, body: Option<Value>, token: Option<&str>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut req = client.request(method.parse().unwrap(), url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = within(url, req.send()).await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn admin(
    method: &str,
    server: &ServerHandle,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    call(
        method,
        &format!("{}{path}", server.url()),
        body,
        Some(TOKEN),
    )
    .await
}

fn config(crm: &Sink, key: &str) -> Value {
    json!({ "config": { "crm_url": crm.url(), "api_key": key } })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_customers_are_served_apart_through_their_lifecycle() {
    let (crm_a, crm_b) = (crm_sink(), crm_sink());
    let server = serve(None, InstanceStores::Memory).await;

    // Refused: no token; a missing entry (named, nothing created); a bad name.
    let (status, _) = call(
        "GET",
        &format!("{}/_flow/instances", server.url()),
        None,
        None,
    )
    .await;
    assert_eq!(status, 401);
    let (status, body) = admin(
        "PUT",
        &server,
        "/_flow/instances/acme",
        Some(json!({ "config": { "crm_url": crm_a.url() } })),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body["problems"].to_string().contains("api_key"), "{body}");
    assert_eq!(
        admin("GET", &server, "/_flow/instances/acme", None).await.0,
        404
    );
    assert_eq!(
        admin(
            "PUT",
            &server,
            "/_flow/instances/Acme_1",
            Some(config(&crm_a, "k"))
        )
        .await
        .0,
        400
    );
    assert_eq!(
        admin(
            "PUT",
            &server,
            "/_flow/instances/acme",
            Some(json!({ "cfg": {} }))
        )
        .await
        .0,
        400
    );
    let huge = json!({ "config": { "crm_url": "x".repeat(2 * 1024 * 1024) } });
    assert_eq!(
        admin("PUT", &server, "/_flow/instances/acme", Some(huge))
            .await
            .0,
        413
    );

    // Created: each registers its own endpoint at its own CRM.
    let (status, acme) = admin(
        "PUT",
        &server,
        "/_flow/instances/acme",
        Some(config(&crm_a, "key-acme-1")),
    )
    .await;
    assert_eq!(status, 201, "{acme}");
    assert_eq!(acme["config"]["api_key"], "***");
    let (status, _) = admin(
        "PUT",
        &server,
        "/_flow/instances/globex",
        Some(config(&crm_b, "key-globex-2")),
    )
    .await;
    assert_eq!(status, 201);
    let hook_a = crm_a.requests_to("POST", "/hooks");
    assert_eq!(hook_a.len(), 1);
    assert_eq!(
        hook_a[0].body["url"],
        format!("{}/i/acme/contacts", server.url())
    );
    assert_eq!(hook_a[0].header("x-api-key"), Some("key-acme-1"));
    assert_eq!(
        crm_b.requests_to("POST", "/hooks")[0].body["url"],
        format!("{}/i/globex/contacts", server.url())
    );
    assert_eq!(
        acme["endpoints"]["contact"],
        format!("{}/i/acme/contacts", server.url())
    );
    let (_, list) = admin("GET", &server, "/_flow/instances", None).await;
    assert_eq!(list["instances"].as_array().unwrap().len(), 2, "{list}");
    assert!(!list.to_string().contains("key-acme-1"), "{list}");

    // A webhook reaches only its own instance's CRM, with its own key.
    let (status, _) = call(
        "POST",
        &format!("{}/i/acme/contacts", server.url()),
        Some(json!({ "name": "Ada" })),
        None,
    )
    .await;
    assert_eq!(status, 202);
    let got = within(
        "acme's contact",
        crm_a.wait_for_path("POST", "/contacts", 1, common::WAIT),
    )
    .await;
    assert_eq!(got[0].body["name"], "Ada");
    assert_eq!(got[0].header("x-api-key"), Some("key-acme-1"));
    assert!(crm_b.requests_to("POST", "/contacts").is_empty());
    // Its executions are its own.
    let (_, runs) = admin("GET", &server, "/i/acme/_flow/executions", None).await;
    assert_eq!(runs["executions"][0]["flow"], "contact", "{runs}");
    assert_eq!(runs["executions"][0]["instance"], "acme", "{runs}");
    let id = runs["executions"][0]["id"].as_str().unwrap();
    let (status, run) = admin(
        "GET",
        &server,
        &format!("/i/acme/_flow/executions/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["flow"], "contact", "{run}");
    let (_, runs) = admin(
        "GET",
        &server,
        "/i/globex/_flow/executions?flow=contact",
        None,
    )
    .await;
    assert_eq!(
        runs["executions"].as_array().map(Vec::len),
        Some(0),
        "{runs}"
    );

    // A slow sync run's status URL is under the instance's prefix.
    let lookup = format!("{}/i/acme/lookup", server.url());
    let (status, answer) = call("POST", &lookup, Some(json!({})), None).await;
    assert_eq!(status, 202, "{answer}");
    let status_url = answer["status_url"].as_str().unwrap();
    assert!(
        status_url.starts_with("/i/acme/_flow/executions/"),
        "{answer}"
    );
    let (status, run) = admin("GET", &server, status_url, None).await;
    assert_eq!(
        (status, &run["flow"]),
        (200, &json!("slow_lookup")),
        "{run}"
    );

    // Its executions page lives under its prefix, with a cookie of its own.
    let page = reqwest::get(format!("{}/i/acme/_flow/ui", server.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(r#"action="/i/acme/_flow/ui/session""#),
        "{page}"
    );
    assert!(
        page.contains(r#"href="/i/acme/_flow/ui/app.css""#),
        "{page}"
    );
    let signed_in = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/i/acme/_flow/ui/session", server.url()))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status().as_u16(), 303);
    assert_eq!(signed_in.headers()["location"], "/i/acme/_flow/ui");
    let cookie = signed_in.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("Path=/i/acme/_flow;"), "{cookie}");

    // The process's metrics show each instance's runs, labelled.
    let metrics = format!("{}/_flow/metrics", server.url());
    let labelled = r#"flow_runs_total{instance="acme",flow="contact",outcome="succeeded"} 1"#;
    within("acme's run in the metrics", async {
        loop {
            let text = reqwest::Client::new()
                .get(&metrics)
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if text.contains(labelled) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    // Paused: 503, and nothing runs (no tick either, while globex ticks
    // on); resumed: served again.
    within(
        "a tick of acme",
        crm_a.wait_for_path("POST", "/ticks", 1, common::WAIT),
    )
    .await;
    let (status, paused) = admin("POST", &server, "/_flow/instances/acme/pause", None).await;
    assert_eq!((status, &paused["paused"]), (200, &json!(true)));
    let (status, _) = call(
        "POST",
        &format!("{}/i/acme/contacts", server.url()),
        Some(json!({})),
        None,
    )
    .await;
    assert_eq!(status, 503);
    let ticks = crm_a.requests_to("POST", "/ticks").len();
    let globex_ticks = crm_b.requests_to("POST", "/ticks").len();
    within(
        "two more ticks of globex",
        crm_b.wait_for_path("POST", "/ticks", globex_ticks + 2, common::WAIT),
    )
    .await;
    assert_eq!(
        crm_a.requests_to("POST", "/ticks").len(),
        ticks,
        "a paused instance ticked"
    );
    admin("POST", &server, "/_flow/instances/acme/resume", None).await;
    let (status, _) = call(
        "POST",
        &format!("{}/i/acme/contacts", server.url()),
        Some(json!({ "name": "Bob" })),
        None,
    )
    .await;
    assert_eq!(status, 202);
    within(
        "acme's second contact",
        crm_a.wait_for_path("POST", "/contacts", 2, common::WAIT),
    )
    .await;

    // Updated: 200, the old registration removed and the new one made.
    let (status, _) = admin(
        "PUT",
        &server,
        "/_flow/instances/acme",
        Some(config(&crm_a, "key-acme-2")),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        crm_a.requests_to("DELETE", "/hooks")[0].header("x-api-key"),
        Some("key-acme-1")
    );
    assert_eq!(
        crm_a.requests_to("POST", "/hooks")[1].header("x-api-key"),
        Some("key-acme-2")
    );

    // Deleted: its remove flow ran against its own CRM; then it is gone.
    let (status, deleted) = admin("DELETE", &server, "/_flow/instances/globex", None).await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["removed"][0]["flow"], "unregister");
    assert_eq!(crm_b.requests_to("DELETE", "/hooks").len(), 1);
    assert_eq!(crm_a.requests_to("DELETE", "/hooks").len(), 1);
    let (status, _) = call(
        "POST",
        &format!("{}/i/globex/contacts", server.url()),
        Some(json!({})),
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(
        admin("GET", &server, "/_flow/instances/globex", None)
            .await
            .0,
        404
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_are_sealed_on_disk_and_instances_come_back_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let crm_a = crm_sink();
    let open = || -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(dir.path().join("crm.db"), SqliteOptions::default()).unwrap())
    };
    let stores = || InstanceStores::sqlite_beside(&dir.path().join("crm.db"), Default::default());
    let server = serve(Some(open()), stores()).await;
    let (status, _) = admin(
        "PUT",
        &server,
        "/_flow/instances/acme",
        Some(config(&crm_a, "very-secret-key-77")),
    )
    .await;
    assert_eq!(status, 201);
    server.shutdown().await;

    for entry in walk(dir.path()) {
        // A -wal or -shm file may go away as the closed store checkpoints.
        let Ok(bytes) = std::fs::read(&entry) else {
            continue;
        };
        let found = bytes.windows(18).any(|w| w == b"very-secret-key-77");
        assert!(!found, "the secret is readable in {}", entry.display());
    }
    assert!(dir.path().join("crm.instances/acme.db").exists());

    // A new process over the same files serves the instance again, without
    // running its deploy flow a second time.
    let server = serve(Some(open()), stores()).await;
    accepted_once_started(&server, "acme", json!({ "name": "Ada" })).await;
    let got = within(
        "contact after restart",
        crm_a.wait_for_path("POST", "/contacts", 1, common::WAIT),
    )
    .await;
    assert_eq!(got[0].header("x-api-key"), Some("very-secret-key-77"));
    assert_eq!(crm_a.requests_to("POST", "/hooks").len(), 1);
    server.shutdown().await;

    // The key rotated: opened with the previous key and sealed again with
    // the new one, so that the new key alone serves it afterwards.
    const NEW_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1e";
    let rotating = Keyring::from_env(|var| match var {
        "FLOW_MASTER_KEY" => Some(NEW_KEY.into()),
        "FLOW_MASTER_KEY_PREVIOUS" => Some(KEY.into()),
        _ => None,
    })
    .unwrap();
    serve_with(Some(open()), stores(), rotating)
        .await
        .shutdown()
        .await;
    let new_only = Keyring::new(MasterKey::parse("FLOW_MASTER_KEY", NEW_KEY).unwrap());
    let server = serve_with(Some(open()), stores(), new_only).await;
    let (status, acme) = admin("GET", &server, "/_flow/instances/acme", None).await;
    assert_eq!(status, 200, "{acme}");
    accepted_once_started(&server, "acme", json!({ "name": "Bob" })).await;

    // A process with another key lists the instance it cannot open, with
    // an error, and serves nothing of it.
    let other_key = Keyring::new(MasterKey::parse("FLOW_MASTER_KEY", &"ab".repeat(32)).unwrap());
    let other = serve_with(Some(open()), stores(), other_key).await;
    let (status, list) = admin("GET", &other, "/_flow/instances", None).await;
    assert_eq!(status, 200, "{list}");
    let error = list["instances"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("FLOW_MASTER_KEY"), "{list}");
    assert!(!list.to_string().contains("very-secret-key-77"), "{list}");
    other.shutdown().await;

    // Deleted: its store is put aside, not reused by a new `acme`.
    assert_eq!(
        admin("DELETE", &server, "/_flow/instances/acme", None)
            .await
            .0,
        200
    );
    assert!(!dir.path().join("crm.instances/acme.db").exists());
    server.shutdown().await;
    // Kept aside until the retention removes it.
    let aside = |dir: &std::path::Path| {
        walk(dir)
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(".deleted-"))
            .count()
    };
    assert!(aside(dir.path()) >= 1);
    let now = chrono::Utc::now().timestamp();
    assert_eq!(
        stores().purge_retired(now - 3600).await.unwrap(),
        0,
        "removed too early"
    );
    assert_eq!(stores().purge_retired(now + 10).await.unwrap(), 1);
    assert_eq!(aside(dir.path()), 0);
}

/// Posts a contact to `instance` until it is accepted (`404` until the
/// server has started it: the previous server in this test process may
/// still hold its store's file for a moment, and it is retried at the next
/// reconcile).
async fn accepted_once_started(server: &ServerHandle, instance: &str, contact: Value) {
    let url = format!("{}/i/{instance}/contacts", server.url());
    within(&format!("{instance} started"), async {
        loop {
            match call("POST", &url, Some(contact.clone()), None).await.0 {
                202 => break,
                404 => tokio::time::sleep(Duration::from_millis(100)).await,
                other => panic!("{url}: {other}"),
            }
        }
    })
    .await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

mod pg_support;

/// Two replicas on one PostgreSQL store: an instance created through one
/// is served by the other, and each of its ticks runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_postgres_serve_every_instance_and_tick_once() {
    let Some(url) = pg_support::url("replicas_on_postgres_serve_every_instance_and_tick_once")
    else {
        return;
    };
    let schema = pg_support::schema_name();
    let control_store = || async {
        let store =
            flow_runtime::store::PostgresStore::open(flow_runtime::store::PostgresOptions {
                url: url.clone(),
                schema: schema.clone(),
                pool_size: 4,
            })
            .await
            .unwrap();
        Some(Arc::new(store) as Arc<dyn Store>)
    };
    let stores = InstanceStores::Postgres {
        url: url.clone(),
        schema: schema.clone(),
        pool_size: 4,
    };
    let one = serve(control_store().await, stores.clone()).await;
    let two = serve(control_store().await, stores).await;
    let crm = crm_sink();
    let (status, body) = admin(
        "PUT",
        &one,
        "/_flow/instances/acme",
        Some(config(&crm, "pg-key")),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // The other replica serves it once it has read the record.
    within("acme served by the second replica", async {
        loop {
            let (status, _) = call(
                "POST",
                &format!("{}/i/acme/contacts", two.url()),
                Some(json!({ "name": "Ada" })),
                None,
            )
            .await;
            if status == 202 {
                break;
            }
            assert_eq!(status, 404);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    within(
        "the contact",
        crm.wait_for_path("POST", "/contacts", 1, common::WAIT),
    )
    .await;
    // Both replicas run acme's schedule; each tick runs once.
    let ticks = within(
        "five ticks",
        crm.wait_for_path("POST", "/ticks", 5, common::WAIT),
    )
    .await;
    let mut fired: Vec<String> = ticks
        .iter()
        .map(|t| t.body["fired_at"].to_string())
        .collect();
    let all = fired.len();
    fired.sort();
    fired.dedup();
    assert_eq!(fired.len(), all, "a tick ran twice: {fired:?}");
    assert_eq!(crm.requests_to("POST", "/hooks").len(), 1, "deployed twice");
    // Deleted through the other replica: its schema is put aside, then
    // dropped by the retention.
    assert_eq!(
        admin("DELETE", &two, "/_flow/instances/acme", None).await.0,
        200
    );
    let stores = InstanceStores::Postgres {
        url: url.clone(),
        schema: schema.clone(),
        pool_size: 4,
    };
    let now = chrono::Utc::now().timestamp();
    assert_eq!(stores.purge_retired(now - 3600).await.unwrap(), 0);
    assert_eq!(stores.purge_retired(now + 10).await.unwrap(), 1);
    one.shutdown().await;
    two.shutdown().await;
    for s in [schema.clone(), format!("{schema}_i_acme")] {
        pg_support::drop_schema(&url, &s).await;
    }
}
