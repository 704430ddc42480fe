//! The [`Store`] contract, written once as functions over `&dyn Store` and
//! run against every backend (the `backends!` macro at the end makes one
//! test per case and backend). A new backend adds one module there.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use flow_runtime::store::{abandoned_message, PostgresOptions, PostgresStore, MAX_TAKEOVERS};
use flow_runtime::store::{CallbackOutcome, CallbackState, ConnectionTokens, NewCallback};
use flow_runtime::store::{
    Durability, Enqueued, Execution, ExecutionFilter, Finish, Lease, NewExecution, SqliteOptions,
    SqliteStore, Status, StepRecord, StepStatus, Store, StoreError,
};
use serde_json::json;

mod common;
mod pg_support;

const LONG: Duration = Duration::from_secs(60);

fn new(id: &str, flow: &str, key: Option<&str>) -> NewExecution {
    let mut n = NewExecution::queued(id, flow, json!({ "body": { "id": id } }));
    n.dedupe_key = key.map(Into::into);
    n
}

fn finish(status: Status) -> Finish {
    Finish {
        status,
        result: None,
        error: None,
        error_step: None,
    }
}

fn step(key: &str, status: StepStatus, output: Option<serde_json::Value>) -> StepRecord {
    let now = Utc::now();
    StepRecord {
        key: key.into(),
        call: "http.post".into(),
        status,
        attempts: 1,
        started_at: now,
        finished_at: now,
        input: Some(json!({ "args": [format!("https://erp.test/{key}")] })),
        output,
        error: None,
    }
}

/// The lease of a claimed execution.
fn lease(e: &Execution) -> Lease {
    e.lease().expect("a claimed execution has a lease")
}

/// Claims until `want` comes back (leases expire by the clock), bounded.
async fn claim_until(s: &dyn Store, worker: &str, want: &str) -> flow_runtime::store::Execution {
    claim_for_until(s, worker, LONG, want).await
}

/// [`claim_until`] with a lease of `lease`.
async fn claim_for_until(
    s: &dyn Store,
    worker: &str,
    lease: Duration,
    want: &str,
) -> flow_runtime::store::Execution {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(e) = s.claim(worker, lease).await.unwrap() {
            assert_eq!(e.id, want, "claimed another execution");
            return e;
        }
        assert!(Instant::now() < deadline, "{want} was never claimable");
        tokio::task::yield_now().await;
    }
}

async fn enqueue_claim_finish(s: &dyn Store) {
    assert!(s.claim("w1", LONG).await.unwrap().is_none(), "empty queue");
    assert_eq!(
        s.enqueue(new("a", "f", None)).await.unwrap(),
        Enqueued::Created
    );
    assert_eq!(
        s.enqueue(new("b", "f", None)).await.unwrap(),
        Enqueued::Created
    );
    let queued = s.get("a").await.unwrap().unwrap();
    assert_eq!(
        (queued.status, queued.attempts, queued.flow.as_str()),
        (Status::Queued, 0, "f")
    );
    assert_eq!(queued.trigger, json!({ "body": { "id": "a" } }));
    assert!(queued.started_at.is_none() && queued.finished_at.is_none());

    // Oldest first.
    let a = s.claim("w1", LONG).await.unwrap().unwrap();
    assert_eq!(
        (a.id.as_str(), a.status, a.attempts),
        ("a", Status::Running, 1)
    );
    assert_eq!(a.lease_owner.as_deref(), Some("w1"));
    assert!(a.lease_expires.is_some_and(|t| t > Utc::now()));
    let b = s.claim("w2", LONG).await.unwrap().unwrap();
    assert_eq!(b.id, "b");
    assert!(s.claim("w3", LONG).await.unwrap().is_none(), "both leased");

    s.finish(
        "a",
        &lease(&a),
        Finish {
            status: Status::Failed,
            result: Some(json!({ "partial": [1, 2] })),
            error: Some("boom".into()),
            error_step: Some("send[1]".into()),
        },
    )
    .await
    .unwrap();
    let a = s.get("a").await.unwrap().unwrap();
    assert_eq!(a.status, Status::Failed);
    assert_eq!(a.result, Some(json!({ "partial": [1, 2] })));
    assert_eq!(a.error.as_deref(), Some("boom"));
    assert_eq!(a.error_step.as_deref(), Some("send[1]"));
    assert!(a.finished_at.is_some() && a.lease_owner.is_none());
    s.finish("b", &lease(&b), finish(Status::Skipped))
        .await
        .unwrap();
    assert_eq!(s.get("b").await.unwrap().unwrap().status, Status::Skipped);
    assert!(s.get("nope").await.unwrap().is_none());
}

async fn dedupe_keys_are_per_flow(s: &dyn Store) {
    assert_eq!(
        s.enqueue(new("a", "f", Some("k"))).await.unwrap(),
        Enqueued::Created
    );
    assert_eq!(
        s.enqueue(new("b", "f", Some("k"))).await.unwrap(),
        Enqueued::Duplicate("a".into())
    );
    assert!(
        s.get("b").await.unwrap().is_none(),
        "a duplicate stores nothing"
    );
    assert_eq!(
        s.enqueue(new("c", "g", Some("k"))).await.unwrap(),
        Enqueued::Created
    );
    assert_eq!(
        s.get("a").await.unwrap().unwrap().dedupe_key.as_deref(),
        Some("k")
    );
    // Still a duplicate after the first one finished.
    let a = s.claim("w", LONG).await.unwrap().unwrap();
    s.finish(&a.id, &lease(&a), finish(Status::Succeeded))
        .await
        .unwrap();
    assert_eq!(
        s.enqueue(new("d", "f", Some("k"))).await.unwrap(),
        Enqueued::Duplicate("a".into())
    );
}

async fn concurrent_intake_is_committed_once_each(s: &dyn Store) {
    // Many callers at once (what group commit batches): every distinct
    // execution is stored, and of those racing on one key exactly one wins.
    let mut calls = Vec::new();
    for i in 0..200 {
        let key = if i % 2 == 0 {
            Some("same".to_string())
        } else {
            None
        };
        let mut n = NewExecution::queued(format!("e{i}"), "f", json!({ "i": i }));
        n.dedupe_key = key;
        calls.push(s.enqueue(n));
    }
    let results = futures::future::join_all(calls).await;
    let created = results
        .iter()
        .filter(|r| matches!(r, Ok(Enqueued::Created)))
        .count();
    assert_eq!(created, 101, "{results:?}");
    let all = s
        .list(ExecutionFilter {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 101);
    let winner = all
        .iter()
        .find(|e| e.dedupe_key.is_some())
        .unwrap()
        .id
        .clone();
    for r in results {
        match r.unwrap() {
            Enqueued::Created => {}
            Enqueued::Duplicate(first) => assert_eq!(first, winner),
        }
    }
}

async fn inline_runs_are_stored_running(s: &dyn Store) {
    let mut n = new("s", "sync", None);
    n.running = Some(("inline-s".into(), LONG));
    assert_eq!(s.enqueue(n).await.unwrap(), Enqueued::Created);
    let e = s.get("s").await.unwrap().unwrap();
    assert_eq!((e.status, e.attempts), (Status::Running, 1));
    assert_eq!(e.lease_owner.as_deref(), Some("inline-s"));
    assert!(e.started_at.is_some());
    assert!(s.claim("w", LONG).await.unwrap().is_none(), "not queued");
    assert_eq!(e.lease(), Some(Lease::first("inline-s")));
    assert!(s.renew("s", &Lease::first("inline-s"), LONG).await.unwrap());
    s.record_step(
        "s",
        &Lease::first("inline-s"),
        step("x", StepStatus::Succeeded, None),
    )
    .await
    .unwrap();
    s.finish("s", &Lease::first("inline-s"), finish(Status::Succeeded))
        .await
        .unwrap();
}

async fn expired_leases_are_taken_over(s: &dyn Store) {
    s.enqueue(new("a", "f", None)).await.unwrap();
    let a = s
        .claim("w1", Duration::from_millis(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.attempts, 1);
    let stale = Lease {
        worker: "w2".into(),
        epoch: lease(&a).epoch + 1,
    };
    assert!(
        !s.renew("a", &stale, LONG).await.unwrap(),
        "w2 holds no lease"
    );
    // The lease runs out; another worker takes the run over.
    let taken = claim_until(s, "w2", "a").await;
    assert_eq!(
        (taken.attempts, taken.lease_owner.as_deref()),
        (2, Some("w2"))
    );
    assert!(!s.renew("a", &lease(&a), LONG).await.unwrap(), "w1 lost it");
    assert!(s.renew("a", &lease(&taken), LONG).await.unwrap());
    assert!(s.claim("w3", LONG).await.unwrap().is_none(), "renewed");
}

async fn runs_taken_over_too_often_are_given_up(s: &dyn Store) {
    let short = Duration::from_millis(1);
    s.enqueue(new("a", "f", None)).await.unwrap();
    assert_eq!(s.claim("w0", short).await.unwrap().unwrap().attempts, 1);
    for i in 1..=MAX_TAKEOVERS {
        let e = claim_for_until(s, &format!("w{i}"), short, "a").await;
        assert_eq!(e.attempts, i + 1);
    }
    // Its lease expires once more: the store gives up on it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let a = loop {
        assert!(s.claim("w", LONG).await.unwrap().is_none());
        let a = s.get("a").await.unwrap().unwrap();
        if a.status != Status::Running {
            break a;
        }
        assert!(Instant::now() < deadline, "never given up: {a:?}");
        tokio::task::yield_now().await;
    };
    assert_eq!(a.status, Status::Failed);
    assert_eq!(a.error, Some(abandoned_message()));
    assert!(a.lease().is_none() && a.finished_at.is_some());
    // A replay starts the count again.
    s.requeue("a").await.unwrap().unwrap();
    assert_eq!(
        s.claim("w", short).await.unwrap().unwrap().attempts,
        MAX_TAKEOVERS + 2
    );
    let again = claim_for_until(s, "w", LONG, "a").await;
    assert_eq!(again.status, Status::Running);
}

async fn restarts_count_as_take_overs(s: &dyn Store) {
    s.enqueue(new("a", "f", None)).await.unwrap();
    s.claim("w", LONG).await.unwrap().unwrap();
    for _ in 0..MAX_TAKEOVERS {
        assert_eq!(s.requeue_interrupted().await.unwrap(), 1);
        s.claim("w", LONG).await.unwrap().unwrap();
    }
    assert_eq!(s.requeue_interrupted().await.unwrap(), 0);
    let a = s.get("a").await.unwrap().unwrap();
    assert_eq!(
        (a.status, a.error),
        (Status::Failed, Some(abandoned_message()))
    );
}

async fn stale_leases_are_fenced(s: &dyn Store) {
    s.enqueue(new("a", "f", None)).await.unwrap();
    let first = s
        .claim("w1", Duration::from_millis(1))
        .await
        .unwrap()
        .unwrap();
    let l1 = lease(&first);
    assert_eq!(l1.worker, "w1");
    // Expired but not yet taken over: the holder may still write.
    s.record_step(
        "a",
        &l1,
        step("send[0]", StepStatus::Succeeded, Some(json!(0))),
    )
    .await
    .unwrap();
    let taken = claim_until(s, "w2", "a").await;
    let l2 = lease(&taken);
    assert!(l2.epoch > l1.epoch, "{l2:?} after {l1:?}");
    // The first holder (paused past its lease) is fenced off: nothing it
    // writes lands.
    let refused = s
        .record_step(
            "a",
            &l1,
            step("send[1]", StepStatus::Succeeded, Some(json!(1))),
        )
        .await;
    assert_eq!(refused, Err(StoreError::LeaseLost("a".into())));
    let refused = s.finish("a", &l1, finish(Status::Succeeded)).await;
    assert!(
        refused.as_ref().is_err_and(StoreError::is_lease_lost),
        "{refused:?}"
    );
    assert!(!s.renew("a", &l1, LONG).await.unwrap());
    assert!(!s.release("a", &l1).await.unwrap());
    let e = s.get("a").await.unwrap().unwrap();
    assert_eq!(
        (e.status, e.lease_owner.as_deref()),
        (Status::Running, Some("w2"))
    );
    let keys: Vec<String> = s
        .journal("a")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(keys, ["send[0]"]);
    // The epoch decides, not the worker's name: w2 claiming again (after a
    // release) fences its own older lease.
    assert!(s.release("a", &l2).await.unwrap());
    let again = s.claim("w2", LONG).await.unwrap().unwrap();
    let l3 = lease(&again);
    assert!(l3.epoch > l2.epoch);
    assert!(s
        .record_step("a", &l2, step("send[1]", StepStatus::Succeeded, None))
        .await
        .is_err_and(|e| e.is_lease_lost()));
    s.record_step(
        "a",
        &l3,
        step("send[1]", StepStatus::Succeeded, Some(json!(1))),
    )
    .await
    .unwrap();
    s.finish("a", &l3, finish(Status::Succeeded)).await.unwrap();
    assert_eq!(s.get("a").await.unwrap().unwrap().status, Status::Succeeded);
    // A finished run takes no more writes, even from its last holder.
    assert!(s
        .record_step("a", &l3, step("send[2]", StepStatus::Succeeded, None))
        .await
        .is_err_and(|e| e.is_lease_lost()));
    assert!(s
        .finish("a", &l3, finish(Status::Failed))
        .await
        .is_err_and(|e| e.is_lease_lost()));
    assert_eq!(s.get("a").await.unwrap().unwrap().status, Status::Succeeded);
    assert_eq!(s.journal("a").await.unwrap().len(), 2);
}

async fn batch_claims_and_heartbeats(s: &dyn Store) {
    for id in ["a", "b", "c", "d", "e"] {
        s.enqueue(new(id, "f", None)).await.unwrap();
    }
    s.state_set("cursor", json!(9)).await.unwrap();
    assert!(s.claim_batch("w", 0, LONG).await.unwrap().is_empty());
    let first = s.claim_batch("w", 3, LONG).await.unwrap();
    let ids: Vec<&str> = first.iter().map(|(e, _)| e.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"], "oldest first");
    for (e, state) in &first {
        assert_eq!((e.status, e.attempts), (Status::Running, 1));
        assert_eq!(state.get("cursor"), Some(&json!(9)));
    }
    let rest = s.claim_batch("w", 10, LONG).await.unwrap();
    let ids: Vec<&str> = rest.iter().map(|(e, _)| e.id.as_str()).collect();
    assert_eq!(ids, ["d", "e"]);
    assert!(s.claim_batch("w", 10, LONG).await.unwrap().is_empty());

    // One heartbeat for every held lease; a lease lost meanwhile is named.
    let mut held: Vec<(String, Lease)> = first
        .iter()
        .chain(rest.iter())
        .map(|(e, _)| (e.id.clone(), lease(e)))
        .collect();
    assert!(s.renew_all(&held, LONG).await.unwrap().is_empty());
    let (c_id, c_lease) = held[2].clone();
    s.finish(&c_id, &c_lease, finish(Status::Succeeded))
        .await
        .unwrap();
    held.push((
        "nope".into(),
        Lease {
            worker: "w".into(),
            epoch: 1,
        },
    ));
    let mut lost = s.renew_all(&held, LONG).await.unwrap();
    lost.sort();
    assert_eq!(lost, ["c", "nope"]);
    assert!(s.renew_all(&[], LONG).await.unwrap().is_empty());
}

async fn concurrent_claims_never_share_a_run(s: &dyn Store) {
    for i in 0..40 {
        s.enqueue(new(&format!("e{i:02}"), "f", None))
            .await
            .unwrap();
    }
    // Ten claimers at once, singly and in batches: each run goes to one.
    let claimers = (0..10).map(|w| async move {
        let worker = format!("w{w}");
        let mut got = Vec::new();
        loop {
            let batch = if w % 2 == 0 {
                s.claim(&worker, LONG).await.unwrap().into_iter().collect()
            } else {
                s.claim_batch(&worker, 3, LONG)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|(e, _)| e)
                    .collect::<Vec<_>>()
            };
            if batch.is_empty() {
                return got;
            }
            got.extend(batch.into_iter().map(|e| e.id));
        }
    });
    let mut all: Vec<String> = futures::future::join_all(claimers)
        .await
        .into_iter()
        .flatten()
        .collect();
    all.sort();
    let expected: Vec<String> = (0..40).map(|i| format!("e{i:02}")).collect();
    assert_eq!(all, expected);
}

async fn release_requeues_with_the_journal(s: &dyn Store) {
    s.enqueue(new("a", "f", None)).await.unwrap();
    let a = s.claim("w1", LONG).await.unwrap().unwrap();
    s.record_step(
        "a",
        &lease(&a),
        step("send[0]", StepStatus::Succeeded, Some(json!(1))),
    )
    .await
    .unwrap();
    let other = Lease {
        worker: "w2".into(),
        epoch: lease(&a).epoch + 1,
    };
    assert!(!s.release("a", &other).await.unwrap(), "not w2's");
    assert!(s.release("a", &lease(&a)).await.unwrap());
    let e = s.get("a").await.unwrap().unwrap();
    assert_eq!(e.status, Status::Queued);
    assert!(e.lease_owner.is_none());
    assert!(
        !s.release("a", &lease(&a)).await.unwrap(),
        "no longer running"
    );
    let again = s.claim("w2", LONG).await.unwrap().unwrap();
    assert_eq!((again.id.as_str(), again.attempts), ("a", 2));
    assert_eq!(s.journal("a").await.unwrap().len(), 1);
}

async fn interrupted_runs_are_requeued(s: &dyn Store) {
    for id in ["a", "b", "c"] {
        s.enqueue(new(id, "f", None)).await.unwrap();
    }
    s.claim("dead-1", LONG).await.unwrap().unwrap();
    s.claim("dead-2", LONG).await.unwrap().unwrap();
    let mut inline = new("s", "sync", None);
    inline.running = Some(("inline-s".into(), LONG));
    s.enqueue(inline).await.unwrap();
    assert_eq!(s.requeue_interrupted().await.unwrap(), 3);
    let mut order = Vec::new();
    while let Some(e) = s.claim("new", LONG).await.unwrap() {
        order.push(e.id);
    }
    assert_eq!(order, ["a", "b", "c", "s"], "in creation order");
    assert_eq!(s.requeue_interrupted().await.unwrap(), 4);
}

async fn journal_records_and_replaces(s: &dyn Store) {
    s.enqueue(new("a", "f", None)).await.unwrap();
    assert!(s.journal("a").await.unwrap().is_empty());
    let queued = s.get("a").await.unwrap().unwrap();
    assert!(queued.lease().is_none(), "a queued run has no lease");
    let l = lease(&s.claim("w", LONG).await.unwrap().unwrap());
    s.record_step(
        "a",
        &l,
        step(
            "send[0]",
            StepStatus::Succeeded,
            Some(json!({ "status": 200 })),
        ),
    )
    .await
    .unwrap();
    let mut failed = step("send[1]", StepStatus::Failed, None);
    failed.attempts = 3;
    failed.error = Some("HTTP 503".into());
    failed.input = Some(json!({ "args": ["first try"], "json": { "n": 1 } }));
    s.record_step("a", &l, failed).await.unwrap();
    s.record_step(
        "a",
        &l,
        step("send[1][0]", StepStatus::Succeeded, Some(json!(null))),
    )
    .await
    .unwrap();
    // The retried step replaces its entry and keeps its place.
    let mut ok = step("send[1]", StepStatus::Succeeded, Some(json!("done")));
    ok.attempts = 2;
    s.record_step("a", &l, ok).await.unwrap();
    let j = s.journal("a").await.unwrap();
    let keys: Vec<&str> = j.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["send[0]", "send[1]", "send[1][0]"]);
    assert_eq!(j[0].output, Some(json!({ "status": 200 })));
    // Each entry keeps its step's input; the retried one its latest.
    assert_eq!(
        j[0].input,
        Some(json!({ "args": ["https://erp.test/send[0]"] }))
    );
    assert_eq!(
        j[1].input,
        Some(json!({ "args": ["https://erp.test/send[1]"] }))
    );
    assert_eq!(
        (j[1].status, j[1].attempts, j[1].output.clone()),
        (StepStatus::Succeeded, 2, Some(json!("done")))
    );
    assert_eq!(j[1].call, "http.post");
    assert!(j[1].error.is_none());
    assert_eq!(j[2].output, Some(json!(null)));
    assert!(s.journal("other").await.unwrap().is_empty());
}

/// A run's last journal entries and its end go in together; a fenced
/// holder writes neither.
async fn steps_are_written_with_the_end(s: &dyn Store) {
    for id in ["one", "two", "none", "fenced"] {
        s.enqueue(new(id, "f", None)).await.unwrap();
    }
    let mut leases = std::collections::HashMap::new();
    for _ in 0..4 {
        let e = s.claim("w", LONG).await.unwrap().unwrap();
        leases.insert(e.id.clone(), lease(&e));
    }
    let ok = |k: &str, v: i64| step(k, StepStatus::Succeeded, Some(json!(v)));
    s.record_step("one", &leases["one"], ok("a", 0))
        .await
        .unwrap();
    s.finish_with_steps(
        "one",
        &leases["one"],
        vec![ok("b", 1)],
        finish(Status::Succeeded),
    )
    .await
    .unwrap();
    s.finish_with_steps(
        "two",
        &leases["two"],
        vec![ok("a", 0), ok("b", 1)],
        finish(Status::Succeeded),
    )
    .await
    .unwrap();
    s.finish_with_steps("none", &leases["none"], Vec::new(), finish(Status::Failed))
        .await
        .unwrap();
    for (id, keys, status) in [
        ("one", vec!["a", "b"], Status::Succeeded),
        ("two", vec!["a", "b"], Status::Succeeded),
        ("none", vec![], Status::Failed),
    ] {
        let journal = s.journal(id).await.unwrap();
        let got: Vec<&str> = journal.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(got, keys, "{id}");
        assert_eq!(
            journal.last().and_then(|r| r.output.clone()),
            keys.last().map(|_| json!(1))
        );
        let e = s.get(id).await.unwrap().unwrap();
        assert_eq!((e.status, e.lease_owner), (status, None), "{id}");
    }
    // Released and claimed again: the old lease is fenced off.
    let old = leases["fenced"].clone();
    assert!(s.release("fenced", &old).await.unwrap());
    let again = lease(&claim_until(s, "w2", "fenced").await);
    for steps in [vec![ok("a", 0)], vec![ok("a", 0), ok("b", 1)]] {
        let refused = s
            .finish_with_steps("fenced", &old, steps, finish(Status::Succeeded))
            .await;
        assert!(refused.is_err_and(|e| e.is_lease_lost()));
    }
    assert!(s.journal("fenced").await.unwrap().is_empty());
    let e = s.get("fenced").await.unwrap().unwrap();
    assert_eq!((e.status, e.lease_epoch), (Status::Running, again.epoch));
}

async fn replay_requeues_finished_runs_only(s: &dyn Store) {
    assert!(s.requeue("nope").await.unwrap().is_none());
    s.enqueue(new("a", "f", None)).await.unwrap();
    assert_eq!(
        s.requeue("a").await.unwrap().unwrap().status,
        Status::Queued,
        "a queued run is returned unchanged"
    );
    let l = lease(&s.claim("w", LONG).await.unwrap().unwrap());
    assert_eq!(
        s.requeue("a").await.unwrap().unwrap().status,
        Status::Running
    );
    s.record_step(
        "a",
        &l,
        step("send[0]", StepStatus::Succeeded, Some(json!(1))),
    )
    .await
    .unwrap();
    s.finish(
        "a",
        &l,
        Finish {
            status: Status::Failed,
            result: None,
            error: Some("boom".into()),
            error_step: Some("send[1]".into()),
        },
    )
    .await
    .unwrap();
    let again = s.requeue("a").await.unwrap().unwrap();
    assert_eq!(again.status, Status::Queued);
    assert!(again.error.is_none() && again.error_step.is_none() && again.finished_at.is_none());
    assert_eq!(s.journal("a").await.unwrap().len(), 1, "journal kept");
    let claimed = s.claim("w", LONG).await.unwrap().unwrap();
    assert_eq!(claimed.attempts, 2);
}

async fn listing_filters_newest_first(s: &dyn Store) {
    for (id, flow) in [("a", "f"), ("b", "g"), ("c", "f"), ("d", "f")] {
        s.enqueue(new(id, flow, None)).await.unwrap();
    }
    let a = s.claim("w", LONG).await.unwrap().unwrap();
    s.finish(&a.id, &lease(&a), finish(Status::Failed))
        .await
        .unwrap();
    let ids =
        |v: Vec<flow_runtime::store::Execution>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.list(ExecutionFilter::default()).await.unwrap()),
        ["d", "c", "b", "a"]
    );
    let f = ExecutionFilter {
        flow: Some("f".into()),
        ..Default::default()
    };
    assert_eq!(ids(s.list(f).await.unwrap()), ["d", "c", "a"]);
    let failed = ExecutionFilter {
        status: Some(Status::Failed),
        ..Default::default()
    };
    assert_eq!(ids(s.list(failed).await.unwrap()), ["a"]);
    let queued_f = ExecutionFilter {
        status: Some(Status::Queued),
        flow: Some("f".into()),
        limit: 1,
        ..Default::default()
    };
    assert_eq!(ids(s.list(queued_f).await.unwrap()), ["d"]);
}

/// The executions page's filters: a time range on creation, a search by
/// id or dedupe key, and the paging cursor; each combines with the others.
async fn listing_by_time_search_and_cursor(s: &dyn Store) {
    for (id, flow, key) in [
        ("a", "f", Some("order-1")),
        ("b", "g", None),
        ("c", "f", Some("order-2")),
        ("d", "g", Some("order-1")),
        ("e", "f", None),
    ] {
        s.enqueue(new(id, flow, key)).await.unwrap();
        // Creation times a microsecond apart at least (the SQL stores keep
        // microseconds), so that a range can fall between two runs.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let ids = |v: Vec<Execution>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
    let list = |filter: ExecutionFilter| async move { ids(s.list(filter).await.unwrap()) };
    let created = |id: &'static str| async move { s.get(id).await.unwrap().unwrap().created_at };
    let (b_at, d_at) = (created("b").await, created("d").await);

    let since_b = ExecutionFilter {
        since: Some(b_at),
        ..Default::default()
    };
    assert_eq!(
        list(since_b).await,
        ["e", "d", "c", "b"],
        "since is inclusive"
    );
    let until_d = ExecutionFilter {
        until: Some(d_at),
        ..Default::default()
    };
    assert_eq!(list(until_d).await, ["c", "b", "a"], "until is exclusive");
    let between_f = ExecutionFilter {
        flow: Some("f".into()),
        since: Some(b_at),
        until: Some(d_at),
        ..Default::default()
    };
    assert_eq!(list(between_f).await, ["c"]);

    let search = |q: &str| ExecutionFilter {
        search: Some(q.into()),
        ..Default::default()
    };
    assert_eq!(list(search("order-1")).await, ["d", "a"], "by dedupe key");
    assert_eq!(list(search("c")).await, ["c"], "by id");
    assert!(list(search("order")).await.is_empty(), "exact match only");
    let key_in_f = ExecutionFilter {
        flow: Some("f".into()),
        ..search("order-1")
    };
    assert_eq!(list(key_in_f).await, ["a"]);

    // Paging: two at a time, each page after the last id of the previous.
    let page = |before: Option<String>| ExecutionFilter {
        limit: 2,
        before,
        ..Default::default()
    };
    assert_eq!(list(page(None)).await, ["e", "d"]);
    assert_eq!(list(page(Some("d".into()))).await, ["c", "b"]);
    assert_eq!(list(page(Some("b".into()))).await, ["a"]);
    assert!(list(page(Some("a".into()))).await.is_empty());
    assert!(
        list(page(Some("gone".into()))).await.is_empty(),
        "an unknown cursor lists nothing"
    );
    let older_in_f = ExecutionFilter {
        flow: Some("f".into()),
        before: Some("d".into()),
        ..Default::default()
    };
    assert_eq!(list(older_in_f).await, ["c", "a"]);

    // Counts take the same filters, up to the limit.
    let count = |filter: ExecutionFilter| async move { s.count(filter).await.unwrap() };
    let in_f = ExecutionFilter {
        flow: Some("f".into()),
        ..Default::default()
    };
    assert_eq!(count(in_f.clone()).await, 3);
    assert_eq!(
        count(ExecutionFilter { limit: 2, ..in_f }).await,
        2,
        "capped"
    );
    assert_eq!(count(search("order-1")).await, 2);
    let none_failed = ExecutionFilter {
        status: Some(Status::Failed),
        ..Default::default()
    };
    assert_eq!(count(none_failed).await, 0);
}

async fn schedule_ticks_run_once(s: &dyn Store) {
    let t0 = Utc::now();
    let t1 = t0 + chrono::Duration::seconds(5);
    let tick = |id: &str, t| {
        let mut n = new(id, "cron", None);
        n.tick = Some(t);
        n
    };
    assert_eq!(s.last_tick("cron").await.unwrap(), None);
    assert_eq!(s.enqueue(tick("a", t0)).await.unwrap(), Enqueued::Created);
    assert_eq!(
        s.enqueue(tick("b", t0)).await.unwrap(),
        Enqueued::Duplicate("a".into()),
        "the same tick again"
    );
    assert_eq!(
        s.enqueue(tick("c", t0 - chrono::Duration::seconds(5)))
            .await
            .unwrap(),
        Enqueued::Duplicate("a".into()),
        "an earlier tick"
    );
    assert!(s.get("b").await.unwrap().is_none() && s.get("c").await.unwrap().is_none());
    let last = s.last_tick("cron").await.unwrap().unwrap();
    assert!(
        (last - t0).num_microseconds().unwrap().abs() < 1,
        "{last} vs {t0}"
    );
    assert_eq!(s.enqueue(tick("d", t1)).await.unwrap(), Enqueued::Created);
    assert_eq!(
        s.enqueue(tick("e", t0)).await.unwrap(),
        Enqueued::Duplicate("d".into())
    );
    // Ticks are per flow.
    let mut other = new("f", "other", None);
    other.tick = Some(t0);
    assert_eq!(s.enqueue(other).await.unwrap(), Enqueued::Created);
    assert_eq!(s.get("d").await.unwrap().unwrap().status, Status::Queued);
}

async fn state_and_deployed_version(s: &dyn Store) {
    assert!(s.state_all().await.unwrap().is_empty());
    s.state_set("cursor", json!("5")).await.unwrap();
    s.state_set("seen", json!({ "ids": [1, 2], "n": 2.5 }))
        .await
        .unwrap();
    s.state_set("cursor", json!(6)).await.unwrap();
    let state = s.state_all().await.unwrap();
    assert_eq!(state.len(), 2);
    assert_eq!(state.get("cursor"), Some(&json!(6)));
    assert_eq!(state.get("seen"), Some(&json!({ "ids": [1, 2], "n": 2.5 })));
    assert_eq!(s.deployed_version().await.unwrap(), None);
    s.set_deployed_version("0.1.0+abc").await.unwrap();
    s.set_deployed_version("0.1.0+def").await.unwrap();
    assert_eq!(
        s.deployed_version().await.unwrap().as_deref(),
        Some("0.1.0+def")
    );
}

/// A `Bytes` value as the runtime carries it: 1 MiB of data as base64.
fn binary_value() -> serde_json::Value {
    use base64::Engine as _;
    let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 31 % 251) as u8).collect();
    json!(base64::engine::general_purpose::STANDARD.encode(data))
}

/// Values holding binary data (triggers, journal outputs, results, state)
/// read back exactly as written.
async fn binary_values_read_back_unchanged(s: &dyn Store) {
    let bytes = binary_value();
    let trigger = json!({ "file": { "name": "a.pdf", "bytes": bytes }, "n": 1 });
    s.enqueue(NewExecution::queued("b", "f", trigger.clone()))
        .await
        .unwrap();
    let claimed = claim_until(s, "w", "b").await;
    assert_eq!(claimed.trigger, trigger);
    let output = json!({ "status": 200, "bytes": bytes });
    s.record_step(
        "b",
        &lease(&claimed),
        step("get", StepStatus::Succeeded, Some(output.clone())),
    )
    .await
    .unwrap();
    let result = json!([bytes, "short"]);
    s.finish(
        "b",
        &lease(&claimed),
        Finish {
            result: Some(result.clone()),
            ..finish(Status::Succeeded)
        },
    )
    .await
    .unwrap();
    let done = s.get("b").await.unwrap().unwrap();
    assert_eq!(done.trigger, trigger);
    assert_eq!(done.result, Some(result));
    assert_eq!(s.journal("b").await.unwrap()[0].output, Some(output));
    s.state_set("logo", bytes.clone()).await.unwrap();
    assert_eq!(s.state_all().await.unwrap().get("logo"), Some(&bytes));
}

/// A connection's OAuth2 tokens (LANGUAGE.md §12): saved, replaced whole,
/// counted by generation, kept per connection.
async fn connection_tokens_are_kept(s: &dyn Store) {
    assert_eq!(s.connection_tokens("crm").await.unwrap(), None);
    let expires = Utc::now() + chrono::Duration::seconds(3600);
    let generation = s
        .save_connection_tokens("crm", Some("access-1"), Some(expires), Some("refresh-1"))
        .await
        .unwrap();
    assert_eq!(generation, 1);
    let saved = s.connection_tokens("crm").await.unwrap().unwrap();
    assert_eq!(
        (
            saved.access_token.as_deref(),
            saved.refresh_token.as_deref()
        ),
        (Some("access-1"), Some("refresh-1"))
    );
    assert_eq!(saved.generation, 1);
    assert_close(saved.expires_at, expires);

    // A rotated refresh token replaces the first.
    let later = expires + chrono::Duration::seconds(1800);
    let generation = s
        .save_connection_tokens("crm", Some("access-2"), Some(later), Some("refresh-2"))
        .await
        .unwrap();
    assert_eq!(generation, 2);
    let saved = s.connection_tokens("crm").await.unwrap().unwrap();
    assert_eq!(
        (
            saved.access_token.as_deref(),
            saved.refresh_token.as_deref()
        ),
        (Some("access-2"), Some("refresh-2"))
    );
    assert_eq!(saved.generation, 2);
    assert_close(saved.expires_at, later);

    // Replaced whole: what is not given is gone.
    let generation = s
        .save_connection_tokens("crm", None, None, Some("refresh-3"))
        .await
        .unwrap();
    assert_eq!(generation, 3);
    assert_eq!(
        s.connection_tokens("crm").await.unwrap(),
        Some(ConnectionTokens {
            access_token: None,
            expires_at: None,
            refresh_token: Some("refresh-3".into()),
            generation: 3,
        })
    );

    // Per connection; saves at once each get a generation of their own.
    assert_eq!(s.connection_tokens("erp").await.unwrap(), None);
    let saves = (0..10).map(|_| s.save_connection_tokens("erp", Some("a"), None, None));
    let mut generations: Vec<i64> = futures::future::join_all(saves)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    generations.sort_unstable();
    assert_eq!(generations, (1..=10).collect::<Vec<_>>());
    assert_eq!(
        s.connection_tokens("crm")
            .await
            .unwrap()
            .unwrap()
            .generation,
        3
    );
}

/// `expires_at` read back as saved (the stores keep microseconds; the
/// contract is the second).
fn assert_close(read: Option<chrono::DateTime<Utc>>, saved: chrono::DateTime<Utc>) {
    let read = read.expect("expires_at was saved");
    assert!(
        (read - saved).num_milliseconds().abs() < 1,
        "saved {saved}, read {read}"
    );
}

/// A store one process uses leaves fetch claims and rate limits to the
/// process (`Store::reserve_request` is `None`).
async fn connection_limits_are_left_to_the_process(s: &dyn Store) {
    let per = Duration::from_secs(1);
    for _ in 0..3 {
        assert_eq!(s.reserve_request("crm", 1, per).await.unwrap(), None);
    }
    assert!(s.claim_token_fetch("crm", "a", LONG).await.unwrap());
    assert!(s.claim_token_fetch("crm", "b", LONG).await.unwrap());
    s.release_token_fetch("crm", "a").await.unwrap();
    assert_eq!(s.connection_tokens("crm").await.unwrap(), None);
}

/// A sync run stored running (as the async fallback stores it), with a
/// callback.
async fn inline_with_callback(s: &dyn Store, id: &str, expires_in: Duration) {
    let mut n = new(id, "sync", None);
    n.running = Some((format!("inline-{id}"), LONG));
    s.enqueue(n).await.unwrap();
    s.add_callback(NewCallback {
        id: format!("cb-{id}"),
        execution_id: id.into(),
        url: format!("https://hooks.example.com/{id}"),
        expires_in,
    })
    .await
    .unwrap();
}

async fn end_inline(s: &dyn Store, id: &str, status: Status) {
    s.finish(id, &Lease::first(format!("inline-{id}")), finish(status))
        .await
        .unwrap();
}

/// Claims callbacks until one comes back (claims expire by the clock), bounded.
async fn claim_callback_until(s: &dyn Store, lease: Duration) -> flow_runtime::store::Callback {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(c) = s.claim_callbacks(10, lease).await.unwrap().pop() {
            return c;
        }
        assert!(Instant::now() < deadline, "no callback became due");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn callbacks_are_due_once_their_run_ended(s: &dyn Store) {
    inline_with_callback(s, "a", LONG).await;
    // A second callback for the same run is ignored.
    s.add_callback(NewCallback {
        id: "cb-other".into(),
        execution_id: "a".into(),
        url: "https://other.example.com/".into(),
        expires_in: LONG,
    })
    .await
    .unwrap();
    let c = s.callback("a").await.unwrap().expect("stored");
    assert_eq!(
        (c.id.as_str(), c.url.as_str(), c.state, c.attempts),
        (
            "cb-a",
            "https://hooks.example.com/a",
            CallbackState::Pending,
            0
        )
    );
    assert!(c.expires_at > Utc::now() + chrono::Duration::seconds(50));
    assert!(
        s.claim_callbacks(10, LONG).await.unwrap().is_empty(),
        "the run is still going"
    );
    end_inline(s, "a", Status::Succeeded).await;
    let claimed = s.claim_callbacks(10, LONG).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!((claimed[0].id.as_str(), claimed[0].attempts), ("cb-a", 1));
    assert!(
        s.claim_callbacks(10, LONG).await.unwrap().is_empty(),
        "held by its claim"
    );
    // A failed attempt: due again after the backoff, with its error.
    s.settle_callback(
        "cb-a",
        CallbackOutcome::Retry {
            after: Duration::ZERO,
            error: "HTTP 503".into(),
        },
    )
    .await
    .unwrap();
    let again = claim_callback_until(s, LONG).await;
    assert_eq!((again.id.as_str(), again.attempts), ("cb-a", 2));
    assert_eq!(again.last_error.as_deref(), Some("HTTP 503"));
    s.settle_callback("cb-a", CallbackOutcome::Delivered)
        .await
        .unwrap();
    let c = s.callback("a").await.unwrap().unwrap();
    assert_eq!(
        (c.state, c.attempts, c.last_error),
        (CallbackState::Delivered, 2, None)
    );
    // A late retry (another replica's attempt) does not bring it back.
    s.settle_callback(
        "cb-a",
        CallbackOutcome::Retry {
            after: Duration::ZERO,
            error: "late".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        s.callback("a").await.unwrap().unwrap().state,
        CallbackState::Delivered
    );
    assert!(s.claim_callbacks(10, LONG).await.unwrap().is_empty());
    assert!(s.callback("nope").await.unwrap().is_none());
}

async fn callbacks_expire_or_are_given_up(s: &dyn Store) {
    inline_with_callback(s, "old", Duration::from_millis(50)).await;
    inline_with_callback(s, "bad", LONG).await;
    end_inline(s, "old", Status::Failed).await;
    end_inline(s, "bad", Status::Skipped).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.callback("old").await.unwrap().unwrap().expires_at > Utc::now() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let claimed = s.claim_callbacks(10, LONG).await.unwrap();
    assert_eq!(
        claimed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["cb-bad"],
        "the expired one is not sent"
    );
    let old = s.callback("old").await.unwrap().unwrap();
    assert_eq!(old.state, CallbackState::Failed);
    assert_eq!(old.last_error.as_deref(), Some("expired before delivery"));
    s.settle_callback(
        "cb-bad",
        CallbackOutcome::GiveUp {
            error: "host no longer allowed".into(),
        },
    )
    .await
    .unwrap();
    let bad = s.callback("bad").await.unwrap().unwrap();
    assert_eq!(
        (bad.state, bad.last_error.as_deref()),
        (CallbackState::Failed, Some("host no longer allowed"))
    );
    assert!(s
        .claim_callbacks(10, Duration::ZERO)
        .await
        .unwrap()
        .is_empty());
}

async fn unsettled_callbacks_are_claimed_again(s: &dyn Store) {
    inline_with_callback(s, "a", LONG).await;
    end_inline(s, "a", Status::Succeeded).await;
    // Its claimer died mid-attempt: due again once the claim runs out.
    let first = claim_callback_until(s, Duration::from_millis(100)).await;
    let second = claim_callback_until(s, LONG).await;
    assert_eq!((first.id.as_str(), first.attempts), ("cb-a", 1));
    assert_eq!((second.id.as_str(), second.attempts), ("cb-a", 2));
}

async fn concurrent_callback_claims_never_share_one(s: &dyn Store) {
    for i in 0..30 {
        let id = format!("e{i:02}");
        inline_with_callback(s, &id, LONG).await;
        end_inline(s, &id, Status::Succeeded).await;
    }
    let claimers = (0..6).map(|_| async move {
        let mut got = Vec::new();
        loop {
            let batch = s.claim_callbacks(4, LONG).await.unwrap();
            if batch.is_empty() {
                return got;
            }
            got.extend(batch.into_iter().map(|c| c.id));
        }
    });
    let mut all: Vec<String> = futures::future::join_all(claimers)
        .await
        .into_iter()
        .flatten()
        .collect();
    all.sort();
    let expected: Vec<String> = (0..30).map(|i| format!("cb-e{i:02}")).collect();
    assert_eq!(all, expected);
}

async fn purged_runs_take_their_callbacks(s: &dyn Store) {
    inline_with_callback(s, "ok", LONG).await;
    inline_with_callback(s, "bad", LONG).await;
    end_inline(s, "ok", Status::Succeeded).await;
    end_inline(s, "bad", Status::Failed).await;
    let cut = Utc::now() + chrono::Duration::seconds(1);
    assert_eq!(s.purge_finished(cut).await.unwrap(), 1);
    assert!(s.callback("ok").await.unwrap().is_none());
    assert!(s.callback("bad").await.unwrap().is_some());
    assert_eq!(s.purge_failed(cut).await.unwrap(), 1);
    assert!(s.callback("bad").await.unwrap().is_none());
}

async fn retention_purges_old_finished_runs(s: &dyn Store) {
    for (id, key) in [
        ("ok", Some("k1")),
        ("skip", None),
        ("bad", Some("k2")),
        ("open", None),
    ] {
        s.enqueue(new(id, "f", key)).await.unwrap();
    }
    for status in [Status::Succeeded, Status::Skipped, Status::Failed] {
        let e = s.claim("w", LONG).await.unwrap().unwrap();
        s.record_step(&e.id, &lease(&e), step("x", StepStatus::Succeeded, None))
            .await
            .unwrap();
        s.finish(&e.id, &lease(&e), finish(status)).await.unwrap();
    }
    let mut t = new("tick-1", "cron", None);
    t.tick = Some(Utc::now() - chrono::Duration::seconds(10));
    s.enqueue(t).await.unwrap();
    let mut t = new("tick-2", "cron", None);
    t.tick = Some(Utc::now() - chrono::Duration::seconds(5));
    s.enqueue(t).await.unwrap();
    let cut =
        s.get("tick-2").await.unwrap().unwrap().created_at + chrono::Duration::microseconds(1);
    while Utc::now() <= cut {
        tokio::task::yield_now().await;
    }
    s.enqueue(new("young", "f", None)).await.unwrap();
    let y = s.claim("w", LONG).await.unwrap().unwrap();
    assert_eq!(y.id, "open");
    s.finish("open", &lease(&y), finish(Status::Succeeded))
        .await
        .unwrap();

    // "open" was created before the cut too: it finished, so it goes.
    assert_eq!(s.purge_finished(cut).await.unwrap(), 3);
    for gone in ["ok", "skip", "open"] {
        assert!(s.get(gone).await.unwrap().is_none(), "{gone}");
        assert!(s.journal(gone).await.unwrap().is_empty(), "{gone}");
    }
    for kept in ["bad", "young", "tick-1", "tick-2"] {
        assert!(s.get(kept).await.unwrap().is_some(), "{kept}");
    }
    assert_eq!(s.journal("bad").await.unwrap().len(), 1);
    // The purged run's dedupe key is free again; the failed run's is not.
    assert_eq!(
        s.enqueue(new("ok2", "f", Some("k1"))).await.unwrap(),
        Enqueued::Created
    );
    assert_eq!(
        s.enqueue(new("bad2", "f", Some("k2"))).await.unwrap(),
        Enqueued::Duplicate("bad".into())
    );
    // The last tick survives a purge.
    assert!(s.last_tick("cron").await.unwrap().is_some());
    assert_eq!(s.purge_finished(cut).await.unwrap(), 0);

    // Failed runs have a retention of their own: "bad" goes with its
    // journal and dedupe key; nothing else does.
    assert_eq!(s.purge_failed(cut).await.unwrap(), 1);
    assert!(s.get("bad").await.unwrap().is_none());
    assert!(s.journal("bad").await.unwrap().is_empty());
    for kept in ["young", "ok2", "tick-1", "tick-2"] {
        assert!(s.get(kept).await.unwrap().is_some(), "{kept}");
    }
    assert_eq!(
        s.enqueue(new("bad3", "f", Some("k2"))).await.unwrap(),
        Enqueued::Created
    );
    assert_eq!(s.purge_failed(cut).await.unwrap(), 0);
}

/// Text that parses nowhere: nested past serde_json's limit, as a row
/// written before the intake refused such bodies.
fn unreadable_json() -> String {
    format!("{{\"body\": {}{}}}", "[".repeat(200), "]".repeat(200))
}

/// A row that cannot be read back costs only its own run: `corrupt(id)`
/// overwrites the stored trigger of `id` (or, with `"result"`, its result)
/// with [`unreadable_json`] by SQL, behind the store's back.
async fn unreadable_rows_fail_alone<F, Fut>(s: &dyn Store, corrupt: F)
where
    F: Fn(&'static str, &'static str) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for id in ["a", "bad", "c"] {
        s.enqueue(new(id, "f", None)).await.unwrap();
    }
    corrupt("bad", "trigger").await;

    // Listing and reading it work: the trigger reads as null, the error says why.
    let listed = s.list(ExecutionFilter::default()).await.unwrap();
    assert_eq!(listed.len(), 3);
    let bad = s.get("bad").await.unwrap().unwrap();
    assert_eq!(bad.trigger, serde_json::Value::Null);
    let error = bad.error.unwrap_or_default();
    assert!(
        error.starts_with("the stored trigger cannot be read: recursion limit exceeded"),
        "{error}"
    );

    // The claim hands out the good runs and fails the bad one.
    let claimed = s.claim_batch("w1", 10, LONG).await.unwrap();
    let ids: Vec<&str> = claimed.iter().map(|(e, _)| e.id.as_str()).collect();
    assert_eq!(ids, ["a", "c"]);
    assert_eq!(claimed[0].0.trigger, json!({ "body": { "id": "a" } }));
    let bad = s.get("bad").await.unwrap().unwrap();
    assert_eq!(bad.status, Status::Failed);
    assert!(bad.finished_at.is_some());
    let error = bad.error.unwrap_or_default();
    assert!(
        error.starts_with("the stored trigger cannot be read:"),
        "{error}"
    );
    assert!(s.claim("w1", LONG).await.unwrap().is_none(), "nothing left");

    // A single claim skips it too.
    s.enqueue(new("bad2", "f", None)).await.unwrap();
    s.enqueue(new("d", "f", None)).await.unwrap();
    corrupt("bad2", "trigger").await;
    claim_until(s, "w1", "d").await;
    assert_eq!(s.get("bad2").await.unwrap().unwrap().status, Status::Failed);

    // An unreadable result of a finished run does not break the listing.
    let a = &claimed[0].0;
    let done = Finish {
        result: Some(json!({ "ok": true })),
        ..finish(Status::Succeeded)
    };
    s.finish(&a.id, &lease(a), done).await.unwrap();
    corrupt("a", "result").await;
    let a = s.get("a").await.unwrap().unwrap();
    assert_eq!(
        (a.status, a.result),
        (Status::Succeeded, Some(serde_json::Value::Null))
    );
    let error = a.error.unwrap_or_default();
    assert!(
        error.starts_with("the stored result cannot be read:"),
        "{error}"
    );
    assert_eq!(s.list(ExecutionFilter::default()).await.unwrap().len(), 5);
}

/// A journal entry or a state value that cannot be read back costs only
/// what reads it: `plant(table, column, filter)` overwrites `column` of the
/// one row of `table` matching the SQL `filter` with [`unreadable_json`],
/// behind the store's back. `exclusive`: the store requeues interrupted runs
/// at start-up (otherwise they are released). The memory store holds
/// values, not text, so it has no such rows and no such test.
async fn unreadable_journals_and_state_fail_alone<F, Fut>(s: &dyn Store, exclusive: bool, plant: F)
where
    F: Fn(&'static str, &'static str, &'static str) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for id in ["a", "bad"] {
        s.enqueue(new(id, "f", None)).await.unwrap();
    }
    let claimed = s.claim_batch("w1", 2, LONG).await.unwrap();
    assert_eq!(claimed.len(), 2);
    for (e, _) in &claimed {
        let record = step("fetch", StepStatus::Succeeded, Some(json!({ "n": 1 })));
        s.record_step(&e.id, &lease(e), record).await.unwrap();
    }
    plant(
        "journal",
        "output",
        "execution_id = 'bad' AND key = 'fetch'",
    )
    .await;

    // That run's journal cannot be read, saying which step and why, and
    // the store says asking again will not help; the other's can.
    let err = s.journal("bad").await.unwrap_err();
    assert!(matches!(err, StoreError::Unreadable(_)), "{err:?}");
    assert!(
        err.message().starts_with(
            "the stored journal of step `fetch` cannot be read: recursion limit exceeded"
        ),
        "{err}"
    );
    assert_eq!(
        s.journal("a").await.unwrap()[0].output,
        Some(json!({ "n": 1 }))
    );

    // Both runs go back to the queue and are handed out again.
    if exclusive {
        assert_eq!(s.requeue_interrupted().await.unwrap(), 2);
    } else {
        for (e, _) in &claimed {
            assert!(s.release(&e.id, &lease(e)).await.unwrap());
        }
    }
    let mut ids: Vec<String> = s
        .claim_batch("w2", 10, LONG)
        .await
        .unwrap()
        .into_iter()
        .map(|(e, _)| e.id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["a", "bad"]);

    // An unreadable state value reads as missing: claims go on.
    s.state_set("cursor", json!(3)).await.unwrap();
    s.state_set("seen", json!([1])).await.unwrap();
    plant("state", "value", "key = 'seen'").await;
    let only_cursor = serde_json::Map::from_iter([("cursor".to_string(), json!(3))]);
    assert_eq!(s.state_all().await.unwrap(), only_cursor);
    s.enqueue(new("c", "f", None)).await.unwrap();
    let (c, state) = s
        .claim_run("w3", LONG)
        .await
        .unwrap()
        .expect("c is claimed");
    assert_eq!((c.id.as_str(), &state), ("c", &only_cursor));
    s.enqueue(new("d", "f", None)).await.unwrap();
    let batch = s.claim_batch("w3", 10, LONG).await.unwrap();
    assert_eq!(batch.len(), 1);
    assert_eq!((batch[0].0.id.as_str(), &batch[0].1), ("d", &only_cursor));
    // The next `state.set` of the key replaces the bad row.
    s.state_set("seen", json!([2])).await.unwrap();
    assert_eq!(s.state_all().await.unwrap().get("seen"), Some(&json!([2])));
}

/// The stored sizes of the values [`binary_values_read_back_unchanged`]
/// wrote, each holding 1 MiB of data: kept as the data (CBOR), not as its
/// base64 text, which is a third larger.
fn assert_kept_as_bytes(sizes: &[(&str, i64)]) {
    const MIB: i64 = 1 << 20;
    for (what, size) in sizes {
        assert!(
            (MIB..MIB + 1024).contains(size),
            "{what}: {size} bytes stored for 1 MiB of data"
        );
    }
}

const STORED_SIZES: &str = "SELECT (SELECT length(trigger) FROM executions WHERE id = 'b'), \
     (SELECT length(result) FROM executions WHERE id = 'b'), \
     (SELECT length(output) FROM journal WHERE execution_id = 'b'), \
     (SELECT length(value) FROM state WHERE key = 'logo')";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_binary_data_as_bytes() {
    let (store, dir) = sqlite(Durability::Full);
    binary_values_read_back_unchanged(&store).await;
    let conn = rusqlite::Connection::open(dir.path().join("test.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let sizes: [i64; 4] = conn
        .query_row(STORED_SIZES, [], |r| {
            Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?])
        })
        .unwrap();
    let names = ["trigger", "result", "output", "state"];
    assert_kept_as_bytes(&names.into_iter().zip(sizes).collect::<Vec<_>>());
    let kind: String = conn
        .query_row(
            "SELECT typeof(trigger) FROM executions WHERE id = 'b'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kind, "blob");
    // Values without binary data stay JSON text.
    store
        .state_set("cursor", json!({ "page": 2 }))
        .await
        .unwrap();
    let cursor: (String, String) = conn
        .query_row(
            "SELECT typeof(value), value FROM state WHERE key = 'cursor'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(cursor, ("text".into(), r#"{"page":2}"#.into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_binary_data_as_bytes() {
    let Some(pg) = Pg::open("postgres_keeps_binary_data_as_bytes").await else {
        return;
    };
    binary_values_read_back_unchanged(&pg.store).await;
    let admin = pg_support::admin(&pg.url).await;
    admin
        .batch_execute(&format!("SET search_path TO \"{}\"", pg.schema))
        .await
        .unwrap();
    let row = admin
        .query_one(&STORED_SIZES.replace("length(", "octet_length("), &[])
        .await
        .unwrap();
    let names = ["trigger", "result", "output", "state"];
    let sizes: Vec<(&str, i64)> = names
        .iter()
        .enumerate()
        .map(|(i, name)| (*name, i64::from(row.get::<_, i32>(i))))
        .collect();
    assert_kept_as_bytes(&sizes);
    pg.done().await;
}

/// Overwrites `column` of the one row of `table` matching `filter` in the
/// SQLite file at `path` with [`unreadable_json`].
fn plant_sqlite(path: &std::path::Path, table: &str, column: &str, filter: &str) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let sql = format!("UPDATE {table} SET {column} = ?1 WHERE {filter}");
    let n = conn
        .execute(&sql, rusqlite::params![unreadable_json()])
        .unwrap();
    assert_eq!(n, 1, "{table} has a row where {filter}");
}

/// [`plant_sqlite`] on a test schema of PostgreSQL.
async fn plant_postgres(url: &str, schema: &str, table: &str, column: &str, filter: &str) {
    let client = pg_support::admin(url).await;
    let sql = format!("UPDATE \"{schema}\".{table} SET {column} = $1 WHERE {filter}");
    let n = client
        .execute(&sql, &[&unreadable_json().into_bytes()])
        .await
        .unwrap();
    assert_eq!(n, 1, "{table} has a row where {filter}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_unreadable_rows_fail_alone() {
    let (store, dir) = sqlite(Durability::Full);
    let path = dir.path().join("test.db");
    unreadable_rows_fail_alone(&store, |id, column| {
        plant_sqlite(&path, "executions", column, &format!("id = '{id}'"));
        async {}
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_unreadable_journals_and_state_fail_alone() {
    let (store, dir) = sqlite(Durability::Full);
    let path = dir.path().join("test.db");
    unreadable_journals_and_state_fail_alone(&store, true, |table, column, filter| {
        plant_sqlite(&path, table, column, filter);
        async {}
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unreadable_rows_fail_alone() {
    let Some(pg) = Pg::open("postgres_unreadable_rows_fail_alone").await else {
        return;
    };
    let (url, schema) = (pg.url.clone(), pg.schema.clone());
    unreadable_rows_fail_alone(&pg.store, |id, column| {
        let (url, schema) = (url.clone(), schema.clone());
        async move {
            plant_postgres(&url, &schema, "executions", column, &format!("id = '{id}'")).await;
        }
    })
    .await;
    pg.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unreadable_journals_and_state_fail_alone() {
    let Some(pg) = Pg::open("postgres_unreadable_journals_and_state_fail_alone").await else {
        return;
    };
    let (url, schema) = (pg.url.clone(), pg.schema.clone());
    unreadable_journals_and_state_fail_alone(&pg.store, false, |table, column, filter| {
        let (url, schema) = (url.clone(), schema.clone());
        async move { plant_postgres(&url, &schema, table, column, filter).await }
    })
    .await;
    pg.done().await;
}

/// A fresh exclusive SQLite store in a temporary directory.
fn sqlite(durability: Durability) -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(
        dir.path().join("test.db"),
        SqliteOptions {
            durability,
            exclusive: true,
        },
    )
    .unwrap();
    (store, dir)
}

/// A store on a fresh schema of the test server, dropped by [`Pg::done`].
struct Pg {
    store: PostgresStore,
    url: String,
    schema: String,
}

impl Pg {
    async fn open(test: &str) -> Option<Pg> {
        let url = pg_support::url(test)?;
        let schema = pg_support::schema_name();
        let store = PostgresStore::open(PostgresOptions {
            url: url.clone(),
            schema: schema.clone(),
            pool_size: 8,
        })
        .await
        .unwrap_or_else(|e| panic!("cannot open the PostgreSQL store: {e}"));
        Some(Pg { store, url, schema })
    }

    async fn done(self) {
        drop(self.store);
        pg_support::drop_schema(&self.url, &self.schema).await;
    }

    /// Another store on the same schema: a second replica.
    async fn replica(&self) -> PostgresStore {
        PostgresStore::open(PostgresOptions {
            url: self.url.clone(),
            schema: self.schema.clone(),
            pool_size: 8,
        })
        .await
        .unwrap_or_else(|e| panic!("cannot open the PostgreSQL store again: {e}"))
    }

    /// Closes the store and opens the schema again (a restart).
    async fn reopen(self) -> Pg {
        let store = self.replica().await;
        drop(self.store);
        Pg { store, ..self }
    }
}

/// One test per case and backend. `shared` cases hold for every store;
/// `exclusive` ones for stores that one process owns (not PostgreSQL,
/// shared by live replicas: see `Store::requeue_interrupted`).
macro_rules! backends {
    (shared: [$($case:ident),* $(,)?], exclusive: [$($ex:ident),* $(,)?] $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(&flow_runtime::store::MemoryStore::new()).await;
                }
            )*
            $(
                #[tokio::test]
                async fn $ex() {
                    super::$ex(&flow_runtime::store::MemoryStore::new()).await;
                }
            )*
        }
        /// The default: commits synced by the sync thread before answers.
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, _dir) = super::sqlite(super::Durability::Full);
                    super::$case(&store).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $ex() {
                    let (store, _dir) = super::sqlite(super::Durability::Full);
                    super::$ex(&store).await;
                }
            )*
        }
        mod sqlite_normal {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, _dir) = super::sqlite(super::Durability::Normal);
                    super::$case(&store).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $ex() {
                    let (store, _dir) = super::sqlite(super::Durability::Normal);
                    super::$ex(&store).await;
                }
            )*
        }
        /// `FLOW_TEST_POSTGRES_URL`; each test on a schema of its own.
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(pg) = super::Pg::open(concat!("postgres::", stringify!($case))).await else {
                        return;
                    };
                    super::$case(&pg.store).await;
                    pg.done().await;
                }
            )*
        }
    };
}

backends!(
    shared: [
        enqueue_claim_finish,
        dedupe_keys_are_per_flow,
        concurrent_intake_is_committed_once_each,
        inline_runs_are_stored_running,
        expired_leases_are_taken_over,
        stale_leases_are_fenced,
        runs_taken_over_too_often_are_given_up,
        batch_claims_and_heartbeats,
        concurrent_claims_never_share_a_run,
        release_requeues_with_the_journal,
        journal_records_and_replaces,
        steps_are_written_with_the_end,
        replay_requeues_finished_runs_only,
        listing_filters_newest_first,
        listing_by_time_search_and_cursor,
        schedule_ticks_run_once,
        state_and_deployed_version,
        binary_values_read_back_unchanged,
        connection_tokens_are_kept,
        retention_purges_old_finished_runs,
        callbacks_are_due_once_their_run_ended,
        callbacks_expire_or_are_given_up,
        unsettled_callbacks_are_claimed_again,
        concurrent_callback_claims_never_share_one,
        purged_runs_take_their_callbacks,
    ],
    exclusive: [
        interrupted_runs_are_requeued,
        restarts_count_as_take_overs,
        connection_limits_are_left_to_the_process,
    ],
);

// SQLite only: what the file keeps across processes.

/// The serving process keeps the state in memory: its own writes show at
/// once, another process's (a `deploy` beside `serve`) within a second or so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_serving_state_sees_its_writes_at_once_and_others_soon() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let serving = SqliteStore::open(
        &path,
        SqliteOptions {
            durability: Durability::Full,
            exclusive: true,
        },
    )
    .unwrap();
    assert!(serving.state_all().await.unwrap().is_empty());
    serving.state_set("cursor", json!(1)).await.unwrap();
    assert_eq!(serving.state_all().await.unwrap()["cursor"], json!(1));
    serving.state_set("cursor", json!(2)).await.unwrap();
    serving.state_set("other", json!("x")).await.unwrap();
    let state = serving.state_all().await.unwrap();
    assert_eq!(
        (&state["cursor"], &state["other"]),
        (&json!(2), &json!("x"))
    );

    let deploy = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    deploy.state_set("cursor", json!(3)).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while serving.state_all().await.unwrap()["cursor"] != json!(3) {
        assert!(
            std::time::Instant::now() < deadline,
            "another process's write never showed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_everything_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keep.db");
    let opts = SqliteOptions {
        durability: Durability::Full,
        exclusive: true,
    };
    {
        let s = SqliteStore::open(&path, opts).unwrap();
        s.enqueue(new("a", "f", Some("k"))).await.unwrap();
        s.enqueue(new("b", "f", None)).await.unwrap();
        let a = s.claim("w", LONG).await.unwrap().unwrap();
        s.record_step(
            &a.id,
            &lease(&a),
            step("send[0]", StepStatus::Succeeded, Some(json!(7))),
        )
        .await
        .unwrap();
        s.state_set("cursor", json!(3)).await.unwrap();
        s.set_deployed_version("v1").await.unwrap();
        // A second serving process is refused while this one holds the file.
        let err = SqliteStore::open(&path, opts).unwrap_err();
        assert!(
            err.message().contains("in use by another serving process"),
            "{err}"
        );
        assert!(
            err.message().contains(&std::process::id().to_string()),
            "{err}"
        );
        // Others (deploy, run) may open it meanwhile.
        let shared = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        assert_eq!(
            shared.get("a").await.unwrap().unwrap().status,
            Status::Running
        );
        assert_eq!(
            shared.requeue_interrupted().await.unwrap(),
            0,
            "not exclusive"
        );
    }
    let s: Arc<dyn Store> = Arc::new(SqliteStore::open(&path, opts).unwrap());
    assert_eq!(s.get("a").await.unwrap().unwrap().status, Status::Running);
    assert_eq!(s.requeue_interrupted().await.unwrap(), 1);
    let a = s.claim("w2", LONG).await.unwrap().unwrap();
    assert_eq!((a.id.as_str(), a.attempts), ("a", 2));
    assert_eq!(s.journal("a").await.unwrap()[0].output, Some(json!(7)));
    assert_eq!(
        s.enqueue(new("c", "f", Some("k"))).await.unwrap(),
        Enqueued::Duplicate("a".into())
    );
    assert_eq!(s.state_all().await.unwrap().get("cursor"), Some(&json!(3)));
    assert_eq!(s.deployed_version().await.unwrap().as_deref(), Some("v1"));
    assert_eq!(s.claim("w2", LONG).await.unwrap().unwrap().id, "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_connection_tokens_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.db");
    let opts = SqliteOptions {
        durability: Durability::Full,
        exclusive: true,
    };
    let expires = Utc::now() + chrono::Duration::seconds(3600);
    {
        let s = SqliteStore::open(&path, opts).unwrap();
        s.save_connection_tokens("crm", Some("access-1"), None, Some("refresh-1"))
            .await
            .unwrap();
        s.save_connection_tokens("crm", Some("access-2"), Some(expires), Some("refresh-2"))
            .await
            .unwrap();
    }
    let s = SqliteStore::open(&path, opts).unwrap();
    let kept = s.connection_tokens("crm").await.unwrap().unwrap();
    assert_eq!(
        (kept.access_token.as_deref(), kept.refresh_token.as_deref()),
        (Some("access-2"), Some("refresh-2"))
    );
    assert_eq!(kept.generation, 2);
    assert_close(kept.expires_at, expires);
    assert_eq!(
        s.save_connection_tokens("crm", None, None, Some("refresh-3"))
            .await
            .unwrap(),
        3
    );
}

/// A database written before connections existed (schema version 4) gets
/// the `connections` table at start-up and keeps its data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_adds_connections_to_an_older_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v4.db");
    {
        let s = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        s.enqueue(new("a", "f", None)).await.unwrap();
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "DROP TABLE connections; DROP INDEX executions_by_dedupe_key; \
         ALTER TABLE journal DROP COLUMN input; \
         DELETE FROM schema_version WHERE version > 4",
    )
    .unwrap();
    drop(conn);

    let s = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    assert_eq!(s.get("a").await.unwrap().unwrap().status, Status::Queued);
    assert_eq!(s.connection_tokens("crm").await.unwrap(), None);
    assert_eq!(
        s.save_connection_tokens("crm", Some("t"), None, None)
            .await
            .unwrap(),
        1
    );
    drop(s);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 7);
}

#[test]
fn connection_tokens_are_never_shown() {
    let tokens = ConnectionTokens {
        access_token: Some("s3cr3t-access".into()),
        expires_at: None,
        refresh_token: Some("s3cr3t-refresh".into()),
        generation: 2,
    };
    for shown in [format!("{tokens:?}"), format!("{tokens:#?}")] {
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(
            shown.contains("***") && shown.contains("generation: 2"),
            "{shown}"
        );
    }
    let empty = ConnectionTokens {
        access_token: None,
        refresh_token: None,
        ..tokens
    };
    assert!(format!("{empty:?}").contains("access_token: None"));
}

// PostgreSQL only: what replicas sharing a schema coordinate through it.

/// Tolerance at the edges of a rate limit's windows.
const EDGE: Duration = Duration::from_millis(50);

/// A reservation as the caller saw it: its send time lies between `lo`
/// (asked + wait) and `hi` (answered + wait), the store having read its
/// clock in between.
struct Reserved {
    wait: Duration,
    lo: Instant,
    hi: Instant,
}

async fn reserve(s: &dyn Store, name: &str, requests: u32, per: Duration) -> Reserved {
    let asked = Instant::now();
    let wait = s
        .reserve_request(name, requests, per)
        .await
        .unwrap()
        .expect("a store shared by replicas limits requests itself");
    Reserved {
        wait,
        lo: asked + wait,
        hi: Instant::now() + wait,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_connection_tokens_across_reopen_and_upgrade() {
    let Some(pg) = Pg::open("postgres_keeps_connection_tokens_across_reopen_and_upgrade").await
    else {
        return;
    };
    let expires = Utc::now() + chrono::Duration::seconds(3600);
    pg.store
        .save_connection_tokens("crm", Some("access-1"), Some(expires), Some("refresh-1"))
        .await
        .unwrap();
    let pg = pg.reopen().await;
    let kept = pg.store.connection_tokens("crm").await.unwrap().unwrap();
    assert_eq!(
        (kept.access_token.as_deref(), kept.refresh_token.as_deref()),
        (Some("access-1"), Some("refresh-1"))
    );
    assert_eq!(kept.generation, 1);
    assert_close(kept.expires_at, expires);

    // A schema written before connections existed (version 2) gets their
    // tables at start-up, and its JSON text columns become bytes (4) with
    // the rows in them still readable.
    pg.store.enqueue(new("a", "f", None)).await.unwrap();
    let admin = pg_support::admin(&pg.url).await;
    let schema = pg.schema.clone();
    admin
        .batch_execute(&format!(
            "DROP TABLE \"{schema}\".connections, \"{schema}\".connection_limits; \
             DROP INDEX \"{schema}\".executions_by_dedupe_key; \
             ALTER TABLE \"{schema}\".journal DROP COLUMN input; \
             ALTER TABLE \"{schema}\".executions \
                 ALTER COLUMN trigger TYPE TEXT USING convert_from(trigger, 'UTF8'), \
                 ALTER COLUMN result TYPE TEXT USING convert_from(result, 'UTF8'); \
             ALTER TABLE \"{schema}\".journal \
                 ALTER COLUMN output TYPE TEXT USING convert_from(output, 'UTF8'); \
             ALTER TABLE \"{schema}\".state \
                 ALTER COLUMN value TYPE TEXT USING convert_from(value, 'UTF8'); \
             DELETE FROM \"{schema}\".schema_version WHERE version > 2"
        ))
        .await
        .unwrap();
    let pg = pg.reopen().await;
    let a = pg.store.get("a").await.unwrap().unwrap();
    assert_eq!(a.status, Status::Queued);
    assert_eq!(a.trigger, json!({ "body": { "id": "a" } }));
    assert_eq!(pg.store.connection_tokens("crm").await.unwrap(), None);
    assert_eq!(
        pg.store
            .save_connection_tokens("crm", Some("t"), None, None)
            .await
            .unwrap(),
        1
    );
    let r = reserve(&pg.store, "crm", 1, Duration::from_secs(1)).await;
    assert_eq!(r.wait, Duration::ZERO);
    let version: i32 = admin
        .query_one(
            &format!("SELECT MAX(version) FROM \"{schema}\".schema_version"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, 6);
    pg.done().await;
}

/// One replica at a time fetches a connection's tokens; the others wait for
/// its save (or for its lease to run out, if it died).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_one_replica_fetches_tokens_at_a_time() {
    let Some(pg) = Pg::open("postgres_one_replica_fetches_tokens_at_a_time").await else {
        return;
    };
    let replica = pg.replica().await;
    let (a, b): (&dyn Store, &dyn Store) = (&pg.store, &replica);
    assert!(a.claim_token_fetch("crm", "A", LONG).await.unwrap());
    assert!(
        !b.claim_token_fetch("crm", "B", LONG).await.unwrap(),
        "A's lease runs"
    );
    assert!(
        b.claim_token_fetch("erp", "B", LONG).await.unwrap(),
        "another connection"
    );
    assert!(
        a.claim_token_fetch("crm", "A", LONG).await.unwrap(),
        "the holder claims again"
    );
    assert_eq!(
        b.connection_tokens("crm").await.unwrap(),
        None,
        "a claim saves no tokens"
    );
    assert_eq!(
        a.save_connection_tokens("crm", Some("t1"), None, Some("r1"))
            .await
            .unwrap(),
        1
    );
    b.release_token_fetch("crm", "B").await.unwrap();
    assert!(
        !b.claim_token_fetch("crm", "B", LONG).await.unwrap(),
        "only the holder releases"
    );
    a.release_token_fetch("crm", "A").await.unwrap();
    assert!(b.claim_token_fetch("crm", "B", LONG).await.unwrap());
    b.release_token_fetch("crm", "B").await.unwrap();

    // A holder that never releases: its lease runs out.
    let lease = Duration::from_millis(200);
    let asked = Instant::now();
    assert!(a.claim_token_fetch("crm", "A", lease).await.unwrap());
    let early = b.claim_token_fetch("crm", "B", LONG).await.unwrap();
    if asked.elapsed() < lease {
        assert!(!early, "B got the claim before A's lease ran out");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b.claim_token_fetch("crm", "B", LONG).await.unwrap() {
        assert!(Instant::now() < deadline, "A's lease never ran out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        asked.elapsed() >= lease,
        "B got the claim {:?} after A took it",
        asked.elapsed()
    );
    // Claims leave the tokens alone.
    let kept = a.connection_tokens("crm").await.unwrap().unwrap();
    assert_eq!(
        (kept.access_token.as_deref(), kept.generation),
        (Some("t1"), 1)
    );
    drop(replica);
    pg.done().await;
}

/// Two replicas reserving at once share one limit: of 12 requests at 5 per
/// second, 5 go now, 5 a second later and 2 after two; no second holds
/// more than 5 send times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_request_limit_is_shared_by_replicas() {
    let Some(pg) = Pg::open("postgres_request_limit_is_shared_by_replicas").await else {
        return;
    };
    let replica = pg.replica().await;
    let replicas: [&dyn Store; 2] = [&pg.store, &replica];
    // Connections opened beforehand: the reservations then run within
    // milliseconds of each other.
    for s in replicas {
        let warm = (0..6).map(|_| s.connection_tokens("warm-up"));
        for r in futures::future::join_all(warm).await {
            r.unwrap();
        }
    }
    let per = Duration::from_secs(1);
    let started = Instant::now();
    let reservations = (0..12).map(|i| reserve(replicas[i % 2], "crm", 5, per));
    let reserved = futures::future::join_all(reservations).await;
    // Each wait is counted from the moment the database reserved, some
    // time between `started` and the last answer.
    let spread = reserved
        .iter()
        .map(|r| r.hi - r.wait)
        .max()
        .unwrap()
        .duration_since(started);

    let mut waits: Vec<Duration> = reserved.iter().map(|r| r.wait).collect();
    waits.sort_unstable();
    assert!(waits[..5].iter().all(Duration::is_zero), "{waits:?}");
    for w in &waits[5..10] {
        assert!(*w + EDGE + spread >= per, "{waits:?} (spread {spread:?})");
    }
    for w in &waits[10..] {
        assert!(
            *w + EDGE + spread >= 2 * per,
            "{waits:?} (spread {spread:?})"
        );
    }
    assert!(
        waits[11] <= 2 * per + EDGE,
        "5 per second, not fewer: {waits:?}"
    );

    // The k-th earliest send time lies between the k-th smallest `lo` and
    // the k-th smallest `hi`: any 6 consecutive ones span a second.
    let mut lo: Vec<Instant> = reserved.iter().map(|r| r.lo).collect();
    let mut hi: Vec<Instant> = reserved.iter().map(|r| r.hi).collect();
    lo.sort_unstable();
    hi.sort_unstable();
    for k in 0..lo.len() - 5 {
        let span = hi[k + 5].duration_since(lo[k]);
        assert!(
            span + EDGE >= per,
            "send times {k}..={} within {span:?}: {waits:?}",
            k + 5
        );
    }
    drop(replica);
    pg.done().await;
}

/// A limit changed between builds (3 per second, then 2) applies from the
/// next reservation on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_request_limit_follows_a_changed_limit() {
    let Some(pg) = Pg::open("postgres_request_limit_follows_a_changed_limit").await else {
        return;
    };
    let per = Duration::from_secs(1);
    let mut reserved = Vec::new();
    for _ in 0..3 {
        reserved.push(reserve(&pg.store, "crm", 3, per).await);
    }
    for _ in 0..4 {
        reserved.push(reserve(&pg.store, "crm", 2, per).await);
    }
    let waits: Vec<Duration> = reserved.iter().map(|r| r.wait).collect();
    assert!(waits[..3].iter().all(Duration::is_zero), "{waits:?}");
    // From the first reservation under the new limit on, each send is at
    // least a second after the one two before it...
    for i in 1..reserved.len() - 2 {
        let span = reserved[i + 2].hi.duration_since(reserved[i].lo);
        assert!(span + EDGE >= per, "sends {i} and {}: {waits:?}", i + 2);
    }
    // ... and two go per second, not one.
    assert!(
        waits[3] <= per + EDGE && waits[4] <= per + EDGE,
        "{waits:?}"
    );
    assert!(waits[5] <= 2 * per + EDGE, "{waits:?}");
    pg.done().await;
}

#[test]
fn sqlite_refuses_a_missing_directory_and_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let err = SqliteStore::open(
        dir.path().join("no/such/dir/x.db"),
        SqliteOptions::default(),
    )
    .unwrap_err();
    assert!(err.message().contains("does not exist"), "{err}");

    let path = dir.path().join("future.db");
    drop(SqliteStore::open(&path, SqliteOptions::default()).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("INSERT INTO schema_version (version) VALUES (99)", [])
        .unwrap();
    drop(conn);
    let err = SqliteStore::open(&path, SqliteOptions::default()).unwrap_err();
    assert!(err.message().contains("schema version 99"), "{err}");
}

/// A flow that succeeds without a step: what matters is the journal read
/// before it starts.
fn succeed(_: flow_runtime::Ctx) -> flow_runtime::FlowFuture {
    Box::pin(async { Ok(flow_runtime::Outcome::Succeeded) })
}

fn one_flow_integration() -> flow_runtime::Integration {
    fn flows(_: &flow_runtime::Config) -> Vec<flow_runtime::FlowDef> {
        vec![flow_runtime::FlowDef {
            name: "f",
            doc: "",
            trigger: flow_runtime::TriggerDef::Dispatch {
                input: flow_runtime::Schema::Json,
            },
            run: succeed,
            on_failure: None,
        }]
    }
    common::integration("unreadable", flows)
}

/// Through the engine: a run interrupted by a crash whose journal cannot be
/// read back fails at its resume with the reason, once (not released to be
/// claimed again and again), while the other interrupted run resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_run_with_an_unreadable_journal_fails_alone_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let opts = SqliteOptions {
        durability: Durability::Full,
        exclusive: true,
    };
    {
        // The process that crashed mid-run, with a journal entry each.
        let s = SqliteStore::open(&path, opts).unwrap();
        for id in ["bad", "good"] {
            s.enqueue(new(id, "f", None)).await.unwrap();
        }
        for (e, _) in s.claim_batch("w", 2, LONG).await.unwrap() {
            let record = step("fetch", StepStatus::Succeeded, Some(json!(1)));
            s.record_step(&e.id, &lease(&e), record).await.unwrap();
        }
    }
    plant_sqlite(&path, "journal", "output", "execution_id = 'bad'");

    let store = Arc::new(SqliteStore::open(&path, opts).unwrap());
    assert_eq!(store.requeue_interrupted().await.unwrap(), 2);
    let options = flow_runtime::RuntimeOptions {
        env: flow_runtime::EnvSource::from_pairs::<&str, &str>([]),
        store: Some(store.clone()),
        workers: 2,
        ..flow_runtime::RuntimeOptions::default()
    };
    let rt = flow_runtime::Runtime::new(one_flow_integration(), options).unwrap();
    let workers = rt.start_workers();
    let wait = |id: &'static str| {
        let rt = rt.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(10), rt.wait_for(id))
                .await
                .unwrap_or_else(|_| panic!("{id} did not end"))
                .unwrap_or_else(|| panic!("{id} is unknown"))
        }
    };
    let good = wait("good").await;
    assert_eq!(good.status, Status::Succeeded, "{good:?}");
    let bad = wait("bad").await;
    for handle in workers {
        handle.abort();
    }
    assert_eq!(bad.status, Status::Failed);
    let error = bad.error.unwrap_or_default();
    assert!(
        error.starts_with("the stored journal of step `fetch` cannot be read:"),
        "{error}"
    );
    let stored = store.get("bad").await.unwrap().unwrap();
    assert_eq!((stored.status, stored.attempts), (Status::Failed, 2));
}

/// Concurrent plain intakes are inserted together (group commit): every
/// one is stored once, and a run the database refuses fails alone instead
/// of taking the runs batched with it down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_grouped_intakes_are_all_stored_and_a_refused_one_fails_alone() {
    let Some(pg) =
        Pg::open("postgres_grouped_intakes_are_all_stored_and_a_refused_one_fails_alone").await
    else {
        return;
    };
    let store: &dyn Store = &pg.store;
    let enqueue = |i: usize| {
        // A NUL byte cannot be stored in a TEXT column: this run is refused.
        let flow = if i == 57 { "bad\0flow" } else { "f" };
        store.enqueue(NewExecution::queued(
            format!("grouped-{i:03}"),
            flow,
            json!({ "n": i }),
        ))
    };
    let results = futures::future::join_all((0..200).map(enqueue)).await;
    for (i, result) in results.iter().enumerate() {
        match (i, result) {
            (57, Err(_)) => {}
            (57, Ok(e)) => panic!("the refused run was stored: {e:?}"),
            (_, Ok(Enqueued::Created)) => {}
            (_, other) => panic!("run {i}: {other:?}"),
        }
    }
    let stored = store
        .list(ExecutionFilter {
            status: None,
            flow: None,
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(stored.len(), 199);
    for i in (0..200).filter(|i| *i != 57) {
        let exec = store
            .get(&format!("grouped-{i:03}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(exec.trigger, json!({ "n": i }));
        assert_eq!(exec.status, Status::Queued);
    }
    pg.done().await;
}
