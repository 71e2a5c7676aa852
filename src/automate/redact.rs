//! The one redaction rule: recursive over maps and lists, never mutating its input.
//!
//! - values of sensitive keys (`password`, `token`, `api_key`, `*_secret`, …) become `[REDACTED]`;
//! - every occurrence of a known secret value (one a step resolved) inside any string is replaced;
//! - `Bearer <token>` keeps only the scheme, and `sk-…` keys keep their last four characters.

use serde_json::{Map, Value};

/// What replaces a redacted value.
pub const MASK: &str = "[REDACTED]";

const SENSITIVE_KEYS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "access_token",
    "refresh_token",
    "authorization",
    "private_key",
    "client_secret",
    "signing_secret",
    "cookie",
];

/// Whether a mapping key names a credential.
pub fn is_sensitive_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase().replace('-', "_");
    SENSITIVE_KEYS.contains(&k.as_str())
        || k.ends_with("_password")
        || k.ends_with("_secret")
        || k.ends_with("_token")
        || k.ends_with("_api_key")
}

/// A redacted copy of `value`; `secrets` are literal values to hide wherever they appear.
pub fn redact_value(value: &Value, secrets: &[String]) -> Value {
    let secrets = usable(secrets);
    walk(value, &secrets)
}

/// A redacted copy of a text (a log line, an error message).
pub fn redact_text(text: &str, secrets: &[String]) -> String {
    scrub(text, &usable(secrets))
}

fn usable(secrets: &[String]) -> Vec<&str> {
    // Longest first, so a secret containing another is masked whole.
    let mut list: Vec<&str> = secrets
        .iter()
        .map(String::as_str)
        .filter(|s| s.len() >= 3)
        .collect();
    list.sort_by_key(|s| std::cmp::Reverse(s.len()));
    list.dedup();
    list
}

fn walk(value: &Value, secrets: &[&str]) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (k, v) in map {
                let redacted = if is_sensitive_key(k) && !v.is_null() && !is_container(v) {
                    Value::String(MASK.into())
                } else {
                    walk(v, secrets)
                };
                out.insert(scrub(k, secrets), redacted);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| walk(v, secrets)).collect()),
        Value::String(s) => Value::String(scrub(s, secrets)),
        Value::Number(n) if secrets.contains(&n.to_string().as_str()) => Value::String(MASK.into()),
        other => other.clone(),
    }
}

fn is_container(v: &Value) -> bool {
    matches!(v, Value::Object(_) | Value::Array(_))
}

fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for secret in secrets {
        if out.contains(secret) {
            out = out.replace(secret, MASK);
        }
    }
    bearer(&sk_keys(&out))
}

fn bearer(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let Some(_) = lower.find("bearer ") else {
        return text.to_string();
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.to_ascii_lowercase().find("bearer ") {
        let start = pos + "bearer ".len();
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == ',')
            .unwrap_or(tail.len());
        if end == 0 || &tail[..end] == MASK {
            out.push_str(&tail[..end]);
        } else {
            out.push_str(MASK);
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn sk_keys(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("sk-") {
        let before_ok = pos == 0 || !rest[..pos].ends_with(|c: char| c.is_ascii_alphanumeric());
        let tail = &rest[pos + 3..];
        let len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .unwrap_or(tail.len());
        out.push_str(&rest[..pos]);
        if before_ok && len >= 20 {
            out.push_str("sk-...");
            out.push_str(&tail[len - 4..len]);
        } else {
            out.push_str(&rest[pos..pos + 3 + len]);
        }
        rest = &tail[len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_keys_and_values_are_masked_without_mutating() {
        let input = json!({
            "user": "ann",
            "password": "hunter2",
            "nested": {"api_key": "k-123", "list": [{"token": "t"}, "plain", "my s3cr3t-value here"]},
            "headers": {"Authorization": "Bearer abc.def", "X-Trace": "Bearer xyz"},
            "count": 3
        });
        let copy = input.clone();
        let out = redact_value(&input, &["s3cr3t-value".into()]);
        assert_eq!(input, copy, "input untouched");
        assert_eq!(out["user"], "ann");
        assert_eq!(out["password"], MASK);
        assert_eq!(out["nested"]["api_key"], MASK);
        assert_eq!(out["nested"]["list"][0]["token"], MASK);
        assert_eq!(out["nested"]["list"][1], "plain");
        assert_eq!(out["nested"]["list"][2], "my [REDACTED] here");
        assert_eq!(out["headers"]["Authorization"], MASK);
        assert_eq!(out["headers"]["X-Trace"], "Bearer [REDACTED]");
        assert_eq!(out["count"], 3);
    }

    #[test]
    fn sk_keys_keep_their_last_four() {
        assert_eq!(
            redact_text("key sk-proj-abcdefghijklmnopqrstuvwxyzcdef end", &[]),
            "key sk-...cdef end"
        );
        assert_eq!(redact_text("task-sk-short", &[]), "task-sk-short");
    }

    #[test]
    fn secret_values_are_hidden_in_text_longest_first() {
        let secrets = vec!["abc".to_string(), "abcdef".to_string()];
        assert_eq!(
            redact_text("x abcdef y abc", &secrets),
            "x [REDACTED] y [REDACTED]"
        );
        assert_eq!(redact_value(&json!(12345), &["12345".into()]), json!(MASK));
    }

    #[test]
    fn sensitive_key_rule() {
        for k in [
            "password",
            "DB_PASSWORD",
            "client-secret",
            "github_token",
            "stripe_api_key",
            "Cookie",
        ] {
            assert!(is_sensitive_key(k), "{k}");
        }
        for k in ["dedupe_key", "token_count", "secretary", "name"] {
            assert!(!is_sensitive_key(k), "{k}");
        }
    }
}
