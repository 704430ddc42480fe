//! Counters and histograms of the runtime, served at `/_flow/metrics` in
//! the OpenMetrics text format.

use crate::core::sync::lock;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelValue, LabelValueEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Upper bounds (seconds) of the step duration histogram buckets.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug, Default, Clone)]
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

    /// The OpenMetrics text exposition (which Prometheus scrapes), encoded
    /// by `prometheus-client` from a snapshot: the counters themselves stay
    /// plain maps, updated on every request without allocating.
    pub fn render(&self) -> String {
        render_parts(vec![self.part(None)])
    }

    /// The metrics of several runtimes in one exposition (`serve
    /// --instances`): each instance's samples carry its name as the label
    /// `instance`; `unlabelled` (the process's own routes) carries none.
    pub fn render_instances(unlabelled: &Metrics, instances: &[(&str, &Metrics)]) -> String {
        let mut parts = vec![unlabelled.part(None)];
        parts.extend(instances.iter().map(|(name, m)| m.part(Some(name))));
        render_parts(parts)
    }

    fn part(&self, instance: Option<&str>) -> Part {
        Part {
            instance: instance.map(str::to_string),
            http: lock(&self.http).clone(),
            runs: lock(&self.runs).clone(),
            steps: lock(&self.steps).clone(),
        }
    }
}

fn render_parts(parts: Vec<Part>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot { parts }));
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// The metrics at one scrape, for [`Collector::encode`].
#[derive(Debug)]
struct Snapshot {
    parts: Vec<Part>,
}

/// One runtime's metrics at a scrape.
#[derive(Debug)]
struct Part {
    instance: Option<String>,
    http: BTreeMap<String, BTreeMap<u16, u64>>,
    runs: BTreeMap<String, BTreeMap<String, u64>>,
    steps: BTreeMap<String, BTreeMap<String, Histogram>>,
}

impl Part {
    /// `labels`, after the `instance` label if the part has one.
    fn labels<'a>(
        &'a self,
        labels: [(&'static str, &'a str); 2],
    ) -> Vec<(&'static str, Escaped<'a>)> {
        self.instance
            .as_deref()
            .map(|i| ("instance", i))
            .into_iter()
            .chain(labels)
            .map(|(k, v)| (k, Escaped(v)))
            .collect()
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut http = encoder.encode_descriptor(
            "flow_http_requests",
            "HTTP requests answered, by route and status.",
            None,
            MetricType::Counter,
        )?;
        for part in &self.parts {
            for (route, by_status) in &part.http {
                for (status, n) in by_status {
                    let status = status.to_string();
                    http.encode_family(&part.labels([("route", route), ("status", &status)]))?
                        .encode_counter::<NoLabelSet, _, u64>(n, None)?;
                }
            }
        }
        let mut runs = encoder.encode_descriptor(
            "flow_runs",
            "Finished runs, by flow and outcome.",
            None,
            MetricType::Counter,
        )?;
        for part in &self.parts {
            for (flow, by_outcome) in &part.runs {
                for (outcome, n) in by_outcome {
                    runs.encode_family(&part.labels([("flow", flow), ("outcome", outcome)]))?
                        .encode_counter::<NoLabelSet, _, u64>(n, None)?;
                }
            }
        }
        let mut steps = encoder.encode_descriptor(
            "flow_step_duration",
            "Duration of step attempts, by flow and step.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for part in &self.parts {
            for (flow, by_step) in &part.steps {
                for (step, h) in by_step {
                    steps
                        .encode_family(&part.labels([("flow", flow), ("step", step)]))?
                        .encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets(), None)?;
                }
            }
        }
        Ok(())
    }
}

impl Histogram {
    /// The count of each bucket alone (the encoder sums them up), the last
    /// one `+Inf` (`f64::MAX` to the encoder).
    fn buckets(&self) -> Vec<(f64, u64)> {
        let mut below = 0;
        let mut buckets: Vec<(f64, u64)> = BUCKETS
            .iter()
            .zip(self.counts)
            .map(|(bound, cumulative)| {
                let alone = cumulative - below;
                below = cumulative;
                (*bound, alone)
            })
            .collect();
        buckets.push((f64::MAX, self.count - below));
        buckets
    }
}

/// A label value escaped as the text format requires (`\`, `"` and line
/// breaks), which `prometheus-client` 0.24 leaves to its caller.
struct Escaped<'a>(&'a str);

impl EncodeLabelValue for Escaped<'_> {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write as _;
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
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
                "flow_step_duration_seconds_bucket{le=\"0.025\",flow=\"f\",step=\"adjust\"} 0\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "flow_step_duration_seconds_bucket{le=\"0.05\",flow=\"f\",step=\"adjust\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("flow_step_duration_seconds_count{flow=\"f\",step=\"adjust\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "flow_step_duration_seconds_bucket{le=\"+Inf\",flow=\"f\",step=\"adjust\"} 1\n"
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE flow_runs counter\n"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
