//! The executions page (`/_flow/ui`) and what it adds to the admin API:
//! the page itself (small, self-contained, a sign-in form), sign-in and
//! its cookie, the session accepted by the admin API with its CSRF and
//! Origin checks, sign-out, bulk replay of failed runs, the list's new
//! filters and the flows' counts. Over real sockets, against a runtime
//! with two webhook flows that fail when asked to.

mod common;

use common::expect_status;
use flow_runtime::{
    ops, Config, FlowDef, FlowFuture, Outcome, RunError, Runtime, ServerHandle, Status, Value,
};
use reqwest::header::{HeaderMap, COOKIE, ORIGIN, SET_COOKIE};
use serde_json::json;

const TOKEN: &str = "ui-admin-token-0123456789";

/// Fails when the body says `"fail": true`, else succeeds.
fn order(cx: flow_runtime::Ctx) -> FlowFuture {
    Box::pin(async move {
        let body = ops::field(cx.trigger(), "body");
        if ops::truthy(&ops::field(&body, "fail")) {
            return Err(RunError::new("the order was refused"));
        }
        Ok(Outcome::Succeeded)
    })
}

/// The body's `key`, as the dedupe key.
fn key_of(trigger: &Value) -> Option<String> {
    ops::field(&ops::field(trigger, "body"), "key")
        .as_str()
        .map(str::to_string)
}

fn flows(_: &Config) -> Vec<FlowDef> {
    use common::{flow, json_webhook};
    vec![
        flow("orders", json_webhook("/orders", Some(key_of)), order),
        flow("refunds", json_webhook("/refunds", Some(key_of)), order),
    ]
}

async fn start(admin_token: Option<&str>) -> ServerHandle {
    let rt = Runtime::new(common::integration("shop", flows), common::options(&[])).unwrap();
    common::serve(&rt, admin_token).await
}

/// A client that shows redirects instead of following them (the sign-in's
/// 303 carries the cookie).
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(common::WAIT)
        .build()
        .unwrap()
}

/// Posts a run to `path` and waits for it to end with `status`; its id.
async fn run(server: &ServerHandle, path: &str, key: &str, fail: bool, status: Status) -> String {
    let resp = client()
        .post(format!("{}{path}", server.url()))
        .json(&json!({ "key": key, "fail": fail }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let answer: Value = resp.json().await.unwrap();
    let id = answer["execution_id"].as_str().unwrap().to_string();
    expect_status(server.runtime(), &id, status).await;
    id
}

/// Signs in with `token`: the answer.
async fn sign_in_with(
    server: &ServerHandle,
    token: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = client()
        .post(format!("{}/_flow/ui/session", server.url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", token.replace('+', "%2B")));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.send().await.unwrap()
}

/// A signed-in browser: its `Cookie` header and its CSRF token.
struct Browser {
    cookie: String,
    csrf: String,
}

async fn signed_in(server: &ServerHandle) -> Browser {
    let resp = sign_in_with(server, TOKEN, &[]).await;
    assert_eq!(resp.status(), 303);
    let cookie = session_cookie(resp.headers()).expect("a session cookie");
    let cookie = cookie.split(';').next().unwrap().to_string();
    let resp = client()
        .get(format!("{}/_flow/ui/session", server.url()))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    let csrf = answer["csrf"].as_str().unwrap().to_string();
    Browser { cookie, csrf }
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("flow_session="))
        .map(str::to_string)
}

/// `http://` or `https://` anywhere: the page has only relative URLs.
fn external_urls(text: &str) -> Vec<&str> {
    text.match_indices("http://")
        .chain(text.match_indices("https://"))
        .map(|(i, _)| &text[i..text.len().min(i + 60)])
        .collect()
}

async fn get_text(url: &str, cookie: Option<&str>) -> (u16, HeaderMap, String) {
    let mut req = client().get(url);
    if let Some(cookie) = cookie {
        req = req.header(COOKIE, cookie);
    }
    let resp = req.send().await.unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    (status, headers, resp.text().await.unwrap())
}

#[tokio::test]
async fn without_an_admin_token_the_page_says_how_to_enable_it() {
    let server = start(None).await;
    let (status, headers, page) = get_text(&format!("{}/_flow/ui", server.url()), None).await;
    assert_eq!(status, 200);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(page.contains("FLOW_ADMIN_TOKEN"), "{page}");
    assert!(!page.contains("<form"), "nothing else is offered: {page}");
    let resp = sign_in_with(&server, "anything", &[]).await;
    assert_eq!(resp.status(), 403);
    assert!(session_cookie(resp.headers()).is_none());
}

#[tokio::test]
async fn the_page_is_small_self_contained_and_asks_to_sign_in() {
    let server = start(Some(TOKEN)).await;
    let url = server.url();
    let (status, headers, sign_in) = get_text(&format!("{url}/_flow/ui"), None).await;
    assert_eq!(status, 200);
    assert!(sign_in.contains(r#"<form method="post" action="/_flow/ui/session""#));
    assert!(sign_in.contains(r#"<label for="token">"#));
    assert!(sign_in.contains(r#"type="password""#));
    assert!(sign_in.contains(r#"<button type="submit">"#));
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    // `no-referrer` would make browsers send `Origin: null` with the form,
    // which the Origin check refuses (found by runtime/tests/ui_browser.rs).
    assert_eq!(headers["referrer-policy"], "same-origin");

    // The signed-in page and its assets: under 200 KB all together.
    let browser = signed_in(&server).await;
    let (status, _, app) = get_text(&format!("{url}/_flow/ui"), Some(&browser.cookie)).await;
    assert_eq!(status, 200);
    assert!(
        app.contains(r#"id="runs""#) && app.contains("Replay failed"),
        "{app}"
    );
    assert!(app.contains(r#"aria-live="polite""#));
    let (css_status, css_headers, css) = get_text(&format!("{url}/_flow/ui/app.css"), None).await;
    let (js_status, js_headers, js) = get_text(&format!("{url}/_flow/ui/app.js"), None).await;
    assert_eq!((css_status, js_status), (200, 200));
    assert_eq!(css_headers["content-type"], "text/css");
    assert_eq!(js_headers["content-type"], "text/javascript");
    let total = sign_in.len() + app.len() + css.len() + js.len();
    assert!(total < 200 * 1024, "the page weighs {total} bytes");
    for (name, text) in [
        ("sign-in", &sign_in),
        ("app", &app),
        ("css", &css),
        ("js", &js),
    ] {
        assert_eq!(external_urls(text), Vec::<&str>::new(), "{name}");
    }
}

#[tokio::test]
async fn a_wrong_token_gets_the_form_again_and_no_cookie() {
    let server = start(Some(TOKEN)).await;
    let resp = sign_in_with(&server, "not-the-token", &[]).await;
    assert_eq!(resp.status(), 401);
    assert!(session_cookie(resp.headers()).is_none());
    let page = resp.text().await.unwrap();
    assert!(page.contains("Wrong token") && page.contains(r#"type="password""#));
    let resp = sign_in_with(&server, "", &[]).await;
    assert_eq!(resp.status(), 401, "an empty token");

    // A sign-in posted by another site is refused, even with the token.
    let resp = sign_in_with(&server, TOKEN, &[("origin", "https://evil.example")]).await;
    assert_eq!(resp.status(), 403);
    assert!(session_cookie(resp.headers()).is_none());
}

#[tokio::test]
async fn signing_in_sets_a_strict_cookie_that_opens_the_admin_api() {
    let server = start(Some(TOKEN)).await;
    let url = server.url();
    let resp = sign_in_with(&server, TOKEN, &[]).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/_flow/ui");
    let set_cookie = session_cookie(resp.headers()).unwrap();
    let attributes: Vec<&str> = set_cookie.split("; ").collect();
    let value = attributes[0].strip_prefix("flow_session=").unwrap();
    assert!(
        value.len() == 32 && value.chars().all(|c| c.is_ascii_hexdigit()),
        "{value}"
    );
    for wanted in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/_flow",
        "Max-Age=43200",
    ] {
        assert!(attributes.contains(&wanted), "{wanted} in {set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain HTTP: {set_cookie}");
    assert!(!set_cookie.contains(TOKEN));

    // Behind a proxy that ended TLS, the cookie is Secure.
    let resp = sign_in_with(&server, TOKEN, &[("x-forwarded-proto", "https")]).await;
    assert!(session_cookie(resp.headers())
        .unwrap()
        .ends_with("; Secure"));

    let cookie = attributes[0];
    let resp = client()
        .get(format!("{url}/_flow/executions"))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = client()
        .get(format!("{url}/_flow/executions"))
        .header(COOKIE, "flow_session=00000000000000000000000000000000")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "an unknown session");
    let answer: Value = resp.json().await.unwrap();
    assert!(answer["error"].as_str().unwrap().contains("sign in again"));
}

#[tokio::test]
async fn a_session_replays_only_with_its_csrf_token_and_from_this_site() {
    let server = start(Some(TOKEN)).await;
    let url = server.url();
    let failed = run(&server, "/orders", "k1", true, Status::Failed).await;
    let browser = signed_in(&server).await;
    let replay = |csrf: Option<&str>, origin: Option<&str>| {
        let mut req = client()
            .post(format!("{url}/_flow/executions/{failed}/replay"))
            .header(COOKIE, &browser.cookie);
        if let Some(csrf) = csrf {
            req = req.header("x-flow-csrf", csrf);
        }
        if let Some(origin) = origin {
            req = req.header(ORIGIN, origin);
        }
        req.send()
    };
    let resp = replay(None, None).await.unwrap();
    assert_eq!(resp.status(), 403, "no CSRF header");
    let answer: Value = resp.json().await.unwrap();
    assert!(answer["error"].as_str().unwrap().contains("X-Flow-CSRF"));
    let wrong = "0".repeat(32);
    assert_eq!(replay(Some(&wrong), None).await.unwrap().status(), 403);
    let resp = replay(Some(&browser.csrf), Some("https://evil.example"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "a cross-site Origin");
    let same_site = url.clone();
    let resp = replay(Some(&browser.csrf), Some(&same_site)).await.unwrap();
    assert_eq!(resp.status(), 202);
    let again = expect_status(server.runtime(), &failed, Status::Failed).await;
    assert_eq!(again.attempts, 2, "replayed once");

    // Bearer requests are unchanged: no CSRF header needed.
    let resp = client()
        .post(format!("{url}/_flow/executions/{failed}/replay"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    expect_status(server.runtime(), &failed, Status::Failed).await;
}

#[tokio::test]
async fn signing_out_ends_the_session() {
    let server = start(Some(TOKEN)).await;
    let url = server.url();
    let browser = signed_in(&server).await;
    let sign_out = |csrf: Option<&str>| {
        let mut req = client()
            .post(format!("{url}/_flow/ui/session/delete"))
            .header(COOKIE, &browser.cookie);
        if let Some(csrf) = csrf {
            req = req.header("x-flow-csrf", csrf);
        }
        req.send()
    };
    assert_eq!(
        sign_out(None).await.unwrap().status(),
        403,
        "no CSRF header"
    );
    let resp = sign_out(Some(&browser.csrf)).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(session_cookie(resp.headers())
        .unwrap()
        .contains("Max-Age=0"));
    let resp = client()
        .get(format!("{url}/_flow/executions"))
        .header(COOKIE, &browser.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let (_, _, page) = get_text(&format!("{url}/_flow/ui"), Some(&browser.cookie)).await;
    assert!(
        page.contains(r#"type="password""#),
        "the sign-in form again"
    );
}

#[tokio::test]
async fn bulk_replay_replays_exactly_the_failed_runs_matching_the_filter() {
    let server = start(Some(TOKEN)).await;
    let url = server.url();
    let early_failure = run(&server, "/orders", "o1", true, Status::Failed).await;
    let since = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let failed_1 = run(&server, "/orders", "o2", true, Status::Failed).await;
    let failed_2 = run(&server, "/orders", "o3", true, Status::Failed).await;
    let succeeded = run(&server, "/orders", "o4", false, Status::Succeeded).await;
    let other_flow = run(&server, "/refunds", "r1", true, Status::Failed).await;

    let browser = signed_in(&server).await;
    let resp = client()
        .post(format!("{url}/_flow/executions/replay-failed"))
        .query(&[("flow", "orders"), ("since", since.as_str())])
        .header(COOKIE, &browser.cookie)
        .header("x-flow-csrf", &browser.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["replayed"], 2, "{answer}");
    let mut ids: Vec<&str> = answer["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let mut want = vec![failed_1.as_str(), failed_2.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want);
    for id in [&failed_1, &failed_2] {
        assert_eq!(
            expect_status(server.runtime(), id, Status::Failed)
                .await
                .attempts,
            2
        );
    }
    for id in [&early_failure, &succeeded, &other_flow] {
        let e = server.runtime().store().get(id).await.unwrap().unwrap();
        assert_eq!(e.attempts, 1, "{id} was left alone");
    }

    // Without the CSRF header a session cannot; a bad time is a 400.
    let resp = client()
        .post(format!("{url}/_flow/executions/replay-failed"))
        .header(COOKIE, &browser.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = client()
        .post(format!(
            "{url}/_flow/executions/replay-failed?since=yesterday"
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let answer: Value = resp.json().await.unwrap();
    assert!(
        answer["error"].as_str().unwrap().contains("since"),
        "{answer}"
    );
}

/// `GET /_flow/executions` with the page's parameters, as bearer.
async fn listed(server: &ServerHandle, query: &[(&str, &str)]) -> Vec<String> {
    let resp = client()
        .get(format!("{}/_flow/executions", server.url()))
        .query(query)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{query:?}");
    let answer: Value = resp.json().await.unwrap();
    answer["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn the_list_filters_by_time_search_and_cursor() {
    let server = start(Some(TOKEN)).await;
    let a = run(&server, "/orders", "key-a", false, Status::Succeeded).await;
    let between = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let b = run(&server, "/refunds", "key-b", true, Status::Failed).await;
    let c = run(&server, "/orders", "key-c", false, Status::Succeeded).await;
    let (a, b, c) = (a.as_str(), b.as_str(), c.as_str());

    assert_eq!(listed(&server, &[]).await, [c, b, a]);
    assert_eq!(listed(&server, &[("since", &between)]).await, [c, b]);
    assert_eq!(listed(&server, &[("until", &between)]).await, [a]);
    assert_eq!(
        listed(&server, &[("q", "key-b")]).await,
        [b],
        "by dedupe key"
    );
    assert_eq!(listed(&server, &[("q", c)]).await, [c], "by id");
    assert_eq!(listed(&server, &[("limit", "1"), ("before", c)]).await, [b]);
    assert_eq!(
        listed(&server, &[("flow", "orders"), ("before", c)]).await,
        [a]
    );
    assert_eq!(
        listed(&server, &[("flow", ""), ("q", ""), ("since", "")]).await,
        [c, b, a],
        "empty parameters are absent ones"
    );

    let resp = client()
        .get(format!("{}/_flow/executions?until=noon", server.url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let answer: Value = resp.json().await.unwrap();
    assert!(answer["error"].as_str().unwrap().contains("RFC 3339"));

    // The flows view's counts, behind the same authentication.
    let resp = client()
        .get(format!("{}/_flow/flows/counts", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = client()
        .get(format!("{}/_flow/flows/counts", server.url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["flows"]["orders"]["succeeded"], 2, "{answer}");
    assert_eq!(answer["flows"]["orders"]["failed"], 0);
    assert_eq!(answer["flows"]["refunds"]["failed"], 1);
    assert_eq!(answer["cap"], 1000);
}

/// The drawing of the flows that flowc embeds (`Integration::graph`): to a
/// session or the bearer only, as an image the page's policy keeps inert;
/// the flows listing says whether there is one.
#[tokio::test]
async fn the_drawing_of_the_flows_is_shown_to_the_signed_in_only() {
    const DRAWING: &str =
        "<svg xmlns=\"http://www.w3.org/2000/svg\"><title>flow orders</title></svg>\n";
    let integration = flow_runtime::Integration {
        graph: DRAWING,
        ..common::integration("shop", flows)
    };
    let rt = Runtime::new(integration, common::options(&[])).unwrap();
    let server = common::serve(&rt, Some(TOKEN)).await;
    let url = format!("{}/_flow/ui/graph.svg", server.url());

    let (status, _, _) = get_text(&url, None).await;
    assert_eq!(status, 401, "not without a session");
    let browser = signed_in(&server).await;
    let (status, headers, body) = get_text(&url, Some(&browser.cookie)).await;
    assert_eq!(status, 200);
    assert_eq!(body, DRAWING);
    assert_eq!(headers["content-type"], "image/svg+xml");
    let policy = headers["content-security-policy"].to_str().unwrap();
    assert!(policy.starts_with("default-src 'none'"), "{policy}");
    let (_, _, listing) = get_text(&format!("{}/_flow/flows", server.url()), None).await;
    let listing: Value = serde_json::from_str(&listing).unwrap();
    assert_eq!(listing["graph"], true);

    // A runtime without one: none listed, 404.
    let bare = start(Some(TOKEN)).await;
    let browser = signed_in(&bare).await;
    let (status, _, body) = get_text(
        &format!("{}/_flow/ui/graph.svg", bare.url()),
        Some(&browser.cookie),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let (_, _, listing) = get_text(&format!("{}/_flow/flows", bare.url()), None).await;
    let listing: Value = serde_json::from_str(&listing).unwrap();
    assert_eq!(listing["graph"], false);
}
