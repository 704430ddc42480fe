//! The instances' records, kept in the control store's state under
//! `instance:NAME`: each instance's config sealed with the master key
//! (its name as the sealed value's context), whether it is paused, and
//! when it was created and last changed. Every replica reads them; the
//! store is the one place an instance exists.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::core::seal::{Keyring, Opened};
use crate::store::{Store, StoreError};

const PREFIX: &str = "instance:";

/// One instance as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The config as JSON, sealed ([`crate::core::seal`]).
    pub sealed_config: String,
    /// Paused: its endpoints answer 503 and it runs nothing new.
    pub paused: bool,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its config or state last changed.
    pub updated_at: DateTime<Utc>,
}

/// An instance name: lowercase letters, digits and dashes, starting with a
/// letter or digit, at most 40 characters (it appears in URLs, file names
/// and PostgreSQL schema names).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Every instance's record, by name. Records that cannot be read are left
/// out and logged (by name only).
pub async fn all(store: &dyn Store) -> Result<Vec<(String, Record)>, StoreError> {
    let state = store.state_all().await?;
    let mut out: Vec<(String, Record)> = state
        .into_iter()
        .filter_map(|(key, value)| {
            let name = key.strip_prefix(PREFIX)?.to_string();
            if value.is_null() {
                return None;
            }
            match serde_json::from_value::<Record>(value) {
                Ok(r) => Some((name, r)),
                Err(e) => {
                    tracing::error!(instance = %name, error = %e, "unreadable instance record; skipped");
                    None
                }
            }
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Writes an instance's record.
pub async fn save(store: &dyn Store, name: &str, record: &Record) -> Result<(), StoreError> {
    let value = serde_json::to_value(record).map_err(crate::store::json_error)?;
    store.state_set(&format!("{PREFIX}{name}"), value).await
}

/// Removes an instance's record.
pub async fn remove(store: &dyn Store, name: &str) -> Result<(), StoreError> {
    store
        .state_set(&format!("{PREFIX}{name}"), Value::Null)
        .await
}

/// Seals an instance's config.
pub fn seal(keys: &Keyring, name: &str, config: &Map<String, Value>) -> Result<String, String> {
    let json = serde_json::to_vec(config).map_err(|e| e.to_string())?;
    keys.seal(&json, name)
}

/// Opens an instance's config; `true` when it was sealed with the previous
/// key (seal it again).
pub fn open(
    keys: &Keyring,
    name: &str,
    sealed: &str,
) -> Result<(Map<String, Value>, bool), String> {
    let opened = keys.open(sealed, name)?;
    let old = matches!(opened, Opened::Previous(_));
    let config = serde_json::from_slice(&opened.into_bytes())
        .map_err(|_| "the sealed config is not a JSON object".to_string())?;
    Ok((config, old))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_urls_files_and_schemas() {
        for ok in ["acme", "a", "acme-eu-2", "0day"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "-acme", "Acme", "acme_eu", "a/b", "..", &"a".repeat(41)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
