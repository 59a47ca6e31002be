use super::*;

// ---------------------------------------------------------------------------------
// Response shapes

/// A package as listed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrgPackageItem {
    /// `@scope/name`
    pub id: String,
    pub org_id: Option<String>,
    pub name: String,
    #[serde(rename = "type")]
    pub ptype: String,
    pub description: Option<String>,
    /// `system` (shipped with Corral, read-only) or `local` (the org's own).
    #[schema(value_type = String, pattern = "^(system|local)$")]
    pub source: &'static str,
    #[serde(rename = "created_by")]
    pub created_by: Option<String>,
    #[serde(rename = "created_by_name", skip_serializing_if = "Option::is_none")]
    pub created_by_name: Option<String>,
    #[serde(rename = "used_by_agents")]
    pub used_by_agents: i64,
    /// The `latest` published version, if any.
    pub version: Option<String>,
    #[serde(rename = "auto_installed")]
    pub auto_installed: bool,
    #[serde(rename = "forked_from")]
    pub forked_from: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PackageList {
    #[schema(value_type = String, pattern = "^list$")]
    pub object: &'static str,
    pub data: Vec<OrgPackageItem>,
    pub total: i64,
    pub has_more: bool,
}

/// A skill, MCP server or integration package (its draft, plus its latest version).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PackageDetail {
    pub id: String,
    pub org_id: Option<String>,
    #[serde(rename = "type")]
    pub ptype: String,
    pub name: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
    /// The main text file (`SKILL.md` for skills), when the type has one.
    pub content: Option<String>,
    #[schema(value_type = String, pattern = "^(system|local)$")]
    pub source: &'static str,
    #[serde(rename = "created_by")]
    pub created_by: Option<String>,
    #[serde(rename = "auto_installed")]
    pub auto_installed: bool,
    #[serde(rename = "lock_version")]
    pub lock_version: i64,
    pub version: Option<String>,
    #[schema(value_type = Object)]
    pub manifest: Value,
    #[serde(rename = "version_count")]
    pub version_count: i64,
    #[serde(rename = "has_unarchived_changes")]
    pub has_unarchived_changes: bool,
    #[serde(rename = "forked_from")]
    pub forked_from: Option<String>,
    /// Agents of the org that depend on this package.
    pub agents: Vec<DependentAgent>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// An agent depending on a package.
#[derive(Debug, Serialize, ToSchema)]
pub struct DependentAgent {
    pub id: String,
    /// The agent's display name, else its id.
    pub display_name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentInput {
    #[schema(value_type = Object)]
    pub schema: Value,
    #[schema(value_type = Object)]
    pub values: Value,
    pub locked_fields: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub file_constraints: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub ui_hints: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub property_order: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DependencyRef {
    pub id: String,
    pub version: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Dependencies {
    pub skills: Vec<DependencyRef>,
    pub mcp_servers: Vec<DependencyRef>,
    pub integrations: Vec<DependencyRef>,
}

/// An agent package: its draft (manifest, prompt), input/output, dependencies.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentDetail {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[schema(value_type = String, pattern = "^(system|local)$")]
    pub source: &'static str,
    pub scope: Option<String>,
    pub version: Option<String>,
    #[schema(value_type = Object)]
    pub manifest: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(rename = "updatedAt")]
    #[schema(format = DateTime)]
    pub updated_at: String,
    pub lock_version: i64,
    pub input: AgentInput,
    #[schema(value_type = Object)]
    pub output: Value,
    pub dependencies: Dependencies,
    #[schema(value_type = Option<Object>)]
    pub last_run: Option<Value>,
    pub running_runs: i64,
    pub version_count: i64,
    pub forked_from: Option<String>,
    pub has_unarchived_changes: bool,
    pub effective_timeout_seconds: i64,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Detail {
    Agent(Box<AgentDetail>),
    Other(Box<PackageDetail>),
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    pub id: i64,
    pub package_id: String,
    pub version: String,
    pub integrity: String,
    #[serde(rename = "artifact_size")]
    pub artifact_size: i64,
    pub yanked: bool,
    #[serde(rename = "created_by")]
    pub created_by: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionList {
    pub versions: Vec<VersionInfo>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PackageVersionDetail {
    pub id: i64,
    pub version: String,
    #[schema(value_type = Object)]
    pub manifest: Value,
    pub content: Option<String>,
    pub yanked: bool,
    pub yanked_reason: Option<String>,
    pub integrity: String,
    pub artifact_size: i64,
    #[serde(rename = "createdAt")]
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    pub dist_tags: Vec<String>,
}

// ---------------------------------------------------------------------------------
// Request shapes

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePackageBody {
    /// The AFPS manifest.
    #[schema(value_type = Object)]
    pub manifest: Value,
    /// The main text file: the agent's prompt (`prompt.md`) or the skill's `SKILL.md`.
    pub content: Option<String>,
    /// Other files of the package, path → UTF-8 text.
    pub files: Option<BTreeMap<String, String>>,
}

impl Validate for CreatePackageBody {}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePackageBody {
    #[schema(value_type = Object)]
    pub manifest: Value,
    pub content: Option<String>,
    pub files: Option<BTreeMap<String, String>>,
    /// The `lock_version` read; a concurrent edit makes the update a 409.
    pub lock_version: Option<i64>,
}

impl Validate for UpdatePackageBody {}

#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateVersionBody {
    /// Version to publish the draft as; defaults to the draft manifest's version.
    pub version: Option<String>,
    /// A custom dist-tag (e.g. `beta`, `stable`) to point at the new version, besides
    /// `latest`, which moves to every new stable version by itself.
    pub tag: Option<String>,
}

/// A dist-tag name: lowercase, starts with a letter, and is not a version or range.
pub(super) fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && semver::VersionReq::parse(t).is_err()
}

impl Validate for CreateVersionBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        if let Some(v) = &self.version {
            if semver::Version::parse(v).is_err() {
                e.push(FieldError::new(
                    "version",
                    "invalid_format",
                    "must be a semantic version such as 1.2.0",
                ));
            }
        }
        if let Some(t) = &self.tag {
            if !valid_tag(t) {
                e.push(FieldError::new(
                    "tag",
                    "invalid_format",
                    "lowercase letters, digits and hyphens, starting with a letter",
                ));
            }
        }
        e
    }
}
