//! `subscribe redis`: Redis Streams read through a consumer group; the
//! `redis.xadd` step.
//!
//! The subject is the stream's key. The group (`group:`, default
//! `flow-<integration>-<flow>`) is created when missing (`XGROUP CREATE
//! ... 0 MKSTREAM`: a new group starts at the beginning of the stream, so
//! entries added before the first start are not missed). Each process reads
//! as a consumer of its own (`<hostname>-<random>`) with `XREADGROUP`, and
//! acknowledges an entry (`XACK`) once its run is stored: at-least-once,
//! and the entry id is the dedupe key, so a redelivery stores nothing new.
//! Entries left pending by a consumer that died (delivered, never
//! acknowledged) are taken over with `XAUTOCLAIM` once idle for
//! [`CLAIM_IDLE`], at start-up and every [`CLAIM_EVERY`].
//!
//! An entry's payload is its field `json` (what `redis.xadd` writes); the
//! other fields are the trigger's `headers`. An entry without a `json`
//! field has all its fields, as a JSON object of strings, as payload.

use std::time::Duration;

use futures::future::{BoxFuture, FutureExt as _};
use redis::aio::MultiplexedConnection;
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamReadOptions, StreamReadReply,
};
use redis::{AsyncCommands as _, AsyncConnectionConfig};
use serde_json::{Map, Value};

use super::{Message, Subscriber};
use crate::core::error::StepError;
use crate::engine::ctx::StepCall;

/// How long an entry stays pending with another consumer before this one
/// takes it over.
pub(crate) const CLAIM_IDLE: Duration = Duration::from_secs(30);
/// How often pending entries of other consumers are looked for.
pub(crate) const CLAIM_EVERY: Duration = Duration::from_secs(10);
/// How long one `XREADGROUP` waits for new entries.
const BLOCK: Duration = Duration::from_secs(2);
/// Entries per read.
const BATCH: usize = 50;

/// Runs the subscription until shutdown, reconnecting with backoff.
pub(crate) async fn run(sub: Subscriber) {
    let consumer = format!(
        "{}-{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "flow".into()),
        uuid::Uuid::new_v4().simple()
    );
    sub.reconnecting(|| consume(&sub, &consumer).boxed()).await;
}

async fn connect(
    url: &str,
    response_timeout: Option<Duration>,
) -> Result<MultiplexedConnection, String> {
    let client = redis::Client::open(url).map_err(|e| format!("invalid Redis URL: {e}"))?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(10)))
        .set_response_timeout(response_timeout);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| format!("cannot connect: {e}"))
}

async fn consume(sub: &Subscriber, consumer: &str) -> Result<(), String> {
    let stream = sub.trigger.subject;
    let group = sub.group();
    // Blocking reads hold the connection: no response timeout on it.
    let mut con = connect(&sub.trigger.url, None).await?;
    let created: redis::RedisResult<()> = con.xgroup_create_mkstream(stream, &group, "0").await;
    if let Err(e) = created {
        if e.code() != Some("BUSYGROUP") {
            return Err(format!("cannot create the consumer group `{group}`: {e}"));
        }
    }
    sub.subscribed();
    sub.connected();
    let mut next_claim = tokio::time::Instant::now();
    loop {
        if tokio::time::Instant::now() >= next_claim {
            claim(sub, &mut con, &group, consumer).await?;
            next_claim = tokio::time::Instant::now() + CLAIM_EVERY;
        }
        let opts = StreamReadOptions::default()
            .group(&group, consumer)
            .count(BATCH)
            .block(BLOCK.as_millis() as usize);
        let reply: Option<StreamReadReply> = con
            .xread_options(&[stream], &[">"], &opts)
            .await
            .map_err(|e| format!("XREADGROUP failed: {e}"))?;
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            for entry in key.ids {
                if !deliver(sub, &mut con, &group, entry).await? {
                    return Ok(());
                }
            }
        }
    }
}

/// Takes over the entries other consumers left pending for [`CLAIM_IDLE`].
async fn claim(
    sub: &Subscriber,
    con: &mut MultiplexedConnection,
    group: &str,
    consumer: &str,
) -> Result<(), String> {
    let stream = sub.trigger.subject;
    let mut start = "0-0".to_string();
    loop {
        let reply: StreamAutoClaimReply = con
            .xautoclaim_options(
                stream,
                group,
                consumer,
                CLAIM_IDLE.as_millis() as u64,
                &start,
                StreamAutoClaimOptions::default().count(BATCH),
            )
            .await
            .map_err(|e| format!("XAUTOCLAIM failed: {e}"))?;
        for entry in reply.claimed {
            tracing::info!(flow = sub.flow, entry = %entry.id, "took over an entry a stopped consumer left pending");
            if !deliver(sub, con, group, entry).await? {
                return Ok(());
            }
        }
        if reply.next_stream_id == "0-0" {
            return Ok(());
        }
        start = reply.next_stream_id;
    }
}

/// Stores an entry's run and acknowledges it; `false` on shutdown.
async fn deliver(
    sub: &Subscriber,
    con: &mut MultiplexedConnection,
    group: &str,
    entry: StreamId,
) -> Result<bool, String> {
    let msg = message(sub.trigger.subject, &entry);
    if sub.store_until_stored(msg).await.is_none() {
        return Ok(false);
    }
    let acked: redis::RedisResult<i64> = con.xack(sub.trigger.subject, group, &[&entry.id]).await;
    acked.map_err(|e| format!("XACK failed: {e}"))?;
    Ok(true)
}

fn text(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::Int(i) => i.to_string(),
        other => format!("{other:?}"),
    }
}

/// The message of a stream entry (see the module docs).
fn message(stream: &str, entry: &StreamId) -> Message {
    let mut fields: Vec<(&String, &redis::Value)> = entry.map.iter().collect();
    fields.sort_by(|a, b| a.0.cmp(b.0));
    let mut headers = Map::new();
    let mut payload = None;
    for (k, v) in &fields {
        if k.as_str() == "json" {
            payload = Some(match v {
                redis::Value::BulkString(b) => b.clone(),
                other => text(other).into_bytes(),
            });
        } else {
            headers.insert((*k).clone(), Value::String(text(v)));
        }
    }
    let payload = match payload {
        Some(p) => p,
        None => {
            let all = std::mem::take(&mut headers);
            serde_json::to_vec(&Value::Object(all)).unwrap_or_default()
        }
    };
    Message {
        subject: stream.to_string(),
        headers,
        payload,
        id: Some(format!("{stream}:{}", entry.id)),
    }
}

/// One connection per URL, shared by the steps of all runs.
async fn connection(url: &str) -> Result<MultiplexedConnection, String> {
    static CONNS: super::Clients<MultiplexedConnection> = super::Clients::new();
    CONNS
        .get(url, || connect(url, Some(Duration::from_secs(10))))
        .await
}

/// `redis.xadd(url, stream, json: V)`: appends an entry whose field `json`
/// holds `V` as JSON, and field `idempotency_key` the step's idempotency
/// key (execution id and step key, the same on every retry; Redis does not
/// deduplicate, a consumer can). Returns the entry id.
pub(crate) fn xadd(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    async move {
        let super::Publish {
            url,
            to: stream,
            payload,
            key,
        } = super::Publish::from_call(
            &call,
            "redis.xadd",
            "stream",
            |s| !s.is_empty(),
            "a non-empty String",
        )?;
        // serde_json writes UTF-8.
        let payload = String::from_utf8_lossy(&payload).into_owned();
        let mut con = connection(&url).await.map_err(|e| {
            StepError::retryable(format!("redis.xadd: {}", super::redact_urls(&e, &url)))
        })?;
        let id: String = con
            .xadd(
                &stream,
                "*",
                &[
                    ("json", payload.as_str()),
                    ("idempotency_key", key.as_str()),
                ],
            )
            .await
            .map_err(|e| StepError::retryable(format!("redis.xadd to `{stream}`: {e}")))?;
        Ok(Value::String(id))
    }
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(fields: &[(&str, &str)]) -> StreamId {
        StreamId {
            id: "1-0".into(),
            map: fields
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        redis::Value::BulkString(v.as_bytes().to_vec()),
                    )
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_json_field_is_the_payload_and_the_others_are_headers() {
        let m = message("s", &entry(&[("json", "{\"a\":1}"), ("source", "crm")]));
        assert_eq!(m.payload, b"{\"a\":1}");
        assert_eq!(m.headers.get("source"), Some(&Value::String("crm".into())));
        assert_eq!(m.id.as_deref(), Some("s:1-0"));
        let m = message("s", &entry(&[("a", "1"), ("b", "x")]));
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(v, serde_json::json!({"a": "1", "b": "x"}));
        assert!(m.headers.is_empty());
    }
}
