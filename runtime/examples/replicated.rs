//! A hand-written "generated" program run as several replicas on one
//! PostgreSQL database by `tests/replicas.rs` (exactly once across
//! replicas, take-over after SIGKILL, fencing after SIGSTOP, schedule ticks
//! once) and by `benches/replicas.sh`. What `flowc build` should emit for:
//!
//! ```flow
//! /// Jobs and ticks, each reported to a sink with the replica that ran it.
//! integration replicated
//!
//! config {
//!   /// Base URL of the receiving service.
//!   sink_url: Url
//!   /// This replica's name (reported with every call).
//!   replica: String = "r"
//! }
//!
//! /// A job: one call that does the work, one that reports it done.
//! flow job_received {
//!   trigger webhook POST "/jobs" {
//!     body: Json
//!     dedupe: header("X-Job-Id")
//!   }
//!   step work = http.post("${config.sink_url}/work/${trigger.body.id}",
//!     json: { id: trigger.body.id, replica: config.replica },
//!   ) retry 3 backoff 50ms..200ms
//!   step done = http.post("${config.sink_url}/done/${trigger.body.id}",
//!     json: { id: trigger.body.id, replica: config.replica },
//!   ) retry 3 backoff 50ms..200ms
//! }
//!
//! /// Reports each tick.
//! flow tick {
//!   trigger schedule every 2s
//!   step ping = http.post("${config.sink_url}/tick",
//!     json: { fired_at: trigger.fired_at, replica: config.replica })
//! }
//! ```

use std::time::Duration;

use flow_runtime::{
    json, no_connections, ops, Args, Config, ConfigEntry, Ctx, FlowDef, FlowFuture, Integration,
    Outcome, Schema, StepOptions, TriggerDef, Value,
};

fn main() -> std::process::ExitCode {
    flow_runtime::main(integration(), Vec::new())
}

/// The integration description.
pub fn integration() -> Integration {
    Integration {
        name: "replicated",
        doc: "Jobs and ticks, each reported to a sink with the replica that ran it.",
        flowc_version: "0.1.0",
        source_hash: "5e1a9c0d3b7f2e4a6c8d0b1f3e5a7c9d1b3f5e7a9c1d3b5f7e9a1c3d5b7f9e1a",
        config: vec![
            ConfigEntry {
                name: "sink_url",
                env: None,
                schema: Schema::Url,
                default: None,
                doc: "Base URL of the receiving service.",
                secret: false,
            },
            ConfigEntry {
                name: "replica",
                env: None,
                schema: Schema::String,
                default: Some(json!("r")),
                doc: "This replica's name (reported with every call).",
                secret: false,
            },
        ],
        types: Vec::new(),
        flows,
        connections: no_connections,
        graph: "",
    }
}

fn flows(_config: &Config) -> Vec<FlowDef> {
    vec![
        FlowDef {
            name: "job_received",
            doc: "A job: one call that does the work, one that reports it done.",
            trigger: TriggerDef::Webhook {
                method: "POST",
                path: "/jobs",
                body: Schema::Json,
                verify: None,
                auth: None,
                dedupe: Some(job_received_dedupe),
                max_body: flow_runtime::DEFAULT_MAX_BODY,
            },
            run: job_received,
            on_failure: None,
        },
        FlowDef {
            name: "tick",
            doc: "Reports each tick.",
            trigger: TriggerDef::Every {
                period: Duration::from_secs(2),
                catch_up: true,
            },
            run: tick,
            on_failure: None,
        },
    ]
}

/// `dedupe: header("X-Job-Id")`.
fn job_received_dedupe(trigger: &Value) -> Option<String> {
    ops::field(&ops::field(trigger, "headers"), "x-job-id")
        .as_str()
        .map(str::to_string)
}

fn job_options() -> StepOptions {
    StepOptions {
        retry: 3,
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        timeout: None,
    }
}

fn job_received(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let config = cx.config().clone();
        let trigger = cx.trigger().clone();
        let id = ops::field(&ops::field(&trigger, "body"), "id");
        for (name, path) in [("work", "/work/"), ("done", "/done/")] {
            cx.step(
                name,
                job_options(),
                "http.post",
                Args::new()
                    .arg(Value::String(ops::interp(&[
                        ops::field(&config, "sink_url"),
                        json!(path),
                        id.clone(),
                    ])))
                    .kw(
                        "json",
                        ops::record([
                            ("id", id.clone()),
                            ("replica", ops::field(&config, "replica")),
                        ]),
                    ),
            )
            .await?;
        }
        Ok(Outcome::Succeeded)
    })
}

fn tick(cx: Ctx) -> FlowFuture {
    Box::pin(async move {
        let config = cx.config().clone();
        let trigger = cx.trigger().clone();
        cx.step(
            "ping",
            StepOptions::default(),
            "http.post",
            Args::new()
                .arg(Value::String(ops::interp(&[
                    ops::field(&config, "sink_url"),
                    json!("/tick"),
                ])))
                .kw(
                    "json",
                    ops::record([
                        ("fired_at", ops::field(&trigger, "fired_at")),
                        ("replica", ops::field(&config, "replica")),
                    ]),
                ),
        )
        .await?;
        Ok(Outcome::Succeeded)
    })
}
