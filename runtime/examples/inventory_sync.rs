//! A hand-written "generated" program: what `flowc build` should emit for
//! the `.flow` file below. Kept compiling and driven over real HTTP by
//! `tests/handwritten.rs`; quoted in `runtime/API.md`.
//!
//! ```flow
//! /// Keeps the ERP's stock levels in step with the inventory app.
//! integration inventory_sync
//!
//! config {
//!   /// Base URL of the ERP's REST API.
//!   erp_url: Url
//!   erp_token: Secret
//!   /// Shared secret of the inventory app's webhook signatures.
//!   webhook_secret: Secret
//!   public_url: Url = "http://localhost:8080"
//! }
//!
//! type Update {
//!   /// Stock keeping unit name.
//!   @rename("Item-Name") item: String
//!   action: "add" | "remove"
//!   quantity: Int
//!   note: String?
//! }
//! type InventoryEvent {
//!   event: "INVENTORY_UPDATE"
//!   updates: [Update]
//! }
//!
//! /// One webhook call carries several updates; each becomes one ERP call.
//! flow stock_changed {
//!   trigger webhook POST "/inventory" {
//!     body: InventoryEvent
//!     verify: hmac_sha256(header: "X-Signature", secret: config.webhook_secret)
//!     dedupe: header("X-Delivery-Id")
//!   }
//!   for update in trigger.body.updates {
//!     let delta = match update.action {
//!       "add" => update.quantity
//!       "remove" => -update.quantity
//!     }
//!     step adjust = http.post("${config.erp_url}/stock/${update.item}",
//!       json: { delta: delta },
//!       bearer: config.erp_token,
//!     ) retry 2 backoff 100ms..1s
//!   }
//!   dispatch audit({ count: trigger.body.updates.len() })
//!   on failure {
//!     step alert = http.post("${config.erp_url}/alerts",
//!       json: { message: error.message, step: error.step })
//!   }
//! }
//!
//! /// Records how many updates a delivery carried.
//! flow audit {
//!   trigger dispatch (input: { count: Int })
//!   if trigger.input.count == 0 { skip "empty delivery" }
//!   step log = http.post("${config.erp_url}/audit", json: { count: trigger.input.count })
//! }
//!
//! /// Current stock level of one item, straight from the ERP.
//! flow get_stock {
//!   trigger sync GET "/stock/{item}" timeout 5s
//!   step level = http.get("${config.erp_url}/stock/${trigger.params.item}",
//!     bearer: config.erp_token, as: { level: Int })
//!   respond 200, { item: trigger.params.item, level: level.body.level }
//!     headers { "Cache-Control": "no-store" }
//! }
//!
//! /// Tells the ERP we are alive, and remembers when.
//! flow heartbeat {
//!   trigger schedule every 300ms
//!   step ping = http.post("${config.erp_url}/heartbeat", json: { at: trigger.fired_at })
//!   step remember = state.set("last_heartbeat", trigger.fired_at)
//! }
//!
//! /// Registers our webhook with the inventory app on each new version.
//! flow register {
//!   trigger deploy
//!   step hook = http.post("${config.erp_url}/webhooks",
//!     json: { url: trigger.endpoints.stock_changed, version: trigger.version })
//! }
//!
//! test "an add and a remove make two ERP calls and an audit" {
//!   config { erp_url: "http://erp.test", erp_token: "t", webhook_secret: "s" }
//!   mock http POST "${config.erp_url}/stock/widgets" => 200, {}
//!   mock http POST "${config.erp_url}/stock/gadgets" => 200, {}
//!   mock http POST "${config.erp_url}/audit" => 200, {}
//!   run stock_changed with { body: { event: "INVENTORY_UPDATE", updates: [
//!     { item: "widgets", action: "add", quantity: 20 },
//!     { item: "gadgets", action: "remove", quantity: 5 },
//!   ] } }
//!   expect http POST "${config.erp_url}/stock/gadgets" with json { delta: -5 }
//!   expect http POST "${config.erp_url}/audit" with json { count: 2 }
//!   expect status succeeded
//! }
//! ```

use std::time::Duration;

use flow_runtime::testing::{Expect, MockHttp, TestCase, TestRun, TestStmt};
use flow_runtime::{
    json, no_connections, ops, Args, Auth, Config, ConfigEntry, Ctx, FieldSchema, FlowDef,
    FlowFuture, Integration, Outcome, RunError, Schema, StepOptions, TriggerDef, Value, Verify,
};

fn main() -> std::process::ExitCode {
    flow_runtime::main(integration(), tests())
}

/// The integration description (what `main` hands to the runtime).
pub fn integration() -> Integration {
    Integration {
        name: "inventory_sync",
        doc: "Keeps the ERP's stock levels in step with the inventory app.",
        flowc_version: "0.1.0",
        source_hash: "3f2a9c1b4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8",
        config: vec![
            ConfigEntry {
                name: "erp_url",
                env: None,
                schema: Schema::Url,
                default: None,
                doc: "Base URL of the ERP's REST API.",
                secret: false,
            },
            ConfigEntry {
                name: "erp_token",
                env: None,
                schema: Schema::Secret,
                default: None,
                doc: "",
                secret: true,
            },
            ConfigEntry {
                name: "webhook_secret",
                env: None,
                schema: Schema::Secret,
                default: None,
                doc: "Shared secret of the inventory app's webhook signatures.",
                secret: true,
            },
            ConfigEntry {
                name: "public_url",
                env: None,
                schema: Schema::Url,
                default: Some(json!("http://localhost:8080")),
                doc: "",
                secret: false,
            },
        ],
        types: vec![
            (
                "Update",
                Schema::Record(vec![
                    FieldSchema::renamed("item", "Item-Name", Schema::String),
                    FieldSchema::new("action", Schema::Literals(vec!["add", "remove"])),
                    FieldSchema::new("quantity", Schema::Int),
                    FieldSchema::new("note", Schema::optional(Schema::String)),
                ]),
            ),
            (
                "InventoryEvent",
                Schema::Record(vec![
                    FieldSchema::new("event", Schema::Literals(vec!["INVENTORY_UPDATE"])),
                    FieldSchema::new("updates", Schema::list(Schema::Ref("Update"))),
                ]),
            ),
        ],
        flows,
        connections: no_connections,
        graph: "",
    }
}

/// The `test` blocks as data (`BINARY test` runs them). Expressions are
/// functions of the test's config; the trigger body is given in wire names.
pub fn tests() -> Vec<TestCase> {
    vec![TestCase {
        name: "an add and a remove make two ERP calls and an audit",
        config: |_cx| {
            Ok(vec![
                ("erp_url", json!("http://erp.test")),
                ("erp_token", json!("t")),
                ("webhook_secret", json!("s")),
            ])
        },
        stmts: |cx| {
            let erp = |path: &str| {
                Value::String(ops::interp(&[
                    ops::field(cx.config(), "erp_url"),
                    json!(path),
                ]))
            };
            let ok = |path: &str| {
                TestStmt::Mock(MockHttp {
                    method: "POST",
                    url: erp(path),
                    status: json!(200),
                    body: json!({}),
                })
            };
            Ok(vec![
                ok("/stock/widgets"),
                ok("/stock/gadgets"),
                ok("/audit"),
                TestStmt::Run(TestRun {
                    flow: "stock_changed",
                    input: json!({ "body": { "event": "INVENTORY_UPDATE", "updates": [
                        { "Item-Name": "widgets", "action": "add", "quantity": 20 },
                        { "Item-Name": "gadgets", "action": "remove", "quantity": 5 },
                    ] } }),
                }),
                TestStmt::Expect(Expect::Http {
                    method: "POST",
                    url: erp("/stock/gadgets"),
                    json: Some(json!({ "delta": -5 })),
                    headers: None,
                }),
                TestStmt::Expect(Expect::Http {
                    method: "POST",
                    url: erp("/audit"),
                    json: Some(json!({ "count": 2 })),
                    headers: None,
                }),
                TestStmt::Expect(Expect::Status("succeeded")),
            ])
        },
        instance: None,
    }]
}

fn flows(config: &Config) -> Vec<FlowDef> {
    vec![
        FlowDef {
            name: "stock_changed",
            doc: "One webhook call carries several updates; each becomes one ERP call.",
            trigger: TriggerDef::Webhook {
                method: "POST",
                path: "/inventory",
                body: Schema::Ref("InventoryEvent"),
                verify: Some(Verify::Hmac {
                    header: "X-Signature",
                    secrets: vec![config.str("webhook_secret")],
                }),
                auth: None,
                dedupe: Some(stock_changed_dedupe),
                max_body: flow_runtime::DEFAULT_MAX_BODY,
            },
            run: stock_changed,
            on_failure: Some(stock_changed_on_failure),
        },
        FlowDef {
            name: "audit",
            doc: "Records how many updates a delivery carried.",
            trigger: TriggerDef::Dispatch {
                input: Schema::Record(vec![FieldSchema::new("count", Schema::Int)]),
            },
            run: audit,
            on_failure: None,
        },
        FlowDef {
            name: "get_stock",
            doc: "Current stock level of one item, straight from the ERP.",
            trigger: TriggerDef::Sync {
                method: "GET",
                path: "/stock/{item}",
                body: Schema::Json,
                timeout: Duration::from_millis(5_000),
                fallback_async: false,
                reads_headers: false,
                verify: None,
                auth: Some(Auth::Public),
            },
            run: get_stock,
            on_failure: None,
        },
        FlowDef {
            name: "heartbeat",
            doc: "Tells the ERP we are alive, and remembers when.",
            trigger: TriggerDef::Every {
                period: Duration::from_millis(300),
                catch_up: true,
            },
            run: heartbeat,
            on_failure: None,
        },
        FlowDef {
            name: "register",
            doc: "Registers our webhook with the inventory app on each new version.",
            trigger: TriggerDef::Deploy,
            run: register,
            on_failure: None,
        },
    ]
}

/// `dedupe: header("X-Delivery-Id")` (header names are lowercased).
fn stock_changed_dedupe(trigger: &Value) -> Option<String> {
    ops::field(&ops::field(trigger, "headers"), "x-delivery-id")
        .as_str()
        .map(str::to_string)
}

fn stock_changed(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let config = cx.config().clone();
        let trigger = cx.trigger().clone();
        // for update in trigger.body.updates { ... }
        let items = ops::iter(&ops::field(&ops::field(&trigger, "body"), "updates"))?;
        for (i0, update) in items.into_iter().enumerate() {
            let cx = cx.with_index(i0);
            // let delta = match update.action { ... }
            let delta = {
                let scrutinee = ops::field(&update, "action");
                if ops::equal(&scrutinee, &json!("add")) {
                    ops::field(&update, "quantity")
                } else if ops::equal(&scrutinee, &json!("remove")) {
                    ops::neg(&ops::field(&update, "quantity"))?
                } else {
                    return Err(RunError::new("no match arm for update.action"));
                }
            };
            // step adjust = http.post(...) retry 2 backoff 100ms..1s
            let _adjust = cx
                .step(
                    "adjust",
                    StepOptions {
                        retry: 2,
                        backoff_min: Duration::from_millis(100),
                        backoff_max: Duration::from_millis(1_000),
                        timeout: None,
                    },
                    "http.post",
                    Args::new()
                        .arg(Value::String(ops::interp(&[
                            ops::field(&config, "erp_url"),
                            json!("/stock/"),
                            ops::field(&update, "item"),
                        ])))
                        .kw("json", ops::record([("delta", delta)]))
                        .kw("bearer", ops::field(&config, "erp_token")),
                )
                .await?;
        }
        // dispatch audit({ count: trigger.body.updates.len() })
        cx.dispatch(
            "audit",
            ops::record([(
                "count",
                ops::len(&ops::field(&ops::field(&trigger, "body"), "updates"))?,
            )]),
        )
        .await?;
        Ok(Outcome::Succeeded)
    })
}

fn stock_changed_on_failure(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let config = cx.config().clone();
        let error = cx.error().clone();
        cx.step(
            "alert",
            StepOptions::default(),
            "http.post",
            Args::new()
                .arg(Value::String(ops::interp(&[
                    ops::field(&config, "erp_url"),
                    json!("/alerts"),
                ])))
                .kw(
                    "json",
                    ops::record([
                        ("message", ops::field(&error, "message")),
                        ("step", ops::field(&error, "step")),
                    ]),
                ),
        )
        .await?;
        Ok(Outcome::Succeeded)
    })
}

fn audit(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let config = cx.config().clone();
        let trigger = cx.trigger().clone();
        let count = ops::field(&ops::field(&trigger, "input"), "count");
        if ops::truthy(&ops::eq(&count, &json!(0))?) {
            return Ok(Outcome::Skipped("empty delivery".into()));
        }
        cx.step(
            "log",
            StepOptions::default(),
            "http.post",
            Args::new()
                .arg(Value::String(ops::interp(&[
                    ops::field(&config, "erp_url"),
                    json!("/audit"),
                ])))
                .kw("json", ops::record([("count", count)])),
        )
        .await?;
        Ok(Outcome::Succeeded)
    })
}

fn get_stock(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let config = cx.config().clone();
        let trigger = cx.trigger().clone();
        let item = ops::field(&ops::field(&trigger, "params"), "item");
        let level = cx
            .step(
                "level",
                StepOptions::default(),
                "http.get",
                Args::new()
                    .arg(Value::String(ops::interp(&[
                        ops::field(&config, "erp_url"),
                        json!("/stock/"),
                        item.clone(),
                    ])))
                    .kw("bearer", ops::field(&config, "erp_token"))
                    .decode_as(Schema::Record(vec![FieldSchema::new("level", Schema::Int)])),
            )
            .await?;
        Ok(Outcome::Respond {
            status: 200,
            body: ops::record([
                ("item", item),
                ("level", ops::field(&ops::field(&level, "body"), "level")),
            ]),
            headers: vec![("Cache-Control".to_string(), json!("no-store"))],
        })
    })
}

fn heartbeat(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let config = cx.config().clone();
        let trigger = cx.trigger().clone();
        cx.step(
            "ping",
            StepOptions::default(),
            "http.post",
            Args::new()
                .arg(Value::String(ops::interp(&[
                    ops::field(&config, "erp_url"),
                    json!("/heartbeat"),
                ])))
                .kw(
                    "json",
                    ops::record([("at", ops::field(&trigger, "fired_at"))]),
                ),
        )
        .await?;
        cx.step(
            "remember",
            StepOptions::default(),
            "state.set",
            Args::new()
                .arg(json!("last_heartbeat"))
                .arg(ops::field(&trigger, "fired_at")),
        )
        .await?;
        Ok(Outcome::Succeeded)
    })
}

fn register(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let config = cx.config().clone();
        let trigger = cx.trigger().clone();
        cx.step(
            "hook",
            StepOptions::default(),
            "http.post",
            Args::new()
                .arg(Value::String(ops::interp(&[
                    ops::field(&config, "erp_url"),
                    json!("/webhooks"),
                ])))
                .kw(
                    "json",
                    ops::record([
                        (
                            "url",
                            ops::field(&ops::field(&trigger, "endpoints"), "stock_changed"),
                        ),
                        ("version", ops::field(&trigger, "version")),
                    ]),
                ),
        )
        .await?;
        Ok(Outcome::Succeeded)
    })
}
