//! The run trigger (SPEC §7), whoever calls it (the API, later a schedule): resolve
//! the agent and its dependencies, validate the input, choose the connections and
//! the model, check the organization's cap — all before anything is written — then
//! freeze the run's definition, insert it `pending`, announce it and queue it.

use std::collections::BTreeMap;

use corral_afps::{Package, PackageType};
use corral_connect::integrations::{Dependency, RunIntegration};
use corral_connect::Actor;
use corral_core::time::now_ms;
use corral_core::{AppId, ErrorCode, FieldError, OrgId, Problem, ProblemResult, RunId};
use corral_protocol::{Limits, SigningSecret};
use corral_store::runs as store;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::executor::{run_token, run_token_hash};
use super::input::prepare_input;
use super::Definition;
use crate::packages as svc;
use crate::Engine;

/// A manifest's `timeout` when it sets none (seconds).
const DEFAULT_TIMEOUT_SECS: u64 = 300;
/// How long after its timeout a run's sink still accepts events.
pub(crate) const SINK_GRACE_MS: i64 = 10 * 60 * 1000;

/// An application's input settings for an agent: defaults, and fields callers may
/// not override.
#[derive(Debug, Default, Deserialize)]
pub struct InputSettings {
    #[serde(default)]
    pub values: Map<String, Value>,
    #[serde(default)]
    pub locked_fields: Vec<String>,
}

/// The agent resolved for a run.
pub struct Agent {
    /// `@scope/name`; `None` for an inline run.
    pub package_id: Option<String>,
    pub scope: String,
    pub name: String,
    pub pkg: Package,
    pub version_label: Option<String>,
    pub version_ref: String,
}

/// Who triggers a run, and where (the organization and application it belongs to).
#[derive(Debug, Clone)]
pub struct Caller {
    pub org_id: OrgId,
    pub app_id: AppId,
    pub user_id: Option<String>,
    pub api_key_id: Option<String>,
    /// An end user's runs are theirs alone.
    pub end_user_id: Option<String>,
    /// Whose connections the run may use.
    pub actor: Actor,
}

/// The agent `id` (`@scope/name`) at `version`: `draft`, `published` (default) or a
/// version spec. System agents always run their published version.
pub async fn resolve_agent(
    state: &Engine,
    org_id: &OrgId,
    id: &str,
    version: Option<&str>,
) -> ProblemResult<Agent> {
    let mut conn = state.db.conn().await?;
    let row = corral_store::packages::get_visible(&mut conn, org_id, id, Some("agent"))
        .await?
        .ok_or_else(|| Problem::not_found("agent"))?;
    drop(conn);
    let system = row.org_id.is_none();
    let version = if system { None } else { version };
    let (pkg, label, vref) = match version {
        Some("draft") => {
            let pkg = svc::draft_package(&row)?;
            let mut vref = "draft".to_owned();
            if let Some(latest) = &row.latest_version {
                let mut conn = state.db.conn().await?;
                if let Some(v) = corral_store::packages::version(&mut conn, &row.id, latest).await?
                {
                    if corral_afps::integrity(&pkg.to_archive()) == v.integrity {
                        vref = latest.clone();
                    }
                }
            }
            (pkg, row.latest_version.clone(), vref)
        }
        None | Some("published") | Some("") => {
            let v = svc::resolve(state, org_id, id, "latest")
                .await
                .map_err(|_| {
                    Problem::new(
                        ErrorCode::NoPublishedVersion,
                        format!("{id} has no published version; run the draft with ?version=draft"),
                    )
                })?;
            let bytes = svc::load_verified(state, &v).await?;
            let pkg = Package::from_archive(&bytes, &corral_afps::Limits::default())?;
            (pkg, Some(v.version.clone()), v.version)
        }
        Some(spec) => {
            let v = svc::resolve(state, org_id, id, spec).await?;
            let bytes = svc::load_verified(state, &v).await?;
            let pkg = Package::from_archive(&bytes, &corral_afps::Limits::default())?;
            (pkg, Some(v.version.clone()), v.version)
        }
    };
    Ok(Agent {
        package_id: Some(row.id.clone()),
        scope: format!("@{}", row.scope),
        name: row.name.clone(),
        pkg,
        version_label: label,
        version_ref: vref,
    })
}

/// What the dependencies of an agent resolved to.
struct Deps {
    skills: Vec<corral_protocol::Skill>,
    integrations: Vec<Dependency>,
    versions: BTreeMap<String, String>,
}

async fn resolve_dependencies(
    state: &Engine,
    org_id: &OrgId,
    manifest: &Value,
    overrides: Option<&BTreeMap<String, String>>,
) -> ProblemResult<Deps> {
    let mut deps = Deps {
        skills: Vec::new(),
        integrations: Vec::new(),
        versions: BTreeMap::new(),
    };
    for (ptype, name, range) in corral_afps::dependencies(manifest) {
        let id = name.id();
        let spec = overrides.and_then(|o| o.get(&id)).cloned().unwrap_or(range);
        let v = svc::resolve(state, org_id, &id, &spec).await.map_err(|_| {
            let mut e = Problem::new(
                ErrorCode::DependencyUnresolved,
                format!("no published version of {id} matches {spec:?}"),
            );
            e.param = Some("dependencies".into());
            e
        })?;
        let bytes = svc::load_verified(state, &v).await?;
        deps.versions.insert(id.clone(), v.version.clone());
        match ptype {
            PackageType::Skill => {
                let pkg = Package::from_archive(&bytes, &corral_afps::Limits::default())?;
                let content = pkg
                    .files
                    .get("SKILL.md")
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                deps.skills.push(corral_protocol::Skill {
                    name: id,
                    description: pkg
                        .manifest
                        .get("description")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    content,
                });
            }
            PackageType::Integration => {
                let pkg = Package::from_archive(&bytes, &corral_afps::Limits::default())?;
                let auth_key = manifest
                    .pointer("/dependencies/integrations")
                    .and_then(|m| m.get(&id))
                    .and_then(|d| d.get("auth_key"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                deps.integrations.push(Dependency {
                    package_id: id,
                    manifest: pkg.manifest,
                    auth_key,
                });
            }
            PackageType::McpServer | PackageType::Agent => {}
        }
    }
    Ok(deps)
}

/// Validates `input` for a later run of `agent` by `caller` (a schedule's input at
/// create and update time): the application's settings and the schema's defaults
/// apply as they will at the fire.
pub async fn validate_input(
    state: &Engine,
    caller: &Caller,
    agent: &Agent,
    input: Map<String, Value>,
) -> ProblemResult<Value> {
    let settings = input_settings(state, caller, agent.package_id.as_deref()).await?;
    prepare_input(&agent.pkg.manifest, input, settings.as_ref())
}

/// The application's input settings for a package agent, if it has any.
async fn input_settings(
    state: &Engine,
    caller: &Caller,
    package_id: Option<&str>,
) -> ProblemResult<Option<InputSettings>> {
    let Some(id) = package_id else {
        return Ok(None);
    };
    let mut conn = state.db.conn().await?;
    Ok(
        corral_store::app_packages::get(&mut conn, &caller.org_id, &caller.app_id, id)
            .await?
            .and_then(|i| serde_json::from_str(&i.input_settings).ok()),
    )
}

/// Integrations need a usable connection (SPEC §7 step 4): the connection each
/// one will use, or a 412 naming every integration that has none.
async fn check_readiness(
    state: &Engine,
    caller: &Caller,
    agent_id: Option<&str>,
    deps: &[Dependency],
    overrides: Option<&BTreeMap<String, String>>,
) -> ProblemResult<Vec<RunIntegration>> {
    if deps.is_empty() {
        return Ok(Vec::new());
    }
    let verdicts = corral_connect::integrations::resolve(
        &state.connect,
        &caller.app_id,
        &caller.actor,
        agent_id,
        deps,
        overrides,
    )
    .await?;
    let (mut chosen, mut errors, mut names) = (Vec::new(), Vec::new(), Vec::new());
    for v in verdicts {
        match v.outcome {
            Ok(i) => chosen.push(i),
            Err(e) => {
                names.push(v.package_id);
                errors.push(e);
            }
        }
    }
    if errors.is_empty() {
        return Ok(chosen);
    }
    let mut e = if errors.iter().all(|e| e.code == "needs_reconnection") {
        Problem::new(
            ErrorCode::NeedsReconnection,
            format!(
                "the connection to {} must be re-authorized before running this agent",
                names.join(", ")
            ),
        )
    } else {
        Problem::new(
            ErrorCode::ConnectionMissing,
            format!(
                "no usable connection for {}; connect the integration before running this agent",
                names.join(", ")
            ),
        )
    };
    e.errors = errors;
    Err(e)
}

/// The integrations an agent depends on (for the readiness endpoint).
pub async fn agent_integrations(
    state: &Engine,
    org_id: &OrgId,
    id: &str,
    version: Option<&str>,
) -> ProblemResult<Vec<Dependency>> {
    let resolved = resolve_agent(state, org_id, id, version).await?;
    Ok(
        resolve_dependencies(state, org_id, &resolved.pkg.manifest, None)
            .await?
            .integrations,
    )
}

async fn preflight(state: &Engine, org_id: &OrgId) -> ProblemResult<()> {
    let mut conn = state.db.conn().await?;
    let active = store::count_active_for_org(&mut conn, org_id).await?;
    if active >= state.config.org_max_queued_runs {
        let mut e = Problem::new(
            ErrorCode::ConcurrencyLimit,
            format!(
                "the organization already has {active} pending or running runs (limit {})",
                state.config.org_max_queued_runs
            ),
        );
        e.retry_after = Some(5);
        return Err(e);
    }
    Ok(())
}

/// What a trigger asks for.
pub struct Request<'a> {
    pub agent: &'a Agent,
    /// `package` or `inline`.
    pub kind: &'a str,
    /// The trigger's generation settings (else the agent's).
    pub generation: Option<&'a Value>,
    pub model_id: Option<&'a str>,
    pub dependency_overrides: Option<&'a BTreeMap<String, String>>,
    pub connection_overrides: Option<&'a BTreeMap<String, String>>,
    /// The schedule firing this run: its id and name.
    pub schedule: Option<(&'a str, Option<&'a str>)>,
    /// The outbound proxy: the trigger's `proxyId`, then the schedule's override (a
    /// proxy id or `none`).
    pub proxy_id: Option<&'a str>,
    pub schedule_proxy_id: Option<&'a str>,
}

/// A trigger that passed every check (SPEC §7 steps 2–7), ready to be queued.
pub struct Checked {
    input: Value,
    /// The `upload://` / `document://` inputs, attached to the run when it is queued.
    files: Vec<crate::documents::FileInput>,
    deps: Deps,
    integrations: Vec<RunIntegration>,
    model: corral_connect::models::RunModel,
    proxy: Option<corral_connect::proxies::RunProxy>,
}

/// Every check of a trigger, in order, with nothing written: dependencies resolve,
/// the input validates, integrations have usable connections, a model is
/// configured, the organization is under its cap. A dry run stops here. `input` is
/// the caller's, before the application's settings and the schema's defaults.
pub async fn check(
    state: &Engine,
    caller: &Caller,
    req: &Request<'_>,
    input: Map<String, Value>,
) -> ProblemResult<Checked> {
    let (org_id, app_id) = (&caller.org_id, &caller.app_id);
    let pkg = &req.agent.pkg;
    let deps = resolve_dependencies(state, org_id, &pkg.manifest, req.dependency_overrides).await?;
    let package_id = req
        .agent
        .package_id
        .as_deref()
        .filter(|_| req.kind == "package");
    let installed = match package_id {
        Some(id) => {
            let mut conn = state.db.conn().await?;
            corral_store::app_packages::get(&mut conn, org_id, app_id, id).await?
        }
        None => None,
    };
    let settings: Option<InputSettings> = installed
        .as_ref()
        .and_then(|i| serde_json::from_str(&i.input_settings).ok());
    let input = prepare_input(&pkg.manifest, input, settings.as_ref())?;
    let files = crate::documents::check_file_inputs(state, caller, &pkg.manifest, &input).await?;
    let integrations = check_readiness(
        state,
        caller,
        package_id,
        &deps.integrations,
        req.connection_overrides,
    )
    .await?;
    let model = corral_connect::models::resolve_for_run(
        &state.connect,
        org_id,
        installed.as_ref(),
        req.model_id,
    )
    .await?;
    let proxy = corral_connect::proxies::resolve_for_run(
        &state.connect,
        org_id,
        corral_connect::proxies::Choices {
            run: req.proxy_id,
            schedule: req.schedule_proxy_id,
            agent: installed.as_ref().and_then(|i| i.proxy_id.as_deref()),
        },
    )
    .await?;
    preflight(state, org_id).await?;
    Ok(Checked {
        input,
        files,
        deps,
        integrations,
        model,
        proxy,
    })
}

/// Freezes a checked trigger into a `pending` run, announces it and queues it.
pub async fn queue(
    state: &Engine,
    caller: &Caller,
    req: &Request<'_>,
    checked: Checked,
) -> ProblemResult<store::Run> {
    let sink = SigningSecret::generate().to_whsec();
    let run = insert_run(state, caller, req, checked, &Placement::Platform, &sink).await?;
    state.runs.executor.enqueue(&caller.org_id, &run.id);
    Ok(run)
}

/// Where a run executes, and what that changes in its row.
pub(crate) enum Placement<'a> {
    /// A sandbox of this deployment: queued for the executor.
    Platform,
    /// The caller's host ([`super::remote`]): never queued.
    Remote(&'a super::remote::Remote<'a>),
}

/// Freezes a checked trigger into a `pending` run sealed with the sink secret
/// `sink`, and announces it.
pub(crate) async fn insert_run(
    state: &Engine,
    caller: &Caller,
    req: &Request<'_>,
    checked: Checked,
    placement: &Placement<'_>,
    sink: &str,
) -> ProblemResult<store::Run> {
    let Checked {
        mut input,
        files,
        deps,
        integrations,
        model,
        proxy,
    } = checked;
    let (org_id, app_id) = (&caller.org_id, &caller.app_id);
    let agent = req.agent;
    let pkg = &agent.pkg;
    let ceiling = state.config.run_timeout_ceiling_seconds;
    let timeout = pkg
        .manifest
        .get("timeout")
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_TIMEOUT_SECS)
        .clamp(1, ceiling);
    let definition = Definition {
        prompt: pkg.prompt().unwrap_or_default().to_owned(),
        output_schema: pkg.manifest.pointer("/output/schema").cloned(),
        skills: deps.skills,
        model: model.model,
        limits: Limits {
            timeout_secs: timeout,
            ..Limits::default()
        },
        dependencies: deps.versions,
        integrations,
        proxy: proxy.clone(),
    };
    let run_id = RunId::generate();
    let sealed_sink = state
        .keyring
        .seal(sink.as_bytes(), &super::sink_aad(run_id.as_str()));
    let default_sink_expiry = now_ms() + timeout as i64 * 1000 + SINK_GRACE_MS;
    let (origin, sink_expires_at, server_id, context_snapshot, runner_name, runner_kind) =
        match placement {
            Placement::Platform => (
                "platform",
                default_sink_expiry,
                state.runs.queue_owner(),
                None,
                None,
                None,
            ),
            Placement::Remote(r) => (
                "remote",
                r.sink_expires_at(state, default_sink_expiry),
                None,
                r.context_snapshot,
                r.runner_name,
                r.runner_kind,
            ),
        };
    let token_hash = run_token_hash(&run_token(state, &run_id));
    let now = now_ms();
    let definition_json = serde_json::to_string(&definition).map_err(Problem::internal)?;
    let generation = req
        .generation
        .filter(|g| !g.is_null())
        .or(model.agent_generation.as_ref())
        .map(Value::to_string);
    let attachments =
        crate::documents::plan_attachments(state, run_id.as_str(), files, &mut input).await?;
    let input_json = input.to_string();
    let mut conn = state.db.begin().await?;
    store::insert(
        &mut conn,
        &store::NewRun {
            id: &run_id,
            org_id,
            application_id: app_id,
            package_id: agent.package_id.as_deref(),
            agent_scope: Some(&agent.scope),
            agent_name: Some(&agent.name),
            kind: req.kind,
            input: Some(&input_json),
            version_label: agent.version_label.as_deref(),
            version_ref: &agent.version_ref,
            definition: &definition_json,
            model_label: Some(&model.label),
            model_source: Some(model.source),
            proxy_label: proxy.as_ref().map(|p| p.label.as_str()),
            generation: generation.as_deref(),
            user_id: caller.user_id.as_deref(),
            end_user_id: caller.end_user_id.as_deref(),
            api_key_id: caller.api_key_id.as_deref(),
            schedule_id: req.schedule.map(|s| s.0),
            schedule_name: req.schedule.and_then(|s| s.1),
            timeout_secs: timeout as i64,
            runner_kind,
            runner_name,
            server_id,
            sink_secret: &sealed_sink,
            sink_expires_at,
            run_token_hash: &token_hash,
            origin,
            context_snapshot,
            now,
        },
    )
    .await?;
    crate::documents::write_attachments(state, &mut conn, run_id.as_str(), attachments).await?;
    let run = store::get_internal(&mut conn, &run_id)
        .await?
        .ok_or_else(|| Problem::internal(anyhow::anyhow!("run vanished after insert")))?;
    conn.commit()
        .await
        .map_err(corral_store::StoreError::from)?;
    state
        .runs
        .bus
        .publish(&run_id, store::RunStatus::Pending)
        .await;
    tracing::info!(%run_id, origin, agent = %format!("{}/{}", agent.scope, agent.name), "run created");
    Ok(run)
}

/// The trigger (SPEC §7): [`check`], then [`queue`]. Every check happens before the
/// run row exists, so a refused trigger leaves nothing behind.
pub async fn trigger(
    state: &Engine,
    caller: &Caller,
    req: &Request<'_>,
    input: Map<String, Value>,
) -> ProblemResult<store::Run> {
    let checked = check(state, caller, req, input).await?;
    queue(state, caller, req, checked).await
}

/// An agent defined in the request itself: its manifest and `prompt.md`.
pub fn inline_agent(manifest: &Value, prompt: &str) -> ProblemResult<Agent> {
    let mut files = BTreeMap::new();
    files.insert("prompt.md".to_owned(), prompt.as_bytes().to_vec());
    let pkg = Package::from_parts(manifest.clone(), files).map_err(|e| {
        let mut err = Problem::from(e);
        for f in &mut err.errors {
            f.field = format!("manifest.{}", f.field);
        }
        err
    })?;
    if pkg.ptype != PackageType::Agent {
        return Err(Problem::validation(vec![FieldError::new(
            "manifest.type",
            "invalid",
            "an inline run needs an agent manifest",
        )]));
    }
    Ok(Agent {
        package_id: None,
        scope: "@inline".into(),
        name: pkg
            .manifest
            .get("display_name")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| pkg.name.name.clone()),
        version_label: None,
        version_ref: "draft".into(),
        pkg,
    })
}
