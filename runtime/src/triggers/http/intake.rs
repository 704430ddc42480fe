//! Bounded intake: how much of the server callers can hold, and for how
//! long. The accept loop caps open connections and cuts off headers that
//! do not arrive in time; the request handlers cap requests in flight and
//! concurrent sync runs ([`crate::core::slots`], one atomic operation per
//! request) and bound reading the body and answering with the request
//! timeout. Beyond a cap the answer is `503` with `Retry-After` at once:
//! a caller that is refused should come back later, not queue up.

use std::io;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::*;

/// The limits of the HTTP intake (`serve` flags `--request-timeout`,
/// `--max-connections`, `--max-in-flight`, `--max-sync-runs`).
#[derive(Debug, Clone, Copy)]
pub struct IntakeLimits {
    /// A request's headers must arrive within this (counted from the
    /// connection's start, or from the previous answer on a kept-alive
    /// connection, which is thus closed after this long idle); then its
    /// body must arrive (else `408`) and the request be answered (else
    /// `503`) within this again. A sync endpoint's run is bounded by its
    /// own `timeout` instead, which may be longer.
    pub request_timeout: Duration,
    /// Open connections at most; more wait in the kernel's backlog until
    /// one closes.
    pub max_connections: usize,
    /// Requests being handled at most (the admin API under `/_flow/` is not
    /// counted); more are answered `503` with `Retry-After: 1`.
    pub max_in_flight: usize,
    /// Sync runs going on at most, those whose caller hung up included;
    /// more are answered `503` with `Retry-After: 1`.
    pub max_sync_runs: usize,
}

/// Default of [`IntakeLimits::request_timeout`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default of [`IntakeLimits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default of [`IntakeLimits::max_in_flight`].
pub const DEFAULT_MAX_IN_FLIGHT: usize = 512;
/// Default of [`IntakeLimits::max_sync_runs`].
pub const DEFAULT_MAX_SYNC_RUNS: usize = 64;

impl Default for IntakeLimits {
    fn default() -> IntakeLimits {
        IntakeLimits {
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_sync_runs: DEFAULT_MAX_SYNC_RUNS,
        }
    }
}

/// `503` with `Retry-After: 1`: no room now, come back in a second.
pub(super) fn busy(message: &str) -> Response {
    let mut resp = error_response(StatusCode::SERVICE_UNAVAILABLE, message);
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// `408` for a body that did not arrive within the request timeout; the
/// connection is closed after it, as the rest of the body is not read.
pub(super) fn body_too_slow() -> Response {
    let mut resp = error_response(
        StatusCode::REQUEST_TIMEOUT,
        "the request body did not arrive in time",
    );
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// `503` for a request the server could not answer within the request
/// timeout (a slow store).
pub(super) fn not_answered_in_time() -> Response {
    busy("the request could not be answered in time; try again")
}

/// The admin API's answers within the request timeout.
pub(super) async fn admin_within(
    State(timeout): State<Duration>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    tokio::time::timeout(timeout, next.run(req))
        .await
        .unwrap_or_else(|_| not_answered_in_time())
}

/// One connection, served by hyper with the header timeout.
type Connection = http1::Connection<TokioIo<TcpStream>, TowerToHyperService<Router>>;

/// Serves HTTP/1.1 (keep-alive and pipelining as hyper does them) on
/// `listener` until shutdown begins, at most `max_connections` at once.
/// Then it stops accepting, lets each connection finish the request it is
/// handling, and returns when all have closed.
pub async fn serve(listener: TcpListener, router: Router, rt: Runtime, limits: IntakeLimits) {
    let permits =
        u32::try_from(limits.max_connections.clamp(1, Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
    let connections = Arc::new(Semaphore::new(permits as usize));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.request_timeout);
    let stopping = rt.shutdown_started();
    tokio::pin!(stopping);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut stopping => break,
            accepted = accept(&listener, &connections) => accepted,
        };
        let Some((stream, permit)) = accepted else {
            break;
        };
        let conn = http.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(router.clone()),
        );
        tokio::spawn(serve_connection(conn, rt.clone(), permit));
    }
    drop(listener);
    // Each connection gives its permit back when it closes.
    let _ = connections.acquire_many(permits).await;
}

/// The next connection, once there is room for it: until then it waits in
/// the kernel's backlog (no busy loop, and the kernel bounds the backlog).
async fn accept(
    listener: &TcpListener,
    connections: &Arc<Semaphore>,
) -> Option<(TcpStream, OwnedSemaphorePermit)> {
    // Never closed, so this does not fail.
    let permit = connections.clone().acquire_owned().await.ok()?;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => return Some((stream, permit)),
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                // Out of file descriptors, most likely: wait for some to
                // close rather than spin (as hyper and axum do).
                tracing::error!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// An error of the one connection being accepted, not of the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Serves one connection; at shutdown, finishes its request in progress
/// and closes it. Holds `_permit` (its place under the connection cap)
/// until then.
async fn serve_connection(conn: Connection, rt: Runtime, _permit: OwnedSemaphorePermit) {
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = rt.shutdown_started() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Slow or broken callers, not the server's trouble: a flood of
        // them must not flood the log.
        tracing::debug!(error = %e, timeout = e.is_timeout(), "connection closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_service::Service as _;

    #[tokio::test]
    async fn an_admin_answer_past_the_request_timeout_is_a_503_with_retry_after() {
        let mut router = Router::new()
            .route("/slow", get(std::future::pending::<()>))
            .route("/quick", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(
                Duration::from_millis(20),
                admin_within,
            ));
        let get = |path| {
            axum::http::Request::get(path)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let resp = tokio::time::timeout(Duration::from_secs(5), router.call(get("/slow")))
            .await
            .expect("answered within the timeout")
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        let resp = router.call(get("/quick")).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
}
