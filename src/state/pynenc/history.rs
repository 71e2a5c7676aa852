//! One entry of a pynenc invocation's history, read and written in pynenc 0.4's JSON format
//! (`InvocationHistory.to_json`); the seed-era format (pynenc ≤ 0.0.24) is read too.

use super::status::PynencStatus;
use crate::error::{Error, Result};
use chrono::{DateTime, FixedOffset, NaiveDateTime, Timelike};
use serde::Deserialize;

/// A history entry: when, which status record, which runner context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub invocation_id: String,
    /// The entry's time, microseconds since the Unix epoch (UTC).
    pub timestamp_us: i64,
    /// The UTC offset the time was written with, in seconds; `None` for a naive time (which
    /// pynenc reads as UTC).
    pub utc_offset: Option<i32>,
    pub status: PynencStatus,
    /// The owner in the status record.
    pub status_runner_id: Option<String>,
    /// The status record's own timestamp, as written (ISO 8601).
    pub status_timestamp: String,
    pub runner_context_id: String,
    pub registered_by_inv_id: Option<String>,
}

#[derive(Deserialize)]
struct StatusRecordJson {
    status: String,
    #[serde(default)]
    runner_id: Option<String>,
    timestamp: String,
}

/// Either format: pynenc 0.4 (`status_record`, `runner_context_id`) or seed-era (`status`,
/// `execution_context`, with `_timestamp` or `timestamp`).
#[derive(Deserialize)]
struct AnyHistoryJson {
    invocation_id: String,
    #[serde(rename = "_timestamp", alias = "timestamp")]
    timestamp: String,
    #[serde(default)]
    status_record: Option<StatusRecordJson>,
    #[serde(default)]
    runner_context_id: Option<String>,
    #[serde(default)]
    registered_by_inv_id: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

impl HistoryEntry {
    /// Parses pynenc 0.4's `InvocationHistory.to_json()`, or the seed-era form
    /// `{"invocation_id", "_timestamp", "status", "execution_context"}` (its status becomes the
    /// status record, with no owner and the entry's time; its runner context id is empty).
    pub fn from_json(text: &str) -> Result<Self> {
        let json: AnyHistoryJson = serde_json::from_str(text).map_err(|e| {
            Error::config(format!(
                "malformed pynenc InvocationHistory JSON: {e}: {}",
                preview(text)
            ))
        })?;
        if json.invocation_id.trim().is_empty() {
            return Err(Error::config(
                "history invocation_id must be a non-empty string",
            ));
        }
        let (timestamp_us, utc_offset) = parse_iso(&json.timestamp)?;
        let entry = match json.status_record {
            Some(record) => {
                parse_iso(&record.timestamp)?;
                HistoryEntry {
                    invocation_id: json.invocation_id,
                    timestamp_us,
                    utc_offset,
                    status: record.status.parse()?,
                    status_runner_id: record.runner_id,
                    status_timestamp: record.timestamp,
                    runner_context_id: json.runner_context_id.ok_or_else(|| {
                        Error::config(format!(
                            "pynenc InvocationHistory JSON has no runner_context_id: {}",
                            preview(text)
                        ))
                    })?,
                    registered_by_inv_id: json.registered_by_inv_id,
                }
            }
            None => {
                let status = json.status.ok_or_else(|| {
                    Error::config(format!(
                        "history entry {:?} has no status: pynenc 0.4 records a status with every \
                         entry, so a seed-era entry without one cannot be stored",
                        json.invocation_id
                    ))
                })?;
                HistoryEntry {
                    invocation_id: json.invocation_id,
                    timestamp_us,
                    utc_offset,
                    status: status.parse()?,
                    status_runner_id: None,
                    status_timestamp: json.timestamp,
                    runner_context_id: json.runner_context_id.unwrap_or_default(),
                    registered_by_inv_id: json.registered_by_inv_id,
                }
            }
        };
        Ok(entry)
    }

    /// The entry in pynenc 0.4's format, byte for byte what `InvocationHistory.to_json()` writes.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(256);
        out.push_str("{\"invocation_id\": ");
        push_json_str(&mut out, &self.invocation_id);
        out.push_str(", \"_timestamp\": ");
        push_json_str(&mut out, &format_iso(self.timestamp_us, self.utc_offset));
        out.push_str(", \"status_record\": {\"status\": ");
        push_json_str(&mut out, self.status.as_str());
        out.push_str(", \"runner_id\": ");
        push_json_opt(&mut out, self.status_runner_id.as_deref());
        out.push_str(", \"timestamp\": ");
        push_json_str(&mut out, &self.status_timestamp);
        out.push_str("}, \"runner_context_id\": ");
        push_json_str(&mut out, &self.runner_context_id);
        out.push_str(", \"registered_by_inv_id\": ");
        push_json_opt(&mut out, self.registered_by_inv_id.as_deref());
        out.push('}');
        out
    }
}

/// Parses an ISO 8601 time as Python's `datetime.fromisoformat` writes it: with an offset
/// (`+02:00`, `Z`) or naive. Returns microseconds since the epoch (naive read as UTC) and the
/// offset in seconds (`None` when naive).
pub fn parse_iso(text: &str) -> Result<(i64, Option<i32>)> {
    let normalized = text.replacen(' ', "T", 1);
    if let Ok(aware) = DateTime::parse_from_rfc3339(&normalized) {
        return Ok((
            aware.timestamp_micros(),
            Some(aware.offset().local_minus_utc()),
        ));
    }
    if let Ok(aware) =
        DateTime::<FixedOffset>::parse_from_str(&normalized, "%Y-%m-%dT%H:%M:%S%.f%:z")
    {
        return Ok((
            aware.timestamp_micros(),
            Some(aware.offset().local_minus_utc()),
        ));
    }
    NaiveDateTime::parse_from_str(&normalized, "%Y-%m-%dT%H:%M:%S%.f")
        .map(|naive| (naive.and_utc().timestamp_micros(), None))
        .map_err(|e| {
            Error::config(format!(
                "malformed timestamp {text:?}: {e} (expected ISO 8601, e.g. 2030-01-01T12:00:00+00:00)"
            ))
        })
}

/// Writes a time like Python's `datetime.isoformat()`: microseconds only when non-zero, the
/// `±HH:MM` offset only for an aware time.
pub fn format_iso(timestamp_us: i64, utc_offset: Option<i32>) -> String {
    let utc = DateTime::from_timestamp_micros(timestamp_us).unwrap_or_default();
    let offset = FixedOffset::east_opt(utc_offset.unwrap_or(0))
        .unwrap_or(FixedOffset::east_opt(0).expect("zero offset"));
    let local = utc.with_timezone(&offset);
    let mut text = local.format("%Y-%m-%dT%H:%M:%S").to_string();
    let micros = local.nanosecond() / 1000;
    if micros != 0 {
        text.push_str(&format!(".{micros:06}"));
    }
    if utc_offset.is_some() {
        text.push_str(&local.format("%:z").to_string());
    }
    text
}

fn push_json_str(out: &mut String, value: &str) {
    // Python's json.dumps escapes every non-ASCII character (ensure_ascii=True).
    out.push('"');
    for ch in value.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn push_json_opt(out: &mut String, value: Option<&str>) {
    match value {
        Some(v) => push_json_str(out, v),
        None => out.push_str("null"),
    }
}

fn preview(text: &str) -> String {
    let mut shown: String = text.chars().take(80).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    format!("{shown:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PYNENC: &str = r#"{"invocation_id": "inv-1", "_timestamp": "2030-01-02T03:04:05.000007+02:00", "status_record": {"status": "pending", "runner_id": "r-\u00e9", "timestamp": "2030-01-02T01:04:05.000001+00:00"}, "runner_context_id": "ctx-1", "registered_by_inv_id": null}"#;

    #[test]
    fn pynenc_format_round_trips_byte_for_byte() {
        let entry = HistoryEntry::from_json(PYNENC).unwrap();
        assert_eq!(entry.status, PynencStatus::Pending);
        assert_eq!(entry.status_runner_id.as_deref(), Some("r-é"));
        assert_eq!(entry.utc_offset, Some(7200));
        assert_eq!(entry.to_json(), PYNENC);
    }

    #[test]
    fn naive_times_stay_naive_and_read_as_utc() {
        let text = r#"{"invocation_id": "i", "_timestamp": "1970-01-01T00:00:01", "status_record": {"status": "registered", "runner_id": null, "timestamp": "1970-01-01T00:00:01"}, "runner_context_id": "c", "registered_by_inv_id": "parent"}"#;
        let entry = HistoryEntry::from_json(text).unwrap();
        assert_eq!((entry.timestamp_us, entry.utc_offset), (1_000_000, None));
        assert_eq!(entry.to_json(), text);
    }

    #[test]
    fn seed_era_entries_are_read() {
        let seed = r#"{"invocation_id": "i", "_timestamp": "2030-01-01T00:00:00+00:00", "status": "running", "execution_context": {"runner": "x"}}"#;
        let entry = HistoryEntry::from_json(seed).unwrap();
        assert_eq!(entry.status, PynencStatus::Running);
        assert_eq!(entry.status_timestamp, "2030-01-01T00:00:00+00:00");
        assert_eq!(entry.runner_context_id, "");
        let headrace_native = r#"{"invocation_id":"i","timestamp":"2030-01-01T00:00:00Z","status":"killed","execution_context":null}"#;
        assert_eq!(
            HistoryEntry::from_json(headrace_native).unwrap().status,
            PynencStatus::Killed
        );
        let no_status = r#"{"invocation_id": "i", "_timestamp": "2030-01-01T00:00:00+00:00", "status": null, "execution_context": null}"#;
        assert!(
            HistoryEntry::from_json(no_status)
                .unwrap_err()
                .to_string()
                .contains("no status")
        );
    }

    #[test]
    fn malformed_entries_name_the_problem() {
        for (bad, expected) in [
            ("{", "malformed"),
            (
                r#"{"invocation_id": "i", "_timestamp": "yesterday", "status": "running"}"#,
                "yesterday",
            ),
            (
                r#"{"invocation_id": "i", "_timestamp": "2030-01-01T00:00:00", "status": "done"}"#,
                "done",
            ),
            (
                r#"{"invocation_id": " ", "_timestamp": "2030-01-01T00:00:00", "status": "running"}"#,
                "invocation_id",
            ),
        ] {
            let err = HistoryEntry::from_json(bad).unwrap_err();
            assert_eq!(err.code(), "config_error");
            assert!(err.to_string().contains(expected), "{bad}: {err}");
        }
    }
}
