//! Keeps secrets from leaving the process as text.
//!
//! A [`Redactor`] knows every secret value (config entries of type `Secret`,
//! the admin token) and replaces each occurrence with `***` in logs, errors,
//! execution records and admin API answers.
//!
//! A secret rarely stays as it was given: passed into a query string it is
//! percent- or `+`-encoded, in a Basic header base64-encoded, inside a JSON
//! text escaped. So each secret is masked in all its *forms*
//! ([`encoded_forms`]), computed once when the secret is added; redacting a
//! text is then one Aho-Corasick pass over it, however many secrets and
//! forms there are.

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;
use serde_json::Value;

/// Shortest secret value masked in free text.
pub const MIN_SECRET_LEN: usize = 4;

/// What a redacted secret prints as.
pub const MASK: &str = "***";

/// Shortest base64 fragment masked for a secret inside a longer encoded
/// text (`user:secret` in a Basic header): shorter ones would match
/// ordinary words.
const MIN_BASE64_FRAGMENT: usize = 8;

/// The secrets and the matcher of all their forms.
#[derive(Default, Debug)]
struct Secrets {
    /// The values as added, for [`Redactor::merge`].
    values: Vec<String>,
    /// Every form of every value; `None` while there is none.
    matcher: Option<AhoCorasick>,
}

impl Secrets {
    fn rebuild(&mut self) {
        let mut forms: Vec<String> = self.values.iter().flat_map(|v| encoded_forms(v)).collect();
        forms.sort();
        forms.dedup();
        // Leftmost-longest: a secret containing another is masked whole.
        self.matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&forms)
            .ok();
    }
}

/// A shared, cheaply cloned set of secret values. Clones share the set, so a
/// log writer created before the config is loaded still learns the secrets.
#[derive(Clone, Default, Debug)]
pub struct Redactor {
    secrets: Arc<RwLock<Secrets>>,
}

impl Redactor {
    /// An empty redactor.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a secret value. Values shorter than [`MIN_SECRET_LEN`] are
    /// ignored: masking them would garble every text without protecting
    /// anything (they are still never printed by `--help` or `check-config`).
    pub fn add(&self, secret: &str) {
        if secret.chars().count() < MIN_SECRET_LEN {
            return;
        }
        let mut secrets = crate::core::sync::write(&self.secrets);
        if !secrets.values.iter().any(|s| s == secret) {
            secrets.values.push(secret.to_string());
            secrets.rebuild();
        }
    }

    /// Adds every secret another redactor knows.
    pub fn merge(&self, other: &Redactor) {
        if Arc::ptr_eq(&self.secrets, &other.secrets) {
            return;
        }
        let theirs: Vec<String> = crate::core::sync::read(&other.secrets).values.clone();
        for s in theirs {
            self.add(&s);
        }
    }

    /// Replaces every known secret in `text`, in any of its encoded forms,
    /// with `***`.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let secrets = crate::core::sync::read(&self.secrets);
        let Some(matcher) = &secrets.matcher else {
            return Cow::Borrowed(text);
        };
        if !matcher.is_match(text) {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        matcher.replace_all_with(text, &mut out, |_, _, out| {
            out.push_str(MASK);
            true
        });
        Cow::Owned(out)
    }

    /// [`Redactor::redact`] for an owned string.
    pub fn redact_string(&self, text: String) -> String {
        match self.redact(&text) {
            Cow::Borrowed(_) => text,
            Cow::Owned(s) => s,
        }
    }

    /// Redacts every string (and object key) inside a JSON value.
    pub fn redact_value(&self, value: &Value) -> Value {
        match value {
            Value::String(s) => Value::String(self.redact(s).into_owned()),
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.redact_value(v)).collect())
            }
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| (self.redact(k).into_owned(), self.redact_value(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

/// `url` as an error or log line may name it: without its query string,
/// fragment and userinfo, which is where URLs carry API keys, signed
/// tokens and passwords. Scheme, host, port and path stay, enough to tell
/// which call failed. Works on any text, parsed or not.
pub fn url_for_errors(url: &str) -> Cow<'_, str> {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let kept_len = scheme.map_or(0, |s| s.len() + 3) + host.len() + path.len();
    if kept_len == url.len() {
        return Cow::Borrowed(url);
    }
    Cow::Owned(match scheme {
        Some(scheme) => format!("{scheme}://{host}{path}"),
        None => format!("{host}{path}"),
    })
}

/// The texts `secret` may appear as: itself; percent-encoded (upper- and
/// lowercase hex, and as a URL's query keeps it); `+`-encoded as in forms
/// and `query:` pairs; base64, standard and URL-safe, with and without
/// padding, whole and as the fragment seen inside a longer encoded text;
/// JSON-escaped, once and twice (a JSON text inside a JSON string).
fn encoded_forms(secret: &str) -> Vec<String> {
    let mut forms = vec![
        secret.to_string(),
        percent_encoded(secret, "%20", false),
        percent_encoded(secret, "%20", true),
        percent_encoded(secret, "+", false),
        query_encoded(secret),
    ];
    let json_once = json_escaped(secret);
    forms.push(json_escaped(&json_once));
    forms.push(json_once);
    for engine in [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        forms.push(engine.encode(secret));
    }
    forms.extend(base64_fragments(secret.as_bytes()));
    forms.retain(|f| f.chars().count() >= MIN_SECRET_LEN);
    forms
}

/// `text` with every byte but the unreserved ones (`A-Za-z0-9-._~`) as
/// `%XX`, a space as `space` (`%20`, or `+` in forms, which also keep `*`
/// and encode `~`).
fn percent_encoded(text: &str, space: &str, lowercase: bool) -> String {
    let form = space == "+";
    let mut out = String::with_capacity(text.len() * 3);
    for &b in text.as_bytes() {
        let kept = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_')
            || (b == b'~' && !form)
            || (b == b'*' && form);
        if kept {
            out.push(char::from(b));
        } else if b == b' ' {
            out.push_str(space);
        } else if lowercase {
            out.push_str(&format!("%{b:02x}"));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `text` as it ends up in a URL's query when written into the URL itself
/// (`"https://x/?key=${reveal(k)}"`): encoded as the URL parser does.
fn query_encoded(text: &str) -> String {
    reqwest::Url::parse(&format!("http://h/?{text}"))
        .ok()
        .and_then(|url| url.query().map(str::to_string))
        .unwrap_or_else(|| text.to_string())
}

/// `text` as inside a JSON string, without the quotes.
fn json_escaped(text: &str) -> String {
    let quoted = serde_json::to_string(text).unwrap_or_default();
    quoted
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(&quoted)
        .to_string()
}

/// The base64 characters that encode `secret` wherever it starts inside a
/// longer encoded text (`user:secret` in a Basic header): for each of the
/// three alignments, the characters no neighbouring byte touches.
fn base64_fragments(secret: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for offset in 0..3usize {
        let mut bytes = vec![0u8; offset];
        bytes.extend_from_slice(secret);
        // Characters 6 bits wide; the secret covers bits 8*offset..8*len.
        let first = (8 * offset).div_ceil(6);
        let end = 8 * bytes.len() / 6;
        for engine in [
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ] {
            let encoded = engine.encode(&bytes);
            if let Some(fragment) = encoded.get(first..end) {
                if fragment.len() >= MIN_BASE64_FRAGMENT {
                    out.push(fragment.to_string());
                }
            }
        }
    }
    out
}

/// `url` with its password (between `user:` and `@`) shown as `***`, for
/// logs and error messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn redactor(secret: &str) -> Redactor {
        let r = Redactor::new();
        r.add(secret);
        r
    }

    #[test]
    fn masks_the_percent_encoded_forms() {
        let r = redactor("p@ss w/rd+1~");
        assert_eq!(r.redact("?key=p%40ss%20w%2Frd%2B1~&x=1"), "?key=***&x=1");
        assert_eq!(r.redact("?key=p%40ss%20w%2frd%2b1~"), "?key=***");
        // As the URL parser leaves it in a query written into the URL.
        assert_eq!(
            r.redact("http://h/?key=p@ss%20w/rd+1~"),
            "http://h/?key=***"
        );
    }

    #[test]
    fn masks_the_form_encoded_form() {
        let r = redactor("p@ss w/rd+1~");
        assert_eq!(r.redact("key=p%40ss+w%2Frd%2B1%7E"), "key=***");
    }

    #[test]
    fn masks_every_base64_form() {
        // Bytes chosen so the standard and URL-safe alphabets differ.
        let secret = "s3cr3t>>??~~";
        let r = redactor(secret);
        let engines = [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        for engine in engines {
            let encoded = engine.encode(secret);
            assert_eq!(r.redact(&format!("x {encoded} y")), "x *** y", "{encoded}");
        }
        let odd = redactor("s3cr3t-tok");
        for engine in engines {
            let encoded = engine.encode("s3cr3t-tok");
            assert!(!odd.redact(&encoded).contains(&encoded), "{encoded}");
        }
    }

    #[test]
    fn masks_a_secret_inside_a_longer_base64_text() {
        let r = redactor("hunter2-password");
        for user in ["a", "ab", "abc"] {
            let basic = base64::engine::general_purpose::STANDARD
                .encode(format!("{user}:hunter2-password"));
            let redacted = r.redact(&basic);
            assert!(redacted.contains(MASK), "{user}: {redacted}");
            // At most the boundary characters (the user's bits) are left.
            assert!(redacted.len() < 12, "{user}: {redacted}");
        }
    }

    #[test]
    fn masks_the_json_escaped_forms() {
        let r = redactor("a\"b\\c\u{1}d");
        assert_eq!(r.redact(r#"{"k":"a\"b\\c\u0001d"}"#), r#"{"k":"***"}"#);
        assert_eq!(
            r.redact(r#"{"log":"{\"k\":\"a\\\"b\\\\c\\u0001d\"}"}"#),
            r#"{"log":"{\"k\":\"***\"}"}"#
        );
    }

    #[test]
    fn short_forms_and_plain_text_stay() {
        let r = redactor("abcd");
        assert_eq!(r.redact("abc YWJjZA== Ymxh"), "abc *** Ymxh");
        assert!(matches!(r.redact("nothing to see"), Cow::Borrowed(_)));
    }

    #[test]
    fn urls_in_errors_lose_query_fragment_and_userinfo() {
        assert_eq!(
            url_for_errors("https://user:pw@api.example.com:8443/v1/x?key=s3cret&a=1#frag"),
            "https://api.example.com:8443/v1/x"
        );
        assert_eq!(url_for_errors("http://h/?token=t"), "http://h/");
        assert_eq!(url_for_errors("http://h?token=t"), "http://h");
        assert_eq!(url_for_errors("not a url?x=1"), "not a url");
        assert!(matches!(url_for_errors("http://h:1/a/b"), Cow::Borrowed(_)));
        assert_eq!(url_for_errors(""), "");
    }

    #[test]
    fn masks_all_occurrences_longest_first() {
        let r = Redactor::new();
        r.add("toke");
        r.add("toke-123");
        r.add("");
        r.add("abc");
        assert_eq!(r.redact("a toke-123 b toke c abc"), "a *** b *** c abc");
        assert_eq!(r.redact("nothing here"), "nothing here");
        assert!(matches!(r.redact("clean"), Cow::Borrowed(_)));
        let clone = r.clone();
        clone.add("s3cret");
        assert_eq!(r.redact("Bearer s3cret"), "Bearer ***");
        assert_eq!(
            r.redact_value(&json!({"h": ["x s3cret"], "n": 1, "s3cret": true})),
            json!({"h": ["x ***"], "n": 1, "***": true})
        );
    }
}
