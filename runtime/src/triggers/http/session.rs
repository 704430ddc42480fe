//! Sign-in sessions of the executions page (`/_flow/ui`): what lets a
//! browser use the admin API without ever holding the admin token.
//!
//! Terms: a *session* is a random 128-bit id, sent by the browser as the
//! cookie [`COOKIE`], with a CSRF token of its own that the page reads from
//! `GET /_flow/ui/session` and sends back as [`CSRF_HEADER`] on every
//! state-changing request. Sessions live in memory only (a restart signs
//! everyone out), at most [`MAX_SESSIONS`], each for [`SESSION_TTL`].
//! Failed sign-ins are bounded ([`MAX_FAILURES`] per [`FAILURE_WINDOW`]
//! for the whole process) so the token cannot be guessed fast.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, HeaderValue};
use rand::RngCore as _;
use subtle::ConstantTimeEq as _;

/// The session cookie's name.
pub(super) const COOKIE: &str = "flow_session";

/// The header carrying the session's CSRF token on state-changing requests.
pub(super) const CSRF_HEADER: &str = "x-flow-csrf";

/// How long a session lasts from sign-in (also the cookie's `Max-Age`).
pub(super) const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Sessions kept at most; signing in beyond it evicts the oldest.
const MAX_SESSIONS: usize = 1_000;

/// Failed sign-ins allowed per [`FAILURE_WINDOW`], across all callers.
/// Past it every sign-in is refused until the window ends: refusing only
/// wrong tokens would tell a guesser which one was right.
const MAX_FAILURES: u32 = 10;

/// See [`MAX_FAILURES`].
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// How long a wrong token is answered after (slows down a guesser that
/// stays under the bound, and any timing difference drowns in it).
pub(super) const FAILURE_DELAY: Duration = Duration::from_millis(300);

struct Session {
    csrf: String,
    created: Instant,
    /// Sign-in order, for evicting the oldest (instants may tie).
    serial: u64,
}

/// Failed sign-ins in the current window.
struct Failures {
    window_start: Instant,
    count: u32,
}

/// The live sessions and the count of failed sign-ins.
pub(super) struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
    failures: Mutex<Failures>,
}

/// Why a sign-in was not accepted.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SignInRefused {
    /// The token does not match.
    WrongToken,
    /// Too many failures lately; nothing was compared.
    TooManyAttempts,
}

impl Sessions {
    pub(super) fn new() -> Sessions {
        Sessions {
            by_id: Mutex::new(HashMap::new()),
            failures: Mutex::new(Failures {
                window_start: Instant::now(),
                count: 0,
            }),
        }
    }

    /// Compares `given` with the admin token in constant time and, if it
    /// matches, opens a session: its id (for the cookie).
    pub(super) fn sign_in(&self, admin_token: &str, given: &str) -> Result<String, SignInRefused> {
        if self.locked_out() {
            return Err(SignInRefused::TooManyAttempts);
        }
        if !tokens_match(admin_token, given) {
            self.count_failure();
            return Err(SignInRefused::WrongToken);
        }
        let id = random_hex();
        let mut by_id = crate::core::sync::lock(&self.by_id);
        let session = Session {
            csrf: random_hex(),
            created: Instant::now(),
            serial: by_id.values().map(|s| s.serial + 1).max().unwrap_or(0),
        };
        by_id.retain(|_, s| s.created.elapsed() < SESSION_TTL);
        if by_id.len() >= MAX_SESSIONS {
            let oldest = by_id
                .iter()
                .min_by_key(|(_, s)| s.serial)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                by_id.remove(&oldest);
            }
        }
        by_id.insert(id.clone(), session);
        Ok(id)
    }

    /// The CSRF token of the live session named by the request's cookie.
    pub(super) fn csrf_of(&self, headers: &HeaderMap) -> Option<String> {
        let id = session_cookie(headers)?;
        let mut by_id = crate::core::sync::lock(&self.by_id);
        match by_id.get(id) {
            Some(s) if s.created.elapsed() < SESSION_TTL => Some(s.csrf.clone()),
            Some(_) => {
                by_id.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends the session named by the request's cookie, if any.
    pub(super) fn sign_out(&self, headers: &HeaderMap) {
        if let Some(id) = session_cookie(headers) {
            crate::core::sync::lock(&self.by_id).remove(id);
        }
    }

    fn locked_out(&self) -> bool {
        let mut f = crate::core::sync::lock(&self.failures);
        if f.window_start.elapsed() >= FAILURE_WINDOW {
            f.window_start = Instant::now();
            f.count = 0;
        }
        f.count >= MAX_FAILURES
    }

    fn count_failure(&self) {
        let mut f = crate::core::sync::lock(&self.failures);
        f.count = f.count.saturating_add(1);
    }
}

/// Constant-time comparison of a presented token with the expected one
/// (the length is not secret: it only ends the comparison early).
pub(super) fn tokens_match(expected: &str, given: &str) -> bool {
    given.len() == expected.len() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// 128 random bits as 32 hex digits, from the thread's CSPRNG.
fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The value of the [`COOKIE`] cookie, if the request has one.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// Whether the request came with the session cookie (valid or not).
pub(super) fn has_session_cookie(headers: &HeaderMap) -> bool {
    session_cookie(headers).is_some()
}

/// Whether the request arrived over HTTPS (directly, or as a proxy in
/// front says with `X-Forwarded-Proto`): the cookie is then `Secure`.
pub(super) fn over_https(uri: &axum::http::Uri, headers: &HeaderMap) -> bool {
    uri.scheme_str() == Some("https")
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// The `Set-Cookie` value of a new session.
/// `prefix`: where the admin routes are served from (`/i/NAME` for an
/// instance), so that each instance's page has a cookie of its own.
pub(super) fn session_cookie_header(id: &str, secure: bool, prefix: &str) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let value = format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path={prefix}/_flow; Max-Age={}{secure}",
        SESSION_TTL.as_secs()
    );
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The `Set-Cookie` value that makes the browser forget the session.
pub(super) fn cleared_cookie_header(prefix: &str) -> HeaderValue {
    let value = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path={prefix}/_flow; Max-Age=0");
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Whether a browser request comes from another site: its `Origin` (sent
/// by browsers on every POST) names another host than the one it was sent
/// to, `Host` or, behind a proxy that rewrites `Host`, the
/// `X-Forwarded-Host` it sets (a page of another site cannot send that
/// header without a CORS preflight, which this service never grants). A
/// request without `Origin` (not a browser's POST) passes; the CSRF header
/// is what protects it.
pub(super) fn cross_site(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let Some(origin_host) = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, authority)| authority)
    else {
        // `Origin: null` (a sandboxed or file page).
        return true;
    };
    let this_host = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|h| h.trim().eq_ignore_ascii_case(origin_host))
    };
    !(this_host("host") || this_host("x-forwarded-host"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn a_session_is_found_by_its_cookie_among_others() {
        let sessions = Sessions::new();
        let id = sessions.sign_in("secret", "secret").unwrap();
        assert_eq!(id.len(), 32);
        let headers = with_cookie(&format!("a=1; {COOKIE}={id}; b=2"));
        let csrf = sessions.csrf_of(&headers).expect("live session");
        assert_eq!(csrf.len(), 32);
        assert_ne!(csrf, id);
        assert!(sessions
            .csrf_of(&with_cookie("flow_session=nope"))
            .is_none());
        sessions.sign_out(&headers);
        assert!(sessions.csrf_of(&headers).is_none());
    }

    #[test]
    fn failed_sign_ins_lock_everyone_out_for_the_window() {
        let sessions = Sessions::new();
        for _ in 0..MAX_FAILURES {
            assert_eq!(
                sessions.sign_in("secret", "guess"),
                Err(SignInRefused::WrongToken)
            );
        }
        assert_eq!(
            sessions.sign_in("secret", "secret"),
            Err(SignInRefused::TooManyAttempts)
        );
    }

    #[test]
    fn the_oldest_session_is_evicted_beyond_the_bound() {
        let sessions = Sessions::new();
        let first = sessions.sign_in("t", "t").unwrap();
        for _ in 0..MAX_SESSIONS {
            sessions.sign_in("t", "t").unwrap();
        }
        let live = crate::core::sync::lock(&sessions.by_id).len();
        assert_eq!(live, MAX_SESSIONS);
        assert!(sessions
            .csrf_of(&with_cookie(&format!("{COOKIE}={first}")))
            .is_none());
    }

    #[test]
    fn origins_of_other_hosts_are_cross_site() {
        let mut h = HeaderMap::new();
        assert!(!cross_site(&h), "no Origin: not a browser POST");
        h.insert(header::HOST, HeaderValue::from_static("svc:8080"));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://svc:8080"));
        assert!(!cross_site(&h));
        for other in ["https://evil.example", "http://svc:8081", "null"] {
            h.insert(header::ORIGIN, HeaderValue::from_static(other));
            assert!(cross_site(&h), "{other}");
        }
        // Behind a proxy that rewrote Host and said which one it was.
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://ops.example.com"),
        );
        assert!(cross_site(&h));
        h.insert(
            "x-forwarded-host",
            HeaderValue::from_static("ops.example.com"),
        );
        assert!(!cross_site(&h));
    }
}
