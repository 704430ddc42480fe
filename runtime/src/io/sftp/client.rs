//! The SFTP client proper (russh, russh-sftp): sessions, host-key checks and
//! the operations; see the parent module for the terms.

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh_sftp::client::error::Error as ProtoError;
use russh_sftp::client::SftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use crate::core::files::NamePattern;
use crate::core::sync::lock;
use host_keys::Trust;

use super::{ErrorKind, RemoteFile, SftpError, SftpUrl};

#[path = "host_keys.rs"]
mod host_keys;

impl SftpError {
    /// Whether the connection should be dropped after this error.
    fn breaks_connection(&self) -> bool {
        matches!(self.kind(), ErrorKind::Connect | ErrorKind::Timeout)
    }
}

/// Every well-formed `sftp://` URL is served (see `without.rs` for a
/// binary built without the `sftp` feature).
pub(super) fn supported(_url: &str) -> Result<(), SftpError> {
    Ok(())
}

/// Bound on connecting: TCP, SSH handshake, authentication, SFTP start.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on one SFTP request/response.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on a whole metadata operation (list, stat, rename, remove).
pub(crate) const OP_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on a whole read or write of contents held in memory ([`read`],
/// [`write`]): values of a run, small enough to hold (files beyond
/// [`INLINE_LIMIT`](crate::core::files::INLINE_LIMIT) are streamed, see
/// [`STALL_TIMEOUT`]).
pub(crate) const TRANSFER_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a streamed transfer ([`download`], [`upload`], [`copy`]) may
/// go without progress. Such a transfer has no bound on its whole
/// duration — a 2 GB file takes a minute on loopback and hours on a slow
/// link — but fails as soon as it stops moving: a read from the source or
/// a write to the target that moves no byte within this, the wait for the
/// server to confirm the last writes and sync them, or a step around the
/// data (opening, creating folders, renaming) not done within
/// [`OP_TIMEOUT`]. SFTP requests are also bounded one by one
/// ([`REQUEST_TIMEOUT`]).
pub(crate) const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// What a streamed transfer reads from one side before writing it to the
/// other: the only buffer it holds, besides the requests the SFTP channel
/// keeps in flight ([`READ_AHEAD`] reads, and `russh_sftp`'s 16 writes of
/// 32 KiB), so its memory does not grow with the file.
const CHUNK: usize = 256 * 1024;
/// How many reads of up to 256 KiB (about the most OpenSSH answers at
/// once) an open remote file keeps in flight: 1 MiB, half of what
/// OpenSSH's own `sftp` keeps (64 requests of 32 KiB). On loopback a
/// 2 GiB download is as fast as with `russh_sftp`'s default of 16, which
/// added 6 MiB to its peak memory (tests/e2e_big_files.rs).
const READ_AHEAD: usize = 4;
/// An idle connection is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

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

/// Classifies an I/O error while streaming a file's contents, on the
/// server (`at` is the URL) or on this machine (`at` is the local path).
fn stream_error(at: impl Display, e: std::io::Error) -> SftpError {
    let kind = match e.kind() {
        std::io::ErrorKind::TimedOut => ErrorKind::Timeout,
        std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        std::io::ErrorKind::NotFound => ErrorKind::NotFound,
        std::io::ErrorKind::InvalidInput => ErrorKind::Invalid,
        _ => ErrorKind::Io,
    };
    SftpError::new(kind, at, e)
}

/// `step` within `limit`, else a retryable timeout naming `at`.
async fn within<T>(
    limit: Duration,
    at: impl Display,
    step: impl Future<Output = Result<T, SftpError>>,
) -> Result<T, SftpError> {
    match tokio::time::timeout(limit, step).await {
        Ok(result) => result,
        Err(_) => Err(SftpError::new(
            ErrorKind::Timeout,
            at,
            format!("no progress within {limit:?}"),
        )),
    }
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
    let pattern = NamePattern::new(url.file_name())
        .map_err(|why| SftpError::new(ErrorKind::Invalid, url, why))?;
    with_session(url, auth, Limit::Total(OP_TIMEOUT), true, |conn| {
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
                .filter(|entry| entry.file_type().is_file() && pattern.matches(&entry.file_name()))
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
    with_session(url, auth, Limit::Total(OP_TIMEOUT), true, |conn| {
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
    with_session(url, auth, Limit::Total(TRANSFER_TIMEOUT), true, |conn| {
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
/// file is replaced as a whole ([`replace_with`]: written under a
/// temporary name and renamed, so readers never see half a file); with
/// `append` the bytes are added at its end (it is created if missing).
pub(crate) async fn write(
    url: &SftpUrl,
    auth: &str,
    bytes: &[u8],
    append: bool,
) -> Result<RemoteFile, SftpError> {
    let bytes: Arc<[u8]> = Arc::from(bytes);
    with_session(url, auth, Limit::Total(TRANSFER_TIMEOUT), false, |conn| {
        let (url, bytes) = (url.clone(), bytes.clone());
        async move {
            if !append {
                return replace_with(&conn, &url, &mut &bytes[..], &url).await;
            }
            check_file_name(&url)?;
            create_dirs(&conn, &url, url.parent()).await?;
            let flags = OpenFlags::CREATE | OpenFlags::WRITE | OpenFlags::APPEND;
            put(&conn, &url, &url.path, flags, &bytes).await?;
            stat_file(&conn, &url).await
        }
    })
    .await
}

/// Refuses a URL that names a folder (ends with `/`) as a file to write.
fn check_file_name(url: &SftpUrl) -> Result<(), SftpError> {
    if url.file_name().is_empty() {
        return Err(SftpError::new(
            ErrorKind::Invalid,
            url,
            "the path names a folder, not a file",
        ));
    }
    Ok(())
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

// ------------------------------------------------------- streamed transfers

/// Copies the file at `url` into a new local file at `local` (replaced if
/// it exists) one [`CHUNK`] at a time, and syncs it to disk; the caller
/// renames it into place. Returns the remote file with the size copied. A
/// failed download removes `local`. Bounded by progress, not by duration
/// ([`STALL_TIMEOUT`]).
pub(crate) async fn download(
    url: &SftpUrl,
    auth: &str,
    local: &Path,
) -> Result<RemoteFile, SftpError> {
    let partial = LocalTemp(Some(local.to_path_buf()));
    // Idempotent: a retry on a fresh session starts the local file over.
    let file = with_session(url, auth, Limit::Progress, true, |conn| {
        let (url, local) = (url.clone(), local.to_path_buf());
        async move { download_on(&conn, &url, &local).await }
    })
    .await?;
    partial.keep();
    Ok(file)
}

/// A local file being written, removed unless kept: on an error, and also
/// when the transfer is dropped halfway (the attempt of a step that timed
/// out), so that no partial file is left behind.
struct LocalTemp(Option<std::path::PathBuf>);

impl LocalTemp {
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for LocalTemp {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            // One unlink: quick enough to do in place.
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A temporary file on the server, removed unless kept. On an error it is
/// removed before the error is returned ([`RemoteTemp::remove`]); when the
/// transfer is dropped halfway (the attempt of a step that timed out) a
/// task removes it.
struct RemoteTemp {
    conn: Arc<Conn>,
    path: Option<String>,
}

impl RemoteTemp {
    fn new(conn: &Arc<Conn>, path: &str) -> RemoteTemp {
        RemoteTemp {
            conn: conn.clone(),
            path: Some(path.to_string()),
        }
    }

    fn keep(mut self) {
        self.path = None;
    }

    /// Bounded by the SFTP request timeout. A broken session cannot remove
    /// it, and the transfer's own error says what went wrong.
    async fn remove(mut self) {
        if let Some(path) = self.path.take() {
            let _ = self.conn.sftp.remove_file(path).await;
        }
    }
}

impl Drop for RemoteTemp {
    fn drop(&mut self) {
        let Some(path) = self.path.take() else {
            return;
        };
        let conn = self.conn.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = conn.sftp.remove_file(path).await;
            });
        }
    }
}

async fn download_on(conn: &Conn, url: &SftpUrl, local: &Path) -> Result<RemoteFile, SftpError> {
    let at = local.display();
    let (mut file, mut source) = within(OP_TIMEOUT, url, open_source(conn, url)).await?;
    let mut target = tokio::fs::File::create(local)
        .await
        .map_err(|e| stream_error(&at, e))?;
    file.size = pump(&mut source, url, &mut target, &at).await?;
    within(OP_TIMEOUT, url, async {
        source.close().await.map_err(|e| stream_error(url, e))
    })
    .await?;
    // `flush` reports a failed write that `sync_all` would not.
    target.flush().await.map_err(|e| stream_error(&at, e))?;
    target.sync_all().await.map_err(|e| stream_error(&at, e))?;
    Ok(file)
}

/// Copies the local file at `local` to `url` one [`CHUNK`] at a time,
/// creating missing folders; the target is replaced as a whole, as by
/// [`write`] ([`replace_with`]). Bounded by progress, not by duration
/// ([`STALL_TIMEOUT`]).
pub(crate) async fn upload(
    local: &Path,
    url: &SftpUrl,
    auth: &str,
) -> Result<RemoteFile, SftpError> {
    with_session(url, auth, Limit::Progress, false, |conn| {
        let (url, local) = (url.clone(), local.to_path_buf());
        async move {
            let mut source = tokio::fs::File::open(&local)
                .await
                .map_err(|e| stream_error(local.display(), e))?;
            replace_with(&conn, &url, &mut source, &local.display()).await
        }
    })
    .await
}

/// Copies the file `from` to `to` on another server (another account,
/// host or port), streamed from one session into the other through one
/// [`CHUNK`] buffer: nothing is kept on this machine's disk. The target is
/// replaced as a whole ([`replace_with`]). Bounded by progress, not by
/// duration ([`STALL_TIMEOUT`]).
pub(crate) async fn copy(
    from: &SftpUrl,
    to: &SftpUrl,
    auth: &str,
) -> Result<RemoteFile, SftpError> {
    with_session(from, auth, Limit::Progress, false, |src| {
        let (from, to, auth) = (from.clone(), to.clone(), auth.to_string());
        async move {
            with_session(&to, &auth, Limit::Progress, false, |dst| {
                let (src, from, to) = (src.clone(), from.clone(), to.clone());
                async move {
                    let (_, mut source) =
                        within(OP_TIMEOUT, &from, open_source(&src, &from)).await?;
                    replace_with(&dst, &to, &mut source, &from).await
                }
            })
            .await
        }
    })
    .await
}

/// The regular file at `url`, opened for reading.
async fn open_source(
    conn: &Conn,
    url: &SftpUrl,
) -> Result<(RemoteFile, russh_sftp::client::fs::File), SftpError> {
    let file = stat_file(conn, url).await?;
    let handle = conn
        .sftp
        .open(url.path.clone())
        .await
        .map_err(|e| proto_error(url, e))?;
    Ok((file, handle))
}

/// Replaces the file at `url` with what `source` (named `from` in errors)
/// holds, creating missing folders: written under a temporary name
/// (`NAME.tmp-UUID`) one [`CHUNK`] at a time, synced on the server (when it
/// offers `fsync@openssh.com`) and renamed over the target, so readers
/// never see half a file. A failure removes the temporary file.
async fn replace_with<R>(
    conn: &Arc<Conn>,
    url: &SftpUrl,
    source: &mut R,
    from: &(dyn Display + Sync),
) -> Result<RemoteFile, SftpError>
where
    R: AsyncRead + Unpin,
{
    check_file_name(url)?;
    within(OP_TIMEOUT, url, create_dirs(conn, url, url.parent())).await?;
    let tmp = url.with_path(format!(
        "{}.tmp-{}",
        url.path,
        uuid::Uuid::new_v4().simple()
    ));
    let written = RemoteTemp::new(conn, &tmp.path);
    let placed = async {
        stream_to(conn, &tmp, url, source, from).await?;
        within(OP_TIMEOUT, url, replace(conn, &tmp, url)).await
    };
    if let Err(e) = placed.await {
        written.remove().await;
        return Err(e);
    }
    written.keep();
    within(OP_TIMEOUT, url, stat_file(conn, url)).await
}

/// Writes all of `source` into a new file at `tmp` (errors name `url`,
/// the file it stands for) and syncs it.
async fn stream_to<R>(
    conn: &Conn,
    tmp: &SftpUrl,
    url: &SftpUrl,
    source: &mut R,
    from: &(dyn Display + Sync),
) -> Result<u64, SftpError>
where
    R: AsyncRead + Unpin,
{
    let flags = OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE;
    let mut target = within(OP_TIMEOUT, url, async {
        conn.sftp
            .open_with_flags(tmp.path.clone(), flags)
            .await
            .map_err(|e| proto_error(url, e))
    })
    .await?;
    let size = pump(source, from, &mut target, url).await?;
    // Waits for the writes still in flight, then fsyncs (a no-op on a
    // server without fsync@openssh.com): the source of a move is deleted
    // only once the copy is on the server's disk.
    within(stall_timeout(), url, async {
        target.flush().await.map_err(|e| stream_error(url, e))?;
        target.close().await.map_err(|e| stream_error(url, e))
    })
    .await?;
    Ok(size)
}

/// Copies `source` to `target` one [`CHUNK`] at a time; errors name
/// `from` or `to`. Each read and each write must move some bytes within
/// [`STALL_TIMEOUT`] (so a slow but steady transfer never times out, a
/// stalled one does). Returns the number of bytes copied.
async fn pump<R, W>(
    source: &mut R,
    from: &(dyn Display + Sync),
    target: &mut W,
    to: &(dyn Display + Sync),
) -> Result<u64, SftpError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut chunk = vec![0u8; CHUNK];
    let mut copied = 0u64;
    loop {
        let n = fill(source, &mut chunk, from).await?;
        if n == 0 {
            return Ok(copied);
        }
        drain(target, &chunk[..n], to).await?;
        copied += n as u64;
    }
}

/// Reads from `source` until `chunk` is full or the source ends; the
/// number of bytes read (0 at the end).
async fn fill<R>(
    source: &mut R,
    chunk: &mut [u8],
    from: &(dyn Display + Sync),
) -> Result<usize, SftpError>
where
    R: AsyncRead + Unpin,
{
    let mut filled = 0;
    while filled < chunk.len() {
        let read = async {
            source
                .read(&mut chunk[filled..])
                .await
                .map_err(|e| stream_error(from, e))
        };
        match within(stall_timeout(), from, read).await? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Writes all of `bytes` to `target`.
async fn drain<W>(target: &mut W, bytes: &[u8], to: &(dyn Display + Sync)) -> Result<(), SftpError>
where
    W: AsyncWrite + Unpin,
{
    let mut written = 0;
    while written < bytes.len() {
        let write = async {
            target
                .write(&bytes[written..])
                .await
                .map_err(|e| stream_error(to, e))
        };
        match within(stall_timeout(), to, write).await? {
            0 => {
                let e = std::io::Error::from(std::io::ErrorKind::WriteZero);
                return Err(stream_error(to, e));
            }
            n => written += n,
        }
    }
    Ok(())
}

/// [`STALL_TIMEOUT`], shorter in tests of this thread.
fn stall_timeout() -> Duration {
    #[cfg(test)]
    if let Some(limit) = TEST_STALL_TIMEOUT.with(std::cell::Cell::get) {
        return limit;
    }
    STALL_TIMEOUT
}

#[cfg(test)]
thread_local! {
    /// A shorter [`STALL_TIMEOUT`] for the tests on this thread.
    pub(crate) static TEST_STALL_TIMEOUT: std::cell::Cell<Option<Duration>> =
        const { std::cell::Cell::new(None) };
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
    with_session(from, auth, Limit::Total(OP_TIMEOUT), false, |conn| {
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
    with_session(url, auth, Limit::Total(OP_TIMEOUT), false, |conn| {
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

/// How long an operation on a session may take.
#[derive(Clone, Copy, Debug)]
enum Limit {
    /// The whole operation, this long at most.
    Total(Duration),
    /// As long as it keeps moving: a streamed transfer bounds each of its
    /// steps itself ([`STALL_TIMEOUT`], [`OP_TIMEOUT`]), never the whole.
    Progress,
}

/// Runs `op` on a session for `url` within `limit`. A connection-level
/// failure drops the session; when it was a reused one and `idempotent`,
/// `op` is tried once more on a fresh session.
async fn with_session<T, F, Fut>(
    url: &SftpUrl,
    auth: &str,
    limit: Limit,
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
    let Limit::Total(limit) = limit else {
        return attempt.await;
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
        max_concurrent_reads: READ_AHEAD,
        ..Default::default()
    };
    let sftp = SftpSession::new_with_config(channel.into_stream(), config)
        .await
        .map_err(|e| connect_err(format!("cannot start SFTP: {e}")))?;
    Ok(Conn { sftp, ssh })
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
