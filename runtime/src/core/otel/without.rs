//! Without the `otel` feature: export is asked for but not compiled in.

use super::{FinishedSpan, Service};

/// Warns once, at start-up, and exports nothing.
pub(super) fn start(_url: &str, _service: &Service) -> bool {
    tracing::warn!(
        "OTEL_EXPORTER_OTLP_ENDPOINT (or --otlp-endpoint) is set, but this binary was built without OpenTelemetry export: traces are not sent (trace ids are still propagated and logged); rebuild with flowc build --with otel"
    );
    false
}

pub(super) fn stop() {}

pub(super) fn flush() {}

pub(super) fn export(_span: FinishedSpan) {}
