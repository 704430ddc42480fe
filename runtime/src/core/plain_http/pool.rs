//! The idle HTTP/1.1 connections of [`super::PlainHttp`], by origin, and
//! how a new one is opened.
//!
//! hyper-util's pooled client hashed each request's origin byte by byte
//! with SipHash twice a call (checkout and return: 3,100 instructions a
//! relay request) and spawned a task a call to put the connection back
//! once it was ready again. Here the few origins an integration calls are
//! a short list, a connection goes back as soon as its answer has been
//! read, and the next checkout waits until it is ready.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use reqwest::Url;

use crate::core::sync::lock;

/// How long an idle connection is kept, as by the runtime's reqwest client.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How long opening a connection may take, as for reqwest.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Origins remembered at most; past it the longest unused one is forgotten.
const MAX_ORIGINS: usize = 64;
/// Idle connections kept per origin at most (more are closed).
const MAX_IDLE_PER_ORIGIN: usize = 256;

/// The sending half of one HTTP/1.1 connection.
pub(super) type Sender = SendRequest<Full<Bytes>>;

/// Where connections go: host (as in the URL) and port.
#[derive(Debug)]
struct Origin {
    host: String,
    port: u16,
}

impl Origin {
    fn is(&self, (host, port): (&str, u16)) -> bool {
        self.port == port && self.host == host
    }
}

/// The host (as in the URL) and port of a plain `http://` URL, borrowed:
/// looking an origin up allocates nothing.
fn host_port(url: &Url) -> Option<(&str, u16)> {
    Some((url.host_str()?, url.port_or_known_default()?))
}

struct Idle {
    sender: Sender,
    since: Instant,
}

impl Idle {
    fn usable(&self, now: Instant) -> bool {
        !self.sender.is_closed() && now.duration_since(self.since) < IDLE_TIMEOUT
    }
}

/// Idle connections by origin, the longest unused origin first; each
/// origin's connections oldest first.
#[derive(Default)]
pub(super) struct Pool {
    origins: Mutex<VecDeque<(Origin, VecDeque<Idle>)>>,
}

impl Pool {
    /// The most recently returned idle connection to `url`'s origin that
    /// is still open and not past [`IDLE_TIMEOUT`].
    pub(super) fn checkout(&self, url: &Url) -> Option<Sender> {
        let key = host_port(url)?;
        let now = Instant::now();
        let mut origins = lock(&self.origins);
        let (_, idle) = origins.iter_mut().find(|(o, _)| o.is(key))?;
        while let Some(conn) = idle.pop_back() {
            if conn.usable(now) {
                return Some(conn.sender);
            }
        }
        None
    }

    /// Returns a connection whose answer has been read to the end. The
    /// connections of every origin idle past [`IDLE_TIMEOUT`] or closed
    /// are dropped (which closes them) from the oldest on: a few checks a
    /// call, with the few origins an integration calls.
    pub(super) fn checkin(&self, url: &Url, sender: Sender) {
        let Some(key @ (host, port)) = host_port(url) else {
            return;
        };
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut origins = lock(&self.origins);
        for (_, idle) in origins.iter_mut() {
            while idle.front().is_some_and(|conn| !conn.usable(now)) {
                idle.pop_front();
            }
        }
        let at = match origins.iter().position(|(o, _)| o.is(key)) {
            Some(at) => at,
            None => {
                if origins.len() >= MAX_ORIGINS {
                    origins.pop_front();
                }
                let origin = Origin {
                    host: host.to_owned(),
                    port,
                };
                origins.push_back((origin, VecDeque::new()));
                origins.len() - 1
            }
        };
        let Some((_, idle)) = origins.get_mut(at) else {
            return;
        };
        if idle.len() < MAX_IDLE_PER_ORIGIN {
            idle.push_back(Idle { sender, since: now });
        }
        // The origin just used goes last: the first to be forgotten is the
        // one unused longest.
        if at + 1 != origins.len() {
            if let Some(entry) = origins.remove(at) {
                origins.push_back(entry);
            }
        }
    }

    /// The number of idle connections kept for `url`'s origin.
    #[cfg(test)]
    pub(super) fn idle(&self, url: &Url) -> usize {
        let Some(key) = host_port(url) else {
            return 0;
        };
        lock(&self.origins)
            .iter()
            .find(|(o, _)| o.is(key))
            .map_or(0, |(_, idle)| idle.len())
    }
}

/// Opens a connection to `url`'s origin (each of its addresses in turn,
/// within [`CONNECT_TIMEOUT`] in all), with `TCP_NODELAY`, and starts the
/// task that drives it.
pub(super) async fn connect(url: &Url) -> Result<Sender, String> {
    let opening = async {
        let port = url.port_or_known_default().unwrap_or(80);
        let addrs: Vec<SocketAddr> = match url.host() {
            Some(url::Host::Ipv4(ip)) => vec![SocketAddr::from((ip, port))],
            Some(url::Host::Ipv6(ip)) => vec![SocketAddr::from((ip, port))],
            Some(url::Host::Domain(name)) => tokio::net::lookup_host((name, port))
                .await
                .map_err(|e| format!("dns error: {e}"))?
                .collect(),
            None => return Err("the URL has no host".to_string()),
        };
        let mut last = format!("no address for {}", url.host_str().unwrap_or_default());
        for addr in addrs {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(stream) => return Ok(stream),
                Err(e) => last = format!("tcp connect error: {e}"),
            }
        }
        Err(last)
    };
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, opening)
        .await
        .map_err(|_| format!("connecting timed out after {}s", CONNECT_TIMEOUT.as_secs()))??;
    // Small requests and answers go out at once, as with reqwest.
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    // Ends when the connection closes: the server's doing, or the last
    // `Sender` dropped (an idle connection forgotten, a call given up).
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}
