use super::*;

// ---------------------------------------------------------------- fields connect

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportBody {
    /// The credential values, validated against the auth's `credentials.schema`.
    pub credentials: Map<String, Value>,
    /// Renew this connection in place instead of creating one.
    pub connection_id: Option<String>,
    pub label: Option<String>,
    /// Let every member of the organization use the connection in runs.
    pub shared_with_org: Option<bool>,
}

/// Store a connection from credential fields (api_key, basic, custom auths).
#[utoipa::path(post, path = "/api/integrations/{packageId}/auths/{authKey}/connect/fields", tag = "Integrations", operation_id = "importIntegrationConnection",
    params(("packageId" = String, Path, description = "`@scope/name`, URL-encoded"), ("authKey" = String, Path, description = "Key of the auth in the manifest")),
    request_body = ImportBody,
    responses((status = 200, description = "Connection stored", body = ConnectionView)))]
pub async fn import_connection(
    State(state): State<AppState>,
    ctx: Perm<perms::ConnectionsWrite>,
    Path((package_id, auth_key)): Path<(String, String)>,
    Json(body): Json<ImportBody>,
) -> ApiResult<Json<ConnectionView>> {
    let (_, auths) = load(&state, &ctx, &package_id).await?;
    check_user_connections_allowed(&state, &ctx, &package_id).await?;
    let spec = auth_of(&auths, &auth_key)?;
    if spec.kind == "oauth2" {
        return Err(bad(
            "authKey",
            "wrong_auth_type",
            "this auth uses OAuth2: start it with POST …/connect/oauth2",
        ));
    }
    integ::validate_fields(spec, &body.credentials).map_err(ApiError::validation)?;
    let actor = ctx.actor();
    let c = store_fields(
        &state,
        &FieldsTarget {
            org: ctx.org_id()?,
            app: ctx.app_id()?,
            actor: &actor,
            package_id: &package_id,
            auth_key: &auth_key,
            auth_type: &spec.kind,
        },
        &body.credentials,
        body.connection_id.as_deref(),
        body.label.as_deref(),
        body.shared_with_org.unwrap_or(false),
    )
    .await?;
    Ok(Json(ConnectionView::of(&c, &actor)))
}

/// Where a fields connection goes.
pub(super) struct FieldsTarget<'a> {
    pub org: &'a corral_core::OrgId,
    pub app: &'a AppId,
    pub actor: &'a Actor,
    pub package_id: &'a str,
    pub auth_key: &'a str,
    pub auth_type: &'a str,
}

/// Stores validated credential fields: a new connection, or the actor's
/// `connection_id` renewed in place.
pub(super) async fn store_fields(
    state: &AppState,
    t: &FieldsTarget<'_>,
    credentials: &Map<String, Value>,
    connection_id: Option<&str>,
    label: Option<&str>,
    shared_with_org: bool,
) -> ApiResult<store::Connection> {
    let now = now_ms();
    let account_id = account_hint(credentials);
    let mut conn = state.db.conn().await?;
    let id = match connection_id {
        Some(existing) => {
            let c = own_connection(
                &mut conn,
                existing,
                t.app,
                t.package_id,
                t.auth_key,
                t.actor,
            )
            .await?;
            let sealed = integ::seal(&state.connect, &c.id, credentials);
            store::renew_connection(
                &mut conn,
                t.app,
                &c.id,
                &store::Renewal {
                    credentials: &sealed,
                    expires_at: None,
                    scopes_granted: &[],
                    account_id: &account_id,
                    client_ref: None,
                    now,
                },
            )
            .await?;
            c.id
        }
        None => {
            let id = uuid::Uuid::now_v7().to_string();
            let sealed = integ::seal(&state.connect, &id, credentials);
            store::insert_connection(
                &mut conn,
                &store::NewConnection {
                    id: &id,
                    org_id: t.org,
                    application_id: t.app,
                    package_id: t.package_id,
                    auth_key: t.auth_key,
                    auth_type: t.auth_type,
                    owner_type: t.actor.owner_type,
                    owner_id: &t.actor.owner_id,
                    label,
                    shared_with_org,
                    account_id: &account_id,
                    identity_claims: None,
                    scopes_granted: &[],
                    credentials: &sealed,
                    expires_at: None,
                    client_ref: None,
                    now,
                },
            )
            .await?;
            id
        }
    };
    store::connection(&mut conn, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("connection"))
}

/// A display hint that identifies the account without revealing the secret: the
/// user name of a basic auth, else the last 4 characters of the first value.
pub(super) fn account_hint(creds: &Map<String, Value>) -> String {
    if let Some(u) = creds.get("username").and_then(Value::as_str) {
        return u.to_owned();
    }
    let first = creds.values().find_map(Value::as_str).unwrap_or_default();
    let n = first.chars().count();
    if n >= 12 {
        format!("…{}", first.chars().skip(n - 4).collect::<String>())
    } else {
        "credentials".into()
    }
}
