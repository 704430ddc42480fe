//! Shared helpers for the runtime's integration tests: a local HTTP sink
//! that records what it receives, and bounded waits.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;
use flow_runtime::{Runtime, RuntimeOptions, Status};
use serde_json::Value;
use tokio::sync::watch;

/// How long any wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(15);

/// One request the sink received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Responder = dyn Fn(&Received, usize) -> (u16, Value) + Send + Sync;

/// A local HTTP server standing in for outside systems: records every
/// request and answers with `respond(request, how many earlier requests had
/// the same method and path)`.
#[derive(Clone)]
pub struct Sink {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    count: watch::Sender<usize>,
}

impl Sink {
    pub async fn start(
        respond: impl Fn(&Received, usize) -> (u16, Value) + Send + Sync + 'static,
    ) -> Sink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let (count, _) = watch::channel(0usize);
        let respond: Arc<Responder> = Arc::new(respond);
        let sink = Sink {
            addr,
            received: received.clone(),
            count: count.clone(),
        };
        let app = Router::new().fallback(move |req: Request| {
            let received = received.clone();
            let count = count.clone();
            let respond = respond.clone();
            async move {
                let method = req.method().to_string();
                let path = req.uri().path().to_string();
                let headers = req
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                    .collect();
                let bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
                    .await
                    .unwrap_or_default();
                let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                    Value::String(String::from_utf8_lossy(&bytes).into_owned())
                });
                let r = Received {
                    method,
                    path,
                    headers,
                    body,
                };
                let (status, answer) = {
                    let mut list = received.lock().unwrap();
                    let earlier = list
                        .iter()
                        .filter(|x| x.method == r.method && x.path == r.path)
                        .count();
                    let answer = respond(&r, earlier);
                    list.push(r);
                    answer
                };
                count.send_modify(|n| *n += 1);
                (StatusCode::from_u16(status).unwrap(), axum::Json(answer)).into_response()
            }
        });
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        sink
    }

    /// A sink that answers `200 {}` to everything.
    pub async fn ok() -> Sink {
        Sink::start(|_, _| (200, serde_json::json!({}))).await
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn received_at(&self, method: &str, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.method == method && r.path == path)
            .collect()
    }

    /// Waits (bounded) until the recorded requests satisfy `pred`.
    pub async fn wait_until(&self, what: &str, pred: impl Fn(&[Received]) -> bool) {
        let mut rx = self.count.subscribe();
        let received = self.received.clone();
        let waited = tokio::time::timeout(WAIT, rx.wait_for(|_| pred(&received.lock().unwrap())));
        if waited.await.is_err() {
            panic!(
                "timed out waiting for {what}; sink received: {:#?}",
                self.received()
            );
        }
    }
}

/// Options for tests: given env vars only, a memory store, 2 workers, the
/// binary's steps.
pub fn options(env: &[(&str, &str)]) -> RuntimeOptions {
    RuntimeOptions {
        env: flow_runtime::EnvSource::from_pairs(env.iter().copied()),
        steps: flow_runtime::host::step_registry(),
        workers: 2,
        drain_timeout: Duration::from_secs(5),
        ..RuntimeOptions::default()
    }
}

/// Serves `rt` on a free loopback port, with the admin API behind `admin_token`.
pub async fn serve(rt: &Runtime, admin_token: Option<&str>) -> flow_runtime::ServerHandle {
    let mut options = flow_runtime::host::ServeOptions::new("127.0.0.1:0".parse().unwrap());
    options.admin_token = admin_token.map(str::to_string);
    flow_runtime::host::serve(rt, options).await.unwrap()
}

/// Waits (bounded) for an execution to end.
pub async fn finished(rt: &Runtime, id: &str) -> flow_runtime::store::Execution {
    match tokio::time::timeout(WAIT, rt.wait_for(id)).await {
        Ok(Some(e)) => e,
        Ok(None) => panic!("execution {id} is unknown"),
        Err(_) => panic!("execution {id} did not finish in time"),
    }
}

/// Waits (bounded) for an execution to reach `status`.
pub async fn expect_status(
    rt: &Runtime,
    id: &str,
    status: Status,
) -> flow_runtime::store::Execution {
    let e = finished(rt, id).await;
    assert_eq!(e.status, status, "execution {id}: {e:#?}");
    e
}

/// Bounded await of any future.
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Lowercase hex HMAC-SHA256, as a webhook sender computes it.
pub fn sign(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The URL of an outside service in the env var `var`, or `None` (the
/// test `test` is skipped, saying so) when unset; a failure instead when
/// unset and `FLOW_TEST_REQUIRE_SERVICES=1` (CI).
pub fn service_url(var: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(u) if !u.trim().is_empty() => Some(u),
        _ => {
            assert!(
                std::env::var("FLOW_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "{test}: {var} is not set and FLOW_TEST_REQUIRE_SERVICES=1"
            );
            eprintln!("skipping {test}: set {var} to run it");
            None
        }
    }
}
