//! Parsing of database URLs into the backend they select.

use crate::error::{Error, Result};

/// A parsed database URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite:///abs/path.db`, `sqlite://rel/path.db`, `sqlite:path.db` or `sqlite://:memory:`.
    Sqlite { path: String },
    /// `postgres://…` or `postgresql://…`, kept verbatim for sqlx.
    Postgres { url: String },
    /// `memory://`: in-process storage (only where a store offers it).
    Memory,
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
                        "SQLite URL {raw:?} names no file: use sqlite:///abs/path.db or sqlite://rel/path.db"
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

/// `raw` with any password replaced by `***`, for error messages and logs.
pub fn redact(raw: &str) -> String {
    match ::url::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => raw.to_string(),
    }
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
}
