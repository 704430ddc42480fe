//! The SFTP client of a binary built without the `sftp` feature (`flowc
//! build` turns it on only for integrations that can reach an `sftp://`
//! URL, see docs/tools.md): no URL gets past [`supported`], so the
//! operations below are never reached, yet they still answer with the same
//! permanent error instead of panicking.

use std::path::Path;

use super::{ErrorKind, RemoteFile, SftpError, SftpUrl};

/// Refuses every `sftp://` URL, saying how to get a binary that takes it.
pub(super) fn supported(url: &str) -> Result<(), SftpError> {
    Err(not_built(super::masked(url)))
}

fn not_built(url: impl std::fmt::Display) -> SftpError {
    SftpError::new(
        ErrorKind::Invalid,
        url,
        "this binary was built without SFTP support (file.* and files triggers on sftp://); \
         rebuild it with `flowc build --with sftp`",
    )
}

fn refused(url: &SftpUrl) -> SftpError {
    not_built(url)
}

pub(crate) async fn list(url: &SftpUrl, _auth: &str) -> Result<Vec<RemoteFile>, SftpError> {
    Err(refused(url))
}

pub(crate) async fn stat(url: &SftpUrl, _auth: &str) -> Result<RemoteFile, SftpError> {
    Err(refused(url))
}

pub(crate) async fn read(url: &SftpUrl, _auth: &str) -> Result<(Vec<u8>, RemoteFile), SftpError> {
    Err(refused(url))
}

pub(crate) async fn write(
    url: &SftpUrl,
    _auth: &str,
    _bytes: &[u8],
    _append: bool,
) -> Result<RemoteFile, SftpError> {
    Err(refused(url))
}

pub(crate) async fn download(
    url: &SftpUrl,
    _auth: &str,
    _local: &Path,
) -> Result<RemoteFile, SftpError> {
    Err(refused(url))
}

pub(crate) async fn upload(
    _local: &Path,
    url: &SftpUrl,
    _auth: &str,
) -> Result<RemoteFile, SftpError> {
    Err(refused(url))
}

pub(crate) async fn copy(
    from: &SftpUrl,
    _to: &SftpUrl,
    _auth: &str,
) -> Result<RemoteFile, SftpError> {
    Err(refused(from))
}

pub(crate) async fn rename(
    from: &SftpUrl,
    _to: &SftpUrl,
    _auth: &str,
) -> Result<RemoteFile, SftpError> {
    Err(refused(from))
}

pub(crate) async fn remove(url: &SftpUrl, _auth: &str) -> Result<bool, SftpError> {
    Err(refused(url))
}
