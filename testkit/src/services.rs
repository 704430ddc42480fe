//! Outside services (PostgreSQL, brokers, ...) and loopback ports.

use std::net::TcpListener;

/// The address (a URL, or a path such as sshd's) of an outside service in
/// the env var `var`, or `None` (the test `test` is skipped, saying so)
/// when unset or blank; a failure instead when unset and
/// `FLOW_TEST_REQUIRE_SERVICES=1` (CI).
pub fn service_url(var: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("FLOW_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "{test}: {var} is not set and FLOW_TEST_REQUIRE_SERVICES=1"
            );
            eprintln!("skipping {test}: set {var} to run it");
            None
        }
    }
}

/// A loopback port nothing listens on (the OS's choice; free until
/// someone binds it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_port_can_be_bound() {
        let port = free_port();
        assert!(TcpListener::bind(("127.0.0.1", port)).is_ok());
    }
}
