//! `subscribe nats`: core NATS subjects (with a queue group) and JetStream
//! durable pull consumers; the `nats.publish` step.
//!
//! Without `durable:` the flow subscribes to the subject on core NATS (in
//! queue group `group:` when given, so replicas share the messages). Core
//! NATS has no acknowledgements: a message is stored before the next one is
//! read, but a message that arrives while the service is down, or that is
//! in flight when the process dies, is lost (at-most-once). The dedupe key
//! is the `Nats-Msg-Id` header when the publisher set one.
//!
//! With `durable: "name"` the flow reads through a JetStream durable pull
//! consumer of that name (explicit acks): each message is acknowledged once
//! its run is stored, so nothing is lost while the service is down or when
//! it dies (at-least-once); the dedupe key is the message's stream and
//! sequence, so a redelivery after a crash stores nothing new. When no
//! stream captures the subject, a stream `FLOW_<subject>` (file storage)
//! is created for it. Replicas share a durable consumer; `group:` is not
//! used with `durable:`.

use async_nats::jetstream;
use async_nats::jetstream::consumer::{pull, AckPolicy};
use async_nats::jetstream::context::GetStreamByNameErrorKind;
use futures::future::{BoxFuture, FutureExt as _};
use futures::StreamExt as _;
use serde_json::{Map, Value};

use super::{Message, Subscriber};
use crate::core::error::StepError;
use crate::engine::ctx::StepCall;

/// The header a publisher names a message with (JetStream deduplicates on it).
const MSG_ID: &str = "Nats-Msg-Id";

/// Runs the subscription until shutdown, reconnecting with backoff.
pub(crate) async fn run(sub: Subscriber) {
    sub.reconnecting(|| subscribe(&sub).boxed()).await;
}

async fn subscribe(sub: &Subscriber) -> Result<(), String> {
    let client = async_nats::ConnectOptions::new()
        .name(format!("{}/{}", sub.rt.integration().name, sub.flow))
        .connection_timeout(std::time::Duration::from_secs(10))
        .connect(sub.trigger.url.as_str())
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    match sub.trigger.durable.as_deref() {
        Some(durable) => jetstream_consumer(sub, client, durable).await,
        None => core(sub, client).await,
    }
}

async fn core(sub: &Subscriber, client: async_nats::Client) -> Result<(), String> {
    let subject = sub.trigger.subject.to_string();
    let mut messages = match &sub.trigger.group {
        Some(group) => client.queue_subscribe(subject, group.clone()).await,
        None => client.subscribe(subject).await,
    }
    .map_err(|e| format!("cannot subscribe: {e}"))?;
    // The server has the subscription once the flush returns.
    client
        .flush()
        .await
        .map_err(|e| format!("cannot subscribe: {e}"))?;
    sub.subscribed();
    sub.connected();
    while let Some(m) = messages.next().await {
        let headers = headers(m.headers.as_ref());
        // By name, not `HeaderMap::get`: a received header's name is kept
        // as sent, which `get` with a well-known name does not match.
        let id = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(MSG_ID))
            .and_then(|(_, v)| v.as_str())
            .map(|v| format!("id:{v}"));
        let msg = Message {
            subject: m.subject.to_string(),
            headers,
            payload: m.payload.to_vec(),
            id,
        };
        if sub.store_until_stored(msg).await.is_none() {
            return Ok(());
        }
    }
    Err("the subscription ended (connection closed)".into())
}

async fn jetstream_consumer(
    sub: &Subscriber,
    client: async_nats::Client,
    durable: &str,
) -> Result<(), String> {
    let js = jetstream::new(client);
    let subject = sub.trigger.subject;
    let stream_name = match js.stream_by_subject(subject).await {
        Ok(name) => name,
        Err(e) if e.kind() == GetStreamByNameErrorKind::NotFound => {
            let name = stream_name_for(subject);
            js.get_or_create_stream(jetstream::stream::Config {
                name: name.clone(),
                subjects: vec![subject.to_string()],
                ..Default::default()
            })
            .await
            .map_err(|e| format!("cannot create the JetStream stream `{name}`: {e}"))?;
            tracing::info!(flow = sub.flow, stream = %name, subject, "created a JetStream stream for the subject");
            name
        }
        Err(e) => {
            return Err(format!(
                "cannot find the JetStream stream of `{subject}`: {e}"
            ))
        }
    };
    let stream = js
        .get_stream(&stream_name)
        .await
        .map_err(|e| format!("cannot open the JetStream stream `{stream_name}`: {e}"))?;
    let consumer: jetstream::consumer::Consumer<pull::Config> = stream
        .get_or_create_consumer(
            durable,
            pull::Config {
                durable_name: Some(durable.to_string()),
                ack_policy: AckPolicy::Explicit,
                filter_subject: subject.to_string(),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("cannot create the durable consumer `{durable}`: {e}"))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| format!("cannot read from the durable consumer `{durable}`: {e}"))?;
    sub.subscribed();
    sub.connected();
    while let Some(m) = messages.next().await {
        let m = m.map_err(|e| format!("cannot read from the durable consumer `{durable}`: {e}"))?;
        let id = m
            .info()
            .ok()
            .map(|i| format!("{}:{}", i.stream, i.stream_sequence));
        let msg = Message {
            subject: m.subject.to_string(),
            headers: headers(m.headers.as_ref()),
            payload: m.payload.to_vec(),
            id,
        };
        if sub.store_until_stored(msg).await.is_none() {
            return Ok(());
        }
        // The run is stored: a lost ack only means a redelivery, which
        // the dedupe key absorbs.
        if let Err(e) = m.ack().await {
            tracing::warn!(flow = sub.flow, error = %e, "cannot acknowledge a message; it will be delivered again");
        }
    }
    Err("the durable consumer's message stream ended".into())
}

/// `FLOW_` and the subject with the characters a stream name cannot hold
/// replaced (`orders.*` → `FLOW_orders__`).
fn stream_name_for(subject: &str) -> String {
    let clean: String = subject
        .chars()
        .map(|c| match c {
            '.' | '*' | '>' | ' ' | '\t' | '/' | '\\' => '_',
            c => c,
        })
        .collect();
    format!("FLOW_{clean}")
}

fn headers(h: Option<&async_nats::HeaderMap>) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(h) = h {
        for (name, values) in h.iter() {
            let joined: Vec<&str> = values.iter().map(|v| v.as_str()).collect();
            out.insert(name.to_string(), Value::String(joined.join(", ")));
        }
    }
    out
}

/// One client per URL, shared by the steps of all runs (the client
/// reconnects by itself).
async fn client(url: &str) -> Result<async_nats::Client, String> {
    static CLIENTS: super::Clients<async_nats::Client> = super::Clients::new();
    CLIENTS
        .get(url, || async {
            async_nats::ConnectOptions::new()
                .connection_timeout(std::time::Duration::from_secs(10))
                .connect(url)
                .await
                .map_err(|e| format!("cannot connect to NATS: {e}"))
        })
        .await
}

/// `nats.publish(url, subject, json: V, id: S?)`: publishes `V` as JSON.
/// When a JetStream stream captures the subject, the message carries
/// `Nats-Msg-Id` (`id:`, else the step's idempotency key: execution id and
/// step key, the same on every retry), so the stream keeps one copy of a
/// retried publish, and the step waits for the stream's acknowledgement.
/// Otherwise it is a core NATS publish. Returns the message id.
pub(crate) fn publish(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    async move {
        let super::Publish {
            url,
            to: subject,
            payload,
            key,
        } = super::Publish::from_call(
            &call,
            "nats.publish",
            "subject",
            |s| !s.is_empty(),
            "a non-empty String",
        )?;
        let id = match call.args.get_named("id").filter(|v| !v.is_null()) {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(StepError::permanent("nats.publish: `id:` must be a String")),
            None => key,
        };
        let redacted = |e: String| super::redact_urls(&e, &url);
        let client = client(&url)
            .await
            .map_err(|e| StepError::retryable(format!("nats.publish: {}", redacted(e))))?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(MSG_ID, id.as_str());
        let js = jetstream::new(client.clone());
        let has_stream = match js.stream_by_subject(subject.as_str()).await {
            Ok(_) => true,
            Err(e) if e.kind() == GetStreamByNameErrorKind::NotFound => false,
            Err(e) if e.kind() == GetStreamByNameErrorKind::InvalidSubject => {
                return Err(StepError::permanent(format!(
                    "nats.publish: invalid subject {subject:?}"
                )))
            }
            Err(e) => {
                return Err(StepError::retryable(format!(
                    "nats.publish: cannot look up JetStream streams: {e}"
                )))
            }
        };
        if has_stream {
            let ack = js
                .publish_with_headers(subject.clone(), headers, payload.into())
                .await
                .map_err(|e| StepError::retryable(format!("nats.publish to `{subject}`: {e}")))?;
            ack.await.map_err(|e| {
                StepError::retryable(format!(
                    "nats.publish to `{subject}`: not acknowledged: {e}"
                ))
            })?;
        } else {
            client
                .publish_with_headers(subject.clone(), headers, payload.into())
                .await
                .map_err(|e| StepError::retryable(format!("nats.publish to `{subject}`: {e}")))?;
            client
                .flush()
                .await
                .map_err(|e| StepError::retryable(format!("nats.publish to `{subject}`: {e}")))?;
        }
        Ok(Value::String(id))
    }
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_hold_no_subject_punctuation() {
        assert_eq!(stream_name_for("orders.*.eu"), "FLOW_orders___eu");
        assert_eq!(stream_name_for("a.>"), "FLOW_a__");
    }
}
