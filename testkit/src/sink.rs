//! The sink: a local HTTP server standing in for the outside systems a
//! flow calls. It records every request and answers as the test scripts
//! it: per `(method, path)` queues of replies ([`Sink::on`]), or a function
//! of the request ([`Sink::responding`]); a reply can be delayed or held
//! until the test opens the gate ([`Sink::open_gate`]).
//!
//! The server runs on a thread and tokio runtime of its own, so it serves
//! plain `#[test]`s and `#[tokio::test]`s alike and outlives no test.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::response::IntoResponse as _;
use serde_json::{json, Value};
use tokio::sync::{oneshot, watch};

use crate::http::{header_map, header_named, json_or_text};
use crate::lock;

/// One request the sink received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// The raw query string (without `?`), empty when there is none.
    pub query: String,
    /// Header names lowercase; repeated headers joined with `, `.
    pub headers: HashMap<String, String>,
    /// The body parsed as JSON; `Null` when empty, a JSON string when it is
    /// not JSON.
    pub body: Value,
    /// The body as received (what a signature covers).
    pub raw: Vec<u8>,
    /// When it arrived.
    pub at: Instant,
}

impl Received {
    /// A header by name (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_named(&self.headers, name)
    }
}

/// One answer of the sink.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    /// Raw bytes to answer instead of the JSON `body`
    /// (`application/octet-stream`).
    pub raw: Option<Vec<u8>>,
    /// How long to wait before answering.
    pub delay: Duration,
    /// Whether to wait for [`Sink::open_gate`] before answering.
    pub hold: bool,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
}

impl Reply {
    /// `status` with a JSON body.
    pub fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body,
            raw: None,
            delay: Duration::ZERO,
            hold: false,
            headers: Vec::new(),
        }
    }

    /// `status` with these bytes as the body (`application/octet-stream`).
    pub fn bytes(status: u16, data: Vec<u8>) -> Reply {
        Reply {
            raw: Some(data),
            ..Reply::json(status, Value::Null)
        }
    }

    /// `status` with the body `{}`.
    pub fn status(status: u16) -> Reply {
        Reply::json(status, json!({}))
    }

    /// `200 {}`, the sink's default answer.
    pub fn ok() -> Reply {
        Reply::status(200)
    }

    /// The same answer, given after `delay`.
    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    /// The same answer with the header `name: value` too.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// The same answer, given once the test opens the gate.
    pub fn held(mut self) -> Reply {
        self.hold = true;
        self
    }
}

impl From<(u16, Value)> for Reply {
    fn from((status, body): (u16, Value)) -> Reply {
        Reply::json(status, body)
    }
}

/// Chooses the answer to a request, given how many earlier requests had
/// the same method and path.
type Responder = dyn Fn(&Received, usize) -> Reply + Send + Sync;

struct SinkState {
    received: Mutex<Vec<Received>>,
    /// `(METHOD, /path)` → answers in order; the last one repeats.
    replies: Mutex<HashMap<(String, String), VecDeque<Reply>>>,
    /// Overrides `replies` when set.
    responder: Option<Box<Responder>>,
    /// How many requests arrived: waits wake up on every change.
    count: watch::Sender<usize>,
    /// Held replies are given once this is `true`.
    gate: watch::Sender<bool>,
}

impl SinkState {
    fn programmed_reply(&self, method: &str, path: &str) -> Reply {
        let mut replies = lock(&self.replies);
        let key = (method.to_string(), path.to_string());
        let any = ("*".to_string(), path.to_string());
        let queue = if replies.contains_key(&key) {
            replies.get_mut(&key)
        } else {
            replies.get_mut(&any)
        };
        match queue {
            Some(q) if q.len() > 1 => q.pop_front().expect("non-empty"),
            Some(q) if q.len() == 1 => q[0].clone(),
            _ => Reply::ok(),
        }
    }

    /// Records `request` and chooses its answer.
    fn record(&self, request: Received) -> Reply {
        let reply = {
            let mut received = lock(&self.received);
            let earlier = received
                .iter()
                .filter(|r| r.method == request.method && r.path == request.path)
                .count();
            let reply = match &self.responder {
                Some(respond) => respond(&request, earlier),
                None => self.programmed_reply(&request.method, &request.path),
            };
            received.push(request);
            reply
        };
        self.count.send_modify(|n| *n += 1);
        reply
    }
}

async fn sink_handler(
    axum::extract::State(state): axum::extract::State<Arc<SinkState>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let reply = state.record(Received {
        method: method.as_str().to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or("").to_string(),
        headers: header_map(&headers),
        body: json_or_text(&body),
        raw: body.to_vec(),
        at: Instant::now(),
    });
    if reply.hold {
        let _ = state.gate.subscribe().wait_for(|open| *open).await;
    }
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let status = axum::http::StatusCode::from_u16(reply.status)
        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = match reply.raw {
        Some(data) => (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
            data,
        )
            .into_response(),
        None => (status, axum::Json(reply.body)).into_response(),
    };
    for (name, value) in &reply.headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::try_from(name.as_str()),
            axum::http::HeaderValue::try_from(value.as_str()),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

/// The running server; stopped when the last [`Sink`] handle is dropped.
struct Server {
    url: String,
    state: Arc<SinkState>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A local HTTP server on a free loopback port that records every request
/// and answers as scripted (default: `200 {}`). Clones share the server;
/// it stops when the last one is dropped.
#[derive(Clone)]
pub struct Sink {
    server: Arc<Server>,
}

impl Sink {
    /// Starts a sink that answers with the replies programmed by
    /// [`Sink::on`] (`200 {}` for anything else).
    pub fn start() -> Sink {
        Sink::serve(None, 0)
    }

    /// [`Sink::start`] on the loopback `port` (a receiver that comes up
    /// where callers were told it would be, e.g. after
    /// [`crate::free_port`]).
    pub fn start_at(port: u16) -> Sink {
        Sink::serve(None, port)
    }

    /// Starts a sink that answers `respond(request, how many earlier
    /// requests had the same method and path)`.
    pub fn responding<R: Into<Reply>>(
        respond: impl Fn(&Received, usize) -> R + Send + Sync + 'static,
    ) -> Sink {
        Sink::serve(
            Some(Box::new(move |r, earlier| respond(r, earlier).into())),
            0,
        )
    }

    fn serve(responder: Option<Box<Responder>>, port: u16) -> Sink {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind the sink");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let url = format!("http://{}", listener.local_addr().expect("sink address"));
        let state = Arc::new(SinkState {
            received: Mutex::default(),
            replies: Mutex::default(),
            responder,
            count: watch::channel(0).0,
            gate: watch::channel(false).0,
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let router = axum::Router::new()
            .fallback(sink_handler)
            .with_state(state.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("sink runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                tokio::select! {
                    r = axum::serve(listener, router) => r.expect("sink server"),
                    _ = stopped => {}
                }
            });
            // Dropping the runtime ends the connections still open
            // (held replies included).
        });
        Sink {
            server: Arc::new(Server {
                url,
                state,
                stop: Some(stop),
                thread: Some(thread),
            }),
        }
    }

    fn state(&self) -> &SinkState {
        &self.server.state
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.server.url
    }

    /// Programs the answers to `METHOD path` (`"*"` for any method): one
    /// per request, in order, the last one repeating; e.g. `[503, 503,
    /// 200]` fails twice, then succeeds for good. Not used by a sink
    /// started with [`Sink::responding`].
    pub fn on(&self, method: &str, path: &str, replies: impl IntoIterator<Item = Reply>) {
        let replies: VecDeque<Reply> = replies.into_iter().collect();
        assert!(!replies.is_empty(), "program at least one reply");
        lock(&self.state().replies).insert((method.to_string(), path.to_string()), replies);
    }

    /// Gives every held reply, now and from now on.
    pub fn open_gate(&self) {
        self.state().gate.send_replace(true);
    }

    /// Every request received so far, in order of arrival.
    pub fn requests(&self) -> Vec<Received> {
        lock(&self.state().received).clone()
    }

    /// The requests received so far for `METHOD path` (`"*"` for any
    /// method).
    pub fn requests_to(&self, method: &str, path: &str) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| (method == "*" || r.method == method) && r.path == path)
            .collect()
    }

    /// Waits until the requests received satisfy `done` (checked on every
    /// arrival; at most `timeout`, then the test fails naming `what` and
    /// listing what did arrive).
    pub async fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let mut arrivals = self.state().count.subscribe();
        let waited = tokio::time::timeout(
            timeout,
            arrivals.wait_for(|_| done(&lock(&self.state().received))),
        )
        .await;
        assert!(
            waited.is_ok(),
            "timed out after {timeout:?} waiting for {what}; the sink received:\n{}",
            self.summary()
        );
        self.requests()
    }

    /// Waits until at least `n` requests have arrived.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let what = format!("{n} request(s) at the sink");
        self.wait_until(timeout, &what, |r| r.len() >= n).await
    }

    /// Waits until at least `n` requests to `METHOD path` have arrived.
    pub async fn wait_for_path(
        &self,
        method: &str,
        path: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<Received> {
        let what = format!("{n} request(s) {method} {path} at the sink");
        let to_path = |r: &Received| r.method == method && r.path == path;
        self.wait_until(timeout, &what, |r| {
            r.iter().filter(|r| to_path(r)).count() >= n
        })
        .await;
        self.requests_to(method, path)
    }

    /// A one-line-per-request summary, for failure messages.
    pub fn summary(&self) -> String {
        self.requests()
            .iter()
            .map(|r| format!("{} {} {}", r.method, r.path, r.body))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{post_json, request};

    const WAIT: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn programmed_replies_come_in_order_and_the_last_repeats() {
        let sink = Sink::start();
        sink.on(
            "POST",
            "/x",
            [Reply::status(503), Reply::json(201, json!(1))],
        );
        let url = format!("{}/x", sink.url());
        let mut statuses = Vec::new();
        for _ in 0..3 {
            statuses.push(post_json(&url, &json!({ "n": 1 }), &[]).await.0);
        }
        assert_eq!(statuses, [503, 201, 201]);
        // Other paths and methods get the default answer.
        let other = request("GET", &url, None, &[]).await;
        assert_eq!((other.status, other.body), (200, json!({})));
    }

    #[tokio::test]
    async fn requests_are_recorded_with_query_headers_and_body() {
        let sink = Sink::start();
        let url = format!("{}/in?a=1", sink.url());
        let headers = [("X-Key", "k1"), ("Content-Type", "text/plain")];
        request("PUT", &url, Some(b"not json".to_vec()), &headers).await;
        request("DELETE", &url, None, &[]).await;
        let got = sink.wait_for(2, WAIT).await;
        assert_eq!(
            (got[0].method.as_str(), got[0].path.as_str()),
            ("PUT", "/in")
        );
        assert_eq!(got[0].query, "a=1");
        assert_eq!(got[0].header("x-KEY"), Some("k1"));
        assert_eq!(got[0].body, json!("not json"));
        assert_eq!(got[1].body, Value::Null);
        assert_eq!(sink.requests_to("*", "/in").len(), 2);
        assert_eq!(sink.requests_to("PUT", "/in").len(), 1);
    }

    #[tokio::test]
    async fn a_responder_sees_how_many_earlier_requests_matched() {
        let sink =
            Sink::responding(|r, earlier| (200, json!({ "path": r.path, "earlier": earlier })));
        let url = format!("{}/p", sink.url());
        let first = post_json(&url, &json!({}), &[]).await.1;
        let second = post_json(&url, &json!({}), &[]).await.1;
        assert_eq!(first["earlier"], json!(0));
        assert_eq!(second, json!({ "path": "/p", "earlier": 1 }));
    }

    #[tokio::test]
    async fn a_held_reply_waits_for_the_gate() {
        let sink = Sink::responding(|_, _| Reply::ok().held());
        let url = format!("{}/held", sink.url());
        let call = tokio::spawn(async move { post_json(&url, &json!({}), &[]).await.0 });
        sink.wait_for(1, WAIT).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!call.is_finished(), "answered before the gate opened");
        sink.open_gate();
        assert_eq!(call.await.expect("the call"), 200);
    }
}
