//! Schedule triggers: `schedule "CRON" tz "Zone"` and `schedule every D`.
//!
//! One task per schedule flow. Each tick becomes an execution with trigger
//! `{ fired_at, previous }`, stored together with the tick (so it runs once
//! across replicas and restarts), and the task waits for that run to end before looking for
//! the next tick: runs of one flow never overlap, and ticks that pass while
//! a run is still going are skipped. A tick missed while the service was
//! down runs once at start-up unless `catch_up` is off.

use std::str::FromStr as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::engine::Runtime;
use crate::integration::TriggerDef;
use crate::ops::format_time;

/// A parsed schedule.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Cron expression in a time zone.
    Cron(Box<croner::Cron>, chrono_tz::Tz),
    /// Fixed period.
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
                let period = chrono::Duration::from_std(*period).ok()?;
                if period <= chrono::Duration::zero() {
                    return None;
                }
                t.checked_add_signed(period)
            }
            Schedule::Cron(cron, tz) => cron
                .find_next_occurrence(&t.with_timezone(tz), false)
                .ok()
                .map(|n| n.with_timezone(&Utc)),
        }
    }
}

/// Starts one task per schedule flow.
pub(crate) fn start(rt: &Runtime) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for def in rt.flows() {
        let (schedule, catch_up) = match &def.trigger {
            TriggerDef::Cron { expr, tz, catch_up } => match Schedule::cron(expr, *tz) {
                Ok(s) => (s, *catch_up),
                Err(e) => {
                    tracing::error!(flow = def.name, error = %e, "schedule not started");
                    continue;
                }
            },
            TriggerDef::Every { period, catch_up } => (Schedule::Every(*period), *catch_up),
            _ => continue,
        };
        let rt = rt.clone();
        let flow = def.name;
        tasks.push(tokio::spawn(async move {
            run(rt, flow, schedule, catch_up).await
        }));
    }
    tasks
}

async fn run(rt: Runtime, flow: &'static str, schedule: Schedule, catch_up: bool) {
    let mut shutdown = rt.inner.shutdown.subscribe();
    let mut previous = match rt.store().last_tick(flow).await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(flow, error = %e, "cannot read the last schedule tick");
            None
        }
    };
    let now = Utc::now();
    if let Some(last) = previous {
        match schedule.next_after(last) {
            Some(missed) if missed <= now && catch_up => {
                tracing::info!(flow, missed = %missed, "running a tick missed while down");
                if !fire(&rt, flow, missed, &mut previous).await {
                    return;
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
            _ = shutdown.wait_for(|s| *s) => return,
        }
        if !fire(&rt, flow, next, &mut previous).await {
            return;
        }
    }
}

/// Stores the run of `tick` (the tick is recorded in the same transaction,
/// so a crash cannot lose it or run it twice) and waits for the run to end.
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
        Ok(s) if s.duplicate => {
            // Another replica (or an earlier start) ran it.
            *previous = Some(tick);
            return true;
        }
        Ok(s) => s,
        Err(e) => {
            tracing::error!(flow, error = %e, "cannot store a scheduled run");
            return true;
        }
    };
    *previous = Some(tick);
    let mut shutdown = rt.inner.shutdown.subscribe();
    tokio::select! {
        _ = rt.wait_for(&submitted.execution_id) => true,
        _ = shutdown.wait_for(|s| *s) => false,
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
    fn every_period() {
        let s = Schedule::Every(Duration::from_secs(300));
        let start = Utc::now();
        assert_eq!(
            s.next_after(start),
            Some(start + chrono::Duration::seconds(300))
        );
        assert_eq!(Schedule::Every(Duration::ZERO).next_after(start), None);
    }
}
