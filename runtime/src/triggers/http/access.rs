//! Who may call an endpoint (LANGUAGE.md §11): `auth:` checks credentials
//! in a header before the body is read; `verify:` checks a signature over
//! the body once it is. A refused request gets `401` and is neither stored
//! nor run.
//!
//! Every comparison of a secret is constant-time and independent of the
//! lengths involved: both sides are hashed (SHA-256) and the digests are
//! compared with `subtle`, so neither a prefix nor a length can be probed
//! by timing. Several secrets may be configured (rotation); all of them
//! are tried, so the time does not say which one matched either.

use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest as _, Sha256};

use super::*;
use crate::engine::integration::{Auth, Verify};

/// Why a request was refused: the `401` it gets.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused {
    /// The JSON `error` text: what the caller must fix, nothing secret.
    pub message: String,
    /// The `WWW-Authenticate` challenge, for `auth:`.
    pub challenge: Option<String>,
}

impl Refused {
    fn new(message: impl Into<String>) -> Refused {
        Refused {
            message: message.into(),
            challenge: None,
        }
    }

    /// The `401` answer.
    pub(super) fn into_response(self) -> Response {
        let mut resp = error_response(StatusCode::UNAUTHORIZED, self.message);
        if let Some(value) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
        resp
    }
}

/// `auth:` of `flow`'s trigger, if any, as the handlers use it: the `401`
/// answer when the request does not pass.
pub(super) fn check_auth(
    flow: &str,
    auth: Option<&Auth>,
    headers: &HeaderMap,
) -> Result<(), Response> {
    let Some(auth) = auth else { return Ok(()) };
    authenticate(auth, headers).map_err(|refused| {
        tracing::warn!(flow, "refused a request without valid credentials");
        refused.into_response()
    })
}

/// `verify:` of `flow`'s trigger, if any, as the handlers use it.
pub(super) fn check_signature(
    flow: &str,
    check: Option<&Verify>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Response> {
    let Some(check) = check else { return Ok(()) };
    verify(check, headers, body, Utc::now().timestamp()).map_err(|refused| {
        tracing::warn!(flow, reason = %refused.message, "refused a request with a missing or invalid signature");
        refused.into_response()
    })
}

/// Whether `given` equals one of `accepted`, in time independent of where
/// they differ, of their lengths and of which one matched.
fn matches_any<'a>(given: &[u8], accepted: impl IntoIterator<Item = &'a [u8]>) -> bool {
    let given = Sha256::digest(given);
    let mut found = subtle::Choice::from(0);
    for candidate in accepted {
        found |= Sha256::digest(candidate).as_slice().ct_eq(given.as_slice());
    }
    found.into()
}

/// Checks `auth:` against the request headers.
pub fn authenticate(auth: &Auth, headers: &HeaderMap) -> Result<(), Refused> {
    let refuse = |challenge: String| Refused {
        message: "missing or invalid credentials".into(),
        challenge: Some(challenge),
    };
    let authorization = || {
        headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes)
            .unwrap_or_default()
    };
    match auth {
        Auth::Public => Ok(()),
        Auth::Bearer { tokens } => {
            let given = strip_scheme(authorization(), b"bearer").unwrap_or_default();
            if !given.is_empty() && matches_any(given, tokens.iter().map(|t| t.as_bytes())) {
                Ok(())
            } else {
                Err(refuse("Bearer".into()))
            }
        }
        Auth::Basic { user, passwords } => {
            let pair = strip_scheme(authorization(), b"basic")
                .and_then(|b64| BASE64.decode(b64.trim_ascii()).ok())
                .unwrap_or_default();
            let colon = pair.iter().position(|b| *b == b':');
            let admitted = colon.is_some_and(|at| {
                let (given_user, given_password) = (&pair[..at], &pair[at + 1..]);
                // Both checked, so the time does not tell which was wrong.
                let user_ok = matches_any(given_user, [user.as_bytes()]);
                let password_ok =
                    matches_any(given_password, passwords.iter().map(|p| p.as_bytes()));
                user_ok & password_ok
            });
            if admitted {
                Ok(())
            } else {
                Err(refuse(r#"Basic realm="flow", charset="UTF-8""#.into()))
            }
        }
        Auth::ApiKey { header: name, keys } => {
            let given = headers
                .get(*name)
                .map(HeaderValue::as_bytes)
                .unwrap_or_default();
            if !given.is_empty() && matches_any(given, keys.iter().map(|k| k.as_bytes())) {
                Ok(())
            } else {
                Err(refuse(format!(r#"ApiKey header="{name}""#)))
            }
        }
    }
}

/// `value` without its leading auth scheme (`Bearer xyz` → `xyz`), the
/// scheme compared without regard to case as RFC 9110 says.
fn strip_scheme<'a>(value: &'a [u8], scheme: &[u8]) -> Option<&'a [u8]> {
    let value = value.trim_ascii();
    let (name, rest) = value.split_at_checked(scheme.len())?;
    (name.eq_ignore_ascii_case(scheme) && rest.first() == Some(&b' ')).then(|| rest.trim_ascii())
}

/// Checks `verify:`: the signature over `body`, and for the timestamped
/// schemes that the timestamp is within the tolerance of `now` (Unix
/// seconds), so a captured request cannot be replayed later.
pub fn verify(verify: &Verify, headers: &HeaderMap, body: &[u8], now: i64) -> Result<(), Refused> {
    match verify {
        Verify::Hmac {
            header: name,
            secrets,
        } => {
            let given = header_text(headers, name).trim();
            let given = given.strip_prefix("sha256=").unwrap_or(given);
            let expected = secrets
                .iter()
                .map(|s| crate::core::hmac::hmac_hex(s.as_bytes(), body))
                .collect::<Vec<_>>();
            if !given.is_empty()
                && matches_any(given.as_bytes(), expected.iter().map(|e| e.as_bytes()))
            {
                Ok(())
            } else {
                Err(Refused::new(format!(
                    "missing or invalid signature in {name}"
                )))
            }
        }
        Verify::Stripe { secrets, tolerance } => {
            let (timestamp, signatures) =
                stripe_header(header_text(headers, "stripe-signature"))
                    .ok_or_else(|| Refused::new("missing or malformed Stripe-Signature"))?;
            within_tolerance(timestamp, now, *tolerance)?;
            let signed = [timestamp.as_bytes(), b".", body].concat();
            let expected: Vec<String> = secrets
                .iter()
                .map(|s| crate::core::hmac::hmac_hex(s.as_bytes(), &signed))
                .collect();
            let admitted = signatures
                .iter()
                .any(|given| matches_any(given.as_bytes(), expected.iter().map(|e| e.as_bytes())));
            if admitted {
                Ok(())
            } else {
                Err(Refused::new("invalid signature in Stripe-Signature"))
            }
        }
        Verify::StandardWebhooks { secrets, tolerance } => {
            let id = header_text(headers, "webhook-id");
            let timestamp = header_text(headers, "webhook-timestamp");
            let signatures = header_text(headers, "webhook-signature");
            if id.is_empty() || timestamp.is_empty() || signatures.is_empty() {
                return Err(Refused::new(
                    "missing webhook-id, webhook-timestamp or webhook-signature",
                ));
            }
            within_tolerance(timestamp, now, *tolerance)?;
            let signed = [id.as_bytes(), b".", timestamp.as_bytes(), b".", body].concat();
            let expected: Vec<Vec<u8>> = secrets
                .iter()
                .map(|s| hmac_bytes(&standard_webhooks_key(s), &signed))
                .collect();
            let admitted = signatures
                .split_ascii_whitespace()
                .filter_map(|entry| entry.strip_prefix("v1,"))
                .filter_map(|b64| BASE64.decode(b64).ok())
                .any(|given| matches_any(&given, expected.iter().map(Vec::as_slice)));
            if admitted {
                Ok(())
            } else {
                Err(Refused::new("invalid signature in webhook-signature"))
            }
        }
    }
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// `t=TS,v1=SIG,v1=SIG,v0=...` → the timestamp and the `v1` signatures.
fn stripe_header(value: &str) -> Option<(&str, Vec<&str>)> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in value.split(',') {
        match item.trim().split_once('=') {
            Some(("t", ts)) => timestamp = Some(ts),
            Some(("v1", sig)) => signatures.push(sig),
            _ => {}
        }
    }
    timestamp
        .filter(|_| !signatures.is_empty())
        .map(|ts| (ts, signatures))
}

/// A Standard Webhooks secret's key bytes: `whsec_` + base64, or the text
/// itself when it has no such prefix (or the rest is not base64).
fn standard_webhooks_key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix("whsec_")
        .and_then(|b64| BASE64.decode(b64).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

fn hmac_bytes(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use hmac::Mac as _;
    // HMAC takes keys of any length, so this cannot fail.
    let Ok(mut mac) = hmac::Hmac::<Sha256>::new_from_slice(key) else {
        return Vec::new();
    };
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// The signed timestamp (Unix seconds) is at most `tolerance` from `now`.
fn within_tolerance(timestamp: &str, now: i64, tolerance: Duration) -> Result<(), Refused> {
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| Refused::new("signature timestamp is not a number of seconds"))?;
    let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    if now.abs_diff(ts) > tolerance.unsigned_abs() {
        return Err(Refused::new(
            "signature timestamp is outside the tolerance (a replay, or a clock far off)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::hmac::hmac_hex;

    const NOW: i64 = 1_700_000_000;

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn stripe(secrets: &[&str]) -> Verify {
        Verify::Stripe {
            secrets: secrets.iter().map(|s| s.to_string()).collect(),
            tolerance: Duration::from_secs(300),
        }
    }

    fn stripe_signed(secret: &str, ts: i64, body: &[u8]) -> HeaderMap {
        let sig = hmac_hex(
            secret.as_bytes(),
            &[format!("{ts}.").as_bytes(), body].concat(),
        );
        headers(&[("stripe-signature", format!("t={ts},v1={sig},v0=ignored"))])
    }

    #[test]
    fn hmac_takes_any_of_its_secrets() {
        let v = Verify::Hmac {
            header: "X-Signature",
            secrets: vec!["old".into(), "new".into()],
        };
        let body = br#"{"a":1}"#;
        for secret in ["old", "new"] {
            let h = headers(&[(
                "x-signature",
                format!("sha256={}", hmac_hex(secret.as_bytes(), body)),
            )]);
            assert_eq!(verify(&v, &h, body, NOW), Ok(()), "{secret}");
        }
        let h = headers(&[("x-signature", hmac_hex(b"other", body))]);
        assert!(verify(&v, &h, body, NOW).is_err());
        assert!(verify(&v, &HeaderMap::new(), body, NOW).is_err());
        let h = headers(&[("x-signature", "sha256=".into())]);
        assert!(verify(&v, &h, body, NOW).is_err());
    }

    #[test]
    fn stripe_signatures_valid_stale_rotated_and_tampered() {
        let body = br#"{"id":"evt_1"}"#;
        let v = stripe(&["whsec_old", "whsec_new"]);
        assert_eq!(
            verify(&v, &stripe_signed("whsec_new", NOW, body), body, NOW),
            Ok(())
        );
        assert_eq!(
            verify(&v, &stripe_signed("whsec_old", NOW - 299, body), body, NOW),
            Ok(())
        );
        let stale = verify(&v, &stripe_signed("whsec_new", NOW - 301, body), body, NOW);
        assert!(stale.unwrap_err().message.contains("tolerance"));
        let future = verify(&v, &stripe_signed("whsec_new", NOW + 301, body), body, NOW);
        assert!(future.is_err());
        let other_secret = verify(&v, &stripe_signed("whsec_x", NOW, body), body, NOW);
        assert!(other_secret.is_err());
        let tampered = verify(&v, &stripe_signed("whsec_new", NOW, body), b"{}", NOW);
        assert!(tampered.is_err());
        // The timestamp is signed: moving it forward breaks the signature.
        let sig = hmac_hex(
            b"whsec_new",
            &[format!("{}.", NOW - 3600).as_bytes(), body].concat(),
        );
        let moved = headers(&[("stripe-signature", format!("t={NOW},v1={sig}"))]);
        assert!(verify(&v, &moved, body, NOW).is_err());
        // Several v1 entries (Stripe sends one per secret while rolling).
        let good = hmac_hex(b"whsec_new", &[format!("{NOW}.").as_bytes(), body].concat());
        let both = headers(&[("stripe-signature", format!("t={NOW},v1=00ff,v1={good}"))]);
        assert_eq!(verify(&v, &both, body, NOW), Ok(()));
        for malformed in ["", "t=", "v1=abc", "t=abc,v1=00", "garbage"] {
            let h = headers(&[("stripe-signature", malformed.into())]);
            assert!(verify(&v, &h, body, NOW).is_err(), "{malformed:?}");
        }
    }

    fn standard(secret: &str, id: &str, ts: i64, body: &[u8]) -> HeaderMap {
        let signed = [format!("{id}.{ts}.").as_bytes(), body].concat();
        let sig = BASE64.encode(hmac_bytes(&standard_webhooks_key(secret), &signed));
        headers(&[
            ("webhook-id", id.into()),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", format!("v1a,xyz v1,{sig}")),
        ])
    }

    #[test]
    fn standard_webhooks_valid_stale_rotated_and_tampered() {
        let body = br#"{"type":"invoice.paid"}"#;
        let key_b64 = BASE64.encode(b"0123456789abcdef0123456789abcdef");
        let current = format!("whsec_{key_b64}");
        let v = Verify::StandardWebhooks {
            secrets: vec![
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
                current.clone(),
            ],
            tolerance: Duration::from_secs(300),
        };
        assert_eq!(
            verify(&v, &standard(&current, "msg_1", NOW, body), body, NOW),
            Ok(())
        );
        let rotated = standard("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_1", NOW, body);
        assert_eq!(verify(&v, &rotated, body, NOW), Ok(()));
        let stale = standard(&current, "msg_1", NOW - 600, body);
        assert!(verify(&v, &stale, body, NOW).is_err());
        let tampered = standard(&current, "msg_1", NOW, body);
        assert!(verify(&v, &tampered, b"{}", NOW).is_err());
        // The id is signed: a new id on a captured request fails.
        let mut replayed = standard(&current, "msg_1", NOW, body);
        replayed.insert("webhook-id", HeaderValue::from_static("msg_2"));
        assert!(verify(&v, &replayed, body, NOW).is_err());
        assert!(verify(&v, &HeaderMap::new(), body, NOW).is_err());
    }

    /// The example of the Standard Webhooks specification.
    #[test]
    fn standard_webhooks_reference_vector() {
        let v = Verify::StandardWebhooks {
            secrets: vec!["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()],
            tolerance: Duration::from_secs(300),
        };
        let body = br#"{"test": 2432232314}"#;
        let h = headers(&[
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek".into()),
            ("webhook-timestamp", "1614265330".into()),
            (
                "webhook-signature",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".into(),
            ),
        ]);
        assert_eq!(verify(&v, &h, body, 1_614_265_330), Ok(()));
    }

    #[test]
    fn bearer_basic_and_api_key() {
        let bearer = Auth::Bearer {
            tokens: vec!["t0ken".into(), "next".into()],
        };
        let ok =
            |auth: &Auth, pairs: &[(&'static str, String)]| authenticate(auth, &headers(pairs));
        assert_eq!(
            ok(&bearer, &[("authorization", "Bearer t0ken".into())]),
            Ok(())
        );
        assert_eq!(
            ok(&bearer, &[("authorization", "bearer next".into())]),
            Ok(())
        );
        for wrong in [
            "Bearer t0ke",
            "Bearer t0ken2",
            "Basic t0ken",
            "Bearer ",
            "t0ken",
            "Bearert0ken",
        ] {
            let refused = ok(&bearer, &[("authorization", wrong.into())]).unwrap_err();
            assert_eq!(refused.challenge.as_deref(), Some("Bearer"), "{wrong}");
        }
        assert!(ok(&bearer, &[]).is_err());

        let basic = Auth::Basic {
            user: "acme".into(),
            passwords: vec!["pw".into()],
        };
        let encoded = |s: &str| format!("Basic {}", BASE64.encode(s));
        assert_eq!(ok(&basic, &[("authorization", encoded("acme:pw"))]), Ok(()));
        for wrong in ["acme:pw2", "acm:pw", "acme", ":pw", "acme:"] {
            let refused = ok(&basic, &[("authorization", encoded(wrong))]).unwrap_err();
            assert!(
                refused.challenge.unwrap().starts_with("Basic realm="),
                "{wrong}"
            );
        }
        assert!(ok(&basic, &[("authorization", "Basic !!!".into())]).is_err());

        let key = Auth::ApiKey {
            header: "X-Api-Key",
            keys: vec!["k1".into()],
        };
        assert_eq!(ok(&key, &[("x-api-key", "k1".into())]), Ok(()));
        assert!(ok(&key, &[("x-api-key", "k2".into())]).is_err());
        assert!(ok(&key, &[("authorization", "k1".into())]).is_err());
        assert_eq!(ok(&Auth::Public, &[]), Ok(()));
    }

    #[test]
    fn matching_needs_an_exact_value_of_any_length() {
        assert!(matches_any(b"abc", [b"x".as_slice(), b"abc"]));
        assert!(!matches_any(b"ab", [b"abc".as_slice()]));
        assert!(!matches_any(b"abcd", [b"abc".as_slice()]));
        assert!(!matches_any(b"abc", std::iter::empty()));
    }
}
