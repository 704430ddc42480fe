//! `for row in csv.rows(file, as: T)` and `for rows in csv.chunks(file,
//! size: N, as: T)`: a CSV file read as the loop goes, so a file of
//! gigabytes is imported with memory bounded by one block of rows.
//!
//! The loop's steps are journaled with the loop index, like any loop's: a
//! run resumed after a crash reads the file again from the start and its
//! finished iterations replay from the journal (no step is repeated). A
//! file passed by reference (larger than `core::files::INLINE_LIMIT`) is
//! read from its path, and refused if its size or modification time no
//! longer match the `File` value — the run would otherwise see another
//! version than the one it claimed. A small file is read from the value's
//! own content. A big file on an SFTP server (with `auth:`) is first
//! streamed to a temporary local copy, which is read and then unlinked.

use std::collections::VecDeque;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::core::error::RunError;
use crate::core::ops::format_time;
use crate::core::schema::Schema;
use crate::engine::ctx::Args;

use super::{csv_error, short_row, BOM};

/// Rows read per trip to the blocking thread pool: enough to make the trip
/// cheap, few enough to keep memory small whatever the file's size.
const BLOCK_ROWS: usize = 512;

/// Bytes read per trip, for files with very long rows.
const BLOCK_BYTES: u64 = 1024 * 1024;

type Source = Box<dyn Read + Send>;

/// A CSV file being read row by row (see the module documentation).
pub struct CsvRows {
    func: &'static str,
    reader: Option<csv::Reader<Source>>,
    header: Vec<String>,
    schema: Option<Schema>,
    ready: VecDeque<Value>,
    done: bool,
}

impl CsvRows {
    /// Opens the `File` in positional argument 0 with the options of
    /// `csv.decode` (`delimiter:`, `as:` the row type). `func` names the
    /// function in errors (`csv.rows`, `csv.chunks`).
    pub async fn open(func: &'static str, args: Args) -> Result<CsvRows, RunError> {
        let delimiter = super::delimiter(&args, func)?;
        let file = args.get(0).clone();
        let copy = download_if_remote(func, &file, &args).await?;
        let source = tokio::task::spawn_blocking(move || match copy {
            Some(path) => open_copy(func, &path),
            None => source_of(func, &file),
        })
        .await
        .map_err(|e| RunError::new(format!("{func}: {e}")))??;
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .from_reader(source);
        let (reader, header) = tokio::task::spawn_blocking(move || {
            let header = reader
                .headers()
                .map(|h| h.iter().map(str::to_string).collect::<Vec<_>>());
            (reader, header)
        })
        .await
        .map_err(|e| RunError::new(format!("{func}: {e}")))?;
        let header = header.map_err(|e| csv_error(func, &e))?;
        Ok(CsvRows {
            func,
            reader: Some(reader),
            header,
            schema: args.as_schema,
            ready: VecDeque::new(),
            done: false,
        })
    }

    /// The next row, decoded; `None` at the end of the file.
    pub async fn next_row(&mut self) -> Result<Option<Value>, RunError> {
        if self.ready.is_empty() && !self.done {
            self.read_block().await?;
        }
        Ok(self.ready.pop_front())
    }

    /// The next `size` rows (fewer at the end of the file) as a list;
    /// `None` once every row was handed out.
    pub async fn next_chunk(&mut self, size: &Value) -> Result<Option<Value>, RunError> {
        let size = size
            .as_u64()
            .filter(|n| *n >= 1)
            .ok_or_else(|| RunError::new(format!("{}: `size` must be 1 or more", self.func)))?;
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        let mut chunk = Vec::new();
        while chunk.len() < size {
            match self.next_row().await? {
                Some(row) => chunk.push(row),
                None => break,
            }
        }
        Ok((!chunk.is_empty()).then_some(Value::Array(chunk)))
    }

    /// Reads the next block of rows on the blocking pool.
    async fn read_block(&mut self) -> Result<(), RunError> {
        let Some(mut reader) = self.reader.take() else {
            self.done = true;
            return Ok(());
        };
        let (func, columns) = (self.func, self.header.len());
        let (reader, block) = tokio::task::spawn_blocking(move || {
            let block = read_records(&mut reader, func, columns);
            (reader, block)
        })
        .await
        .map_err(|e| RunError::new(format!("{}: {e}", self.func)))?;
        let (records, end) = block?;
        self.reader = (!end).then_some(reader);
        self.done = end;
        for (line, cells) in records {
            self.ready.push_back(self.decode(line, cells)?);
        }
        Ok(())
    }

    /// One row keyed by the header, its cells decoded into the row type.
    fn decode(&self, line: u64, cells: Vec<String>) -> Result<Value, RunError> {
        let fields: Map<String, Value> = self
            .header
            .iter()
            .cloned()
            .zip(cells.into_iter().map(Value::String))
            .collect();
        let row = Value::Object(fields);
        match &self.schema {
            Some(schema) => schema.decode_text_cells(&row).map_err(|e| {
                let e = e.to_string();
                let at = e.strip_prefix('.').unwrap_or(&e);
                RunError::new(format!("{}: row {line}, column {at}", self.func))
            }),
            None => Ok(row),
        }
    }
}

/// One record read from the file: its line and its cells.
type Record = (u64, Vec<String>);

/// Up to one block of records, and whether the file ended.
fn read_records(
    reader: &mut csv::Reader<Source>,
    func: &str,
    columns: usize,
) -> Result<(Vec<Record>, bool), RunError> {
    let mut records = Vec::with_capacity(BLOCK_ROWS);
    let start = reader.position().byte();
    let mut record = csv::StringRecord::new();
    while records.len() < BLOCK_ROWS && reader.position().byte() - start < BLOCK_BYTES {
        if !reader
            .read_record(&mut record)
            .map_err(|e| csv_error(func, &e))?
        {
            return Ok((records, true));
        }
        let line = record.position().map_or(0, csv::Position::line);
        if record.len() != columns {
            return Err(short_row(func, line, record.len(), columns));
        }
        records.push((line, record.iter().map(str::to_string).collect()));
    }
    Ok((records, false))
}

/// Where the rows come from: the value's own content, or the file at its
/// path when it was passed by reference. A byte-order mark is skipped.
fn source_of(func: &str, file: &Value) -> Result<Source, RunError> {
    let source: Source = match crate::core::files::file_data(file) {
        Some(data) => {
            Box::new(Cursor::new(data.map_err(|e| {
                RunError::new(format!("{func}: the file's bytes are {e}"))
            })?))
        }
        None => Box::new(open_reference(func, file)?),
    };
    skip_bom(source).map_err(|e| RunError::new(format!("{func}: {e}")))
}

/// A big file on an SFTP server (a reference to an `sftp://` path) is
/// first copied, streamed, to a temporary local file, whose path is
/// returned (`None` for any other file). The copy is checked to be the
/// version the File value names.
async fn download_if_remote(
    func: &str,
    file: &Value,
    args: &Args,
) -> Result<Option<PathBuf>, RunError> {
    let path = file.get("path").and_then(Value::as_str).unwrap_or_default();
    if file.get("bytes").is_some() || !crate::io::sftp::SftpUrl::is_sftp(path) {
        return Ok(None);
    }
    let auth = args
        .get_named("auth")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            RunError::new(format!(
                "{func}: {path} is on an SFTP server: pass `auth:` (the password or private key, as for file.*)"
            ))
        })?;
    let url =
        crate::io::sftp::SftpUrl::parse(path).map_err(|e| RunError::new(format!("{func}: {e}")))?;
    let local = std::env::temp_dir().join(format!("flow-{}.csv", uuid::Uuid::new_v4().simple()));
    let remote = crate::io::sftp::download(&url, auth, &local)
        .await
        .map_err(|e| RunError::new(format!("{func}: {e}")))?;
    if let Err(e) = same_version(func, file, remote.size, Some(format_time(remote.modified))) {
        let _ = std::fs::remove_file(&local);
        return Err(e);
    }
    Ok(Some(local))
}

/// This run's own download (`download_if_remote`), opened and at once
/// unlinked: nothing is left behind whatever happens to the run.
fn open_copy(func: &str, path: &Path) -> Result<Source, RunError> {
    let opened = std::fs::File::open(path)
        .map_err(|e| RunError::new(format!("{func}: {}: {e}", path.display())));
    let _ = std::fs::remove_file(path);
    skip_bom(Box::new(opened?)).map_err(|e| RunError::new(format!("{func}: {e}")))
}

/// The local file a `File` value refers to, checked to be the same version.
fn open_reference(func: &str, file: &Value) -> Result<std::fs::File, RunError> {
    let path = file
        .get("path")
        .and_then(Value::as_str)
        .ok_or_else(|| RunError::new(format!("{func}: the argument is not a File")))?;
    let opened =
        std::fs::File::open(path).map_err(|e| RunError::new(format!("{func}: {path}: {e}")))?;
    let meta = opened
        .metadata()
        .map_err(|e| RunError::new(format!("{func}: {path}: {e}")))?;
    let modified = meta
        .modified()
        .ok()
        .map(|t| format_time(chrono::DateTime::<chrono::Utc>::from(t)));
    same_version(func, file, meta.len(), modified)?;
    Ok(opened)
}

/// Refuses a file whose size or modification time differ from those of
/// its `File` value: the run would read another version than it claimed.
fn same_version(
    func: &str,
    file: &Value,
    size: u64,
    modified: Option<Value>,
) -> Result<(), RunError> {
    let same_size = file.get("size").and_then(Value::as_u64) == Some(size);
    let same_time = file
        .get("modified")
        .is_none_or(|m| m.is_null() || Some(m) == modified.as_ref());
    if same_size && same_time {
        return Ok(());
    }
    let path = file.get("path").and_then(Value::as_str).unwrap_or_default();
    Err(RunError::new(format!(
        "{func}: {path} changed since the run took it (size or modification time differ); a new version of a file gets its own run"
    )))
}

/// `source` without a leading UTF-8 byte-order mark.
fn skip_bom(mut source: Source) -> std::io::Result<Source> {
    let mut head = Vec::with_capacity(3);
    (&mut source).take(3).read_to_end(&mut head)?;
    let rest = if head == BOM.as_bytes() {
        Vec::new()
    } else {
        head
    };
    Ok(Box::new(Cursor::new(rest).chain(source)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::schema::FieldSchema;
    use serde_json::json;

    fn line_schema() -> Schema {
        Schema::Record(vec![
            FieldSchema::new("sku", Schema::String),
            FieldSchema::new("qty", Schema::Int),
        ])
    }

    fn inline(text: &str) -> Value {
        json!({ "name": "a.csv", "text": text, "bytes": crate::core::bytes::encode(text.as_bytes()) })
    }

    #[tokio::test]
    async fn rows_one_at_a_time_and_in_chunks() {
        let text = "\u{feff}sku,qty\na,1\n\"b,c\",2\n\nd,3\n";
        let args = || Args::new().arg(inline(text)).decode_as(line_schema());
        let mut rows = CsvRows::open("csv.rows", args()).await.unwrap();
        let mut got = Vec::new();
        while let Some(row) = rows.next_row().await.unwrap() {
            got.push(row);
        }
        assert_eq!(
            got,
            [
                json!({"sku": "a", "qty": 1}),
                json!({"sku": "b,c", "qty": 2}),
                json!({"sku": "d", "qty": 3})
            ]
        );
        let mut chunks = CsvRows::open("csv.chunks", args()).await.unwrap();
        let two = json!(2);
        let len = |chunk: Option<Value>| chunk.unwrap().as_array().unwrap().len();
        assert_eq!(len(chunks.next_chunk(&two).await.unwrap()), 2);
        assert_eq!(len(chunks.next_chunk(&two).await.unwrap()), 1);
        assert_eq!(chunks.next_chunk(&two).await.unwrap(), None);
        assert!(chunks.next_chunk(&json!(0)).await.is_err());
    }

    #[tokio::test]
    async fn a_bad_cell_names_its_row_and_column() {
        let args = Args::new()
            .arg(inline("sku,qty\na,1\nb,three\n"))
            .decode_as(line_schema());
        let mut rows = CsvRows::open("csv.rows", args).await.unwrap();
        let err = rows.next_row().await.unwrap_err().to_string();
        assert!(err.contains("csv.rows: row 3, column qty"), "{err}");
    }

    #[tokio::test]
    async fn a_big_file_is_read_from_its_path_and_must_be_the_same_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.csv");
        let mut text = String::from("sku,qty\n");
        for i in 0..5000 {
            text.push_str(&format!("s{i},{i}\n"));
        }
        std::fs::write(&path, &text).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let modified = format_time(meta.modified().unwrap().into());
        let reference = json!({
            "path": path.to_str().unwrap(), "name": "big.csv",
            "size": meta.len(), "modified": modified,
        });
        let mut rows = CsvRows::open(
            "csv.rows",
            Args::new().arg(reference.clone()).decode_as(line_schema()),
        )
        .await
        .unwrap();
        let mut n = 0;
        while let Some(row) = rows.next_row().await.unwrap() {
            assert_eq!(row["qty"], json!(n));
            n += 1;
        }
        assert_eq!(n, 5000);

        std::fs::write(&path, "sku,qty\nother,1\n").unwrap();
        let err = CsvRows::open("csv.rows", Args::new().arg(reference))
            .await
            .err()
            .expect("a changed file is refused")
            .to_string();
        assert!(err.contains("changed since the run took it"), "{err}");
    }
}
