//! Waiting between attempts to reach an outside system that went away (a
//! broker, a mailbox), and keeping its URL out of the logs meanwhile.
//! Shared by the subscribe triggers and the email trigger.

use std::time::Duration;

/// First wait before reconnecting.
const MIN_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait before reconnecting.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The wait before reconnect attempt `attempt` (from 1).
pub(crate) fn backoff(attempt: u32) -> Duration {
    MIN_BACKOFF
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(16)))
        .min(MAX_BACKOFF)
}

/// `error` with `url` (and its password) removed, for logs.
pub(crate) fn redact_urls(error: &str, url: &str) -> String {
    if url.is_empty() {
        return error.to_string();
    }
    error.replace(url, &crate::core::redact::redact_url(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_thirty_seconds() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(4), Duration::from_secs(4));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }

    #[test]
    fn urls_are_redacted_from_errors() {
        let url = "redis://app:s3cret@host:6379";
        let e = redact_urls(&format!("cannot connect to {url}: refused"), url);
        assert!(!e.contains("s3cret"), "{e}");
        assert!(e.contains("host:6379"), "{e}");
    }
}
