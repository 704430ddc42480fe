//! A hand-written "generated" program used by the durability tests
//! (`tests/durability.rs`: SIGKILL, outage, replay, dedupe, SIGTERM,
//! secrets) and the intake benchmark (`benches/intake.sh`). What `flowc
//! build` should emit for:
//!
//! ```flow
//! /// Relays orders to a fulfilment service, one call per order line.
//! integration orders_relay
//!
//! config {
//!   /// Base URL of the fulfilment service.
//!   sink_url: Url
//!   sink_token: Secret
//! }
//!
//! type Order {
//!   id: String
//!   lines: [String]
//! }
//!
//! /// Each line becomes one call; then the order is closed.
//! flow order_received {
//!   trigger webhook POST "/orders" {
//!     body: Order
//!     dedupe: header("X-Delivery-Id")
//!   }
//!   for line in trigger.body.lines {
//!     step send = http.post("${config.sink_url}/lines/${trigger.body.id}",
//!       json: { order: trigger.body.id, line: line },
//!       bearer: config.sink_token,
//!     ) retry 8 backoff 50ms..400ms
//!   }
//!   step done = http.post("${config.sink_url}/done",
//!     json: { order: trigger.body.id },
//!     bearer: config.sink_token,
//!   ) retry 8 backoff 50ms..400ms
//! }
//!
//! /// Stores any JSON event and journals its digest (the intake benchmark).
//! flow event_received {
//!   trigger webhook POST "/events" {
//!     body: Json
//!     dedupe: header("X-Event-Id")
//!   }
//!   step digest = crypto.sha256(json.encode(trigger.body))
//! }
//! ```

use std::time::Duration;

use flow_runtime::{
    json, no_connections, ops, Args, Config, ConfigEntry, Ctx, FieldSchema, FlowDef, FlowFuture,
    Integration, Outcome, Schema, StepOptions, TriggerDef, Value,
};

fn main() -> std::process::ExitCode {
    flow_runtime::main(integration(), Vec::new())
}

/// The integration description.
pub fn integration() -> Integration {
    Integration {
        name: "orders_relay",
        doc: "Relays orders to a fulfilment service, one call per order line.",
        flowc_version: "0.1.0",
        source_hash: "9b1e0c4f2a7d3e5b6c8a9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c",
        config: vec![
            ConfigEntry {
                name: "sink_url",
                env: None,
                schema: Schema::Url,
                default: None,
                doc: "Base URL of the fulfilment service.",
                secret: false,
            },
            ConfigEntry {
                name: "sink_token",
                env: None,
                schema: Schema::Secret,
                default: None,
                doc: "",
                secret: true,
            },
        ],
        types: vec![(
            "Order",
            Schema::Record(vec![
                FieldSchema::new("id", Schema::String),
                FieldSchema::new("lines", Schema::list(Schema::String)),
            ]),
        )],
        flows,
        connections: no_connections,
        graph: "",
    }
}

fn flows(_config: &Config) -> Vec<FlowDef> {
    vec![
        FlowDef {
            name: "order_received",
            doc: "Each line becomes one call; then the order is closed.",
            trigger: TriggerDef::Webhook {
                method: "POST",
                path: "/orders",
                body: Schema::Ref("Order"),
                verify: None,
                auth: None,
                dedupe: Some(order_received_dedupe),
                max_body: flow_runtime::DEFAULT_MAX_BODY,
            },
            run: order_received,
            on_failure: None,
        },
        FlowDef {
            name: "event_received",
            doc: "Stores any JSON event and journals its digest (the intake benchmark).",
            trigger: TriggerDef::Webhook {
                method: "POST",
                path: "/events",
                body: Schema::Json,
                verify: None,
                auth: None,
                dedupe: Some(event_received_dedupe),
                max_body: flow_runtime::DEFAULT_MAX_BODY,
            },
            run: event_received,
            on_failure: None,
        },
    ]
}

/// `dedupe: header("X-Delivery-Id")`.
fn order_received_dedupe(trigger: &Value) -> Option<String> {
    ops::field(&ops::field(trigger, "headers"), "x-delivery-id")
        .as_str()
        .map(str::to_string)
}

/// `dedupe: header("X-Event-Id")`.
fn event_received_dedupe(trigger: &Value) -> Option<String> {
    ops::field(&ops::field(trigger, "headers"), "x-event-id")
        .as_str()
        .map(str::to_string)
}

fn relay_options() -> StepOptions {
    StepOptions {
        retry: 8,
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        timeout: None,
    }
}

fn order_received(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let config = cx.config().clone();
        let trigger = cx.trigger().clone();
        let order = ops::field(&ops::field(&trigger, "body"), "id");
        let items = ops::iter(&ops::field(&ops::field(&trigger, "body"), "lines"))?;
        for (i0, line) in items.into_iter().enumerate() {
            let cx = cx.with_index(i0);
            cx.step(
                "send",
                relay_options(),
                "http.post",
                Args::new()
                    .arg(Value::String(ops::interp(&[
                        ops::field(&config, "sink_url"),
                        json!("/lines/"),
                        order.clone(),
                    ])))
                    .kw(
                        "json",
                        ops::record([("order", order.clone()), ("line", line)]),
                    )
                    .kw("bearer", ops::field(&config, "sink_token")),
            )
            .await?;
        }
        cx.step(
            "done",
            relay_options(),
            "http.post",
            Args::new()
                .arg(Value::String(ops::interp(&[
                    ops::field(&config, "sink_url"),
                    json!("/done"),
                ])))
                .kw("json", ops::record([("order", order)]))
                .kw("bearer", ops::field(&config, "sink_token")),
        )
        .await?;
        Ok(Outcome::Succeeded)
    })
}

fn event_received(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let trigger = cx.trigger().clone();
        let text =
            flow_runtime::call_pure("json.encode", Args::new().arg(ops::field(&trigger, "body")))?;
        cx.step(
            "digest",
            StepOptions::default(),
            "crypto.sha256",
            Args::new().arg(text),
        )
        .await?;
        Ok(Outcome::Succeeded)
    })
}
