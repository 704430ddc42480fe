//! End to end: a pre-process flow dispatching to typed flows
//! (`examples/crm_events.flow`): `opportunity.updated` won → revenue POST,
//! `contact.created` → PUT of the contact by lowercased email, unknown
//! types skipped.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{get, poll_until, post_json, run_binary, wait_execution, Service, Sink};

const TOKEN: &str = "warehouse-token-e2e";
const ADMIN: &str = "admin-token-e2e";
const WAIT: Duration = Duration::from_secs(20);

fn crm(sink: &Sink) -> Service {
    let binary = support::build_example("examples/crm_events.flow");
    Service::start(
        &binary,
        &[
            ("WAREHOUSE_URL", sink.url()),
            ("WAREHOUSE_TOKEN", TOKEN),
            ("FLOW_ADMIN_TOKEN", ADMIN),
        ],
        &[],
    )
}

/// POSTs an event; returns the webhook execution's id.
async fn send(svc: &Service, event: Value) -> String {
    let (status, answer) = post_json(&svc.at("/crm/events"), &event, &[]).await;
    assert_eq!(status, 202, "{event} -> {answer}");
    answer["execution_id"]
        .as_str()
        .expect("execution_id")
        .to_string()
}

/// Waits until `flow` has `n` finished executions and returns them.
async fn finished_runs(svc: &Service, flow: &str, n: usize) -> Vec<Value> {
    let url = svc.at(&format!("/_flow/executions?flow={flow}"));
    let bearer = format!("Bearer {ADMIN}");
    poll_until(WAIT, &format!("{n} finished run(s) of {flow}"), || async {
        let a = get(&url, &[("Authorization", &bearer)]).await;
        assert_eq!(a.status, 200, "{}", a.body);
        let list = a.body["executions"].as_array().cloned().unwrap_or_default();
        let done = list
            .iter()
            .filter(|e| {
                matches!(
                    e["status"].as_str(),
                    Some("succeeded" | "failed" | "skipped")
                )
            })
            .count();
        (done >= n).then_some(list)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_won_opportunity_is_booked_as_revenue() {
    let sink = Sink::start();
    let svc = crm(&sink);
    let id = send(
        &svc,
        json!({ "type": "opportunity.updated", "data": {
            "id": "opp-1", "amount": 1200.5, "stage": "won", "owner": "ignored",
        } }),
    )
    .await;
    let exec = wait_execution(svc.url(), &id, ADMIN, WAIT).await;
    assert_eq!(exec["status"], "succeeded", "{exec:#}");

    let booked = sink.wait_for_path("POST", "/revenue", 1, WAIT).await;
    assert_eq!(
        booked[0].body,
        json!({ "opportunity": "opp-1", "amount": 1200.5 })
    );
    assert_eq!(
        booked[0].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    let runs = finished_runs(&svc, "opportunity_updated", 1).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["status"], "succeeded", "{runs:#?}");

    // An Int amount is accepted for the Float field.
    send(
        &svc,
        json!({ "type": "opportunity.updated", "data": { "id": "opp-2", "amount": 300, "stage": "won" } }),
    )
    .await;
    let booked = sink.wait_for_path("POST", "/revenue", 2, WAIT).await;
    assert_eq!(booked[1].body["opportunity"], "opp-2");
    assert_eq!(booked[1].body["amount"].as_f64(), Some(300.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_opportunity_is_not_booked() {
    let sink = Sink::start();
    let svc = crm(&sink);
    send(
        &svc,
        json!({ "type": "opportunity.updated", "data": { "id": "opp-3", "amount": 10.0, "stage": "open" } }),
    )
    .await;
    let runs = finished_runs(&svc, "opportunity_updated", 1).await;
    assert_eq!(runs[0]["status"], "skipped", "{runs:#?}");
    let exec = wait_execution(svc.url(), runs[0]["id"].as_str().expect("id"), ADMIN, WAIT).await;
    assert_eq!(
        exec["result"],
        json!({ "skipped": "only won deals are booked" })
    );
    assert_eq!(exec["trigger"]["input"]["stage"], "open");
    assert!(sink.requests().is_empty(), "{}", sink.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_contact_is_put_by_lowercased_email() {
    let sink = Sink::start();
    let svc = crm(&sink);
    send(
        &svc,
        json!({ "type": "contact.created", "data": {
            "id": "c-9", "email": "Ada.Lovelace@Example.COM", "name": "Ada",
        } }),
    )
    .await;
    let put = sink
        .wait_for_path("PUT", "/contacts/ada.lovelace@example.com", 1, WAIT)
        .await;
    assert_eq!(put[0].body, json!({ "crm_id": "c-9", "name": "Ada" }));
    assert_eq!(
        put[0].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );

    // Without a name (missing or null), the default from `??`.
    send(
        &svc,
        json!({ "type": "contact.created", "data": { "id": "c-10", "email": "BOB@x.org" } }),
    )
    .await;
    send(
        &svc,
        json!({ "type": "contact.created", "data": { "id": "c-11", "email": "eve@x.org", "name": null } }),
    )
    .await;
    let bob = sink
        .wait_for_path("PUT", "/contacts/bob@x.org", 1, WAIT)
        .await;
    assert_eq!(
        bob[0].body,
        json!({ "crm_id": "c-10", "name": "(no name)" })
    );
    let eve = sink
        .wait_for_path("PUT", "/contacts/eve@x.org", 1, WAIT)
        .await;
    assert_eq!(
        eve[0].body,
        json!({ "crm_id": "c-11", "name": "(no name)" })
    );
    let runs = finished_runs(&svc, "contact_created", 3).await;
    assert!(runs.iter().all(|r| r["status"] == "succeeded"), "{runs:#?}");
    assert!(sink.requests_to("POST", "/revenue").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_event_type_is_skipped() {
    let sink = Sink::start();
    let svc = crm(&sink);
    let id = send(
        &svc,
        json!({ "type": "invoice.paid", "data": { "id": "inv-1" } }),
    )
    .await;
    let exec = wait_execution(svc.url(), &id, ADMIN, WAIT).await;
    assert_eq!(exec["status"], "skipped", "{exec:#}");
    assert_eq!(exec["flow"], "crm_webhook");
    assert_eq!(exec["result"], json!({ "skipped": "unhandled event type" }));

    // Nothing was dispatched, nothing was sent.
    let bearer = format!("Bearer {ADMIN}");
    let all = get(&svc.at("/_flow/executions"), &[("Authorization", &bearer)]).await;
    let all = all.body["executions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(all.len(), 1, "{all:#?}");
    let skipped = get(
        &svc.at("/_flow/executions?status=skipped"),
        &[("Authorization", &bearer)],
    )
    .await;
    assert_eq!(skipped.body["executions"][0]["id"], id.as_str());
    assert!(sink.requests().is_empty(), "{}", sink.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatched_data_of_the_wrong_type_fails_the_run() {
    let sink = Sink::start();
    let svc = crm(&sink);
    // `trigger.body.data as Opportunity` is checked at run time.
    let id = send(
        &svc,
        json!({ "type": "opportunity.updated", "data": { "id": "opp-4", "stage": "won" } }),
    )
    .await;
    let exec = wait_execution(svc.url(), &id, ADMIN, WAIT).await;
    assert_eq!(exec["status"], "failed", "{exec:#}");
    let error = exec["error"].as_str().unwrap_or_default();
    assert!(error.contains("amount"), "{error}");
    assert!(sink.requests().is_empty(), "{}", sink.summary());

    // The command line lists it among the failed runs and replays it
    // (through the admin API of the running server).
    let binary = support::build_example("examples/crm_events.flow");
    let admin = [("FLOW_ADMIN_TOKEN", ADMIN)];
    let listed = tokio::task::block_in_place(|| {
        run_binary(
            &binary,
            &admin,
            &["executions", "--failed", "--url", svc.url()],
            Duration::from_secs(30),
        )
    });
    assert_eq!(listed.code, Some(0), "{listed:#?}");
    assert!(listed.stdout.contains(&id), "{listed:#?}");
    assert!(listed.stdout.contains("crm_webhook"), "{listed:#?}");
    let replayed = tokio::task::block_in_place(|| {
        run_binary(
            &binary,
            &admin,
            &["replay", &id, "--url", svc.url()],
            Duration::from_secs(30),
        )
    });
    assert_eq!(replayed.code, Some(0), "{replayed:#?}");
    assert!(replayed.stdout.contains(&id), "{replayed:#?}");
    let again = poll_until(WAIT, "the replay to end", || async {
        let (_, e) = support::admin_execution(svc.url(), &id, ADMIN).await;
        (e["attempts"].as_u64() >= Some(2) && e["status"] == "failed").then_some(e)
    })
    .await;
    assert!(
        again["error"]
            .as_str()
            .is_some_and(|e| e.contains("amount")),
        "{again:#}"
    );

    // The envelope itself is validated before anything runs.
    let (status, answer) = post_json(
        &svc.at("/crm/events"),
        &json!({ "type": 5, "data": {} }),
        &[],
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer, json!({ "error": "type: expected String, got 5" }));
}
