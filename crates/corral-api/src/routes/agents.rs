//! Agents (`/api/agents…`): the agents the application can run, their per-application
//! input settings (default values and locked fields), and the export of an agent with
//! its dependencies as one `.afps-bundle`. The agent's model is in
//! [`crate::routes::models`].

use crate::query::Query;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use corral_afps::{Bundle, Package, PackageType};
use corral_core::time::now_ms;
use corral_core::ErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::context::{perms, Perm};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::json::{Json, Validate};
use crate::routes::packages::{Dependencies, DependencyRef};
use crate::state::AppState;
use corral_engine::packages as svc;
use std::collections::BTreeMap;

pub fn app_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_agents))
        .routes(routes!(save_input_settings))
        .routes(routes!(export_bundle))
        .routes(routes!(update_skills))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentListItem {
    pub id: String,
    #[serde(rename = "type")]
    pub ptype: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[schema(value_type = String, pattern = "^(system|local)$")]
    pub source: &'static str,
    pub scope: String,
    pub keywords: Vec<String>,
    pub version: Option<String>,
    pub running_runs: i64,
    pub dependencies: DependencyRanges,
}

/// An agent's dependencies as the manifest declares them: package id → version range,
/// per type (the list's shape; the agent detail lists them as `{id, version}` entries).
#[derive(Debug, Serialize, ToSchema)]
pub struct DependencyRanges {
    pub skills: BTreeMap<String, String>,
    pub mcp_servers: BTreeMap<String, String>,
    pub integrations: BTreeMap<String, String>,
}

impl From<Dependencies> for DependencyRanges {
    fn from(d: Dependencies) -> Self {
        let map = |v: Vec<DependencyRef>| v.into_iter().map(|r| (r.id, r.version)).collect();
        DependencyRanges {
            skills: map(d.skills),
            mcp_servers: map(d.mcp_servers),
            integrations: map(d.integrations),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentList {
    #[schema(value_type = String, pattern = "^list$")]
    pub object: &'static str,
    pub data: Vec<AgentListItem>,
    pub total: i64,
    pub has_more: bool,
}

pub(crate) fn dependencies_of(manifest: &Value) -> Dependencies {
    let mut deps = Dependencies {
        skills: Vec::new(),
        mcp_servers: Vec::new(),
        integrations: Vec::new(),
    };
    for (t, name, range) in corral_afps::dependencies(manifest) {
        let r = DependencyRef {
            id: name.id(),
            version: range,
        };
        match t {
            PackageType::Skill => deps.skills.push(r),
            PackageType::McpServer => deps.mcp_servers.push(r),
            PackageType::Integration => deps.integrations.push(r),
            PackageType::Agent => {}
        }
    }
    deps
}

/// Agents the organization can run (its own and the system ones).
#[utoipa::path(get, path = "/api/agents", tag = "Agents", operation_id = "listAgents",
    responses((status = 200, description = "Agents", body = AgentList)))]
pub async fn list_agents(
    State(state): State<AppState>,
    ctx: Perm<perms::AgentsRead>,
) -> ApiResult<Json<AgentList>> {
    let mut conn = state.db.conn().await?;
    let rows =
        corral_store::packages::list_visible(&mut conn, ctx.org_id()?, Some("agent")).await?;
    let running: std::collections::HashMap<String, i64> =
        corral_store::runs::running_by_package(&mut conn, ctx.org_id()?, ctx.app_id()?)
            .await?
            .into_iter()
            .collect();
    let data: Vec<AgentListItem> = rows
        .into_iter()
        .map(|r| {
            let manifest: Value = serde_json::from_str(&r.draft_manifest).unwrap_or(Value::Null);
            AgentListItem {
                ptype: "agent",
                source: if r.org_id.is_none() {
                    "system"
                } else {
                    "local"
                },
                scope: format!("@{}", r.scope),
                keywords: manifest
                    .get("keywords")
                    .and_then(|k| serde_json::from_value(k.clone()).ok())
                    .unwrap_or_default(),
                dependencies: dependencies_of(&manifest).into(),
                running_runs: running.get(&r.id).copied().unwrap_or(0),
                id: r.id,
                display_name: r.display_name,
                description: r.description,
                version: r.latest_version,
            }
        })
        .collect();
    Ok(Json(AgentList {
        object: "list",
        total: data.len() as i64,
        data,
        has_more: false,
    }))
}

/// An application's input settings for an agent: values used as defaults and the
/// fields callers may not override.
#[derive(Debug, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct AgentInputSettings {
    #[schema(value_type = Object)]
    pub values: serde_json::Map<String, Value>,
    pub locked_fields: Vec<String>,
}

impl Validate for AgentInputSettings {}

/// Save the application's input settings for an agent (installing it in the
/// application when needed). Values are checked against the agent's input schema.
#[utoipa::path(put, path = "/api/agents/{scope}/{name}/input-settings", tag = "Agents", operation_id = "saveAgentInputSettings",
    params(("scope" = String, Path, description = "Package scope"), ("name" = String, Path, description = "Package name")),
    request_body = AgentInputSettings,
    responses((status = 200, description = "Saved", body = AgentInputSettings)))]
pub async fn save_input_settings(
    State(state): State<AppState>,
    ctx: Perm<perms::PackagesWrite>,
    Path((scope, name)): Path<(String, String)>,
    Json(body): Json<AgentInputSettings>,
) -> ApiResult<Json<AgentInputSettings>> {
    let org_id = ctx.org_id()?;
    let app_id = ctx.app_id()?;
    let id = format!("{scope}/{name}");
    let mut conn = state.db.conn().await?;
    let row = corral_store::packages::get_visible(&mut conn, org_id, &id, Some("agent"))
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    let manifest: Value = serde_json::from_str(&row.draft_manifest).map_err(ApiError::internal)?;
    let schema = manifest
        .pointer("/input/schema")
        .cloned()
        .unwrap_or_else(|| json!({"type": "object"}));
    let props = schema
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut errors = Vec::new();
    for f in &body.locked_fields {
        if !props.contains_key(f) {
            errors.push(FieldError::new(
                format!("locked_fields.{f}"),
                "unknown_field",
                "not a field of the agent's input",
            ));
        }
    }
    for (k, v) in &body.values {
        let Some(prop) = props.get(k) else {
            errors.push(FieldError::new(
                format!("values.{k}"),
                "unknown_field",
                "not a field of the agent's input",
            ));
            continue;
        };
        match jsonschema::validator_for(prop) {
            Ok(validator) => {
                for err in validator.iter_errors(v) {
                    errors.push(FieldError::new(
                        format!("values.{k}"),
                        "invalid",
                        err.to_string(),
                    ));
                }
            }
            Err(e) => errors.push(FieldError::new(
                format!("values.{k}"),
                "invalid_schema",
                e.to_string(),
            )),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let now = now_ms();
    let cur =
        corral_store::app_packages::get_or_install(&mut conn, org_id, app_id, &id, now).await?;
    let settings = serde_json::to_string(&body).map_err(ApiError::internal)?;
    corral_store::app_packages::update(
        &mut conn,
        org_id,
        app_id,
        &id,
        &corral_store::app_packages::Settings {
            enabled: cur.enabled,
            version_id: cur.version_id,
            model_id: cur.model_id.as_deref(),
            proxy_id: cur.proxy_id.as_deref(),
            generation_config: cur.generation_config.as_deref(),
            input_settings: &settings,
            now,
        },
    )
    .await?;
    Ok(Json(body))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BundleQuery {
    /// Version, dist-tag or range of the agent (default `latest`).
    pub version: Option<String>,
    /// `published` (default) or `draft`.
    pub source: Option<String>,
}

/// Export an agent and every dependency (resolved by range against published,
/// non-yanked versions) as one deterministic `.afps-bundle`.
#[utoipa::path(get, path = "/api/agents/{scope}/{name}/bundle", tag = "Agents", operation_id = "exportAgentBundle",
    params(("scope" = String, Path, description = "Package scope"), ("name" = String, Path, description = "Package name"), BundleQuery),
    responses((status = 200, description = "The bundle", content_type = "application/zip"),
              (status = 422, description = "A dependency has no matching version", body = crate::error::ProblemDetail)))]
pub async fn export_bundle(
    State(state): State<AppState>,
    ctx: Perm<perms::PackagesRead>,
    Path((scope, name)): Path<(String, String)>,
    Query(q): Query<BundleQuery>,
) -> ApiResult<Response> {
    let org_id = ctx.org_id()?;
    let id = format!("{scope}/{name}");
    let agent: (Package, Vec<u8>) = match q.source.as_deref() {
        None | Some("published") => {
            let v = svc::resolve(
                &state,
                org_id,
                &id,
                q.version.as_deref().unwrap_or("latest"),
            )
            .await?;
            let bytes = svc::load_verified(&state, &v).await?;
            (
                Package::from_archive(&bytes, &corral_afps::Limits::default())?,
                bytes,
            )
        }
        Some("draft") => {
            let mut conn = state.db.conn().await?;
            let row = corral_store::packages::get_visible(&mut conn, org_id, &id, Some("agent"))
                .await?
                .ok_or_else(|| ApiError::not_found("agent"))?;
            let pkg = svc::draft_package(&row)?;
            let bytes = pkg.to_archive();
            (pkg, bytes)
        }
        Some(_) => {
            return Err(ApiError::invalid_param(
                "source",
                "source must be draft or published",
            ))
        }
    };
    if agent.0.ptype != PackageType::Agent {
        return Err(ApiError::not_found("agent"));
    }
    let mut entries = vec![(agent.0.name.clone(), agent.0.version.clone(), agent.1)];
    for (_, dep, range) in corral_afps::dependencies(&agent.0.manifest) {
        let v = svc::resolve(&state, org_id, &dep.id(), &range)
            .await
            .map_err(|_| {
                let mut e = ApiError::new(
                    ErrorCode::DependencyUnresolved,
                    format!("no published version of {} matches {range:?}", dep.id()),
                );
                e.param = Some("dependencies".into());
                e
            })?;
        let bytes = svc::load_verified(&state, &v).await?;
        let version = semver::Version::parse(&v.version).map_err(ApiError::internal)?;
        entries.push((dep, version, bytes));
    }
    let bundle = Bundle::write(&entries);
    let file = format!(
        "{}-{}-{}.afps-bundle",
        scope.trim_start_matches('@'),
        name,
        agent.0.version
    );
    let mut resp = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/zip"),
        )],
        bundle,
    )
        .into_response();
    if let Ok(h) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, h);
    }
    Ok(resp)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SkillsBody {
    /// The skills the agent uses, `@scope/name` each.
    pub skill_ids: Vec<String>,
}

impl Validate for SkillsBody {
    fn validate(&self) -> Vec<FieldError> {
        self.skill_ids
            .iter()
            .enumerate()
            .filter(|(_, id)| corral_afps::PackageName::parse(id).is_none())
            .map(|(i, _)| {
                FieldError::new(
                    format!("skillIds[{i}]"),
                    "invalid_format",
                    "must be @scope/name",
                )
            })
            .collect()
    }
}

/// Replace the skills an agent's draft depends on. Each skill must be visible to the
/// organization; the range is `^<latest version>` (or `*` before any is published).
#[utoipa::path(put, path = "/api/agents/{scope}/{name}/skills", tag = "Agents", operation_id = "updateAgentSkills",
    params(("scope" = String, Path, description = "Package scope"), ("name" = String, Path, description = "Package name")),
    request_body = SkillsBody,
    responses((status = 200, description = "The agent, with its new skills", body = crate::routes::packages::AgentDetail)))]
pub async fn update_skills(
    State(state): State<AppState>,
    ctx: Perm<perms::PackagesWrite>,
    Path((scope, name)): Path<(String, String)>,
    Json(body): Json<SkillsBody>,
) -> ApiResult<Json<crate::routes::packages::Detail>> {
    let org_id = ctx.org_id()?;
    let id = format!("{scope}/{name}");
    let mut conn = state.db.conn().await?;
    let row = corral_store::packages::get_visible(&mut conn, org_id, &id, Some("agent"))
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    if row.org_id.is_none() {
        return Err(ApiError::forbidden("system packages are read-only"));
    }
    let mut skills = serde_json::Map::new();
    let mut errors = Vec::new();
    for (i, skill) in body.skill_ids.iter().enumerate() {
        match corral_store::packages::get_visible(&mut conn, org_id, skill, Some("skill")).await? {
            Some(s) => {
                let range = s
                    .latest_version
                    .map(|v| format!("^{v}"))
                    .unwrap_or_else(|| "*".to_owned());
                skills.insert(skill.clone(), Value::String(range));
            }
            None => errors.push(FieldError::new(
                format!("skillIds[{i}]"),
                "not_found",
                format!("no skill {skill}"),
            )),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    drop(conn);
    let mut pkg = svc::draft_package(&row)?;
    let deps = pkg.manifest["dependencies"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut deps = deps;
    if skills.is_empty() {
        deps.remove("skills");
    } else {
        deps.insert("skills".into(), Value::Object(skills));
    }
    pkg.manifest["dependencies"] = Value::Object(deps);
    let mut files = pkg.files.clone();
    files.remove("manifest.json");
    let pkg = Package::from_parts(pkg.manifest, files)?;
    svc::upsert_with_draft(&state, Some(org_id), &pkg, ctx.principal.actor_user_id()).await?;
    let mut conn = state.db.conn().await?;
    let row = corral_store::packages::get_visible(&mut conn, org_id, &id, Some("agent"))
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    drop(conn);
    Ok(Json(
        crate::routes::packages::detail(&state, &ctx, &row, PackageType::Agent).await?,
    ))
}
