//! `file.*` on the local filesystem (paths relative to the working
//! directory) and on `sftp://` URLs (in [`remote`], with `auth:`). Each
//! function is a step; a missing file or a permission problem is permanent
//! (another attempt will not fix it), other I/O errors are retried.

mod remote;

use std::io;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use futures::future::{BoxFuture, FutureExt as _};
use serde_json::{json, Value};

use crate::ctx::StepCall;
use crate::error::StepError;
use crate::ops::format_time;

fn path_arg(call: &StepCall, i: usize, name: &str, func: &str) -> Result<PathBuf, StepError> {
    call.args
        .param(i, name)
        .as_str()
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| StepError::permanent(format!("{func}: `{name}` must be a non-empty String")))
}

fn io_error(func: &str, path: &Path, e: &io::Error) -> StepError {
    let message = format!("{func}: {}: {e}", path.display());
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied | io::ErrorKind::InvalidInput => {
            StepError::permanent(message)
        }
        _ => StepError::retryable(message),
    }
}

/// The `File` value of a path: `{ path, name, size, modified, text, bytes }`.
pub(crate) async fn file_value(path: &Path, func: &str) -> Result<Value, StepError> {
    let data = tokio::fs::read(path)
        .await
        .map_err(|e| io_error(func, path, &e))?;
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|e| io_error(func, path, &e))?;
    let modified = meta
        .modified()
        .ok()
        .map(chrono::DateTime::<chrono::Utc>::from);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(file_json(
        &path.display().to_string(),
        &name,
        &data,
        modified,
    ))
}

/// The `File` value of file contents, local or remote (`path` is then the
/// `sftp://` URL): `{ path, name, size, modified, text, bytes }`.
pub(crate) fn file_json(
    path: &str,
    name: &str,
    data: &[u8],
    modified: Option<chrono::DateTime<chrono::Utc>>,
) -> Value {
    json!({
        "path": path,
        "name": name,
        "size": data.len(),
        "modified": modified.map_or(Value::Null, format_time),
        "text": String::from_utf8_lossy(data),
        "bytes": base64::engine::general_purpose::STANDARD.encode(data),
    })
}

/// A `File` given in part (a test's `run ... with { file: { name, text } }`,
/// or `BINARY run --input`) with the rest derived: `path` from `name` and
/// back, `bytes` from `text` and back, `size` from the content, `modified`
/// now.
pub(crate) fn complete_file(given: &Value, now: &Value) -> Value {
    let Value::Object(m) = given else {
        return given.clone();
    };
    let text_of = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
    let b64 = base64::engine::general_purpose::STANDARD;
    let data: Vec<u8> = match (text_of("bytes"), text_of("text")) {
        (Some(b), _) if !b.is_empty() => b64.decode(b.as_bytes()).unwrap_or_default(),
        (_, Some(t)) => t.into_bytes(),
        _ => Vec::new(),
    };
    let name = text_of("name")
        .or_else(|| text_of("path").map(|p| p.rsplit('/').next().unwrap_or_default().to_string()));
    let name = name.unwrap_or_else(|| "file".to_string());
    let path = text_of("path").unwrap_or_else(|| name.clone());
    let mut file = file_json(&path, &name, &data, None);
    file["modified"] = m
        .get("modified")
        .filter(|v| !v.is_null())
        .unwrap_or(now)
        .clone();
    if let Some(size) = m.get("size").filter(|v| !v.is_null()) {
        file["size"] = size.clone();
    }
    file
}

async fn create_parent(path: &Path, func: &str) -> Result<(), StepError> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| io_error(func, parent, &e)),
        _ => Ok(()),
    }
}

fn content_arg(call: &StepCall, func: &str) -> Result<String, StepError> {
    call.args
        .param(1, "content")
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| StepError::permanent(format!("{func}: `content` must be a String")))
}

/// `file.read(path)` → File.
pub(crate) fn read(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    async move {
        if let Some(url) = remote::url_param(&call, 0, "path", "file.read")? {
            return remote::read(&call, url).await;
        }
        let path = path_arg(&call, 0, "path", "file.read")?;
        file_value(&path, "file.read").await
    }
    .boxed()
}

/// `file.write(path, content)` → File (folders created as needed). Written
/// to a temporary file and renamed, so readers never see half a file.
pub(crate) fn write(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    async move {
        let f = "file.write";
        let content = content_arg(&call, f)?;
        if let Some(url) = remote::url_param(&call, 0, "path", f)? {
            return remote::write(&call, url, &content, false).await;
        }
        let path = path_arg(&call, 0, "path", f)?;
        create_parent(&path, f).await?;
        let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
        tokio::fs::write(&tmp, content.as_bytes())
            .await
            .map_err(|e| io_error(f, &tmp, &e))?;
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|e| io_error(f, &path, &e))?;
        file_value(&path, f).await
    }
    .boxed()
}

/// `file.append(path, content)` → File.
pub(crate) fn append(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    async move {
        use tokio::io::AsyncWriteExt as _;
        let f = "file.append";
        let content = content_arg(&call, f)?;
        if let Some(url) = remote::url_param(&call, 0, "path", f)? {
            return remote::write(&call, url, &content, true).await;
        }
        let path = path_arg(&call, 0, "path", f)?;
        create_parent(&path, f).await?;
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await
            .map_err(|e| io_error(f, &path, &e))?;
        file.write_all(content.as_bytes())
            .await
            .map_err(|e| io_error(f, &path, &e))?;
        file.flush().await.map_err(|e| io_error(f, &path, &e))?;
        file_value(&path, f).await
    }
    .boxed()
}

/// `file.move(from, to)` → the File at its new place.
pub(crate) fn move_file(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    async move {
        let f = "file.move";
        let from = path_arg(&call, 0, "from", f)?;
        let to = path_arg(&call, 1, "to", f)?;
        let from_url = remote::url_param(&call, 0, "from", f)?;
        let to_url = remote::url_param(&call, 1, "to", f)?;
        if from_url.is_some() || to_url.is_some() {
            let from = from_url.ok_or(from.as_path());
            let to = to_url.ok_or(to.as_path());
            return remote::move_file(&call, from, to).await;
        }
        create_parent(&to, f).await?;
        tokio::fs::rename(&from, &to)
            .await
            .map_err(|e| io_error(f, &from, &e))?;
        file_value(&to, f).await
    }
    .boxed()
}

/// `file.delete(path)` → true when the file existed.
pub(crate) fn delete(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    async move {
        let f = "file.delete";
        if let Some(url) = remote::url_param(&call, 0, "path", f)? {
            return remote::delete(&call, url).await;
        }
        let path = path_arg(&call, 0, "path", f)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(Value::Bool(true)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Value::Bool(false)),
            Err(e) => Err(io_error(f, &path, &e)),
        }
    }
    .boxed()
}

/// `file.list(glob)` → the Files whose names match the glob's last
/// segment (`*` and `?` wildcards) in its folder, sorted by name.
pub(crate) fn list(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    async move {
        let f = "file.list";
        if let Some(url) = remote::url_param(&call, 0, "glob", f)? {
            return remote::list(&call, url).await;
        }
        let glob = path_arg(&call, 0, "glob", f)?;
        let (dir, pattern) = split_glob(&glob);
        let mut names = Vec::new();
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Value::Array(Vec::new())),
            Err(e) => return Err(io_error(f, &dir, &e)),
        };
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| io_error(f, &dir, &e))?
        {
            let is_file = entry
                .file_type()
                .await
                .map(|t| t.is_file())
                .unwrap_or(false);
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_file && glob_match(&pattern, &name) {
                names.push(name);
            }
        }
        names.sort();
        let mut files = Vec::with_capacity(names.len());
        for name in names {
            files.push(file_value(&dir.join(name), f).await?);
        }
        Ok(Value::Array(files))
    }
    .boxed()
}

/// A glob's folder (`.` when it has none) and file-name pattern (empty
/// when the glob ends with `/`).
pub(crate) fn split_glob(glob: &Path) -> (PathBuf, String) {
    let dir = match glob.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let pattern = glob
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (dir, pattern)
}

/// Matches `*` (any run of characters) and `?` (one character).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs_match_names() {
        assert!(glob_match("*.xml", "orders.xml"));
        assert!(!glob_match("*.xml", "orders.xml.tmp"));
        assert!(glob_match("order-?.csv", "order-1.csv"));
        assert!(glob_match("*", "anything"));
        assert!(!glob_match("a*b", "ac"));
    }
}
