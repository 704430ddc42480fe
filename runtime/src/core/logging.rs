//! `tracing` set-up for generated binaries: human-readable or JSON lines on
//! stderr, every line passed through the [`Redactor`]. Runs carry the span
//! `run{execution_id, flow}` and steps `step{step}`, so each line names its
//! execution, flow and step.

use std::io::{IsTerminal as _, Write};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::core::redact::Redactor;

/// Log line format (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per event, with the span fields.
    Json,
}

/// A writer that collects one event and writes it redacted when dropped.
pub struct RedactingWriter {
    redactor: Redactor,
    buf: Vec<u8>,
}

impl Write for RedactingWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RedactingWriter {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.buf);
        let text = self.redactor.redact(&text);
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}

/// Makes a [`RedactingWriter`] per event.
#[derive(Clone)]
pub struct MakeRedactingWriter(pub Redactor);

impl<'a> MakeWriter<'a> for MakeRedactingWriter {
    type Writer = RedactingWriter;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter {
            redactor: self.0.clone(),
            buf: Vec::with_capacity(256),
        }
    }
}

/// Installs the global subscriber (level from `RUST_LOG`, default `info`).
/// Does nothing if one is already installed.
pub fn init(format: LogFormat, redactor: Redactor) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let writer = MakeRedactingWriter(redactor);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false);
    let _ = match format {
        LogFormat::Human => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .flatten_event(true)
            .try_init(),
    };
}
