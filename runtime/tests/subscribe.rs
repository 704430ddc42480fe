//! What subscriptions store: `Runtime::record_rejected` (a message that does
//! not decode becomes a failed run, once per message id), and a rejected
//! run interrupted before it was finished fails when resumed, without
//! running the flow's body.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use flow_runtime::prelude::*;
use flow_runtime::store::NewExecution;
use flow_runtime::SubscribeTrigger;
use flow_runtime::{json, Runtime, Status};

static BODY_RAN: AtomicBool = AtomicBool::new(false);

fn orders(_cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        BODY_RAN.store(true, Ordering::SeqCst);
        Ok(Outcome::Succeeded)
    })
}

fn flows(_: &Config) -> Vec<FlowDef> {
    vec![FlowDef {
        name: "orders",
        doc: "",
        trigger: TriggerDef::Subscribe(SubscribeTrigger {
            broker: "nats",
            subject: "orders",
            url: String::new(),
            body: Schema::Json,
            group: None,
            durable: Some("orders".into()),
            via: None,
        }),
        run: orders,
        on_failure: None,
    }]
}

fn runtime() -> Runtime {
    let integration = common::integration("subscribe_store", flows);
    Runtime::new(integration, common::options(&[])).unwrap()
}

#[tokio::test]
async fn a_rejected_message_is_one_failed_run_with_its_payload() {
    let rt = runtime();
    let trigger = json!({ "body": null, "subject": "orders", "headers": {}, "payload": "{oops" });
    let key = Some("nats:ORDERS:7".to_string());
    let first = rt
        .record_rejected("orders", trigger.clone(), key.clone(), "invalid JSON: oops")
        .await
        .unwrap();
    assert!(!first.duplicate);
    let exec = rt.store().get(&first.execution_id).await.unwrap().unwrap();
    assert_eq!(exec.status, Status::Failed);
    assert_eq!(exec.error.as_deref(), Some("invalid JSON: oops"));
    assert_eq!(exec.trigger["payload"], "{oops");
    assert!(exec.lease().is_none(), "no lease left behind");
    let again = rt
        .record_rejected("orders", trigger, key, "invalid JSON: oops")
        .await
        .unwrap();
    assert!(again.duplicate, "a redelivery stores nothing new");
    assert_eq!(again.execution_id, first.execution_id);
}

#[tokio::test]
async fn an_unfinished_rejected_run_fails_without_running_the_body() {
    let rt = runtime();
    // As if the process died between storing the rejected run and
    // finishing it: the run is queued again at the next start.
    let trigger =
        json!({ "body": null, "subject": "orders", "headers": {}, "rejected": "id: expected Int" });
    let id = flow_runtime::engine::new_execution_id();
    rt.store()
        .enqueue(NewExecution::queued(id.clone(), "orders", trigger))
        .await
        .unwrap();
    let workers = rt.start_workers();
    let exec = common::finished(&rt, &id).await;
    assert_eq!(exec.status, Status::Failed);
    assert_eq!(exec.error.as_deref(), Some("id: expected Int"));
    assert!(!BODY_RAN.load(Ordering::SeqCst), "the flow's body ran");
    rt.begin_shutdown();
    for w in workers {
        let _ = w.await;
    }
}
