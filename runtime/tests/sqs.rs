//! `subscribe sqs` through an `aws:` connection, against moto's SQS/SNS
//! emulator (`FLOW_TEST_AWS_ENDPOINT`; skipped with a printed reason when
//! unset, failing when `FLOW_TEST_REQUIRE_SERVICES=1`). Each test makes
//! its own queues and topic.

mod common;

use std::time::Duration;

use flow_runtime::engine::new_execution_id;
use flow_runtime::store::{Execution, ExecutionFilter};
use flow_runtime::{
    Args, Config, Ctx, FlowDef, FlowFuture, Integration, Outcome, Runtime, Schema, Status,
    StepOptions, SubscribeTrigger, TriggerDef, Value,
};
use serde_json::json;

use common::aws::{connections, endpoint};

fn orders(_cx: Ctx) -> FlowFuture {
    Box::pin(async { Ok(Outcome::Succeeded) })
}

/// Sends its trigger's `body` to the queue with `sqs.send`.
fn relay(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let queue = cx.config()["queue"].clone();
        let body = cx.trigger()["body"].clone();
        let args = Args::new()
            .arg(queue)
            .kw("json", body)
            .kw("via", json!("cloud"));
        cx.step("send", StepOptions::default(), "sqs.send", args)
            .await?;
        if let Some(topic) = cx.trigger()["topic"].as_str() {
            let args = Args::new()
                .arg(json!(topic))
                .kw("json", json!({ "id": 22 }))
                .kw("via", json!("cloud"));
            cx.step("publish", StepOptions::default(), "sns.publish", args)
                .await?;
        }
        Ok(Outcome::Succeeded)
    })
}

fn flows(config: &Config) -> Vec<FlowDef> {
    // The queue name comes from the config: each test has its own.
    let queue: &'static str = Box::leak(config.fill("${config.queue}").into_boxed_str());
    let relay = common::flow("relay", common::json_webhook("/relay", None), relay);
    vec![
        relay,
        common::flow(
            "orders",
            TriggerDef::Subscribe(SubscribeTrigger {
                broker: "sqs",
                subject: queue,
                url: String::new(),
                body: Schema::Record(vec![flow_runtime::FieldSchema::new("id", Schema::Int)]),
                group: None,
                durable: None,
                via: Some("cloud"),
            }),
            orders,
        ),
    ]
}

fn runtime(queue: &str) -> Runtime {
    let integration = Integration {
        config: vec![common::config_entry("queue", Schema::String)],
        connections,
        ..common::integration("sqs_orders", flows)
    };
    Runtime::new(integration, common::options(&[("QUEUE", queue)])).unwrap()
}

/// A name of its own for a queue or topic.
fn unique(prefix: &str) -> String {
    let id: String = new_execution_id()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    format!("{prefix}-{id}")
}

/// One unsigned call to the emulator (moto routes by the credential scope
/// and checks no signature): SQS's JSON protocol.
async fn sqs(endpoint: &str, action: &str, request: Value) -> Value {
    let resp = reqwest::Client::new()
        .post(format!("{endpoint}/"))
        .header("authorization", fake_authorization("sqs"))
        .header("x-amz-target", format!("AmazonSQS.{action}"))
        .header("content-type", "application/x-amz-json-1.0")
        .body(request.to_string())
        .send()
        .await
        .expect("call the emulator");
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert!(status.is_success(), "{action}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// SNS's query protocol; the answer's XML.
async fn sns(endpoint: &str, form: &[(&str, &str)]) -> String {
    let resp = reqwest::Client::new()
        .post(format!("{endpoint}/"))
        .header("authorization", fake_authorization("sns"))
        .form(form)
        .send()
        .await
        .expect("call the emulator");
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert!(status.is_success(), "{form:?}: {status} {text}");
    text
}

fn fake_authorization(service: &str) -> String {
    format!("AWS4-HMAC-SHA256 Credential=AKIDTESTKEY/20240101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=00")
}

/// A new queue (visibility timeout 1 s, so an undeleted message comes
/// back quickly), optionally with `redrive` as its redrive policy: its URL.
async fn new_queue(endpoint: &str, name: &str, redrive: Option<String>) -> String {
    let mut attributes = json!({ "VisibilityTimeout": "1" });
    if let Some(policy) = redrive {
        attributes["RedrivePolicy"] = Value::String(policy);
    }
    let answer = sqs(
        endpoint,
        "CreateQueue",
        json!({ "QueueName": name, "Attributes": attributes }),
    )
    .await;
    answer["QueueUrl"].as_str().unwrap().to_string()
}

async fn send(endpoint: &str, queue_url: &str, body: &str) {
    let request = json!({
        "QueueUrl": queue_url,
        "MessageBody": body,
        "MessageAttributes": { "source": { "DataType": "String", "StringValue": "test" } },
    });
    sqs(endpoint, "SendMessage", request).await;
}

/// How many messages the queue holds (visible or not).
async fn queue_length(endpoint: &str, queue_url: &str) -> u64 {
    let request = json!({
        "QueueUrl": queue_url,
        "AttributeNames": ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    });
    let answer = sqs(endpoint, "GetQueueAttributes", request).await;
    [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
    ]
    .iter()
    .map(|a| {
        answer["Attributes"][a]
            .as_str()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    })
    .sum()
}

/// The runs of `orders`, oldest first.
async fn runs(rt: &Runtime) -> Vec<Execution> {
    let filter = ExecutionFilter {
        flow: Some("orders".into()),
        limit: 1000,
        ..Default::default()
    };
    let mut runs = rt.store().list(filter).await.unwrap();
    runs.sort_by_key(|e| e.created_at);
    runs
}

/// Waits (bounded) until `done` holds of the runs.
async fn wait_runs(rt: &Runtime, what: &str, done: impl Fn(&[Execution]) -> bool) {
    common::within(what, async {
        while !done(&runs(rt).await) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

fn succeeded(runs: &[Execution]) -> usize {
    runs.iter()
        .filter(|r| r.status == Status::Succeeded)
        .count()
}

#[tokio::test]
async fn sqs_messages_become_runs_in_order_and_a_malformed_one_is_left_to_the_redrive_policy() {
    let test =
        "sqs_messages_become_runs_in_order_and_a_malformed_one_is_left_to_the_redrive_policy";
    let Some(endpoint) = endpoint(test) else {
        return;
    };
    let dead_name = unique("dead");
    let dead_url = new_queue(&endpoint, &dead_name, None).await;
    let dead_arn = format!("arn:aws:sqs:us-east-1:123456789012:{dead_name}");
    let redrive = json!({ "deadLetterTargetArn": dead_arn, "maxReceiveCount": "2" }).to_string();
    let queue = unique("orders");
    let queue_url = new_queue(&endpoint, &queue, Some(redrive)).await;
    for id in 1..=3 {
        send(&endpoint, &queue_url, &json!({ "id": id }).to_string()).await;
    }
    send(&endpoint, &queue_url, "{not json").await;
    send(&endpoint, &queue_url, &json!({ "id": 4 }).to_string()).await;

    let rt = runtime(&queue);
    let server = common::serve(&rt, None).await;
    wait_runs(&rt, "4 runs and a failed one", |r| {
        succeeded(r) == 4 && r.len() == 5
    })
    .await;
    let runs_now = runs(&rt).await;
    let stored: Vec<Value> = runs_now
        .iter()
        .map(|r| r.trigger["body"]["id"].clone())
        .collect();
    assert_eq!(
        stored,
        [json!(1), json!(2), json!(3), Value::Null, json!(4)]
    );
    let first = &runs_now[0];
    assert_eq!(first.trigger["subject"], queue.as_str());
    assert_eq!(first.trigger["headers"]["source"], "test");
    let message_id = first.trigger["headers"]["sqs.message_id"].as_str().unwrap();
    assert_eq!(
        first.dedupe_key.as_deref(),
        Some(format!("sqs:{message_id}").as_str())
    );
    let failed = &runs_now[3];
    assert_eq!(failed.status, Status::Failed);
    assert!(
        failed
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("invalid JSON"),
        "{failed:?}"
    );

    // The malformed message is not deleted: received again after the
    // visibility timeout (recording nothing new), then moved to the
    // dead-letter queue by the redrive policy after its second receive.
    common::within("the malformed message in the dead-letter queue", async {
        while queue_length(&endpoint, &dead_url).await < 1 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(
        queue_length(&endpoint, &queue_url).await,
        0,
        "the good ones are deleted"
    );
    assert_eq!(runs(&rt).await.len(), 5, "the redelivery added a run");
    server.shutdown().await;
}

#[tokio::test]
async fn sns_notifications_through_a_queue_are_unwrapped_and_deduplicated() {
    let test = "sns_notifications_through_a_queue_are_unwrapped_and_deduplicated";
    let Some(endpoint) = endpoint(test) else {
        return;
    };
    let queue = unique("events");
    let queue_url = new_queue(&endpoint, &queue, None).await;
    let topic = unique("topic");
    let created = sns(&endpoint, &[("Action", "CreateTopic"), ("Name", &topic)]).await;
    let topic_arn = between(&created, "<TopicArn>", "</TopicArn>");
    let queue_arn = format!("arn:aws:sqs:us-east-1:123456789012:{queue}");
    sns(
        &endpoint,
        &[
            ("Action", "Subscribe"),
            ("TopicArn", &topic_arn),
            ("Protocol", "sqs"),
            ("Endpoint", &queue_arn),
        ],
    )
    .await;
    let message = json!({ "id": 10 }).to_string();
    sns(
        &endpoint,
        &[
            ("Action", "Publish"),
            ("TopicArn", &topic_arn),
            ("Message", &message),
        ],
    )
    .await;
    // The same notification delivered twice (as SNS may): one run.
    let envelope = json!({
        "Type": "Notification",
        "MessageId": "sns-fixed-11",
        "TopicArn": topic_arn,
        "Message": json!({ "id": 11 }).to_string(),
    })
    .to_string();
    send(&endpoint, &queue_url, &envelope).await;
    send(&endpoint, &queue_url, &envelope).await;
    send(&endpoint, &queue_url, &json!({ "id": 12 }).to_string()).await;

    let rt = runtime(&queue);
    let server = common::serve(&rt, None).await;
    wait_runs(&rt, "the runs of orders 10, 11 and 12", |r| {
        r.iter().any(|e| e.trigger["body"]["id"] == 12) && succeeded(r) == 3
    })
    .await;
    common::within("the queue emptied", async {
        while queue_length(&endpoint, &queue_url).await > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let runs = runs(&rt).await;
    let ids: Vec<Value> = runs
        .iter()
        .map(|r| r.trigger["body"]["id"].clone())
        .collect();
    assert_eq!(
        ids,
        [json!(10), json!(11), json!(12)],
        "one run each, in order"
    );
    assert_eq!(
        runs[0].trigger["headers"]["sns.topic_arn"],
        topic_arn.as_str()
    );
    assert_eq!(runs[1].dedupe_key.as_deref(), Some("sqs:sns:sns-fixed-11"));
    server.shutdown().await;
}

fn between(text: &str, open: &str, close: &str) -> String {
    let start = text
        .find(open)
        .map(|i| i + open.len())
        .unwrap_or_else(|| panic!("no {open} in {text}"));
    let end = start + text[start..].find(close).unwrap();
    text[start..end].to_string()
}

#[tokio::test]
async fn sqs_send_carries_the_steps_idempotency_key_to_the_subscriber() {
    let test = "sqs_send_carries_the_steps_idempotency_key_to_the_subscriber";
    let Some(endpoint) = endpoint(test) else {
        return;
    };
    let queue = unique("relay");
    new_queue(&endpoint, &queue, None).await;
    let rt = runtime(&queue);
    let id = new_execution_id();
    let exec = rt
        .run_inline(id.clone(), "relay", json!({ "body": { "id": 21 } }))
        .await
        .expect("run");
    assert_eq!(exec.status, Status::Succeeded, "{exec:?}");
    let journal = rt.store().journal(&id).await.unwrap();
    let sent = journal.iter().find(|r| r.key == "send").unwrap();
    let message_id = sent.output.clone().unwrap();
    let server = common::serve(&rt, None).await;
    wait_runs(&rt, "the sent message's run", |r| succeeded(r) == 1).await;
    let runs = runs(&rt).await;
    let received = &runs[0];
    assert_eq!(received.trigger["body"], json!({ "id": 21 }));
    assert_eq!(received.trigger["headers"]["sqs.message_id"], message_id);
    let key = format!("{id}/send");
    assert_eq!(received.trigger["headers"]["idempotency_key"], key.as_str());
    server.shutdown().await;
}

#[tokio::test]
async fn sns_publish_reaches_a_subscribed_queue() {
    let test = "sns_publish_reaches_a_subscribed_queue";
    let Some(endpoint) = endpoint(test) else {
        return;
    };
    let queue = unique("fanout");
    new_queue(&endpoint, &queue, None).await;
    let topic = unique("topic");
    let created = sns(&endpoint, &[("Action", "CreateTopic"), ("Name", &topic)]).await;
    let topic_arn = between(&created, "<TopicArn>", "</TopicArn>");
    let queue_arn = format!("arn:aws:sqs:us-east-1:123456789012:{queue}");
    let subscribe = [
        ("Action", "Subscribe"),
        ("TopicArn", topic_arn.as_str()),
        ("Protocol", "sqs"),
        ("Endpoint", queue_arn.as_str()),
    ];
    sns(&endpoint, &subscribe).await;
    let rt = runtime(&queue);
    let id = new_execution_id();
    let trigger = json!({ "body": { "id": 21 }, "topic": topic_arn });
    let exec = rt
        .run_inline(id.clone(), "relay", trigger)
        .await
        .expect("run");
    assert_eq!(exec.status, Status::Succeeded, "{exec:?}");
    let journal = rt.store().journal(&id).await.unwrap();
    let published = journal.iter().find(|r| r.key == "publish").unwrap();
    let sns_id = published.output.clone().unwrap();
    let server = common::serve(&rt, None).await;
    wait_runs(&rt, "the runs of orders 21 and 22", |r| succeeded(r) == 2).await;
    let runs = runs(&rt).await;
    let via_sns = runs.iter().find(|r| r.trigger["body"]["id"] == 22).unwrap();
    let key = format!("sqs:sns:{}", sns_id.as_str().unwrap());
    assert_eq!(via_sns.dedupe_key.as_deref(), Some(key.as_str()));
    assert_eq!(
        via_sns.trigger["headers"]["sns.topic_arn"],
        topic_arn.as_str()
    );
    server.shutdown().await;
}
