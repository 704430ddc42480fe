//! Schedule triggers: `schedule "CRON" tz "Zone"` and `schedule every D`.
//!
//! One task per schedule flow. Each tick becomes an execution with trigger
//! `{ fired_at, previous }`, stored together with the tick (so it runs once
//! across replicas and restarts), and the task waits for that run to end before looking for
//! the next tick: runs of one flow never overlap, and ticks that pass while
//! a run is still going are skipped. A tick missed while the service was
//! down runs once at start-up unless `catch_up` is off or it is older than
//! the catch-up window (`--catch-up-window`, default one day).

use std::str::FromStr as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::core::ops::format_time;
use crate::engine::integration::TriggerDef;
use crate::engine::Runtime;

/// A parsed schedule.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Cron expression in a time zone.
    Cron(Box<croner::Cron>, chrono_tz::Tz),
    /// Fixed period, on a grid anchored at the Unix epoch (`every 5m` ticks
    /// at :00, :05, …), so every replica computes the same tick times and
    /// the store's `(schedule, tick)` row makes each tick run once.
    Every(Duration),
}

impl Schedule {
    /// Parses a cron expression (5 fields, or 6 with seconds first) and an
    /// optional IANA time zone.
    pub fn cron(expr: &str, tz: Option<&str>) -> Result<Schedule, String> {
        let cron = croner::Cron::new(expr)
            .with_seconds_optional()
            .parse()
            .map_err(|e| format!("invalid cron expression {expr:?}: {e}"))?;
        let tz = match tz {
            None => chrono_tz::UTC,
            Some(name) => {
                chrono_tz::Tz::from_str(name).map_err(|_| format!("unknown time zone {name:?}"))?
            }
        };
        Ok(Schedule::Cron(Box::new(cron), tz))
    }

    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every(period) => {
                let period = i64::try_from(period.as_micros()).ok()?;
                if period <= 0 {
                    return None;
                }
                let now = t.timestamp_micros();
                let next = now.div_euclid(period).checked_add(1)?.checked_mul(period)?;
                DateTime::from_timestamp_micros(next)
            }
            Schedule::Cron(cron, tz) => cron
                .find_next_occurrence(&t.with_timezone(tz), false)
                .ok()
                .map(|n| n.with_timezone(&Utc)),
        }
    }
}

/// The schedule of a schedule trigger, and whether it catches up; `None`
/// for other triggers.
fn schedule_of(trigger: &TriggerDef) -> Option<Result<(Schedule, bool), String>> {
    match trigger {
        TriggerDef::Cron { expr, tz, catch_up } => {
            Some(Schedule::cron(expr, *tz).map(|s| (s, *catch_up)))
        }
        TriggerDef::Every { period, catch_up } => Some(Ok((Schedule::Every(*period), *catch_up))),
        _ => None,
    }
}

/// When a schedule trigger fires next after `now` (for the admin API's
/// flows listing); `None` for other triggers.
pub(crate) fn next_tick(trigger: &TriggerDef, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let (schedule, _) = schedule_of(trigger)?.ok()?;
    schedule.next_after(now)
}

/// Starts one task per schedule flow.
/// A tick missed while the service was down is run at start-up when it is
/// younger than `catch_up_window` (and the flow catches up).
pub(crate) fn start(rt: &Runtime, catch_up_window: Duration) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for def in rt.flows() {
        let (schedule, catch_up) = match schedule_of(&def.trigger) {
            Some(Ok(found)) => found,
            Some(Err(e)) => {
                tracing::error!(flow = def.name, error = %e, "schedule not started");
                continue;
            }
            None => continue,
        };
        let rt = rt.clone();
        let flow = def.name;
        tasks.push(tokio::spawn(async move {
            run(rt, flow, schedule, catch_up.then_some(catch_up_window)).await
        }));
    }
    tasks
}

/// `catch_up`: how old a missed tick may be to run at start-up; `None`
/// when the flow does not catch up.
async fn run(rt: Runtime, flow: &'static str, schedule: Schedule, catch_up: Option<Duration>) {
    let mut previous = match rt.store().last_tick(flow).await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(flow, error = %e, "cannot read the last schedule tick");
            None
        }
    };
    let now = Utc::now();
    if let Some(last) = previous {
        match (schedule.next_after(last), catch_up) {
            (Some(missed), Some(window)) if missed <= now => {
                if within_window(missed, now, window) {
                    tracing::info!(flow, missed = %missed, "running a tick missed while down");
                    if !fire(&rt, flow, missed, &mut previous).await {
                        return;
                    }
                } else {
                    tracing::info!(flow, missed = %missed, "a tick missed while down is older than the catch-up window; skipped");
                }
            }
            _ => {}
        }
    }
    loop {
        let from = previous.map_or(Utc::now(), |p| p.max(Utc::now()));
        let Some(next) = schedule.next_after(from) else {
            tracing::warn!(flow, "schedule has no further ticks");
            return;
        };
        let wait = (next - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = rt.shutdown_started() => return,
        }
        if !fire(&rt, flow, next, &mut previous).await {
            return;
        }
    }
}

/// Whether a tick missed at `missed` is recent enough to catch up `now`.
fn within_window(missed: DateTime<Utc>, now: DateTime<Utc>, window: Duration) -> bool {
    chrono::Duration::from_std(window).is_ok_and(|w| now - missed <= w)
}

/// Stores the run of `tick` (the tick is recorded in the same transaction,
/// so a crash cannot lose it or run it twice) and waits for the run to end
/// (the run of whoever stored the tick first, when it is a duplicate).
/// `false` on shutdown.
async fn fire(
    rt: &Runtime,
    flow: &'static str,
    tick: DateTime<Utc>,
    previous: &mut Option<DateTime<Utc>>,
) -> bool {
    let trigger = json!({
        "fired_at": format_time(tick),
        "previous": previous.map_or(Value::Null, format_time),
    });
    let submitted = match rt.submit_tick(flow, trigger, tick).await {
        // Another replica (or an earlier start) stored this tick: its run
        // (possibly still going on another replica) is waited for like our
        // own, so runs of one flow do not overlap across replicas either.
        Ok(s) => s,
        Err(e) => {
            tracing::error!(flow, error = %e, "cannot store a scheduled run");
            return true;
        }
    };
    *previous = Some(tick);
    tokio::select! {
        _ = rt.wait_for(&submitted.execution_id) => true,
        _ = rt.shutdown_started() => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_in_time_zone() {
        let s = Schedule::cron("0 19 * * THU", Some("America/New_York")).unwrap();
        let start = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let next = s.next_after(start).unwrap();
        // Thursday 2024-01-04 19:00 EST = 2024-01-05 00:00 UTC.
        assert_eq!(next.to_rfc3339(), "2024-01-05T00:00:00+00:00");
        let after = s.next_after(next).unwrap();
        assert_eq!(after.to_rfc3339(), "2024-01-12T00:00:00+00:00");
        let s = Schedule::cron("*/15 * * * *", None).unwrap();
        assert_eq!(
            s.next_after(start).unwrap().to_rfc3339(),
            "2024-01-01T00:15:00+00:00"
        );
        assert!(Schedule::cron("not cron", None).is_err());
        assert!(Schedule::cron("* * * * *", Some("Mars/Olympus")).is_err());
    }

    #[test]
    fn missed_ticks_are_caught_up_only_within_the_window() {
        let now = Utc::now();
        let hour = Duration::from_secs(3600);
        let ago = |secs: i64| now - chrono::Duration::seconds(secs);
        assert!(within_window(ago(60), now, hour));
        assert!(within_window(ago(3600), now, hour));
        assert!(!within_window(ago(3601), now, hour));
        assert!(!within_window(ago(1), now, Duration::ZERO));
    }

    #[test]
    fn every_period_is_on_a_grid_shared_by_replicas() {
        let s = Schedule::Every(Duration::from_secs(300));
        let at = |t: &str| DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc);
        let next = s.next_after(at("2024-01-01T10:02:17.5Z")).unwrap();
        assert_eq!(next, at("2024-01-01T10:05:00Z"));
        // Strictly after: a tick time gives the next one.
        assert_eq!(s.next_after(next).unwrap(), at("2024-01-01T10:10:00Z"));
        // Two replicas started at different moments agree on the ticks.
        assert_eq!(
            s.next_after(at("2024-01-01T10:00:00.001Z")),
            s.next_after(at("2024-01-01T10:04:59.999Z"))
        );
        let s = Schedule::Every(Duration::from_millis(1500));
        assert_eq!(
            s.next_after(at("1970-01-01T00:00:02Z")).unwrap(),
            at("1970-01-01T00:00:03Z")
        );
        assert_eq!(Schedule::Every(Duration::ZERO).next_after(Utc::now()), None);
    }
}
