//! Safe defaults of outbound HTTP (`http.*` steps, callbacks).

use reqwest::redirect::{Attempt, Policy};

/// Most redirects one request follows.
pub const MAX_REDIRECTS: usize = 10;

/// Follows at most [`MAX_REDIRECTS`] redirects, and never one from HTTPS to
/// plain HTTP (which would send the request, and what it carries, in
/// clear).
pub fn redirect_policy() -> Policy {
    Policy::custom(
        |attempt: Attempt| match redirect_refusal(attempt.previous(), attempt.url()) {
            Some(why) => attempt.error(why),
            None => attempt.follow(),
        },
    )
}

/// Why the redirect to `next` after `previous` is refused, if it is.
fn redirect_refusal(previous: &[reqwest::Url], next: &reqwest::Url) -> Option<&'static str> {
    if previous.len() > MAX_REDIRECTS {
        return Some("too many redirects (at most 10)");
    }
    let from_https = previous.last().is_some_and(|u| u.scheme() == "https");
    (from_https && next.scheme() == "http").then_some("redirect from HTTPS to HTTP refused")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(list: &[&str]) -> Vec<reqwest::Url> {
        list.iter().map(|u| u.parse().unwrap()).collect()
    }

    #[test]
    fn redirects_are_bounded_and_never_downgrade() {
        let next: reqwest::Url = "https://b.example/x".parse().unwrap();
        assert_eq!(
            redirect_refusal(&urls(&["https://a.example/"]), &next),
            None
        );
        let plain: reqwest::Url = "http://b.example/x".parse().unwrap();
        assert_eq!(
            redirect_refusal(&urls(&["https://a.example/"]), &plain),
            Some("redirect from HTTPS to HTTP refused")
        );
        assert_eq!(
            redirect_refusal(&urls(&["http://a.example/"]), &plain),
            None
        );
        let many: Vec<&str> = vec!["https://a.example/"; MAX_REDIRECTS + 1];
        assert_eq!(
            redirect_refusal(&urls(&many), &next),
            Some("too many redirects (at most 10)")
        );
        let enough: Vec<&str> = vec!["https://a.example/"; MAX_REDIRECTS];
        assert_eq!(redirect_refusal(&urls(&enough), &next), None);
    }
}
