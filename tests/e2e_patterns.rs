//! End to end: the integration patterns of the examples catalogue (README
//! "Patterns"), each example built and run against local servers standing
//! in for the third-party apps:
//! - `shop_events.flow` (1): one webhook, several event types, `match`;
//! - `bug_export.flow` (4): a signed GitHub-style webhook, filtered,
//!   transformed and forwarded;
//! - `crm_helpdesk.flow` (5): two-way sync with loop prevention;
//! - `shop_erp.flow` (10): webhook export plus a scheduled import with a
//!   cursor (the schedule is driven with `BINARY run`).

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{hmac_hex, post_json, post_raw, run_binary, wait_execution, Reply, Service, Sink};

const ADMIN: &str = "admin-token-e2e";
const SECRET: &str = "webhook-secret-e2e";
const WAIT: Duration = Duration::from_secs(20);

/// POSTs `body` signed with `SECRET` in `header` (`prefix` before the hex
/// digest); returns the execution id of the `202`.
async fn send_signed(
    svc: &Service,
    path: &str,
    header: &str,
    prefix: &str,
    body: &Value,
    extra: &[(&str, &str)],
) -> String {
    let raw = body.to_string();
    let signature = format!("{prefix}{}", hmac_hex(SECRET, raw.as_bytes()));
    let mut headers = vec![(header, signature.as_str())];
    headers.extend_from_slice(extra);
    let answer = post_raw(&svc.at(path), raw.as_bytes(), &headers).await;
    assert_eq!(answer.status, 202, "{path} {body} -> {:?}", answer.body);
    answer.body["execution_id"]
        .as_str()
        .expect("execution_id")
        .to_string()
}

/// Waits for execution `id` to end and checks its status.
async fn ended(svc: &Service, id: &str, status: &str) -> Value {
    let exec = wait_execution(svc.url(), id, ADMIN, WAIT).await;
    assert_eq!(exec["status"], status, "{exec:#}");
    exec
}

/// Pattern 1: each event type of the one shop webhook reaches its own ERP
/// call; an event type the flow does not handle is accepted and skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shop_events_branch_on_the_event_type() {
    let erp = Sink::start();
    let binary = support::build_example("examples/shop_events.flow");
    let svc = Service::start(
        &binary,
        &[
            ("ERP_URL", erp.url()),
            ("ERP_TOKEN", "erp-token"),
            ("WEBHOOK_SECRET", SECRET),
            ("FLOW_ADMIN_TOKEN", ADMIN),
        ],
        &[],
    );
    let send = |body: Value| {
        let svc = &svc;
        async move { send_signed(svc, "/shop/events", "X-Shop-Signature", "", &body, &[]).await }
    };

    let created = send(json!({
        "id": "evt_1", "type": "order.created", "created_at": "2024-05-02T09:30:00Z",
        "data": {
            "order_id": "ord_1001", "number": 1001, "currency": "EUR",
            "customer": { "email": "Ada@Example.com", "name": "Ada Lovelace" },
            "lines": [
                { "sku": "TEA-EARL", "quantity": 2, "unit_price": 4.5 },
                { "sku": "CUP-WHITE", "quantity": 1, "unit_price": 12 },
            ],
        },
    }))
    .await;
    ended(&svc, &created, "succeeded").await;
    let orders = erp.requests_to("POST", "/sales-orders");
    assert_eq!(orders.len(), 1, "{}", erp.summary());
    assert_eq!(
        orders[0].body,
        json!({
            "external_id": "ord_1001",
            "reference": "SHOP-1001",
            "customer_email": "ada@example.com",
            "customer_name": "Ada Lovelace",
            "currency": "EUR",
            "lines": [
                { "item": "TEA-EARL", "qty": 2, "price": 4.5 },
                { "item": "CUP-WHITE", "qty": 1, "price": 12.0 },
            ],
            "ordered_at": "2024-05-02T09:30:00Z",
        })
    );
    assert_eq!(orders[0].header("authorization"), Some("Bearer erp-token"));

    let cancelled = send(json!({
        "id": "evt_2", "type": "order.cancelled", "created_at": "2024-05-02T10:00:00Z",
        "data": { "order_id": "ord_1001", "reason": "customer changed their mind" },
    }))
    .await;
    ended(&svc, &cancelled, "succeeded").await;
    let cancels = erp.requests_to("POST", "/sales-orders/ord_1001/cancel");
    assert_eq!(cancels.len(), 1, "{}", erp.summary());
    assert_eq!(
        cancels[0].body,
        json!({ "reason": "customer changed their mind" })
    );

    let refunded = send(json!({
        "id": "evt_3", "type": "order.refunded", "created_at": "2024-05-03T08:00:00Z",
        "data": {
            "order_id": "ord_1001", "refund_id": "re_77", "amount": 4.5,
            "currency": "EUR", "restock": true,
        },
    }))
    .await;
    ended(&svc, &refunded, "succeeded").await;
    let credits = erp.requests_to("POST", "/credit-notes");
    assert_eq!(credits.len(), 1, "{}", erp.summary());
    assert_eq!(
        credits[0].body,
        json!({
            "sales_order": "ord_1001", "external_id": "re_77", "amount": 4.5,
            "currency": "EUR", "return_to_stock": true,
        })
    );

    // An event type the flow has no branch for: accepted, then skipped.
    let other = send(json!({
        "id": "evt_4", "type": "customer.updated", "created_at": "2024-05-03T08:05:00Z",
        "data": { "email": "ada@example.com" },
    }))
    .await;
    let exec = ended(&svc, &other, "skipped").await;
    assert_eq!(
        exec["result"],
        json!({ "skipped": "event type not handled" })
    );

    // A known type whose data does not fit its type fails the run, naming
    // the field, and sends nothing.
    let bad = send(json!({
        "id": "evt_5", "type": "order.refunded", "created_at": "2024-05-03T09:00:00Z",
        "data": { "order_id": "ord_1002", "refund_id": "re_78", "currency": "EUR", "restock": false },
    }))
    .await;
    let exec = ended(&svc, &bad, "failed").await;
    let error = exec["error"].as_str().unwrap_or_default();
    assert!(error.contains("amount"), "{error}");
    assert_eq!(erp.requests().len(), 3, "{}", erp.summary());
}

fn issues_event(action: &str, label: &str, number: i64, labels: &[&str]) -> Value {
    json!({
        "action": action,
        "label": { "name": label },
        "issue": {
            "number": number,
            "title": "Export crashes on empty rows",
            "body": null,
            "html_url": format!("https://github.com/acme/sheets/issues/{number}"),
            "labels": labels.iter().map(|l| json!({ "name": l })).collect::<Vec<_>>(),
            "user": { "login": "grace", "id": 7 },
            "state": "open",
        },
        "repository": { "full_name": "acme/sheets", "private": false },
        "sender": { "login": "grace" },
    })
}

/// Pattern 4: a signed GitHub-style event is filtered, transformed and
/// forwarded; a wrong signature gets 401 and nothing is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bug_export_forwards_signed_bug_labels_only() {
    let tracker = Sink::start();
    tracker.on(
        "POST",
        "/api/tickets",
        [Reply::json(201, json!({ "id": 501 }))],
    );
    let binary = support::build_example("examples/bug_export.flow");
    let svc = Service::start(
        &binary,
        &[
            ("TRACKER_URL", tracker.url()),
            ("TRACKER_TOKEN", "tracker-token"),
            ("WEBHOOK_SECRET", SECRET),
            ("FLOW_ADMIN_TOKEN", ADMIN),
        ],
        &[],
    );
    let hook = "/hooks/issues";
    let sig = "X-Hub-Signature-256";

    // Signed the way GitHub signs: `sha256=<hex>`.
    let bug = issues_event("labeled", "bug", 42, &["bug", "critical", "export"]);
    let id = send_signed(
        &svc,
        hook,
        sig,
        "sha256=",
        &bug,
        &[("X-GitHub-Event", "issues"), ("X-GitHub-Delivery", "d-1")],
    )
    .await;
    ended(&svc, &id, "succeeded").await;
    let tickets = tracker.requests_to("POST", "/api/tickets");
    assert_eq!(tickets.len(), 1, "{}", tracker.summary());
    assert_eq!(
        tickets[0].body,
        json!({
            "queue": "engineering-bugs",
            "title": "[acme/sheets#42] Export crashes on empty rows",
            "description": "(no description)",
            "priority": "high",
            "tags": ["critical", "export"],
            "reporter": "grace",
            "external_id": "acme/sheets#42",
            "link": "https://github.com/acme/sheets/issues/42",
        })
    );
    assert_eq!(
        tickets[0].header("authorization"),
        Some("Bearer tracker-token")
    );

    // A wrong signature: 401, no run, nothing sent.
    let raw = issues_event("labeled", "bug", 43, &["bug"]).to_string();
    let forged = format!("sha256={}", hmac_hex("not-the-secret", raw.as_bytes()));
    let answer = post_raw(
        &svc.at(hook),
        raw.as_bytes(),
        &[
            (sig, &forged),
            ("X-GitHub-Event", "issues"),
            ("X-GitHub-Delivery", "d-2"),
        ],
    )
    .await;
    assert_eq!(answer.status, 401, "{:?}", answer.body);
    // No signature at all: 401 too.
    let (status, _) = post_json(
        &svc.at(hook),
        &issues_event("labeled", "bug", 43, &["bug"]),
        &[("X-GitHub-Event", "issues")],
    )
    .await;
    assert_eq!(status, 401);

    // Filtered out: another label, and another event kind.
    let other = issues_event("labeled", "enhancement", 44, &["enhancement"]);
    let id = send_signed(
        &svc,
        hook,
        sig,
        "sha256=",
        &other,
        &[("X-GitHub-Event", "issues"), ("X-GitHub-Delivery", "d-3")],
    )
    .await;
    let exec = ended(&svc, &id, "skipped").await;
    assert_eq!(
        exec["result"],
        json!({ "skipped": "not a bug label being added" })
    );
    let comment = issues_event("created", "bug", 42, &["bug"]);
    let id = send_signed(
        &svc,
        hook,
        sig,
        "sha256=",
        &comment,
        &[
            ("X-GitHub-Event", "issue_comment"),
            ("X-GitHub-Delivery", "d-4"),
        ],
    )
    .await;
    let exec = ended(&svc, &id, "skipped").await;
    assert_eq!(exec["result"], json!({ "skipped": "not an issues event" }));

    // GitHub redelivering d-1 does not open a second ticket.
    let raw = bug.to_string();
    let signature = format!("sha256={}", hmac_hex(SECRET, raw.as_bytes()));
    let again = post_raw(
        &svc.at(hook),
        raw.as_bytes(),
        &[
            (sig, &signature),
            ("X-GitHub-Event", "issues"),
            ("X-GitHub-Delivery", "d-1"),
        ],
    )
    .await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(tracker.requests().len(), 1, "{}", tracker.summary());
}

/// Pattern 5: both directions of a CRM ↔ helpdesk sync, and the loop
/// guard that skips the echoes of the integration's own writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crm_helpdesk_syncs_both_ways_without_echoes() {
    let crm = Sink::start();
    let helpdesk = Sink::start();
    let binary = support::build_example("examples/crm_helpdesk.flow");
    let svc = Service::start(
        &binary,
        &[
            ("CRM_URL", crm.url()),
            ("CRM_TOKEN", "crm-token"),
            ("HELPDESK_URL", helpdesk.url()),
            ("HELPDESK_TOKEN", "helpdesk-token"),
            ("FLOW_ADMIN_TOKEN", ADMIN),
        ],
        &[],
    );
    let send = |path: &'static str, body: Value| {
        let svc = &svc;
        async move {
            let (status, answer) = post_json(&svc.at(path), &body, &[]).await;
            assert_eq!(status, 202, "{path} {body} -> {answer}");
            let id = answer["execution_id"].as_str().expect("execution_id");
            id.to_string()
        }
    };

    // CRM → helpdesk.
    let contact = json!({
        "event": "contact.updated",
        "contact": {
            "id": "C-1", "email": "Ada@Example.com", "first_name": "Ada",
            "last_name": "Lovelace", "phone": "+44 20 7946 0000", "company": null,
        },
        "changed_by": "maria.sales",
    });
    let id = send("/crm/contacts", contact.clone()).await;
    ended(&svc, &id, "succeeded").await;
    let upserts = helpdesk.requests_to("PUT", "/api/users/external/C-1");
    assert_eq!(upserts.len(), 1, "{}", helpdesk.summary());
    assert_eq!(
        upserts[0].body,
        json!({
            "email": "ada@example.com", "name": "Ada Lovelace",
            "phone": "+44 20 7946 0000", "organization": null,
        })
    );
    assert_eq!(
        upserts[0].header("authorization"),
        Some("Bearer helpdesk-token")
    );

    // The helpdesk reports that upsert back as a change by the
    // integration's helpdesk user: skipped, nothing goes to the CRM.
    let echo = json!({
        "user": {
            "id": 9001, "external_id": "C-1", "email": "ada@example.com",
            "name": "Ada Lovelace", "phone": "+44 20 7946 0000",
        },
        "actor": { "name": "crm-sync" },
    });
    let id = send("/helpdesk/users", echo).await;
    let exec = ended(&svc, &id, "skipped").await;
    assert_eq!(
        exec["result"],
        json!({ "skipped": "change made by this integration" })
    );

    // Helpdesk → CRM: the customer changes their phone in the portal.
    let own = json!({
        "user": {
            "id": 9001, "external_id": "C-1", "email": "ada@example.com",
            "name": "Ada Lovelace", "phone": "+44 20 7946 1111",
        },
        "actor": { "name": "Ada Lovelace" },
    });
    let id = send("/helpdesk/users", own).await;
    ended(&svc, &id, "succeeded").await;
    let patches = crm.requests_to("PATCH", "/v1/contacts/C-1");
    assert_eq!(patches.len(), 1, "{}", crm.summary());
    assert_eq!(
        patches[0].body,
        json!({ "email": "ada@example.com", "phone": "+44 20 7946 1111" })
    );
    assert_eq!(patches[0].header("authorization"), Some("Bearer crm-token"));

    // ... and the CRM reports that PATCH as a change by the integration's
    // CRM user: skipped, nothing goes back to the helpdesk.
    let mut crm_echo = contact.clone();
    crm_echo["contact"]["phone"] = json!("+44 20 7946 1111");
    crm_echo["changed_by"] = json!("helpdesk-sync");
    let id = send("/crm/contacts", crm_echo).await;
    ended(&svc, &id, "skipped").await;
    assert_eq!(helpdesk.requests().len(), 1, "{}", helpdesk.summary());

    // A solved ticket becomes a note; an open one is skipped.
    let ticket = |status: &str, id: i64| {
        json!({
            "event": "ticket.updated",
            "ticket": {
                "id": id, "subject": "Invoice shows the wrong address", "status": status,
                "requester": {
                    "id": 9001, "external_id": "C-1", "email": "ada@example.com",
                    "name": "Ada Lovelace",
                },
            },
            "actor": { "name": "sam.support" },
        })
    };
    let id = send("/helpdesk/tickets", ticket("open", 311)).await;
    ended(&svc, &id, "skipped").await;
    let id = send("/helpdesk/tickets", ticket("solved", 311)).await;
    ended(&svc, &id, "succeeded").await;
    let notes = crm.requests_to("POST", "/v1/contacts/C-1/notes");
    assert_eq!(notes.len(), 1, "{}", crm.summary());
    assert_eq!(
        notes[0].body,
        json!({
            "title": "Support ticket #311 solved",
            "body": "Invoice shows the wrong address (solved by sam.support)",
            "source": "helpdesk",
        })
    );
    assert_eq!(crm.requests().len(), 2, "{}", crm.summary());
}

/// Pattern 10: order webhooks go to the ERP as they arrive (a served
/// instance); the scheduled stock import, driven here with `BINARY run`,
/// asks the ERP for what changed since its cursor and sets it in the shop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shop_erp_exports_orders_and_imports_stock() {
    let erp = Sink::start();
    let shop = Sink::start();
    erp.on(
        "POST",
        "/api/sales-orders",
        [Reply::json(201, json!({ "id": 88 }))],
    );
    let binary = support::build_example("examples/shop_erp.flow");
    let env = [
        ("SHOP_URL", shop.url()),
        ("SHOP_TOKEN", "shop-token"),
        ("WEBHOOK_SECRET", SECRET),
        ("ERP_URL", erp.url()),
        ("ERP_TOKEN", "erp-token"),
        ("FLOW_ADMIN_TOKEN", ADMIN),
    ];

    // Event-driven export, through the served binary.
    let svc = Service::start(&binary, &env, &[]);
    let order = json!({
        "id": 5001, "number": "1042", "email": "Grace@Example.com",
        "currency": "EUR", "total": 29.0,
        "shipping_address": {
            "name": "Grace Hopper", "street": "1 Harbour Way", "city": "Arlington",
            "postcode": "22201", "country": "US",
        },
        "lines": [{ "sku": "MUG-BLUE", "quantity": 2, "price": 14.5 }],
    });
    let id = send_signed(
        &svc,
        "/shop/orders/paid",
        "X-Shop-Signature",
        "",
        &order,
        &[],
    )
    .await;
    ended(&svc, &id, "succeeded").await;
    let created = erp.requests_to("POST", "/api/sales-orders");
    assert_eq!(created.len(), 1, "{}", erp.summary());
    assert_eq!(
        created[0].body,
        json!({
            "customer_ref": "grace@example.com",
            "external_ref": "shop-1042",
            "warehouse": "MAIN",
            "currency": "EUR",
            "ship_to": order["shipping_address"],
            "lines": [{ "article": "MUG-BLUE", "qty": 2, "unit_price": 14.5 }],
        })
    );
    drop(svc);

    // Scheduled import: two polls in two processes on one store, as two
    // firings of the schedule would be.
    erp.on(
        "GET",
        "/api/stock-changes",
        [
            Reply::json(
                200,
                json!({
                    "levels": [
                        { "sku": "MUG-BLUE", "warehouse": "MAIN", "available": 12 },
                        { "sku": "MUG-RED", "warehouse": "MAIN", "available": 0 },
                    ],
                    "as_of": "2024-05-02T10:15:00Z",
                }),
            ),
            Reply::json(
                200,
                json!({
                    "levels": [{ "sku": "MUG-BLUE", "warehouse": "MAIN", "available": 10 }],
                    "as_of": "2024-05-02T10:30:00Z",
                }),
            ),
        ],
    );
    let work = tempfile::tempdir().expect("temporary folder");
    let store = format!("sqlite://{}", work.path().join("shop_erp.db").display());
    for _ in 0..2 {
        let done = tokio::task::block_in_place(|| {
            run_binary(
                &binary,
                &env,
                &["--store", &store, "run", "stock_to_shop"],
                Duration::from_secs(60),
            )
        });
        assert_eq!(done.code, Some(0), "{done:#?}");
        let outcome: Value = serde_json::from_str(done.stdout.trim())
            .unwrap_or_else(|e| panic!("{:?}: {e}", done.stdout));
        assert_eq!(outcome["status"], "succeeded", "{outcome:#}");
    }
    let polls = erp.requests_to("GET", "/api/stock-changes");
    let queries: Vec<&str> = polls.iter().map(|r| r.query.as_str()).collect();
    assert_eq!(
        queries,
        [
            "since=1970-01-01T00%3A00%3A00Z&warehouse=MAIN",
            "since=2024-05-02T10%3A15%3A00Z&warehouse=MAIN",
        ],
        "the second poll starts from the first one's cursor"
    );
    assert_eq!(polls[0].header("authorization"), Some("Bearer erp-token"));
    let mut set: Vec<(String, Value)> = shop
        .requests()
        .iter()
        .map(|r| {
            assert_eq!(r.method, "PUT", "{}", shop.summary());
            assert_eq!(r.header("authorization"), Some("Bearer shop-token"));
            (r.path.clone(), r.body.clone())
        })
        .collect();
    set.sort_by(|a, b| a.0.cmp(&b.0));
    // The two puts of MUG-BLUE keep their order: the second poll ran later.
    assert_eq!(
        set,
        [
            (
                "/admin/inventory/MUG-BLUE".to_string(),
                json!({ "available": 12 })
            ),
            (
                "/admin/inventory/MUG-BLUE".to_string(),
                json!({ "available": 10 })
            ),
            (
                "/admin/inventory/MUG-RED".to_string(),
                json!({ "available": 0 })
            ),
        ]
    );
}
