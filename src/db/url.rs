//! Parsing of database URLs into the backend they select.

use crate::error::{Error, Result};

/// A parsed database URL (its `Debug` form hides passwords).
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite:///abs/path.db`, `sqlite://rel/path.db`, `sqlite:path.db` or `sqlite://:memory:`.
    Sqlite { path: String },
    /// `postgres://…` or `postgresql://…`, kept verbatim for sqlx.
    Postgres { url: String },
    /// `memory://`: in-process storage (only where a store offers it).
    Memory,
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseUrl::Sqlite { path } => f.debug_struct("Sqlite").field("path", path).finish(),
            DatabaseUrl::Postgres { url } => f
                .debug_struct("Postgres")
                .field("url", &redact(url))
                .finish(),
            DatabaseUrl::Memory => f.write_str("Memory"),
        }
    }
}

impl DatabaseUrl {
    /// Parses `raw`, naming the offending value (password hidden) on failure.
    pub fn parse(raw: &str) -> Result<Self> {
        let raw = raw.trim();
        let Some((scheme, rest)) = raw.split_once(':') else {
            return Err(Error::config(format!(
                "malformed database URL {:?}: expected sqlite:///path.db, postgres://user@host/db or memory://",
                redact(raw)
            )));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => {
                let path = rest.strip_prefix("//").unwrap_or(rest);
                if path.is_empty() {
                    return Err(Error::config(format!(
                        "SQLite URL {:?} names no file: use sqlite:///abs/path.db or sqlite://rel/path.db",
                        redact(raw)
                    )));
                }
                Ok(DatabaseUrl::Sqlite {
                    path: path.to_string(),
                })
            }
            "postgres" | "postgresql" => {
                let parsed = ::url::Url::parse(raw).map_err(|e| {
                    Error::config(format!("malformed PostgreSQL URL {:?}: {e}", redact(raw)))
                })?;
                if parsed.host_str().is_none_or(str::is_empty)
                    && !parsed.query_pairs().any(|(k, _)| k == "host")
                {
                    return Err(Error::config(format!(
                        "malformed PostgreSQL URL {:?}: it names no host",
                        redact(raw)
                    )));
                }
                Ok(DatabaseUrl::Postgres {
                    url: raw.to_string(),
                })
            }
            "memory" => Ok(DatabaseUrl::Memory),
            other => Err(Error::config(format!(
                "unknown database URL scheme {other:?} in {:?}: use sqlite:///path.db, postgres://user@host/db or memory://",
                redact(raw)
            ))),
        }
    }
}

/// Query parameters whose values are secrets (compared case-insensitively, by substring).
const SECRET_PARAMETERS: [&str; 4] = ["password", "secret", "token", "passwd"];

/// `raw` with every password replaced by `***`, for error messages, logs, reprs and CLI output.
///
/// Works on the text, not on a parse, so URLs that do not parse (a bad port, a `#` or `/` in
/// the password) are redacted too: the user-info password runs from the first `:` after
/// `scheme://` to the last `@` of the authority, and the values of query parameters such as
/// `password=` or `sslpassword=` are hidden.
pub fn redact(raw: &str) -> String {
    let (head, rest) = match raw.find("://") {
        Some(at) => raw.split_at(at + 3),
        None => ("", raw),
    };
    let mut out = String::with_capacity(raw.len());
    out.push_str(head);
    let rest = if head.is_empty() {
        rest.to_string()
    } else {
        redact_user_info(rest)
    };
    match rest.split_once('?') {
        Some((before, query)) => {
            out.push_str(before);
            out.push('?');
            out.push_str(&redact_query(query));
        }
        None => out.push_str(&rest),
    }
    out
}

/// `user:password@host…` → `user:***@host…` (the last `@` ends the user info, so a password
/// holding `@`, `/`, `?` or `#` is hidden whole).
fn redact_user_info(rest: &str) -> String {
    let Some(at) = rest.rfind('@') else {
        return rest.to_string();
    };
    let user_info = &rest[..at];
    match user_info.find(':') {
        Some(colon) => format!("{}:***{}", &user_info[..colon], &rest[at..]),
        None => rest.to_string(),
    }
}

fn redact_query(query: &str) -> String {
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let mut parts: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret_parameter(name) => format!("{name}=***"),
            _ => pair.to_string(),
        })
        .collect();
    if let Some(fragment) = fragment {
        let last = parts.pop().unwrap_or_default();
        parts.push(format!("{last}#{fragment}"));
    }
    parts.join("&")
}

fn is_secret_parameter(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAMETERS.iter().any(|secret| name.contains(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_select_a_path() {
        assert_eq!(
            DatabaseUrl::parse("sqlite:///tmp/a.db").unwrap(),
            DatabaseUrl::Sqlite {
                path: "/tmp/a.db".into()
            }
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite://rel/a.db").unwrap(),
            DatabaseUrl::Sqlite {
                path: "rel/a.db".into()
            }
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite::memory:").unwrap(),
            DatabaseUrl::Sqlite {
                path: ":memory:".into()
            }
        );
    }

    #[test]
    fn postgres_urls_are_kept_verbatim() {
        let url = "postgresql://postgres@127.0.0.1:5432/test";
        assert_eq!(
            DatabaseUrl::parse(url).unwrap(),
            DatabaseUrl::Postgres { url: url.into() }
        );
    }

    #[test]
    fn bad_urls_are_config_errors_naming_the_value_without_its_password() {
        let err = DatabaseUrl::parse("mysql://u:secret@h/db").unwrap_err();
        assert_eq!(err.code(), "config_error");
        assert!(err.to_string().contains("mysql"), "{err}");
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(DatabaseUrl::parse("not a url").is_err());
        assert!(DatabaseUrl::parse("postgres://[::1").is_err());
        assert!(DatabaseUrl::parse("sqlite://").is_err());
    }

    #[test]
    fn every_password_form_is_hidden() {
        for (raw, shown) in [
            ("postgres://u:secret@h/db", "postgres://u:***@h/db"),
            (
                "postgres://u:secret@h:99999/db",
                "postgres://u:***@h:99999/db",
            ),
            (
                "postgres://u:se#cr@t/x@h:5432/db",
                "postgres://u:***@h:5432/db",
            ),
            (
                "postgres://u@h/db?password=secret&sslmode=require",
                "postgres://u@h/db?password=***&sslmode=require",
            ),
            (
                "postgres://h/db?sslmode=disable&PassWord=secret#frag",
                "postgres://h/db?sslmode=disable&PassWord=***#frag",
            ),
            (
                "postgres://h/db?sslpassword=secret",
                "postgres://h/db?sslpassword=***",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("sqlite:///tmp/a.db", "sqlite:///tmp/a.db"),
        ] {
            assert_eq!(redact(raw), shown, "{raw}");
        }
    }

    #[test]
    fn errors_and_debug_forms_never_show_the_password() {
        for raw in [
            "postgres://u:secret@h:notaport/db",
            "postgres://u:secret@[::1/db",
            "postgres://u:se#cret@/db",
            "mysql://u@h/db?password=secret",
            "postgres://:secret@/db",
        ] {
            let err = DatabaseUrl::parse(raw).unwrap_err();
            assert!(!err.to_string().contains("secret"), "{raw}: {err}");
        }
        let url = DatabaseUrl::parse("postgres://u:secret@h/db?password=secret").unwrap();
        assert!(!format!("{url:?}").contains("secret"), "{url:?}");
    }
}
