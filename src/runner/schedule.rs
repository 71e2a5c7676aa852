//! When a policy runs: a 5-field cron expression, or no schedule at all (run once, now).
//!
//! A policy's cron follows the worker's local time zone (the `TZ` environment variable, else
//! the system's), as orb-worker's scheduler does, unless its config names a zone: `timezone:
//! UTC` or an IANA name such as `Europe/Berlin` (daylight-saving changes included).

use crate::error::{Error, Result};
use chrono::{DateTime, Local, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A policy's schedule.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// No schedule: the policy runs once, as soon as it starts.
    Once,
    /// Standard 5-field cron (`minute hour day-of-month month day-of-week`, or an `@hourly`-style
    /// nickname), evaluated in `zone`.
    Cron {
        expression: String,
        cron: Box<Cron>,
        zone: CronZone,
    },
}

/// The time zone a cron expression is evaluated in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CronZone {
    /// UTC.
    Utc,
    /// The process's local zone (`TZ`, else the system's).
    Local,
    /// A named IANA zone (`Europe/Berlin`), with its daylight-saving rules.
    Named(chrono_tz::Tz),
}

impl CronZone {
    /// A policy's `timezone` setting: absent or `"local"` → [`CronZone::Local`], `"UTC"` →
    /// [`CronZone::Utc`] (both case-insensitive), an IANA name (`"America/New_York"`, exact
    /// case) → [`CronZone::Named`]; anything else is a `ConfigError` naming the value.
    pub fn parse(raw: Option<&str>) -> Result<CronZone> {
        match raw.map(str::trim) {
            None => Ok(CronZone::Local),
            Some(z) if z.eq_ignore_ascii_case("local") => Ok(CronZone::Local),
            Some(z) if z.eq_ignore_ascii_case("utc") => Ok(CronZone::Utc),
            Some(name) => name
                .parse::<chrono_tz::Tz>()
                .map(CronZone::Named)
                .map_err(|_| {
                    Error::config(format!(
                        "timezone {name:?} is not a known IANA time zone: use a name such as \
                     \"Europe/Berlin\", \"UTC\", or \"local\" (the default: the worker's TZ)"
                    ))
                }),
        }
    }
}

impl Schedule {
    /// Parses an optional schedule evaluated in UTC; `None` or an empty string is
    /// [`Schedule::Once`].
    pub fn parse(raw: Option<&str>) -> Result<Schedule> {
        Self::parse_in(raw, CronZone::Utc)
    }

    /// Parses an optional schedule evaluated in `zone`.
    pub fn parse_in(raw: Option<&str>, zone: CronZone) -> Result<Schedule> {
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
        if cron.find_next_occurrence(&Utc::now(), false).is_err() {
            return Err(Error::config(format!(
                "cron schedule {raw:?} never fires (no date matches it, e.g. February 31st): \
                 check the day-of-month and month fields"
            )));
        }
        Ok(Schedule::Cron {
            expression: raw.to_string(),
            cron: Box::new(cron),
            zone,
        })
    }

    /// The first fire time strictly after `after`, or `None` for [`Schedule::Once`] (and for a
    /// cron expression that never fires again).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Once => None,
            Schedule::Cron {
                cron,
                zone: CronZone::Utc,
                ..
            } => cron.find_next_occurrence(&after, false).ok(),
            Schedule::Cron {
                cron,
                zone: CronZone::Local,
                ..
            } => cron
                .find_next_occurrence(&after.with_timezone(&Local), false)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            Schedule::Cron {
                cron,
                zone: CronZone::Named(tz),
                ..
            } => cron
                .find_next_occurrence(&after.with_timezone(tz), false)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
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
    fn a_cron_that_never_fires_is_refused() {
        for never in ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4,6,9,11 *"] {
            let err = Schedule::parse(Some(never)).unwrap_err();
            assert_eq!(err.code(), "config_error");
            assert!(err.to_string().contains("never fires"), "{err}");
        }
        assert!(
            Schedule::parse(Some("0 0 29 2 *")).is_ok(),
            "leap days do fire"
        );
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
    fn zones_parse_and_local_agrees_with_chrono_local() {
        assert_eq!(CronZone::parse(None).unwrap(), CronZone::Local);
        assert_eq!(CronZone::parse(Some("utc")).unwrap(), CronZone::Utc);
        assert_eq!(
            CronZone::parse(Some("Mars/Base")).unwrap_err().code(),
            "config_error"
        );
        let local = Schedule::parse_in(Some("30 2 * * *"), CronZone::Local).unwrap();
        let next = local.next_after(at(0, 0, 0)).unwrap().with_timezone(&Local);
        assert_eq!(next.format("%H:%M").to_string(), "02:30");
    }

    #[test]
    fn named_zones_follow_their_daylight_saving_rules() {
        let zone = CronZone::parse(Some("America/New_York")).unwrap();
        assert_eq!(zone, CronZone::Named(chrono_tz::America::New_York));
        let nine = Schedule::parse_in(Some("0 9 * * *"), zone).unwrap();
        // 09:00 in New York is 14:00 UTC in winter (EST) and 13:00 UTC in summer (EDT).
        assert_eq!(nine.next_after(at(0, 0, 0)), Some(at(14, 0, 0)));
        let july = Utc.with_ymd_and_hms(2030, 7, 1, 0, 0, 0).unwrap();
        assert_eq!(
            nine.next_after(july),
            Some(Utc.with_ymd_and_hms(2030, 7, 1, 13, 0, 0).unwrap())
        );
        let err = CronZone::parse(Some("europe/nowhere")).unwrap_err();
        assert_eq!(err.code(), "config_error");
        assert!(err.to_string().contains("\"europe/nowhere\""), "{err}");
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
