//! django-automate's extension points, done in the core: JSON Schema validation of connector
//! inputs, JsonLogic workflow conditions, sandboxed step templates, signed-webhook verification
//! and secret redaction. No pyo3 here: the bindings in `src/bindings/automate/` wrap these.

pub mod jsonlogic;
pub mod redact;
pub mod schema;
pub mod templates;
pub mod webhook;

use thiserror::Error;

/// A failure of one of the automate helpers; each maps to one Python exception class.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum AutomateError {
    /// A value failed JSON Schema validation; one entry per failing field.
    #[error("{message}")]
    Invalid {
        message: String,
        errors: Vec<schema::FieldError>,
    },
    /// A JSON Schema that is not itself valid, a bad JsonLogic rule or template source.
    #[error("{0}")]
    Config(String),
    /// A template failed to render (a missing variable names it).
    #[error("{message}")]
    Template {
        message: String,
        variable: Option<String>,
    },
    /// A webhook signature, timestamp or header did not verify.
    #[error("{0}")]
    Signature(String),
    /// A `secrets.KEY` / `$secret:KEY` reference the secrets backend does not know.
    #[error("secret {0:?} was not found")]
    SecretNotFound(String),
    /// User code (a filter or a secrets backend) raised; the text is already redacted.
    #[error("{0}")]
    Callback(String),
}

pub type AutomateResult<T> = std::result::Result<T, AutomateError>;
