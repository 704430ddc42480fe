//! Export of run traces over OTLP/HTTP (`OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `--otlp-endpoint`): a span per run start and one per step attempt,
//! with the ids of [`crate::core::trace`]. The exporter (the OpenTelemetry
//! crates) is compiled with the `otel` feature only; without it, a binary
//! asked to export logs one warning that names the rebuild, and runs on.
//!
//! Nothing here costs a run anything while export is off: callers check
//! [`enabled`] (one atomic load) before building a span.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use crate::core::trace::{RunTrace, SpanId};

#[cfg(feature = "otel")]
#[path = "otel/export.rs"]
mod exporter;
#[cfg(not(feature = "otel"))]
#[path = "otel/without.rs"]
mod exporter;

/// Set once the exporter is running.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (so worth building).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Who this service is, in every span's resource.
#[derive(Debug, Clone)]
pub struct Service {
    /// `service.name`: the integration's name.
    pub name: String,
    /// `service.version`.
    pub version: String,
}

/// Starts exporting to `endpoint` (an OTLP/HTTP base URL; `/v1/traces` is
/// added unless the URL already ends with it). Without the `otel` feature,
/// or when the exporter cannot be built, logs a warning and exports
/// nothing: tracing is never a reason not to start.
pub fn init(endpoint: &str, service: Service) {
    if exporter::start(&traces_url(endpoint), &service) {
        ENABLED.store(true, Ordering::Relaxed);
    }
}

/// Sends what is still buffered (at shutdown).
pub fn shutdown() {
    if enabled() {
        ENABLED.store(false, Ordering::Relaxed);
        exporter::stop();
    }
}

/// Sends the spans buffered so far and waits for the collector's answer
/// (tests; blocking, so not from an async task's thread).
pub fn flush() {
    if enabled() {
        exporter::flush();
    }
}

/// The URL traces are posted to, per the OTLP spec for
/// `OTEL_EXPORTER_OTLP_ENDPOINT`.
fn traces_url(endpoint: &str) -> String {
    let base = endpoint.trim().trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_string()
    } else {
        format!("{base}/v1/traces")
    }
}

/// A value of a span attribute.
#[derive(Debug, Clone)]
pub enum AttributeValue {
    /// Text.
    Text(String),
    /// A whole number.
    Int(i64),
}

/// A span that has ended, to export.
#[derive(Debug, Clone)]
pub struct FinishedSpan {
    /// `run` or `step`.
    pub name: &'static str,
    /// The run's trace.
    pub trace: RunTrace,
    /// This span's id.
    pub span_id: SpanId,
    /// Its parent: `None` for the run span (whose parent is the caller's
    /// span, if any).
    pub parent: Option<SpanId>,
    /// When it started.
    pub start: SystemTime,
    /// When it ended.
    pub end: SystemTime,
    /// Its attributes (never a secret: callers pass redacted text).
    pub attributes: Vec<(&'static str, AttributeValue)>,
    /// The error it ended with, if it failed.
    pub error: Option<String>,
}

/// Exports `span` if export is on.
pub fn export(span: FinishedSpan) {
    if enabled() {
        exporter::export(span);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_path_is_added_once() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://c:4318/v1/traces/"),
            "http://c:4318/v1/traces"
        );
    }
}
