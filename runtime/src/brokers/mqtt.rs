//! `subscribe mqtt`: MQTT 3.1.1 topics (wildcards `+` and `#`) at QoS 1 in a
//! persistent session; the `mqtt.publish` step.
//!
//! The flow connects with `clean_session = false` and a client id that is
//! the same at every start, `flow-<integration>-<flow>` (so only one process
//! should run a given MQTT flow), so the broker keeps the subscription and
//! queues QoS 1 messages while the service is down. Messages are
//! acknowledged (PUBACK) only once their run is stored: a crash before that
//! makes the broker send them again (at-least-once). MQTT 3.1.1 has no
//! message identity (the packet id is reused), so there is no dedupe key: a
//! message whose run was stored but whose PUBACK was lost in a crash runs
//! twice. A message that does not decode is recorded as a failed run and
//! acknowledged. `headers` is `{ "retain": "true" }` for retained messages,
//! else empty.
//!
//! `mqtt://[user:password@]host[:port]` (1883 by default); no TLS.

use std::time::Duration;

use futures::future::{BoxFuture, FutureExt as _};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Map, Value};

use super::{Message, Subscriber};
use crate::core::error::StepError;
use crate::engine::ctx::StepCall;

/// Runs the subscription until shutdown, reconnecting with backoff.
pub(crate) async fn run(sub: Subscriber) {
    let id = format!("flow-{}-{}", sub.rt.integration().name, sub.flow);
    sub.reconnecting(|| consume(&sub, &id).boxed()).await;
}

/// Options from `mqtt://[user:password@]host[:port]`.
pub(crate) fn options(url: &str, client_id: &str) -> Result<MqttOptions, String> {
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
        .ok_or("an MQTT URL starts with mqtt://")?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (host, port) = super::host_port(hostport, 1883, "MQTT")?;
    let mut opts = MqttOptions::new(client_id, host, port);
    if let Some(u) = userinfo {
        let (user, pass) = u.split_once(':').unwrap_or((u, ""));
        opts.set_credentials(user, pass);
    }
    opts.set_keep_alive(Duration::from_secs(30));
    Ok(opts)
}

async fn consume(sub: &Subscriber, client_id: &str) -> Result<(), String> {
    let mut opts = options(&sub.trigger.url, client_id)?;
    opts.set_clean_session(false);
    opts.set_manual_acks(true);
    let (client, mut events) = AsyncClient::new(opts, 64);
    let topic = sub.trigger.subject;
    loop {
        let event = events
            .poll()
            .await
            .map_err(|e| format!("connection: {e}"))?;
        match event {
            Event::Incoming(Packet::ConnAck(_)) => {
                client
                    .subscribe(topic, QoS::AtLeastOnce)
                    .await
                    .map_err(|e| format!("cannot subscribe: {e}"))?;
            }
            Event::Incoming(Packet::SubAck(_)) => {
                sub.subscribed();
                sub.connected();
            }
            Event::Incoming(Packet::Publish(p)) => {
                let mut headers = Map::new();
                if p.retain {
                    headers.insert("retain".into(), Value::String("true".into()));
                }
                let msg = Message {
                    subject: p.topic.clone(),
                    headers,
                    payload: p.payload.to_vec(),
                    id: None,
                };
                if sub.store_until_stored(msg).await.is_none() {
                    return Ok(());
                }
                // Sent by the event loop at its next poll.
                client
                    .ack(&p)
                    .await
                    .map_err(|e| format!("cannot acknowledge: {e}"))?;
            }
            _ => {}
        }
    }
}

/// `mqtt.publish(url, topic, json: V, retain: false)`: publishes `V` as JSON
/// at QoS 1 and waits for the broker's PUBACK (one short connection per
/// publish). Returns true.
pub(crate) fn publish(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    async move {
        let super::Publish {
            url,
            to: topic,
            payload,
            ..
        } = super::Publish::from_call(
            &call,
            "mqtt.publish",
            "topic",
            |t| !t.is_empty() && !t.contains(['+', '#']),
            "a non-empty String without wildcards",
        )?;
        let retain = matches!(call.args.get_named("retain"), Some(Value::Bool(true)));
        let id = format!("flow-pub-{}", uuid::Uuid::new_v4().simple());
        let opts =
            options(&url, &id).map_err(|e| StepError::permanent(format!("mqtt.publish: {e}")))?;
        let (client, mut events) = AsyncClient::new(opts, 8);
        client
            .publish(topic.clone(), QoS::AtLeastOnce, retain, payload)
            .await
            .map_err(|e| StepError::retryable(format!("mqtt.publish to `{topic}`: {e}")))?;
        let acked = async {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
        };
        let done = tokio::time::timeout(Duration::from_secs(30), acked).await;
        let _ = client.disconnect().await;
        match done {
            Ok(Ok(())) => Ok(Value::Bool(true)),
            Ok(Err(e)) => Err(StepError::retryable(format!(
                "mqtt.publish to `{topic}`: {}",
                super::redact_urls(&e, &url)
            ))),
            Err(_) => Err(StepError::retryable(format!(
                "mqtt.publish to `{topic}`: no PUBACK within 30s"
            ))),
        }
    }
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_port_and_credentials() {
        let o = options("mqtt://app:pw@broker:1884", "c").unwrap();
        assert_eq!(o.broker_address(), ("broker".to_string(), 1884));
        let login = o.credentials().expect("credentials");
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("app", "pw")
        );
        let o = options("mqtt://127.0.0.1", "c").unwrap();
        assert_eq!(o.broker_address(), ("127.0.0.1".to_string(), 1883));
        assert!(options("http://x", "c").is_err());
        assert!(options("mqtt://h:notaport", "c").is_err());
    }
}
