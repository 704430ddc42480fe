//! Bounded polling: a condition checked every few milliseconds until it
//! holds or a deadline passes (then the test fails naming what it waited
//! for).

use std::future::Future;
use std::time::{Duration, Instant};

/// How often [`wait_until`] and [`poll_until`] check.
const POLL: Duration = Duration::from_millis(25);

/// Waits until `cond()` holds, checking every 25 ms; fails the test
/// naming `what` after `timeout`.
pub async fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    poll_until(timeout, what, || std::future::ready(cond().then_some(()))).await;
}

/// Waits until the async `f()` gives `Some(value)`, checking every 25 ms;
/// fails the test naming `what` after `timeout`.
pub async fn poll_until<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}
