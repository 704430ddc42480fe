//! End to end: `xml.decode` / `xml.encode` in a generated binary
//! (`tests/flows/xml_orders.flow`): an XML webhook body decoded into a
//! typed record and forwarded as JSON, an XML acknowledgement sent out,
//! and a document that does not match the type failing its run with the
//! element path.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{post_raw, wait_execution, Service, Sink};

const ADMIN: &str = "admin-token-xml";
const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_xml_body_is_decoded_into_a_typed_record() {
    let binary = support::build_example("tests/flows/xml_orders.flow");
    let sink = Sink::start();
    let svc = Service::start(
        &binary,
        &[("SINK_URL", sink.url()), ("FLOW_ADMIN_TOKEN", ADMIN)],
        &[],
    );
    let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<po:order xmlns:po="urn:example:po" id="7">
  <customer-name>Ann &amp; Bob</customer-name>
  <rush> true </rush>
  <lines>
    <line><sku>tea</sku><qty>2</qty><price>1.5</price></line>
    <line><sku><![CDATA[<cup>]]></sku><qty>3</qty><price>2</price></line>
  </lines>
</po:order>"#;
    let headers = [("Content-Type", "application/xml")];
    let a = post_raw(&svc.at("/orders"), xml.as_bytes(), &headers).await;
    assert_eq!(a.status, 202, "{}", a.body);
    let id = a.body["execution_id"].as_str().expect("execution id");
    let exec = wait_execution(svc.url(), id, ADMIN, WAIT).await;
    assert_eq!(exec["status"], "succeeded", "{exec:#}");

    let orders = sink.requests_to("POST", "/orders");
    assert_eq!(orders.len(), 1, "{}", sink.summary());
    assert_eq!(
        orders[0].body,
        json!({
            "id": 7, "customer": "Ann & Bob", "rush": true, "note": "none",
            "lines": [
                { "sku": "tea", "qty": 2, "price": 1.5 },
                { "sku": "<cup>", "qty": 3, "price": 2.0 },
            ],
            "total": 9.0,
        })
    );
    let acks = sink.requests_to("POST", "/acks");
    assert_eq!(acks.len(), 1, "{}", sink.summary());
    assert_eq!(acks[0].header("content-type"), Some("application/xml"));
    assert_eq!(
        acks[0].body,
        json!("<ack><customer-name>Ann &amp; Bob</customer-name><id>7</id><sku>tea</sku><sku>&lt;cup&gt;</sku></ack>")
    );

    // A quantity that is not an Int: the run fails naming the element.
    let bad = "<order id=\"8\"><customer-name>C</customer-name><rush>false</rush>\
               <lines><line><sku>a</sku><qty>1</qty><price>1</price></line>\
               <line><sku>b</sku><qty>abc</qty><price>1</price></line></lines></order>";
    let a = post_raw(&svc.at("/orders"), bad.as_bytes(), &headers).await;
    assert_eq!(a.status, 202, "{}", a.body);
    let id = a.body["execution_id"].as_str().expect("execution id");
    let exec = wait_execution(svc.url(), id, ADMIN, WAIT).await;
    assert_eq!(exec["status"], "failed", "{exec:#}");
    let error = exec["error"].to_string();
    assert!(
        error.contains(r#"xml.decode: /order/lines/line[2]/qty: expected Int, got \"abc\""#),
        "{exec:#}"
    );
    assert_eq!(sink.requests().len(), 2, "{}", sink.summary());
}

/// `examples/order_xml_export.flow`: a signed order webhook becomes one XML
/// file in the ERP's import folder, with the lines and the total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_xml_export_example_writes_one_document_per_order() {
    let binary = support::build_example("examples/order_xml_export.flow");
    let work = tempfile::tempdir().unwrap();
    let inbox = work.path().join("erp");
    let inbox_text = inbox.display().to_string();
    let svc = Service::start_in(
        work.path(),
        &binary,
        &[
            ("WEBHOOK_SECRET", "xml-secret"),
            ("ERP_INBOX", &inbox_text),
            ("FLOW_ADMIN_TOKEN", ADMIN),
        ],
        &[],
    );
    let order = json!({
        "id": "o-7",
        "customer": "Ann & Bob",
        "lines": [
            { "sku": "tea", "quantity": 2, "price": 1.5 },
            { "sku": "cup", "quantity": 1, "price": 4.0 },
        ],
    });
    let body = serde_json::to_vec(&order).unwrap();
    let signature = support::hmac_hex("xml-secret", &body);
    let headers = [
        ("Content-Type", "application/json"),
        ("X-Signature", signature.as_str()),
    ];
    let a = post_raw(&svc.at("/orders"), &body, &headers).await;
    assert_eq!(a.status, 202, "{}", a.body);
    let id = a.body["execution_id"].as_str().expect("execution id");
    let exec = wait_execution(svc.url(), id, ADMIN, WAIT).await;
    assert_eq!(exec["status"], "succeeded", "{exec:#}");
    let written = std::fs::read_to_string(inbox.join("order-o-7.xml")).unwrap();
    // Elements come in name order (records are maps); lists repeat their
    // element.
    assert_eq!(
        written,
        "<order><customer>Ann &amp; Bob</customer>\
         <line><amount>3</amount><qty>2</qty><sku>tea</sku></line>\
         <line><amount>4</amount><qty>1</qty><sku>cup</sku></line>\
         <number>o-7</number><total>7</total></order>"
    );
}
