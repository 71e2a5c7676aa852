//! Connection parameters given field by field (as Django's `DATABASES` holds them), turned
//! into the URL the drivers take inside the core. The URL never leaves the core and `Debug`
//! hides the password.

use crate::error::{Error, Result};
use std::fmt;

/// One database's connection parameters.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectParams {
    /// `"sqlite"` or `"postgresql"`.
    pub engine: String,
    /// SQLite: the file path; PostgreSQL: the database name.
    pub name: Option<String>,
    /// PostgreSQL host name, or a directory holding the server's Unix socket.
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Driver options (`sslmode`, `application_name`, …), passed as URL query parameters.
    pub options: Vec<(String, String)>,
}

impl fmt::Debug for ConnectParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectParams")
            .field("engine", &self.engine)
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("options", &self.options)
            .finish()
    }
}

impl ConnectParams {
    /// The URL for the core's drivers (contains the password: never log it).
    pub fn to_url(&self) -> Result<String> {
        match self.engine.as_str() {
            "sqlite" | "sqlite3" => {
                let path = self
                    .name
                    .as_deref()
                    .filter(|p| !p.is_empty())
                    .ok_or_else(|| {
                        Error::config(
                            "SQLite connection parameters need name (the database file path)",
                        )
                    })?;
                if path == ":memory:" || path.starts_with("file::memory:") {
                    return Err(Error::config(format!(
                        "SQLite database {path:?} is in memory: only the connection that made it can \
                         see it; give a file path"
                    )));
                }
                if self.host.is_some() || self.user.is_some() || self.password.is_some() {
                    return Err(Error::config(
                        "SQLite connection parameters take only name (a file path)",
                    ));
                }
                Ok(format!("sqlite://{path}"))
            }
            "postgresql" | "postgres" => {
                let mut url = ::url::Url::parse("postgres://localhost").expect("static URL");
                let host = self.host.as_deref().filter(|h| !h.is_empty());
                let socket_dir = host.filter(|h| h.starts_with('/'));
                if let Some(host) = host.filter(|h| !h.starts_with('/')) {
                    url.set_host(Some(host)).map_err(|e| {
                        Error::config(format!("PostgreSQL host {host:?} is not valid: {e}"))
                    })?;
                }
                url.set_port(self.port)
                    .map_err(|_| Error::config("PostgreSQL port cannot be set"))?;
                if let Some(user) = self.user.as_deref().filter(|u| !u.is_empty()) {
                    url.set_username(user).map_err(|_| {
                        Error::config(format!("PostgreSQL user {user:?} is not valid"))
                    })?;
                }
                if let Some(password) = self.password.as_deref().filter(|p| !p.is_empty()) {
                    url.set_password(Some(password))
                        .map_err(|_| Error::config("PostgreSQL password cannot be set"))?;
                }
                if let Some(name) = self.name.as_deref().filter(|n| !n.is_empty()) {
                    url.path_segments_mut()
                        .map_err(|_| Error::config("PostgreSQL database name cannot be set"))?
                        .push(name);
                }
                {
                    let mut query = url.query_pairs_mut();
                    if let Some(dir) = socket_dir {
                        query.append_pair("host", dir);
                    }
                    for (key, value) in &self.options {
                        query.append_pair(key, value);
                    }
                }
                if url.query() == Some("") {
                    url.set_query(None);
                }
                Ok(url.to_string())
            }
            other => Err(Error::config(format!(
                "unsupported engine {other:?}: use sqlite or postgresql"
            ))),
        }
    }

    /// A description safe to print (no password).
    pub fn describe(&self) -> String {
        match self.engine.as_str() {
            "sqlite" | "sqlite3" => format!("sqlite {:?}", self.name.as_deref().unwrap_or("")),
            _ => format!(
                "postgresql {}@{}:{}/{}",
                self.user.as_deref().unwrap_or(""),
                self.host.as_deref().unwrap_or("localhost"),
                self.port.unwrap_or(5432),
                self.name.as_deref().unwrap_or("")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::DatabaseUrl;

    fn pg() -> ConnectParams {
        ConnectParams {
            engine: "postgresql".into(),
            name: Some("shop db".into()),
            host: Some("db.internal".into()),
            port: Some(6543),
            user: Some("app".into()),
            password: Some("s3cr3t:/p@ss#?".into()),
            options: vec![("sslmode".into(), "require".into())],
        }
    }

    #[test]
    fn postgres_fields_are_percent_encoded_into_one_url() {
        let url = pg().to_url().unwrap();
        let parsed = ::url::Url::parse(&url).unwrap();
        assert_eq!(parsed.host_str(), Some("db.internal"));
        assert_eq!(parsed.port(), Some(6543));
        assert_eq!(parsed.username(), "app");
        let password = parsed.password().unwrap();
        assert_eq!(
            ::url::form_urlencoded::parse(format!("p={password}").as_bytes())
                .next()
                .unwrap()
                .1,
            "s3cr3t:/p@ss#?"
        );
        assert_eq!(parsed.path(), "/shop%20db");
        assert!(matches!(
            DatabaseUrl::parse(&url).unwrap(),
            DatabaseUrl::Postgres { .. }
        ));
    }

    #[test]
    fn debug_and_describe_hide_the_password() {
        let p = pg();
        assert!(!format!("{p:?}").contains("s3cr3t"));
        assert!(!p.describe().contains("s3cr3t"));
    }

    #[test]
    fn socket_directories_become_the_host_parameter() {
        let mut p = pg();
        p.host = Some("/var/run/postgresql".into());
        let url = p.to_url().unwrap();
        assert!(url.contains("host=%2Fvar%2Frun%2Fpostgresql"), "{url}");
    }

    #[test]
    fn sqlite_takes_a_file_path_and_refuses_memory() {
        let mut p = ConnectParams {
            engine: "sqlite".into(),
            name: Some("/tmp/x.db".into()),
            host: None,
            port: None,
            user: None,
            password: None,
            options: vec![],
        };
        assert_eq!(
            DatabaseUrl::parse(&p.to_url().unwrap()).unwrap(),
            DatabaseUrl::Sqlite {
                path: "/tmp/x.db".into()
            }
        );
        p.name = Some(":memory:".into());
        assert!(p.to_url().unwrap_err().to_string().contains("in memory"));
    }
}
