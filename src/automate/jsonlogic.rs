//! JsonLogic conditions for workflows: `== != > >= < <= and or ! !! in var` (plus `===`/`!==`).
//!
//! An unknown operator is an error, never a match; nesting deeper than [`MAX_DEPTH`] is refused;
//! `var` reads only the data it is given (the workflow engine passes `{"event", "context"}`) and a
//! missing path is `null` (or the rule's default).

use super::{AutomateError, AutomateResult};
use serde_json::{Map, Value};

/// The deepest nesting of operators a rule may have.
pub const MAX_DEPTH: usize = 32;

/// The operators this evaluator knows.
pub const OPERATORS: &[&str] = &[
    "==", "===", "!=", "!==", ">", ">=", "<", "<=", "and", "or", "!", "!!", "in", "var",
];

/// Checks a rule without evaluating it: every operator known, arity sane, depth bounded.
pub fn check(rule: &Value) -> AutomateResult<()> {
    walk_check(rule, 0)
}

/// Evaluates `rule` against `data` and returns the raw JsonLogic result.
pub fn apply(rule: &Value, data: &Value) -> AutomateResult<Value> {
    check(rule)?;
    eval(rule, data)
}

/// Evaluates `rule` and returns its truthiness (how a workflow condition matches).
pub fn matches(rule: &Value, data: &Value) -> AutomateResult<bool> {
    apply(rule, data).map(|v| truthy(&v))
}

/// JsonLogic truthiness: `0`, `""`, `[]`, `null` and `false` are false.
pub fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(_) => true,
    }
}

fn operation(map: &Map<String, Value>) -> AutomateResult<Option<(&str, Vec<&Value>)>> {
    if map.len() != 1 {
        return Ok(None);
    }
    let (op, args) = map.iter().next().expect("one entry");
    let args = match args {
        Value::Array(items) => items.iter().collect(),
        single => vec![single],
    };
    Ok(Some((op.as_str(), args)))
}

fn walk_check(rule: &Value, depth: usize) -> AutomateResult<()> {
    if depth > MAX_DEPTH {
        return Err(AutomateError::Config(format!(
            "JsonLogic rule is nested deeper than {MAX_DEPTH} levels"
        )));
    }
    match rule {
        Value::Array(items) => items.iter().try_for_each(|i| walk_check(i, depth + 1)),
        Value::Object(map) => {
            let Some((op, args)) = operation(map)? else {
                let keys: Vec<&String> = map.keys().collect();
                return Err(AutomateError::Config(format!(
                    "a JsonLogic operation is an object with exactly one operator key, got keys {keys:?}"
                )));
            };
            if !OPERATORS.contains(&op) {
                return Err(AutomateError::Config(format!(
                    "unknown JsonLogic operator {op:?}; known operators: {}",
                    OPERATORS.join(" ")
                )));
            }
            let arity_ok = match op {
                "!" | "!!" => args.len() == 1,
                "var" => (1..=2).contains(&args.len()),
                "in" | "==" | "===" | "!=" | "!==" | ">" | ">=" => args.len() == 2,
                "<" | "<=" => (2..=3).contains(&args.len()),
                _ => !args.is_empty(),
            };
            if !arity_ok {
                return Err(AutomateError::Config(format!(
                    "JsonLogic operator {op:?} got {} argument(s)",
                    args.len()
                )));
            }
            args.into_iter().try_for_each(|a| walk_check(a, depth + 1))
        }
        _ => Ok(()),
    }
}

/// Evaluates a rule that [`check`] accepted (so its depth is already bounded).
fn eval(rule: &Value, data: &Value) -> AutomateResult<Value> {
    match rule {
        Value::Array(items) => Ok(Value::Array(
            items
                .iter()
                .map(|i| eval(i, data))
                .collect::<AutomateResult<_>>()?,
        )),
        Value::Object(map) => {
            let (op, args) = operation(map)?.expect("checked");
            let arg = |i: usize| eval(args[i], data);
            Ok(match op {
                "var" => {
                    let path = arg(0)?;
                    let default = if args.len() > 1 { arg(1)? } else { Value::Null };
                    match lookup(data, &path)? {
                        Some(Value::Null) | None => default,
                        Some(found) => found.clone(),
                    }
                }
                "and" => {
                    let mut last = Value::Bool(true);
                    for a in &args {
                        last = eval(a, data)?;
                        if !truthy(&last) {
                            return Ok(last);
                        }
                    }
                    last
                }
                "or" => {
                    let mut last = Value::Bool(false);
                    for a in &args {
                        last = eval(a, data)?;
                        if truthy(&last) {
                            return Ok(last);
                        }
                    }
                    last
                }
                "!" => Value::Bool(!truthy(&arg(0)?)),
                "!!" => Value::Bool(truthy(&arg(0)?)),
                "==" => Value::Bool(loose_eq(&arg(0)?, &arg(1)?)),
                "!=" => Value::Bool(!loose_eq(&arg(0)?, &arg(1)?)),
                "===" => Value::Bool(strict_eq(&arg(0)?, &arg(1)?)),
                "!==" => Value::Bool(!strict_eq(&arg(0)?, &arg(1)?)),
                ">" => Value::Bool(compare(&arg(0)?, &arg(1)?, |o| o.is_gt())),
                ">=" => Value::Bool(compare(&arg(0)?, &arg(1)?, |o| o.is_ge())),
                "<" | "<=" => {
                    let test =
                        |o: std::cmp::Ordering| if op == "<" { o.is_lt() } else { o.is_le() };
                    let (a, b) = (arg(0)?, arg(1)?);
                    let first = compare(&a, &b, test);
                    if args.len() == 3 {
                        Value::Bool(first && compare(&b, &arg(2)?, test))
                    } else {
                        Value::Bool(first)
                    }
                }
                "in" => {
                    let (needle, hay) = (arg(0)?, arg(1)?);
                    Value::Bool(match &hay {
                        Value::String(s) => s.contains(&to_text(&needle)),
                        Value::Array(items) => items.iter().any(|i| strict_eq(i, &needle)),
                        _ => false,
                    })
                }
                other => {
                    return Err(AutomateError::Config(format!(
                        "unknown JsonLogic operator {other:?}"
                    )));
                }
            })
        }
        other => Ok(other.clone()),
    }
}

fn lookup<'a>(data: &'a Value, path: &Value) -> AutomateResult<Option<&'a Value>> {
    let path = match path {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Null => return Ok(Some(data)),
        other => {
            return Err(AutomateError::Config(format!(
                "a JsonLogic var path is a string or a number, got {}",
                super::schema::kind(other)
            )));
        }
    };
    if path.is_empty() {
        return Ok(Some(data));
    }
    let mut current = data;
    for part in path.split('.') {
        current = match current {
            Value::Object(map) => match map.get(part) {
                Some(v) => v,
                None => return Ok(None),
            },
            Value::Array(items) => match part.parse::<usize>().ok().and_then(|i| items.get(i)) {
                Some(v) => v,
                None => return Ok(None),
            },
            _ => return Ok(None),
        };
    }
    Ok(Some(current))
}

fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) if s.trim().is_empty() => Some(0.0),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::Null => Some(0.0),
        _ => None,
    }
}

fn to_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

fn strict_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// JavaScript's `==` for JSON values (the JsonLogic reference semantics).
fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Null, _) | (_, Value::Null) => false,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Array(_) | Value::Object(_), Value::Array(_) | Value::Object(_)) => false,
        (Value::Array(_) | Value::Object(_), _) | (_, Value::Array(_) | Value::Object(_)) => false,
        _ => match (as_number(a), as_number(b)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
    }
}

fn compare(a: &Value, b: &Value, test: impl Fn(std::cmp::Ordering) -> bool) -> bool {
    if let (Value::String(x), Value::String(y)) = (a, b) {
        return test(x.cmp(y));
    }
    match (as_number(a), as_number(b)) {
        (Some(x), Some(y)) => x.partial_cmp(&y).is_some_and(test),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data() -> Value {
        json!({"event": {"type": "order.created", "payload": {"total": 120, "tags": ["vip", "eu"], "email": "a@b.c"}},
               "context": {"tenant": "acme"}})
    }

    #[test]
    fn comparison_truth_table() {
        let cases = [
            (json!({"==": [1, 1]}), true),
            (json!({"==": [1, "1"]}), true),
            (json!({"==": [0, false]}), true),
            (json!({"==": [null, 0]}), false),
            (json!({"===": [1, "1"]}), false),
            (json!({"!=": [1, 2]}), true),
            (json!({"!=": ["a", "a"]}), false),
            (json!({">": [2, 1]}), true),
            (json!({">": [1, 1]}), false),
            (json!({">=": [1, 1]}), true),
            (json!({"<": [1, 2]}), true),
            (json!({"<": [2, 2]}), false),
            (json!({"<=": [2, 2]}), true),
            (json!({"<": [1, 2, 3]}), true),
            (json!({"<": [1, 3, 3]}), false),
            (json!({"<=": [1, 3, 3]}), true),
            (json!({">": ["b", "a"]}), true),
        ];
        for (rule, expected) in cases {
            assert_eq!(matches(&rule, &data()).unwrap(), expected, "{rule}");
        }
    }

    #[test]
    fn logic_truth_table() {
        for (a, b) in [(true, true), (true, false), (false, true), (false, false)] {
            assert_eq!(matches(&json!({"and": [a, b]}), &data()).unwrap(), a && b);
            assert_eq!(matches(&json!({"or": [a, b]}), &data()).unwrap(), a || b);
            assert_eq!(matches(&json!({"!": [a]}), &data()).unwrap(), !a);
        }
        assert_eq!(
            apply(&json!({"or": [0, "x"]}), &data()).unwrap(),
            json!("x")
        );
        assert_eq!(
            apply(&json!({"and": [1, 0, 2]}), &data()).unwrap(),
            json!(0)
        );
        assert!(!matches(&json!({"!!": [[]]}), &data()).unwrap());
    }

    #[test]
    fn var_and_in() {
        let d = data();
        assert!(matches(&json!({">": [{"var": "event.payload.total"}, 100]}), &d).unwrap());
        assert!(matches(&json!({"in": ["vip", {"var": "event.payload.tags"}]}), &d).unwrap());
        assert!(matches(&json!({"in": ["@b", {"var": "event.payload.email"}]}), &d).unwrap());
        assert!(!matches(&json!({"in": ["us", {"var": "event.payload.tags"}]}), &d).unwrap());
        assert_eq!(
            apply(&json!({"var": "event.payload.tags.1"}), &d).unwrap(),
            json!("eu")
        );
        assert_eq!(
            apply(&json!({"var": "event.nope.deeper"}), &d).unwrap(),
            Value::Null
        );
        assert_eq!(
            apply(&json!({"var": ["event.nope", 7]}), &d).unwrap(),
            json!(7)
        );
        assert_eq!(
            apply(&json!({"var": "context.tenant"}), &d).unwrap(),
            json!("acme")
        );
        // Only the given roots exist: nothing else (no environment, no globals) is reachable.
        assert_eq!(apply(&json!({"var": "env.HOME"}), &d).unwrap(), Value::Null);
    }

    #[test]
    fn an_unknown_operator_is_an_error_not_a_match() {
        for rule in [
            json!({"regex": ["a", "a"]}),
            json!({"and": [true, {"bogus": [1]}]}),
            json!({"or": [true, {"x": 1}]}),
        ] {
            let err = matches(&rule, &data()).unwrap_err();
            assert!(
                matches!(err, AutomateError::Config(ref m) if m.contains("unknown JsonLogic operator")),
                "{err:?}"
            );
        }
        assert!(check(&json!({"a": 1, "b": 2})).is_err());
        assert!(check(&json!({"!": [1, 2]})).is_err());
    }

    #[test]
    fn nesting_is_bounded() {
        let mut rule = json!(true);
        for _ in 0..(MAX_DEPTH + 5) {
            rule = json!({"!": [rule]});
        }
        let err = check(&rule).unwrap_err();
        assert!(err.to_string().contains("deeper than"), "{err}");
        let mut shallow = json!(true);
        for _ in 0..10 {
            shallow = json!({"!": [shallow]});
        }
        assert!(matches(&shallow, &data()).unwrap());
    }
}
