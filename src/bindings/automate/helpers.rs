//! Stateless helpers: JSON Schema, JsonLogic, webhook signatures, redaction.

use super::convert::{to_json, to_py, to_py_err};
use crate::automate::{jsonlogic, redact, schema, webhook};
use pyo3::prelude::*;

/// A JSON Schema compiled once (refused when it is not itself valid JSON Schema).
#[pyclass(module = "headrace._core", frozen)]
pub struct JsonSchema {
    inner: schema::CompiledSchema,
}

#[pymethods]
impl JsonSchema {
    #[new]
    fn new(py: Python<'_>, schema: &Bound<'_, PyAny>) -> PyResult<Self> {
        let value = to_json(schema, "the JSON Schema")?;
        let inner = schema::CompiledSchema::new(&value).map_err(|e| to_py_err(py, e))?;
        Ok(Self { inner })
    }

    /// Every failing field of `instance` as dicts `{path, schema_path, message}`.
    fn errors<'py>(
        &self,
        py: Python<'py>,
        instance: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let value = to_json(instance, "the value to validate")?;
        let errors = serde_json::to_value(self.inner.errors(&value)).unwrap_or_default();
        to_py(py, &errors)
    }
}

/// Raises `ConfigError` unless `schema` is valid JSON Schema.
#[pyfunction]
fn check_json_schema(py: Python<'_>, schema: &Bound<'_, PyAny>) -> PyResult<()> {
    let value = to_json(schema, "the JSON Schema")?;
    schema::check_schema(&value).map_err(|e| to_py_err(py, e))
}

/// Raises `ConfigError` for an unknown operator, a bad arity or too deep a rule.
#[pyfunction]
fn jsonlogic_check(py: Python<'_>, rule: &Bound<'_, PyAny>) -> PyResult<()> {
    let rule = to_json(rule, "the JsonLogic rule")?;
    jsonlogic::check(&rule).map_err(|e| to_py_err(py, e))
}

/// Evaluates a JsonLogic rule against `data`; returns the raw result.
#[pyfunction]
fn jsonlogic_apply<'py>(
    py: Python<'py>,
    rule: &Bound<'py, PyAny>,
    data: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let rule = to_json(rule, "the JsonLogic rule")?;
    let data = to_json(data, "the JsonLogic data")?;
    let out = jsonlogic::apply(&rule, &data).map_err(|e| to_py_err(py, e))?;
    to_py(py, &out)
}

/// Whether a JsonLogic rule matches `data` (its result is truthy).
#[pyfunction]
fn jsonlogic_matches(
    py: Python<'_>,
    rule: &Bound<'_, PyAny>,
    data: &Bound<'_, PyAny>,
) -> PyResult<bool> {
    let rule = to_json(rule, "the JsonLogic rule")?;
    let data = to_json(data, "the JsonLogic data")?;
    jsonlogic::matches(&rule, &data).map_err(|e| to_py_err(py, e))
}

/// The Standard Webhooks signature (`v1,<base64>`) of a delivery.
#[pyfunction]
fn webhook_sign(
    py: Python<'_>,
    secret: &str,
    delivery_id: &str,
    timestamp: i64,
    body: &[u8],
) -> PyResult<String> {
    webhook::sign(secret, delivery_id, timestamp, body).map_err(|e| to_py_err(py, e))
}

/// Verifies a Standard Webhooks delivery; returns `(delivery_id, timestamp)` or raises
/// `WebhookVerificationError`.
#[pyfunction]
#[pyo3(signature = (secrets, delivery_id, timestamp, signature, body, now, tolerance_seconds=webhook::DEFAULT_TOLERANCE_SECONDS))]
#[allow(clippy::too_many_arguments)]
fn webhook_verify(
    py: Python<'_>,
    secrets: Vec<String>,
    delivery_id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
    tolerance_seconds: i64,
) -> PyResult<(String, i64)> {
    let ok = webhook::verify(
        &secrets,
        delivery_id,
        timestamp,
        signature,
        body,
        now,
        tolerance_seconds,
    )
    .map_err(|e| to_py_err(py, e))?;
    Ok((ok.delivery_id, ok.timestamp))
}

/// `sha256=<hex>` HMAC of `body`.
#[pyfunction]
fn webhook_sign_hex(py: Python<'_>, secret: &str, body: &[u8]) -> PyResult<String> {
    webhook::sign_hex(secret, body).map_err(|e| to_py_err(py, e))
}

/// Verifies a hex HMAC-SHA256 signature of `body` against any of `secrets`.
#[pyfunction]
fn webhook_verify_hex(
    py: Python<'_>,
    secrets: Vec<String>,
    signature: Option<&str>,
    body: &[u8],
) -> PyResult<()> {
    webhook::verify_hex(&secrets, signature, body).map_err(|e| to_py_err(py, e))
}

/// A redacted copy of a JSON-like value (the input is never changed).
#[pyfunction]
#[pyo3(signature = (value, secrets=Vec::new()))]
fn redact_value<'py>(
    py: Python<'py>,
    value: &Bound<'py, PyAny>,
    secrets: Vec<String>,
) -> PyResult<Bound<'py, PyAny>> {
    let json = to_json(value, "the value to redact")?;
    to_py(py, &redact::redact_value(&json, &secrets))
}

/// A redacted copy of a text.
#[pyfunction]
#[pyo3(signature = (text, secrets=Vec::new()))]
fn redact_text(text: &str, secrets: Vec<String>) -> String {
    redact::redact_text(text, &secrets)
}

/// Whether a mapping key names a credential.
#[pyfunction]
fn is_sensitive_key(key: &str) -> bool {
    redact::is_sensitive_key(key)
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<JsonSchema>()?;
    m.add_function(wrap_pyfunction!(check_json_schema, m)?)?;
    m.add_function(wrap_pyfunction!(jsonlogic_check, m)?)?;
    m.add_function(wrap_pyfunction!(jsonlogic_apply, m)?)?;
    m.add_function(wrap_pyfunction!(jsonlogic_matches, m)?)?;
    m.add_function(wrap_pyfunction!(webhook_sign, m)?)?;
    m.add_function(wrap_pyfunction!(webhook_verify, m)?)?;
    m.add_function(wrap_pyfunction!(webhook_sign_hex, m)?)?;
    m.add_function(wrap_pyfunction!(webhook_verify_hex, m)?)?;
    m.add_function(wrap_pyfunction!(redact_value, m)?)?;
    m.add_function(wrap_pyfunction!(redact_text, m)?)?;
    m.add_function(wrap_pyfunction!(is_sensitive_key, m)?)?;
    Ok(())
}
