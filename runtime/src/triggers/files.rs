//! Files triggers: `trigger files "GLOB" every D { batch, after, auth, via,
//! done_marker }` on a local folder, an SFTP server (`auth:`) or an S3
//! bucket (`via:` an `aws:` connection).
//!
//! One scanner task per files flow. Every period (and at start-up) it lists
//! the folder, keeps the files that are *ready* — size and modification time
//! unchanged across two looks, or a `done_marker` file beside them — and not
//! already held by a run, reads them, and stores a run per file (or one run
//! for all of them with `batch: true`) under a dedupe key made of the file's
//! path, size and modification time. The store accepts a key once, so each
//! version of a file goes to exactly one run, across restarts and replicas
//! sharing a store.
//!
//! The scanner also finishes the file's life: once its run succeeded (or
//! skipped) the file is moved to `after:` or deleted; if that move is
//! interrupted, the next scan finds the file's key already done and moves it
//! then, without a second run. After a failed run the file stays where it is
//! and its run is replayed (journal kept: finished steps are not repeated)
//! with backoff — the scan period doubling per attempt, at most an hour. A
//! file changed in place (a fixed version) has a new key and gets a new run.
//!
//! The run holds the content (`.text`, `.bytes`) of a file of up to
//! [`INLINE_LIMIT`] bytes in its trigger, so a replay sees exactly the
//! version that was claimed. A larger file is held by reference (path,
//! size, modification time): the file stays in place until its run
//! succeeds, and `csv.rows` refuses it if it changed since the claim.
//!
//! [`INLINE_LIMIT`]: crate::core::files::INLINE_LIMIT

mod source;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::engine::integration::{AfterRun, FilesTrigger, TriggerDef};
use crate::engine::Runtime;
use crate::store::{ExecutionFilter, Status};

pub(crate) use source::{Entry, Source};

/// The longest wait before a failed file's run is tried again.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// The longest pause between the two looks that tell a new file is no
/// longer being written.
const MAX_SETTLE: Duration = Duration::from_secs(1);

/// Starts one scanner per files flow.
pub(crate) fn start(rt: &Runtime) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for def in rt.flows() {
        let TriggerDef::Files(trigger) = &def.trigger else {
            continue;
        };
        let aws = match trigger.via {
            Some(via) => match rt.connections().aws(Some(via), "files trigger") {
                Ok(def) => Some((def.clone(), rt.http_client().clone())),
                Err(e) => {
                    tracing::error!(flow = def.name, error = %e.message, "files trigger not started");
                    continue;
                }
            },
            None => None,
        };
        let source = match Source::parse(&trigger.glob, trigger.auth.as_deref(), aws) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(flow = def.name, error = %e, "files trigger not started");
                continue;
            }
        };
        let scanner = Scanner {
            rt: rt.clone(),
            flow: def.name,
            trigger: trigger.clone(),
            source,
            last_look: Looks::default(),
            claims: HashMap::new(),
            poke: Arc::new(Notify::new()),
        };
        tasks.push(tokio::spawn(scanner.run()));
    }
    tasks
}

/// The dedupe key of one version of a file, from its `File` value.
pub(crate) fn file_key(file: &Value) -> Option<String> {
    let path = file.get("path")?.as_str()?;
    let size = file.get("size")?.as_u64()?;
    let modified = file.get("modified")?.as_str()?;
    Some(format!("file:{path}|{size}|{modified}"))
}

/// The dedupe key of a batch: one per set of file versions.
fn batch_key(keys: &[String]) -> String {
    let mut sorted: Vec<&str> = keys.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let mut h = Sha256::new();
    for k in sorted {
        h.update(k.as_bytes());
        h.update([0]);
    }
    format!("files:{}", hex::encode(h.finalize()))
}

/// How long a file's run waits after its `attempts`-th failed start.
fn backoff(every: Duration, attempts: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(16));
    every.saturating_mul(factor).min(MAX_BACKOFF).max(every)
}

/// A file held by a run.
#[derive(Debug, Clone)]
struct Held {
    key: String,
    location: String,
    name: String,
}

impl Held {
    fn from_file(file: &Value) -> Option<Held> {
        Some(Held {
            key: file_key(file)?,
            location: file.get("path")?.as_str()?.to_string(),
            name: file.get("name")?.as_str()?.to_string(),
        })
    }
}

/// The files of a run's trigger value (`.file`, or `.files` in batch mode).
fn held_files(trigger: &Value) -> Vec<Held> {
    match (trigger.get("file"), trigger.get("files")) {
        (Some(f), _) => Held::from_file(f).into_iter().collect(),
        (None, Some(Value::Array(fs))) => fs.iter().filter_map(Held::from_file).collect(),
        _ => Vec::new(),
    }
}

/// `(size, modified)` of each file a look saw: a file is still being
/// written while these change between looks.
#[derive(Debug, Default)]
struct Looks(HashMap<String, (u64, DateTime<Utc>)>);

impl Looks {
    /// Splits files into (unchanged since the last look, new or changed),
    /// and remembers this look.
    fn compare(&mut self, files: Vec<Entry>) -> (Vec<Entry>, Vec<Entry>) {
        let mut look = HashMap::with_capacity(files.len());
        let (mut same, mut changed) = (Vec::new(), Vec::new());
        for f in files {
            let seen = (f.size, f.modified);
            if self.0.get(&f.location) == Some(&seen) {
                same.push(f.clone());
            } else {
                changed.push(f.clone());
            }
            look.insert(f.location, seen);
        }
        self.0 = look;
        (same, changed)
    }
}

struct Scanner {
    rt: Runtime,
    flow: &'static str,
    trigger: FilesTrigger,
    source: Source,
    /// What the previous look saw.
    last_look: Looks,
    /// Runs holding files and not yet settled: execution id → its files.
    claims: HashMap<String, Vec<Held>>,
    /// Woken when a run this scanner stored ends, to settle it at once.
    poke: Arc<Notify>,
}

impl Scanner {
    async fn run(mut self) {
        self.load_claims().await;
        loop {
            if let Err(e) = self.scan().await {
                tracing::warn!(flow = self.flow, error = %self.rt.redactor().redact(&e), "files scan failed; trying again next period");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.trigger.every) => {}
                _ = self.poke.notified() => {}
                _ = self.rt.shutdown_started() => return,
            }
        }
    }

    /// Runs stored before this process started (queued, running, failed)
    /// still hold their files: a batch must not take them again.
    async fn load_claims(&mut self) {
        for status in [Status::Queued, Status::Running, Status::Failed] {
            let filter = ExecutionFilter {
                status: Some(status),
                flow: Some(self.flow.to_string()),
                limit: 100_000,
                ..ExecutionFilter::default()
            };
            match self.rt.store().list(filter).await {
                Ok(execs) => {
                    for e in execs {
                        self.claims.insert(e.id, held_files(&e.trigger));
                    }
                }
                Err(e) => tracing::warn!(flow = self.flow, error = %e, "cannot read earlier runs"),
            }
        }
    }

    async fn scan(&mut self) -> Result<(), String> {
        let listing = self.source.list().await?;
        self.settle_claims(&listing).await;
        let ready = self.ready_files(listing).await?;
        let held: HashSet<&str> = self
            .claims
            .values()
            .flatten()
            .map(|h| h.key.as_str())
            .collect();
        let fresh: Vec<Entry> = ready
            .into_iter()
            .filter(|e| !held.contains(e.key().as_str()))
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        if self.trigger.batch {
            self.submit(fresh).await;
        } else {
            for entry in fresh {
                self.submit(vec![entry]).await;
            }
        }
        Ok(())
    }

    /// The listed files that are ready: unchanged since the previous look
    /// (or marked done). New or changing files get a second look after a
    /// short pause in this same scan, so a quiet file is taken at once.
    async fn ready_files(&mut self, listing: Vec<Entry>) -> Result<Vec<Entry>, String> {
        let (mut files, markers) = self.split_markers(listing);
        if self.trigger.done_marker.is_some() {
            files.retain(|f| markers.contains(&f.name));
            return Ok(files);
        }
        let (mut ready, waiting) = self.last_look.compare(files);
        if !waiting.is_empty() {
            let settle = (self.trigger.every / 2).min(MAX_SETTLE);
            tokio::time::sleep(settle).await;
            let (again, _) = self.split_markers(self.source.list().await?);
            let (stable, _) = self.last_look.compare(again);
            let waiting: HashSet<String> = waiting.into_iter().map(|e| e.location).collect();
            ready.extend(stable.into_iter().filter(|e| waiting.contains(&e.location)));
        }
        ready.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(ready)
    }

    /// Files matching the glob, and the names that have a done marker.
    fn split_markers(&self, listing: Vec<Entry>) -> (Vec<Entry>, HashSet<String>) {
        let mut markers = HashSet::new();
        let mut files = Vec::new();
        for entry in listing {
            match self.trigger.done_marker {
                Some(m) if entry.name.ends_with(m) && entry.name.len() > m.len() => {
                    markers.insert(entry.name[..entry.name.len() - m.len()].to_string());
                }
                _ if self.source.matches(&entry.name) => files.push(entry),
                _ => {}
            }
        }
        (files, markers)
    }

    /// Reads the files and stores their run; the run then holds them.
    async fn submit(&mut self, entries: Vec<Entry>) {
        let mut files = Vec::with_capacity(entries.len());
        for entry in &entries {
            match self.source.read(entry).await {
                Ok(f) => files.push(f),
                // Gone or unreadable since the listing: the next scan sees.
                Err(e) => {
                    tracing::warn!(flow = self.flow, file = %entry.location, error = %e, "cannot read a file")
                }
            }
        }
        let held: Vec<Held> = files.iter().filter_map(Held::from_file).collect();
        let (trigger, key) = match (self.trigger.batch, files.as_slice()) {
            (_, []) => return,
            (false, [file]) => (json!({ "file": file }), held[0].key.clone()),
            _ => {
                let keys: Vec<String> = held.iter().map(|h| h.key.clone()).collect();
                (json!({ "files": files }), batch_key(&keys))
            }
        };
        match self.rt.submit(self.flow, trigger, Some(key)).await {
            Ok(s) => {
                if !s.duplicate {
                    for h in &held {
                        tracing::info!(flow = self.flow, file = %h.location, execution_id = %s.execution_id, "file claimed");
                    }
                    self.poke_when_done(&s.execution_id);
                }
                self.claims.insert(s.execution_id, held);
            }
            Err(e) => tracing::error!(flow = self.flow, error = %e, "cannot store a file's run"),
        }
    }

    /// Moves or deletes the files of runs that succeeded, replays failed
    /// runs whose backoff has passed, and forgets runs whose files are gone.
    async fn settle_claims(&mut self, listing: &[Entry]) {
        let present: HashSet<String> = listing.iter().map(Entry::key).collect();
        let ids: Vec<String> = self.claims.keys().cloned().collect();
        for id in ids {
            let exec = match self.rt.store().get(&id).await {
                Ok(Some(e)) => e,
                Ok(None) => {
                    self.claims.remove(&id);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(flow = self.flow, error = %e, "cannot read a file's run");
                    continue;
                }
            };
            let held = self.claims.get(&id).cloned().unwrap_or_default();
            let any_present = held.iter().any(|h| present.contains(&h.key));
            match exec.status {
                Status::Succeeded | Status::Skipped => {
                    if self.finish_files(&held).await {
                        self.claims.remove(&id);
                    }
                }
                Status::Failed if !any_present => {
                    // Removed or replaced by a new version: nothing to retry.
                    self.claims.remove(&id);
                }
                Status::Failed => self.retry_when_due(&exec).await,
                Status::Queued | Status::Running => {}
            }
        }
    }

    /// Wakes the scanner when run `id` ends, so its files are settled at
    /// once rather than at the next scan.
    fn poke_when_done(&self, id: &str) {
        let (rt, poke, id) = (self.rt.clone(), self.poke.clone(), id.to_string());
        tokio::spawn(async move {
            rt.wait_for(&id).await;
            poke.notify_one();
        });
    }

    async fn retry_when_due(&self, exec: &crate::store::Execution) {
        let wait = backoff(self.trigger.every, exec.attempts);
        let due = exec
            .finished_at
            .and_then(|t| t.checked_add_signed(chrono::Duration::from_std(wait).ok()?))
            .is_none_or(|t| t <= Utc::now());
        if !due {
            return;
        }
        match self.rt.store().requeue(&exec.id).await {
            Ok(Some(_)) => {
                tracing::info!(flow = self.flow, execution_id = %exec.id, attempt = exec.attempts + 1, "retrying a failed file's run");
                self.rt.notify_workers();
                self.poke_when_done(&exec.id);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(flow = self.flow, error = %e, "cannot retry a file's run"),
        }
    }

    /// Moves or deletes a succeeded run's files (and their markers); `true`
    /// when every file is dealt with (already gone counts).
    async fn finish_files(&self, held: &[Held]) -> bool {
        let mut all = true;
        for h in held {
            let done = match &self.trigger.after {
                AfterRun::Delete => self.source.remove(&h.location).await.map(|_| ()),
                AfterRun::MoveTo(folder) => {
                    self.source.move_into(&h.location, &h.name, folder).await
                }
            };
            match done {
                Ok(()) => {
                    tracing::info!(flow = self.flow, file = %h.location, "file done");
                    if let Some(m) = self.trigger.done_marker {
                        let marker = format!("{}{m}", h.location);
                        if let Err(e) = self.source.remove(&marker).await {
                            tracing::warn!(flow = self.flow, file = %marker, error = %e, "cannot remove a done marker");
                        }
                    }
                }
                Err(e) => {
                    all = false;
                    tracing::warn!(flow = self.flow, file = %h.location, error = %e, "cannot move a finished file; trying again next scan");
                }
            }
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_period_up_to_an_hour() {
        let s = Duration::from_secs;
        assert_eq!(backoff(s(10), 0), s(10));
        assert_eq!(backoff(s(10), 1), s(10));
        assert_eq!(backoff(s(10), 2), s(20));
        assert_eq!(backoff(s(10), 4), s(80));
        assert_eq!(backoff(s(10), 40), MAX_BACKOFF);
        assert_eq!(
            backoff(s(7200), 1),
            s(7200),
            "never shorter than the period"
        );
    }

    fn entry(name: &str, size: u64, second: i64) -> Entry {
        Entry {
            location: format!("in/{name}"),
            name: name.into(),
            size,
            modified: DateTime::from_timestamp(second, 0).unwrap(),
        }
    }

    #[test]
    fn a_file_is_ready_once_two_looks_agree() {
        let mut looks = Looks::default();
        let names = |v: Vec<Entry>| v.into_iter().map(|e| e.name).collect::<Vec<_>>();
        // First look: everything is new.
        let (same, changed) = looks.compare(vec![entry("a", 10, 1), entry("b", 5, 1)]);
        assert!(same.is_empty());
        assert_eq!(names(changed), ["a", "b"]);
        // `a` is still growing; `b` is quiet.
        let (same, changed) = looks.compare(vec![entry("a", 20, 2), entry("b", 5, 1)]);
        assert_eq!(
            (names(same), names(changed)),
            (vec!["b".to_string()], vec!["a".to_string()])
        );
        // `a` stopped; `b` was taken away; `c` appears.
        let (same, changed) = looks.compare(vec![entry("a", 20, 2), entry("c", 1, 3)]);
        assert_eq!(
            (names(same), names(changed)),
            (vec!["a".to_string()], vec!["c".to_string()])
        );
        // Touched without a size change is still a change.
        let (same, changed) = looks.compare(vec![entry("a", 20, 9)]);
        assert_eq!((same.len(), names(changed)), (0, vec!["a".to_string()]));
    }

    #[test]
    fn keys_name_one_version_of_a_file() {
        let f = json!({ "path": "in/a.csv", "name": "a.csv", "size": 3, "modified": "2026-01-01T00:00:00.5Z" });
        assert_eq!(
            file_key(&f).unwrap(),
            "file:in/a.csv|3|2026-01-01T00:00:00.5Z"
        );
        let mut g = f.clone();
        g["size"] = json!(4);
        assert_ne!(file_key(&f), file_key(&g));
        let (a, b) = (file_key(&f).unwrap(), file_key(&g).unwrap());
        assert_eq!(batch_key(&[a.clone(), b.clone()]), batch_key(&[b, a]));
        assert_eq!(held_files(&json!({ "files": [f.clone(), g] })).len(), 2);
        assert_eq!(held_files(&json!({ "file": f }))[0].name, "a.csv");
    }
}
