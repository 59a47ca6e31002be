//! Checks responses against the server's generated OpenAPI document: finds the
//! operation for a concrete path, takes the schema for the status, and validates the
//! body with a JSON Schema 2020-12 validator.

use serde_json::Value;

/// The path template in `spec` that matches `path` (`/api/orgs/123` → `/api/orgs/{orgId}`),
/// preferring literal segments over parameters.
pub fn find_template<'a>(spec: &'a Value, path: &str) -> Option<&'a str> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let mut best: Option<(&str, usize)> = None;
    for template in spec["paths"].as_object()?.keys() {
        let tsegs: Vec<&str> = template.split('/').collect();
        if tsegs.len() != segs.len() {
            continue;
        }
        let mut params = 0;
        let ok = tsegs.iter().zip(&segs).all(|(t, s)| {
            if t.starts_with('{') && t.ends_with('}') {
                params += 1;
                !s.is_empty()
            } else {
                t == s
            }
        });
        if ok && best.is_none_or(|(_, p)| params < p) {
            best = Some((template, params));
        }
    }
    best.map(|(t, _)| t)
}

/// Validates a response body. Returns a description of every violation; empty when the
/// body conforms, or when the operation documents no JSON schema for that status.
pub fn check_response(
    spec: &Value,
    method: &str,
    path: &str,
    status: u16,
    body: &Value,
) -> Result<(), String> {
    let Some(template) = find_template(spec, path) else {
        return Err(format!(
            "{method} {path}: no such path in the generated contract"
        ));
    };
    let op = &spec["paths"][template][method.to_lowercase()];
    if op.is_null() {
        return Err(format!(
            "{method} {template}: no such operation in the generated contract"
        ));
    }
    let resp = &op["responses"][status.to_string()];
    if resp.is_null() {
        return Err(format!(
            "{method} {template}: status {status} is not documented"
        ));
    }
    let Some(content) = resp["content"].as_object() else {
        return Ok(());
    };
    let Some(schema) = content.values().next().map(|c| &c["schema"]) else {
        return Ok(());
    };
    let mut root = schema.clone();
    if let Value::Object(m) = &mut root {
        m.insert("components".into(), spec["components"].clone());
        m.insert(
            "$schema".into(),
            Value::String("https://json-schema.org/draft/2020-12/schema".into()),
        );
    }
    let validator = jsonschema::validator_for(&root)
        .map_err(|e| format!("{method} {template}: bad schema: {e}"))?;
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{method} {template} {status}: body violates the contract: {}",
            errors.join("; ")
        ))
    }
}
