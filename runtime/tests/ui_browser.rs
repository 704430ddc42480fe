//! The executions page in a real browser: headless Chromium driven over
//! the W3C WebDriver protocol (chromedriver, spoken to with reqwest; no
//! WebDriver crate). Signs in, filters, bulk-replays with the confirmation,
//! replays one run and follows it, opens the flows view, signs out; the
//! browser's console must stay free of errors (a script error or a
//! Content-Security-Policy refusal shows there), and the page must fit a
//! phone's width.
//!
//! Runs with `FLOW_TEST_CHROMEDRIVER` naming chromedriver (Debian:
//! `apt-get install chromium chromium-driver`, then `/usr/bin/chromedriver`;
//! `.ci/run` does both); otherwise it says so and passes, or fails under
//! `FLOW_TEST_REQUIRE_SERVICES=1`. A screenshot of each view is saved to
//! `FLOW_TEST_SCREENSHOTS` (default: `ui-screenshots` in cargo's target
//! temporary folder), the test's artefacts.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use flow_runtime::{
    ops, Config, FlowDef, FlowFuture, Outcome, RunError, Runtime, ServerHandle, Status, Value,
};
use serde_json::json;

const TOKEN: &str = "browser-admin-token-42";

/// A drawing of the flows, as flowc embeds one (`flowc graph --format svg`
/// of a one-flow program).
const DRAWING: &str = include_str!("ui_browser_graph.svg");

/// Whether the system behind the orders is down: an order whose body says
/// `"fail": true` fails while it is, and goes through once it is fixed.
static ORDERS_DOWN: AtomicBool = AtomicBool::new(true);

fn order(cx: flow_runtime::Ctx) -> FlowFuture {
    Box::pin(async move {
        let fails = ops::truthy(&ops::field(&ops::field(cx.trigger(), "body"), "fail"));
        if fails && ORDERS_DOWN.load(Ordering::SeqCst) {
            return Err(RunError::new("the order was refused"));
        }
        Ok(Outcome::Succeeded)
    })
}

fn flows(_: &Config) -> Vec<FlowDef> {
    vec![common::flow(
        "orders",
        common::json_webhook("/orders", None),
        order,
    )]
}

/// A chromedriver process and one headless Chromium session in it.
struct Browser {
    driver: Child,
    base: String,
    http: reqwest::Client,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// `None` (with the reason printed) unless `FLOW_TEST_CHROMEDRIVER`
    /// names chromedriver.
    async fn start(test: &str) -> Option<Browser> {
        let chromedriver = flow_testkit::service_url("FLOW_TEST_CHROMEDRIVER", test)?;
        let port = flow_testkit::free_port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {chromedriver}: {e}"));
        let http = flow_testkit::client(common::WAIT);
        let status_url = format!("http://127.0.0.1:{port}/status");
        flow_testkit::poll_until(common::WAIT, "chromedriver ready", || async {
            let ready = http.get(&status_url).send().await.ok()?;
            let status: Value = ready.json().await.ok()?;
            status["value"]["ready"].as_bool().filter(|r| *r)
        })
        .await;
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            http,
        };
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1200,900",
        ];
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "args": args },
            "goog:loggingPrefs": { "browser": "ALL" },
            "unhandledPromptBehavior": "ignore",
        } } });
        let session = browser.call("POST", "/session", capabilities).await;
        let id = session["sessionId"].as_str().expect("a session id");
        browser.base = format!("{}/session/{id}", browser.base);
        Some(browser)
    }

    /// One WebDriver command; its `value`. A WebDriver error fails the test.
    async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        match self.try_call(method, path, body).await {
            Ok(value) => value,
            Err(error) => panic!("{method} {path}: {error}"),
        }
    }

    /// One WebDriver command: its `value`, or the error it answered (an
    /// element replaced by the page's refresh meanwhile, say).
    async fn try_call(&self, method: &str, path: &str, body: Value) -> Result<Value, Value> {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self.http.post(&url).json(&body),
        };
        let resp = req.send().await.expect("chromedriver answers");
        let ok = resp.status().is_success();
        let answer: Value = resp.json().await.expect("JSON from chromedriver");
        let value = answer["value"].clone();
        if ok {
            Ok(value)
        } else {
            Err(value)
        }
    }

    /// Saves what the browser shows as `NAME.png` in [`screenshots`].
    async fn screenshot(&self, name: &str) {
        use base64::Engine as _;
        let png = self.call("GET", "/screenshot", json!({})).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("a base64 screenshot"))
            .expect("base64");
        let dir = screenshots();
        std::fs::create_dir_all(&dir).expect("the screenshots folder");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write a screenshot");
    }

    async fn goto(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url })).await;
    }

    /// The elements matching `css` now.
    async fn all(&self, css: &str) -> Vec<String> {
        let found = self
            .call(
                "POST",
                "/elements",
                json!({ "using": "css selector", "value": css }),
            )
            .await;
        found
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_object()?.values().next()?.as_str().map(String::from))
            .collect()
    }

    /// Waits (bounded) for an element matching `css` whose text contains
    /// `text`; its id.
    async fn wait_for(&self, css: &str, text: &str) -> String {
        let what = format!("{css} containing {text:?}");
        flow_testkit::poll_until(common::WAIT, &what, || async {
            for element in self.all(css).await {
                if self.text(&element).await.contains(text) {
                    return Some(element);
                }
            }
            None
        })
        .await
    }

    /// Waits (bounded) until exactly `n` elements match `css`.
    async fn wait_count(&self, css: &str, n: usize) {
        let what = format!("{n} × {css}");
        flow_testkit::poll_until(common::WAIT, &what, || async {
            (self.all(css).await.len() == n).then_some(())
        })
        .await;
    }

    /// The element's text; empty if it is gone.
    async fn text(&self, element: &str) -> String {
        let text = self
            .try_call("GET", &format!("/element/{element}/text"), json!({}))
            .await
            .unwrap_or_default();
        text.as_str().unwrap_or_default().to_string()
    }

    /// Clicks the first element matching `css`, waiting (bounded) for one
    /// that takes the click (the list's refresh may replace it meanwhile).
    async fn click(&self, css: &str) {
        let what = format!("a click on {css}");
        flow_testkit::poll_until(common::WAIT, &what, || async {
            let element = self.all(css).await.into_iter().next()?;
            let path = format!("/element/{element}/click");
            self.try_call("POST", &path, json!({}))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
    }

    async fn type_into(&self, css: &str, keys: &str) {
        let element = self.wait_for(css, "").await;
        self.call("POST", &format!("/element/{element}/clear"), json!({}))
            .await;
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            json!({ "text": keys }),
        )
        .await;
    }

    /// Waits (bounded) for a `confirm()` and accepts it; its text.
    async fn accept_confirm(&self) -> String {
        let url = format!("{}/alert/text", self.base);
        let text = flow_testkit::poll_until(common::WAIT, "a confirm dialog", || async {
            let resp = self.http.get(&url).send().await.ok()?;
            let answer: Value = resp.json().await.ok()?;
            answer["value"].as_str().map(String::from)
        })
        .await;
        self.call("POST", "/alert/accept", json!({})).await;
        text
    }

    /// The script's value (WebDriver runs it outside the page's CSP).
    async fn script(&self, source: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({ "script": source, "args": [] }),
        )
        .await
    }

    /// The console's errors since the last call.
    async fn console_errors(&self) -> Vec<String> {
        let log = self
            .call("POST", "/se/log", json!({ "type": "browser" }))
            .await;
        log.as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["level"] == "SEVERE")
            .map(|entry| entry["message"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

/// Where screenshots go: `FLOW_TEST_SCREENSHOTS`, or `ui-screenshots` in
/// cargo's temporary folder for tests.
fn screenshots() -> PathBuf {
    std::env::var_os("FLOW_TEST_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots"))
}

async fn post_order(server: &ServerHandle, fail: bool, status: Status) -> String {
    let (code, answer) = flow_testkit::post_json(
        &format!("{}/orders", server.url()),
        &json!({ "fail": fail }),
        &[],
    )
    .await;
    assert_eq!(code, 202, "{answer}");
    let id = answer["execution_id"].as_str().unwrap().to_string();
    common::expect_status(server.runtime(), &id, status).await;
    id
}

async fn attempts(server: &ServerHandle, id: &str) -> u32 {
    let e = server.runtime().store().get(id).await.unwrap().unwrap();
    if e.status.is_final() {
        e.attempts
    } else {
        0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_signs_in_filters_replays_and_signs_out() {
    let Some(browser) = Browser::start("an_operator_signs_in_filters_replays_and_signs_out").await
    else {
        return;
    };
    let integration = flow_runtime::Integration {
        graph: DRAWING,
        ..common::integration("shop", flows)
    };
    let rt = Runtime::new(integration, common::options(&[])).unwrap();
    let server = common::serve(&rt, Some(TOKEN)).await;
    let failed_1 = post_order(&server, true, Status::Failed).await;
    let failed_2 = post_order(&server, true, Status::Failed).await;
    post_order(&server, false, Status::Succeeded).await;
    let page = format!("{}/_flow/ui", server.url());

    // A wrong token, then the right one.
    browser.goto(&page).await;
    browser.screenshot("sign-in").await;
    browser.type_into("#token", "not-it").await;
    browser.click("form.sign-in button[type=submit]").await;
    browser.wait_for("p.error", "Wrong token").await;
    // The console logs the 401 of the wrong token: expected, not an error
    // of the page.
    let refused = browser.console_errors().await;
    assert!(refused.iter().all(|e| e.contains("401")), "{refused:?}");
    // From the keyboard: the token, then Enter.
    browser
        .type_into("#token", &format!("{TOKEN}\u{E007}"))
        .await;
    browser.wait_count("#runs tr", 3).await;
    browser.wait_for("#integration", "shop").await;

    // Only the failed ones, then all of them replayed after the confirm.
    browser.click("#f-status option:nth-child(5)").await;
    browser.click("#filters button[type=submit]").await;
    browser.wait_count("#runs tr", 2).await;
    browser.wait_for("#runs tr", "the order was refused").await;
    browser.screenshot("runs").await;
    browser.click("#replay-failed").await;
    let question = browser.accept_confirm().await;
    assert_eq!(question, "Replay 2 failed runs?");
    browser
        .wait_for("#status", "Replay queued for 2 runs")
        .await;
    for id in [&failed_1, &failed_2] {
        flow_testkit::poll_until(common::WAIT, "the bulk replay ran", || async {
            (attempts(&server, id).await == 2).then_some(())
        })
        .await;
    }

    // The orders system is fixed; one run: its view, its Replay button,
    // the run turning succeeded.
    ORDERS_DOWN.store(false, Ordering::SeqCst);
    browser
        .click(&format!("#runs a[href='#/runs/{failed_1}']"))
        .await;
    browser.wait_for("#run-heading", &failed_1).await;
    let focused = browser.script("return document.activeElement.id;").await;
    assert_eq!(focused, "run-heading", "focus moves to the view opened");
    browser.wait_for("#run-timeline li", "Created").await;
    browser.wait_for("#run-trigger", "\"fail\": true").await;
    browser.screenshot("run").await;
    browser.click("#replay").await;
    browser
        .wait_for("#status", "The replay ended: succeeded.")
        .await;
    assert_eq!(attempts(&server, &failed_1).await, 3);
    let run = server
        .runtime()
        .store()
        .get(&failed_1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.status, Status::Succeeded);

    // The flows view, then a phone's width: nothing wider than the screen.
    browser.click("#nav-flows").await;
    browser.wait_for("#flows tr", "webhook POST /orders").await;
    browser.wait_for("#flows tr", "2").await;
    // The drawing loaded (an image that failed has no natural width).
    flow_testkit::poll_until(common::WAIT, "the drawing of the flows", || async {
        let width = browser
            .script("const g = document.getElementById('graph'); return g.complete ? g.naturalWidth : 0;")
            .await;
        (width.as_u64().unwrap_or(0) > 0).then_some(())
    })
    .await;
    browser.screenshot("flows").await;
    browser
        .call(
            "POST",
            "/window/rect",
            json!({ "width": 390, "height": 844 }),
        )
        .await;
    browser.click("#nav-runs").await;
    browser.wait_count("#runs tr", 3).await;
    let overflow = browser
        .script("return document.documentElement.scrollWidth - window.innerWidth;")
        .await;
    assert!(
        overflow.as_i64().unwrap_or(1) <= 0,
        "wider than a phone by {overflow}"
    );
    browser.screenshot("runs-phone").await;

    // Signing out brings the sign-in form back.
    browser.click("#sign-out").await;
    browser.wait_for("label[for=token]", "Admin token").await;
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    browser.call("DELETE", "", json!({})).await;
}
