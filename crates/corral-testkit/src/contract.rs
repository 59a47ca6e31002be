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

/// Operations whose success body deliberately differs from the reference contract's
/// schema: (method, path template, reason). Each is listed in `docs/compatibility.md`.
/// Everything else Corral answers with a 2xx is validated against the reference too.
pub const REFERENCE_SHAPE_EXEMPT: &[(&str, &str, &str)] = &[];

/// The reference (Appstrate) contract, read once from the shared reference directory.
pub fn reference() -> &'static Value {
    static REFERENCE: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    REFERENCE.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/reference/appstrate-openapi.json"
        );
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("the reference contract {path}: {e}"));
        serde_json::from_str(&text).expect("reference contract JSON")
    })
}

/// Resolves the reference's external `$ref`s to the AFPS manifest schemas
/// (`https://schemas.afps.dev/v0/agent.schema.json`, …) from the copies shipped with
/// the reference (`reference/afps/schemas/<type>.schema.json`).
struct AfpsSchemas;

impl jsonschema::Retrieve for AfpsSchemas {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let file = uri
            .path()
            .as_str()
            .rsplit('/')
            .next()
            .filter(|f| f.ends_with(".schema.json"))
            .ok_or_else(|| format!("no local copy of {uri}"))?
            .to_owned();
        let path = format!(
            "{}/../../../shared/reference/afps/schemas/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        Ok(serde_json::from_str(&text)?)
    }
}

type Validators = std::collections::HashMap<String, std::sync::Arc<jsonschema::Validator>>;

/// Validates a success body against the reference contract's schema for the same
/// operation (found through the template of our own contract, which the contract test
/// keeps identical to the reference's). Operations the reference does not define,
/// non-2xx statuses, non-JSON documented bodies and the exemptions pass.
pub fn check_reference_response(
    spec: &Value,
    method: &str,
    path: &str,
    status: u16,
    body: &Value,
) -> Result<(), String> {
    if !(200..300).contains(&status) {
        return Ok(());
    }
    let Some(template) = find_template(spec, path) else {
        return Ok(());
    };
    let method = method.to_lowercase();
    if REFERENCE_SHAPE_EXEMPT
        .iter()
        .any(|(m, t, _)| m.eq_ignore_ascii_case(&method) && *t == template)
    {
        return Ok(());
    }
    let reference = reference();
    let op = &reference["paths"][template][&method];
    let Some(schema) =
        op["responses"][status.to_string()]["content"]["application/json"].get("schema")
    else {
        return Ok(());
    };
    static CACHE: std::sync::OnceLock<parking_lot::Mutex<Validators>> = std::sync::OnceLock::new();
    let key = format!("{method} {template} {status}");
    let cached = CACHE
        .get_or_init(Default::default)
        .lock()
        .get(&key)
        .cloned();
    let validator = match cached {
        Some(v) => v,
        None => {
            let mut root = schema.clone();
            if let Value::Object(m) = &mut root {
                m.insert("components".into(), reference["components"].clone());
                m.insert(
                    "$schema".into(),
                    Value::String("https://json-schema.org/draft/2020-12/schema".into()),
                );
            }
            let v = std::sync::Arc::new(
                jsonschema::options()
                    .with_retriever(AfpsSchemas)
                    .build(&root)
                    .map_err(|e| format!("{method} {template}: bad reference schema: {e}"))?,
            );
            CACHE.get().expect("cache").lock().insert(key, v.clone());
            v
        }
    };
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{method} {template} {status}: body violates the REFERENCE contract: {}",
            errors.join("; ")
        ))
    }
}
