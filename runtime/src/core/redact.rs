//! Keeps secrets from leaving the process as text.
//!
//! A [`Redactor`] knows every secret value (config entries of type `Secret`,
//! the admin token) and replaces each occurrence with `***` in logs, errors,
//! execution records and admin API answers.

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

use serde_json::Value;

/// Shortest secret value masked in free text.
pub const MIN_SECRET_LEN: usize = 4;

/// What a redacted secret prints as.
pub const MASK: &str = "***";

/// A shared, cheaply cloned set of secret values. Clones share the set, so a
/// log writer created before the config is loaded still learns the secrets.
#[derive(Clone, Default, Debug)]
pub struct Redactor {
    secrets: Arc<RwLock<Vec<String>>>,
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
        let mut list = crate::core::sync::write(&self.secrets);
        if !list.iter().any(|s| s == secret) {
            list.push(secret.to_string());
            // Longest first, so a secret containing another is masked whole.
            list.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// Adds every secret another redactor knows.
    pub fn merge(&self, other: &Redactor) {
        if Arc::ptr_eq(&self.secrets, &other.secrets) {
            return;
        }
        let theirs: Vec<String> = crate::core::sync::read(&other.secrets).clone();
        for s in theirs {
            self.add(&s);
        }
    }

    /// Replaces every known secret in `text` with `***`.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let list = crate::core::sync::read(&self.secrets);
        let mut out: Cow<'a, str> = Cow::Borrowed(text);
        for secret in list.iter() {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), MASK));
            }
        }
        out
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
