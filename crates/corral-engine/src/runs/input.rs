//! A trigger's input: the application's settings merged in, the schema's defaults
//! applied, scalars coerced as form-based callers send them, and validation against
//! the agent's input schema.

use corral_core::{FieldError, Problem, ProblemResult};
use serde_json::{json, Map, Value};

use super::trigger::InputSettings;

/// Coerces string values to the schema's scalar types, as form-based callers send
/// them (`"5"` → 5, `"true"` → true), leaving anything that does not parse as is so
/// validation reports it.
fn coerce(schema: &Value, input: &mut Map<String, Value>) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (k, prop) in props {
        let Some(Value::String(s)) = input.get(k) else {
            continue;
        };
        let t = prop.get("type").and_then(Value::as_str);
        let coerced = match t {
            Some("integer") => s.trim().parse::<i64>().ok().map(Value::from),
            Some("number") => s
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number),
            Some("boolean") => match s.trim() {
                "true" => Some(Value::Bool(true)),
                "false" => Some(Value::Bool(false)),
                _ => None,
            },
            _ => None,
        };
        if let Some(v) = coerced {
            input.insert(k.clone(), v);
        }
    }
}

/// Merges the application's input settings (defaults; locked fields win), applies
/// schema defaults, coerces scalars and validates against the input schema.
pub(crate) fn prepare_input(
    manifest: &Value,
    given: Map<String, Value>,
    settings: Option<&InputSettings>,
) -> ProblemResult<Value> {
    let schema = manifest
        .pointer("/input/schema")
        .cloned()
        .unwrap_or_else(|| json!({"type": "object"}));
    let mut input = Map::new();
    if let Some(s) = settings {
        input.extend(s.values.clone());
    }
    for (k, v) in given {
        if settings.is_some_and(|s| s.locked_fields.contains(&k)) {
            continue;
        }
        input.insert(k, v);
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, prop) in props {
            if !input.contains_key(k) {
                if let Some(d) = prop.get("default") {
                    input.insert(k.clone(), d.clone());
                }
            }
        }
    }
    coerce(&schema, &mut input);
    let value = Value::Object(input);
    let validator = jsonschema::validator_for(&schema).map_err(|e| {
        Problem::validation(vec![FieldError::new(
            "input",
            "invalid_schema",
            format!("the agent's input schema is invalid: {e}"),
        )])
    })?;
    let errors: Vec<FieldError> = validator
        .iter_errors(&value)
        .map(|e| {
            let path = e.instance_path().to_string();
            let field = if path.is_empty() {
                "input".to_owned()
            } else {
                format!("input{}", path.replace('/', "."))
            };
            FieldError::new(field, "invalid", e.to_string())
        })
        .collect();
    if !errors.is_empty() {
        return Err(Problem::validation(errors));
    }
    Ok(value)
}
