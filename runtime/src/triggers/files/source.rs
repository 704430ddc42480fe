//! Where a files trigger looks: a local folder, a folder on an SFTP
//! server, or a key prefix in an S3 bucket. All answer the same few
//! questions (list, read, remove, move), with errors as one-line messages
//! naming the file.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::core::files::{file_json, file_reference, split_glob, NamePattern, INLINE_LIMIT};
use crate::core::ops::format_time;
use crate::engine::integration::AwsDef;
use crate::io::s3::{S3Path, S3};
use crate::io::sftp::{self, SftpUrl};

/// One listed file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    /// The path (local) or URL (SFTP) that names it, as in its `File.path`.
    pub location: String,
    /// The file name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification.
    pub modified: DateTime<Utc>,
}

impl Entry {
    /// The same key as [`super::file_key`] of this file's `File` value.
    pub fn key(&self) -> String {
        let modified = format_time(self.modified);
        format!(
            "file:{}|{}|{}",
            self.location,
            self.size,
            modified.as_str().unwrap_or_default()
        )
    }
}

/// A folder and the glob its file names must match.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// A folder on this machine (relative to the working directory).
    Local {
        /// The folder.
        dir: PathBuf,
        /// The last segment of the glob.
        pattern: NamePattern,
    },
    /// A folder on an SFTP server.
    Sftp {
        /// The folder, with `*` as its last segment (every file, so that
        /// done markers are seen too).
        every_file: SftpUrl,
        /// The last segment of the glob.
        pattern: NamePattern,
        /// The password or private key.
        auth: String,
    },
    /// A "folder" (key prefix) in an S3 bucket.
    S3 {
        /// The bucket and the prefix (ending in `/`, or empty) as key.
        folder: S3Path,
        /// The last segment of the glob.
        pattern: NamePattern,
        /// The `aws:` connection.
        def: AwsDef,
        /// The runtime's HTTP client.
        http: reqwest::Client,
    },
}

impl Source {
    /// Parses a trigger's glob: `inbox/*.xml`, `/data/in/*.csv`,
    /// `sftp://user@host:22/in/*.csv` (with `auth`) or
    /// `s3://bucket/in/*.csv` (with the `via:` connection as `aws`).
    pub fn parse(
        glob: &str,
        auth: Option<&str>,
        aws: Option<(AwsDef, reqwest::Client)>,
    ) -> Result<Source, String> {
        if S3Path::is_s3(glob) {
            let path = S3Path::parse(glob).map_err(|e| format!("files trigger {e}"))?;
            let (def, http) = aws.ok_or_else(|| {
                format!("files trigger {path}: an s3:// folder needs `via:` an `aws:` connection")
            })?;
            if path.file_name().is_empty() {
                return Err(format!("files trigger {path}: the glob names no files"));
            }
            let pattern = NamePattern::new(path.file_name())
                .map_err(|e| format!("files trigger {path}: {e}"))?;
            let folder = path.with_key(path.folder());
            return Ok(Source::S3 {
                folder,
                pattern,
                def,
                http,
            });
        }
        if SftpUrl::is_sftp(glob) {
            let url = SftpUrl::parse(glob).map_err(|e| e.to_string())?;
            let auth = auth
                .filter(|a| !a.is_empty())
                .ok_or_else(|| format!("files trigger {url}: an sftp:// folder needs `auth:`"))?;
            if url.file_name().is_empty() {
                return Err(format!("files trigger {url}: the glob names no files"));
            }
            let pattern = NamePattern::new(url.file_name())
                .map_err(|e| format!("files trigger {url}: {e}"))?;
            let every_file = url.with_path(join(url.parent(), "*"));
            return Ok(Source::Sftp {
                every_file,
                pattern,
                auth: auth.to_string(),
            });
        }
        if glob.contains("://") {
            return Err(format!(
                "files trigger {glob:?}: only local folders, sftp:// and s3:// are supported"
            ));
        }
        if glob.is_empty() || glob.ends_with('/') {
            return Err(format!("files trigger {glob:?}: the glob names no files"));
        }
        let (dir, pattern) = split_glob(Path::new(glob));
        if pattern.is_empty() {
            return Err(format!("files trigger {glob:?}: the glob names no files"));
        }
        let pattern =
            NamePattern::new(&pattern).map_err(|e| format!("files trigger {glob:?}: {e}"))?;
        Ok(Source::Local { dir, pattern })
    }

    /// Whether a file name matches the glob.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Source::Local { pattern, .. }
            | Source::Sftp { pattern, .. }
            | Source::S3 { pattern, .. } => pattern.matches(name),
        }
    }

    /// Every regular file in the folder (matching or not: done markers
    /// need not match the glob). A missing folder lists nothing.
    pub async fn list(&self) -> Result<Vec<Entry>, String> {
        match self {
            Source::Local { dir, .. } => list_local(dir).await,
            Source::Sftp {
                every_file, auth, ..
            } => Ok(sftp::list(every_file, auth)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|f| Entry {
                    location: f.url,
                    name: f.name,
                    size: f.size,
                    modified: f.modified,
                })
                .collect()),
            Source::S3 {
                folder, def, http, ..
            } => Ok(S3 { def, http }
                .list(&folder.bucket, &folder.key)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|o| Entry {
                    location: o.url(),
                    name: o.path.file_name().to_string(),
                    size: o.size,
                    modified: o.modified,
                })
                .collect()),
        }
    }

    /// The `File` value of a listed file: content included up to
    /// [`INLINE_LIMIT`], by reference beyond (the run's trigger record then
    /// holds the path and metadata only).
    pub async fn read(&self, entry: &Entry) -> Result<Value, String> {
        match self {
            Source::Local { .. } => {
                crate::core::files::file_value(Path::new(&entry.location), "files trigger")
                    .await
                    .map_err(|e| e.message)
            }
            Source::Sftp { .. } | Source::S3 { .. } if entry.size > INLINE_LIMIT => {
                Ok(file_reference(
                    &entry.location,
                    &entry.name,
                    entry.size,
                    Some(entry.modified),
                ))
            }
            Source::Sftp { auth, .. } => {
                let url = SftpUrl::parse(&entry.location).map_err(|e| e.to_string())?;
                let (data, file) = sftp::read(&url, auth).await.map_err(|e| e.to_string())?;
                Ok(file_json(&file.url, &file.name, &data, Some(file.modified)))
            }
            Source::S3 { def, http, .. } => {
                let path = S3Path::parse(&entry.location).map_err(|e| e.to_string())?;
                let s3 = S3 { def, http };
                match s3
                    .read(&path, INLINE_LIMIT)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    // The listing's time, so that the File's key is the
                    // entry's (`super::file_key`, `Entry::key`).
                    Some((data, object)) => Ok(file_json(
                        &object.url(),
                        &entry.name,
                        &data,
                        Some(entry.modified),
                    )),
                    // Replaced by a larger object since the listing: the
                    // next scan sees its new size and time.
                    None => Err(format!("{path}: changed while it was read")),
                }
            }
        }
    }

    /// Deletes a file; `false` when it was already gone.
    pub async fn remove(&self, location: &str) -> Result<bool, String> {
        match self {
            Source::Local { .. } => match tokio::fs::remove_file(location).await {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(format!("{location}: {e}")),
            },
            Source::Sftp { auth, .. } => {
                let url = SftpUrl::parse(location).map_err(|e| e.to_string())?;
                sftp::remove(&url, auth).await.map_err(|e| e.to_string())
            }
            Source::S3 { def, http, .. } => {
                let path = S3Path::parse(location).map_err(|e| e.to_string())?;
                S3 { def, http }
                    .remove(&path)
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Moves a file into `folder` (relative folders are taken beside the
    /// file), creating it as needed. A file of the same name there is kept:
    /// the moved one gets a time stamp before its extension. A file already
    /// gone counts as moved (another replica, or an earlier attempt, did it).
    pub async fn move_into(&self, location: &str, name: &str, folder: &str) -> Result<(), String> {
        match self {
            Source::Local { .. } => {
                let from = Path::new(location);
                let base = from.parent().unwrap_or(Path::new("."));
                let dir = base.join(folder);
                tokio::fs::create_dir_all(&dir)
                    .await
                    .map_err(|e| format!("{}: {e}", dir.display()))?;
                let mut to = dir.join(name);
                if tokio::fs::try_exists(&to).await.unwrap_or(false) {
                    to = dir.join(stamped(name, Utc::now()));
                }
                match tokio::fs::rename(from, &to).await {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(format!("{location} → {}: {e}", to.display())),
                }
            }
            Source::Sftp { auth, .. } => {
                let from = SftpUrl::parse(location).map_err(|e| e.to_string())?;
                let dir = if folder.starts_with('/') {
                    folder.to_string()
                } else {
                    join(from.parent(), folder)
                };
                let mut to = from.with_path(join(&dir, name));
                if sftp::stat(&to, auth).await.is_ok() {
                    to = from.with_path(join(&dir, &stamped(name, Utc::now())));
                }
                match sftp::rename(&from, &to, auth).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.is_not_found() && sftp::stat(&from, auth).await.is_err() => Ok(()),
                    Err(e) => Err(e.to_string()),
                }
            }
            Source::S3 { def, http, .. } => {
                let s3 = S3 { def, http };
                let from = S3Path::parse(location).map_err(|e| e.to_string())?;
                // A leading `/` means from the bucket's top; otherwise beside.
                let dir = match folder.strip_prefix('/') {
                    Some(top) => top.to_string(),
                    None => format!("{}{folder}", from.folder()),
                };
                let dir = format!("{}/", dir.trim_end_matches('/'));
                let source = match s3.stat(&from).await {
                    Ok(source) => source,
                    // Gone already: another replica, or an earlier attempt, moved it.
                    Err(e) if e.is_not_found() => return Ok(()),
                    Err(e) => return Err(e.to_string()),
                };
                let mut to = from.with_key(format!("{dir}{name}"));
                match s3.stat(&to).await {
                    // A move is a copy then a delete, not atomic: another
                    // replica copied this very content and has yet to
                    // delete the source. Copying again would leave a
                    // second, stamped copy.
                    Ok(there) if !there.etag.is_empty() && there.etag == source.etag => {
                        return s3
                            .remove(&from)
                            .await
                            .map(|_| ())
                            .map_err(|e| e.to_string());
                    }
                    Ok(_) => to = from.with_key(format!("{dir}{}", stamped(name, Utc::now()))),
                    Err(_) => {}
                }
                match s3.copy(&from, &to).await {
                    Ok(_) => s3
                        .remove(&from)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    // Gone already: another replica, or an earlier attempt, moved it.
                    Err(e) if e.is_not_found() && s3.stat(&from).await.is_err() => Ok(()),
                    Err(e) => Err(e.to_string()),
                }
            }
        }
    }
}

/// `dir` + `/` + `name`, without doubling the slash.
fn join(dir: &str, name: &str) -> String {
    format!(
        "{}/{}",
        dir.trim_end_matches('/'),
        name.trim_start_matches('/')
    )
}

/// `report.csv` → `report.20260101T120000.123Z.csv`.
fn stamped(name: &str, now: DateTime<Utc>) -> String {
    let stamp = now.format("%Y%m%dT%H%M%S%.3fZ");
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!("{stem}.{stamp}.{ext}"),
        _ => format!("{name}.{stamp}"),
    }
}

async fn list_local(dir: &Path) -> Result<Vec<Entry>, String> {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    let mut out = Vec::new();
    loop {
        let entry = match entries.next_entry().await {
            Ok(Some(e)) => e,
            Ok(None) => break,
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        };
        // Gone between the listing and the look: skip it.
        let Ok(meta) = entry.metadata().await else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let Ok(modified) = meta.modified() else {
            continue;
        };
        let path = dir.join(entry.file_name());
        out.push(Entry {
            location: display_path(&path),
            name: entry.file_name().to_string_lossy().into_owned(),
            size: meta.len(),
            modified: modified.into(),
        });
    }
    Ok(out)
}

/// `./a.csv` is shown (and keyed) as `a.csv`, as the user would write it.
fn display_path(path: &Path) -> String {
    let p = path.strip_prefix(".").unwrap_or(path);
    p.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_go_before_the_extension() {
        let t = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.678Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(stamped("a.csv", t), "a.20260102T030405.678Z.csv");
        assert_eq!(stamped("README", t), "README.20260102T030405.678Z");
        assert_eq!(stamped(".hidden", t), ".hidden.20260102T030405.678Z");
    }

    #[test]
    fn globs_parse_into_folder_and_pattern() {
        let Ok(Source::Local { dir, pattern }) = Source::parse("inbox/*.xml", None, None) else {
            panic!("a local folder")
        };
        assert_eq!((dir, pattern.as_str()), (PathBuf::from("inbox"), "*.xml"));
        let Ok(Source::Local { dir, .. }) = Source::parse("*.csv", None, None) else {
            panic!("a local folder")
        };
        assert_eq!(dir, PathBuf::from("."));
        let Ok(Source::Sftp {
            every_file,
            pattern,
            ..
        }) = Source::parse("sftp://erp@files.test:2222/out/*.xml", Some("pw"), None)
        else {
            panic!("an sftp folder")
        };
        assert_eq!(
            (every_file.path.as_str(), pattern.as_str()),
            ("/out/*", "*.xml")
        );
        assert!(Source::parse("sftp://erp@files.test/out/*.xml", None, None).is_err());
        assert!(Source::parse("ftp://host/x/*.csv", None, None).is_err());
        assert!(Source::parse("inbox/", None, None).is_err());
    }
}
