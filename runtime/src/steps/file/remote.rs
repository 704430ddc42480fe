//! `file.*` on `sftp://` URLs, through [`crate::io::sftp`]. Each step takes the
//! login secret as `auth:` (a password, or a private key starting with
//! `-----BEGIN`); an `sftp://` path without it is a permanent error. The
//! File values have the local shape, with the URL as `path`.
//!
//! `file.move` between a local path and an `sftp://` URL, or between two
//! servers, streams the file in chunks (memory stays bounded whatever its
//! size), replacing the target as a whole (a temporary file renamed into
//! place, as by `file.write`), and then deletes the source; a failure
//! after the copy is retryable and the next attempt copies again. On one
//! server it renames. The File values of files larger than
//! [`INLINE_LIMIT`] are references (path and metadata), never read.

use std::path::Path;

use serde_json::Value;

use super::{create_parent, sync_folder_of};
use crate::core::error::StepError;
use crate::core::files::{file_json, file_reference, file_value, io_error, INLINE_LIMIT};
use crate::engine::ctx::StepCall;
use crate::io::sftp::{self, RemoteFile, SftpError, SftpUrl};

/// The `sftp://` URL in parameter `i`, or `None` for a local path.
pub(super) fn url_param(
    call: &StepCall,
    i: usize,
    name: &str,
    func: &str,
) -> Result<Option<SftpUrl>, StepError> {
    match call.args.param(i, name).as_str() {
        Some(s) if SftpUrl::is_sftp(s) => SftpUrl::parse(s)
            .map(Some)
            .map_err(|e| step_error(func, &e)),
        _ => Ok(None),
    }
}

/// The `auth:` secret (parameter `i`), required for `url`.
fn auth(call: &StepCall, i: usize, func: &str, url: &SftpUrl) -> Result<String, StepError> {
    call.args
        .param(i, "auth")
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            StepError::permanent(format!(
                "{func}: {url}: an sftp:// path needs `auth:` (a password or private key from a Secret config entry)"
            ))
        })
}

fn step_error(func: &str, e: &SftpError) -> StepError {
    let message = format!("{func}: {e}");
    if e.is_retryable() {
        StepError::retryable(message)
    } else {
        StepError::permanent(message)
    }
}

fn value(file: &RemoteFile, data: &[u8]) -> Value {
    file_json(&file.url, &file.name, data, Some(file.modified))
}

/// The `File` value of the remote file `file` at `url`: read back when it
/// is small enough to hold in a run ([`INLINE_LIMIT`]), else its
/// reference (path and metadata, nothing read).
async fn remote_value(url: &SftpUrl, file: &RemoteFile, auth: &str) -> Result<Value, SftpError> {
    if file.size > INLINE_LIMIT {
        return Ok(reference(file));
    }
    let (data, file) = sftp::read(url, auth).await?;
    if data.len() as u64 > INLINE_LIMIT {
        // It grew after the look at its size.
        return Ok(reference(&file));
    }
    Ok(value(&file, &data))
}

/// `file.read(sftp://…, auth:)`.
pub(super) async fn read(call: &StepCall, url: SftpUrl) -> Result<Value, StepError> {
    let f = "file.read";
    let auth = auth(call, 1, f, &url)?;
    let file = sftp::stat(&url, &auth)
        .await
        .map_err(|e| step_error(f, &e))?;
    remote_value(&url, &file, &auth)
        .await
        .map_err(|e| step_error(f, &e))
}

/// The `File` value of a remote file too large to hold in a run.
fn reference(file: &RemoteFile) -> Value {
    file_reference(&file.url, &file.name, file.size, Some(file.modified))
}

/// `file.write` / `file.append` on an `sftp://` URL.
pub(super) async fn write(
    call: &StepCall,
    url: SftpUrl,
    content: &[u8],
    append: bool,
) -> Result<Value, StepError> {
    let f = if append { "file.append" } else { "file.write" };
    let auth = auth(call, 2, f, &url)?;
    let file = sftp::write(&url, &auth, content, append)
        .await
        .map_err(|e| step_error(f, &e))?;
    if append {
        // The File holds the whole contents, as for a local append (by
        // reference once they outgrow INLINE_LIMIT).
        remote_value(&url, &file, &auth)
            .await
            .map_err(|e| step_error(f, &e))
    } else {
        Ok(value(&file, content))
    }
}

/// `file.delete(sftp://…, auth:)`.
pub(super) async fn delete(call: &StepCall, url: SftpUrl) -> Result<Value, StepError> {
    let f = "file.delete";
    let auth = auth(call, 1, f, &url)?;
    sftp::remove(&url, &auth)
        .await
        .map(Value::Bool)
        .map_err(|e| step_error(f, &e))
}

/// `file.list(sftp://…/GLOB, auth:)`: the matching files sorted by name,
/// with their contents up to [`INLINE_LIMIT`] and by reference beyond; a
/// file deleted between listing and reading is left out.
pub(super) async fn list(call: &StepCall, url: SftpUrl) -> Result<Value, StepError> {
    let f = "file.list";
    if url.path.contains("**") {
        return Err(StepError::permanent(format!(
            "{f}: {url}: `**` lists local subfolders only; on an SFTP server, list one folder at a time"
        )));
    }
    let auth = auth(call, 1, f, &url)?;
    let found = sftp::list(&url, &auth)
        .await
        .map_err(|e| step_error(f, &e))?;
    let mut files = Vec::with_capacity(found.len());
    for file in found {
        let file_url = url.with_path(join(url.parent(), &file.name));
        match remote_value(&file_url, &file, &auth).await {
            Ok(value) => files.push(value),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(step_error(f, &e)),
        }
    }
    Ok(Value::Array(files))
}

fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// `file.move(from, to, auth:)` where at least one side is `sftp://`.
/// Between two places the file is streamed ([`sftp::download`],
/// [`sftp::upload`], [`sftp::copy`]), so a file of any size moves in
/// bounded memory; the source is deleted once the copy is durable.
pub(super) async fn move_file(
    call: &StepCall,
    from: Result<SftpUrl, &Path>,
    to: Result<SftpUrl, &Path>,
) -> Result<Value, StepError> {
    let f = "file.move";
    let url = match (&from, &to) {
        (Ok(u), _) | (_, Ok(u)) => u.clone(),
        (Err(_), Err(_)) => return Err(no_url(f)),
    };
    let auth = auth(call, 2, f, &url)?;
    match (from, to) {
        (Ok(from), Ok(to)) if from.same_server(&to) => {
            let file = sftp::rename(&from, &to, &auth)
                .await
                .map_err(|e| step_error(f, &e))?;
            remote_value(&to, &file, &auth)
                .await
                .map_err(|e| step_error(f, &e))
        }
        (Ok(from), Ok(to)) => {
            let file = sftp::copy(&from, &to, &auth)
                .await
                .map_err(|e| step_error(f, &e))?;
            sftp::remove(&from, &auth)
                .await
                .map_err(|e| step_error(f, &e))?;
            remote_value(&to, &file, &auth)
                .await
                .map_err(|e| step_error(f, &e))
        }
        (Ok(from), Err(to)) => download(&from, to, &auth).await,
        (Err(from), Ok(to)) => upload(from, &to, &auth).await,
        (Err(_), Err(_)) => Err(no_url(f)),
    }
}

fn no_url(f: &str) -> StepError {
    StepError::permanent(format!("{f}: neither path is an sftp:// URL"))
}

/// Moves the remote file `from` to the local path `to`: streamed into a
/// temporary file beside `to` (synced), renamed over it, the folder
/// synced; the remote file is deleted only then.
async fn download(from: &SftpUrl, to: &Path, auth: &str) -> Result<Value, StepError> {
    let f = "file.move";
    create_parent(to, f).await?;
    let tmp = to.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    sftp::download(from, auth, &tmp)
        .await
        .map_err(|e| step_error(f, &e))?;
    if let Err(e) = put_in_place(&tmp, to).await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(io_error(f, to, &e));
    }
    sftp::remove(from, auth)
        .await
        .map_err(|e| step_error(f, &e))?;
    file_value(to, f).await
}

/// Renames the finished temporary file `tmp` to `to` and makes the rename
/// durable.
async fn put_in_place(tmp: &Path, to: &Path) -> std::io::Result<()> {
    tokio::fs::rename(tmp, to).await?;
    sync_folder_of(to).await
}

/// Moves the local file `from` to the remote `to` (streamed, replaced as a
/// whole on the server); the local file is deleted once the upload is
/// complete and synced on the server.
async fn upload(from: &Path, to: &SftpUrl, auth: &str) -> Result<Value, StepError> {
    let f = "file.move";
    let file = sftp::upload(from, to, auth)
        .await
        .map_err(|e| step_error(f, &e))?;
    match tokio::fs::remove_file(from).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(f, from, &e)),
    }
    remote_value(to, &file, auth)
        .await
        .map_err(|e| step_error(f, &e))
}
