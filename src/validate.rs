//! The one check of caller-supplied values, shared by every store so SQLite and PostgreSQL
//! accept and refuse exactly the same inputs.
//!
//! - Durations are finite, non-negative and at most [`MAX_DURATION_YEARS`] years, so adding one
//!   to "now" can never overflow or land past year 9999.
//! - Times fall in years 1–9999, the range every reader (Python's `datetime`, the CLI, both
//!   databases) can represent.
//! - Strings stored as text hold no NUL byte (PostgreSQL refuses them) and keys stay below
//!   [`MAX_KEY_BYTES`] (PostgreSQL cannot index longer ones); JSON bound for `jsonb` holds no
//!   `\u0000` escape.
//! - Free text that a failure produces (handler errors) is cleaned instead of refused, so an
//!   acknowledgement never fails because of what a handler raised.

use crate::error::{Error, Result};
use chrono::{DateTime, Datelike, Duration, Utc};

/// Longest accepted duration (delays, leases, thresholds, timeouts, backoff caps), in years.
pub const MAX_DURATION_YEARS: i64 = 100;

/// Longest accepted duration in seconds (100 years of 365.25 days).
pub const MAX_DURATION_SECONDS: f64 = MAX_DURATION_YEARS as f64 * 365.25 * 86_400.0;

/// Largest accepted key (topic, dedupe key, worker id, trace id, identifiers), in UTF-8 bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// Longest stored error text, in UTF-8 bytes; longer text is cut (at a character boundary).
pub const MAX_ERROR_BYTES: usize = 64 * 1024;

/// Converts `value` seconds given by a caller into a duration, naming `what` when it is not a
/// finite number in `[0 (or > 0), 100 years]`.
pub fn seconds(what: &str, value: f64, allow_zero: bool) -> Result<Duration> {
    let positive = value > 0.0 || (allow_zero && value == 0.0);
    if !(value.is_finite() && positive) {
        let bound = if allow_zero { ">= 0" } else { "> 0" };
        return Err(Error::config(format!(
            "{what} must be a finite number {bound} (seconds), got {value}"
        )));
    }
    if value > MAX_DURATION_SECONDS {
        return Err(Error::config(format!(
            "{what} is {value} seconds, over the maximum of {MAX_DURATION_YEARS} years \
             ({MAX_DURATION_SECONDS} seconds)"
        )));
    }
    Ok(Duration::microseconds((value * 1_000_000.0).round() as i64))
}

/// Seconds at or above which a number given for a point in time (`run_at`, `due_by`,
/// `next_attempt`) is refused: 10^9 seconds (31.7 years) ahead, the size of every Unix
/// timestamp since September 2001. See [`seconds_from_now`].
pub const UNIX_TIMESTAMP_FLOOR: f64 = 1e9;

/// A point in time given as a number: the one rule is that a number is seconds from the store's
/// clock's now (never a Unix timestamp). A number of [`UNIX_TIMESTAMP_FLOOR`] or more is
/// refused because it is almost surely a Unix timestamp (`time.time()`) that would otherwise
/// land decades ahead; the error says to pass an aware datetime instead.
pub fn seconds_from_now(what: &str, value: f64) -> Result<Duration> {
    if value.is_finite() && value >= UNIX_TIMESTAMP_FLOOR {
        return Err(Error::config(format!(
            "{what}={value} looks like a Unix timestamp, but a number here means seconds from \
             now ({:.1} years ahead): pass a timezone-aware datetime \
             (datetime.fromtimestamp(ts, timezone.utc)) or a delay under {UNIX_TIMESTAMP_FLOOR:e} \
             seconds",
            value / (365.25 * 86_400.0)
        )));
    }
    seconds(what, value, true)
}

/// Checks that a duration built in the core stays within 0..=100 years.
pub fn duration(what: &str, value: Duration) -> Result<Duration> {
    seconds(what, value.as_seconds_f64(), true).map(|_| value)
}

/// Checks that `value` lies in years 1–9999, naming `what` when it does not.
pub fn time(what: &str, value: DateTime<Utc>) -> Result<DateTime<Utc>> {
    if (1..=9999).contains(&value.year()) {
        Ok(value)
    } else {
        Err(Error::config(format!(
            "{what} is {value}, outside years 1-9999 (the range Python's datetime and both \
             databases can hold)"
        )))
    }
}

/// `now + by`, refused (never overflowing) when it would leave years 1–9999.
pub fn after(what: &str, now: DateTime<Utc>, by: Duration) -> Result<DateTime<Utc>> {
    let at = now
        .checked_add_signed(by)
        .ok_or_else(|| Error::config(format!("{what}: now + {by} is out of range")))?;
    time(what, at)
}

/// `now - by`, clamped to year 1 instead of overflowing (for "older than" cut-offs).
pub fn before(now: DateTime<Utc>, by: Duration) -> DateTime<Utc> {
    let floor = DateTime::<Utc>::from_timestamp(-62_135_596_800, 0).expect("year 1 exists");
    now.checked_sub_signed(by).map_or(floor, |t| t.max(floor))
}

/// The expiry of a lease of `by` taken at `now`: `by` must be > 0 and at most 100 years.
pub fn lease_expiry(now: DateTime<Utc>, by: Duration) -> Result<DateTime<Utc>> {
    if by <= Duration::zero() {
        return Err(Error::config(format!(
            "lease seconds must be > 0, got {}",
            by.as_seconds_f64()
        )));
    }
    duration("lease seconds", by)?;
    after("lease expiry", now, by)
}

/// Checks an explicit retry time (years 1–9999).
pub fn retry_time(at: Option<DateTime<Utc>>) -> Result<()> {
    at.map_or(Ok(()), |at| time("retry_at", at).map(|_| ()))
}

/// Checks text stored in a text column: no NUL byte, at most `max_bytes`.
pub fn text(what: &str, value: &str, max_bytes: usize) -> Result<()> {
    if let Some(at) = value.find('\0') {
        return Err(Error::config(format!(
            "{what} contains a NUL byte (at byte {at}): text columns cannot store it on \
             PostgreSQL, so it is refused on every database"
        )));
    }
    if value.len() > max_bytes {
        return Err(Error::config(format!(
            "{what} is {} bytes, over the maximum of {max_bytes} bytes",
            value.len()
        )));
    }
    Ok(())
}

/// Checks a key: non-empty (not only whitespace), no NUL byte, at most [`MAX_KEY_BYTES`].
pub fn key(what: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::config(format!(
            "{what} must be a non-empty string, got {value:?}"
        )));
    }
    text(what, value, MAX_KEY_BYTES)
}

/// Checks an optional key (see [`key`]): `None` passes, `Some("")` does not.
pub fn optional_key(what: &str, value: Option<&str>) -> Result<()> {
    value.map_or(Ok(()), |v| key(what, v))
}

/// Checks JSON text bound for a `jsonb` column: no `\u0000` escape (PostgreSQL's jsonb refuses
/// it). Raw NUL bytes cannot occur in valid JSON text, but are refused too.
pub fn jsonb(what: &str, json: &str) -> Result<()> {
    if json.contains('\0') || has_nul_escape(json) {
        return Err(Error::config(format!(
            "{what} contains a NUL character (\\u0000), which PostgreSQL's jsonb cannot store: \
             remove it or encode the data (base64, say)"
        )));
    }
    Ok(())
}

/// Whether JSON text holds a `\u0000` escape (an escaped backslash followed by `u0000` does not count).
pub fn has_nul_escape(json: &str) -> bool {
    let bytes = json.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if bytes.get(i + 1) == Some(&b'u') && bytes.get(i + 2..i + 6) == Some(b"0000") {
                return true;
            }
            i += 2; // skip the escaped character, whatever it is
        } else {
            i += 1;
        }
    }
    false
}

/// Error text made storable: NUL bytes replaced by U+FFFD and cut to [`MAX_ERROR_BYTES`].
pub fn error_text(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains('\0') && value.len() <= MAX_ERROR_BYTES {
        return std::borrow::Cow::Borrowed(value);
    }
    let mut cleaned = value.replace('\0', "\u{FFFD}");
    if cleaned.len() > MAX_ERROR_BYTES {
        let mut end = MAX_ERROR_BYTES - "… (truncated)".len();
        while !cleaned.is_char_boundary(end) {
            end -= 1;
        }
        cleaned.truncate(end);
        cleaned.push_str("… (truncated)");
    }
    std::borrow::Cow::Owned(cleaned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_bounded_to_a_hundred_years() {
        assert_eq!(
            seconds("x", 1.5, false).unwrap(),
            Duration::milliseconds(1500)
        );
        assert_eq!(seconds("x", 0.0, true).unwrap(), Duration::zero());
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e12, 1e17, 1e300] {
            let err = seconds("delay_seconds", bad, false).unwrap_err();
            assert_eq!(err.code(), "config_error");
            assert!(err.to_string().contains("delay_seconds"), "{err}");
        }
        assert!(seconds("x", MAX_DURATION_SECONDS, false).is_ok());
    }

    #[test]
    fn numbers_for_points_in_time_are_seconds_from_now_never_unix_timestamps() {
        assert_eq!(
            seconds_from_now("run_at", 5.0).unwrap(),
            Duration::seconds(5)
        );
        let err = seconds_from_now("run_at", 1_796_000_000.5).unwrap_err();
        assert_eq!(err.code(), "config_error");
        let text = err.to_string();
        assert!(text.contains("run_at=1796000000.5"), "{text}");
        assert!(text.contains("Unix timestamp"), "{text}");
        assert!(seconds_from_now("run_at", -1.0).is_err());
        assert!(seconds_from_now("run_at", f64::NAN).is_err());
    }

    #[test]
    fn times_stay_in_years_one_to_9999() {
        let now = Utc::now();
        assert!(after("run_at", now, Duration::days(365 * 100)).is_ok());
        let far = DateTime::<Utc>::from_timestamp(1_000_000_000_000, 0).unwrap();
        assert!(
            time("run_at", far)
                .unwrap_err()
                .to_string()
                .contains("run_at")
        );
        assert!(after("run_at", now, Duration::MAX).is_err());
        assert_eq!(before(now, Duration::MAX).year(), 1);
    }

    #[test]
    fn keys_refuse_empty_nul_and_oversized_values() {
        assert!(key("dedupe_key", "order-1").is_ok());
        for bad in ["", "  ", "a\0b"] {
            assert!(key("dedupe_key", bad).is_err(), "{bad:?}");
        }
        let huge = "k".repeat(1024 * 1024);
        let err = key("dedupe_key", &huge).unwrap_err();
        assert!(err.to_string().contains("1048576 bytes"), "{err}");
        assert!(optional_key("trace_id", None).is_ok());
    }

    #[test]
    fn nul_escapes_are_found_but_escaped_backslashes_are_not() {
        assert!(has_nul_escape(r#"{"a":"x\u0000y"}"#));
        assert!(!has_nul_escape(r#"{"a":"x\\u0000y"}"#));
        assert!(has_nul_escape(r#"{"a":"x\\\u0000y"}"#));
        assert!(!has_nul_escape(
            r#"{"a":"\u00001"}"#.replace("00001", "00a1").as_str()
        ));
        assert!(jsonb("payload", r#"{"a":"\u0000"}"#).is_err());
    }

    #[test]
    fn error_text_is_cleaned_not_refused() {
        assert_eq!(error_text("boom"), "boom");
        assert_eq!(error_text("a\0b"), "a\u{FFFD}b");
        let long = "é".repeat(MAX_ERROR_BYTES);
        let cut = error_text(&long);
        assert!(cut.len() <= MAX_ERROR_BYTES && cut.ends_with("(truncated)"));
    }
}
