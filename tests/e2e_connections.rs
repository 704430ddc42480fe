//! End to end: connections (LANGUAGE.md §12) against a fake CRM written
//! here (`tests/flows/connections.flow`). The CRM's token endpoint issues
//! short-lived access tokens and rotates its refresh token on every
//! refresh (the previous one is refused from then on); its API answers
//! `401` to an expired or unknown token and now and then `429` with
//! `Retry-After`.
//!
//! - 200 runs over 10 s all succeed, with one token request per expiry;
//! - the rotated refresh token survives SIGKILL and a restart (the config
//!   still holds the first, long spent, one);
//! - three replicas on one PostgreSQL store keep a connection's shared
//!   limit and refresh once per expiry (`FLOW_TEST_POSTGRES_URL`);
//! - no token, refresh token or client secret reaches the logs or the
//!   execution records.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use support::{admin_execution, poll_until, post_json, Received, Reply, Service, Sink};

const HOOK: &str = "hook-token-e2e";
const ADMIN: &str = "admin-token-e2e";
const CLIENT_ID: &str = "reader";
const CLIENT_SECRET: &str = "client-secret-e2e-Qz";
const FIRST_REFRESH: &str = "rt-first-e2e";
const PARTNER_TOKEN: &str = "partner-token-e2e";
const WAIT: Duration = Duration::from_secs(60);

/// What the fake CRM knows and saw.
struct CrmState {
    /// How long an access token lives.
    life: Duration,
    /// The one refresh token it accepts now.
    refresh: String,
    /// Issued access tokens and when they expire.
    tokens: HashMap<String, Instant>,
    issued: u32,
    /// When each token request came, and whether it was granted.
    token_requests: Vec<(Instant, bool)>,
    /// Every API request, counted for the occasional `429`.
    api_requests: u32,
    /// `401` answers to expired or unknown tokens.
    refused: u32,
    /// When each partner request came.
    partner_requests: Vec<Instant>,
    /// How often each page of `/linked` and `/cursor` was fetched.
    page_fetches: HashMap<String, u32>,
    /// A page of `/linked` that answers only after a minute.
    stall_page: Option<u32>,
    /// Bodies POSTed to `/noted`.
    noted: Vec<Value>,
}

#[derive(Clone)]
struct Crm {
    state: Arc<Mutex<CrmState>>,
    sink: Arc<Sink>,
}

impl Crm {
    fn start(life: Duration) -> Crm {
        let state = Arc::new(Mutex::new(CrmState {
            life,
            refresh: FIRST_REFRESH.to_string(),
            tokens: HashMap::new(),
            issued: 0,
            token_requests: Vec::new(),
            api_requests: 0,
            refused: 0,
            partner_requests: Vec::new(),
            page_fetches: HashMap::new(),
            stall_page: None,
            noted: Vec::new(),
        }));
        let answering = state.clone();
        let sink =
            Sink::responding(move |r: &Received, _| answer(&mut answering.lock().unwrap(), r));
        Crm {
            state,
            sink: Arc::new(sink),
        }
    }

    fn url(&self) -> &str {
        self.sink.url()
    }

    fn with<T>(&self, f: impl FnOnce(&mut CrmState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// Refuses every access token issued so far (as a server that lost
    /// them, or revoked them, would).
    fn forget_access_tokens(&self) {
        self.with(|s| s.tokens.clear());
    }
}

fn answer(s: &mut CrmState, r: &Received) -> Reply {
    let now = Instant::now();
    if r.path == "/oauth/token" {
        return token_answer(s, r, now);
    }
    if let Some(id) = r.path.strip_prefix("/partner/") {
        assert_eq!(
            r.header("authorization"),
            Some(&*format!("Bearer {PARTNER_TOKEN}"))
        );
        s.partner_requests.push(now);
        return Reply::json(200, json!({ "partner": id }));
    }
    let token = r
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or_default();
    if s.tokens.get(token).is_none_or(|expires| *expires <= now) {
        s.refused += 1;
        return Reply::json(401, json!({ "error": "invalid_token" }));
    }
    match r.path.as_str() {
        "/linked" | "/cursor" => return page_answer(s, r),
        "/noted" => {
            s.noted.push(r.body.clone());
            return Reply::json(200, json!({}));
        }
        _ => {}
    }
    let Some(id) = r.path.strip_prefix("/contacts/") else {
        return Reply::json(404, json!({ "error": "no such path" }));
    };
    s.api_requests += 1;
    if s.api_requests % 40 == 0 {
        return Reply::json(429, json!({ "error": "slow down" })).header("Retry-After", "1");
    }
    Reply::json(200, json!({ "id": id.parse::<i64>().unwrap_or(0) }))
}

/// `/linked?page=N`: thirty pages, each linking the next with a relative
/// `Link` header. `/cursor?after=N`: two contacts a page and the next
/// page's URL in the body, for ever.
fn page_answer(s: &mut CrmState, r: &Received) -> Reply {
    *s.page_fetches
        .entry(format!("{}?{}", r.path, r.query))
        .or_default() += 1;
    let number = |key: &str| {
        r.query
            .strip_prefix(key)
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0)
    };
    if r.path == "/cursor" {
        let after = number("after=");
        let contacts = json!([{ "id": after + 1 }, { "id": after + 2 }]);
        return Reply::json(
            200,
            json!({ "contacts": contacts, "next": format!("/cursor?after={}", after + 2) }),
        );
    }
    let page = number("page=");
    let mut reply = Reply::json(200, json!({ "page": page }));
    if page < 29 {
        reply = reply.header(
            "Link",
            &format!("</linked?page={}>; rel=\"next\"", page + 1),
        );
    }
    if s.stall_page == Some(page) {
        reply = reply.after(Duration::from_secs(120));
    }
    reply
}

fn token_answer(s: &mut CrmState, r: &Received, now: Instant) -> Reply {
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    if r.header("authorization") != Some(&*format!("Basic {basic}")) {
        s.token_requests.push((now, false));
        return Reply::json(401, json!({ "error": "invalid_client" }));
    }
    let form = form_fields(&r.raw);
    let granted = form.get("grant_type").map(String::as_str) == Some("refresh_token")
        && form.get("refresh_token") == Some(&s.refresh)
        && form.get("scope").map(String::as_str) == Some("contacts.read offline_access");
    s.token_requests.push((now, granted));
    if !granted {
        return Reply::json(400, json!({ "error": "invalid_grant" }));
    }
    s.issued += 1;
    let access = format!("at-{}", s.issued);
    s.refresh = format!("rt-{}", s.issued);
    s.tokens.insert(access.clone(), now + s.life);
    Reply::json(
        200,
        json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": s.life.as_secs(),
            "refresh_token": s.refresh,
        }),
    )
}

/// `application/x-www-form-urlencoded` fields.
fn form_fields(raw: &[u8]) -> HashMap<String, String> {
    let decode = |s: &str| {
        let bytes = s.replace('+', " ").into_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
            match (bytes[i], hex) {
                (b'%', Some(b)) => {
                    out.push(b);
                    i += 3;
                }
                (b, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    String::from_utf8_lossy(raw)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn env(crm: &Crm) -> Vec<(&'static str, String)> {
    vec![
        ("CRM_URL", crm.url().to_string()),
        ("CRM_TOKEN_URL", format!("{}/oauth/token", crm.url())),
        ("CRM_CLIENT_ID", CLIENT_ID.to_string()),
        ("CRM_CLIENT_SECRET", CLIENT_SECRET.to_string()),
        ("CRM_REFRESH_TOKEN", FIRST_REFRESH.to_string()),
        ("PARTNER_TOKEN", PARTNER_TOKEN.to_string()),
        ("HOOK_TOKEN", HOOK.to_string()),
        ("FLOW_ADMIN_TOKEN", ADMIN.to_string()),
    ]
}

fn start_in(dir: &std::path::Path, crm: &Crm, args: &[&str]) -> Service {
    // With PostgreSQL for the replicas' test (`--store postgres://`): one
    // build, one feature set, for every test of the file.
    let binary = support::build_example_with("tests/flows/connections.flow", &["postgres"]);
    let env = env(crm);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Service::start_in(dir, &binary, &env, args)
}

/// POSTs to a webhook of `svc`; returns the execution id.
async fn send(svc: &Service, path: &str, id: i64) -> String {
    let auth = format!("Bearer {HOOK}");
    let (status, answer) = post_json(
        &svc.at(path),
        &json!({ "id": id }),
        &[("Authorization", &auth)],
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    answer["execution_id"]
        .as_str()
        .expect("execution_id")
        .to_string()
}

/// Waits for every execution in `ids` (on any of `services`: replicas
/// share the store) and returns those that did not succeed.
async fn unsuccessful(services: &[&Service], ids: &[String]) -> Vec<Value> {
    let mut failed = Vec::new();
    for id in ids {
        let exec = poll_until(WAIT, &format!("execution {id} to end"), || async {
            let (status, exec) = admin_execution(services[0].url(), id, ADMIN).await;
            assert_eq!(status, 200, "{exec}");
            matches!(
                exec["status"].as_str(),
                Some("succeeded" | "failed" | "skipped")
            )
            .then_some(exec)
        })
        .await;
        if exec["status"] != "succeeded" {
            failed.push(exec);
        }
    }
    failed
}

/// Token requests granted, each at least `min_gap` after the previous one
/// (one per expiry, never two for one).
fn assert_one_refresh_per_expiry(crm: &Crm, min_gap: Duration) -> usize {
    let requests = crm.with(|s| s.token_requests.clone());
    assert!(
        requests.iter().all(|(_, granted)| *granted),
        "a token request was refused (a spent refresh token was sent again?): {} of {}",
        requests.iter().filter(|(_, g)| !g).count(),
        requests.len()
    );
    for pair in requests.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap >= min_gap,
            "two token requests {gap:?} apart: a token was fetched twice for one expiry"
        );
    }
    requests.len()
}

/// No token, refresh token or client secret in `text`.
fn assert_no_credentials(text: &str, crm: &Crm, what: &str) {
    let issued = crm.with(|s| s.issued);
    let mut secrets = vec![CLIENT_SECRET.to_string(), FIRST_REFRESH.to_string()];
    for n in 1..=issued {
        secrets.push(format!("at-{n}\""));
        secrets.push(format!("rt-{n}\""));
        secrets.push(format!("Bearer at-{n}"));
    }
    for secret in secrets {
        assert!(
            !text.contains(&secret),
            "{what} contains a credential ({secret})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_runs_in_ten_seconds_share_one_token_per_expiry() {
    let crm = Crm::start(Duration::from_secs(2));
    let dir = tempfile::tempdir().unwrap();
    let svc = start_in(dir.path(), &crm, &[]);

    let started = Instant::now();
    let mut sending = Vec::new();
    for i in 0..200 {
        // 20 a second for 10 s, each on its own task.
        let due = started + Duration::from_millis(50 * i);
        tokio::time::sleep_until(due.into()).await;
        let (url, auth) = (svc.at("/read"), format!("Bearer {HOOK}"));
        sending.push(tokio::spawn(async move {
            let (status, answer) =
                post_json(&url, &json!({ "id": i }), &[("Authorization", &auth)]).await;
            assert_eq!(status, 202, "{answer}");
            answer["execution_id"].as_str().unwrap().to_string()
        }));
    }
    let mut ids = Vec::new();
    for s in sending {
        ids.push(s.await.unwrap());
    }
    let failed = unsuccessful(&[&svc], &ids).await;
    assert!(
        failed.is_empty(),
        "{} runs failed: {:#}",
        failed.len(),
        failed[0]
    );

    let elapsed = started.elapsed();
    let fetched = assert_one_refresh_per_expiry(&crm, Duration::from_millis(1500));
    // A token is replaced at 90% of its 2 s: one per 1.8 s of the load.
    let most = (elapsed.as_secs_f64() / 1.8).ceil() as usize + 1;
    assert!(fetched <= most, "{fetched} token requests in {elapsed:?}");
    let throttled = crm.with(|s| s.api_requests / 40);
    assert!(
        throttled >= 4,
        "the API answered 429 only {throttled} times"
    );

    let (_, exec) = admin_execution(svc.url(), &ids[0], ADMIN).await;
    assert_no_credentials(&exec.to_string(), &crm, "an execution record");
    assert_no_credentials(&svc.stderr(), &crm, "the log");
    let auth = format!("Bearer {ADMIN}");
    let metrics = support::get(&svc.at("/_flow/metrics"), &[("Authorization", &auth)]).await;
    assert_eq!(metrics.status, 200);
    assert_no_credentials(&metrics.body.to_string(), &crm, "the metrics");
    assert_no_credentials(&svc.stdout(), &crm, "the output");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rotated_refresh_token_survives_a_crash() {
    let crm = Crm::start(Duration::from_secs(1));
    let dir = tempfile::tempdir().unwrap();
    let mut svc = start_in(dir.path(), &crm, &[]);
    // Three refreshes: each spends the refresh token before it.
    for round in 0..3 {
        let before = crm.with(|s| s.issued);
        let id = send(&svc, "/read", round).await;
        assert!(unsuccessful(&[&svc], &[id]).await.is_empty());
        assert_eq!(crm.with(|s| s.issued), before + 1, "round {round}");
        crm.forget_access_tokens();
    }
    svc.kill();
    // The config still says FIRST_REFRESH, long spent: the store's
    // rotated token must be used.
    let svc = start_in(dir.path(), &crm, &[]);
    let id = send(&svc, "/read", 99).await;
    let failed = unsuccessful(&[&svc], &[id]).await;
    assert!(failed.is_empty(), "{:#}", failed[0]);
    assert_eq!(crm.with(|s| s.issued), 4);
    assert_one_refresh_per_expiry(&crm, Duration::ZERO);
    assert!(
        crm.with(|s| s.refused) >= 1,
        "the forgotten token was not refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_keep_the_shared_limit_and_refresh_once_per_expiry() {
    let Some(pg) = support::service_url(
        "FLOW_TEST_POSTGRES_URL",
        "three_replicas_keep_the_shared_limit_and_refresh_once_per_expiry",
    ) else {
        return;
    };
    let schema = format!("connections_{}", std::process::id());
    let crm = Crm::start(Duration::from_secs(2));
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let args = ["--store", pg.as_str(), "--store-schema", schema.as_str()];
    let replicas: Vec<Service> = dirs
        .iter()
        .map(|d| start_in(d.path(), &crm, &args))
        .collect();
    let all: Vec<&Service> = replicas.iter().collect();

    // 30 partner calls at once, spread over the replicas: at most 5 in any
    // second, so they take at least 5 s.
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(send(all[i % 3], "/partner", i as i64).await);
    }
    // Meanwhile 60 CRM reads over 4 s: tokens live 2 s.
    let started = Instant::now();
    for i in 0..60 {
        tokio::time::sleep_until((started + Duration::from_millis(66 * i)).into()).await;
        ids.push(send(all[i as usize % 3], "/read", i as i64).await);
    }
    let failed = unsuccessful(&all, &ids).await;
    assert!(
        failed.is_empty(),
        "{} runs failed: {:#}",
        failed.len(),
        failed[0]
    );

    let sends = crm.with(|s| s.partner_requests.clone());
    assert_eq!(sends.len(), 30);
    let edge = Duration::from_millis(50);
    for (i, first) in sends.iter().enumerate() {
        let within = sends[i..]
            .iter()
            .filter(|t| **t - *first + edge < Duration::from_secs(1))
            .count();
        assert!(within <= 5, "{within} partner requests within one second");
    }
    let span = *sends.last().unwrap() - sends[0];
    assert!(
        span >= Duration::from_millis(4900),
        "30 requests in {span:?}"
    );
    assert_one_refresh_per_expiry(&crm, Duration::from_millis(1500));
}

/// `examples/crm_contacts.flow`: a client-credentials token (Basic client
/// authentication, the declared scope) for the CRM, an API key for the
/// helpdesk.
#[test]
fn the_crm_contacts_example_reaches_each_system_with_its_credentials() {
    let basic = base64::engine::general_purpose::STANDARD.encode("sync:client-secret-cc");
    let sink = Sink::responding(move |r: &Received, _| {
        let form = form_fields(&r.raw);
        match (r.method.as_str(), r.path.as_str()) {
            ("POST", "/oauth/token") => {
                let granted = r.header("authorization") == Some(&*format!("Basic {basic}"))
                    && form.get("grant_type").map(String::as_str) == Some("client_credentials")
                    && form.get("scope").map(String::as_str) == Some("contacts.read");
                if granted {
                    Reply::json(200, json!({ "access_token": "cc-1", "expires_in": 3600 }))
                } else {
                    Reply::json(401, json!({ "error": "invalid_client" }))
                }
            }
            ("GET", "/contacts") if r.header("authorization") == Some("Bearer cc-1") => {
                Reply::json(
                    200,
                    json!({ "contacts": [
                        { "id": 2, "email": "grace@example.com", "updated_at": "2026-05-02T08:00:00Z" },
                        { "id": 1, "email": "ada@example.com", "updated_at": "2026-05-01T08:00:00Z" },
                    ] }),
                )
            }
            ("PUT", _) if r.header("x-api-key") == Some("hd-key-e2e") => {
                Reply::json(200, json!({}))
            }
            _ => Reply::json(401, json!({ "error": "who are you?" })),
        }
    });
    let binary = support::build_example("examples/crm_contacts.flow");
    let token_url = format!("{}/oauth/token", sink.url());
    let env = [
        ("CRM_URL", sink.url()),
        ("CRM_TOKEN_URL", token_url.as_str()),
        ("CRM_CLIENT_ID", "sync"),
        ("CRM_CLIENT_SECRET", "client-secret-cc"),
        ("HELPDESK_URL", sink.url()),
        ("HELPDESK_KEY", "hd-key-e2e"),
    ];
    let ran = support::run_binary(&binary, &env, &["run", "copy_contacts"], WAIT);
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stdout, ran.stderr);
    let puts: Vec<String> = sink
        .requests()
        .iter()
        .filter(|r| r.method == "PUT")
        .map(|r| {
            format!(
                "{} {}",
                r.path,
                r.body["email"].as_str().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(puts.len(), 2, "{}", sink.summary());
    assert!(
        puts.contains(&"/users/2 grace@example.com".to_string()),
        "{puts:?}"
    );
    assert_eq!(sink.requests_to("POST", "/oauth/token").len(), 1);
    for text in [&ran.stdout, &ran.stderr] {
        assert!(
            !text.contains("client-secret-cc") && !text.contains("cc-1\""),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_in_the_middle_of_thirty_pages_fetches_no_finished_page_again() {
    let crm = Crm::start(Duration::from_secs(600));
    crm.with(|s| s.stall_page = Some(15));
    let dir = tempfile::tempdir().unwrap();
    let mut svc = start_in(dir.path(), &crm, &[]);
    let id = send(&svc, "/linked", 0).await;
    poll_until(WAIT, "page 15 to be asked for", || async {
        crm.with(|s| s.page_fetches.contains_key("/linked?page=15"))
            .then_some(())
    })
    .await;
    svc.kill();
    crm.with(|s| s.stall_page = None);
    let svc = start_in(dir.path(), &crm, &[]);
    let failed = unsuccessful(&[&svc], std::slice::from_ref(&id)).await;
    assert!(failed.is_empty(), "{:#}", failed[0]);

    let fetches = crm.with(|s| s.page_fetches.clone());
    for page in 0..30 {
        let times = fetches.get(&format!("/linked?page={page}")).copied();
        // Page 15 was in flight when the process died: asked for again.
        let expected = if page == 15 { 2 } else { 1 };
        assert_eq!(times, Some(expected), "page {page}: {fetches:?}");
    }
    let noted: Vec<i64> = crm.with(|s| s.noted.iter().filter_map(|b| b["page"].as_i64()).collect());
    assert_eq!(noted, (0..30).collect::<Vec<i64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_pages_are_followed_up_to_max_pages() {
    let crm = Crm::start(Duration::from_secs(600));
    let dir = tempfile::tempdir().unwrap();
    let svc = start_in(dir.path(), &crm, &[]);
    let id = send(&svc, "/cursor", 0).await;
    let failed = unsuccessful(&[&svc], &[id]).await;
    assert!(failed.is_empty(), "{:#}", failed[0]);
    let fetched: Vec<String> = crm.with(|s| {
        let mut pages: Vec<String> = s.page_fetches.keys().cloned().collect();
        pages.sort();
        pages
    });
    assert_eq!(
        fetched,
        [
            "/cursor?",
            "/cursor?after=2",
            "/cursor?after=4",
            "/cursor?after=6"
        ]
    );
    let ids: Vec<i64> = crm.with(|s| s.noted.iter().filter_map(|b| b["id"].as_i64()).collect());
    assert_eq!(ids, (1..=8).collect::<Vec<i64>>());
}
