//! Counters and histograms rendered by hand in the Prometheus text format
//! at `/_flow/metrics`.

use crate::core::sync::lock;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Upper bounds (seconds) of the step duration histogram buckets.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The runtime's metrics.
#[derive(Default)]
pub struct Metrics {
    http: Mutex<BTreeMap<String, BTreeMap<u16, u64>>>,
    runs: Mutex<BTreeMap<String, BTreeMap<String, u64>>>,
    steps: Mutex<BTreeMap<String, BTreeMap<String, Histogram>>>,
    /// Sync runs since the last summary line, by flow, and when that was.
    sync_runs: Mutex<(BTreeMap<String, SyncTally>, Option<Instant>)>,
}

/// Sync runs of one flow over a period: what the summary line says
/// instead of two lines per run.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SyncTally {
    /// Runs finished.
    pub runs: u64,
    /// Of which failed.
    pub failed: u64,
    /// Of which skipped.
    pub skipped: u64,
    /// Their time together.
    pub total: Duration,
    /// The longest.
    pub max: Duration,
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `map[a][b]`, allocating the keys only the first time they are seen (this
/// runs for every request and run).
fn slot<'m, K2, Q2, V>(
    map: &'m mut BTreeMap<String, BTreeMap<K2, V>>,
    a: &str,
    b: &Q2,
    owned_b: impl FnOnce() -> K2,
) -> Option<&'m mut V>
where
    K2: Ord + std::borrow::Borrow<Q2>,
    Q2: Ord + ?Sized,
    V: Default,
{
    if !map.contains_key(a) {
        map.insert(a.to_string(), BTreeMap::new());
    }
    let inner = map.get_mut(a)?;
    if !inner.contains_key(b) {
        inner.insert(owned_b(), V::default());
    }
    inner.get_mut(b)
}

impl Metrics {
    /// Counts an HTTP request answered on `route` (the route pattern).
    pub fn count_http(&self, route: &str, status: u16) {
        if let Some(n) = slot(&mut lock(&self.http), route, &status, || status) {
            *n += 1;
        }
    }

    /// Counts a finished run.
    pub fn count_run(&self, flow: &str, outcome: &str) {
        if let Some(n) = slot(&mut lock(&self.runs), flow, outcome, || outcome.to_string()) {
            *n += 1;
        }
    }

    /// Counts a finished sync run held in memory (see [`SyncTally`]).
    pub fn tally_sync(&self, flow: &str, outcome: &str, elapsed: Duration) {
        let mut guard = lock(&self.sync_runs);
        let tallies = &mut guard.0;
        if !tallies.contains_key(flow) {
            tallies.insert(flow.to_string(), SyncTally::default());
        }
        let Some(t) = tallies.get_mut(flow) else {
            return;
        };
        t.runs += 1;
        t.failed += u64::from(outcome == "failed");
        t.skipped += u64::from(outcome == "skipped");
        t.total += elapsed;
        t.max = t.max.max(elapsed);
    }

    /// The sync runs since the last call (or the first run), by flow, and
    /// how long ago that was.
    pub fn take_sync_tallies(&self) -> (BTreeMap<String, SyncTally>, Duration) {
        let mut guard = lock(&self.sync_runs);
        let now = Instant::now();
        let since = guard.1.replace(now).map_or(Duration::ZERO, |t| now - t);
        (std::mem::take(&mut guard.0), since)
    }

    /// Records the duration of one step attempt (`step` without loop indices).
    pub fn observe_step(&self, flow: &str, step: &str, d: Duration) {
        let secs = d.as_secs_f64();
        let mut steps = lock(&self.steps);
        let Some(h) = slot(&mut steps, flow, step, || step.to_string()) else {
            return;
        };
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP flow_http_requests_total HTTP requests answered, by route and status.\n",
        );
        out.push_str("# TYPE flow_http_requests_total counter\n");
        let http = lock(&self.http);
        let http = http
            .iter()
            .flat_map(|(route, m)| m.iter().map(move |(status, n)| ((route, status), n)));
        for ((route, status), n) in http {
            let _ = writeln!(
                out,
                "flow_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        out.push_str("# HELP flow_runs_total Finished runs, by flow and outcome.\n");
        out.push_str("# TYPE flow_runs_total counter\n");
        let runs = lock(&self.runs);
        let runs = runs
            .iter()
            .flat_map(|(flow, m)| m.iter().map(move |(outcome, n)| ((flow, outcome), n)));
        for ((flow, outcome), n) in runs {
            let _ = writeln!(
                out,
                "flow_runs_total{{flow=\"{}\",outcome=\"{}\"}} {n}",
                escape(flow),
                escape(outcome)
            );
        }
        out.push_str(
            "# HELP flow_step_duration_seconds Duration of step attempts, by flow and step.\n",
        );
        out.push_str("# TYPE flow_step_duration_seconds histogram\n");
        let steps = lock(&self.steps);
        let steps = steps
            .iter()
            .flat_map(|(flow, m)| m.iter().map(move |(step, h)| ((flow, step), h)));
        for ((flow, step), h) in steps {
            let labels = format!("flow=\"{}\",step=\"{}\"", escape(flow), escape(step));
            for (i, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "flow_step_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "flow_step_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "flow_step_duration_seconds_sum{{{labels}}} {}", h.sum);
            let _ = writeln!(
                out,
                "flow_step_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_runs_are_tallied_until_taken() {
        let m = Metrics::default();
        m.tally_sync("lookup", "succeeded", Duration::from_millis(4));
        m.tally_sync("lookup", "failed", Duration::from_millis(10));
        m.tally_sync("other", "skipped", Duration::from_millis(1));
        let (tallies, _) = m.take_sync_tallies();
        let lookup = &tallies["lookup"];
        assert_eq!((lookup.runs, lookup.failed, lookup.skipped), (2, 1, 0));
        assert_eq!(lookup.total, Duration::from_millis(14));
        assert_eq!(lookup.max, Duration::from_millis(10));
        assert_eq!(tallies["other"].skipped, 1);
        assert!(m.take_sync_tallies().0.is_empty(), "taken");
    }

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.count_http("/inventory", 202);
        m.count_http("/inventory", 202);
        m.count_run("stock\"changed", "succeeded");
        m.observe_step("f", "adjust", Duration::from_millis(30));
        let text = m.render();
        assert!(
            text.contains("flow_http_requests_total{route=\"/inventory\",status=\"202\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("flow_runs_total{flow=\"stock\\\"changed\",outcome=\"succeeded\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "flow_step_duration_seconds_bucket{flow=\"f\",step=\"adjust\",le=\"0.025\"} 0\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "flow_step_duration_seconds_bucket{flow=\"f\",step=\"adjust\",le=\"0.05\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("flow_step_duration_seconds_count{flow=\"f\",step=\"adjust\"} 1\n"),
            "{text}"
        );
    }
}
