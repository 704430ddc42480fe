//! The bottom layer: what every other layer shares and that knows nothing
//! of runs, stores or adapters — values and the language's operators, bytes,
//! schemas, errors, the nesting limit of JSON, redaction, config loading, metrics, logging, W3C trace context
//! and the OTLP export of traces (feature `otel`), lock-free caps, and the
//! helpers that turn HTTP headers and files into trigger values.

pub(crate) mod alloc;
pub mod bytes;
pub mod config;
pub mod error;
pub mod files;
pub mod fnv;
pub mod glob;
pub mod headers;
pub mod hmac;
pub mod logging;
pub mod metrics;
pub mod nesting;
pub mod ops;
pub mod otel;
pub mod outbound;
pub mod plain_http;
pub(crate) mod reconnect;
pub mod redact;
pub mod schema;
pub mod seal;
pub mod slots;
pub mod sync;
pub mod trace;
