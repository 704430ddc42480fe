//! `file.*` on `sftp://` URLs, through [`crate::io::sftp`]. Each step takes the
//! login secret as `auth:` (a password, or a private key starting with
//! `-----BEGIN`); an `sftp://` path without it is a permanent error. The
//! File values have the local shape, with the URL as `path`.
//!
//! `file.move` between a local path and an `sftp://` URL, or between two
//! servers, copies the file (the target is replaced as a whole, as by
//! `file.write`) and then deletes the source; a failure after the copy is
//! retryable and the next attempt copies again. On one server it renames.

use std::path::Path;

use serde_json::Value;

use super::create_parent;
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

/// `file.read(sftp://…, auth:)`.
pub(super) async fn read(call: &StepCall, url: SftpUrl) -> Result<Value, StepError> {
    let f = "file.read";
    let auth = auth(call, 1, f, &url)?;
    let file = sftp::stat(&url, &auth)
        .await
        .map_err(|e| step_error(f, &e))?;
    if file.size > INLINE_LIMIT {
        return Ok(reference(&file));
    }
    let (data, file) = sftp::read(&url, &auth)
        .await
        .map_err(|e| step_error(f, &e))?;
    Ok(value(&file, &data))
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
        // The File holds the whole contents, as for a local append.
        let (data, file) = sftp::read(&url, &auth)
            .await
            .map_err(|e| step_error(f, &e))?;
        Ok(value(&file, &data))
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

/// `file.list(sftp://…/GLOB, auth:)`: the matching files with their
/// contents, sorted by name; a file deleted between listing and reading is
/// left out.
pub(super) async fn list(call: &StepCall, url: SftpUrl) -> Result<Value, StepError> {
    let f = "file.list";
    let auth = auth(call, 1, f, &url)?;
    let found = sftp::list(&url, &auth)
        .await
        .map_err(|e| step_error(f, &e))?;
    let mut files = Vec::with_capacity(found.len());
    for file in found {
        let file_url = url.with_path(join(url.parent(), &file.name));
        match sftp::read(&file_url, &auth).await {
            Ok((data, file)) => files.push(value(&file, &data)),
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
pub(super) async fn move_file(
    call: &StepCall,
    from: Result<SftpUrl, &Path>,
    to: Result<SftpUrl, &Path>,
) -> Result<Value, StepError> {
    let f = "file.move";
    let url = match (&from, &to) {
        (Ok(u), _) | (_, Ok(u)) => u.clone(),
        (Err(_), Err(_)) => {
            return Err(StepError::permanent(format!(
                "{f}: neither path is an sftp:// URL"
            )))
        }
    };
    let auth = auth(call, 2, f, &url)?;
    match (from, to) {
        (Ok(from), Ok(to)) if from.same_server(&to) => {
            sftp::rename(&from, &to, &auth)
                .await
                .map_err(|e| step_error(f, &e))?;
            let (data, file) = sftp::read(&to, &auth)
                .await
                .map_err(|e| step_error(f, &e))?;
            Ok(value(&file, &data))
        }
        (Ok(from), Ok(to)) => {
            let (data, _) = sftp::read(&from, &auth)
                .await
                .map_err(|e| step_error(f, &e))?;
            let file = sftp::write(&to, &auth, &data, false)
                .await
                .map_err(|e| step_error(f, &e))?;
            sftp::remove(&from, &auth)
                .await
                .map_err(|e| step_error(f, &e))?;
            Ok(value(&file, &data))
        }
        (Ok(from), Err(to)) => {
            let (data, _) = sftp::read(&from, &auth)
                .await
                .map_err(|e| step_error(f, &e))?;
            create_parent(to, f).await?;
            let tmp = to.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
            tokio::fs::write(&tmp, &data)
                .await
                .map_err(|e| io_error(f, &tmp, &e))?;
            tokio::fs::rename(&tmp, to)
                .await
                .map_err(|e| io_error(f, to, &e))?;
            sftp::remove(&from, &auth)
                .await
                .map_err(|e| step_error(f, &e))?;
            file_value(to, f).await
        }
        (Err(from), Ok(to)) => {
            let data = tokio::fs::read(from)
                .await
                .map_err(|e| io_error(f, from, &e))?;
            let file = sftp::write(&to, &auth, &data, false)
                .await
                .map_err(|e| step_error(f, &e))?;
            match tokio::fs::remove_file(from).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(f, from, &e)),
            }
            Ok(value(&file, &data))
        }
        (Err(_), Err(_)) => Err(StepError::permanent(format!(
            "{f}: neither path is an sftp:// URL"
        ))),
    }
}
