//! Shared helpers for the runtime's integration tests that need the
//! runtime: its options for tests and bounded waits on its executions.
//! The sink, HTTP helpers and service URLs come from `flow_testkit`.
#![allow(dead_code)]

pub mod aws;

use std::future::Future;
use std::time::Duration;

use flow_runtime::{
    no_connections, Config, ConfigEntry, DedupeFn, FlowDef, FlowFn, Integration, Runtime,
    RuntimeOptions, Schema, Status, TriggerDef,
};

/// A hand-written integration named `name` with these flows, no config
/// and no types (`Integration { config, ..integration(..) }` for more).
pub fn integration(name: &'static str, flows: fn(&Config) -> Vec<FlowDef>) -> Integration {
    Integration {
        name,
        doc: "",
        flowc_version: "0.1.0",
        source_hash: "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        config: vec![],
        types: vec![],
        flows,
        connections: no_connections,
        graph: "",
    }
}

/// A flow without docs or failure handler.
pub fn flow(name: &'static str, trigger: TriggerDef, run: FlowFn) -> FlowDef {
    FlowDef {
        name,
        doc: "",
        trigger,
        run,
        on_failure: None,
    }
}

/// A flow started by dispatch only (tests start it with an input), taking
/// any JSON input.
pub fn dispatched(name: &'static str, run: FlowFn) -> FlowDef {
    flow(
        name,
        TriggerDef::Dispatch {
            input: Schema::Json,
        },
        run,
    )
}

/// A `POST` webhook at `path` taking any JSON body of up to 1 KiB, without
/// caller checks, deduplicated by `dedupe` when given.
pub fn json_webhook(path: &'static str, dedupe: Option<DedupeFn>) -> TriggerDef {
    TriggerDef::Webhook {
        method: "POST",
        path,
        body: Schema::Json,
        verify: None,
        auth: None,
        dedupe,
        max_body: 1024,
    }
}

/// A `POST` sync endpoint at `path` taking any JSON body, answering within
/// 10 s.
pub fn json_sync(path: &'static str) -> TriggerDef {
    TriggerDef::Sync {
        method: "POST",
        path,
        body: Schema::Json,
        timeout: Duration::from_secs(10),
        fallback_async: false,
        reads_headers: false,
        verify: None,
        auth: None,
    }
}

/// Step options without retries: a failure shows at once.
pub fn no_retry() -> flow_runtime::StepOptions {
    flow_runtime::StepOptions {
        retry: 0,
        ..flow_runtime::StepOptions::default()
    }
}

/// How long any wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(15);

/// Options for tests: given env vars only, a memory store, 2 workers, the
/// binary's steps.
pub fn options(env: &[(&str, &str)]) -> RuntimeOptions {
    RuntimeOptions {
        env: flow_runtime::EnvSource::from_pairs(env.iter().copied()),
        steps: flow_runtime::host::step_registry(),
        workers: 2,
        drain_timeout: Duration::from_secs(5),
        ..RuntimeOptions::default()
    }
}

/// Serves `rt` on a free loopback port, with the admin API behind `admin_token`.
pub async fn serve(rt: &Runtime, admin_token: Option<&str>) -> flow_runtime::ServerHandle {
    let mut options = flow_runtime::host::ServeOptions::new("127.0.0.1:0".parse().unwrap());
    options.admin_token = admin_token.map(str::to_string);
    flow_runtime::host::serve(rt, options).await.unwrap()
}

/// Waits (bounded) for an execution to end.
pub async fn finished(rt: &Runtime, id: &str) -> flow_runtime::store::Execution {
    match tokio::time::timeout(WAIT, rt.wait_for(id)).await {
        Ok(Some(e)) => e,
        Ok(None) => panic!("execution {id} is unknown"),
        Err(_) => panic!("execution {id} did not finish in time"),
    }
}

/// Waits (bounded) for an execution to reach `status`.
pub async fn expect_status(
    rt: &Runtime,
    id: &str,
    status: Status,
) -> flow_runtime::store::Execution {
    let e = finished(rt, id).await;
    assert_eq!(e.status, status, "execution {id}: {e:#?}");
    e
}

/// Bounded await of any future.
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A config entry without default or doc, read from its usual environment
/// variable; secret when its schema is `Secret`.
pub fn config_entry(name: &'static str, schema: Schema) -> ConfigEntry {
    let secret = matches!(schema, Schema::Secret);
    ConfigEntry {
        name,
        env: None,
        schema,
        default: None,
        doc: "",
        secret,
    }
}
