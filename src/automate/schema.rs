//! JSON Schema validation of connector action inputs, by the maintained `jsonschema` crate.
//!
//! Errors are reported per field (a JSON pointer into the instance) with the value masked, so a
//! secret passed in the wrong field never reaches an error message.

use super::{AutomateError, AutomateResult};
use serde::Serialize;
use serde_json::Value;

/// One failing field: where in the instance, which schema keyword, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// JSON pointer into the validated value (`""` for the value itself, `/items/0/sku` …).
    pub path: String,
    /// JSON pointer into the schema naming the keyword that failed (`/properties/qty/minimum`).
    pub schema_path: String,
    /// What was wrong, without echoing the value.
    pub message: String,
}

/// A schema compiled once and used for many validations.
pub struct CompiledSchema {
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for CompiledSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CompiledSchema")
    }
}

/// Checks that `schema` is itself a valid JSON Schema (against its draft's meta-schema).
pub fn check_schema(schema: &Value) -> AutomateResult<()> {
    if !(schema.is_object() || schema.is_boolean()) {
        return Err(AutomateError::Config(format!(
            "a JSON Schema must be an object or a boolean, got {}",
            kind(schema)
        )));
    }
    jsonschema::meta::validate(schema).map_err(|err| {
        AutomateError::Config(format!(
            "invalid JSON Schema at {}: {}",
            pointer(&err.instance_path().to_string()),
            err.masked()
        ))
    })
}

impl CompiledSchema {
    /// Compiles `schema`, refusing one that is not valid JSON Schema.
    pub fn new(schema: &Value) -> AutomateResult<Self> {
        check_schema(schema)?;
        let validator = jsonschema::validator_for(schema).map_err(|err| {
            AutomateError::Config(format!("cannot compile JSON Schema: {}", err.masked()))
        })?;
        Ok(Self { validator })
    }

    /// Every failing field of `instance`, in document order; empty when it is valid.
    pub fn errors(&self, instance: &Value) -> Vec<FieldError> {
        self.validator
            .iter_errors(instance)
            .map(|err| FieldError {
                path: err.instance_path().to_string(),
                schema_path: err.schema_path().to_string(),
                message: err.masked().to_string(),
            })
            .collect()
    }

    /// `Ok(())` for a valid instance, else [`AutomateError::Invalid`] listing each field.
    pub fn validate(&self, instance: &Value, what: &str) -> AutomateResult<()> {
        let errors = self.errors(instance);
        if errors.is_empty() {
            return Ok(());
        }
        let listed: Vec<String> = errors
            .iter()
            .map(|e| format!("{}: {}", pointer(&e.path), e.message))
            .collect();
        Err(AutomateError::Invalid {
            message: format!("{what} is invalid: {}", listed.join("; ")),
            errors,
        })
    }
}

fn pointer(path: &str) -> &str {
    if path.is_empty() { "/" } else { path }
}

pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order_schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "channel": {"type": "string", "minLength": 1},
                "qty": {"type": "integer", "minimum": 1},
                "items": {"type": "array", "items": {"type": "object", "required": ["sku"]}}
            },
            "required": ["channel", "qty"],
            "additionalProperties": false
        })
    }

    #[test]
    fn a_valid_input_passes() {
        let compiled = CompiledSchema::new(&order_schema()).unwrap();
        assert!(
            compiled
                .validate(&json!({"channel": "#ops", "qty": 2}), "input")
                .is_ok()
        );
    }

    #[test]
    fn each_failing_field_is_listed_with_its_path() {
        let compiled = CompiledSchema::new(&order_schema()).unwrap();
        let errors =
            compiled.errors(&json!({"channel": "", "qty": 0, "items": [{"x": 1}], "extra": true}));
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"/channel"), "{paths:?}");
        assert!(paths.contains(&"/qty"), "{paths:?}");
        assert!(paths.contains(&"/items/0"), "{paths:?}");
        assert!(
            paths.contains(&""),
            "additionalProperties is reported on the object: {paths:?}"
        );
        let qty = errors.iter().find(|e| e.path == "/qty").unwrap();
        assert_eq!(qty.schema_path, "/properties/qty/minimum");
    }

    #[test]
    fn a_missing_required_field_is_reported() {
        let compiled = CompiledSchema::new(&order_schema()).unwrap();
        let err = compiled
            .validate(&json!({"channel": "#ops"}), "input")
            .unwrap_err();
        match err {
            AutomateError::Invalid { errors, message } => {
                assert_eq!(errors.len(), 1);
                assert!(errors[0].message.contains("qty"), "{}", errors[0].message);
                assert!(message.starts_with("input is invalid"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn error_messages_do_not_echo_the_value() {
        let compiled = CompiledSchema::new(
            &json!({"type": "object", "properties": {"n": {"type": "integer"}}}),
        )
        .unwrap();
        let errors = compiled.errors(&json!({"n": "sk-live-SUPERSECRET"}));
        assert_eq!(errors.len(), 1);
        assert!(
            !errors[0].message.contains("SUPERSECRET"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn an_invalid_schema_is_refused() {
        assert!(check_schema(&json!({"type": "strnig"})).is_err());
        assert!(check_schema(&json!({"properties": {"a": {"minimum": "one"}}})).is_err());
        assert!(check_schema(&json!(42)).is_err());
        assert!(check_schema(&json!(true)).is_ok());
        assert!(CompiledSchema::new(&json!({"type": "strnig"})).is_err());
    }
}
