//! Step-input templates rendered by `minijinja`: sandboxed (templates see only the context they
//! are given: no attributes of host objects, no imports, no files, no process environment other
//! than through `env`), strict (an undefined variable fails with its name) and fuel-bounded.
//!
//! A step input is any JSON value. Maps and lists are rendered recursively; non-string leaves
//! keep their types; a string that is exactly one `{{ expression }}` keeps the expression's type
//! (a number stays a number); other strings render to strings. A leaf `"$secret:KEY"` or
//! `"$env:VAR"` becomes the resolved value. The context is `event`, `execution`, `steps` (each
//! step's `output` by id), `secrets` and `env`: the last two are lazy views that call a
//! [`SecretSource`] only for the keys a template uses, as `secrets.KEY` or `secrets["KEY"]`.
//! Every value resolved through them is reported in [`Rendered::resolved`] so the caller can
//! redact it from whatever it stores or logs.

use super::{AutomateError, AutomateResult};
use minijinja::value::{Object, Rest, Value as Jv};
use minijinja::{Environment, ErrorKind, UndefinedBehavior};
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex};

/// How much work one render may do before it is stopped (loops, large ranges).
pub const FUEL: u64 = 200_000;

/// A filter implemented outside the core (the bindings call a Python function).
pub trait FilterCall: Send + Sync {
    /// `value | name(args…, kwargs…)`; an `Err` is the (already redacted) error text.
    fn call(
        &self,
        value: Value,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
    ) -> Result<Value, String>;
}

/// Where `secrets.KEY` and `env.VAR` come from; `Ok(None)` means not found.
pub trait SecretSource: Send + Sync {
    fn secret(&self, key: &str) -> Result<Option<String>, String>;
    fn env(&self, var: &str) -> Result<Option<String>, String>;
}

/// A rendered step input and the secret/env values resolved while rendering it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub value: Value,
    pub resolved: Vec<String>,
}

/// A template environment holding the registered filters.
pub struct TemplateEngine {
    env: Environment<'static>,
    filters: Vec<String>,
}

impl fmt::Debug for TemplateEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TemplateEngine")
            .field("filters", &self.filters)
            .finish()
    }
}

#[derive(Default)]
struct Resolutions {
    values: Vec<String>,
    failure: Option<AutomateError>,
}

/// The lazy `secrets` or `env` view.
struct LookupView {
    env_view: bool,
    source: Arc<dyn SecretSource>,
    log: Arc<Mutex<Resolutions>>,
}

impl fmt::Debug for LookupView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.env_view { "<env>" } else { "<secrets>" })
    }
}

impl Object for LookupView {
    fn get_value(self: &Arc<Self>, key: &Jv) -> Option<Jv> {
        let key = key.as_str()?;
        let found = if self.env_view {
            self.source.env(key)
        } else {
            self.source.secret(key)
        };
        let mut log = self.log.lock().expect("resolution log");
        match found {
            Ok(Some(value)) => {
                log.values.push(value.clone());
                Some(Jv::from(value))
            }
            Ok(None) => {
                if log.failure.is_none() {
                    log.failure = Some(if self.env_view {
                        AutomateError::Template {
                            message: format!("environment variable {key:?} is not set (env.{key})"),
                            variable: Some(format!("env.{key}")),
                        }
                    } else {
                        AutomateError::SecretNotFound(key.to_string())
                    });
                }
                None
            }
            Err(text) => {
                if log.failure.is_none() {
                    log.failure = Some(AutomateError::Callback(text));
                }
                None
            }
        }
    }
}

impl TemplateEngine {
    /// An environment with minijinja's built-in filters plus `filters`.
    pub fn new(filters: Vec<(String, Arc<dyn FilterCall>)>) -> AutomateResult<Self> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(FUEL));
        let mut names = Vec::new();
        for (name, filter) in filters {
            if names.contains(&name) {
                return Err(AutomateError::Config(format!(
                    "template filter {name:?} is registered twice"
                )));
            }
            let f = filter.clone();
            env.add_filter(
                name.clone(),
                move |value: Jv, args: Rest<Jv>| -> Result<Jv, minijinja::Error> {
                    let mut positional = Vec::new();
                    let mut kwargs = Map::new();
                    for arg in args.iter() {
                        if arg.is_kwargs() {
                            if let Ok(Value::Object(map)) = serde_json::to_value(arg) {
                                kwargs.extend(map);
                            }
                        } else {
                            positional.push(to_json(arg)?);
                        }
                    }
                    let out = f
                        .call(to_json(&value)?, positional, kwargs)
                        .map_err(|text| minijinja::Error::new(ErrorKind::InvalidOperation, text))?;
                    Ok(Jv::from_serialize(&out))
                },
            );
            names.push(name);
        }
        Ok(Self {
            env,
            filters: names,
        })
    }

    /// The names of the registered custom filters.
    pub fn filters(&self) -> &[String] {
        &self.filters
    }

    /// Checks that every string in `input` compiles (used when a workflow is defined).
    pub fn check(&self, input: &Value) -> AutomateResult<()> {
        match input {
            Value::Object(map) => map.values().try_for_each(|v| self.check(v)),
            Value::Array(items) => items.iter().try_for_each(|v| self.check(v)),
            Value::String(s) if s.contains("{{") || s.contains("{%") => {
                self.env.template_from_str(s).map(|_| ()).map_err(|e| {
                    AutomateError::Config(format!("template {s:?} does not compile: {}", plain(&e)))
                })
            }
            _ => Ok(()),
        }
    }

    /// Renders `input` against `context` (a JSON object); `source` resolves secrets and env.
    pub fn render(
        &self,
        input: &Value,
        context: &Value,
        source: Arc<dyn SecretSource>,
    ) -> AutomateResult<Rendered> {
        let log = Arc::new(Mutex::new(Resolutions::default()));
        let mut entries: Vec<(String, Jv)> = match context {
            Value::Object(map) => map
                .iter()
                .filter(|(k, _)| k.as_str() != "secrets" && k.as_str() != "env")
                .map(|(k, v)| (k.clone(), Jv::from_serialize(v)))
                .collect(),
            Value::Null => Vec::new(),
            _ => {
                return Err(AutomateError::Config(
                    "the template context must be an object".into(),
                ));
            }
        };
        for (name, env_view) in [("secrets", false), ("env", true)] {
            let view = LookupView {
                env_view,
                source: source.clone(),
                log: log.clone(),
            };
            entries.push((name.to_string(), Jv::from_object(view)));
        }
        let ctx = Jv::from_iter(entries);
        let value = self.walk(input, &ctx, context, &log, &source, "")?;
        let resolved = std::mem::take(&mut log.lock().expect("resolution log").values);
        Ok(Rendered { value, resolved })
    }

    fn walk(
        &self,
        input: &Value,
        ctx: &Jv,
        json_ctx: &Value,
        log: &Arc<Mutex<Resolutions>>,
        source: &Arc<dyn SecretSource>,
        at: &str,
    ) -> AutomateResult<Value> {
        match input {
            Value::Object(map) => {
                let mut out = Map::with_capacity(map.len());
                for (k, v) in map {
                    out.insert(
                        k.clone(),
                        self.walk(v, ctx, json_ctx, log, source, &format!("{at}/{k}"))?,
                    );
                }
                Ok(Value::Object(out))
            }
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| self.walk(v, ctx, json_ctx, log, source, &format!("{at}/{i}")))
                .collect::<AutomateResult<Vec<_>>>()
                .map(Value::Array),
            Value::String(s) => self.leaf(s, ctx, json_ctx, log, source, at),
            other => Ok(other.clone()),
        }
    }

    fn leaf(
        &self,
        s: &str,
        ctx: &Jv,
        json_ctx: &Value,
        log: &Arc<Mutex<Resolutions>>,
        source: &Arc<dyn SecretSource>,
        at: &str,
    ) -> AutomateResult<Value> {
        let field = if at.is_empty() { "/" } else { at };
        if let Some(key) = s.strip_prefix("$secret:") {
            return match source.secret(key).map_err(AutomateError::Callback)? {
                Some(v) => {
                    log.lock().expect("resolution log").values.push(v.clone());
                    Ok(Value::String(v))
                }
                None => Err(AutomateError::SecretNotFound(key.to_string())),
            };
        }
        if let Some(var) = s.strip_prefix("$env:") {
            return match source.env(var).map_err(AutomateError::Callback)? {
                Some(v) => {
                    log.lock().expect("resolution log").values.push(v.clone());
                    Ok(Value::String(v))
                }
                None => Err(AutomateError::Template {
                    message: format!(
                        "environment variable {var:?} is not set (input field {field})"
                    ),
                    variable: Some(format!("env.{var}")),
                }),
            };
        }
        if !(s.contains("{{") || s.contains("{%") || s.contains("{#")) {
            return Ok(Value::String(s.to_string()));
        }
        if let Some(expr) = single_expression(s) {
            let compiled = self
                .env
                .compile_expression(expr)
                .map_err(|e| self.failure(e, log, json_ctx, &[], field))?;
            let names: Vec<String> = compiled.undeclared_variables(true).into_iter().collect();
            let value = compiled
                .eval(ctx)
                .map_err(|e| self.failure(e, log, json_ctx, &names, field))?;
            self.pending_failure(log)?;
            if value.is_undefined() {
                let missing =
                    missing_variable(&names, json_ctx).unwrap_or_else(|| expr.trim().to_string());
                return Err(undefined(&missing, field));
            }
            return to_json(&value).map_err(|e| self.failure(e, log, json_ctx, &names, field));
        }
        let template = self.env.template_from_str(s).map_err(|e| {
            AutomateError::Config(format!(
                "template at input field {field} does not compile: {}",
                plain(&e)
            ))
        })?;
        let names: Vec<String> = template.undeclared_variables(true).into_iter().collect();
        let out = template
            .render(ctx)
            .map_err(|e| self.failure(e, log, json_ctx, &names, field))?;
        self.pending_failure(log)?;
        Ok(Value::String(out))
    }

    fn pending_failure(&self, log: &Arc<Mutex<Resolutions>>) -> AutomateResult<()> {
        match log.lock().expect("resolution log").failure.take() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    fn failure(
        &self,
        err: minijinja::Error,
        log: &Arc<Mutex<Resolutions>>,
        json_ctx: &Value,
        names: &[String],
        field: &str,
    ) -> AutomateError {
        if let Some(first) = log.lock().expect("resolution log").failure.take() {
            return first;
        }
        if err.kind() == ErrorKind::UndefinedError
            && let Some(missing) = missing_variable(names, json_ctx)
        {
            return undefined(&missing, field);
        }
        AutomateError::Template {
            message: format!("template at input field {field} failed: {}", plain(&err)),
            variable: None,
        }
    }
}

fn undefined(name: &str, field: &str) -> AutomateError {
    AutomateError::Template {
        message: format!("undefined template variable {name:?} (input field {field})"),
        variable: Some(name.to_string()),
    }
}

/// The error's own text, without the source excerpt minijinja's debug output adds.
fn plain(err: &minijinja::Error) -> String {
    let mut text = err.kind().to_string();
    if let Some(detail) = err.detail() {
        text.push_str(": ");
        text.push_str(detail);
    }
    text
}

/// `"{{ expr }}"` with nothing around it and no other tags: the expression.
fn single_expression(s: &str) -> Option<&str> {
    let inner = s.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    let inner = inner.strip_suffix('-').unwrap_or(inner);
    if inner.contains("{{") || inner.contains("}}") || inner.contains("{%") || inner.contains("{#")
    {
        return None;
    }
    Some(inner)
}

/// The first dotted path used by a template that the context does not hold (`secrets`/`env`
/// keys are resolved lazily and reported by their own errors).
fn missing_variable(names: &[String], ctx: &Value) -> Option<String> {
    let mut sorted: BTreeSet<&String> = names.iter().collect();
    let mut found = None;
    for name in std::mem::take(&mut sorted) {
        let mut parts = name.split('.');
        let root = parts.next()?;
        if root == "secrets" || root == "env" {
            continue;
        }
        let mut current = match ctx.get(root) {
            Some(v) => v,
            None => {
                found = Some(root.to_string());
                break;
            }
        };
        let mut path = root.to_string();
        for part in parts {
            path.push('.');
            path.push_str(part);
            match current.get(part) {
                Some(v) => current = v,
                None => {
                    if found.is_none() {
                        found = Some(path.clone());
                    }
                    break;
                }
            }
        }
        if found.is_some() {
            break;
        }
    }
    found
}

fn to_json(value: &Jv) -> Result<Value, minijinja::Error> {
    serde_json::to_value(value).map_err(|e| {
        minijinja::Error::new(
            ErrorKind::BadSerialization,
            format!("value cannot become JSON: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    struct Source(HashMap<&'static str, &'static str>);

    impl SecretSource for Source {
        fn secret(&self, key: &str) -> Result<Option<String>, String> {
            Ok(self.0.get(key).map(|s| s.to_string()))
        }
        fn env(&self, var: &str) -> Result<Option<String>, String> {
            Ok(if var == "REGION" {
                Some("eu-west-1".into())
            } else {
                None
            })
        }
    }

    struct Currency;

    impl FilterCall for Currency {
        fn call(
            &self,
            value: Value,
            args: Vec<Value>,
            kwargs: Map<String, Value>,
        ) -> Result<Value, String> {
            let amount = value.as_f64().ok_or("not a number")?;
            let cur = args
                .first()
                .or(kwargs.get("currency"))
                .and_then(Value::as_str)
                .unwrap_or("USD")
                .to_string();
            Ok(json!(format!("{cur} {amount:.2}")))
        }
    }

    fn source() -> Arc<dyn SecretSource> {
        Arc::new(Source(HashMap::from([
            ("STRIPE_KEY", "sk_live_abcdef"),
            ("TOKEN", "t0k3n"),
        ])))
    }

    fn context() -> Value {
        json!({"event": {"type": "order.created", "source": "shop", "payload": {"channel_id": "C1", "total": 1234.5, "items": [1, 2]}},
               "execution": {"id": "run-1"},
               "steps": {"calculate": {"output": {"total": 99.5}}}})
    }

    fn engine() -> TemplateEngine {
        TemplateEngine::new(vec![(
            "format_currency".into(),
            Arc::new(Currency) as Arc<dyn FilterCall>,
        )])
        .unwrap()
    }

    #[test]
    fn renders_nested_inputs_keeping_types() {
        let input = json!({
            "channel": "{{ event.payload.channel_id }}",
            "message": "Order total: {{ steps.calculate.output.total | format_currency('EUR') }}",
            "kw": "{{ 5 | format_currency(currency='GBP') }}",
            "total": "{{ event.payload.total }}",
            "items": "{{ event.payload.items }}",
            "nested": [{"n": 3, "flag": true, "none": null, "run": "run {{ execution.id }}"}],
            "literal": "no template here"
        });
        let out = engine().render(&input, &context(), source()).unwrap();
        assert_eq!(out.value["channel"], "C1");
        assert_eq!(out.value["message"], "Order total: EUR 99.50");
        assert_eq!(out.value["kw"], "GBP 5.00");
        assert_eq!(out.value["total"], json!(1234.5));
        assert_eq!(out.value["items"], json!([1, 2]));
        assert_eq!(
            out.value["nested"],
            json!([{"n": 3, "flag": true, "none": null, "run": "run run-1"}])
        );
        assert_eq!(out.value["literal"], "no template here");
        assert!(out.resolved.is_empty());
    }

    #[test]
    fn secrets_resolve_by_attribute_item_and_reference() {
        let input = json!({"a": "{{ secrets.STRIPE_KEY }}", "b": "Bearer {{ secrets['TOKEN'] }}", "c": "$secret:TOKEN",
                           "d": "$env:REGION", "e": "{{ env.REGION }}"});
        let out = engine().render(&input, &context(), source()).unwrap();
        assert_eq!(
            out.value,
            json!({"a": "sk_live_abcdef", "b": "Bearer t0k3n", "c": "t0k3n", "d": "eu-west-1", "e": "eu-west-1"})
        );
        assert!(out.resolved.contains(&"sk_live_abcdef".to_string()));
        assert!(out.resolved.contains(&"t0k3n".to_string()));
    }

    #[test]
    fn a_missing_variable_fails_with_its_name() {
        let err = engine()
            .render(
                &json!({"x": "Hi {{ event.payload.customer.name }}"}),
                &context(),
                source(),
            )
            .unwrap_err();
        match err {
            AutomateError::Template { variable, message } => {
                assert_eq!(
                    variable.as_deref(),
                    Some("event.payload.customer"),
                    "{message}"
                );
                assert!(message.contains("/x"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let err = engine()
            .render(
                &json!({"x": "{{ steps.nope.output }}"}),
                &context(),
                source(),
            )
            .unwrap_err();
        assert!(
            matches!(err, AutomateError::Template { variable: Some(ref v), .. } if v == "steps.nope"),
            "{err:?}"
        );
        let err = engine()
            .render(&json!("{{ missing }}"), &context(), source())
            .unwrap_err();
        assert!(
            matches!(err, AutomateError::Template { variable: Some(ref v), .. } if v == "missing"),
            "{err:?}"
        );
    }

    #[test]
    fn a_missing_secret_is_typed() {
        for input in [
            json!("{{ secrets.NOPE }}"),
            json!("x {{ secrets['NOPE'] }}"),
            json!("$secret:NOPE"),
        ] {
            let err = engine().render(&input, &context(), source()).unwrap_err();
            assert_eq!(err, AutomateError::SecretNotFound("NOPE".into()), "{input}");
        }
        let err = engine()
            .render(&json!("$env:NOPE"), &context(), source())
            .unwrap_err();
        assert!(
            matches!(err, AutomateError::Template { variable: Some(ref v), .. } if v == "env.NOPE")
        );
    }

    #[test]
    fn the_sandbox_has_no_way_out() {
        for evil in [
            "{{ ''.__class__ }}",
            "{{ event.__dict__ }}",
            "{% for i in range(100000000) %}{% endfor %}",
        ] {
            assert!(
                engine().render(&json!(evil), &context(), source()).is_err(),
                "{evil}"
            );
        }
        assert!(
            TemplateEngine::new(vec![
                ("f".into(), Arc::new(Currency) as Arc<dyn FilterCall>),
                ("f".into(), Arc::new(Currency) as Arc<dyn FilterCall>)
            ])
            .is_err()
        );
    }

    #[test]
    fn check_reports_syntax_errors() {
        assert!(engine().check(&json!({"a": ["{{ unclosed "]})).is_err());
        assert!(engine().check(&json!({"a": ["{{ fine }}"]})).is_ok());
    }
}
