//! Policy configuration: `policies: {name: {config: {package, schedule, …extra}, scope}}`, from
//! YAML text or an already-parsed document, with `${VAR}` (and `${VAR:-default}`) resolved from
//! the environment in every string. Problems are reported together, one line per bad field.

use super::schedule::{CronZone, Schedule};
use crate::error::{Error, Result};
use serde_json::{Map, Value};
use serde_yaml_ng::Value as Yaml;

/// One policy as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicySpec {
    pub name: String,
    pub config: PolicyConfig,
    /// Free-form scope handed to the backend (`policy.scope`); `null` when absent.
    pub scope: Value,
}

/// A policy's `config` section.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    /// The Python module (or `headrace.backends` entry-point name) holding the backend.
    pub package: String,
    /// 5-field cron; `None`: run once when started.
    pub schedule: Option<String>,
    /// Every other key, kept for the backend (`policy.config.<key>`).
    pub extra: Map<String, Value>,
}

impl PolicyConfig {
    /// The section as one JSON object (`package`, `schedule`, then the extra keys).
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("package".into(), Value::from(self.package.clone()));
        m.insert(
            "schedule".into(),
            self.schedule.clone().map_or(Value::Null, Value::from),
        );
        m.extend(self.extra.clone());
        Value::Object(m)
    }
}

impl PolicySpec {
    /// The parsed schedule (validated when the spec was built).
    pub fn schedule(&self) -> Result<Schedule> {
        let zone = CronZone::parse(self.config.extra.get("timezone").and_then(Value::as_str))?;
        Schedule::parse_in(self.config.schedule.as_deref(), zone)
    }
}

/// Environment lookup used for `${VAR}`.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Parses a YAML (or JSON) policies document.
pub fn parse_policies_yaml(text: &str, env: EnvLookup<'_>) -> Result<Vec<PolicySpec>> {
    let mut yaml: Yaml = serde_yaml_ng::from_str(text)
        .map_err(|e| Error::config(format!("invalid policies YAML: {e}")))?;
    yaml.apply_merge()
        .map_err(|e| Error::config(format!("invalid policies YAML: {e}")))?;
    let mut problems = Vec::new();
    let document = yaml_to_json(yaml, "document", &mut problems);
    if !problems.is_empty() {
        return Err(report(problems));
    }
    parse_policies(document, env)
}

/// Validates a parsed policies document.
pub fn parse_policies(document: Value, env: EnvLookup<'_>) -> Result<Vec<PolicySpec>> {
    let mut problems = Vec::new();
    let document = resolve_env(document, "", env, &mut problems);
    let specs = validate(document, &mut problems);
    if problems.is_empty() {
        Ok(specs)
    } else {
        Err(report(problems))
    }
}

/// `document` with every `${VAR}` in its strings resolved through `env` (the rule policy
/// documents use); every unset variable is reported, with where it is.
pub fn resolve_env_references(document: Value, env: EnvLookup<'_>) -> Result<Value> {
    let mut problems = Vec::new();
    let resolved = resolve_env(document, "", env, &mut problems);
    if problems.is_empty() {
        Ok(resolved)
    } else {
        let n = problems.len();
        Err(Error::config(format!(
            "unresolved environment variable{} ({n}):\n  - {}",
            if n == 1 { "" } else { "s" },
            problems.join("\n  - ")
        )))
    }
}

fn report(problems: Vec<String>) -> Error {
    let n = problems.len();
    Error::config(format!(
        "invalid policy configuration ({n} problem{}):\n  - {}",
        if n == 1 { "" } else { "s" },
        problems.join("\n  - ")
    ))
}

fn yaml_to_json(yaml: Yaml, path: &str, problems: &mut Vec<String>) -> Value {
    match yaml {
        Yaml::Null => Value::Null,
        Yaml::Bool(b) => Value::Bool(b),
        Yaml::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                match n.as_f64().and_then(serde_json::Number::from_f64) {
                    Some(f) => Value::Number(f),
                    None => {
                        problems.push(format!("{path}: {n} is not a finite number"));
                        Value::Null
                    }
                }
            }
        }
        Yaml::String(s) => Value::String(s),
        Yaml::Sequence(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| yaml_to_json(v, &format!("{path}[{i}]"), problems))
                .collect(),
        ),
        Yaml::Mapping(mapping) => {
            let mut out = Map::new();
            for (k, v) in mapping {
                let key = match k {
                    Yaml::String(s) => s,
                    Yaml::Number(n) => n.to_string(),
                    Yaml::Bool(b) => b.to_string(),
                    other => {
                        problems.push(format!(
                            "{path}: mapping keys must be strings, got {other:?}"
                        ));
                        continue;
                    }
                };
                let child = join(path, &key);
                let value = yaml_to_json(v, &child, problems);
                out.insert(key, value);
            }
            Value::Object(out)
        }
        Yaml::Tagged(tagged) => {
            problems.push(format!(
                "{path}: YAML tags are not supported (found {})",
                tagged.tag
            ));
            Value::Null
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() || path == "document" {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn resolve_env(value: Value, path: &str, env: EnvLookup<'_>, problems: &mut Vec<String>) -> Value {
    match value {
        Value::String(s) if s.contains("${") => match substitute(&s, env) {
            Ok(out) => Value::String(out),
            Err(msg) => {
                problems.push(format!(
                    "{}: {msg}",
                    if path.is_empty() { "document" } else { path }
                ));
                Value::String(s)
            }
        },
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| resolve_env(v, &format!("{path}[{i}]"), env, problems))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let child = join(path, &k);
                    (k, resolve_env(v, &child, env, problems))
                })
                .collect(),
        ),
        other => other,
    }
}

/// Replaces each `${NAME}` / `${NAME:-default}` in `text`; `$${` stays a literal `${`.
pub fn substitute(text: &str, env: EnvLookup<'_>) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut missing = Vec::new();
    while let Some(start) = rest.find("${") {
        if start > 0 && rest[..start].ends_with('$') {
            out.push_str(&rest[..start - 1]);
            out.push_str("${");
            rest = &rest[start + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("unterminated \"${{\" in {text:?}"));
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "\"${{{inner}}}\" is not a valid environment variable reference"
            ));
        }
        match (env(name), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => missing.push(name.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    if missing.is_empty() {
        Ok(out)
    } else {
        let (plural, verb) = if missing.len() == 1 {
            ("", "is")
        } else {
            ("s", "are")
        };
        Err(format!(
            "environment variable{plural} {} {verb} not set",
            missing.join(", ")
        ))
    }
}

fn type_name(value: &Value) -> &'static str {
    super::chunker::json_type(value)
}

/// A dotted Python name, optionally followed by `:Qualified.Name` (one class of the module).
fn is_module_name(s: &str) -> bool {
    let dotted = |name: &str| {
        !name.is_empty()
            && name.split('.').all(|part| {
                part.chars()
                    .next()
                    .is_some_and(|c| c.is_alphabetic() || c == '_')
                    && part.chars().all(|c| c.is_alphanumeric() || c == '_')
            })
    };
    match s.split_once(':') {
        Some((module, qualname)) => dotted(module) && dotted(qualname),
        None => dotted(s),
    }
}

fn validate(document: Value, problems: &mut Vec<String>) -> Vec<PolicySpec> {
    let Value::Object(mut top) = document else {
        problems.push(format!(
            "document: expected a mapping with a \"policies\" key, got {}",
            type_name(&document)
        ));
        return Vec::new();
    };
    let policies = top.shift_remove("policies");
    for key in top.keys() {
        problems.push(format!(
            "{key}: unknown top-level key (expected only \"policies\")"
        ));
    }
    let policies = match policies {
        None => {
            problems.push("policies: required".into());
            return Vec::new();
        }
        Some(Value::Object(p)) if p.is_empty() => {
            problems.push("policies: must define at least one policy".into());
            return Vec::new();
        }
        Some(Value::Object(p)) => p,
        Some(other) => {
            problems.push(format!(
                "policies: expected a mapping of policy name to policy, got {}",
                type_name(&other)
            ));
            return Vec::new();
        }
    };
    let mut specs = Vec::new();
    for (name, body) in policies {
        let at = format!("policies.{name}");
        if name.trim().is_empty() {
            problems.push(format!("{at}: a policy name must not be empty"));
            continue;
        }
        let Value::Object(mut body) = body else {
            problems.push(format!(
                "{at}: expected a mapping with \"config\" and \"scope\", got {}",
                type_name(&body)
            ));
            continue;
        };
        let config = body.shift_remove("config");
        let scope = body.shift_remove("scope").unwrap_or(Value::Null);
        for key in body.keys() {
            problems.push(format!(
                "{at}.{key}: unknown key (expected \"config\" and \"scope\")"
            ));
        }
        let mut config = match config {
            Some(Value::Object(c)) => c,
            None => {
                problems.push(format!("{at}.config: required"));
                continue;
            }
            Some(other) => {
                problems.push(format!(
                    "{at}.config: expected a mapping, got {}",
                    type_name(&other)
                ));
                continue;
            }
        };
        let before = problems.len();
        let package = match config.shift_remove("package") {
            Some(Value::String(p)) if is_module_name(p.trim()) => p.trim().to_string(),
            Some(Value::String(p)) => {
                problems.push(format!(
                    "{at}.config.package: {p:?} is not a Python module name"
                ));
                String::new()
            }
            None | Some(Value::Null) => {
                problems.push(format!("{at}.config.package: required"));
                String::new()
            }
            Some(other) => {
                problems.push(format!(
                    "{at}.config.package: expected a string, got {}",
                    type_name(&other)
                ));
                String::new()
            }
        };
        let schedule = match config.shift_remove("schedule") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => match Schedule::parse(Some(&s)) {
                Ok(_) => Some(s.trim().to_string()),
                Err(e) => {
                    problems.push(format!("{at}.config.schedule: {e}"));
                    None
                }
            },
            Some(other) => {
                problems.push(format!(
                    "{at}.config.schedule: expected a cron string, got {}",
                    type_name(&other)
                ));
                None
            }
        };
        match config.get("timezone") {
            None | Some(Value::Null) => {}
            Some(Value::String(zone)) => {
                if let Err(e) = CronZone::parse(Some(zone)) {
                    problems.push(format!("{at}.config.timezone: {e}"));
                }
            }
            Some(other) => problems.push(format!(
                "{at}.config.timezone: expected a string, got {}",
                type_name(other)
            )),
        }
        if problems.len() == before {
            specs.push(PolicySpec {
                name,
                config: PolicyConfig {
                    package,
                    schedule,
                    extra: config,
                },
                scope,
            });
        }
    }
    specs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cret".into()),
            "SITE" => Some("lab".into()),
            _ => None,
        }
    }

    #[test]
    fn parses_policies_with_extra_config_and_scope_in_order() {
        let yaml = r#"
policies:
  zeta:
    config:
      package: examples.host_inventory
      schedule: "*/5 * * * *"
      token: ${TOKEN}
      site: "${SITE}-${REGION:-eu}"
    scope:
      targets: [a, b]
  alpha:
    config:
      package: my_backend
"#;
        let specs = parse_policies_yaml(yaml, &env).unwrap();
        assert_eq!(
            specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["zeta", "alpha"]
        );
        assert_eq!(specs[0].config.package, "examples.host_inventory");
        assert_eq!(specs[0].config.schedule.as_deref(), Some("*/5 * * * *"));
        assert_eq!(specs[0].config.extra["token"], json!("s3cret"));
        assert_eq!(specs[0].config.extra["site"], json!("lab-eu"));
        assert_eq!(specs[0].scope, json!({"targets": ["a", "b"]}));
        assert_eq!(specs[1].config.schedule, None);
        assert_eq!(specs[1].scope, Value::Null);
        assert_eq!(
            specs[0].config.to_value(),
            json!({"package": "examples.host_inventory", "schedule": "*/5 * * * *", "token": "s3cret", "site": "lab-eu"})
        );
    }

    #[test]
    fn every_bad_field_is_listed() {
        let yaml = r#"
policies:
  a:
    config:
      schedule: "not a cron"
  b:
    config:
      package: "bad-name"
      password: ${MISSING_VAR}
    extra_key: 1
  c: 5
  d:
    scope: {}
extra: true
"#;
        let err = parse_policies_yaml(yaml, &env).unwrap_err();
        assert_eq!(err.code(), "config_error");
        let text = err.to_string();
        for needle in [
            "policies.a.config.package: required",
            "policies.a.config.schedule: invalid cron schedule \"not a cron\"",
            "policies.b.config.package: \"bad-name\" is not a Python module name",
            "policies.b.config.password: environment variable MISSING_VAR is not set",
            "policies.b.extra_key: unknown key",
            "policies.c: expected a mapping",
            "policies.d.config: required",
            "extra: unknown top-level key",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert!(text.contains("(8 problems)"), "{text}");
    }

    #[test]
    fn duplicate_policy_names_are_config_errors() {
        let yaml = "policies:\n  a:\n    config: {package: x}\n  a:\n    config: {package: y}\n";
        let err = parse_policies_yaml(yaml, &env).unwrap_err();
        assert_eq!(err.code(), "config_error");
        assert!(err.to_string().contains("duplicate"), "{err}");
    }

    #[test]
    fn malformed_yaml_and_wrong_shapes_are_config_errors() {
        assert!(parse_policies_yaml("policies: [", &env).is_err());
        assert!(
            parse_policies_yaml("- 1\n- 2\n", &env)
                .unwrap_err()
                .to_string()
                .contains("document")
        );
        assert!(
            parse_policies_yaml("policies: {}\n", &env)
                .unwrap_err()
                .to_string()
                .contains("at least one")
        );
        assert!(
            parse_policies_yaml("other: 1\n", &env)
                .unwrap_err()
                .to_string()
                .contains("policies: required")
        );
    }

    #[test]
    fn substitution_rules() {
        assert_eq!(substitute("a${TOKEN}b", &env).unwrap(), "as3cretb");
        assert_eq!(substitute("$${TOKEN}", &env).unwrap(), "${TOKEN}");
        assert_eq!(substitute("${NOPE:-}", &env).unwrap(), "");
        assert!(
            substitute("${TOKEN", &env)
                .unwrap_err()
                .contains("unterminated")
        );
        assert!(
            substitute("${1X}", &env)
                .unwrap_err()
                .contains("not a valid")
        );
        let e = substitute("${A1}${B2}", &env).unwrap_err();
        assert!(e.contains("A1, B2 are not set"), "{e}");
    }

    #[test]
    fn parse_policies_accepts_a_parsed_document() {
        let doc = json!({"policies": {"p": {"config": {"package": "m", "schedule": null}, "scope": [1]}}});
        let specs = parse_policies(doc, &env).unwrap();
        assert_eq!(specs[0].scope, json!([1]));
        assert!(matches!(specs[0].schedule().unwrap(), Schedule::Once));
    }
}
