//! Files as values: the record a file becomes (`File` in the language) for
//! the files trigger and the `file.*` steps, and the glob patterns both
//! match names with.

use std::io;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::core::error::StepError;
use crate::core::ops::format_time;

/// The largest file whose content a run holds (`.text`, `.bytes`, and the
/// trigger record of a files trigger). A larger file is passed by
/// reference — its [`file_reference`], path and metadata — and read as a
/// stream (`csv.rows`, `file.move`), so memory stays bounded whatever its
/// size.
pub const INLINE_LIMIT: u64 = 8 * 1024 * 1024;

/// The `File` value of a path: `{ path, name, size, modified, bytes }`
/// for a file of at most [`INLINE_LIMIT`] bytes, its [`file_reference`]
/// for a larger one.
pub(crate) async fn file_value(path: &Path, func: &str) -> Result<Value, StepError> {
    use tokio::io::AsyncReadExt as _;
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| io_error(func, path, &e))?;
    let meta = file
        .metadata()
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
    let location = path.display().to_string();
    if meta.len() > INLINE_LIMIT {
        return Ok(file_reference(&location, &name, meta.len(), modified));
    }
    // Bounded even if the file grows after the look at its size.
    let mut data = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(INLINE_LIMIT + 1)
        .read_to_end(&mut data)
        .await
        .map_err(|e| io_error(func, path, &e))?;
    if data.len() as u64 > INLINE_LIMIT {
        return Ok(file_reference(
            &location,
            &name,
            data.len() as u64,
            modified,
        ));
    }
    Ok(file_json(&location, &name, &data, modified))
}

/// The content of a `File` value: its `bytes` decoded, else its `text` (a
/// File a test or `--input` gave in part); `None` for a file passed by
/// reference (or a value that is no File). The error says what is wrong
/// with `bytes`.
pub(crate) fn file_data(file: &Value) -> Option<Result<Vec<u8>, String>> {
    match (file.get("bytes"), file.get("text")) {
        (Some(Value::String(b)), _) => Some(crate::core::bytes::decode(b)),
        (_, Some(Value::String(t))) => Some(Ok(t.as_bytes().to_vec())),
        _ => None,
    }
}

/// The `File` value of a file too large to hold ([`INLINE_LIMIT`]):
/// `{ path, name, size, modified }`, without `text` and `bytes`.
pub(crate) fn file_reference(
    path: &str,
    name: &str,
    size: u64,
    modified: Option<chrono::DateTime<chrono::Utc>>,
) -> Value {
    json!({
        "path": path,
        "name": name,
        "size": size,
        "modified": modified.map_or(Value::Null, format_time),
    })
}

/// The `File` value of file contents, local or remote (`path` is then the
/// `sftp://` URL): `{ path, name, size, modified, bytes }`.
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
        // The content once: `.text` is derived from it when read
        // (`ops::file_content`), so runs and journals do not hold it twice.
        "bytes": crate::core::bytes::encode(data),
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

/// A file-name pattern (the last segment of a files trigger's glob or of
/// `file.list`): `*` any run of characters, `?` one, `[a-z]` / `[!0-9]` a
/// class, `{csv,txt}` alternatives; never across `/`, except `**/` (any
/// number of folders, in `file.list`'s `in/**/*.csv`).
#[derive(Clone, Debug)]
pub struct NamePattern {
    glob: crate::core::glob::Glob,
    text: String,
}

impl NamePattern {
    /// Compiles `pattern`; the error says what is wrong with it.
    pub fn new(pattern: &str) -> Result<NamePattern, String> {
        crate::core::glob::Glob::new(pattern)
            .map(|glob| NamePattern {
                glob,
                text: pattern.to_string(),
            })
            .map_err(|e| format!("invalid file-name pattern {pattern:?}: it {e}"))
    }

    /// Whether file name `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        self.glob.is_match(name)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

pub(crate) fn io_error(func: &str, path: &Path, e: &io::Error) -> StepError {
    let message = format!("{func}: {}: {e}", path.display());
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied | io::ErrorKind::InvalidInput => {
            StepError::permanent(message)
        }
        _ => StepError::retryable(message),
    }
}

/// Whether `path` stays inside `folder` once `.` and `..` are resolved
/// (lexically: neither needs to exist). `folder` is a path's literal
/// prefix up to its last `/` (`out/`, `sftp://host/outbox/`; empty for the
/// working folder), and the path must be that folder or below it.
pub fn stays_within(path: &str, folder: &str) -> bool {
    fn parts(p: &str) -> Option<Vec<&str>> {
        let mut out = Vec::new();
        for part in p.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    out.pop()?;
                }
                part => out.push(part),
            }
        }
        Some(out)
    }
    let absolute = |p: &str| p.starts_with('/');
    match (parts(path), parts(folder)) {
        (Some(path_parts), Some(folder_parts)) => {
            absolute(path) == absolute(folder) && path_parts.starts_with(&folder_parts)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::stays_within;

    #[test]
    fn paths_stay_within_their_folder_or_not() {
        assert!(stays_within("out/a.txt", "out/"));
        assert!(stays_within("out/x/../a.txt", "out/"));
        assert!(stays_within("./out/a.txt", "out/"));
        assert!(stays_within("a.txt", ""));
        assert!(stays_within("/data/in/a.csv", "/data/in/"));
        assert!(stays_within(
            "sftp://host/outbox/a.xml",
            "sftp://host/outbox/"
        ));
        assert!(!stays_within("out/../a.txt", "out/"));
        assert!(!stays_within("out/../../etc/passwd", "out/"));
        assert!(!stays_within("/etc/passwd", ""));
        assert!(!stays_within("../a.txt", ""));
        assert!(!stays_within("/data/in/../secrets", "/data/in/"));
        assert!(!stays_within(
            "sftp://host/outbox/../etc/x",
            "sftp://host/outbox/"
        ));
        assert!(!stays_within("out2/a.txt", "out/"));
    }
}
