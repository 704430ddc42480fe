//! `trigger subscribe sqs "QUEUE" { via: cloud, body: T }`: an Amazon SQS
//! queue read through an `aws:` connection ([`crate::io::aws`], SQS's JSON
//! protocol).
//!
//! The queue's URL is looked up once per session (GetQueueUrl), then
//! ReceiveMessage long-polls (20 s, up to 10 messages). The messages of a
//! batch are stored one after the other, in the order received, with
//! [`Subscriber::store`]; those stored as runs are then deleted (one
//! DeleteMessageBatch). A crash before the delete makes SQS deliver them
//! again after the visibility timeout, and the dedupe key (`sqs:<MessageId>`)
//! turns that into nothing new.
//!
//! A body that is an SNS notification (`"Type": "Notification"` with
//! `Message` and `TopicArn`: a topic subscribed to the queue) is unwrapped:
//! the payload is its `Message`, the dedupe key `sqs:sns:<SNS MessageId>`
//! (the same notification delivered twice is one run).
//!
//! A malformed message is recorded as a failed run and NOT deleted: it is
//! left to the queue's redrive policy (a dead-letter queue after
//! `maxReceiveCount` receives). Each redelivery carries the same message id,
//! so it records nothing new.
//!
//! While a batch is being stored, its messages' visibility is extended
//! every half visibility timeout, so a slow store does not hand them to
//! another consumer. Errors name the queue, never a key.

use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{Message, Subscriber};
use crate::engine::integration::AwsDef;
use crate::io::aws::{AwsClient, AwsError, Payload};

/// How long one ReceiveMessage waits for messages (SQS's longest).
const WAIT_SECONDS: u64 = 20;
/// The most messages one ReceiveMessage returns (SQS's largest).
const BATCH: u64 = 10;
/// The visibility timeout assumed when the queue does not say (SQS's default).
const DEFAULT_VISIBILITY: Duration = Duration::from_secs(30);

/// Reads the queue until shutdown.
pub(crate) async fn run(sub: Subscriber) {
    let def = match sub
        .rt
        .connections()
        .aws(sub.trigger.via, "subscribe sqs trigger")
    {
        Ok(def) => def.clone(),
        Err(e) => {
            tracing::error!(flow = sub.flow, error = %e.message, "subscribe trigger not started");
            return;
        }
    };
    let http = sub.rt.http_client().clone();
    let queue = Queue {
        client: AwsClient {
            def: &def,
            http: &http,
        },
        name: sub.trigger.subject,
    };
    let sub = &sub;
    let queue = &queue;
    sub.reconnecting(|| Box::pin(session(sub, queue))).await;
}

/// Looks the queue up, then receives and stores batches until an error.
async fn session(sub: &Subscriber, queue: &Queue<'_>) -> Result<(), String> {
    let url = queue.url().await.map_err(|e| e.message)?;
    let visibility = queue.visibility(&url).await.map_err(|e| e.message)?;
    sub.connected();
    sub.subscribed();
    loop {
        let received = queue.receive(&url).await.map_err(|e| e.message)?;
        if received.is_empty() {
            continue;
        }
        let handles: Vec<String> = received.iter().map(|m| m.receipt.clone()).collect();
        let storing = store_batch(sub, queue.name, received);
        let Some(stored) = keep_visible(queue, &url, &handles, visibility, storing).await? else {
            // Shutdown: what was stored is deleted on its redelivery.
            return Ok(());
        };
        if !stored.is_empty() {
            queue.delete(&url, &stored).await.map_err(|e| e.message)?;
        }
    }
}

/// Stores each message in order; the receipt handles of those stored as
/// runs (to delete), `None` if shutdown began first.
async fn store_batch(
    sub: &Subscriber,
    queue: &str,
    received: Vec<Received>,
) -> Option<Vec<String>> {
    let mut stored = Vec::new();
    for m in received {
        let (message, handle) = m.into_message(queue);
        if sub.store_until_stored(message).await? {
            stored.push(handle);
        }
    }
    Some(stored)
}

/// Awaits `storing`, extending the visibility of the batch's messages
/// every half visibility timeout meanwhile.
async fn keep_visible<T>(
    queue: &Queue<'_>,
    url: &str,
    handles: &[String],
    visibility: Duration,
    storing: impl std::future::Future<Output = T>,
) -> Result<T, String> {
    tokio::pin!(storing);
    let half = visibility / 2;
    loop {
        tokio::select! {
            done = &mut storing => return Ok(done),
            _ = tokio::time::sleep(half) => {
                queue
                    .extend_visibility(url, handles, visibility)
                    .await
                    .map_err(|e| e.message)?;
            }
        }
    }
}

/// One message as ReceiveMessage returns it.
#[derive(Debug, Deserialize)]
struct Received {
    #[serde(rename = "MessageId")]
    id: String,
    #[serde(rename = "ReceiptHandle")]
    receipt: String,
    #[serde(rename = "Body", default)]
    body: String,
    #[serde(rename = "MessageAttributes", default)]
    attributes: Map<String, Value>,
}

impl Received {
    /// The message to store (SNS envelope unwrapped) and its receipt handle.
    fn into_message(self, queue: &str) -> (Message, String) {
        let mut headers = string_attributes(&self.attributes, "StringValue");
        headers.insert("sqs.message_id".into(), Value::String(self.id.clone()));
        let (payload, id) = match sns_notification(&self.body) {
            Some(n) => {
                headers.extend(string_attributes(&n.attributes, "Value"));
                headers.insert("sns.topic_arn".into(), Value::String(n.topic_arn));
                (n.message.into_bytes(), format!("sns:{}", n.id))
            }
            None => (self.body.into_bytes(), self.id),
        };
        let message = Message {
            subject: queue.to_string(),
            headers,
            payload,
            id: Some(id),
        };
        (message, self.receipt)
    }
}

/// An SNS notification delivered to an SQS queue.
#[derive(Debug, Deserialize)]
struct Notification {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "MessageId")]
    id: String,
    #[serde(rename = "TopicArn")]
    topic_arn: String,
    #[serde(rename = "Message")]
    message: String,
    #[serde(rename = "MessageAttributes", default)]
    attributes: Map<String, Value>,
}

/// The SNS notification `body` is, if it is one.
fn sns_notification(body: &str) -> Option<Notification> {
    if !body.trim_start().starts_with('{')
        || crate::core::nesting::check_text(body.as_bytes()).is_err()
    {
        return None;
    }
    serde_json::from_str::<Notification>(body)
        .ok()
        .filter(|n| n.kind == "Notification")
}

/// The attributes with a text value (`field`: `StringValue` in SQS,
/// `Value` in an SNS envelope), as headers.
fn string_attributes(attributes: &Map<String, Value>, field: &str) -> Map<String, Value> {
    attributes
        .iter()
        .filter_map(|(name, a)| Some((name.clone(), Value::String(a.get(field)?.as_str()?.into()))))
        .collect()
}

/// A queue reached through an `aws:` connection.
pub(crate) struct Queue<'a> {
    pub client: AwsClient<'a>,
    pub name: &'a str,
}

impl Queue<'_> {
    /// One SQS JSON-protocol call, its answer parsed.
    async fn call(&self, action: &str, request: Value) -> Result<Value, AwsError> {
        call(
            self.client,
            action,
            &request,
            &format!("sqs queue `{}`", self.name),
        )
        .await
    }

    /// GetQueueUrl.
    async fn url(&self) -> Result<String, AwsError> {
        let answer = self
            .call("GetQueueUrl", json!({ "QueueName": self.name }))
            .await?;
        answer["QueueUrl"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| {
                AwsError::retryable(format!(
                    "sqs queue `{}`: no QueueUrl in the answer",
                    self.name
                ))
            })
    }

    /// The queue's visibility timeout.
    async fn visibility(&self, url: &str) -> Result<Duration, AwsError> {
        let request = json!({ "QueueUrl": url, "AttributeNames": ["VisibilityTimeout"] });
        let answer = self.call("GetQueueAttributes", request).await?;
        let seconds = answer["Attributes"]["VisibilityTimeout"]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok());
        Ok(seconds
            .map_or(DEFAULT_VISIBILITY, Duration::from_secs)
            .max(Duration::from_secs(1)))
    }

    /// One long poll.
    async fn receive(&self, url: &str) -> Result<Vec<Received>, AwsError> {
        let request = json!({
            "QueueUrl": url,
            "MaxNumberOfMessages": BATCH,
            "WaitTimeSeconds": WAIT_SECONDS,
            "AttributeNames": ["All"],
            "MessageAttributeNames": ["All"],
        });
        let answer = self.call("ReceiveMessage", request).await?;
        match answer.get("Messages") {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(list) => serde_json::from_value(list.clone()).map_err(|e| {
                AwsError::retryable(format!(
                    "sqs queue `{}`: unexpected ReceiveMessage answer: {e}",
                    self.name
                ))
            }),
        }
    }

    /// DeleteMessageBatch of `handles` (at most [`BATCH`]).
    async fn delete(&self, url: &str, handles: &[String]) -> Result<(), AwsError> {
        let entries: Vec<Value> = handles
            .iter()
            .enumerate()
            .map(|(i, h)| json!({ "Id": i.to_string(), "ReceiptHandle": h }))
            .collect();
        let request = json!({ "QueueUrl": url, "Entries": entries });
        let answer = self.call("DeleteMessageBatch", request).await?;
        self.batch_failures(&answer, "delete")
    }

    /// ChangeMessageVisibilityBatch of `handles` to `visibility` from now.
    async fn extend_visibility(
        &self,
        url: &str,
        handles: &[String],
        visibility: Duration,
    ) -> Result<(), AwsError> {
        let entries: Vec<Value> = handles
            .iter()
            .enumerate()
            .map(|(i, h)| json!({ "Id": i.to_string(), "ReceiptHandle": h, "VisibilityTimeout": visibility.as_secs() }))
            .collect();
        let request = json!({ "QueueUrl": url, "Entries": entries });
        let answer = self.call("ChangeMessageVisibilityBatch", request).await?;
        self.batch_failures(&answer, "extend the visibility of")
    }

    /// An error when a batch call failed for some entries.
    fn batch_failures(&self, answer: &Value, what: &str) -> Result<(), AwsError> {
        let failed = answer["Failed"].as_array().map_or(0, Vec::len);
        if failed == 0 {
            return Ok(());
        }
        let code = answer["Failed"][0]["Code"].as_str().unwrap_or_default();
        Err(AwsError::retryable(format!(
            "sqs queue `{}`: could not {what} {failed} message(s): {code}",
            self.name
        )))
    }
}

/// The SQS endpoint of the connection: its `endpoint:` or the region's.
pub(crate) fn endpoint(def: &AwsDef, service: &str) -> String {
    match &def.endpoint {
        Some(e) => format!("{}/", e.trim_end_matches('/')),
        None => format!("https://{service}.{}.amazonaws.com/", def.region),
    }
}

/// One SQS JSON-protocol call (`AmazonSQS.<action>`), its answer parsed.
pub(crate) async fn call(
    client: AwsClient<'_>,
    action: &str,
    request: &Value,
    what: &str,
) -> Result<Value, AwsError> {
    let target = format!("AmazonSQS.{action}");
    let body = request.to_string();
    let payload = Payload {
        bytes: body.as_bytes(),
        content_type: Some("application/x-amz-json-1.0"),
    };
    let url = endpoint(client.def, "sqs");
    let headers = [("x-amz-target", target.as_str())];
    let resp = client
        .send("sqs", Method::POST, &url, &headers, payload, what)
        .await?;
    let bytes = resp.bytes().await.map_err(|e| {
        AwsError::retryable(format!("{what}: reading the answer: {}", e.without_url()))
    })?;
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| AwsError::retryable(format!("{what}: the {action} answer is not JSON: {e}")))
}

/// `sqs.send(queue, json:, via:, group:)`: SendMessage with the step's
/// idempotency key as the attribute `idempotency_key` (and, on a `.fifo`
/// queue, as the MessageDeduplicationId); the MessageId.
pub(crate) fn send(
    call: crate::engine::ctx::StepCall,
) -> futures::future::BoxFuture<'static, Result<Value, crate::core::error::StepError>> {
    use crate::core::error::StepError;
    Box::pin(async move {
        const FUNC: &str = "sqs.send";
        let args = &call.args;
        let name = args
            .param(0, "queue")
            .as_str()
            .filter(|q| !q.is_empty())
            .ok_or_else(|| StepError::permanent(format!("{FUNC}: the queue must be a queue name")))?
            .to_string();
        let json = args.get_named("json").unwrap_or(args.get(1));
        let body = serde_json::to_string(json)
            .map_err(|e| StepError::permanent(format!("{FUNC}: {e}")))?;
        let key = format!("{}/{}", call.cx.execution_id(), call.step);
        let services = call.cx.services();
        let via = args.get_named("via").and_then(Value::as_str);
        let def = services.connections().aws(via, FUNC)?;
        let queue = Queue {
            client: AwsClient {
                def,
                http: services.http_client(),
            },
            name: &name,
        };
        let failed = |e: AwsError| e.into_step_error(FUNC);
        let url = queue.url().await.map_err(failed)?;
        let mut request = json!({
            "QueueUrl": url,
            "MessageBody": body,
            "MessageAttributes": {
                "idempotency_key": { "DataType": "String", "StringValue": key },
            },
        });
        if name.ends_with(".fifo") {
            let group = args
                .get_named("group")
                .and_then(Value::as_str)
                .unwrap_or(&name);
            request["MessageDeduplicationId"] = Value::String(key.clone());
            request["MessageGroupId"] = Value::String(group.to_string());
        }
        let answer = queue.call("SendMessage", request).await.map_err(failed)?;
        answer["MessageId"]
            .as_str()
            .map(|id| Value::String(id.to_string()))
            .ok_or_else(|| {
                StepError::retryable(format!(
                    "{FUNC}: queue `{name}`: no MessageId in the answer"
                ))
            })
    })
}

/// `sns.publish(topic_arn, json:, via:)`: SNS Publish (query protocol)
/// with the step's idempotency key as the attribute `idempotency_key`;
/// the MessageId.
pub(crate) fn sns_publish(
    call: crate::engine::ctx::StepCall,
) -> futures::future::BoxFuture<'static, Result<Value, crate::core::error::StepError>> {
    use crate::core::error::StepError;
    use crate::io::aws::{uri_encode, xml_text};
    Box::pin(async move {
        const FUNC: &str = "sns.publish";
        let args = &call.args;
        let topic = args
            .param(0, "topic_arn")
            .as_str()
            .filter(|t| t.starts_with("arn:"))
            .ok_or_else(|| {
                StepError::permanent(format!(
                    "{FUNC}: the topic must be a topic ARN (arn:aws:sns:...)"
                ))
            })?
            .to_string();
        let json = args.get_named("json").unwrap_or(args.get(1));
        let message = serde_json::to_string(json)
            .map_err(|e| StepError::permanent(format!("{FUNC}: {e}")))?;
        let key = format!("{}/{}", call.cx.execution_id(), call.step);
        let fields = [
            ("Action", "Publish"),
            ("Version", "2010-03-31"),
            ("TopicArn", topic.as_str()),
            ("Message", message.as_str()),
            ("MessageAttributes.entry.1.Name", "idempotency_key"),
            ("MessageAttributes.entry.1.Value.DataType", "String"),
            ("MessageAttributes.entry.1.Value.StringValue", key.as_str()),
        ];
        let form: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{}={}", uri_encode(k, false), uri_encode(v, false)))
            .collect();
        let body = form.join("&");
        let services = call.cx.services();
        let via = args.get_named("via").and_then(Value::as_str);
        let def = services.connections().aws(via, FUNC)?;
        let client = AwsClient {
            def,
            http: services.http_client(),
        };
        let payload = Payload {
            bytes: body.as_bytes(),
            content_type: Some("application/x-www-form-urlencoded"),
        };
        let what = format!("{FUNC} to `{topic}`");
        let resp = client
            .send(
                "sns",
                Method::POST,
                &endpoint(def, "sns"),
                &[],
                payload,
                &what,
            )
            .await
            .map_err(|e| e.into_step_error(FUNC))?;
        let answer = resp.text().await.map_err(|e| {
            StepError::retryable(format!("{what}: reading the answer: {}", e.without_url()))
        })?;
        xml_text(&answer, "MessageId")
            .map(Value::String)
            .ok_or_else(|| StepError::retryable(format!("{what}: no MessageId in the answer")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Messages an impatient other consumer gets right now (no long poll).
    async fn receive_now(queue: &Queue<'_>, url: &str) -> usize {
        let request =
            json!({ "QueueUrl": url, "MaxNumberOfMessages": BATCH, "WaitTimeSeconds": 0 });
        let answer = queue.call("ReceiveMessage", request).await.unwrap();
        answer["Messages"].as_array().map_or(0, Vec::len)
    }

    /// A batch whose storing outlasts the queue's visibility timeout (2 s
    /// here, storing 5 s) stays hidden from other consumers: its visibility
    /// is extended every half timeout. Against the emulator of
    /// `FLOW_TEST_AWS_ENDPOINT`.
    #[tokio::test]
    async fn a_batch_stays_invisible_while_it_is_stored() {
        let test = "a_batch_stays_invisible_while_it_is_stored";
        let Some(endpoint) = flow_testkit::service_url("FLOW_TEST_AWS_ENDPOINT", test) else {
            return;
        };
        let def = AwsDef {
            region: "us-east-1".into(),
            access_key: "AKIDTESTKEY".into(),
            secret_key: "test-secret-key".into(),
            endpoint: Some(endpoint),
        };
        let http = reqwest::Client::new();
        let name = format!("visibility-{}", uuid::Uuid::new_v4().simple());
        let queue = Queue {
            client: AwsClient {
                def: &def,
                http: &http,
            },
            name: &name,
        };
        let attributes = json!({ "VisibilityTimeout": "2" });
        let created = json!({ "QueueName": name, "Attributes": attributes });
        queue.call("CreateQueue", created).await.unwrap();
        let url = queue.url().await.unwrap();
        let sent = json!({ "QueueUrl": url, "MessageBody": "{}" });
        queue.call("SendMessage", sent).await.unwrap();
        let visibility = queue.visibility(&url).await.unwrap();
        assert_eq!(visibility, Duration::from_secs(2));
        let batch = queue.receive(&url).await.unwrap();
        assert_eq!(batch.len(), 1);
        let handles = vec![batch[0].receipt.clone()];

        let storing = async {
            let mut seen_by_others = 0;
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(500)).await;
                seen_by_others += receive_now(&queue, &url).await;
            }
            seen_by_others
        };
        let seen = keep_visible(&queue, &url, &handles, visibility, storing)
            .await
            .unwrap();
        assert_eq!(seen, 0, "another consumer got the message being stored");
    }

    fn received(body: &str) -> Received {
        serde_json::from_value(json!({
            "MessageId": "m-1",
            "ReceiptHandle": "h-1",
            "Body": body,
            "MessageAttributes": {
                "kind": { "DataType": "String", "StringValue": "order" },
                "blob": { "DataType": "Binary", "BinaryValue": "AAE=" },
            },
        }))
        .unwrap()
    }

    #[test]
    fn plain_messages_keep_their_body_and_sqs_id() {
        let (m, handle) = received(r#"{"id":1}"#).into_message("orders");
        assert_eq!(handle, "h-1");
        assert_eq!(m.payload, br#"{"id":1}"#);
        assert_eq!(m.id.as_deref(), Some("m-1"));
        assert_eq!(m.subject, "orders");
        assert_eq!(
            Value::Object(m.headers),
            json!({ "kind": "order", "sqs.message_id": "m-1" })
        );
    }

    #[test]
    fn sns_notifications_are_unwrapped() {
        let envelope = json!({
            "Type": "Notification",
            "MessageId": "sns-7",
            "TopicArn": "arn:aws:sns:us-east-1:1:orders",
            "Message": "{\"id\":2}",
            "MessageAttributes": { "source": { "Type": "String", "Value": "shop" } },
        });
        let (m, _) = received(&envelope.to_string()).into_message("orders");
        assert_eq!(m.payload, br#"{"id":2}"#);
        assert_eq!(m.id.as_deref(), Some("sns:sns-7"));
        assert_eq!(m.headers["sns.topic_arn"], "arn:aws:sns:us-east-1:1:orders");
        assert_eq!(m.headers["source"], "shop");
        assert_eq!(m.headers["sqs.message_id"], "m-1");
    }

    #[test]
    fn other_json_and_malformed_bodies_are_not_notifications() {
        assert!(sns_notification(
            r#"{"Type":"Other","MessageId":"x","TopicArn":"a","Message":"m"}"#
        )
        .is_none());
        assert!(sns_notification("{not json").is_none());
        assert!(sns_notification("[1]").is_none());
    }
}
