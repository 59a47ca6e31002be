//! Manifest validation: the four reference JSON Schemas (embedded copies in
//! `schemas/`), every violation reported as a [`FieldError`], plus the rules the
//! schemas cannot express (name form, semver, required content files, the
//! `schema_version` renumbering). Also reads declared dependencies.

use crate::{FieldError, PackageName, PackageType};
use jsonschema::error::ValidationErrorKind;
use jsonschema::Validator;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::OnceLock;

pub(crate) const AGENT_SCHEMA: &str = include_str!("../schemas/agent.schema.json");
pub(crate) const SKILL_SCHEMA: &str = include_str!("../schemas/skill.schema.json");
pub(crate) const MCP_SERVER_SCHEMA: &str = include_str!("../schemas/mcp-server.schema.json");
pub(crate) const INTEGRATION_SCHEMA: &str = include_str!("../schemas/integration.schema.json");

/// The embedded JSON Schema (2020-12) of a package type's manifest, as text.
pub fn schema(ptype: PackageType) -> &'static str {
    match ptype {
        PackageType::Agent => AGENT_SCHEMA,
        PackageType::Skill => SKILL_SCHEMA,
        PackageType::McpServer => MCP_SERVER_SCHEMA,
        PackageType::Integration => INTEGRATION_SCHEMA,
    }
}

type Compiled = Result<Validator, String>;

/// Compiled once per type; compiling takes far longer than validating.
fn validator(ptype: PackageType) -> &'static Compiled {
    static CELLS: [OnceLock<Compiled>; 4] = [
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
    ];
    let index = match ptype {
        PackageType::Agent => 0,
        PackageType::Skill => 1,
        PackageType::McpServer => 2,
        PackageType::Integration => 3,
    };
    CELLS[index].get_or_init(|| {
        let schema: Value = serde_json::from_str(schema(ptype)).map_err(|e| e.to_string())?;
        jsonschema::draft202012::new(&schema).map_err(|e| e.to_string())
    })
}

/// "/input/schema/properties/x" → "input.schema.properties.x".
fn dotted(pointer: &str) -> String {
    pointer
        .split('/')
        .skip(1)
        .map(|part| part.replace("~1", "/").replace("~0", "~"))
        .collect::<Vec<_>>()
        .join(".")
}

fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_string()
    } else {
        format!("{parent}.{child}")
    }
}

/// The snake_case name of a validation error's kind ("Required" → "required",
/// "AdditionalProperties" → "additional_properties"), taken from its Debug form so
/// every keyword of the validator gets a code without an exhaustive match.
fn kind_code(kind: &ValidationErrorKind) -> String {
    let debug = format!("{kind:?}");
    let ident: String = debug
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    let mut code = String::new();
    for (i, c) in ident.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                code.push('_');
            }
            code.push(c.to_ascii_lowercase());
        } else {
            code.push(c);
        }
    }
    code
}

/// `"0.x"`: the renumbered schema_version current reference clients send.
fn is_zero_x(s: &str) -> bool {
    s.strip_prefix("0.")
        .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
}

/// Validates a manifest of any type against its schema, collecting EVERY violation,
/// plus the type rules the schemas cannot express.
pub fn validate(
    manifest: &Value,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<(PackageType, PackageName, semver::Version), Vec<FieldError>> {
    let Some(object) = manifest.as_object() else {
        return Err(vec![FieldError::new(
            "",
            "type",
            "the manifest must be a JSON object",
        )]);
    };
    let mut errors = Vec::new();

    let ptype = match object.get("type") {
        None => {
            errors.push(FieldError::new(
                "type",
                "required",
                "\"type\" is a required property",
            ));
            None
        }
        Some(Value::String(t)) => {
            let parsed = PackageType::parse(t);
            if parsed.is_none() {
                errors.push(FieldError::new(
                    "type",
                    "unknown_type",
                    format!(
                        "{t:?} is not one of \"agent\", \"skill\", \"mcp-server\", \"integration\""
                    ),
                ));
            }
            parsed
        }
        Some(other) => {
            errors.push(FieldError::new(
                "type",
                "type",
                format!("{other} is not of type \"string\""),
            ));
            None
        }
    };

    if let Some(ptype) = ptype {
        schema_errors(ptype, manifest, &mut errors);
        // The AFPS schema requires `author`, but the reference API's AgentManifest
        // does not, and Appstrate clients send agents without one: accepted here
        // (docs/compatibility.md).
        errors.retain(|e| !(e.field == "author" && e.code == "required"));
    }

    // Our own checks of name and version, unless the schema already complained
    // about the same field (one error per problem is enough).
    let reported = |errors: &[FieldError], field: &str| errors.iter().any(|e| e.field == field);
    let name = match object.get("name").and_then(Value::as_str) {
        Some(s) => {
            let parsed = PackageName::parse(s);
            if parsed.is_none() && !reported(&errors, "name") {
                errors.push(FieldError::new(
                    "name",
                    "pattern",
                    format!("{s:?} is not of the form @scope/name"),
                ));
            }
            parsed
        }
        None => {
            if !reported(&errors, "name") {
                errors.push(FieldError::new(
                    "name",
                    "required",
                    "a string \"name\" (@scope/name) is required",
                ));
            }
            None
        }
    };
    let version = match object.get("version").and_then(Value::as_str) {
        Some(s) => match semver::Version::parse(s) {
            Ok(v) => Some(v),
            Err(e) => {
                errors.push(FieldError::new(
                    "version",
                    "invalid_semver",
                    format!("{s:?} is not a semantic version: {e}"),
                ));
                None
            }
        },
        None => {
            if !reported(&errors, "version") {
                errors.push(FieldError::new(
                    "version",
                    "required",
                    "a string \"version\" is required",
                ));
            }
            None
        }
    };

    match ptype {
        Some(PackageType::Agent) => check_prompt(files, &mut errors),
        Some(PackageType::Skill) => check_skill_md(files, &mut errors),
        _ => {}
    }

    match (ptype, name, version) {
        (Some(t), Some(n), Some(v)) if errors.is_empty() => Ok((t, n, v)),
        _ => Err(errors),
    }
}

fn schema_errors(ptype: PackageType, manifest: &Value, errors: &mut Vec<FieldError>) {
    let validator = match validator(ptype) {
        Ok(v) => v,
        Err(e) => {
            errors.push(FieldError::new(
                "",
                "schema_unavailable",
                format!("the {ptype} schema failed to load: {e}"),
            ));
            return;
        }
    };
    // Both numberings of schema_version describe the same structure: present a 0.x
    // value to the schema (which only knows 2.x) as "2.0".
    let renumbered;
    let instance = match manifest.get("schema_version").and_then(Value::as_str) {
        Some(v) if is_zero_x(v) => {
            let mut copy = manifest.clone();
            copy["schema_version"] = Value::String("2.0".into());
            renumbered = copy;
            &renumbered
        }
        _ => manifest,
    };
    for error in validator.iter_errors(instance) {
        let path = dotted(error.instance_path().as_str());
        let message = error.to_string();
        match error.kind() {
            ValidationErrorKind::Required { property } => {
                let property = property
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| property.to_string());
                errors.push(FieldError::new(join(&path, &property), "required", message));
            }
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                for property in unexpected {
                    errors.push(FieldError::new(
                        join(&path, property.as_str()),
                        "additional_properties",
                        format!("{property:?} is not allowed here"),
                    ));
                }
            }
            kind => errors.push(FieldError::new(path, kind_code(kind), message)),
        }
    }
}

fn check_prompt(files: &BTreeMap<String, Vec<u8>>, errors: &mut Vec<FieldError>) {
    const FIELD: &str = "files.prompt.md";
    match files.get("prompt.md").map(|b| std::str::from_utf8(b)) {
        None => errors.push(FieldError::new(
            FIELD,
            "required",
            "an agent needs a prompt.md",
        )),
        Some(Err(_)) => errors.push(FieldError::new(
            FIELD,
            "not_utf8",
            "prompt.md must be UTF-8 text",
        )),
        Some(Ok(text)) if text.trim().is_empty() => errors.push(FieldError::new(
            FIELD,
            "empty",
            "prompt.md must not be empty",
        )),
        Some(Ok(_)) => {}
    }
}

/// The `key: value` pairs of a `---`-delimited front matter block at the top of a
/// Markdown file. Only top-level scalar keys are read, which is all a skill needs.
fn front_matter(text: &str) -> Option<BTreeMap<String, String>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.lines();
    if lines.next()?.trim_end() != "---" {
        return None;
    }
    let mut pairs = BTreeMap::new();
    for line in lines {
        if line.trim_end() == "---" {
            return Some(pairs);
        }
        if line.starts_with([' ', '\t', '#']) {
            continue;
        }
        if let Some((key, value)) = line.split_once(':') {
            let value = value.trim().trim_matches(|c| c == '"' || c == '\'').trim();
            pairs.insert(key.trim().to_string(), value.to_string());
        }
    }
    None // never closed
}

fn check_skill_md(files: &BTreeMap<String, Vec<u8>>, errors: &mut Vec<FieldError>) {
    const FIELD: &str = "files.SKILL.md";
    let text = match files.get("SKILL.md").map(|b| std::str::from_utf8(b)) {
        None => {
            return errors.push(FieldError::new(
                FIELD,
                "required",
                "a skill needs a SKILL.md",
            ))
        }
        Some(Err(_)) => {
            return errors.push(FieldError::new(
                FIELD,
                "not_utf8",
                "SKILL.md must be UTF-8 text",
            ))
        }
        Some(Ok(text)) => text,
    };
    let Some(pairs) = front_matter(text) else {
        return errors.push(FieldError::new(
            FIELD,
            "front_matter_missing",
            "SKILL.md must start with a front matter block between --- lines",
        ));
    };
    // `description` may be absent: the reference accepts such skills (the manifest's
    // own description, if any, stands in).
    for key in ["name"] {
        if pairs.get(key).is_none_or(|v| v.is_empty()) {
            errors.push(FieldError::new(
                format!("{FIELD}.{key}"),
                "required",
                format!("SKILL.md front matter needs a non-empty {key:?}"),
            ));
        }
    }
}

/// The dependencies a manifest declares: (type, name, version range) for skills,
/// mcp_servers and integrations, each either `"range"` or `{ "version": "range", … }`.
/// Entries with an invalid name or no range are skipped (validation reports them).
pub fn dependencies(manifest: &Value) -> Vec<(PackageType, PackageName, String)> {
    let mut out = Vec::new();
    let Some(deps) = manifest.get("dependencies") else {
        return out;
    };
    for (key, ptype) in [
        ("skills", PackageType::Skill),
        ("mcp_servers", PackageType::McpServer),
        ("integrations", PackageType::Integration),
    ] {
        let Some(map) = deps.get(key).and_then(Value::as_object) else {
            continue;
        };
        for (name, spec) in map {
            let range = match spec {
                Value::String(s) => Some(s.as_str()),
                other => other.get("version").and_then(Value::as_str),
            };
            if let (Some(name), Some(range)) = (PackageName::parse(name), range) {
                out.push((ptype, name, range.to_string()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn agent_files() -> BTreeMap<String, Vec<u8>> {
        BTreeMap::from([("prompt.md".to_string(), b"Do the thing.".to_vec())])
    }

    fn minimal_agent() -> Value {
        json!({
            "name": "@acme/agent", "version": "1.0.0", "type": "agent",
            "schema_version": "2.0", "display_name": "Agent", "author": "Acme"
        })
    }

    #[test]
    fn an_agent_without_author_validates_as_the_reference_accepts_it() {
        let mut m = minimal_agent();
        m.as_object_mut().unwrap().remove("author");
        assert!(validate(&m, &agent_files()).is_ok());
    }

    #[test]
    fn minimal_agent_validates() {
        let (t, n, v) = validate(&minimal_agent(), &agent_files()).expect("valid");
        assert_eq!(t, PackageType::Agent);
        assert_eq!(n.id(), "@acme/agent");
        assert_eq!(v, semver::Version::new(1, 0, 0));
    }

    #[test]
    fn schema_version_zero_x_is_accepted_but_not_garbage() {
        let mut m = minimal_agent();
        m["schema_version"] = json!("0.1");
        assert!(validate(&m, &agent_files()).is_ok());
        m["schema_version"] = json!("0.12");
        assert!(validate(&m, &agent_files()).is_ok());
        for bad in ["1.0", "0.", "0.x", "3"] {
            m["schema_version"] = json!(bad);
            let errors = validate(&m, &agent_files()).expect_err(bad);
            assert!(
                errors.iter().any(|e| e.field == "schema_version"),
                "{bad}: {errors:?}"
            );
        }
    }

    #[test]
    fn every_violation_is_reported() {
        let m = json!({
            "name": "not-scoped", "version": "1.0.0", "type": "agent",
            "schema_version": "2.0", "author": "Acme", "timeout": "soon"
        });
        let errors = validate(&m, &agent_files()).expect_err("invalid");
        let has =
            |field: &str, code: &str| errors.iter().any(|e| e.field == field && e.code == code);
        assert!(has("display_name", "required"), "{errors:?}");
        assert!(has("name", "pattern"), "{errors:?}");
        assert!(has("timeout", "type"), "{errors:?}");
        assert!(errors.iter().all(|e| !e.message.is_empty()));
        // The name is reported once, by the schema, not again by our own check.
        assert_eq!(errors.iter().filter(|e| e.field == "name").count(), 1);
    }

    #[test]
    fn nested_paths_and_missing_prompt() {
        let mut m = minimal_agent();
        m["input"] = json!({ "schema": { "type": "array", "properties": {} }, "extra": 1 });
        m["version"] = json!("one");
        let errors = validate(&m, &BTreeMap::new()).expect_err("invalid");
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"input.schema.type"), "{errors:?}");
        assert!(fields.contains(&"input.extra"), "{errors:?}");
        assert!(
            errors
                .iter()
                .any(|e| e.field == "version" && e.code == "invalid_semver"),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.field == "files.prompt.md" && e.code == "required"),
            "{errors:?}"
        );
        let blank = BTreeMap::from([("prompt.md".to_string(), b"  \n".to_vec())]);
        let errors = validate(&minimal_agent(), &blank).expect_err("empty prompt");
        assert_eq!(
            errors,
            vec![FieldError::new(
                "files.prompt.md",
                "empty",
                "prompt.md must not be empty"
            )]
        );
    }

    #[test]
    fn unknown_or_missing_type() {
        let errors = validate(
            &json!({"name": "@a/b", "version": "1.0.0", "type": "widget"}),
            &BTreeMap::new(),
        )
        .expect_err("unknown type");
        assert_eq!(errors[0].field, "type");
        assert_eq!(errors[0].code, "unknown_type");
        let errors = validate(
            &json!({"name": "@a/b", "version": "1.0.0"}),
            &BTreeMap::new(),
        )
        .expect_err("no type");
        assert_eq!(errors[0].code, "required");
        assert!(validate(&json!([1]), &BTreeMap::new()).is_err());
    }

    #[test]
    fn skill_front_matter() {
        let m = json!({"name": "@a/skill", "version": "1.0.0", "type": "skill"});
        let with =
            |text: &str| BTreeMap::from([("SKILL.md".to_string(), text.as_bytes().to_vec())]);
        assert!(validate(
            &m,
            &with("---\nname: s\ndescription: \"Does s\"\n---\n# S\n")
        )
        .is_ok());
        assert!(
            validate(&m, &with("---\nname: s\n---\nbody")).is_ok(),
            "no description: accepted, as the reference does"
        );
        let errors = validate(&m, &with("---\ndescription: d\n---\nbody")).expect_err("no name");
        assert_eq!(errors[0].field, "files.SKILL.md.name");
        let errors = validate(&m, &with("# no front matter")).expect_err("no front matter");
        assert_eq!(errors[0].code, "front_matter_missing");
        let errors = validate(&m, &with("---\nname: s\ndescription: d\n")).expect_err("unclosed");
        assert_eq!(errors[0].code, "front_matter_missing");
        let errors = validate(&m, &BTreeMap::new()).expect_err("no SKILL.md");
        assert_eq!(errors[0].field, "files.SKILL.md");
    }

    #[test]
    fn declared_dependencies() {
        let m = json!({"dependencies": {
            "skills": {"@a/s": "^1.0"},
            "mcp_servers": {"@a/m": {"version": "~2.1"}},
            "integrations": {"@a/i": {"version": "*", "scopes": ["x"]}, "bad name": "1"}
        }});
        let deps = dependencies(&m);
        assert_eq!(deps.len(), 3);
        assert_eq!(
            deps[0],
            (
                PackageType::Skill,
                PackageName::parse("@a/s").expect("name"),
                "^1.0".to_string()
            )
        );
        assert_eq!(deps[1].0, PackageType::McpServer);
        assert_eq!(deps[1].2, "~2.1");
        assert_eq!(deps[2].2, "*");
        assert!(dependencies(&json!({})).is_empty());
    }

    #[test]
    fn kind_codes_are_snake_case() {
        assert_eq!(dotted("/a/b~1c/0"), "a.b/c.0");
        assert_eq!(dotted(""), "");
    }
}
