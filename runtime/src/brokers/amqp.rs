//! `subscribe amqp`: RabbitMQ (AMQP 0-9-1) queues; the `amqp.publish` step.
//!
//! The subject is the queue's name; a queue that does not exist is declared
//! durable (an existing one is used as it is, with its arguments, e.g. its
//! dead-letter exchange). The flow consumes it with manual
//! acknowledgements and a prefetch of [`PREFETCH`] messages. A message is
//! acknowledged once its run is stored: a crash before that makes the
//! broker deliver it again (at-least-once), and its `message_id`
//! property, when the publisher set one (`amqp.publish` does), is the
//! dedupe key, so the redelivery stores nothing new. A message that does
//! not decode is recorded as a failed run and then rejected without
//! requeue: RabbitMQ moves it to the queue's dead-letter exchange when one
//! is configured (`x-dead-letter-exchange`), and drops it otherwise.
//!
//! `amqp://` URLs only (no TLS in this build); the vhost is the URL's path
//! (`amqp://user:pass@host:5672/%2f` for `/`).

use std::collections::HashMap;
use std::sync::OnceLock;

use futures::future::{BoxFuture, FutureExt as _};
use futures::StreamExt as _;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, BasicRejectOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use super::{Message, Subscriber};
use crate::core::error::StepError;
use crate::engine::ctx::StepCall;

/// Unacknowledged messages the broker sends ahead.
pub(crate) const PREFETCH: u16 = 16;

/// Runs the subscription until shutdown, reconnecting with backoff.
pub(crate) async fn run(sub: Subscriber) {
    sub.reconnecting(|| consume(&sub).boxed()).await;
}

async fn connect(url: &str, name: String) -> Result<Connection, String> {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    Connection::connect(url, props)
        .await
        .map_err(|e| format!("cannot connect: {e}"))
}

/// A channel on which `queue` exists (declared durable when it did not).
async fn queue_channel(conn: &Connection, queue: &str) -> Result<Channel, String> {
    let ch = conn
        .create_channel()
        .await
        .map_err(|e| format!("cannot open a channel: {e}"))?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    if ch
        .queue_declare(queue, passive, FieldTable::default())
        .await
        .is_ok()
    {
        return Ok(ch);
    }
    // The failed passive declare closed that channel.
    let ch = conn
        .create_channel()
        .await
        .map_err(|e| format!("cannot open a channel: {e}"))?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(queue, durable, FieldTable::default())
        .await
        .map_err(|e| format!("cannot declare the queue `{queue}`: {e}"))?;
    Ok(ch)
}

async fn consume(sub: &Subscriber) -> Result<(), String> {
    let queue = sub.trigger.subject;
    let name = format!("{}/{}", sub.rt.integration().name, sub.flow);
    let conn = connect(&sub.trigger.url, name.clone()).await?;
    let ch = queue_channel(&conn, queue).await?;
    ch.basic_qos(PREFETCH, BasicQosOptions::default())
        .await
        .map_err(|e| format!("cannot set the prefetch: {e}"))?;
    let tag = format!("{name}-{}", uuid::Uuid::new_v4().simple());
    let mut consumer = ch
        .basic_consume(
            queue,
            &tag,
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("cannot consume the queue `{queue}`: {e}"))?;
    sub.subscribed();
    sub.connected();
    while let Some(delivery) = consumer.next().await {
        let d = delivery.map_err(|e| format!("consuming `{queue}` failed: {e}"))?;
        let subject = if d.routing_key.as_str().is_empty() {
            queue.to_string()
        } else {
            d.routing_key.to_string()
        };
        let msg = Message {
            subject,
            headers: headers(d.properties.headers().as_ref()),
            payload: d.data.clone(),
            id: d
                .properties
                .message_id()
                .as_ref()
                .map(|id| format!("{queue}:{id}")),
        };
        let done = match sub.store_until_stored(msg).await {
            None => return Ok(()),
            Some(true) => d.acker.ack(BasicAckOptions::default()).await,
            Some(false) => d.acker.reject(BasicRejectOptions { requeue: false }).await,
        };
        if let Err(e) = done {
            // Delivered again after the reconnect; the dedupe key (when
            // the message has an id) absorbs it.
            return Err(format!("cannot acknowledge a message: {e}"));
        }
    }
    Err(format!("the consumer of `{queue}` was cancelled"))
}

fn value_text(v: &AMQPValue) -> Value {
    match v {
        AMQPValue::LongString(s) => Value::String(s.to_string()),
        AMQPValue::ShortString(s) => Value::String(s.to_string()),
        AMQPValue::Boolean(b) => Value::String(b.to_string()),
        AMQPValue::LongInt(i) => Value::String(i.to_string()),
        AMQPValue::LongLongInt(i) => Value::String(i.to_string()),
        AMQPValue::LongUInt(i) => Value::String(i.to_string()),
        other => Value::String(format!("{other:?}")),
    }
}

fn headers(table: Option<&FieldTable>) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(t) = table {
        for (k, v) in t.inner() {
            out.insert(k.to_string(), value_text(v));
        }
    }
    out
}

/// One confirming channel per URL, shared by the steps of all runs
/// (replaced when it broke).
async fn channel(url: &str) -> Result<Channel, String> {
    static CHANNELS: OnceLock<Mutex<HashMap<String, (Connection, Channel)>>> = OnceLock::new();
    let mut chans = CHANNELS.get_or_init(Default::default).lock().await;
    if let Some((conn, ch)) = chans.get(url) {
        if conn.status().connected() && ch.status().connected() {
            return Ok(ch.clone());
        }
    }
    let conn = connect(url, "flow amqp.publish".into()).await?;
    let ch = conn
        .create_channel()
        .await
        .map_err(|e| format!("cannot open a channel: {e}"))?;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| format!("cannot turn on publisher confirms: {e}"))?;
    chans.insert(url.to_string(), (conn, ch.clone()));
    Ok(ch)
}

/// `amqp.publish(url, routing_key, json: V, exchange: E = "")`: publishes
/// `V` as a persistent JSON message, with `message_id` set to the step's
/// idempotency key (execution id and step key, the same on every retry), and
/// waits for the broker's confirm. Returns the message id.
pub(crate) fn publish(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    async move {
        let super::Publish {
            url,
            to: routing_key,
            payload,
            key: id,
        } = super::Publish::from_call(&call, "amqp.publish", "routing_key", |_| true, "a String")?;
        let exchange = match call.args.get_named("exchange") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                return Err(StepError::permanent(
                    "amqp.publish: `exchange:` must be a String",
                ))
            }
        };
        let ch = channel(&url).await.map_err(|e| {
            StepError::retryable(format!("amqp.publish: {}", super::redact_urls(&e, &url)))
        })?;
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_message_id(id.clone().into());
        let what = format!("amqp.publish to `{routing_key}`");
        let confirm = ch
            .basic_publish(
                &exchange,
                &routing_key,
                BasicPublishOptions::default(),
                &payload,
                props,
            )
            .await
            .map_err(|e| StepError::retryable(format!("{what}: {e}")))?
            .await
            .map_err(|e| StepError::retryable(format!("{what}: {e}")))?;
        match confirm {
            Confirmation::Ack(_) | Confirmation::NotRequested => Ok(Value::String(id)),
            Confirmation::Nack(_) => Err(StepError::retryable(format!(
                "{what}: the broker refused the message (nack)"
            ))),
        }
    }
    .boxed()
}
