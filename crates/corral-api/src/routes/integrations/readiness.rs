use super::*;

// ---------------------------------------------------------------- readiness

#[derive(Debug, Serialize, ToSchema)]
pub struct Candidate {
    pub id: String,
    pub auth_key: String,
    pub account_id: String,
    pub label: Option<String>,
    pub owner_user_id: Option<String>,
    pub owner_end_user_id: Option<String>,
    pub owner_name: Option<String>,
    pub scopes_granted: Vec<String>,
    pub shared_with_org: bool,
    pub needs_reconnection: bool,
    pub missing_scopes: Vec<String>,
    pub is_own: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Resolution {
    /// `admin_locked` (an admin pin or an enforced default), `pinned` (the caller's
    /// pin), `auto` (the default or the newest usable connection), `none`, `stale`
    /// or `needs_reconnection`.
    pub status: String,
    pub resolved_connection_id: Option<String>,
    pub resolved_missing_scopes: Vec<String>,
    pub resolved_owned_by_actor: bool,
    pub admin_pinned_connection_id: Option<String>,
    pub member_pinned_connection_id: Option<String>,
    pub org_default_connection_id: Option<String>,
    pub org_default_enforced: bool,
    pub can_add_connection: bool,
    pub candidates: Vec<Candidate>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IntegrationReadiness {
    pub integration_id: String,
    pub run_blocking: bool,
    pub resolution: Resolution,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// True iff running the agent now would be refused with 412.
    pub blocks_run: bool,
    /// The field errors that 412 would carry.
    pub errors: Vec<FieldError>,
    pub integrations: Vec<IntegrationReadiness>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReadinessQuery {
    /// `draft`, an exact version, a dist-tag or a range (default: latest published).
    pub version: Option<String>,
}

/// Whether the agent's integrations have usable connections — the same verdict a
/// run trigger reaches.
#[utoipa::path(get, path = "/api/agents/{scope}/{name}/connection-readiness", tag = "Agents", operation_id = "getAgentConnectionReadiness",
    params(("scope" = String, Path, description = "Package scope"), ("name" = String, Path, description = "Package name"), ReadinessQuery),
    responses((status = 200, description = "Connection readiness", body = Readiness)))]
pub async fn connection_readiness(
    State(state): State<AppState>,
    ctx: Perm<perms::AgentsRead>,
    Path((scope, name)): Path<(String, String)>,
    Query(q): Query<ReadinessQuery>,
) -> ApiResult<Json<Readiness>> {
    let id = format!("{scope}/{name}");
    let deps = corral_engine::runs::trigger::agent_integrations(
        &state,
        ctx.org_id()?,
        &id,
        q.version.as_deref(),
    )
    .await?;
    let actor = ctx.actor();
    let verdicts = integ::resolve(
        &state.connect,
        ctx.app_id()?,
        &actor,
        Some(&id),
        &deps,
        None,
    )
    .await?;
    let own =
        |c: &store::Connection| c.owner_type == actor.owner_type && c.owner_id == actor.owner_id;
    let mut errors = Vec::new();
    let mut items = Vec::new();
    for v in verdicts {
        let (status, resolved) = match &v.outcome {
            Ok(i) => (
                match v.layer {
                    integ::Layer::AdminPin | integ::Layer::EnforcedDefault => "admin_locked",
                    integ::Layer::MemberPin | integ::Layer::Override => "pinned",
                    integ::Layer::OrgDefault | integ::Layer::Fallback => "auto",
                },
                v.candidates.iter().find(|c| c.id == i.connection_id),
            ),
            Err(e) => (
                match e.code.as_str() {
                    "needs_reconnection" => "needs_reconnection",
                    "connection_missing" => "none",
                    _ => "stale",
                },
                None,
            ),
        };
        items.push(IntegrationReadiness {
            integration_id: v.package_id.clone(),
            run_blocking: v.outcome.is_err(),
            resolution: Resolution {
                status: status.into(),
                resolved_connection_id: resolved.map(|c| c.id.clone()),
                resolved_missing_scopes: Vec::new(),
                resolved_owned_by_actor: resolved.is_some_and(own),
                admin_pinned_connection_id: v.admin_pin.clone(),
                member_pinned_connection_id: v.member_pin.clone(),
                org_default_connection_id: v.org_default.as_ref().map(|d| d.0.clone()),
                org_default_enforced: v.org_default.as_ref().is_some_and(|d| d.1),
                can_add_connection: true,
                candidates: v
                    .candidates
                    .iter()
                    .map(|c| Candidate {
                        id: c.id.clone(),
                        auth_key: c.auth_key.clone(),
                        account_id: c.account_id.clone(),
                        label: c.label.clone(),
                        owner_user_id: (c.owner_type == "user").then(|| c.owner_id.clone()),
                        owner_end_user_id: (c.owner_type == "end_user").then(|| c.owner_id.clone()),
                        owner_name: c.owner_name.clone(),
                        scopes_granted: c.scopes_granted.clone(),
                        shared_with_org: c.shared_with_org,
                        needs_reconnection: c.needs_reconnection,
                        missing_scopes: Vec::new(),
                        is_own: own(c),
                    })
                    .collect(),
            },
        });
        if let Err(e) = v.outcome {
            errors.push(e);
        }
    }
    Ok(Json(Readiness {
        blocks_run: !errors.is_empty(),
        errors,
        integrations: items,
    }))
}

impl Validate for ImportBody {}
impl Validate for OauthStartBody {}
impl Validate for ConnectionMetadataBody {}
impl Validate for OauthClientBody {}
impl Validate for DefaultClientBody {}
impl Validate for IntegrationSettingsBody {}
impl Validate for OrgDefaultBody {}
impl Validate for PinBody {}
impl Validate for MyPinBody {}
