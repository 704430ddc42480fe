//! Safe defaults of outbound HTTP (`http.*` steps, connections' token
//! endpoints, callbacks): the redirect policy, bounded answers, and where
//! `X-Callback-Url` callbacks may go.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::redirect::{Attempt, Policy};

use crate::core::error::{error_chain, StepError};

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

/// The variables that name a proxy for `http.*` calls. reqwest reads them
/// when the client is built, never later (and `NO_PROXY` only matters
/// with one of them).
const PROXY_VARIABLES: [&str; 6] = [
    "ALL_PROXY",
    "all_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
];

/// Whether the environment names a proxy (any of [`PROXY_VARIABLES`] is
/// set, even empty). Without one, the client is built with `no_proxy()`:
/// it would route every request exactly the same, but reqwest asks its
/// environment matcher about each request's host twice (about 1,400
/// instructions of a relay request).
pub fn proxy_in_environment() -> bool {
    PROXY_VARIABLES
        .iter()
        .any(|name| std::env::var_os(name).is_some())
}

/// Why the redirect to `next` after `previous` is refused, if it is.
pub(crate) fn redirect_refusal(
    previous: &[reqwest::Url],
    next: &reqwest::Url,
) -> Option<&'static str> {
    if previous.len() > MAX_REDIRECTS {
        return Some("too many redirects (at most 10)");
    }
    let from_https = previous.last().is_some_and(|u| u.scheme() == "https");
    (from_https && next.scheme() == "http").then_some("redirect from HTTPS to HTTP refused")
}

/// The hosts `X-Callback-Url` may name (`--callback-hosts`): `name`,
/// `name:port`, `*.suffix` (any name under it), an IP address (`10.0.0.7`,
/// `[fd00::1]`), or `*` (any host). An entry without a port allows every
/// port of the host.
///
/// A callback is addressed by whoever calls the service, so the address
/// it resolves to is checked too ([`CallbackHosts::address_allowed`]):
/// internal addresses ([`is_internal`]) are refused unless the host is
/// listed by its exact name or address (not through `*` or `*.suffix`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallbackHosts {
    entries: Vec<HostEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct HostEntry {
    pattern: HostPattern,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    /// `*.suffix`, stored with its leading dot (`.example.com`).
    Under(String),
    Name(String),
    Ip(IpAddr),
}

impl CallbackHosts {
    /// Parses a comma-separated list; empty entries are ignored.
    pub fn parse(list: &str) -> Result<CallbackHosts, String> {
        let entries = list
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(HostEntry::parse)
            .collect::<Result<_, _>>()?;
        Ok(CallbackHosts { entries })
    }

    /// Whether no host is listed (callbacks are off).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `url` (http or https) names a listed host and port.
    pub fn allows_url(&self, url: &reqwest::Url) -> bool {
        let (Some(host), Some(port)) = (url_host(url), url.port_or_known_default()) else {
            return false;
        };
        matches!(url.scheme(), "http" | "https")
            && self
                .entries
                .iter()
                .any(|e| e.port.is_none_or(|p| p == port) && e.pattern.matches(&host))
    }

    /// Whether a callback to `host` may connect to `ip`: a public address
    /// always; an internal one only if `host` (or `ip` itself) is listed by
    /// its exact name or address.
    pub fn address_allowed(&self, host: &str, ip: IpAddr) -> bool {
        !is_internal(ip) || self.lists_exactly(&Host::parse(host), ip)
    }

    fn lists_exactly(&self, host: &Host, ip: IpAddr) -> bool {
        self.entries.iter().any(|e| match &e.pattern {
            HostPattern::Name(n) => matches!(host, Host::Name(h) if h == n),
            HostPattern::Ip(listed) => *listed == ip,
            HostPattern::Any | HostPattern::Under(_) => false,
        })
    }
}

/// A URL's host as matched: a lowercase name without trailing dot, or an
/// address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A DNS name.
    Name(String),
    /// An IP address (a literal in the URL).
    Ip(IpAddr),
}

impl Host {
    fn parse(text: &str) -> Host {
        let bare = text.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => Host::Name(text.trim_end_matches('.').to_ascii_lowercase()),
        }
    }
}

/// The host of `url`, if it has one.
pub fn url_host(url: &reqwest::Url) -> Option<Host> {
    url.host_str().map(Host::parse)
}

impl HostEntry {
    fn parse(entry: &str) -> Result<HostEntry, String> {
        let bad = |why: &str| format!("callback host {entry:?}: {why}");
        let (host, port) = split_port(entry).map_err(bad)?;
        let pattern = if host == "*" {
            HostPattern::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            if !is_name(suffix) {
                return Err(bad("expected *.DOMAIN"));
            }
            HostPattern::Under(format!(".{}", suffix.to_ascii_lowercase()))
        } else {
            match Host::parse(host) {
                Host::Ip(ip) => HostPattern::Ip(ip),
                Host::Name(n) if is_name(&n) => HostPattern::Name(n),
                Host::Name(_) => return Err(bad("not a host name or IP address")),
            }
        };
        Ok(HostEntry { pattern, port })
    }
}

/// `host[:port]`, `[v6][:port]` or a bare IPv6 address, split.
fn split_port(entry: &str) -> Result<(&str, Option<u16>), &'static str> {
    let port = |p: &str| match p.parse::<u16>() {
        Ok(p) if p > 0 => Ok(Some(p)),
        _ => Err("invalid port"),
    };
    if let Some(rest) = entry.strip_prefix('[') {
        let (ip, tail) = rest.split_once(']').ok_or("missing ]")?;
        return match tail.strip_prefix(':') {
            Some(p) => Ok((ip, port(p)?)),
            None if tail.is_empty() => Ok((ip, None)),
            None => Err("unexpected text after ]"),
        };
    }
    if entry.parse::<Ipv6Addr>().is_ok() {
        return Ok((entry, None));
    }
    match entry.rsplit_once(':') {
        Some((host, p)) => Ok((host, port(p)?)),
        None => Ok((entry, None)),
    }
}

/// Letters, digits, `-` and `.` (an IDN is listed in its `xn--` form, as
/// URLs carry it).
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

impl HostPattern {
    fn matches(&self, host: &Host) -> bool {
        match (self, host) {
            (HostPattern::Any, _) => true,
            (HostPattern::Under(suffix), Host::Name(n)) => n.ends_with(suffix.as_str()),
            (HostPattern::Name(listed), Host::Name(n)) => listed == n,
            (HostPattern::Ip(listed), Host::Ip(ip)) => listed == ip,
            _ => false,
        }
    }
}

/// Whether `ip` is not a public unicast address: loopback, private (RFC
/// 1918, IPv6 ULA), shared (100.64/10), link-local (169.254/16 with the
/// cloud metadata address, fe80::/10), unspecified, broadcast, multicast or
/// the "this network" block; an IPv4 address mapped into IPv6 is judged as
/// IPv4.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_internal_v4(v4),
            None => is_internal_v6(v6),
        },
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local, fc00::/7
        || (first & 0xffc0) == 0xfe80 // link-local, fe80::/10
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated), fec0::/10
}

/// The DNS resolver of the callback client: resolves a name once and hands
/// the HTTP client only the addresses [`CallbackHosts::address_allowed`]
/// accepts, so the connection goes to an address that was checked (a name
/// that answers a public address to a check and an internal one to the
/// connection — DNS rebinding — gets nowhere).
#[derive(Debug, Clone)]
pub struct CheckedResolver {
    hosts: Arc<CallbackHosts>,
}

impl CheckedResolver {
    /// A resolver enforcing `hosts`.
    pub fn new(hosts: Arc<CallbackHosts>) -> CheckedResolver {
        CheckedResolver { hosts }
    }
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let hosts = self.hosts.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| hosts.address_allowed(&host, a.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!("{host} resolves to no address").into());
            }
            if allowed.is_empty() {
                let why = format!(
                    "{host} resolves only to internal addresses (list it by name in --callback-hosts to allow them)"
                );
                return Err(why.into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// An answer's body, refused once it is larger than `limit` bytes (by its
/// `Content-Length` before reading, or while reading one without): it is
/// held in memory, so an endless or huge one must not take the service
/// down. `hint` says what to do about it (in parentheses after the error).
pub(crate) async fn read_body(
    mut resp: reqwest::Response,
    limit: u64,
    hint: &str,
    what: &(dyn Fn() -> String + Sync),
) -> Result<axum::body::Bytes, StepError> {
    let too_large = || {
        StepError::permanent(format!(
            "{}: the response is larger than {limit} bytes ({hint})",
            what()
        ))
    };
    let reading = |e: reqwest::Error| {
        StepError::retryable(format!(
            "{}: reading the response: {}",
            what(),
            error_chain(&e.without_url())
        ))
    };
    match resp.content_length() {
        Some(declared) if declared > limit => Err(too_large()),
        // The common case, in one piece.
        Some(_) => resp.bytes().await.map_err(reading),
        None => {
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(reading)? {
                if (body.len() + chunk.len()) as u64 > limit {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr as _;

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

    fn url(u: &str) -> reqwest::Url {
        u.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn callback_hosts_match_name_port_and_suffix() {
        let hosts =
            CallbackHosts::parse("hooks.example.com, api.example.net:8443,*.example.org,10.1.2.3")
                .unwrap();
        for ok in [
            "https://hooks.example.com/cb",
            "http://HOOKS.example.com:9000/cb?x=1",
            "https://hooks.example.com./cb",
            "https://api.example.net:8443/cb",
            "https://a.example.org/cb",
            "https://a.b.example.org/cb",
            "http://10.1.2.3:7000/cb",
        ] {
            assert!(hosts.allows_url(&url(ok)), "{ok}");
        }
        for refused in [
            "https://evil.example.com/cb",
            "https://hooks.example.com.evil.net/cb",
            "https://api.example.net/cb",
            "https://api.example.net:8444/cb",
            "https://example.org/cb",
            "https://aexample.org/cb",
            "http://10.1.2.4/cb",
            "ftp://hooks.example.com/cb",
            "file:///etc/passwd",
        ] {
            assert!(!hosts.allows_url(&url(refused)), "{refused}");
        }
        assert!(CallbackHosts::parse("").unwrap().is_empty());
        assert!(!CallbackHosts::parse("")
            .unwrap()
            .allows_url(&url("https://a.example/")));
        for bad in ["a b", "host:0", "host:99999", "*.", "[::1", "exa_mple.com"] {
            assert!(CallbackHosts::parse(bad).is_err(), "{bad}");
        }
        let v6 = CallbackHosts::parse("[fd00::1]:8080,::2").unwrap();
        assert!(v6.allows_url(&url("http://[fd00::1]:8080/")));
        assert!(v6.allows_url(&url("http://[::2]/")));
        assert!(!v6.allows_url(&url("http://[fd00::1]:8081/")));
    }

    #[test]
    fn internal_addresses_are_refused_unless_listed_exactly() {
        for internal in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(is_internal(ip(internal)), "{internal}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "172.32.0.1", "2606:4700::1111"] {
            assert!(!is_internal(ip(public)), "{public}");
        }
        let hosts = CallbackHosts::parse("*.example.com,*,internal.example.com,127.0.0.1").unwrap();
        // Through a wildcard: public addresses only.
        assert!(hosts.address_allowed("a.example.com", ip("93.184.216.34")));
        assert!(!hosts.address_allowed("a.example.com", ip("10.0.0.5")));
        assert!(!hosts.address_allowed("a.example.com", ip("169.254.169.254")));
        assert!(!hosts.address_allowed("other.net", ip("192.168.0.1")));
        // Listed by exact name or address: trusted with internal ones.
        assert!(hosts.address_allowed("internal.example.com", ip("10.0.0.5")));
        assert!(hosts.address_allowed("INTERNAL.example.com.", ip("10.0.0.5")));
        assert!(hosts.address_allowed("127.0.0.1", ip("127.0.0.1")));
        assert!(!hosts.address_allowed("127.0.0.2", ip("127.0.0.2")));
    }

    #[tokio::test]
    async fn the_resolver_hands_out_checked_addresses_only() {
        use reqwest::dns::Resolve as _;
        let name = |n: &str| reqwest::dns::Name::from_str(n).unwrap();
        let refused = CheckedResolver::new(Arc::new(CallbackHosts::parse("*").unwrap()));
        let err = refused.resolve(name("localhost")).await.err().unwrap();
        assert!(
            err.to_string().contains("only to internal addresses"),
            "{err}"
        );
        let listed = CheckedResolver::new(Arc::new(CallbackHosts::parse("localhost").unwrap()));
        let addrs: Vec<SocketAddr> = listed.resolve(name("localhost")).await.unwrap().collect();
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()));
    }
}
