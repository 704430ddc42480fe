//! W3C trace context (`traceparent`), in every binary: the id of the trace a
//! run belongs to, read from the caller's `traceparent` header and sent on
//! every outgoing `http.*` request. Exporting the spans is the `otel`
//! feature's job (`core::otel`); the ids need no OpenTelemetry crate.
//!
//! A run's trace id is the caller's, when its webhook or sync request had a
//! valid `traceparent`, and otherwise the 128 bits of its execution id (a
//! UUID): both are found again from the stored execution (the header is in
//! the stored trigger's `headers`), so a replay or a take-over continues the
//! same trace without storing anything more.

use std::fmt;

use serde_json::Value;

/// A W3C `traceparent`: version 00, trace id, parent span id, flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace id (never all zeros).
    pub trace_id: TraceId,
    /// The span id of the parent (never all zeros).
    pub span_id: SpanId,
    /// The `sampled` flag.
    pub sampled: bool,
}

/// 16 bytes naming a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceId(pub [u8; 16]);

/// 8 bytes naming a span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanId(pub [u8; 8]);

impl SpanId {
    /// A fresh random span id (never all zeros).
    pub fn random() -> SpanId {
        use rand::Rng as _;
        SpanId(rand::rng().random_range(1..=u64::MAX).to_be_bytes())
    }
}

impl TraceParent {
    /// Parses a `traceparent` header value; `None` for anything malformed
    /// (it is then ignored: the run starts a trace of its own). Versions
    /// above 00 are read as 00, as the W3C spec asks.
    pub fn parse(header: &str) -> Option<TraceParent> {
        let header = header.trim();
        let mut parts = header.split('-');
        let version = parts.next()?;
        let trace_id = parts.next()?;
        let span_id = parts.next()?;
        let flags = parts.next()?;
        let version = hex_array::<1>(version)?[0];
        if version == 0xff || (version == 0 && parts.next().is_some()) {
            return None;
        }
        let trace_id = hex_array::<16>(trace_id).filter(|b| b != &[0; 16])?;
        let span_id = hex_array::<8>(span_id).filter(|b| b != &[0; 8])?;
        let flags = hex_array::<1>(flags)?[0];
        Some(TraceParent {
            trace_id: TraceId(trace_id),
            span_id: SpanId(span_id),
            sampled: flags & 1 == 1,
        })
    }

    /// The `traceparent` of a stored trigger value: its `headers` (webhook
    /// and sync triggers) hold the caller's header.
    pub fn of_trigger(trigger: &Value) -> Option<TraceParent> {
        let headers = trigger.get("headers")?.as_object()?;
        // Header names are stored lower-case (core::headers::header_map).
        TraceParent::parse(headers.get("traceparent")?.as_str()?)
    }
}

/// The two lower-case hex digits of every byte value.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0u8; 2]; 256];
    let mut b = 0;
    while b < 256 {
        pairs[b] = [DIGITS[b >> 4], DIGITS[b & 0xf]];
        b += 1;
    }
    pairs
};

/// Writes `bytes` as lower-case hex into `out` (twice their length), a
/// table lookup per byte: `hex::encode_to_slice` spent about 15
/// instructions a byte on every outgoing request's header.
fn write_hex(bytes: &[u8], out: &mut [u8]) {
    debug_assert_eq!(out.len(), 2 * bytes.len());
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(*b)]);
    }
}

/// Lower-case hex of exactly `N` bytes (no sign, no other length).
fn hex_array<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

impl TraceParent {
    /// The header value `00-<trace id>-<span id>-<flags>`, written into a
    /// fixed buffer: it goes out with every `http.*` call, where the
    /// formatting machinery cost about 3,000 instructions a request.
    pub fn header_bytes(&self) -> [u8; 55] {
        let mut out = [0u8; 55];
        out[..3].copy_from_slice(b"00-");
        write_hex(&self.trace_id.0, &mut out[3..35]);
        out[35] = b'-';
        write_hex(&self.span_id.0, &mut out[36..52]);
        out[52..].copy_from_slice(if self.sampled { b"-01" } else { b"-00" });
        out
    }

    /// [`Self::header_bytes`] as text.
    pub fn header_value(&self) -> String {
        String::from_utf8_lossy(&self.header_bytes()).into_owned()
    }
}

impl fmt::Display for TraceParent {
    /// The header value: `00-<trace id>-<span id>-<flags>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.header_value())
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// The trace of one run: its trace id, the caller's span (the run span's
/// parent, if a caller sent one) and the run span's own id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunTrace {
    /// The trace the run belongs to.
    pub trace_id: TraceId,
    /// The caller's span, parent of the run span.
    pub caller_span: Option<SpanId>,
    /// This start of the run (a replay gets a new one, same trace).
    pub run_span: SpanId,
    /// Whether the trace is sampled (the caller's choice; ours: yes).
    pub sampled: bool,
}

/// What a run's trace is made from, kept by the run instead of the trace
/// itself: a sync run that calls nothing out and logs no line of its own
/// never computes its trace, so tracing costs it nothing but the caller's
/// header lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceSeed {
    /// The caller's `traceparent`, if valid.
    pub caller: Option<TraceParent>,
    /// Which start of the run this is (the execution's `attempts`).
    pub start: u32,
}

impl TraceSeed {
    /// The trace of execution `execution_id` (see [`RunTrace::new`]).
    pub fn trace(&self, execution_id: &str) -> RunTrace {
        RunTrace::new(execution_id, self.start, self.caller)
    }
}

impl RunTrace {
    /// The trace of start number `start` of execution `execution_id`,
    /// joining `caller`'s trace if given; else the trace id is the
    /// execution id's 128 bits. The same for the same arguments, so every
    /// part of a run (its body, its `on failure`, its end) computes it
    /// where needed without sharing it.
    pub fn new(execution_id: &str, start: u32, caller: Option<TraceParent>) -> RunTrace {
        let own = trace_id_of_execution(execution_id);
        let run_span = run_span_of(own, start);
        match caller {
            Some(c) => RunTrace {
                trace_id: c.trace_id,
                caller_span: Some(c.span_id),
                run_span,
                sampled: c.sampled,
            },
            None => RunTrace {
                trace_id: own,
                caller_span: None,
                run_span,
                sampled: true,
            },
        }
    }

    /// The `traceparent` to send from inside span `span` of this run.
    pub fn traceparent(&self, span: SpanId) -> TraceParent {
        TraceParent {
            trace_id: self.trace_id,
            span_id: span,
            sampled: self.sampled,
        }
    }
}

/// The trace id of a run that no caller's trace covers: its execution
/// id's bytes (an id that is not a UUID, never made by this runtime, is
/// hashed instead).
pub fn trace_id_of_execution(execution_id: &str) -> TraceId {
    match uuid::Uuid::parse_str(execution_id) {
        Ok(id) if !id.is_nil() => TraceId(*id.as_bytes()),
        _ => {
            use sha2::Digest as _;
            let digest = sha2::Sha256::digest(execution_id.as_bytes());
            let mut id = [0u8; 16];
            id.copy_from_slice(&digest[..16]);
            id[0] |= 1; // never all zeros
            TraceId(id)
        }
    }
}

/// The span id of start `start` of the run whose own trace id is
/// `execution`: its last 8 bytes (62 random bits of a v7 UUID) with the
/// start mixed in, so each start has its own span and runs that share a
/// caller's trace do not collide.
fn run_span_of(execution: TraceId, start: u32) -> SpanId {
    let mut low = [0u8; 8];
    low.copy_from_slice(&execution.0[8..]);
    let id = u64::from_be_bytes(low) ^ u64::from(start);
    SpanId(id.max(1).to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_written_as_the_hex_crate_writes_it() {
        let bytes: Vec<u8> = (0..=255).collect();
        let mut out = vec![0u8; 512];
        write_hex(&bytes, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), hex::encode(&bytes));
    }

    #[test]
    fn a_valid_traceparent_round_trips() {
        let h = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let tp = TraceParent::parse(h).unwrap();
        assert!(tp.sampled);
        assert_eq!(tp.to_string(), h);
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert_eq!(
            TraceParent::parse(unsampled).unwrap().header_value(),
            unsampled
        );
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        for bad in [
            "",
            "00",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "0é-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_later_version_is_read_as_00() {
        let tp = TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more")
            .unwrap();
        assert!(!tp.sampled);
    }

    #[test]
    fn a_run_without_caller_traces_under_its_execution_id() {
        let id = "01890a5d-ac96-774b-bcce-b302099a8057";
        let t = RunTrace::new(id, 1, None);
        assert_eq!(t.trace_id.to_string(), id.replace('-', ""));
        assert_eq!(t.caller_span, None);
        assert_eq!(RunTrace::new(id, 1, None), t);
        let replayed = RunTrace::new(id, 2, None);
        assert_eq!(replayed.trace_id, t.trace_id);
        assert_ne!(replayed.run_span, t.run_span);
        let odd = RunTrace::new("not-a-uuid", 1, None);
        assert_eq!(odd, RunTrace::new("not-a-uuid", 1, None));
    }

    #[test]
    fn a_run_joins_its_callers_trace() {
        let caller =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let trigger = serde_json::json!({ "headers": { "traceparent": caller.to_string() } });
        let t = RunTrace::new("x", 1, TraceParent::of_trigger(&trigger));
        assert_eq!(t.trace_id, caller.trace_id);
        assert_eq!(t.caller_span, Some(caller.span_id));
        assert_ne!(t.run_span, caller.span_id);
    }
}
