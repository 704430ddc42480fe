//! Subscribe triggers: `trigger subscribe BROKER "subject" { url, body,
//! group, durable }`.
//!
//! One subscriber task per subscribe flow, started with the schedulers and
//! stopped at shutdown. Each message becomes one run: its payload is parsed
//! as JSON and decoded with the flow's `body:` type, and the run is stored
//! with [`Runtime::submit`] under the broker's identity of the message (the
//! dedupe key, when the broker has one). The message is acknowledged only
//! once that call returned — the run is durably recorded — so a crash
//! between delivery and acknowledgement makes the broker deliver it again,
//! and the dedupe key turns that second delivery into nothing new:
//! at-least-once into a stored run, exactly-once where the broker names its
//! messages.
//!
//! A message that does not decode (including JSON nested deeper than
//! [`crate::core::nesting::MAX_DEPTH`] levels, refused before parsing) is
//! stored as a failed run carrying the error and the raw payload
//! ([`Runtime::record_rejected`]) and then
//! acknowledged, so it never blocks the subscription; it can be inspected
//! with `/_flow/executions?status=failed`.
//!
//! A lost connection is retried with backoff (doubling from 500 ms to 30 s);
//! logs name the broker and subject, never the URL (it may hold a password).
//!
//! Brokers, each behind the runtime feature of the same name (`flowc build`
//! turns on those an integration uses): `nats`, `redis`, `amqp`, `mqtt` and
//! `kafka`, and `sqs` under the `aws` feature (see their modules for each
//! one's delivery guarantee).

// A binary built without any broker feature has no subscriber to run.
#![cfg_attr(
    not(any(
        feature = "nats",
        feature = "redis",
        feature = "amqp",
        feature = "mqtt",
        feature = "kafka",
        feature = "aws"
    )),
    allow(dead_code)
)]

#[cfg(feature = "amqp")]
pub(crate) mod amqp;
#[cfg(feature = "kafka")]
pub(crate) mod kafka;
#[cfg(feature = "mqtt")]
pub(crate) mod mqtt;
#[cfg(feature = "nats")]
pub(crate) mod nats;
#[cfg(feature = "redis")]
pub(crate) mod redis;
#[cfg(feature = "aws")]
pub(crate) mod sqs;

use std::sync::atomic::{AtomicU32, Ordering};

use futures::future::BoxFuture;

use serde_json::{json, Map, Value};
use tokio::task::JoinHandle;

use crate::engine::integration::{SubscribeTrigger, TriggerDef};
use crate::engine::registry::StepRegistry;
use crate::engine::Runtime;
use crate::store::StoreError;

pub(crate) use crate::core::reconnect::{backoff, redact_urls};

/// Registers the publish step of every broker this binary was built with.
pub fn register(registry: &mut StepRegistry) {
    #[cfg(feature = "nats")]
    registry.step("nats.publish", nats::publish);
    #[cfg(feature = "redis")]
    registry.step("redis.xadd", redis::xadd);
    #[cfg(feature = "amqp")]
    registry.step("amqp.publish", amqp::publish);
    #[cfg(feature = "mqtt")]
    registry.step("mqtt.publish", mqtt::publish);
    #[cfg(feature = "kafka")]
    registry.step("kafka.publish", kafka::publish);
    #[cfg(feature = "aws")]
    registry.step("sqs.send", sqs::send);
    #[cfg(feature = "aws")]
    registry.step("sns.publish", sqs::sns_publish);
    let _ = registry;
}

/// Starts one subscriber per subscribe flow.
pub(crate) fn start(rt: &Runtime) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for def in rt.flows() {
        let TriggerDef::Subscribe(trigger) = &def.trigger else {
            continue;
        };
        let sub = Subscriber {
            rt: rt.clone(),
            flow: def.name,
            trigger: trigger.clone(),
            failures: AtomicU32::new(0),
        };
        match spawn(sub) {
            Some(task) => tasks.push(task),
            None => tracing::error!(
                flow = def.name,
                broker = trigger.broker,
                "subscribe trigger not started: this binary was built without support for this broker"
            ),
        }
    }
    tasks
}

fn spawn(sub: Subscriber) -> Option<JoinHandle<()>> {
    match sub.trigger.broker {
        #[cfg(feature = "nats")]
        "nats" => Some(tokio::spawn(nats::run(sub))),
        #[cfg(feature = "redis")]
        "redis" => Some(tokio::spawn(redis::run(sub))),
        #[cfg(feature = "amqp")]
        "amqp" => Some(tokio::spawn(amqp::run(sub))),
        #[cfg(feature = "mqtt")]
        "mqtt" => Some(tokio::spawn(mqtt::run(sub))),
        #[cfg(feature = "kafka")]
        "kafka" => Some(tokio::spawn(kafka::run(sub))),
        #[cfg(feature = "aws")]
        "sqs" => Some(tokio::spawn(sqs::run(sub))),
        _ => None,
    }
}

/// One message as a broker delivered it.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    /// The subject, stream or topic it came from.
    pub subject: String,
    /// Its headers (empty for brokers without).
    pub headers: Map<String, Value>,
    /// The raw payload.
    pub payload: Vec<u8>,
    /// The broker's identity of the message, for the dedupe key.
    pub id: Option<String>,
}

/// The subscriber of one flow.
pub(crate) struct Subscriber {
    pub rt: Runtime,
    pub flow: &'static str,
    pub trigger: SubscribeTrigger,
    /// Failed connection attempts since the last good connection.
    failures: AtomicU32,
}

impl Subscriber {
    /// Runs `session` (connect, then consume until the connection breaks)
    /// again and again, waiting longer after each failure, until it ends
    /// for good or shutdown begins. The one reconnect loop of all brokers.
    pub(crate) async fn reconnecting<'s>(
        &'s self,
        mut session: impl FnMut() -> BoxFuture<'s, Result<(), String>>,
    ) {
        loop {
            let result = tokio::select! {
                r = session() => r,
                _ = self.shutdown() => return,
            };
            let Err(error) = result else { return };
            let attempt = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
            if !self.backoff(attempt, &error).await {
                return;
            }
        }
    }

    /// A session connected: the next failure waits the shortest time again.
    pub(crate) fn connected(&self) {
        self.failures.store(0, Ordering::Relaxed);
    }

    /// Stores the run of one message: a run of the flow when it decodes
    /// (`Ok(true)`), a failed run otherwise (`Ok(false)`). `Ok` means it is
    /// durably recorded (or was before, under the same id): acknowledge it
    /// (or dead-letter a rejected one). `Err`: do not.
    pub(crate) async fn store(&self, msg: Message) -> Result<bool, StoreError> {
        let key = msg
            .id
            .as_ref()
            .map(|id| format!("{}:{}", self.trigger.broker, id));
        match decode(&self.trigger.body, &msg.payload) {
            Ok(body) => {
                let trigger = json!({
                    "body": body,
                    "subject": msg.subject,
                    "headers": msg.headers,
                });
                let s = self.rt.submit(self.flow, trigger, key).await?;
                tracing::debug!(flow = self.flow, execution_id = %s.execution_id, "message stored");
                Ok(true)
            }
            Err(error) => {
                let error = format!("the message on `{}` was rejected: {error}", msg.subject);
                let trigger = json!({
                    "body": Value::Null,
                    "subject": msg.subject,
                    "headers": msg.headers,
                    "payload": String::from_utf8_lossy(&msg.payload),
                });
                self.rt
                    .record_rejected(self.flow, trigger, key, &error)
                    .await?;
                Ok(false)
            }
        }
    }

    /// [`Subscriber::store`], tried again with backoff while the store
    /// fails (the message stays unacknowledged meanwhile); `None` if
    /// shutdown began first.
    pub(crate) async fn store_until_stored(&self, msg: Message) -> Option<bool> {
        let mut attempt = 0;
        loop {
            match self.store(msg.clone()).await {
                Ok(accepted) => return Some(accepted),
                Err(e) => {
                    attempt += 1;
                    let wait = backoff(attempt);
                    tracing::error!(flow = self.flow, error = %e, retry_in_ms = wait.as_millis() as u64, "cannot store a message's run");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.shutdown() => return None,
                    }
                }
            }
        }
    }

    /// Resolves once shutdown began.
    pub(crate) async fn shutdown(&self) {
        self.rt.shutdown_started().await;
    }

    /// Logs a connection problem and waits before the next attempt
    /// (`attempt` from 1); `false` if shutdown began meanwhile.
    pub(crate) async fn backoff(&self, attempt: u32, error: &str) -> bool {
        let wait = backoff(attempt);
        tracing::warn!(
            flow = self.flow,
            broker = self.trigger.broker,
            subject = self.trigger.subject,
            error = %self.rt.redactor().redact(&redact_urls(error, &self.trigger.url)),
            retry_in_ms = wait.as_millis() as u64,
            "subscription interrupted; reconnecting"
        );
        tokio::select! {
            _ = tokio::time::sleep(wait) => true,
            _ = self.shutdown() => false,
        }
    }

    /// The consumer group of brokers that have them (`group:`, by default
    /// `flow-<integration>-<flow>`).
    #[cfg_attr(
        not(any(
            feature = "nats",
            feature = "redis",
            feature = "amqp",
            feature = "mqtt",
            feature = "kafka"
        )),
        allow(dead_code)
    )]
    pub(crate) fn group(&self) -> String {
        match &self.trigger.group {
            Some(g) => g.clone(),
            None => format!("flow-{}-{}", self.rt.integration().name, self.flow),
        }
    }

    /// Logs that the subscription is receiving.
    pub(crate) fn subscribed(&self) {
        tracing::info!(
            flow = self.flow,
            broker = self.trigger.broker,
            subject = self.trigger.subject,
            "subscribed"
        );
    }
}

/// What every publish step takes: `url`, the destination (subject, stream,
/// routing key, topic) and the `json:` payload, and the step's idempotency
/// key (execution id and step key: the same on every retry).
#[cfg(any(
    feature = "nats",
    feature = "redis",
    feature = "amqp",
    feature = "mqtt",
    feature = "kafka"
))]
pub(crate) struct Publish {
    /// The broker URL.
    pub url: String,
    /// The destination.
    pub to: String,
    /// The payload, as JSON.
    pub payload: Vec<u8>,
    /// The idempotency key.
    pub key: String,
}

#[cfg(any(
    feature = "nats",
    feature = "redis",
    feature = "amqp",
    feature = "mqtt",
    feature = "kafka"
))]
impl Publish {
    /// Reads the arguments of `func` (`nats.publish`): positional `url`,
    /// the destination named `to` that must pass `valid` (`rule` says how),
    /// and `json:`. Errors are permanent and name the step.
    pub(crate) fn from_call(
        call: &crate::engine::ctx::StepCall,
        func: &str,
        to: &str,
        valid: impl Fn(&str) -> bool,
        rule: &str,
    ) -> Result<Publish, crate::core::error::StepError> {
        use crate::core::error::StepError;
        let args = &call.args;
        let url = args
            .param(0, "url")
            .as_str()
            .ok_or_else(|| StepError::permanent(format!("{func}: the url must be a String")))?
            .to_string();
        let dest = args
            .param(1, to)
            .as_str()
            .filter(|s| valid(s))
            .ok_or_else(|| {
                StepError::permanent(format!(
                    "{func}: the {} must be {rule}",
                    to.replace('_', " ")
                ))
            })?
            .to_string();
        let json = args.get_named("json").unwrap_or(args.get(2));
        let payload =
            serde_json::to_vec(json).map_err(|e| StepError::permanent(format!("{func}: {e}")))?;
        Ok(Publish {
            url,
            to: dest,
            payload,
            key: format!("{}/{}", call.cx.execution_id(), call.step),
        })
    }
}

/// One shared client per broker URL, made on first use (publish steps of
/// all runs share it; the clients reconnect by themselves).
#[cfg(any(feature = "nats", feature = "redis", feature = "kafka"))]
pub(crate) struct Clients<T>(
    std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<String, T>>>,
);

#[cfg(any(feature = "nats", feature = "redis", feature = "kafka"))]
impl<T: Clone> Clients<T> {
    pub(crate) const fn new() -> Self {
        Clients(std::sync::OnceLock::new())
    }

    /// The client of `url`, made with `connect` when there is none yet.
    pub(crate) async fn get<F, Fut>(&self, url: &str, connect: F) -> Result<T, String>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        let map = self.0.get_or_init(Default::default);
        let lock = || {
            map.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some(c) = lock().get(url).cloned() {
            return Ok(c);
        }
        let c = connect().await?;
        lock().insert(url.to_string(), c.clone());
        Ok(c)
    }
}

/// `host[:port]` of a broker URL's authority, `default_port` when it has
/// none; `broker` names the URL kind in errors ("the Kafka URL ...").
#[cfg(any(feature = "kafka", feature = "mqtt"))]
pub(crate) fn host_port<'a>(
    hostport: &'a str,
    default_port: u16,
    broker: &str,
) -> Result<(&'a str, u16), String> {
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("invalid port {p:?} in the {broker} URL"))?,
        ),
        None => (hostport, default_port),
    };
    if host.is_empty() {
        return Err(format!("the {broker} URL names no host"));
    }
    Ok((host, port))
}

/// Parses and decodes a payload with the body type (JSON; a `String` body
/// takes the text as it is).
pub(crate) fn decode(
    schema: &crate::core::schema::Schema,
    payload: &[u8],
) -> Result<Value, String> {
    use crate::core::schema::Schema;
    let text_body = match schema {
        Schema::Optional(inner) => **inner == Schema::String,
        s => *s == Schema::String,
    };
    if text_body {
        return match std::str::from_utf8(payload) {
            Ok(s) => Ok(Value::String(s.to_string())),
            Err(_) => Err("the payload is not valid UTF-8".into()),
        };
    }
    crate::core::nesting::check_text(payload)
        .map_err(|too_deep| format!("the payload {too_deep}"))?;
    let value: Value = serde_json::from_slice(payload).map_err(|e| format!("invalid JSON: {e}"))?;
    schema.decode(&value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::schema::{FieldSchema, Schema};

    #[test]
    fn payloads_decode_with_the_body_type() {
        let order = Schema::Record(vec![FieldSchema::new("id", Schema::Int)]);
        assert_eq!(decode(&order, br#"{"id": 7}"#).unwrap(), json!({"id": 7}));
        let bad = decode(&order, br#"{"id": "x"}"#).unwrap_err();
        assert!(bad.contains("id"), "{bad}");
        let not_json = decode(&order, b"{nope").unwrap_err();
        assert!(not_json.starts_with("invalid JSON"), "{not_json}");
        assert_eq!(decode(&Schema::String, b"plain").unwrap(), json!("plain"));
        assert_eq!(decode(&Schema::Json, b"[1]").unwrap(), json!([1]));
        let deep = format!("{}{}", "[".repeat(127), "]".repeat(127));
        let too_deep = decode(&Schema::Json, deep.as_bytes()).unwrap_err();
        assert_eq!(too_deep, "the payload nests deeper than 64 levels");
    }
}
