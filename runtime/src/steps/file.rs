//! `file.*` on the local filesystem (paths relative to the working
//! directory) and on `sftp://` URLs (in [`remote`], with `auth:`). Each
//! function is a step; a missing file or a permission problem is permanent
//! (another attempt will not fix it), other I/O errors are retried.

mod remote;
mod s3;

use std::io;
use std::path::{Path, PathBuf};

use futures::future::{BoxFuture, FutureExt as _};
use serde_json::Value;

use crate::core::error::StepError;
use crate::core::files::{file_value, io_error, split_glob, NamePattern};
use crate::engine::ctx::StepCall;

/// The path parameters of the `file.*` steps: position, name, and the name
/// of the folder generated code passes beside it (see [`confine`]).
const PATH_PARAMS: [(usize, &str, &str); 4] = [
    (0, "path", "path_within"),
    (0, "from", "from_within"),
    (1, "to", "to_within"),
    (0, "glob", "glob_within"),
];

/// Refuses a path built from run data that leaves the folder its trusted
/// prefix names: generated code passes the text before the first
/// interpolation of run data as `NAME_within` beside a path parameter
/// (`"out/${name}"` gives `path_within: "out/"`; config values count as
/// trusted), and the folder is that text up to its last `/`. So
/// `name = "../../etc/passwd"` is refused here.
pub(crate) fn confine(call: &StepCall, func: &str) -> Result<(), StepError> {
    for (i, name, within) in PATH_PARAMS {
        let Some(prefix) = call.args.get_named(within).and_then(Value::as_str) else {
            continue;
        };
        let folder = &prefix[..prefix.rfind('/').map_or(0, |end| end + 1)];
        let path = call.args.param(i, name).as_str().unwrap_or_default();
        if !crate::core::files::stays_within(path, folder) {
            return Err(StepError::permanent(format!(
                "{func}: `{name}` {path:?} leaves the folder {folder:?} it is built in (a value of the run put `..` or `/` in it)"
            )));
        }
    }
    Ok(())
}

fn path_arg(call: &StepCall, i: usize, name: &str, func: &str) -> Result<PathBuf, StepError> {
    call.args
        .param(i, name)
        .as_str()
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| StepError::permanent(format!("{func}: `{name}` must be a non-empty String")))
}

async fn create_parent(path: &Path, func: &str) -> Result<(), StepError> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| io_error(func, parent, &e)),
        _ => Ok(()),
    }
}

/// Writes `data` to a new file at `path` and waits until it is on disk.
async fn write_synced(path: &Path, data: &[u8]) -> io::Result<()> {
    use tokio::io::AsyncWriteExt as _;
    let mut file = tokio::fs::File::create(path).await?;
    file.write_all(data).await?;
    file.sync_all().await
}

/// Makes a rename or a new entry in `path`'s folder durable: a step is
/// journaled as done only once what it did survives a power cut.
async fn sync_folder_of(path: &Path) -> io::Result<()> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    tokio::fs::File::open(folder).await?.sync_all().await
}

/// The data to write: text as UTF-8, or `Bytes` (see [`Args::data`]).
///
/// [`Args::data`]: crate::engine::ctx::Args::data
fn content_arg(call: &StepCall, func: &str) -> Result<Vec<u8>, StepError> {
    match call.args.data(1, "content") {
        Ok(Some(data)) => Ok(data),
        Ok(None) => Err(StepError::permanent(format!(
            "{func}: `content` must be a String or Bytes"
        ))),
        Err(e) => Err(StepError::permanent(format!("{func}: {e}"))),
    }
}

/// `file.read(path)` → File.
pub(crate) fn read(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    async move {
        confine(&call, "file.read")?;
        if let Some(path) = s3::path_param(&call, 0, "path", "file.read")? {
            return s3::read(&call, path).await;
        }
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
        confine(&call, f)?;
        let content = content_arg(&call, f)?;
        if let Some(path) = s3::path_param(&call, 0, "path", f)? {
            return s3::write(&call, path, &content).await;
        }
        if let Some(url) = remote::url_param(&call, 0, "path", f)? {
            return remote::write(&call, url, &content, false).await;
        }
        let path = path_arg(&call, 0, "path", f)?;
        create_parent(&path, f).await?;
        let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
        write_synced(&tmp, &content)
            .await
            .map_err(|e| io_error(f, &tmp, &e))?;
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|e| io_error(f, &path, &e))?;
        sync_folder_of(&path)
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
        confine(&call, f)?;
        let content = content_arg(&call, f)?;
        if s3::path_param(&call, 0, "path", f)?.is_some() {
            return Err(StepError::permanent(format!(
                "{f}: S3 objects cannot be appended to; write the whole object with file.write"
            )));
        }
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
        file.write_all(&content)
            .await
            .map_err(|e| io_error(f, &path, &e))?;
        // On disk before the step is journaled as done.
        file.sync_all().await.map_err(|e| io_error(f, &path, &e))?;
        file_value(&path, f).await
    }
    .boxed()
}

/// `file.move(from, to)` → the File at its new place.
pub(crate) fn move_file(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    async move {
        let f = "file.move";
        confine(&call, f)?;
        let from = path_arg(&call, 0, "from", f)?;
        let to = path_arg(&call, 1, "to", f)?;
        let from_s3 = s3::path_param(&call, 0, "from", f)?;
        let to_s3 = s3::path_param(&call, 1, "to", f)?;
        if from_s3.is_some() || to_s3.is_some() {
            let sftp = |p: &Path| crate::io::sftp::SftpUrl::is_sftp(&p.to_string_lossy());
            if sftp(&from) || sftp(&to) {
                return Err(StepError::permanent(format!(
                    "{f}: between S3 and an SFTP server, move through a local file"
                )));
            }
            let from = from_s3.ok_or(from.as_path());
            let to = to_s3.ok_or(to.as_path());
            return s3::move_file(&call, from, to).await;
        }
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
        for moved in [&to, &from] {
            sync_folder_of(moved)
                .await
                .map_err(|e| io_error(f, moved, &e))?;
        }
        file_value(&to, f).await
    }
    .boxed()
}

/// `file.delete(path)` → true when the file existed.
pub(crate) fn delete(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    async move {
        let f = "file.delete";
        confine(&call, f)?;
        if let Some(path) = s3::path_param(&call, 0, "path", f)? {
            return s3::delete(&call, path).await;
        }
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
/// segment (a [`NamePattern`]) in its folder, sorted by name.
pub(crate) fn list(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    async move {
        let f = "file.list";
        confine(&call, f)?;
        if let Some(glob) = s3::path_param(&call, 0, "glob", f)? {
            return s3::list(&call, glob).await;
        }
        if let Some(url) = remote::url_param(&call, 0, "glob", f)? {
            return remote::list(&call, url).await;
        }
        let glob = path_arg(&call, 0, "glob", f)?;
        let (dir, pattern) = split_recursive_glob(&glob);
        let pattern =
            NamePattern::new(&pattern).map_err(|e| StepError::permanent(format!("{f}: {e}")))?;
        let mut names = Vec::new();
        collect_matching(&dir, "", &pattern, 0, &mut names)
            .await
            .map_err(|(path, e)| io_error(f, &path, &e))?;
        names.sort();
        let mut files = Vec::with_capacity(names.len());
        for name in names {
            files.push(file_value(&dir.join(name), f).await?);
        }
        Ok(Value::Array(files))
    }
    .boxed()
}

/// How deep `**` looks below its folder: enough for any real tree, and a
/// bound on a tree that loops through hard-linked folders.
const MAX_DEPTH: usize = 32;

/// A `file.list` glob split into the folder to look in and the pattern for
/// paths below it: `in/*.csv` → (`in`, `*.csv`); with `**` the split is at
/// the first segment holding a wildcard, so `in/**/*.csv` → (`in`,
/// `**/*.csv`), matched against paths relative to `in`.
fn split_recursive_glob(glob: &Path) -> (PathBuf, String) {
    let text = glob.to_string_lossy();
    if !text.contains("**") {
        return split_glob(glob);
    }
    let segments: Vec<&str> = text.split('/').collect();
    let first_wild = segments
        .iter()
        .position(|s| s.contains(['*', '?', '[', '{']))
        .unwrap_or(segments.len() - 1);
    let dir = segments[..first_wild].join("/");
    let dir = if dir.is_empty() && text.starts_with('/') {
        PathBuf::from("/")
    } else if dir.is_empty() {
        PathBuf::from(".")
    } else {
        PathBuf::from(dir)
    };
    (dir, segments[first_wild..].join("/"))
}

/// Adds to `out` the paths (relative to the listed folder, `/`-separated)
/// of the regular files below `dir` matching `pattern`. Symbolic links to
/// folders are not followed. A missing folder holds nothing.
fn collect_matching<'a>(
    dir: &'a Path,
    prefix: &'a str,
    pattern: &'a NamePattern,
    depth: usize,
    out: &'a mut Vec<String>,
) -> BoxFuture<'a, Result<(), (PathBuf, io::Error)>> {
    async move {
        let here = dir.join(prefix);
        let mut entries = match tokio::fs::read_dir(&here).await {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err((here, e)),
        };
        while let Some(entry) = entries.next_entry().await.map_err(|e| (here.clone(), e))? {
            let Ok(kind) = entry.file_type().await else {
                continue;
            };
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            if kind.is_file() && pattern.matches(&rel) {
                out.push(rel);
            } else if kind.is_dir() && depth < MAX_DEPTH && pattern.as_str().contains("**") {
                collect_matching(dir, &rel, pattern, depth + 1, out).await?;
            }
        }
        Ok(())
    }
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::NamePattern;

    #[test]
    fn double_stars_split_at_the_first_wildcard() {
        use std::path::{Path, PathBuf};
        let split = |g: &str| super::split_recursive_glob(Path::new(g));
        assert_eq!(split("in/*.csv"), (PathBuf::from("in"), "*.csv".into()));
        assert_eq!(
            split("in/**/*.csv"),
            (PathBuf::from("in"), "**/*.csv".into())
        );
        assert_eq!(
            split("/d/x/**/a/*.csv"),
            (PathBuf::from("/d/x"), "**/a/*.csv".into())
        );
        assert_eq!(split("**/*.csv"), (PathBuf::from("."), "**/*.csv".into()));
        let pattern = NamePattern::new("**/*.csv").unwrap();
        assert!(pattern.matches("a.csv") && pattern.matches("x/y/a.csv"));
        assert!(!pattern.matches("x/a.txt"));
    }

    #[tokio::test]
    async fn double_stars_list_files_in_subfolders() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["a.csv", "x/b.csv", "x/y/c.csv", "x/y/d.txt"] {
            let path = dir.path().join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "h\n").unwrap();
        }
        let mut found = Vec::new();
        let pattern = NamePattern::new("**/*.csv").unwrap();
        super::collect_matching(dir.path(), "", &pattern, 0, &mut found)
            .await
            .unwrap();
        found.sort();
        assert_eq!(found, ["a.csv", "x/b.csv", "x/y/c.csv"]);
        let mut flat = Vec::new();
        let pattern = NamePattern::new("*.csv").unwrap();
        super::collect_matching(dir.path(), "", &pattern, 0, &mut flat)
            .await
            .unwrap();
        assert_eq!(flat, ["a.csv"], "without `**` only the folder itself");
    }

    #[test]
    fn name_patterns_wrap_the_matcher_and_name_the_pattern_in_errors() {
        // The syntax itself is tested in core::glob.
        let pattern = NamePattern::new("stock.{csv,txt}").unwrap();
        assert!(pattern.matches("stock.txt") && !pattern.matches("a/stock.txt"));
        assert_eq!(pattern.as_str(), "stock.{csv,txt}");
        let e = NamePattern::new("order-[0-9.csv").unwrap_err();
        assert_eq!(
            e,
            "invalid file-name pattern \"order-[0-9.csv\": it has a `[` class that is never closed"
        );
    }
}
