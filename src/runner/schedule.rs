//! When a policy runs: a 5-field cron expression (UTC), or no schedule at all (run once, now).

use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A policy's schedule.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// No schedule: the policy runs once, as soon as it starts.
    Once,
    /// Standard 5-field cron (`minute hour day-of-month month day-of-week`, or an `@hourly`-style
    /// nickname), evaluated in UTC.
    Cron { expression: String, cron: Box<Cron> },
}

impl Schedule {
    /// Parses an optional schedule; `None` or an empty string is [`Schedule::Once`].
    pub fn parse(raw: Option<&str>) -> Result<Schedule> {
        let Some(raw) = raw.map(str::trim).filter(|s| !s.is_empty()) else {
            return Ok(Schedule::Once);
        };
        if !raw.starts_with('@') {
            let fields = raw.split_whitespace().count();
            if fields != 5 {
                return Err(Error::config(format!(
                    "invalid cron schedule {raw:?}: expected 5 fields (minute hour day-of-month month day-of-week), got {fields}"
                )));
            }
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(raw)
            .map_err(|e| Error::config(format!("invalid cron schedule {raw:?}: {e}")))?;
        Ok(Schedule::Cron {
            expression: raw.to_string(),
            cron: Box::new(cron),
        })
    }

    /// The first fire time strictly after `after`, or `None` for [`Schedule::Once`] (and for a
    /// cron expression that never fires again).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Once => None,
            Schedule::Cron { cron, .. } => cron.find_next_occurrence(&after, false).ok(),
        }
    }

    /// The expression as written (`None` for [`Schedule::Once`]).
    pub fn expression(&self) -> Option<&str> {
        match self {
            Schedule::Once => None,
            Schedule::Cron { expression, .. } => Some(expression),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 1, h, m, s).unwrap()
    }

    #[test]
    fn no_schedule_runs_once() {
        assert!(matches!(Schedule::parse(None).unwrap(), Schedule::Once));
        assert!(matches!(
            Schedule::parse(Some("  ")).unwrap(),
            Schedule::Once
        ));
        assert_eq!(Schedule::Once.next_after(at(0, 0, 0)), None);
    }

    #[test]
    fn five_field_cron_fires_strictly_after() {
        let s = Schedule::parse(Some("*/15 * * * *")).unwrap();
        assert_eq!(s.expression(), Some("*/15 * * * *"));
        assert_eq!(s.next_after(at(10, 0, 0)), Some(at(10, 15, 0)));
        assert_eq!(s.next_after(at(10, 14, 59)), Some(at(10, 15, 0)));
        let daily = Schedule::parse(Some("30 2 * * *")).unwrap();
        assert_eq!(daily.next_after(at(1, 0, 0)), Some(at(2, 30, 0)));
        let hourly = Schedule::parse(Some("@hourly")).unwrap();
        assert_eq!(hourly.next_after(at(1, 5, 0)), Some(at(2, 0, 0)));
    }

    #[test]
    fn bad_schedules_are_config_errors_naming_the_expression() {
        for bad in [
            "* * * *",
            "0 * * * * *",
            "61 * * * *",
            "nonsense here a b c",
            "* * 32 * *",
        ] {
            let err = Schedule::parse(Some(bad)).unwrap_err();
            assert_eq!(err.code(), "config_error", "{bad}");
            assert!(err.to_string().contains(bad), "{err}");
        }
    }
}
