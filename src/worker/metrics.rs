//! Worker metrics: per-topic counters and latency summaries, rendered as Prometheus text.

use super::Settled;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Counters of one topic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicCounts {
    pub claimed: u64,
    pub completed: u64,
    pub retried: u64,
    pub failed: u64,
}

/// A running sum and count of durations (a Prometheus summary without quantiles).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub sum_seconds: f64,
    pub max_seconds: f64,
}

impl Latency {
    fn observe(&mut self, elapsed: Duration) {
        let s = elapsed.as_secs_f64();
        self.count += 1;
        self.sum_seconds += s;
        self.max_seconds = self.max_seconds.max(s);
    }
}

#[derive(Debug, Default)]
struct Inner {
    topics: BTreeMap<String, TopicCounts>,
    claim: Latency,
    handler: BTreeMap<String, Latency>,
}

/// Metrics of one worker (cheap to update; read with [`WorkerMetrics::render_prometheus`]).
#[derive(Debug, Default)]
pub struct WorkerMetrics {
    inner: Mutex<Inner>,
}

impl WorkerMetrics {
    pub(crate) fn record_claim(&self, elapsed: Duration, topics: &[&str]) {
        let mut inner = self.inner.lock().expect("metrics poisoned");
        inner.claim.observe(elapsed);
        for topic in topics {
            inner
                .topics
                .entry((*topic).to_string())
                .or_default()
                .claimed += 1;
        }
    }

    pub(crate) fn record_batch(
        &self,
        topic_outcomes: &[(&str, Settled)],
        handler_elapsed: Duration,
    ) {
        let mut inner = self.inner.lock().expect("metrics poisoned");
        let per_item = handler_elapsed / topic_outcomes.len().max(1) as u32;
        for (topic, outcome) in topic_outcomes {
            let counts = inner.topics.entry((*topic).to_string()).or_default();
            match outcome {
                Settled::Completed => counts.completed += 1,
                Settled::Retried => counts.retried += 1,
                Settled::Failed => counts.failed += 1,
                Settled::Released => {}
            }
            inner
                .handler
                .entry((*topic).to_string())
                .or_default()
                .observe(per_item);
        }
    }

    /// Counters per topic.
    pub fn topic_counts(&self) -> BTreeMap<String, TopicCounts> {
        self.inner.lock().expect("metrics poisoned").topics.clone()
    }

    /// Claim latency so far.
    pub fn claim_latency(&self) -> Latency {
        self.inner.lock().expect("metrics poisoned").claim
    }

    /// The metrics in the Prometheus text exposition format.
    pub fn render_prometheus(&self) -> String {
        let inner = self.inner.lock().expect("metrics poisoned");
        let mut out = String::new();
        for (name, help, pick) in [
            (
                "claimed",
                "Items claimed",
                (|c: &TopicCounts| c.claimed) as fn(&TopicCounts) -> u64,
            ),
            ("completed", "Items completed", |c| c.completed),
            ("retried", "Items returned for another attempt", |c| {
                c.retried
            }),
            ("failed", "Items dead-lettered", |c| c.failed),
        ] {
            let _ = writeln!(out, "# HELP headrace_outbox_items_{name}_total {help}.");
            let _ = writeln!(out, "# TYPE headrace_outbox_items_{name}_total counter");
            for (topic, counts) in &inner.topics {
                let _ = writeln!(
                    out,
                    "headrace_outbox_items_{name}_total{{topic=\"{}\"}} {}",
                    escape_label(topic),
                    pick(counts)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP headrace_outbox_claim_seconds Time spent claiming batches."
        );
        let _ = writeln!(out, "# TYPE headrace_outbox_claim_seconds summary");
        let _ = writeln!(
            out,
            "headrace_outbox_claim_seconds_sum {}",
            inner.claim.sum_seconds
        );
        let _ = writeln!(
            out,
            "headrace_outbox_claim_seconds_count {}",
            inner.claim.count
        );
        let _ = writeln!(
            out,
            "# HELP headrace_outbox_handler_seconds Time handlers spent per item."
        );
        let _ = writeln!(out, "# TYPE headrace_outbox_handler_seconds summary");
        for (topic, latency) in &inner.handler {
            let label = escape_label(topic);
            let _ = writeln!(
                out,
                "headrace_outbox_handler_seconds_sum{{topic=\"{label}\"}} {}",
                latency.sum_seconds
            );
            let _ = writeln!(
                out,
                "headrace_outbox_handler_seconds_count{{topic=\"{label}\"}} {}",
                latency.count
            );
        }
        out
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
