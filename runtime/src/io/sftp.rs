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
//!   ([`host_keys`]).
//! - **sessions**: one SSH connection with one SFTP channel per (user, host,
//!   port, auth), kept in a process-wide cache and shared by concurrent
//!   operations. A connection that closed (server restart, 5 minutes idle)
//!   or failed at the connection level is dropped and the next operation
//!   reconnects; read-only operations ([`list`], [`stat`], [`read`]) that
//!   fail that way on a reused connection are tried once more on a fresh one.
//! - **timeouts**: connecting (TCP, handshake, authentication, SFTP start) is
//!   bounded by [`CONNECT_TIMEOUT`]; each SFTP request by [`REQUEST_TIMEOUT`];
//!   a whole operation by [`OP_TIMEOUT`] ([`TRANSFER_TIMEOUT`] for reads and
//!   writes of contents).
//!
//! Every error is an [`SftpError`] whose message starts with the URL (never
//! a secret) and which says whether another attempt may succeed
//! ([`SftpError::is_retryable`]).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh_sftp::client::error::Error as ProtoError;
use russh_sftp::client::SftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::core::files::glob_match;
use crate::core::sync::lock;
use host_keys::Trust;

mod host_keys;

/// Bound on connecting: TCP, SSH handshake, authentication, SFTP start.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on one SFTP request/response.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on a whole metadata operation (list, stat, rename, remove).
pub(crate) const OP_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on a whole read or write of a file's contents.
pub(crate) const TRANSFER_TIMEOUT: Duration = Duration::from_secs(600);
/// An idle connection is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

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
    #[cfg_attr(not(test), allow(dead_code))]
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

    /// Whether the connection should be dropped after this error.
    fn breaks_connection(&self) -> bool {
        matches!(self.kind, ErrorKind::Connect | ErrorKind::Timeout)
    }
}

impl fmt::Display for SftpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SftpError {}

/// Classifies an SFTP protocol error on `url`.
fn proto_error(url: &SftpUrl, e: ProtoError) -> SftpError {
    let kind = match &e {
        ProtoError::Status(s) => match s.status_code {
            StatusCode::NoSuchFile => ErrorKind::NotFound,
            StatusCode::PermissionDenied => ErrorKind::PermissionDenied,
            StatusCode::OpUnsupported | StatusCode::BadMessage => ErrorKind::Invalid,
            StatusCode::NoConnection | StatusCode::ConnectionLost => ErrorKind::Connect,
            StatusCode::Ok | StatusCode::Eof | StatusCode::Failure => ErrorKind::Io,
        },
        ProtoError::Timeout => ErrorKind::Timeout,
        ProtoError::Limited(_) => ErrorKind::Invalid,
        ProtoError::IO(_) | ProtoError::UnexpectedPacket | ProtoError::UnexpectedBehavior(_) => {
            ErrorKind::Connect
        }
    };
    let why = match &e {
        ProtoError::Status(s) if s.error_message.is_empty() => s.status_code.to_string(),
        ProtoError::Status(s)
            if s.error_message
                .eq_ignore_ascii_case(&s.status_code.to_string()) =>
        {
            s.status_code.to_string()
        }
        ProtoError::Status(s) => format!("{} ({})", s.error_message, s.status_code),
        other => format!("SFTP: {other}"),
    };
    SftpError::new(kind, url, why)
}

/// Classifies an I/O error while streaming a file's contents.
fn stream_error(url: &SftpUrl, e: std::io::Error) -> SftpError {
    let kind = match e.kind() {
        std::io::ErrorKind::TimedOut => ErrorKind::Timeout,
        std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        std::io::ErrorKind::NotFound => ErrorKind::NotFound,
        _ => ErrorKind::Io,
    };
    SftpError::new(kind, url, e)
}

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

impl RemoteFile {
    fn new(url: &SftpUrl, attrs: &FileAttributes) -> RemoteFile {
        RemoteFile {
            url: url.to_string(),
            name: url.file_name().to_string(),
            size: attrs.size.unwrap_or(0),
            modified: attrs
                .mtime
                .and_then(|t| DateTime::<Utc>::from_timestamp(i64::from(t), 0))
                .unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
        }
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// The regular files in the folder of `url` whose names match the glob in
/// its last segment, sorted by name. A missing folder gives an empty list
/// (like the local `file.list`).
pub(crate) async fn list(url: &SftpUrl, auth: &str) -> Result<Vec<RemoteFile>, SftpError> {
    let dir = url.parent().to_string();
    let pattern = url.file_name().to_string();
    with_session(url, auth, OP_TIMEOUT, true, |conn| {
        let (url, dir, pattern) = (url.clone(), dir.clone(), pattern.clone());
        async move {
            let entries = match conn.sftp.read_dir(dir.clone()).await {
                Ok(entries) => entries,
                Err(e) => {
                    let e = proto_error(&url.with_path(dir), e);
                    return if e.is_not_found() {
                        Ok(Vec::new())
                    } else {
                        Err(e)
                    };
                }
            };
            let mut files: Vec<RemoteFile> = entries
                .filter(|entry| {
                    entry.file_type().is_file() && glob_match(&pattern, &entry.file_name())
                })
                .map(|entry| {
                    let file_url = url.with_path(join(&dir, &entry.file_name()));
                    RemoteFile::new(&file_url, &entry.metadata())
                })
                .collect();
            files.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(files)
        }
    })
    .await
}

/// The regular file at `url` (an error naming it when missing or not a
/// regular file).
pub(crate) async fn stat(url: &SftpUrl, auth: &str) -> Result<RemoteFile, SftpError> {
    with_session(url, auth, OP_TIMEOUT, true, |conn| {
        let url = url.clone();
        async move { stat_file(&conn, &url).await }
    })
    .await
}

async fn stat_file(conn: &Conn, url: &SftpUrl) -> Result<RemoteFile, SftpError> {
    let attrs = conn
        .sftp
        .metadata(url.path.clone())
        .await
        .map_err(|e| proto_error(url, e))?;
    if !attrs.file_type().is_file() {
        return Err(SftpError::new(
            ErrorKind::Invalid,
            url,
            "not a regular file",
        ));
    }
    Ok(RemoteFile::new(url, &attrs))
}

/// The contents of the file at `url`, and the file.
pub(crate) async fn read(url: &SftpUrl, auth: &str) -> Result<(Vec<u8>, RemoteFile), SftpError> {
    with_session(url, auth, TRANSFER_TIMEOUT, true, |conn| {
        let url = url.clone();
        async move {
            let mut file = stat_file(&conn, &url).await?;
            let mut handle = conn
                .sftp
                .open(url.path.clone())
                .await
                .map_err(|e| proto_error(&url, e))?;
            let mut data = Vec::with_capacity(usize::try_from(file.size).unwrap_or(0));
            handle
                .read_to_end(&mut data)
                .await
                .map_err(|e| stream_error(&url, e))?;
            handle.close().await.map_err(|e| stream_error(&url, e))?;
            file.size = data.len() as u64;
            Ok((data, file))
        }
    })
    .await
}

/// Writes `bytes` to `url`, creating missing folders. Without `append` the
/// file is replaced as a whole: written under a temporary name
/// (`NAME.tmp-UUID`) and renamed, so readers never see half a file; with
/// `append` the bytes are added at its end (it is created if missing).
pub(crate) async fn write(
    url: &SftpUrl,
    auth: &str,
    bytes: &[u8],
    append: bool,
) -> Result<RemoteFile, SftpError> {
    let bytes: Arc<[u8]> = Arc::from(bytes);
    with_session(url, auth, TRANSFER_TIMEOUT, false, |conn| {
        let (url, bytes) = (url.clone(), bytes.clone());
        async move {
            if url.file_name().is_empty() {
                return Err(SftpError::new(
                    ErrorKind::Invalid,
                    &url,
                    "the path names a folder, not a file",
                ));
            }
            create_dirs(&conn, &url, url.parent()).await?;
            if append {
                let flags = OpenFlags::CREATE | OpenFlags::WRITE | OpenFlags::APPEND;
                put(&conn, &url, &url.path, flags, &bytes).await?;
            } else {
                let tmp = format!("{}.tmp-{}", url.path, uuid::Uuid::new_v4().simple());
                let flags = OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE;
                if let Err(e) = put(&conn, &url, &tmp, flags, &bytes).await {
                    let _ = conn.sftp.remove_file(tmp).await;
                    return Err(e);
                }
                if let Err(e) = replace(&conn, &url.with_path(tmp.clone()), &url).await {
                    let _ = conn.sftp.remove_file(tmp).await;
                    return Err(e);
                }
            }
            stat_file(&conn, &url).await
        }
    })
    .await
}

async fn put(
    conn: &Conn,
    url: &SftpUrl,
    path: &str,
    flags: OpenFlags,
    bytes: &[u8],
) -> Result<(), SftpError> {
    let mut file = conn
        .sftp
        .open_with_flags(path.to_string(), flags)
        .await
        .map_err(|e| proto_error(url, e))?;
    file.write_all(bytes)
        .await
        .map_err(|e| stream_error(url, e))?;
    file.close().await.map_err(|e| stream_error(url, e))
}

/// Creates `dir` and its missing ancestors.
async fn create_dirs(conn: &Conn, url: &SftpUrl, dir: &str) -> Result<(), SftpError> {
    if is_dir(conn, url, dir).await? {
        return Ok(());
    }
    let mut path = String::new();
    for segment in dir.split('/').filter(|s| !s.is_empty()) {
        path.push('/');
        path.push_str(segment);
        if is_dir(conn, url, &path).await? {
            continue;
        }
        if let Err(e) = conn.sftp.create_dir(path.clone()).await {
            // Someone else may have created it in the meantime.
            if !is_dir(conn, url, &path).await? {
                return Err(proto_error(&url.with_path(path), e));
            }
        }
    }
    Ok(())
}

async fn is_dir(conn: &Conn, url: &SftpUrl, path: &str) -> Result<bool, SftpError> {
    match conn.sftp.metadata(path.to_string()).await {
        Ok(attrs) if attrs.file_type().is_dir() => Ok(true),
        Ok(_) => Err(SftpError::new(
            ErrorKind::Invalid,
            url.with_path(path),
            "exists and is not a folder",
        )),
        Err(e) => {
            let e = proto_error(&url.with_path(path), e);
            if e.is_not_found() {
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
}

/// Renames `from` to `to` on the server, replacing `to` if it exists.
async fn replace(conn: &Conn, from: &SftpUrl, to: &SftpUrl) -> Result<(), SftpError> {
    match conn.sftp.rename(from.path.clone(), to.path.clone()).await {
        Ok(()) => Ok(()),
        // SFTP v3 renames refuse an existing target (OpenSSH answers
        // "Failure"): remove it and rename again.
        Err(ProtoError::Status(s)) if s.status_code == StatusCode::Failure => {
            match conn.sftp.metadata(to.path.clone()).await {
                Ok(attrs) if attrs.file_type().is_file() => {
                    conn.sftp
                        .remove_file(to.path.clone())
                        .await
                        .map_err(|e| proto_error(to, e))?;
                    conn.sftp
                        .rename(from.path.clone(), to.path.clone())
                        .await
                        .map_err(|e| proto_error(from, e))
                }
                Ok(attrs) if attrs.file_type().is_dir() => Err(SftpError::new(
                    ErrorKind::Invalid,
                    to,
                    "is a folder; a file cannot replace it",
                )),
                _ => Err(proto_error(from, ProtoError::Status(s))),
            }
        }
        Err(e) => Err(proto_error(from, e)),
    }
}

/// Moves the file `from` to `to` on the same server, creating the target's
/// folders; an existing file at `to` is replaced (like a local move). Not
/// atomic when the target exists: SFTP v3 cannot rename over a file, so the
/// old target is removed first. Returns the file at its new place.
pub(crate) async fn rename(
    from: &SftpUrl,
    to: &SftpUrl,
    auth: &str,
) -> Result<RemoteFile, SftpError> {
    if !from.same_server(to) {
        return Err(SftpError::new(
            ErrorKind::Invalid,
            from,
            format!("cannot rename to another server ({to})"),
        ));
    }
    with_session(from, auth, OP_TIMEOUT, false, |conn| {
        let (from, to) = (from.clone(), to.clone());
        async move {
            let file = stat_file(&conn, &from).await?;
            if from.path == to.path {
                // Renaming onto itself would delete it (see `replace`).
                return Ok(file);
            }
            create_dirs(&conn, &to, to.parent()).await?;
            replace(&conn, &from, &to).await?;
            stat_file(&conn, &to).await
        }
    })
    .await
}

/// Deletes the file at `url`: true when it existed, false when it was
/// already missing.
pub(crate) async fn remove(url: &SftpUrl, auth: &str) -> Result<bool, SftpError> {
    with_session(url, auth, OP_TIMEOUT, false, |conn| {
        let url = url.clone();
        async move {
            match conn.sftp.remove_file(url.path.clone()).await {
                Ok(()) => Ok(true),
                Err(e) => {
                    let e = proto_error(&url, e);
                    if e.is_not_found() {
                        Ok(false)
                    } else {
                        Err(e)
                    }
                }
            }
        }
    })
    .await
}

// ---------------------------------------------------------------- sessions

/// One authenticated SSH connection with its SFTP channel.
pub(crate) struct Conn {
    sftp: SftpSession,
    ssh: russh::client::Handle<HostKeyCheck>,
}

/// Cache key: account, server and a hash of the auth secret (so a changed
/// secret never reuses a session opened with the old one).
type PoolKey = (String, String, u16, [u8; 32]);

#[derive(Default)]
struct Slot {
    conn: Option<Arc<Conn>>,
    handshakes: u64,
}

type Pool = Mutex<HashMap<PoolKey, Arc<tokio::sync::Mutex<Slot>>>>;

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(Pool::default)
}

fn pool_key(url: &SftpUrl, auth: &str) -> PoolKey {
    (
        url.user.clone(),
        url.host.clone(),
        url.port,
        Sha256::digest(auth.as_bytes()).into(),
    )
}

fn slot(url: &SftpUrl, auth: &str) -> Arc<tokio::sync::Mutex<Slot>> {
    lock(pool()).entry(pool_key(url, auth)).or_default().clone()
}

/// The cached session for the account, or a new one; the second value says
/// whether it was reused.
async fn session(url: &SftpUrl, auth: &str) -> Result<(Arc<Conn>, bool), SftpError> {
    let slot = slot(url, auth);
    let mut slot = slot.lock().await;
    if let Some(conn) = &slot.conn {
        if !conn.ssh.is_closed() {
            return Ok((conn.clone(), true));
        }
    }
    slot.conn = None;
    slot.handshakes += 1;
    let server = url.with_path("");
    let limit = connect_timeout(url);
    let conn = match tokio::time::timeout(limit, connect(&server, auth)).await {
        Ok(conn) => Arc::new(conn?),
        Err(_) => {
            return Err(SftpError::new(
                ErrorKind::Timeout,
                &server,
                format!("could not connect and log in within {limit:?}"),
            ))
        }
    };
    slot.conn = Some(conn.clone());
    Ok((conn, false))
}

fn connect_timeout(server: &SftpUrl) -> Duration {
    #[cfg(test)]
    if let Some(limit) = lock(&TEST_CONNECT_TIMEOUT).get(&server.port) {
        return *limit;
    }
    let _ = server;
    CONNECT_TIMEOUT
}

/// Per-port connect timeouts for tests.
#[cfg(test)]
pub(crate) static TEST_CONNECT_TIMEOUT: Mutex<std::collections::BTreeMap<u16, Duration>> =
    Mutex::new(std::collections::BTreeMap::new());

/// Drops `conn` from the cache if it is still the cached one.
async fn evict(url: &SftpUrl, auth: &str, conn: &Arc<Conn>) {
    let slot = slot(url, auth);
    let mut slot = slot.lock().await;
    if slot.conn.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
        slot.conn = None;
    }
}

/// How many SSH handshakes were made for this account (tests check reuse).
#[cfg(test)]
pub(crate) async fn handshakes(url: &SftpUrl, auth: &str) -> u64 {
    slot(url, auth).lock().await.handshakes
}

/// Runs `op` on a session for `url` within `limit`. A connection-level
/// failure drops the session; when it was a reused one and `idempotent`,
/// `op` is tried once more on a fresh session.
async fn with_session<T, F, Fut>(
    url: &SftpUrl,
    auth: &str,
    limit: Duration,
    idempotent: bool,
    op: F,
) -> Result<T, SftpError>
where
    F: Fn(Arc<Conn>) -> Fut,
    Fut: Future<Output = Result<T, SftpError>>,
{
    // The session in use, dropped from the cache if the whole operation
    // times out (the connection may be dead without having said so).
    let in_use: Mutex<Option<Arc<Conn>>> = Mutex::new(None);
    let attempt = async {
        let (conn, reused) = session(url, auth).await?;
        *lock(&in_use) = Some(conn.clone());
        match op(conn.clone()).await {
            Err(e) if e.breaks_connection() => {
                evict(url, auth, &conn).await;
                if !(reused && idempotent) {
                    return Err(e);
                }
                let (conn, _) = session(url, auth).await?;
                *lock(&in_use) = Some(conn.clone());
                let result = op(conn.clone()).await;
                if result.as_ref().is_err_and(SftpError::breaks_connection) {
                    evict(url, auth, &conn).await;
                }
                result
            }
            result => result,
        }
    };
    match tokio::time::timeout(limit, attempt).await {
        Ok(result) => result,
        Err(_) => {
            let conn = lock(&in_use).take();
            if let Some(conn) = conn {
                evict(url, auth, &conn).await;
            }
            Err(SftpError::new(
                ErrorKind::Timeout,
                url,
                format!("no answer within {}s", limit.as_secs()),
            ))
        }
    }
}

/// How `server`'s host key is trusted: the process's settings.
fn trust_for(server: &SftpUrl) -> Trust {
    #[cfg(test)]
    if let Some(trust) = lock(&TEST_TRUST).get(&server.port) {
        return trust.clone();
    }
    let _ = server;
    Trust::from_process()
}

/// Per-port trust settings for tests (the environment is shared by tests
/// running in parallel).
#[cfg(test)]
pub(crate) static TEST_TRUST: Mutex<std::collections::BTreeMap<u16, Trust>> =
    Mutex::new(std::collections::BTreeMap::new());

/// The russh client handler: checks the server's host key.
pub(crate) struct HostKeyCheck {
    server: SftpUrl,
    trust: Trust,
    /// Why the key was refused, for the error message.
    refused: Arc<Mutex<Option<SftpError>>>,
}

impl russh::client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(cert) => PublicKey::from(cert.public_key().clone()),
        };
        match self.trust.check(&self.server, &key) {
            Ok(()) => Ok(true),
            Err(e) => {
                *lock(&self.refused) = Some(e);
                Ok(false)
            }
        }
    }
}

/// Authenticates with the private key or password in `auth`. A password
/// the server refuses for the `password` method is tried once more with
/// `keyboard-interactive` (answering every prompt with it) when the server
/// offers that, as servers that check passwords through PAM often do.
async fn log_in(
    ssh: &mut russh::client::Handle<HostKeyCheck>,
    server: &SftpUrl,
    auth: &str,
) -> Result<(), SftpError> {
    use russh::client::AuthResult;
    use russh::client::KeyboardInteractiveAuthResponse as Kbd;
    use russh::keys::ssh_key::Algorithm;
    use russh::MethodKind;

    let broken = |e: russh::Error| {
        SftpError::new(
            ErrorKind::Connect,
            server,
            format!("authentication failed: {e}"),
        )
    };
    let refused = |method: &str| {
        SftpError::new(
            ErrorKind::Auth,
            server,
            format!(
                "authentication as `{}` with the {method} in `auth` was refused",
                server.user
            ),
        )
    };
    let user = server.user.clone();
    if auth.trim_start().starts_with("-----BEGIN") {
        let key = russh::keys::decode_secret_key(auth, None).map_err(|e| {
            SftpError::new(
                ErrorKind::Auth,
                server,
                format!("the private key in `auth` cannot be read ({e}); it must be an unencrypted OpenSSH or PEM key"),
            )
        })?;
        let hash = if matches!(key.algorithm(), Algorithm::Rsa { .. }) {
            // Servers without the server-sig-algs extension may never say.
            match tokio::time::timeout(Duration::from_secs(5), ssh.best_supported_rsa_hash()).await
            {
                Ok(Ok(Some(hash))) => hash,
                _ => Some(HashAlg::Sha256),
            }
        } else {
            None
        };
        let result = ssh
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await
            .map_err(broken)?;
        return if result.success() {
            Ok(())
        } else {
            Err(refused("private key"))
        };
    }
    let remaining = match ssh
        .authenticate_password(user.clone(), auth)
        .await
        .map_err(broken)?
    {
        AuthResult::Success => return Ok(()),
        AuthResult::Failure {
            remaining_methods, ..
        } => remaining_methods,
    };
    if !remaining.contains(&MethodKind::KeyboardInteractive) {
        return Err(refused("password"));
    }
    let mut reply = ssh
        .authenticate_keyboard_interactive_start(user, None)
        .await
        .map_err(broken)?;
    // A server may ask in several rounds (some send an empty one last).
    for _ in 0..5 {
        match reply {
            Kbd::Success => return Ok(()),
            Kbd::Failure { .. } => return Err(refused("password")),
            Kbd::InfoRequest { prompts, .. } => {
                let answers = prompts.iter().map(|_| auth.to_string()).collect();
                reply = ssh
                    .authenticate_keyboard_interactive_respond(answers)
                    .await
                    .map_err(broken)?;
            }
        }
    }
    Err(refused("password"))
}

/// Connects, checks the host key, authenticates and starts SFTP.
async fn connect(server: &SftpUrl, auth: &str) -> Result<Conn, SftpError> {
    let connect_err = |why: String| SftpError::new(ErrorKind::Connect, server, why);
    let tcp = tokio::net::TcpStream::connect((server.host.as_str(), server.port))
        .await
        .map_err(|e| connect_err(format!("cannot connect: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let config = Arc::new(russh::client::Config {
        inactivity_timeout: Some(IDLE_TIMEOUT),
        ..Default::default()
    });
    let refused = Arc::new(Mutex::new(None));
    let handler = HostKeyCheck {
        server: server.clone(),
        trust: trust_for(server),
        refused: refused.clone(),
    };
    let mut ssh = match russh::client::connect_stream(config, tcp, handler).await {
        Ok(ssh) => ssh,
        Err(e) => {
            if let Some(refusal) = lock(&refused).take() {
                return Err(refusal);
            }
            return Err(connect_err(format!("SSH handshake failed: {e}")));
        }
    };
    log_in(&mut ssh, server, auth).await?;
    let channel = ssh
        .channel_open_session()
        .await
        .map_err(|e| connect_err(format!("cannot open a channel: {e}")))?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(|e| connect_err(format!("cannot start SFTP: {e}")))?;
    let config = russh_sftp::client::Config {
        request_timeout_secs: REQUEST_TIMEOUT.as_secs(),
        ..Default::default()
    };
    let sftp = SftpSession::new_with_config(channel.into_stream(), config)
        .await
        .map_err(|e| connect_err(format!("cannot start SFTP: {e}")))?;
    Ok(Conn { sftp, ssh })
}

#[cfg(test)]
mod tests;

/// The user this process runs as (`USER`, else `LOGNAME`), empty when
/// neither is set.
fn default_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_default()
}
