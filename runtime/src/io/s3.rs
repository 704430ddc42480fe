//! S3 objects for `file.*` steps and files triggers on `s3://` paths,
//! through an `aws:` connection ([`crate::io::aws`]).
//!
//! Terms:
//! - **path**: `s3://BUCKET/KEY` ([`S3Path`]); for [`list`] the key's last
//!   segment may be a glob (matched here: S3 lists by prefix only).
//! - **addressing**: path-style (`ENDPOINT/BUCKET/KEY`) when the connection
//!   names an `endpoint:` (emulators, MinIO), virtual-hosted
//!   (`https://BUCKET.s3.REGION.amazonaws.com/KEY`) otherwise.
//! - **streaming**: [`download`] writes an object to a local file chunk by
//!   chunk as it arrives; [`upload`] sends a local file as a multipart
//!   upload of [`PART_SIZE`] parts, so memory stays bounded whatever the
//!   size (a failed upload is aborted, leaving nothing behind).

use std::path::Path;

use chrono::{DateTime, Utc};
use reqwest::Method;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::aws::{self, xml_text, AwsError, Payload};
use crate::engine::integration::AwsDef;

/// The size of each part of a multipart upload (S3's smallest is 5 MiB).
pub(crate) const PART_SIZE: usize = 8 * 1024 * 1024;

/// A parsed `s3://bucket/key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct S3Path {
    pub bucket: String,
    pub key: String,
}

impl S3Path {
    /// Whether `s` is an `s3://` path (as opposed to a local one).
    pub(crate) fn is_s3(s: &str) -> bool {
        s.get(..5)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("s3://"))
    }

    /// Parses `s3://bucket/key` (the key may be empty for [`list`]).
    pub(crate) fn parse(s: &str) -> Result<S3Path, AwsError> {
        let rest = s.get(5..).filter(|_| S3Path::is_s3(s)).unwrap_or_default();
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b));
        if !valid_bucket {
            return Err(AwsError::permanent(format!(
                "{s}: not an s3://BUCKET/KEY path (a bucket name is 3 to 63 lowercase letters, digits, `-` and `.`)"
            )));
        }
        Ok(S3Path {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }

    /// The same bucket, another key.
    pub(crate) fn with_key(&self, key: impl Into<String>) -> S3Path {
        S3Path {
            bucket: self.bucket.clone(),
            key: key.into(),
        }
    }

    /// The key's last segment.
    pub(crate) fn file_name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or_default()
    }

    /// The key up to and including its last `/` (empty at the top).
    pub(crate) fn folder(&self) -> &str {
        &self.key[..self.key.rfind('/').map_or(0, |i| i + 1)]
    }
}

impl std::fmt::Display for S3Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// An object's name, size, modification time and ETag.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Object {
    pub path: S3Path,
    pub size: u64,
    pub modified: DateTime<Utc>,
    /// S3's tag of the content (quoted, as S3 gives it; empty when not
    /// given): equal tags, equal content.
    pub etag: String,
}

impl Object {
    /// `s3://bucket/key`, its `File.path`.
    pub(crate) fn url(&self) -> String {
        self.path.to_string()
    }
}

/// An S3 client: a connection's settings and the runtime's HTTP client.
#[derive(Clone)]
pub(crate) struct S3<'a> {
    pub def: &'a AwsDef,
    pub http: &'a reqwest::Client,
}

impl S3<'_> {
    /// The URL of `key` in `bucket` (no query).
    fn url(&self, bucket: &str, key: &str) -> String {
        let key = aws::uri_encode(key, true);
        match &self.def.endpoint {
            Some(endpoint) => format!("{}/{bucket}/{key}", endpoint.trim_end_matches('/')),
            None => format!(
                "https://{bucket}.s3.{}.amazonaws.com/{key}",
                self.def.region
            ),
        }
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        payload: Payload<'_>,
        what: &str,
    ) -> Result<reqwest::Response, AwsError> {
        let client = aws::AwsClient {
            def: self.def,
            http: self.http,
        };
        client.send("s3", method, url, headers, payload, what).await
    }

    /// The object's size and modification time.
    pub(crate) async fn stat(&self, path: &S3Path) -> Result<Object, AwsError> {
        let what = path.to_string();
        let resp = self
            .send(
                Method::HEAD,
                &self.url(&path.bucket, &path.key),
                &[],
                Payload::EMPTY,
                &what,
            )
            .await?;
        let size = resp
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0);
        Ok(Object {
            path: path.clone(),
            size,
            modified: last_modified(&resp),
            etag: etag(&resp),
        })
    }

    /// The answer to a GET of the object, its body still to read.
    async fn get_object(&self, path: &S3Path, what: &str) -> Result<reqwest::Response, AwsError> {
        let url = self.url(&path.bucket, &path.key);
        self.send(Method::GET, &url, &[], Payload::EMPTY, what)
            .await
    }

    /// The whole object with what [`S3::stat`] gives; `None` when it is
    /// larger than `limit` bytes (the caller looked at its size, but it
    /// may have been replaced since).
    pub(crate) async fn read(
        &self,
        path: &S3Path,
        limit: u64,
    ) -> Result<Option<(Vec<u8>, Object)>, AwsError> {
        let what = path.to_string();
        let mut resp = self.get_object(path, &what).await?;
        let modified = last_modified(&resp);
        let etag = etag(&resp);
        let mut data = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| transfer_error(&what, e))? {
            data.extend_from_slice(&chunk);
            if data.len() as u64 > limit {
                return Ok(None);
            }
        }
        let object = Object {
            path: path.clone(),
            size: data.len() as u64,
            modified,
            etag,
        };
        Ok(Some((data, object)))
    }

    /// Streams the object into the new local file `to` (synced), in
    /// bounded memory.
    pub(crate) async fn download(&self, path: &S3Path, to: &Path) -> Result<(), AwsError> {
        let what = path.to_string();
        let mut resp = self.get_object(path, &what).await?;
        let local = |e: std::io::Error| AwsError::retryable(format!("{}: {e}", to.display()));
        let mut file = tokio::fs::File::create(to).await.map_err(local)?;
        while let Some(chunk) = resp.chunk().await.map_err(|e| transfer_error(&what, e))? {
            file.write_all(&chunk).await.map_err(local)?;
        }
        file.sync_all().await.map_err(local)
    }

    /// Writes `data` as the object: one request up to [`PART_SIZE`], a
    /// multipart upload beyond. Returns the object as stored.
    pub(crate) async fn write(&self, path: &S3Path, data: &[u8]) -> Result<Object, AwsError> {
        if data.len() <= PART_SIZE {
            let what = path.to_string();
            let payload = Payload {
                bytes: data,
                content_type: Some("application/octet-stream"),
            };
            self.send(
                Method::PUT,
                &self.url(&path.bucket, &path.key),
                &[],
                payload,
                &what,
            )
            .await?;
        } else {
            let mut parts = data.chunks(PART_SIZE);
            self.multipart(path, || {
                let part = parts.next().map(<[u8]>::to_vec);
                async move { Ok(part) }
            })
            .await?;
        }
        self.stat(path).await
    }

    /// Sends the local file `from` as the object, streamed in parts of
    /// [`PART_SIZE`] (one part in memory at a time).
    pub(crate) async fn upload(&self, from: &Path, path: &S3Path) -> Result<Object, AwsError> {
        let local = |e: std::io::Error| AwsError::retryable(format!("{}: {e}", from.display()));
        let file = tokio::fs::File::open(from).await.map_err(|e| {
            let kind = e.kind();
            let error = local(e);
            if kind == std::io::ErrorKind::NotFound {
                AwsError::permanent(error.message)
            } else {
                error
            }
        })?;
        let file = std::sync::Arc::new(tokio::sync::Mutex::new(file));
        self.multipart(path, || {
            let file = file.clone();
            async move {
                let mut part = Vec::with_capacity(PART_SIZE);
                let mut file = file.lock().await;
                while part.len() < PART_SIZE {
                    let mut limited = (&mut *file).take((PART_SIZE - part.len()) as u64);
                    if limited.read_to_end(&mut part).await.map_err(local)? == 0 {
                        break;
                    }
                }
                // An empty file is one empty part: S3 completes no upload
                // without parts.
                Ok(Some(part).filter(|p| !p.is_empty()))
            }
        })
        .await?;
        self.stat(path).await
    }

    /// A multipart upload of the parts `next_part` yields (at least one,
    /// an empty object being one empty part); aborted on any failure.
    async fn multipart<F, Fut>(&self, path: &S3Path, mut next_part: F) -> Result<(), AwsError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<Vec<u8>>, AwsError>>,
    {
        let what = path.to_string();
        let base = self.url(&path.bucket, &path.key);
        let resp = self
            .send(
                Method::POST,
                &format!("{base}?uploads"),
                &[],
                Payload::EMPTY,
                &what,
            )
            .await?;
        let answer = resp.text().await.map_err(|e| transfer_error(&what, e))?;
        let upload_id = xml_text(&answer, "UploadId").ok_or_else(|| {
            AwsError::retryable(format!(
                "{what}: the multipart upload was started without an UploadId"
            ))
        })?;
        let upload = format!("uploadId={}", aws::uri_encode(&upload_id, false));
        let sent = self.send_parts(&base, &upload, &what, &mut next_part).await;
        let completed = match sent {
            Ok(etags) => self.complete(&base, &upload, &etags, &what).await,
            Err(e) => Err(e),
        };
        if completed.is_err() {
            // Best effort: an upload left open is billed until S3's
            // lifecycle rules drop it.
            let _ = self
                .send(
                    Method::DELETE,
                    &format!("{base}?{upload}"),
                    &[],
                    Payload::EMPTY,
                    &what,
                )
                .await;
        }
        completed
    }

    /// Sends every part; returns their ETags in order.
    async fn send_parts<F, Fut>(
        &self,
        base: &str,
        upload: &str,
        what: &str,
        next_part: &mut F,
    ) -> Result<Vec<String>, AwsError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<Vec<u8>>, AwsError>>,
    {
        let mut etags = Vec::new();
        loop {
            let part = match next_part().await? {
                Some(part) => part,
                None if etags.is_empty() => Vec::new(),
                None => return Ok(etags),
            };
            let number = etags.len() + 1;
            let url = format!("{base}?partNumber={number}&{upload}");
            let payload = Payload {
                bytes: &part,
                content_type: None,
            };
            let resp = self.send(Method::PUT, &url, &[], payload, what).await?;
            let etag = resp
                .headers()
                .get(reqwest::header::ETAG)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    AwsError::retryable(format!("{what}: part {number} was stored without an ETag"))
                })?;
            etags.push(etag.to_string());
            if part.is_empty() {
                return Ok(etags);
            }
        }
    }

    async fn complete(
        &self,
        base: &str,
        upload: &str,
        etags: &[String],
        what: &str,
    ) -> Result<(), AwsError> {
        let mut xml = String::from("<CompleteMultipartUpload>");
        for (i, etag) in etags.iter().enumerate() {
            let etag = quick_xml::escape::escape(etag.as_str());
            xml.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{etag}</ETag></Part>",
                i + 1
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        let payload = Payload {
            bytes: xml.as_bytes(),
            content_type: Some("application/xml"),
        };
        let resp = self
            .send(
                Method::POST,
                &format!("{base}?{upload}"),
                &[],
                payload,
                what,
            )
            .await?;
        // S3 may answer 200 with an error in the body once the parts are
        // being joined.
        let answer = resp.text().await.map_err(|e| transfer_error(what, e))?;
        if answer.contains("<Error>") {
            let detail = aws::error_detail(&answer, &[&self.def.access_key, &self.def.secret_key]);
            return Err(AwsError::retryable(format!(
                "{what}: completing the upload{detail}"
            )));
        }
        Ok(())
    }

    /// Deletes the object; `false` when it was not there.
    pub(crate) async fn remove(&self, path: &S3Path) -> Result<bool, AwsError> {
        match self.stat(path).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => return Ok(false),
            Err(e) => return Err(e),
        }
        let what = path.to_string();
        self.send(
            Method::DELETE,
            &self.url(&path.bucket, &path.key),
            &[],
            Payload::EMPTY,
            &what,
        )
        .await?;
        Ok(true)
    }

    /// Copies `from` to `to` inside S3 (objects up to 5 GB, S3's limit of
    /// one copy request).
    pub(crate) async fn copy(&self, from: &S3Path, to: &S3Path) -> Result<Object, AwsError> {
        let what = format!("{from} → {to}");
        let source = format!("/{}/{}", from.bucket, aws::uri_encode(&from.key, true));
        let resp = self
            .send(
                Method::PUT,
                &self.url(&to.bucket, &to.key),
                &[("x-amz-copy-source", &source)],
                Payload::EMPTY,
                &what,
            )
            .await?;
        let answer = resp.text().await.map_err(|e| transfer_error(&what, e))?;
        if answer.contains("<Error>") {
            let detail = aws::error_detail(&answer, &[&self.def.access_key, &self.def.secret_key]);
            return Err(AwsError::retryable(format!("{what}: copying{detail}")));
        }
        self.stat(to).await
    }

    /// The objects directly in `folder` (a key prefix ending in `/`, or
    /// empty), in key order; "subfolders" are left out.
    pub(crate) async fn list(&self, bucket: &str, folder: &str) -> Result<Vec<Object>, AwsError> {
        let what = format!("s3://{bucket}/{folder}");
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = format!(
                "delimiter=%2F&list-type=2&prefix={}",
                aws::uri_encode(folder, false)
            );
            if let Some(t) = &token {
                query = format!("continuation-token={}&{query}", aws::uri_encode(t, false));
            }
            let url = format!("{}?{query}", self.url(bucket, ""));
            let resp = self
                .send(Method::GET, &url, &[], Payload::EMPTY, &what)
                .await?;
            let answer = resp.text().await.map_err(|e| transfer_error(&what, e))?;
            objects.extend(parse_listing(bucket, &answer));
            token = xml_text(&answer, "NextContinuationToken")
                .filter(|_| xml_text(&answer, "IsTruncated").as_deref() == Some("true"));
            if token.is_none() {
                return Ok(objects);
            }
        }
    }
}

/// The objects of one ListObjectsV2 answer.
fn parse_listing(bucket: &str, xml: &str) -> Vec<Object> {
    xml.split("<Contents>")
        .skip(1)
        .filter_map(|entry| {
            let entry = &entry[..entry.find("</Contents>")?];
            let key = xml_text(entry, "Key")?;
            let size = xml_text(entry, "Size")?.parse().ok()?;
            let modified = xml_text(entry, "LastModified")
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map_or_else(Utc::now, |t| t.with_timezone(&Utc));
            Some(Object {
                path: S3Path {
                    bucket: bucket.to_string(),
                    key,
                },
                size,
                modified,
                etag: xml_text(entry, "ETag").unwrap_or_default(),
            })
        })
        .filter(|o| !o.path.key.ends_with('/'))
        .collect()
}

/// The `ETag` header; empty when missing.
fn etag(resp: &reqwest::Response) -> String {
    resp.headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// The `Last-Modified` header (an HTTP date); now when missing.
fn last_modified(resp: &reqwest::Response) -> DateTime<Utc> {
    resp.headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|t| DateTime::parse_from_rfc2822(t).ok())
        .map_or_else(Utc::now, |t| t.with_timezone(&Utc))
}

fn transfer_error(what: &str, e: reqwest::Error) -> AwsError {
    AwsError::retryable(format!(
        "{what}: {}",
        crate::core::error::error_chain(&e.without_url())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_into_bucket_and_key() {
        let p = S3Path::parse("s3://drop-in/in/2026/a.csv").unwrap();
        assert_eq!(
            (p.bucket.as_str(), p.key.as_str()),
            ("drop-in", "in/2026/a.csv")
        );
        assert_eq!((p.folder(), p.file_name()), ("in/2026/", "a.csv"));
        assert_eq!(p.to_string(), "s3://drop-in/in/2026/a.csv");
        assert!(S3Path::parse("s3://Bad_Bucket/x").is_err());
        assert!(S3Path::parse("s3://").is_err());
        assert!(S3Path::is_s3("S3://x"));
        assert!(!S3Path::is_s3("sftp://x"));
    }

    #[test]
    fn addressing_is_path_style_with_an_endpoint() {
        let http = reqwest::Client::new();
        let mut def = AwsDef {
            region: "eu-west-1".into(),
            access_key: "a".into(),
            secret_key: "s".into(),
            endpoint: None,
        };
        let url = S3 {
            def: &def,
            http: &http,
        }
        .url("b1", "in/a b.csv");
        assert_eq!(url, "https://b1.s3.eu-west-1.amazonaws.com/in/a%20b.csv");
        def.endpoint = Some("http://127.0.0.1:9000/".into());
        let url = S3 {
            def: &def,
            http: &http,
        }
        .url("b1", "k");
        assert_eq!(url, "http://127.0.0.1:9000/b1/k");
    }

    #[test]
    fn listings_skip_folders_and_unescape_keys() {
        let xml = "<ListBucketResult><Contents><Key>in/a&amp;b.csv</Key><LastModified>2026-01-02T03:04:05.000Z</LastModified><Size>12</Size></Contents>\
                   <Contents><Key>in/sub/</Key><LastModified>2026-01-02T03:04:05.000Z</LastModified><Size>0</Size></Contents></ListBucketResult>";
        let objects = parse_listing("b", xml);
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].path.key, "in/a&b.csv");
        assert_eq!(objects[0].size, 12);
    }
}
