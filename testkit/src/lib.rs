//! The test harness shared by flowc's end-to-end tests (`tests/`) and the
//! runtime's integration tests (`runtime/tests/`): a local HTTP sink that
//! records what it receives and answers as scripted, an HTTP client,
//! the addresses of outside services, free ports, bounded waits, the
//! build of a crate's example binaries and running binaries built on the
//! runtime as real processes.
//!
//! Nothing here sleeps for a fixed time to synchronise: every wait polls
//! or awaits a condition with a deadline and fails the test naming what it
//! waited for. Test-specific helpers (the admin API of a generated binary,
//! the runtime's options) stay with the tests.

mod cargo;
pub mod fuzz;
mod http;
mod process;
mod services;
mod sink;
mod wait;

pub use cargo::{build_once, example_binary};
pub use http::{client, get, hmac_hex, hmac_sha256, post_json, post_raw, request, Answer};
pub use process::{run_binary, run_binary_in, Finished, Service, START_TIMEOUT};
pub use services::{free_port, service_url};
pub use sink::{Received, Reply, Sink};
pub use wait::{poll_until, wait_until};

/// Locks `m`, also when a test panicked while holding it (the data stays
/// usable for the failure message).
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
