//! `tracing` set-up for generated binaries: human-readable or JSON lines on
//! stderr, every line passed through the [`Redactor`]. Runs carry the span
//! `run{execution_id, flow}` and steps `step{step}`, so each line names its
//! execution, flow and step.
//!
//! Lines are written by a thread of their own: the task that logs only
//! formats its line and hands it over, and the log thread redacts it and
//! writes whatever has queued up with one system call. A request never
//! waits on stderr (a terminal, a pipe into a slow collector) or on the
//! redaction. If the queue is full — the log cannot keep up — lines are
//! dropped rather than slowing the service, and the next line written says
//! how many. [`LogGuard`] writes what is queued when the process ends.

use std::io::{IsTerminal as _, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::Duration;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer as _;

use crate::core::redact::Redactor;

/// Log line format (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per event, with the span fields.
    Json,
}

/// Lines waiting for the log thread at most; beyond, lines are dropped.
const QUEUE: usize = 16 * 1024;
/// How long the process waits at exit for queued lines to be written.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

enum Message {
    Line(Vec<u8>),
    /// Write everything before this, then answer.
    Flush(SyncSender<()>),
}

/// Lines dropped because the queue was full, not yet reported.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// A writer that collects one event and queues it when dropped.
pub struct QueuedWriter {
    queue: SyncSender<Message>,
    buf: Vec<u8>,
}

impl Write for QueuedWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for QueuedWriter {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let line = std::mem::take(&mut self.buf);
        if let Err(TrySendError::Full(_)) = self.queue.try_send(Message::Line(line)) {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Makes a [`QueuedWriter`] per event.
#[derive(Clone)]
pub struct MakeQueuedWriter(SyncSender<Message>);

impl<'a> MakeWriter<'a> for MakeQueuedWriter {
    type Writer = QueuedWriter;

    fn make_writer(&'a self) -> Self::Writer {
        QueuedWriter {
            queue: self.0.clone(),
            buf: Vec::with_capacity(256),
        }
    }
}

/// Writes the queued lines when the process ends (dropped at the end of
/// `main`).
pub struct LogGuard(SyncSender<Message>);

impl LogGuard {
    /// Waits until every line queued so far is written, or `timeout`.
    fn flush_within(&self, timeout: Duration) {
        let (done, written) = mpsc::sync_channel(1);
        if self.0.send(Message::Flush(done)).is_ok() {
            let _ = written.recv_timeout(timeout);
        }
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.flush_within(FLUSH_TIMEOUT);
    }
}

/// The log thread: redacts and writes lines, a batch per system call.
fn write_lines(queue: Receiver<Message>, redactor: Redactor, mut out: impl Write) {
    let mut batch = String::new();
    while let Ok(first) = queue.recv() {
        let mut flushed = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Line(line) => {
                    let text = String::from_utf8_lossy(&line);
                    batch.push_str(&redactor.redact(&text));
                }
                Message::Flush(done) => flushed.push(done),
            }
            next = if batch.len() < 64 * 1024 {
                queue.try_recv().ok()
            } else {
                None
            };
        }
        let dropped = DROPPED.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            batch.push_str(&format!(
                "{dropped} log lines were dropped: the log could not keep up\n"
            ));
        }
        let _ = out.write_all(batch.as_bytes());
        let _ = out.flush();
        batch.clear();
        for done in flushed {
            let _ = done.send(());
        }
    }
}

/// Installs the global subscriber (levels from `RUST_LOG`, default `info`)
/// with its log thread; `None` if a subscriber is already installed.
pub fn init(format: LogFormat, redactor: Redactor) -> Option<LogGuard> {
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    let (queue, lines) = mpsc::sync_channel(QUEUE);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(MakeQueuedWriter(queue.clone()))
        .with_target(false);
    let installed = match format {
        LogFormat::Human => tracing_subscriber::registry()
            .with(
                layer
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_filter(filter),
            )
            .try_init(),
        LogFormat::Json => tracing_subscriber::registry()
            .with(
                layer
                    .json()
                    .with_current_span(true)
                    .with_span_list(true)
                    .flatten_event(true)
                    .with_filter(filter),
            )
            .try_init(),
    };
    installed.ok()?;
    std::thread::Builder::new()
        .name("flow-log".into())
        .spawn(move || write_lines(lines, redactor, std::io::stderr()))
        .ok()?;
    Some(LogGuard(queue))
}

/// `RUST_LOG` as per-target levels (`warn`, `info,flow_runtime::engine=debug`):
/// the `Targets` syntax, which needs no regex engine in every binary
/// (`EnvFilter`'s span and field filters are not supported). Unset, empty
/// or unreadable: `info`.
fn log_filter(directives: Option<&str>) -> Targets {
    directives
        .filter(|d| !d.trim().is_empty())
        .and_then(|d| d.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO))
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::{Arc, Mutex};

    const TEST_FLUSH: Duration = Duration::from_secs(60);

    /// The dropped-lines count is the process's (one log per process): the
    /// tests that write through a queue take turns, or one would report the
    /// other's drops.
    static ONE_QUEUE_AT_A_TIME: Mutex<()> = Mutex::new(());

    /// A `Write` the test can read.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_redacted_written_in_order_and_flushed_at_the_end() {
        let _turn = ONE_QUEUE_AT_A_TIME
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let redactor = Redactor::new();
        redactor.add("hunter2-secret");
        let (queue, lines) = mpsc::sync_channel(QUEUE);
        let out = Captured::default();
        let writer_out = out.clone();
        let thread = std::thread::spawn(move || write_lines(lines, redactor, writer_out));
        let make = MakeQueuedWriter(queue.clone());
        for i in 0..100 {
            let mut w = make.make_writer();
            writeln!(w, "line {i} token=hunter2-secret").unwrap();
        }
        // The guard's flush, with a wait no loaded test machine outlasts.
        LogGuard(queue).flush_within(TEST_FLUSH);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 100, "{text}");
        assert!(
            text.lines().next().unwrap().starts_with("line 0 "),
            "{text}"
        );
        assert!(
            text.lines().last().unwrap().starts_with("line 99 "),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
        drop(make);
        thread.join().unwrap();
    }

    #[test]
    fn rust_log_sets_levels_per_target() {
        use tracing::Level;
        let info = log_filter(None);
        assert!(info.would_enable("flow_runtime::host", &Level::INFO));
        assert!(!info.would_enable("flow_runtime::host", &Level::DEBUG));
        for unusable in ["", "  ", "no such=level=x"] {
            let f = log_filter(Some(unusable));
            assert!(f.would_enable("x", &Level::INFO), "{unusable:?}");
            assert!(!f.would_enable("x", &Level::DEBUG), "{unusable:?}");
        }
        let warn = log_filter(Some("warn"));
        assert!(warn.would_enable("x", &Level::WARN));
        assert!(!warn.would_enable("x", &Level::INFO));
        let mixed = log_filter(Some("warn,flow_runtime::engine=debug"));
        assert!(mixed.would_enable("flow_runtime::engine::workers", &Level::DEBUG));
        assert!(!mixed.would_enable("flow_runtime::host", &Level::INFO));
    }

    #[test]
    fn a_full_queue_drops_lines_and_says_so() {
        let _turn = ONE_QUEUE_AT_A_TIME
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (queue, lines) = mpsc::sync_channel(2);
        let make = MakeQueuedWriter(queue.clone());
        for i in 0..5 {
            let mut w = make.make_writer();
            writeln!(w, "line {i}").unwrap();
        }
        let out = Captured::default();
        let writer_out = out.clone();
        let thread = std::thread::spawn(move || write_lines(lines, Redactor::new(), writer_out));
        LogGuard(queue).flush_within(TEST_FLUSH);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("line 0") && text.contains("line 1"), "{text}");
        assert!(!text.contains("line 2"), "{text}");
        assert!(
            text.contains("3 log lines were dropped: the log could not keep up"),
            "{text}"
        );
        drop(make);
        thread.join().unwrap();
    }
}
