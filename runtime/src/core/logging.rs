//! `tracing` set-up for generated binaries: human-readable or JSON lines on
//! stderr, every line passed through the [`Redactor`]. Runs carry the span
//! `run{execution_id, flow}` and steps `step{step}`, so each line names its
//! execution, flow and step.

use std::io::{IsTerminal as _, Write};

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
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    let writer = MakeRedactingWriter(redactor);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_target(false);
    let _ = match format {
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
}

/// `RUST_LOG` as a filter: a level (`warn`) and/or `target=level`
/// directives (`info,flow_runtime=debug`); `info` when unset or invalid.
/// Per-target levels rather than tracing-subscriber's `EnvFilter`, whose
/// span and field matching nobody uses here and which compiles a regex
/// engine into every binary (docs/performance.md).
fn log_filter(directives: Option<&str>) -> Targets {
    directives
        .filter(|d| !d.trim().is_empty())
        .and_then(|d| d.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO))
}

#[cfg(test)]
mod tests {
    use super::log_filter;
    use tracing::Level;

    #[test]
    fn rust_log_sets_levels_per_target() {
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
}
