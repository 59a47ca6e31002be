use super::*;

// ---- the registry -----------------------------------------------------------------

/// A provider Corral can talk to. Fields outside the `fields` projection are omitted.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistryProvider {
    pub provider_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icon_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docs_url: Option<String>,
    /// `openai-completions` | `anthropic-messages` | `openai-codex-responses`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_shape: Option<String>,
    /// Empty when a credential must give its own (`openai-compatible`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_base_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url_overridable: Option<bool>,
    /// `api_key`, or `oauth2` for subscription accounts connected with the pairing
    /// flow (`POST /api/model-providers-oauth/pairing`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub featured: Option<bool>,
    /// Corral vendors no model catalog: discover a credential's models with
    /// `POST /api/model-provider-credentials/{id}/refresh-models`. OAuth providers
    /// list the models their subscriptions serve.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub models: Option<Vec<Value>>,
}

pub(super) const REGISTRY_FIELDS: &[&str] = &[
    "providerId",
    "displayName",
    "iconUrl",
    "description",
    "docsUrl",
    "apiShape",
    "defaultBaseUrl",
    "baseUrlOverridable",
    "authMode",
    "featured",
    "models",
];

pub(super) fn registry_entry(p: &Provider, want: &dyn Fn(&str) -> bool) -> RegistryProvider {
    fn pick<T>(on: bool, v: T) -> Option<T> {
        on.then_some(v)
    }
    RegistryProvider {
        provider_id: p.id.to_owned(),
        display_name: pick(want("displayName"), p.display_name.to_owned()),
        icon_url: pick(want("iconUrl"), p.id.to_owned()),
        description: pick(want("description"), p.description.to_owned()),
        docs_url: pick(want("docsUrl"), p.docs_url.to_owned()),
        api_shape: pick(want("apiShape"), p.api_shape.to_owned()),
        default_base_url: pick(want("defaultBaseUrl"), p.default_base_url.to_owned()),
        base_url_overridable: pick(want("baseUrlOverridable"), p.oauth.is_none()),
        auth_mode: pick(want("authMode"), p.auth_mode().to_owned()),
        featured: pick(want("featured"), p.featured),
        models: pick(want("models"), oauth_models(p)),
    }
}

/// The models an OAuth provider's subscriptions serve, in the reference's shape.
fn oauth_models(p: &Provider) -> Vec<Value> {
    p.oauth
        .map(|s| {
            s.models
                .iter()
                .map(|m| {
                    serde_json::json!({
                        "id": m.id,
                        "label": m.label,
                        "contextWindow": m.context_window,
                        "maxTokens": m.max_tokens,
                        "capabilities": m.capabilities,
                        "cost": {},
                        "featured": true,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RegistryQuery {
    /// 1–100, default 100.
    pub limit: Option<i64>,
    pub offset: Option<i64>,
    /// Comma-separated fields to return (`providerId` always is).
    pub fields: Option<String>,
}

/// The providers Corral can talk to.
#[utoipa::path(get, path = "/api/model-provider-credentials/registry", tag = "Model Provider Credentials",
    operation_id = "listModelProviderRegistry",
    params(RegistryQuery),
    responses((status = 200, description = "Model provider registry list", body = ListOf<RegistryProvider>)))]
pub async fn list_registry(
    _ctx: Perm<perms::ModelsRead>,
    page: Page<100>,
    Query(q): Query<RegistryQuery>,
) -> ApiResult<Json<ListOf<RegistryProvider>>> {
    let fields: Option<Vec<String>> = match q.fields.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(list) => {
            let fields: Vec<String> = list.split(',').map(|f| f.trim().to_owned()).collect();
            if let Some(bad) = fields
                .iter()
                .find(|f| !REGISTRY_FIELDS.contains(&f.as_str()))
            {
                return Err(ApiError::invalid_param(
                    "fields",
                    format!(
                        "unknown field {bad:?}; allowed: {}",
                        REGISTRY_FIELDS.join(", ")
                    ),
                ));
            }
            Some(fields)
        }
    };
    let want = |f: &str| fields.as_ref().is_none_or(|l| l.iter().any(|x| x == f));
    let total = svc::PROVIDERS.len() as i64;
    let data: Vec<RegistryProvider> = page
        .window(svc::PROVIDERS)
        .map(|p| registry_entry(p, &want))
        .collect();
    Ok(Json(ListOf {
        object: "list",
        has_more: page.has_more(total),
        total,
        data,
    }))
}
