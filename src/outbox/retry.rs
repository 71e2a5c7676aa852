//! Exponential, capped, jittered backoff.

use crate::error::{Error, Result};
use chrono::{DateTime, Duration, Utc};
use rand::Rng;

/// Where a failed attempt goes. [`RetryPolicy::decide`] is the one rule that picks it, for the
/// stores' `mark_retry`, the worker loop and the SQL handed to Django alike.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FailureDecision {
    /// Back to `pending`, due at `at`.
    Retry { at: DateTime<Utc> },
    /// Dead-lettered as `failed`.
    DeadLetter,
}

/// `now + after` when that is a time the stores accept (see [`crate::validate::retry_time`]);
/// `None` (use the backoff) when it overflows or lies out of range, with a warning.
pub fn retry_at_after(now: DateTime<Utc>, after: std::time::Duration) -> Option<DateTime<Utc>> {
    let at = Duration::from_std(after)
        .ok()
        .and_then(|after| now.checked_add_signed(after))
        .filter(|at| crate::validate::retry_time(Some(*at)).is_ok());
    if at.is_none() {
        tracing::warn!(target: "headrace.worker", ?after, "retry_after out of range; using the retry policy's backoff");
    }
    at
}

/// How many times an item may be claimed and how long to wait between attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Claims allowed before an item is dead-lettered.
    pub max_attempts: i32,
    /// Delay after the first attempt, in seconds.
    pub base_seconds: f64,
    /// Growth of the delay per further attempt.
    pub factor: f64,
    /// Upper bound of the delay, in seconds.
    pub max_seconds: f64,
    /// Relative spread: the delay is multiplied by a random value in `[1 - jitter, 1 + jitter]`.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_seconds: 2.0,
            factor: 2.0,
            max_seconds: 3600.0,
            jitter: 0.1,
        }
    }
}

impl RetryPolicy {
    /// Checks the fields, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, value: f64, rule: &str| {
            Err(Error::config(format!(
                "RetryPolicy.{field} must be {rule}, got {value}"
            )))
        };
        if self.max_attempts < 1 {
            return bad("max_attempts", self.max_attempts as f64, ">= 1");
        }
        let max = crate::validate::MAX_DURATION_SECONDS;
        if !(self.base_seconds.is_finite() && (0.0..=max).contains(&self.base_seconds)) {
            return bad(
                "base_seconds",
                self.base_seconds,
                "a finite number >= 0 (at most 100 years)",
            );
        }
        if !(self.factor.is_finite() && self.factor >= 1.0) {
            return bad("factor", self.factor, "a finite number >= 1");
        }
        if !(self.max_seconds.is_finite() && (0.0..=max).contains(&self.max_seconds)) {
            return bad(
                "max_seconds",
                self.max_seconds,
                "a finite number >= 0 (at most 100 years)",
            );
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return bad("jitter", self.jitter, "between 0 and 1");
        }
        Ok(())
    }

    /// The un-jittered delay after attempt number `attempt` (1-based): `base * factor^(attempt-1)`, capped.
    pub fn nominal_delay_seconds(&self, attempt: i32) -> f64 {
        let exponent = (attempt.max(1) - 1).min(1024);
        (self.base_seconds * self.factor.powi(exponent)).min(self.max_seconds)
    }

    /// The delay after attempt number `attempt`, with jitter applied.
    pub fn delay(&self, attempt: i32) -> Duration {
        let nominal = self.nominal_delay_seconds(attempt);
        let spread = if self.jitter > 0.0 {
            rand::rng().random_range(1.0 - self.jitter..=1.0 + self.jitter)
        } else {
            1.0
        };
        Duration::microseconds((nominal * spread * 1_000_000.0).round() as i64)
    }

    /// The retry rule: a non-retryable failure, or one on the last allowed attempt
    /// (`attempts >= max_attempts`), dead-letters; any other failure runs again at `retry_at`
    /// when given, else after this policy's backoff from `now`.
    pub fn decide(
        &self,
        attempts: i32,
        max_attempts: i32,
        retryable: bool,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> FailureDecision {
        if !retryable || attempts >= max_attempts {
            return FailureDecision::DeadLetter;
        }
        FailureDecision::Retry {
            at: retry_at.unwrap_or_else(|| now + self.delay(attempts)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decide_dead_letters_permanent_failures_and_the_last_attempt() {
        let policy = RetryPolicy {
            base_seconds: 10.0,
            jitter: 0.0,
            ..Default::default()
        };
        let now = DateTime::<Utc>::from_timestamp(1_000, 0).unwrap();
        let later = now + Duration::seconds(99);
        assert_eq!(
            policy.decide(1, 3, true, None, now),
            FailureDecision::Retry {
                at: now + Duration::seconds(10)
            }
        );
        assert_eq!(
            policy.decide(2, 3, true, Some(later), now),
            FailureDecision::Retry { at: later }
        );
        assert_eq!(
            policy.decide(3, 3, true, Some(later), now),
            FailureDecision::DeadLetter
        );
        assert_eq!(
            policy.decide(1, 3, false, None, now),
            FailureDecision::DeadLetter
        );
    }

    #[test]
    fn delay_grows_exponentially_then_caps() {
        let policy = RetryPolicy {
            base_seconds: 2.0,
            factor: 3.0,
            max_seconds: 40.0,
            jitter: 0.0,
            ..Default::default()
        };
        let delays: Vec<f64> = (1..=5).map(|a| policy.delay(a).as_seconds_f64()).collect();
        assert_eq!(delays, vec![2.0, 6.0, 18.0, 40.0, 40.0]);
    }

    #[test]
    fn jitter_stays_within_its_band() {
        let policy = RetryPolicy {
            base_seconds: 10.0,
            jitter: 0.2,
            ..Default::default()
        };
        let delays: Vec<f64> = (0..200).map(|_| policy.delay(1).as_seconds_f64()).collect();
        assert!(
            delays.iter().all(|d| (8.0..=12.0).contains(d)),
            "{delays:?}"
        );
        assert!(
            delays.iter().any(|d| (d - 10.0).abs() > 0.01),
            "jitter never moved the delay"
        );
    }

    #[test]
    fn invalid_fields_are_named() {
        let err = RetryPolicy {
            factor: 0.5,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("factor"), "{err}");
        let err = RetryPolicy {
            max_attempts: 0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("max_attempts"), "{err}");
    }
}
