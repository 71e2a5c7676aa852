//! Policy-run metrics: executions per policy and outcome, backend run time, skipped ticks.

use super::executor::RunEvent;
use super::run::RunStatus;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// What one policy's runs came to, counted in this process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PolicyCounts {
    pub completed: u64,
    pub failed: u64,
    /// Schedule ticks skipped because the previous run was still going.
    pub ticks_skipped: u64,
    /// Total wall time of finished runs (creation to completion), in seconds.
    pub run_seconds: f64,
}

/// Run metrics of one executor (all of a manager's policies).
#[derive(Debug, Default)]
pub struct RunMetrics {
    policies: Mutex<BTreeMap<String, PolicyCounts>>,
}

impl RunMetrics {
    pub(crate) fn record(&self, event: &RunEvent) {
        let mut policies = self.policies.lock().expect("run metrics poisoned");
        match event {
            RunEvent::Finished(run) => {
                let counts = policies.entry(run.policy_id.clone()).or_default();
                match run.status {
                    RunStatus::Completed => counts.completed += 1,
                    RunStatus::Failed => counts.failed += 1,
                    RunStatus::Running => {}
                }
                let took = (run.updated_at - run.created_at)
                    .to_std()
                    .unwrap_or_default();
                counts.run_seconds += took.as_secs_f64();
            }
            RunEvent::TickSkipped { policy } => {
                policies.entry(policy.clone()).or_default().ticks_skipped += 1;
            }
        }
    }

    /// Counts per policy so far.
    pub fn snapshot(&self) -> BTreeMap<String, PolicyCounts> {
        self.policies.lock().expect("run metrics poisoned").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::run::{Run, RunSource};
    use chrono::{Duration, Utc};

    fn run(status: RunStatus, seconds: i64) -> Run {
        let created_at = Utc::now();
        Run {
            id: "r".into(),
            policy_id: "p".into(),
            status,
            reason: None,
            entity_count: 0,
            metadata: Default::default(),
            source: RunSource::Schedule,
            created_at,
            updated_at: created_at + Duration::seconds(seconds),
        }
    }

    #[test]
    fn finished_runs_and_skipped_ticks_are_counted_per_policy() {
        let metrics = RunMetrics::default();
        metrics.record(&RunEvent::Finished(run(RunStatus::Completed, 2)));
        metrics.record(&RunEvent::Finished(run(RunStatus::Failed, 3)));
        metrics.record(&RunEvent::TickSkipped { policy: "p".into() });
        let counts = metrics.snapshot()["p"];
        assert_eq!(
            (counts.completed, counts.failed, counts.ticks_skipped),
            (1, 1, 1)
        );
        assert_eq!(counts.run_seconds, 5.0);
    }
}
