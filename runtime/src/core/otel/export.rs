//! The OTLP/HTTP exporter (feature `otel`): the OpenTelemetry SDK's batch
//! processor, protobuf over reqwest's blocking client on its own thread.
//! Spans are built after the fact from [`FinishedSpan`], with the ids the
//! runtime chose (`core::trace`), so the ids in logs and in outgoing
//! `traceparent` headers are the exported ones.

use std::sync::OnceLock;

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags, TraceId, TraceState,
    Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;

use super::{AttributeValue, FinishedSpan, Service};

static EXPORT: OnceLock<(SdkTracerProvider, SdkTracer)> = OnceLock::new();

/// Builds the exporter; `false` (with a warning) if it cannot be.
pub(super) fn start(url: &str, service: &Service) -> bool {
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .build()
    {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the OTLP trace exporter; traces are not sent");
            return false;
        }
    };
    let resource = Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", service.name.clone()),
            KeyValue::new("service.version", service.version.clone()),
        ])
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("flow_runtime");
    let started = EXPORT.set((provider, tracer)).is_ok();
    if started {
        tracing::info!(endpoint = %crate::core::redact::redact_url(url), "exporting traces over OTLP/HTTP");
    }
    started
}

/// Flushes and stops the batch processor.
pub(super) fn stop() {
    if let Some((provider, _)) = EXPORT.get() {
        if let Err(e) = provider.shutdown() {
            tracing::warn!(error = %e, "cannot flush the last traces");
        }
    }
}

pub(super) fn flush() {
    if let Some((provider, _)) = EXPORT.get() {
        if let Err(e) = provider.force_flush() {
            tracing::warn!(error = %e, "cannot send the traces");
        }
    }
}

pub(super) fn export(span: FinishedSpan) {
    let Some((_, tracer)) = EXPORT.get() else {
        return;
    };
    let trace_id = TraceId::from_bytes(span.trace.trace_id.0);
    let flags = if span.trace.sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    // The parent: a step's is the run span; the run span's the caller's
    // span (remote), or none (the trace id is still the run's).
    let parent = match (span.parent, span.trace.caller_span) {
        (Some(run), _) => Some((run, false)),
        (None, Some(caller)) => Some((caller, true)),
        (None, None) => None,
    };
    let cx = match parent {
        Some((id, remote)) => Context::new().with_remote_span_context(SpanContext::new(
            trace_id,
            SpanId::from_bytes(id.0),
            flags,
            remote,
            TraceState::default(),
        )),
        None => Context::new(),
    };
    let mut builder = tracer
        .span_builder(span.name)
        .with_kind(if span.name == "run" {
            SpanKind::Server
        } else {
            SpanKind::Internal
        })
        .with_start_time(span.start)
        .with_attributes(span.attributes.into_iter().map(|(k, v)| match v {
            AttributeValue::Text(t) => KeyValue::new(k, t),
            AttributeValue::Int(i) => KeyValue::new(k, i),
        }));
    builder.trace_id = Some(trace_id);
    builder.span_id = Some(SpanId::from_bytes(span.span_id.0));
    let mut started = tracer.build_with_context(builder, &cx);
    use opentelemetry::trace::Span as _;
    started.set_status(match span.error {
        Some(e) => Status::error(e),
        None => Status::Ok,
    });
    started.end_with_timestamp(span.end);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_endpoint_is_refused_without_panicking() {
        let service = Service {
            name: "x".into(),
            version: "1".into(),
        };
        assert!(!start("not a url at all/v1/traces", &service));
        assert!(EXPORT.get().is_none());
    }
}
