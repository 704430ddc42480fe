//! `file.*` on `s3://bucket/key` paths, through the `aws:` connection the
//! step names with `via:` ([`crate::io::s3`]). The File values have the
//! local shape, with the `s3://` path as `path`; objects larger than
//! [`INLINE_LIMIT`] are references (path and metadata), never read.
//!
//! `file.move` within S3 copies and then deletes the source; between S3
//! and a local path it streams (a download chunk by chunk, an upload in
//! multipart parts), so memory stays bounded whatever the size. The source
//! is deleted only once the copy is complete; a failure after the copy is
//! retryable and the next attempt copies again.

use std::path::Path;

use serde_json::Value;

use super::{create_parent, sync_folder_of};
use crate::core::error::StepError;
use crate::core::files::{
    file_json, file_reference, file_value, io_error, NamePattern, INLINE_LIMIT,
};
use crate::engine::ctx::StepCall;
use crate::io::aws::AwsError;
use crate::io::s3::{Object, S3Path, S3};

/// The `s3://` path in parameter `i`, or `None` for another path.
pub(super) fn path_param(
    call: &StepCall,
    i: usize,
    name: &str,
    func: &str,
) -> Result<Option<S3Path>, StepError> {
    match call.args.param(i, name).as_str() {
        Some(s) if S3Path::is_s3(s) => S3Path::parse(s)
            .map(Some)
            .map_err(|e| e.into_step_error(func)),
        _ => Ok(None),
    }
}

/// The S3 client of the step's `via:` connection.
fn client<'a>(call: &'a StepCall, func: &str) -> Result<S3<'a>, StepError> {
    let services = call.cx.services();
    let via = call.args.get_named("via").and_then(Value::as_str);
    let def = services
        .connections()
        .aws(via, &format!("{func} on an s3:// path"))?;
    Ok(S3 {
        def,
        http: services.http_client(),
    })
}

fn failed(func: &str) -> impl Fn(AwsError) -> StepError + '_ {
    move |e| e.into_step_error(func)
}

/// The `File` value of `object`: read when small enough to hold in a run
/// ([`INLINE_LIMIT`]), else its reference.
async fn object_value(s3: &S3<'_>, object: &Object) -> Result<Value, AwsError> {
    if object.size > INLINE_LIMIT {
        return Ok(reference(object));
    }
    match s3.read(&object.path, INLINE_LIMIT).await? {
        Some((data, read)) => Ok(file_json(
            &read.url(),
            read.path.file_name(),
            &data,
            Some(read.modified),
        )),
        // It grew past the limit after the look at its size.
        None => Ok(reference(&s3.stat(&object.path).await?)),
    }
}

fn reference(object: &Object) -> Value {
    file_reference(
        &object.url(),
        object.path.file_name(),
        object.size,
        Some(object.modified),
    )
}

/// `file.read(s3://…, via:)`.
pub(super) async fn read(call: &StepCall, path: S3Path) -> Result<Value, StepError> {
    let f = "file.read";
    let s3 = client(call, f)?;
    let object = s3.stat(&path).await.map_err(failed(f))?;
    object_value(&s3, &object).await.map_err(failed(f))
}

/// `file.write(s3://…, content, via:)`: one request, or a multipart
/// upload for content over a part's size.
pub(super) async fn write(
    call: &StepCall,
    path: S3Path,
    content: &[u8],
) -> Result<Value, StepError> {
    let f = "file.write";
    let s3 = client(call, f)?;
    let object = s3.write(&path, content).await.map_err(failed(f))?;
    Ok(file_json(
        &object.url(),
        path.file_name(),
        content,
        Some(object.modified),
    ))
}

/// `file.delete(s3://…, via:)`: true when the object existed.
pub(super) async fn delete(call: &StepCall, path: S3Path) -> Result<Value, StepError> {
    let f = "file.delete";
    let s3 = client(call, f)?;
    s3.remove(&path).await.map(Value::Bool).map_err(failed(f))
}

/// `file.list(s3://bucket/folder/GLOB, via:)`: the matching objects of
/// that folder sorted by key; one deleted between listing and reading is
/// left out.
pub(super) async fn list(call: &StepCall, glob: S3Path) -> Result<Value, StepError> {
    let f = "file.list";
    if glob.key.contains("**") {
        return Err(StepError::permanent(format!(
            "{f}: {glob}: `**` lists local subfolders only; in S3, list one folder (key prefix) at a time"
        )));
    }
    let pattern = NamePattern::new(glob.file_name())
        .map_err(|e| StepError::permanent(format!("{f}: {glob}: {e}")))?;
    let s3 = client(call, f)?;
    let found = s3
        .list(&glob.bucket, glob.folder())
        .await
        .map_err(failed(f))?;
    let mut files = Vec::new();
    for object in found.iter().filter(|o| pattern.matches(o.path.file_name())) {
        match object_value(&s3, object).await {
            Ok(value) => files.push(value),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into_step_error(f)),
        }
    }
    Ok(Value::Array(files))
}

/// `file.move(from, to, via:)` where at least one side is `s3://`.
pub(super) async fn move_file(
    call: &StepCall,
    from: Result<S3Path, &Path>,
    to: Result<S3Path, &Path>,
) -> Result<Value, StepError> {
    let f = "file.move";
    let s3 = client(call, f)?;
    let moved = match (from, to) {
        (Ok(from), Ok(to)) => {
            let object = s3.copy(&from, &to).await.map_err(failed(f))?;
            s3.remove(&from).await.map_err(failed(f))?;
            object
        }
        (Ok(from), Err(to)) => return download(&s3, &from, to).await,
        (Err(from), Ok(to)) => {
            let object = s3.upload(from, &to).await.map_err(failed(f))?;
            match tokio::fs::remove_file(from).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(f, from, &e)),
            }
            object
        }
        (Err(_), Err(_)) => {
            return Err(StepError::permanent(format!(
                "{f}: neither path is an s3:// path"
            )))
        }
    };
    object_value(&s3, &moved).await.map_err(failed(f))
}

/// Moves the object `from` to the local path `to`: streamed into a
/// temporary file beside `to`, renamed over it, the folder synced; the
/// object is deleted only then.
async fn download(s3: &S3<'_>, from: &S3Path, to: &Path) -> Result<Value, StepError> {
    let f = "file.move";
    create_parent(to, f).await?;
    let tmp = to.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    if let Err(e) = s3.download(from, &tmp).await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e.into_step_error(f));
    }
    let placed = match tokio::fs::rename(&tmp, to).await {
        Ok(()) => sync_folder_of(to).await,
        Err(e) => Err(e),
    };
    if let Err(e) = placed {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(io_error(f, to, &e));
    }
    s3.remove(from).await.map_err(failed(f))?;
    file_value(to, f).await
}
