//! `subscribe kafka`: Kafka topics read through a consumer group; the
//! `kafka.publish` step.
//!
//! The subject is the topic. The group (`group:`, default
//! `flow-<integration>-<flow>`) shares the topic's partitions among the
//! processes that run the flow (replicas); a group without a committed
//! offset starts at the beginning of the topic (`auto.offset.reset =
//! earliest`), so messages produced before the first start are not missed.
//! One task reads the partitions given to this process, one message after
//! the other, so a partition's messages run in order.
//!
//! A message's offset is stored for commit only once its run is recorded
//! ([`Subscriber::store_until_stored`] returned); stored offsets are
//! committed every [`COMMIT_EVERY`], before partitions are taken away in a
//! rebalance ([`CommitBeforeRevoke`]) and when the consumer closes. A crash
//! makes the group read again from the last committed offset
//! (at-least-once), and the dedupe key — topic, partition and offset —
//! turns those redeliveries into nothing new. A message that does not
//! decode is recorded as a failed run and its offset stored like any
//! other, so it never blocks its partition.
//!
//! `headers` holds the message's headers (values as text), plus
//! `kafka.key` (the message key, when it has one), `kafka.partition` and
//! `kafka.offset`.
//!
//! `kafka://host:port[,host:port...]` (port 9092 by default); plaintext
//! only (no TLS, no SASL in this build). librdkafka reconnects to the
//! brokers by itself; an error it reports is logged and waited out with
//! the subscriptions' backoff (the consumer keeps its place in the group),
//! and a fatal one makes a new consumer.

use std::time::Duration;

use futures::future::{BoxFuture, FutureExt as _};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers as _, Message as _, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientContext;
use serde_json::{Map, Value};

use super::{Clients, Message, Subscriber};
use crate::core::error::StepError;
use crate::engine::ctx::StepCall;

/// How often the offsets of recorded messages are committed (a crash
/// redelivers at most this much, which the dedupe key absorbs).
pub(crate) const COMMIT_EVERY: Duration = Duration::from_secs(1);
/// How long the group waits for a silent member before giving its
/// partitions to the others (Kafka's default is 45 s; a replica that died
/// should not hold its partitions that long).
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `kafka.publish` waits for the brokers' acknowledgement.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// The header that carries `kafka.publish`'s idempotency key.
pub(crate) const IDEMPOTENCY_HEADER: &str = "idempotency_key";

/// Runs the subscription until shutdown, reconnecting with backoff.
pub(crate) async fn run(sub: Subscriber) {
    sub.reconnecting(|| consume(&sub).boxed()).await;
}

/// The `bootstrap.servers` list of `kafka://host:port[,host:port...]`.
pub(crate) fn bootstrap_servers(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("kafka://")
        .ok_or("a Kafka URL starts with kafka://")?;
    let hosts = rest.split(['/', '?']).next().unwrap_or_default();
    if hosts.contains('@') {
        return Err("Kafka URLs with a user or password are not supported (no SASL)".into());
    }
    let mut servers = Vec::new();
    for hostport in hosts.split(',') {
        let (host, port) = super::host_port(hostport, 9092, "Kafka")?;
        servers.push(format!("{host}:{port}"));
    }
    Ok(servers.join(","))
}

/// The consumer's context: commits the recorded offsets before the group
/// takes partitions away, so their next owner starts after them, and logs
/// the partitions this process is given.
pub(crate) struct CommitBeforeRevoke {
    flow: &'static str,
}

impl ClientContext for CommitBeforeRevoke {}

impl ConsumerContext for CommitBeforeRevoke {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // Rebalance events are served while the subscriber waits for the
        // next message, never while one is being recorded: every offset
        // stored so far is a recorded message's.
        if let Rebalance::Revoke(_) = rebalance {
            commit(consumer, "before a rebalance");
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let partitions: Vec<String> = tpl
                .elements()
                .iter()
                .map(|e| format!("{}/{}", e.topic(), e.partition()))
                .collect();
            tracing::info!(flow = self.flow, partitions = %partitions.join(","), "kafka: partitions assigned");
        }
    }
}

/// Commits the stored offsets and waits for the group's answer (nothing
/// to commit is fine; a failure is logged, the next owner then reads the
/// uncommitted messages again and the dedupe key absorbs them).
fn commit<C: Consumer<CommitBeforeRevoke>>(consumer: &C, when: &str) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => {}
        Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::NoOffset) => {}
        Err(e) => tracing::warn!(error = %e, "kafka: cannot commit the offsets {when}"),
    }
}

fn consumer(sub: &Subscriber) -> Result<StreamConsumer<CommitBeforeRevoke>, String> {
    let client_id = format!("flow-{}-{}", sub.rt.integration().name, sub.flow);
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers(&sub.trigger.url)?)
        .set("group.id", sub.group())
        .set("client.id", client_id)
        .set("auto.offset.reset", "earliest")
        // Offsets are stored by hand, once a message's run is recorded,
        // and what is stored is committed in the background.
        .set("enable.auto.offset.store", "false")
        .set("enable.auto.commit", "true")
        .set(
            "auto.commit.interval.ms",
            COMMIT_EVERY.as_millis().to_string(),
        )
        .set(
            "session.timeout.ms",
            SESSION_TIMEOUT.as_millis().to_string(),
        )
        .create_with_context(CommitBeforeRevoke { flow: sub.flow })
        .map_err(|e| format!("cannot create the consumer: {e}"))
}

async fn consume(sub: &Subscriber) -> Result<(), String> {
    let topic = sub.trigger.subject;
    let consumer = consumer(sub)?;
    consumer
        .subscribe(&[topic])
        .map_err(|e| format!("cannot subscribe to `{topic}`: {e}"))?;
    sub.subscribed();
    // Errors in a row: librdkafka reconnects by itself, so the consumer
    // (and its place in the group) is kept and only the wait grows; a
    // fatal error makes a new consumer.
    let mut errors = 0;
    loop {
        let received = match consumer.recv().await {
            Ok(m) => m.detach(),
            Err(e @ KafkaError::MessageConsumptionFatal(_)) => {
                return Err(format!("consuming `{topic}` failed: {e}"))
            }
            Err(e) => {
                errors += 1;
                let error = format!("consuming `{topic}`: {e}");
                if !sub.backoff(errors, &error).await {
                    break;
                }
                continue;
            }
        };
        errors = 0;
        sub.connected();
        let (partition, offset) = (received.partition(), received.offset());
        if sub.store_until_stored(message(&received)).await.is_none() {
            break;
        }
        if let Err(e) = consumer.store_offset(received.topic(), partition, offset) {
            // The partition was taken away meanwhile: its next owner reads
            // the message again, and the dedupe key absorbs it.
            tracing::debug!(flow = sub.flow, partition, offset, error = %e, "kafka: offset not stored");
        }
    }
    commit(&consumer, "at shutdown");
    Ok(())
}

/// The message of a Kafka record (see the module docs).
fn message(m: &OwnedMessage) -> Message {
    let mut headers = Map::new();
    if let Some(hs) = m.headers() {
        for h in hs.iter() {
            let value = h.value.map(String::from_utf8_lossy).unwrap_or_default();
            headers.insert(h.key.to_string(), Value::String(value.into_owned()));
        }
    }
    if let Some(key) = m.key() {
        let key = String::from_utf8_lossy(key).into_owned();
        headers.insert("kafka.key".into(), Value::String(key));
    }
    headers.insert("kafka.partition".into(), m.partition().to_string().into());
    headers.insert("kafka.offset".into(), m.offset().to_string().into());
    Message {
        subject: m.topic().to_string(),
        headers,
        payload: m.payload().unwrap_or_default().to_vec(),
        id: Some(format!("{}:{}:{}", m.topic(), m.partition(), m.offset())),
    }
}

/// Whether `name` is a valid Kafka topic name.
pub(crate) fn valid_topic(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

static PRODUCERS: Clients<FutureProducer> = Clients::new();

async fn producer(url: &str) -> Result<FutureProducer, String> {
    PRODUCERS
        .get(url, || async {
            ClientConfig::new()
                .set("bootstrap.servers", bootstrap_servers(url)?)
                .set("client.id", "flow-kafka-publish")
                // Acknowledged only once every in-sync replica has it.
                .set("acks", "all")
                .set(
                    "message.timeout.ms",
                    DELIVERY_TIMEOUT.as_millis().to_string(),
                )
                .create()
                .map_err(|e| format!("cannot create the producer: {e}"))
        })
        .await
}

/// `kafka.publish(url, topic, json: V, key: K? = null)`: sends `V` as JSON
/// to `topic` (with key `K`, which picks the partition), the header
/// `idempotency_key` set to the step's idempotency key (execution id and
/// step key, the same on every retry), and waits until the brokers
/// acknowledged it (`acks=all`). Returns `topic:partition:offset`.
pub(crate) fn publish(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    async move {
        let super::Publish {
            url,
            to: topic,
            payload,
            key: idempotency_key,
        } = super::Publish::from_call(
            &call,
            "kafka.publish",
            "topic",
            valid_topic,
            "a Kafka topic name (letters, digits, `.`, `_`, `-`)",
        )?;
        let key = match call.args.get_named("key") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                return Err(StepError::permanent(
                    "kafka.publish: `key:` must be a String",
                ))
            }
        };
        let producer = producer(&url).await.map_err(|e| {
            StepError::permanent(format!("kafka.publish: {}", super::redact_urls(&e, &url)))
        })?;
        let headers = OwnedHeaders::new().insert(Header {
            key: IDEMPOTENCY_HEADER,
            value: Some(&idempotency_key),
        });
        let mut record = FutureRecord::<str, [u8]>::to(&topic)
            .payload(&payload)
            .headers(headers);
        if let Some(k) = &key {
            record = record.key(k.as_str());
        }
        match producer.send(record, DELIVERY_TIMEOUT).await {
            Ok(d) => Ok(Value::String(format!(
                "{topic}:{}:{}",
                d.partition, d.offset
            ))),
            Err((e, _)) => Err(publish_error(&topic, e)),
        }
    }
    .boxed()
}

/// A refused message is permanent when sending it again cannot help.
fn publish_error(topic: &str, e: KafkaError) -> StepError {
    let what = format!("kafka.publish to `{topic}`: {e}");
    match e.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::InvalidTopic,
        ) => StepError::permanent(what),
        _ => StepError::retryable(what),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_bootstrap_servers() {
        assert_eq!(
            bootstrap_servers("kafka://a:9093,b").unwrap(),
            "a:9093,b:9092"
        );
        assert_eq!(
            bootstrap_servers("kafka://127.0.0.1:19092/").unwrap(),
            "127.0.0.1:19092"
        );
        assert!(bootstrap_servers("http://a:1").is_err());
        assert!(bootstrap_servers("kafka://a:x").is_err());
        assert!(bootstrap_servers("kafka://a:1,").is_err());
        let creds = bootstrap_servers("kafka://u:secret@a:1").unwrap_err();
        assert!(!creds.contains("secret"), "{creds}");
    }

    #[test]
    fn topic_names_follow_kafkas_rules() {
        assert!(valid_topic("orders.v1_x-y"));
        assert!(!valid_topic(""));
        assert!(!valid_topic(".."));
        assert!(!valid_topic("a/b"));
        assert!(!valid_topic(&"a".repeat(250)));
    }
}
