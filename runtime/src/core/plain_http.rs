//! `http.*` calls to plain `http://` URLs, sent straight over hyper's
//! HTTP/1.1 connections (kept idle in [`pool`]) instead of reqwest.
//!
//! reqwest turns every request's URI back into a `Url` twice (its redirect
//! policy and its pending request), copies its headers and wraps it in
//! tower layers: about 20,000 instructions a call, more than a relay
//! request's own handling spends on the body (docs/performance.md). For a
//! plain call none of that buys anything: the same hyper client does the
//! work, the redirects are followed here with the same policy
//! ([`super::outbound::redirect_refusal`]), and the headers reqwest adds
//! (`User-Agent`, `Accept: */*`) are added here.
//!
//! HTTPS, a proxy in the environment, credentials in the URL and calls
//! through a `connection` stay on reqwest; so does the rest of a redirect
//! chain that moves to HTTPS (its own count of at most
//! [`super::outbound::MAX_REDIRECTS`] then).

mod pool;

use axum::body::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};

use self::pool::{Pool, Sender};
use super::error::{error_chain, StepError};
use super::outbound::redirect_refusal;

/// A request of an `http.*` step, before it is sent one way or the other.
pub struct Outgoing {
    /// `GET`, `POST`, ...
    pub method: Method,
    /// With the `query:` pairs.
    pub url: Url,
    /// The call's, with its `Idempotency-Key`, `traceparent` and
    /// credentials; `User-Agent` and `Accept` are added when sent.
    pub headers: HeaderMap,
    /// `json:` encoded, or `body:`.
    pub body: Option<Bytes>,
}

impl Outgoing {
    /// Whether [`PlainHttp`] can send it: `http://`, no credentials and
    /// no fragment in the URL (reqwest turns the first into a header and
    /// drops the second).
    pub fn is_plain(&self) -> bool {
        self.url.scheme() == "http"
            && self.url.username().is_empty()
            && self.url.password().is_none()
            && self.url.fragment().is_none()
    }

    /// The same request for reqwest.
    pub fn into_reqwest(self, client: &reqwest::Client) -> reqwest::RequestBuilder {
        let req = client.request(self.method, self.url).headers(self.headers);
        match self.body {
            Some(body) => req.body(body),
            None => req,
        }
    }

    /// A copy, to send again (bodies are bytes: cheap to share).
    pub fn copy(&self) -> Outgoing {
        Outgoing {
            method: self.method.clone(),
            url: self.url.clone(),
            headers: self.headers.clone(),
            body: self.body.clone(),
        }
    }
}

/// A response whose body has been read (at most the caller's limit).
pub struct Answer {
    /// The status of the last answer (after redirects).
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body, whole.
    pub body: Bytes,
}

/// Where a call ends up: answered here, or handed to reqwest (a redirect
/// to HTTPS) with what is left to send.
pub enum Sent {
    /// The answer, read.
    Answered(Answer),
    /// The request a redirect leads to over HTTPS, for reqwest to send.
    ToReqwest(Outgoing),
}

/// hyper's HTTP/1.1 client over plain TCP with the runtime's connection
/// pool, set up as the runtime's reqwest client is (connect timeout,
/// `TCP_NODELAY`, idle connections kept 90 s).
pub struct PlainHttp {
    pool: Pool,
    user_agent: HeaderValue,
}

impl PlainHttp {
    /// A client whose requests say `user_agent` (unless given one).
    pub fn new(user_agent: HeaderValue) -> PlainHttp {
        PlainHttp {
            pool: Pool::default(),
            user_agent,
        }
    }

    /// Sends `req` and follows its redirects, reading the answer's body up
    /// to `limit` bytes. `what` names the call in errors.
    pub async fn send(
        &self,
        mut req: Outgoing,
        limit: u64,
        hint: &str,
        what: &(dyn Fn() -> String + Sync),
    ) -> Result<Sent, StepError> {
        let mut previous: Vec<Url> = Vec::new();
        loop {
            let request = self.request(&req).map_err(|e| StepError {
                message: format!("{}: {}", what(), e.message),
                ..e
            })?;
            let (resp, sender) = self.exchange(&req.url, request).await.map_err(|e| {
                StepError::retryable(format!("{}: error sending request: {e}", what()))
            })?;
            let Some(next) = redirect_to(&resp, &req.url) else {
                let (parts, body) = resp.into_parts();
                let body = read_limited(body, &parts.headers, limit, hint, what).await?;
                // Read to the end: the connection can carry the next call.
                self.pool.checkin(&req.url, sender);
                return Ok(Sent::Answered(Answer {
                    status: parts.status,
                    headers: parts.headers,
                    body,
                }));
            };
            previous.push(req.url.clone());
            if let Some(refused) = redirect_refusal(&previous, &next) {
                return Err(StepError::retryable(format!(
                    "{}: error following redirect: {refused}",
                    what()
                )));
            }
            req = redirected(req, resp.status(), next);
            if !req.is_plain() {
                return Ok(Sent::ToReqwest(req));
            }
        }
    }

    /// Sends `request` to `url`'s origin on an idle connection, or on a new
    /// one. A request that a reused connection closed before writing it is
    /// sent again on the next (as hyper-util's client does: the server may
    /// close an idle connection at any time); one that was written is not.
    async fn exchange(
        &self,
        url: &Url,
        mut request: axum::http::Request<Full<Bytes>>,
    ) -> Result<(axum::http::Response<Incoming>, Sender), String> {
        loop {
            let (mut sender, reused) = match self.pool.checkout(url) {
                Some(sender) => (sender, true),
                None => (pool::connect(url).await?, false),
            };
            if let Err(e) = sender.ready().await {
                if reused {
                    continue;
                }
                return Err(error_chain(&e));
            }
            match sender.try_send_request(request).await {
                Ok(resp) => return Ok((resp, sender)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(error_chain(e.error())),
                },
            }
        }
    }

    /// hyper's request for `req`, with the headers reqwest would add: the
    /// URI in origin form (`/path?query`) and `Host`, as on the wire.
    fn request(&self, req: &Outgoing) -> Result<axum::http::Request<Full<Bytes>>, StepError> {
        // A copy: a redirect sends them again.
        let mut headers = req.headers.clone();
        if !headers.contains_key(header::USER_AGENT) {
            headers.insert(header::USER_AGENT, self.user_agent.clone());
        }
        if !headers.contains_key(header::ACCEPT) {
            headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        }
        if !headers.contains_key(header::HOST) {
            headers.insert(header::HOST, host_header(&req.url)?);
        }
        let mut request = axum::http::Request::new(Full::new(req.body.clone().unwrap_or_default()));
        *request.method_mut() = req.method.clone();
        *request.uri_mut() = uri_of(&req.url)?;
        *request.headers_mut() = headers;
        Ok(request)
    }
}

/// `Host` for a plain URL: its host, and its port when not 80 (`Url`
/// keeps no default port).
fn host_header(url: &Url) -> Result<HeaderValue, StepError> {
    let authority = &url[url::Position::BeforeHost..url::Position::AfterPort];
    HeaderValue::from_str(authority)
        .map_err(|e| StepError::permanent(format!("the URL cannot be requested: {e}")))
}

/// The `axum::http::Uri` of a plain URL (no fragment, no credentials:
/// [`Outgoing::is_plain`]) in origin form, as an HTTP/1.1 request line
/// carries it: `Url` prints what `Uri` parses, escaped.
fn uri_of(url: &Url) -> Result<axum::http::Uri, StepError> {
    axum::http::Uri::try_from(&url[url::Position::BeforePath..url::Position::AfterQuery])
        .map_err(|e| StepError::permanent(format!("the URL cannot be requested: {e}")))
}

/// The next URL of a redirect response, resolved against `current`.
fn redirect_to<B>(resp: &axum::http::Response<B>, current: &Url) -> Option<Url> {
    let status = resp.status();
    if !matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let location = resp.headers().get(header::LOCATION)?.to_str().ok()?;
    current.join(location).ok()
}

/// `req` sent on to `next` after a redirect with `status`, as reqwest
/// (tower-http's `FollowRedirect`) does it: a `POST` answered 301 or 302,
/// and anything but `HEAD` answered 303, turns into a `GET` without a
/// body; 307 and 308 repeat the request. Credentials and cookies are not
/// sent to another host or port.
fn redirected(mut req: Outgoing, status: StatusCode, next: Url) -> Outgoing {
    let to_get = match status.as_u16() {
        301 | 302 => req.method == Method::POST,
        303 => true,
        _ => false,
    };
    if to_get {
        if req.method != Method::HEAD {
            req.method = Method::GET;
        }
        req.body = None;
        for name in [
            header::CONTENT_TYPE,
            header::CONTENT_LENGTH,
            header::CONTENT_ENCODING,
            header::TRANSFER_ENCODING,
        ] {
            req.headers.remove(name);
        }
    }
    let cross_host = next.host_str() != req.url.host_str()
        || next.port_or_known_default() != req.url.port_or_known_default();
    if cross_host {
        for name in [
            header::AUTHORIZATION,
            header::COOKIE,
            header::PROXY_AUTHORIZATION,
            header::WWW_AUTHENTICATE,
        ] {
            req.headers.remove(name);
        }
        req.headers.remove("cookie2");
    }
    req.url = next;
    req
}

/// The body, refused when larger than `limit` (declared or received).
async fn read_limited(
    mut body: Incoming,
    headers: &HeaderMap,
    limit: u64,
    hint: &str,
    what: &(dyn Fn() -> String + Sync),
) -> Result<Bytes, StepError> {
    let too_large = || {
        StepError::permanent(format!(
            "{}: the response is larger than {limit} bytes ({hint})",
            what()
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut out: Option<Bytes> = None;
    let mut joined: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            StepError::retryable(format!(
                "{}: reading the response: {}",
                what(),
                error_chain(&e)
            ))
        })?;
        let Ok(chunk) = frame.into_data() else {
            continue; // trailers
        };
        let received = out.as_ref().map_or(0, Bytes::len) + joined.len() + chunk.len();
        if received as u64 > limit {
            return Err(too_large());
        }
        // The common case is one chunk: kept as it is, not copied.
        match out.take() {
            None if joined.is_empty() => out = Some(chunk),
            first => {
                if let Some(first) = first {
                    joined.extend_from_slice(&first);
                }
                joined.extend_from_slice(&chunk);
            }
        }
    }
    Ok(out.unwrap_or_else(|| joined.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outgoing(method: Method, url: &str) -> Outgoing {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Outgoing {
            method,
            url: url.parse().unwrap(),
            headers,
            body: Some(Bytes::from_static(b"{}")),
        }
    }

    #[test]
    fn a_see_other_turns_into_a_get_without_a_body_and_a_307_repeats() {
        let found = |method| {
            let next: Url = "http://a.test/n".parse().unwrap();
            redirected(outgoing(method, "http://a.test/x"), StatusCode::FOUND, next).method
        };
        assert_eq!(found(Method::POST), Method::GET);
        assert_eq!(
            found(Method::PUT),
            Method::PUT,
            "only a POST turns into a GET on 302"
        );
        let next: Url = "http://a.test/next".parse().unwrap();
        let r = redirected(
            outgoing(Method::POST, "http://a.test/x"),
            StatusCode::SEE_OTHER,
            next.clone(),
        );
        assert_eq!((r.method, r.body), (Method::GET, None));
        assert!(r.headers.get(header::CONTENT_TYPE).is_none());
        assert!(
            r.headers.get(header::AUTHORIZATION).is_some(),
            "same origin"
        );
        let r = redirected(
            outgoing(Method::POST, "http://a.test/x"),
            StatusCode::TEMPORARY_REDIRECT,
            next,
        );
        assert_eq!(r.method, Method::POST);
        assert_eq!(r.body.as_deref(), Some(&b"{}"[..]));
        assert!(r.headers.get(header::CONTENT_TYPE).is_some());
    }

    #[test]
    fn credentials_are_not_sent_to_another_origin() {
        for next in ["http://b.test/x", "http://a.test:81/x", "https://a.test/x"] {
            let r = redirected(
                outgoing(Method::GET, "http://a.test/x"),
                StatusCode::FOUND,
                next.parse().unwrap(),
            );
            assert!(r.headers.get(header::AUTHORIZATION).is_none(), "{next}");
        }
    }

    #[test]
    fn only_plain_urls_go_straight_to_hyper() {
        let plain = |url: &str| outgoing(Method::GET, url).is_plain();
        assert!(plain("http://127.0.0.1:9100/ingest?a=1"));
        assert!(!plain("https://a.test/"));
        assert!(!plain("http://user:pw@a.test/"));
        assert!(!plain("http://a.test/#part"));
    }

    #[test]
    fn a_location_is_resolved_against_the_current_url() {
        let resp = |status: u16, location: &str| {
            axum::http::Response::builder()
                .status(status)
                .header(header::LOCATION, location)
                .body(())
                .unwrap()
        };
        let current: Url = "http://a.test/dir/page".parse().unwrap();
        let next = |r| redirect_to(&r, &current).map(|u| u.to_string());
        assert_eq!(
            next(resp(302, "other")).as_deref(),
            Some("http://a.test/dir/other")
        );
        assert_eq!(
            next(resp(308, "/root")).as_deref(),
            Some("http://a.test/root")
        );
        assert_eq!(
            next(resp(301, "https://b.test/")).as_deref(),
            Some("https://b.test/")
        );
        assert_eq!(next(resp(200, "/x")), None);
        assert_eq!(next(resp(304, "/x")), None);
    }

    /// A server answering `ok` to every request on a connection, which it
    /// closes after `per_connection` answers; it counts the connections.
    async fn counting_server(
        per_connection: usize,
    ) -> (Url, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/in", listener.local_addr().unwrap())).unwrap();
        let accepted = std::sync::Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 4096];
                    for _ in 0..per_connection {
                        // Requests without a body: each ends with a blank line.
                        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => seen.extend_from_slice(&buf[..n]),
                            }
                        }
                        let end = seen.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                        seen.drain(..end);
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (url, accepted)
    }

    async fn get(client: &PlainHttp, url: &Url) -> Result<Sent, StepError> {
        let what = || "http.get".to_string();
        let mut req = outgoing(Method::GET, url.as_str());
        req.body = None;
        client.send(req, 1024, "max_response:", &what).await
    }

    fn answered(sent: Result<Sent, StepError>) -> Bytes {
        match sent {
            Ok(Sent::Answered(answer)) => answer.body,
            Ok(Sent::ToReqwest(_)) => panic!("handed to reqwest"),
            Err(e) => panic!("{}", e.message),
        }
    }

    #[tokio::test]
    async fn calls_in_turn_share_one_connection() {
        let (url, accepted) = counting_server(usize::MAX).await;
        let client = PlainHttp::new(HeaderValue::from_static("t"));
        for _ in 0..3 {
            assert_eq!(answered(get(&client, &url).await), "ok");
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(client.pool.idle(&url), 1);
    }

    /// The server closes each connection after one answer, as a server
    /// closing idle connections does: whether the client notices before
    /// the next call (the connection is skipped) or only when sending on
    /// it (the unsent request goes again on a new one), the call succeeds.
    #[tokio::test]
    async fn a_connection_the_server_closed_is_not_used_again() {
        let (url, accepted) = counting_server(1).await;
        let client = PlainHttp::new(HeaderValue::from_static("t"));
        for _ in 0..3 {
            assert_eq!(answered(get(&client, &url).await), "ok");
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_retryable_error() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let client = PlainHttp::new(HeaderValue::from_static("t"));
        let url = Url::parse(&format!("http://127.0.0.1:{port}/in")).unwrap();
        let Err(e) = get(&client, &url).await else {
            panic!("no error")
        };
        assert!(
            e.message
                .starts_with("http.get: error sending request: tcp connect error"),
            "{}",
            e.message
        );
        assert!(e.retryable, "{}", e.message);
    }

    #[test]
    fn the_request_line_is_in_origin_form_with_a_host() {
        let client = PlainHttp::new(HeaderValue::from_static("t"));
        let req = client
            .request(&outgoing(Method::GET, "http://h.example:8080/a/b?c=1"))
            .unwrap();
        assert_eq!(req.uri(), "/a/b?c=1");
        assert_eq!(req.headers()[header::HOST], "h.example:8080");
        let req = client
            .request(&outgoing(Method::GET, "http://[::1]"))
            .unwrap();
        assert_eq!(req.uri(), "/");
        assert_eq!(req.headers()[header::HOST], "[::1]");
    }
}
