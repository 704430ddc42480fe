//! SFTP client for `file.*` steps and the files trigger on `sftp://` URLs.
//!
//! Terms:
//! - **URL**: `sftp://USER@HOST[:PORT]/ABSOLUTE/PATH` ([`SftpUrl`]). The path is
//!   taken literally (no percent-decoding) as the server sees it; for
//!   [`list`] its last segment may be a glob (`*`, `?`, the matcher of the
//!   local `file.list`). A URL never carries a password: it goes in `auth`.
//! - **auth**: the value of a `Secret` config entry. A private key in OpenSSH
//!   or PEM format when it starts with `-----BEGIN` (unencrypted), otherwise
//!   a password (the `password` method, else `keyboard-interactive`).
//! - **host keys**: the server's key must be vouched for by a pinned
//!   fingerprint (`FLOW_SFTP_HOST_KEYS`), a known_hosts file
//!   (`FLOW_SFTP_KNOWN_HOSTS`, else the ones `ssh` reads) or, when the
//!   operator opted in (`FLOW_SFTP_TRUST_ON_FIRST_USE`), by being the first
//!   key seen for the server, then recorded; anything else is refused
//!   (`client/host_keys`).
//! - **sessions**: one SSH connection with one SFTP channel per (user, host,
//!   port, auth), kept in a process-wide cache and shared by concurrent
//!   operations. A connection that closed (server restart, 5 minutes idle)
//!   or failed at the connection level is dropped and the next operation
//!   reconnects; operations that change nothing on the server ([`list`],
//!   [`stat`], [`read`], [`download`]) that fail that way on a reused
//!   connection are tried once more on a fresh one.
//! - **timeouts**: connecting (TCP, handshake, authentication, SFTP start) is
//!   bounded by `CONNECT_TIMEOUT`; each SFTP request by `REQUEST_TIMEOUT`;
//!   a whole operation by `OP_TIMEOUT` (`TRANSFER_TIMEOUT` for reads and
//!   writes of contents held in memory), all in `client`. The streamed
//!   transfers ([`download`], [`upload`], [`copy`]) have no bound on their
//!   whole duration, which grows with the file, but fail when they stop
//!   moving: each chunk within `STALL_TIMEOUT`, each step around the data
//!   within `OP_TIMEOUT`.
//! - **streaming**: [`download`], [`upload`] and [`copy`] move a file of any
//!   size in chunks of 256 KiB, so memory stays bounded; the target is
//!   written under a temporary name and renamed into place, and a failed
//!   transfer removes it.
//!
//! Every error is an [`SftpError`] whose message starts with the URL (never
//! a secret) and which says whether another attempt may succeed
//! ([`SftpError::is_retryable`]).

use std::fmt;

use chrono::{DateTime, Utc};

// The client itself (russh): compiled with the `sftp` feature only; without
// it every operation fails with a permanent error that says how to rebuild.
#[cfg(feature = "sftp")]
mod client;
#[cfg(not(feature = "sftp"))]
#[path = "sftp/without.rs"]
mod client;

pub(crate) use client::{copy, download, list, read, remove, rename, stat, upload, write};

// ---------------------------------------------------------------- URLs

/// A parsed `sftp://user@host[:port]/path`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SftpUrl {
    /// The login name.
    pub user: String,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port, 22 unless given.
    pub port: u16,
    /// Absolute path on the server; its last segment may be a glob for [`list`].
    pub path: String,
}

impl SftpUrl {
    /// Whether `s` is an `sftp://` URL (as opposed to a local path).
    pub(crate) fn is_sftp(s: &str) -> bool {
        s.get(..7)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("sftp://"))
    }

    /// Parses `sftp://[user@]host[:port]/abs/path` (the user defaults to
    /// the one running this process, from `USER` or `LOGNAME`). Errors name the URL with
    /// any password in it masked.
    pub(crate) fn parse(s: &str) -> Result<SftpUrl, SftpError> {
        let bad = |why: &str| SftpError::new(ErrorKind::InvalidUrl, masked(s), why.to_string());
        if !Self::is_sftp(s) {
            return Err(bad("not an sftp:// URL"));
        }
        client::supported(s)?;
        let rest = s.get(7..).unwrap_or_default();
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => {
                return Err(bad(
                    "needs an absolute path after the host (sftp://USER@HOST/DIR/FILE)",
                ))
            }
        };
        // Without a user, the one this process runs as, like `ssh host`.
        let default_user = default_user();
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (&authority[..i], &authority[i + 1..]),
            None => (default_user.as_str(), authority),
        };
        if userinfo.contains(':') {
            return Err(bad(
                "a password does not belong in the URL; pass it (or a private key) as `auth:` from a Secret config entry",
            ));
        }
        if userinfo.is_empty() {
            return Err(bad("needs a user name (sftp://USER@HOST/PATH)"));
        }
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            match v6.split_once(']') {
                Some((h, "")) => (h, None),
                Some((h, p)) => match p.strip_prefix(':') {
                    Some(p) => (h, Some(p)),
                    None => return Err(bad("unexpected text after `]`")),
                },
                None => return Err(bad("`[` without `]` in the host")),
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(bad("needs a host name"));
        }
        let port = match port {
            None => 22,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(bad("the port must be a number from 1 to 65535")),
            },
        };
        if path.contains('\0') {
            return Err(bad("the path contains a NUL character"));
        }
        Ok(SftpUrl {
            user: userinfo.to_string(),
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }

    /// The same server with another path.
    pub(crate) fn with_path(&self, path: impl Into<String>) -> SftpUrl {
        SftpUrl {
            path: path.into(),
            ..self.clone()
        }
    }

    /// Whether both URLs name the same account on the same server.
    pub(crate) fn same_server(&self, other: &SftpUrl) -> bool {
        self.user == other.user && self.host == other.host && self.port == other.port
    }

    /// The last path segment.
    pub(crate) fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or_default()
    }

    /// The folder part of the path (`/` for a file at the root).
    pub(crate) fn parent(&self) -> &str {
        match self.path.rfind('/') {
            Some(0) | None => "/",
            Some(i) => &self.path[..i],
        }
    }
}

impl fmt::Display for SftpUrl {
    /// `sftp://user@host:port/path`: the port always, never a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(
                f,
                "sftp://{}@[{}]:{}{}",
                self.user, self.host, self.port, self.path
            )
        } else {
            write!(
                f,
                "sftp://{}@{}:{}{}",
                self.user, self.host, self.port, self.path
            )
        }
    }
}

/// `s` with a password between `://user:` and `@` replaced by `***`.
fn masked(s: &str) -> String {
    let Some(start) = s.find("://").map(|i| i + 3) else {
        return s.to_string();
    };
    let rest = &s[start..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!(
            "{}{}:***{}",
            &s[..start],
            &authority[..colon],
            &s[start + at..]
        ),
        _ => s.to_string(),
    }
}

// ---------------------------------------------------------------- errors

/// What went wrong, which decides whether to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// Without the `sftp` feature only the client makes the other kinds.
#[cfg_attr(not(feature = "sftp"), allow(dead_code))]
pub(crate) enum ErrorKind {
    /// The URL is malformed (permanent).
    InvalidUrl,
    /// The login was refused or the key cannot be read (permanent).
    Auth,
    /// The server's host key is not trusted (permanent).
    HostKey,
    /// The file or folder does not exist (permanent).
    NotFound,
    /// The server refused the operation (permanent).
    PermissionDenied,
    /// The request cannot succeed as made, e.g. reading a folder (permanent).
    Invalid,
    /// Could not connect, or the connection broke (retryable).
    Connect,
    /// No answer in time (retryable).
    Timeout,
    /// The server failed the operation for another reason (retryable).
    Io,
}

/// An SFTP failure: its kind and a message that starts with the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SftpError {
    kind: ErrorKind,
    message: String,
}

impl SftpError {
    fn new(kind: ErrorKind, url: impl fmt::Display, why: impl fmt::Display) -> SftpError {
        SftpError {
            kind,
            message: format!("{url}: {why}"),
        }
    }

    /// The kind of failure.
    #[cfg_attr(not(feature = "sftp"), allow(dead_code))]
    pub(crate) fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether another attempt may succeed: connection problems, timeouts
    /// and server-side I/O failures are; a missing file, a refused
    /// permission or login, an untrusted host key or a bad URL are not.
    pub(crate) fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Connect | ErrorKind::Timeout | ErrorKind::Io
        )
    }

    /// Whether the error is "no such file or folder".
    pub(crate) fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }
}

impl fmt::Display for SftpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SftpError {}

// ---------------------------------------------------------------- files

/// A regular file on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemoteFile {
    /// `sftp://user@host:port/full/path`.
    pub url: String,
    /// The last path segment.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification (the Unix epoch when the server does not say).
    pub modified: DateTime<Utc>,
}

/// The user this process runs as (`USER`, else `LOGNAME`), empty when
/// neither is set.
fn default_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_default()
}
