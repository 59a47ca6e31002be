//! Integration connections (SPEC §12): what an integration manifest's `auths` say,
//! whose connections a caller may use, which connection a run gets, and the
//! credentials handed to a run's sidecar — OAuth access tokens refreshed 5 minutes
//! before expiry under a lock, so concurrent runs refresh once.

use std::collections::BTreeMap;

use corral_core::time::now_ms;
use corral_protocol::Delivery;
use corral_store::integrations as store;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use corral_core::{AppId, FieldError, OrgId, Problem, ProblemResult};

use crate::{oauth, Connect};

/// Refresh an access token when it expires within this margin.
pub const REFRESH_MARGIN_MS: i64 = 5 * 60 * 1000;
/// How long an OAuth authorization (state + PKCE verifier) stays usable.
pub const STATE_TTL_MS: i64 = 10 * 60 * 1000;

/// The AAD binding a connection's sealed credentials to its row.
pub fn credentials_aad(connection_id: &str) -> String {
    format!("integration_connection:{connection_id}")
}

pub fn client_secret_aad(client_ref: &str) -> String {
    format!("integration_oauth_client:{client_ref}")
}

pub fn verifier_aad(state_hash: &str) -> String {
    format!("integration_oauth_state:{state_hash}")
}

/// One entry of a manifest's `auths`.
#[derive(Debug, Clone)]
pub struct AuthSpec {
    pub key: String,
    /// `oauth2`, `api_key`, `basic`, `custom` or `mtls`.
    pub kind: String,
    pub credentials_schema: Option<Value>,
    pub delivery: Option<Value>,
    pub authorized_uris: Vec<String>,
    pub allow_all_uris: bool,
    pub issuer: Option<String>,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub token_endpoint_auth_method: Option<String>,
    pub resource: Option<String>,
    pub authorization_params: Map<String, Value>,
    pub default_scopes: Vec<String>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn string(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// The `auths` of an integration manifest, in key order.
pub fn auths(manifest: &Value) -> Vec<AuthSpec> {
    let Some(map) = manifest.get("auths").and_then(Value::as_object) else {
        return Vec::new();
    };
    map.iter()
        .map(|(key, a)| AuthSpec {
            key: key.clone(),
            kind: string(a, "type").unwrap_or_else(|| "custom".into()),
            credentials_schema: a.pointer("/credentials/schema").cloned(),
            delivery: a.get("delivery").cloned(),
            authorized_uris: strings(a.get("authorized_uris")),
            allow_all_uris: a
                .get("allow_all_uris")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            issuer: string(a, "issuer"),
            authorization_endpoint: string(a, "authorization_endpoint"),
            token_endpoint: string(a, "token_endpoint"),
            token_endpoint_auth_method: string(a, "token_endpoint_auth_method"),
            resource: string(a, "resource"),
            authorization_params: a
                .get("authorization_params")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            default_scopes: strings(a.get("default_scopes")),
        })
        .collect()
}

pub fn auth<'a>(auths: &'a [AuthSpec], key: &str) -> Option<&'a AuthSpec> {
    auths.iter().find(|a| a.key == key)
}

/// `{$credential.name}` → `{{name}}`, the sidecar's template syntax.
fn template(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("{$credential.") {
        out.push_str(&rest[..start]);
        let after = &rest[start + "{$credential.".len()..];
        match after.find('}') {
            Some(end) => {
                out.push_str("{{");
                out.push_str(after[..end].trim());
                out.push_str("}}");
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// How the sidecar injects this auth's credential (AFPS `delivery.http`), with the
/// conventional default when the manifest has none.
pub fn delivery(auth: &AuthSpec) -> Result<Delivery, String> {
    let http = auth.delivery.as_ref().and_then(|d| d.get("http"));
    let Some(http) = http else {
        return Ok(match auth.kind.as_str() {
            "basic" => Delivery::Basic {
                username: "{{username}}".into(),
                password: "{{password}}".into(),
            },
            "oauth2" => Delivery::Header {
                name: "Authorization".into(),
                template: "Bearer {{access_token}}".into(),
            },
            "api_key" => Delivery::Header {
                name: "Authorization".into(),
                template: "Bearer {{api_key}}".into(),
            },
            other => return Err(format!("the {other} auth declares no delivery.http")),
        });
    };
    let place = string(http, "in").unwrap_or_else(|| "header".into());
    let name = string(http, "name").ok_or("delivery.http.name is missing")?;
    let prefix = string(http, "prefix").unwrap_or_default();
    let value = template(&string(http, "value").ok_or("delivery.http.value is missing")?);
    match string(http, "encoding").as_deref() {
        None | Some("none") | Some("raw") => {}
        Some("base64") => {
            // The one base64 delivery the sidecar knows: HTTP basic auth.
            let parts: Vec<&str> = value.splitn(2, ':').collect();
            if place == "header"
                && name.eq_ignore_ascii_case("authorization")
                && prefix.trim().eq_ignore_ascii_case("basic")
                && parts.len() == 2
            {
                return Ok(Delivery::Basic {
                    username: parts[0].to_owned(),
                    password: parts[1].to_owned(),
                });
            }
            return Err("base64 delivery is supported for HTTP basic auth only".into());
        }
        Some(other) => return Err(format!("unsupported delivery encoding {other:?}")),
    }
    let template = format!("{prefix}{value}");
    match place.as_str() {
        "header" => Ok(Delivery::Header { name, template }),
        "query" => Ok(Delivery::Query { name, template }),
        other => Err(format!("unsupported delivery location {other:?}")),
    }
}

pub fn authorized_uris(auth: &AuthSpec) -> Vec<String> {
    if auth.allow_all_uris {
        vec!["*".into()]
    } else {
        auth.authorized_uris.clone()
    }
}

/// The MCP tool namespace of an integration: `@acme/echo-api` → `echo_api`.
pub fn namespace(package_id: &str) -> String {
    package_id
        .rsplit('/')
        .next()
        .unwrap_or(package_id)
        .replace('-', "_")
}

/// The manifest connections are managed against: the latest published version's,
/// else the draft's.
pub async fn manifest(state: &Connect, org_id: &OrgId, package_id: &str) -> ProblemResult<Value> {
    let mut conn = state.db.conn().await?;
    let row = corral_store::packages::get_visible(&mut conn, org_id, package_id, None)
        .await?
        .ok_or_else(|| Problem::not_found("integration"))?;
    if row.ptype != "integration" {
        return Err(Problem::new(
            corral_core::ErrorCode::Conflict,
            format!(
                "{package_id} is a {} package, not an integration",
                row.ptype
            ),
        ));
    }
    if let Some(latest) = &row.latest_version {
        if let Some(v) = corral_store::packages::version(&mut conn, &row.id, latest).await? {
            if let Ok(m) = serde_json::from_str(&v.manifest) {
                return Ok(m);
            }
        }
    }
    serde_json::from_str(&row.draft_manifest).map_err(Problem::internal)
}

/// Who owns the connections a caller creates and may use.
#[derive(Debug, Clone)]
pub struct Actor {
    pub owner_type: &'static str,
    pub owner_id: String,
    /// Org-shared connections are usable too (members and API keys, not end users).
    pub include_shared: bool,
}

/// An integration an agent depends on, as resolved at trigger time.
#[derive(Debug, Clone)]
pub struct Dependency {
    pub package_id: String,
    pub manifest: Value,
    /// `auth_key` pinned by the agent's dependency entry, if any.
    pub auth_key: Option<String>,
}

/// What a run freezes about one integration: no secret, only where to find it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunIntegration {
    pub package_id: String,
    pub namespace: String,
    pub connection_id: String,
    pub delivery: Delivery,
    pub authorized_uris: Vec<String>,
}

/// What the resolver decided for one integration dependency.
pub struct Verdict {
    pub package_id: String,
    /// The connections the actor may use for it (own and org-shared, newest first).
    pub candidates: Vec<store::Connection>,
    /// The connection a run would use, or the field error of the 412
    /// (`field: integrations.<id>`, as the contract's readiness shares with runs).
    pub outcome: Result<RunIntegration, FieldError>,
    /// Which layer of the cascade chose the connection.
    pub layer: Layer,
    /// The admin pin of (agent, integration), if any.
    pub admin_pin: Option<String>,
    /// The actor's own pin of (agent, integration), if any.
    pub member_pin: Option<String>,
    /// The application's default connection for the integration, and whether it is
    /// enforced.
    pub org_default: Option<(String, bool)>,
}

/// The layers of the connection cascade, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// An admin pin of (agent, integration): every member's runs use it.
    AdminPin,
    /// The application's default connection with `enforce: true`.
    EnforcedDefault,
    /// The trigger's (or schedule's) `connection_overrides`.
    Override,
    /// The actor's own pin of (agent, integration).
    MemberPin,
    /// The application's default connection (not enforced).
    OrgDefault,
    /// The newest usable connection of the actor (own or org-shared).
    Fallback,
}

/// The connection each dependency would use, by the cascade: admin pin >
/// enforced org default > the request's override > the actor's member pin > org
/// default > the newest usable candidate. A pin or default applies when its
/// connection is one the actor may use for the dependency (same auth when the agent
/// names one); otherwise that layer is skipped. `agent_id` is the agent package
/// (inline runs have none, and so no pins).
pub async fn resolve(
    state: &Connect,
    app_id: &AppId,
    actor: &Actor,
    agent_id: Option<&str>,
    deps: &[Dependency],
    overrides: Option<&BTreeMap<String, String>>,
) -> ProblemResult<Vec<Verdict>> {
    use corral_store::integration_governance as gov;
    let mut verdicts = Vec::with_capacity(deps.len());
    let mut conn = state.db.conn().await?;
    for dep in deps {
        let candidates: Vec<_> = store::usable(
            &mut conn,
            app_id,
            Some(&dep.package_id),
            actor.owner_type,
            &actor.owner_id,
            actor.include_shared,
        )
        .await?
        .into_iter()
        .filter(|c| dep.auth_key.as_deref().is_none_or(|k| k == c.auth_key))
        .collect();
        let org_default = gov::org_default(&mut conn, app_id, &dep.package_id)
            .await?
            .map(|d| (d.connection_id, d.enforce));
        let (mut admin_pin, mut member_pin) = (None, None);
        if let Some(agent) = agent_id {
            admin_pin = gov::pin(
                &mut conn,
                &gov::PinKey {
                    app: app_id,
                    agent_id: agent,
                    package_id: &dep.package_id,
                    owner_type: gov::ADMIN,
                    owner_id: "",
                },
            )
            .await?
            .map(|p| p.connection_id);
            member_pin = gov::pin(
                &mut conn,
                &gov::PinKey {
                    app: app_id,
                    agent_id: agent,
                    package_id: &dep.package_id,
                    owner_type: actor.owner_type,
                    owner_id: &actor.owner_id,
                },
            )
            .await?
            .map(|p| p.connection_id);
        }
        let usable = |id: &Option<String>| {
            id.as_ref()
                .and_then(|id| candidates.iter().find(|c| &c.id == id))
        };
        let enforced = org_default
            .as_ref()
            .filter(|(_, enforce)| *enforce)
            .map(|(id, _)| id.clone());
        let loose = org_default
            .as_ref()
            .filter(|(_, enforce)| !*enforce)
            .map(|(id, _)| id.clone());
        let requested = overrides.and_then(|o| o.get(&dep.package_id));
        let (layer, pick) = if let Some(c) = usable(&admin_pin) {
            (Layer::AdminPin, Pick::Chosen(c))
        } else if let Some(c) = usable(&enforced) {
            (Layer::EnforcedDefault, Pick::Chosen(c))
        } else if let Some(id) = requested {
            (Layer::Override, Pick::Requested(id))
        } else if let Some(c) = usable(&member_pin) {
            (Layer::MemberPin, Pick::Chosen(c))
        } else if let Some(c) = usable(&loose) {
            (Layer::OrgDefault, Pick::Chosen(c))
        } else {
            (Layer::Fallback, Pick::Any)
        };
        let outcome = choose(dep, &candidates, pick);
        verdicts.push(Verdict {
            package_id: dep.package_id.clone(),
            candidates,
            outcome,
            layer,
            admin_pin,
            member_pin,
            org_default,
        });
    }
    Ok(verdicts)
}

enum Pick<'a> {
    /// A pin or default already found among the candidates.
    Chosen(&'a store::Connection),
    /// The request's override (must be a candidate).
    Requested(&'a String),
    /// The newest usable candidate.
    Any,
}

fn choose(
    dep: &Dependency,
    candidates: &[store::Connection],
    pick: Pick<'_>,
) -> Result<RunIntegration, FieldError> {
    let field = format!("integrations.{}", dep.package_id);
    let c = match pick {
        Pick::Chosen(c) => c,
        Pick::Requested(id) => candidates.iter().find(|c| &c.id == id).ok_or_else(|| {
            FieldError::new(
                &field,
                "connection_not_found",
                format!("connection {id} is not usable for {}", dep.package_id),
            )
            .with_connection(id.clone())
        })?,
        Pick::Any => candidates
            .iter()
            .find(|c| !c.needs_reconnection)
            .or(candidates.first())
            .ok_or_else(|| {
                FieldError::new(
                    &field,
                    "connection_missing",
                    format!("{} is not connected", dep.package_id),
                )
            })?,
    };
    if c.needs_reconnection {
        return Err(FieldError::new(
            &field,
            "needs_reconnection",
            format!(
                "the connection to {} must be re-authorized (its refresh token was refused)",
                dep.package_id
            ),
        )
        .with_connection(c.id.clone()));
    }
    let specs = auths(&dep.manifest);
    let spec = auth(&specs, &c.auth_key).ok_or_else(|| {
        FieldError::new(
            &field,
            "auth_key_mismatch",
            format!(
                "the connection uses auth {:?}, which this version of {} no longer declares",
                c.auth_key, dep.package_id
            ),
        )
    })?;
    let delivery =
        delivery(spec).map_err(|msg| FieldError::new(&field, "integration_invalid", msg))?;
    Ok(RunIntegration {
        package_id: dep.package_id.clone(),
        namespace: namespace(&dep.package_id),
        connection_id: c.id.clone(),
        delivery,
        authorized_uris: authorized_uris(spec),
    })
}

/// Why a connection's credentials could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("connection {0} no longer exists")]
    Gone(String),
    #[error("the connection must be re-authorized: the provider refused its refresh token")]
    NeedsReconnection,
    #[error("the access token expired and could not be refreshed: {0}")]
    RefreshFailed(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

fn needs_refresh(c: &store::Connection, now: i64) -> bool {
    c.auth_type == "oauth2" && c.expires_at.is_some_and(|e| e - now < REFRESH_MARGIN_MS)
}

fn open(state: &Connect, c: &store::Connection) -> anyhow::Result<Map<String, Value>> {
    let text = state
        .keyring
        .open_str(&c.credentials, &credentials_aad(&c.id))
        .map_err(|e| anyhow::anyhow!("cannot open the credentials of connection {}: {e}", c.id))?;
    Ok(serde_json::from_str(&text)?)
}

pub fn seal(state: &Connect, connection_id: &str, creds: &Map<String, Value>) -> String {
    state.keyring.seal(
        Value::Object(creds.clone()).to_string().as_bytes(),
        &credentials_aad(connection_id),
    )
}

/// A connection's current credentials, as a run's sidecar gets them.
#[derive(Debug, Clone)]
pub struct Fresh {
    /// Credential values by name, as the delivery templates reference them.
    pub values: BTreeMap<String, String>,
    /// When the access token expires (Unix ms), if known.
    pub expires_at: Option<i64>,
    pub auth_key: String,
    pub auth_type: String,
    pub scopes_granted: Vec<String>,
}

/// A forced refresh right after the credentials were written is skipped: the
/// upstream refused a token this new, and another would not fare better (and a
/// burst of 401s from many sandboxes must not become a burst of refreshes).
pub const FORCE_DEBOUNCE_MS: i64 = 30_000;

/// The credential values of a connection, as the sidecar's delivery templates
/// reference them; an OAuth access token about to expire is refreshed first, and
/// with `force` (an upstream answered 401) an OAuth token is refreshed regardless
/// of its expiry, unless it was written in the last [`FORCE_DEBOUNCE_MS`].
///
/// Refreshes are serialized per connection: in process by a mutex, across
/// replicas by a row lock (PostgreSQL). Whoever gets the lock second finds the
/// token fresh and uses it, so concurrent runs cause one refresh.
pub async fn fresh_credentials(
    state: &Connect,
    connection_id: &str,
    force: bool,
) -> Result<Fresh, CredentialError> {
    let c = {
        let mut conn = state.db.conn().await.map_err(anyhow::Error::from)?;
        store::connection(&mut conn, connection_id)
            .await
            .map_err(anyhow::Error::from)?
            .ok_or_else(|| CredentialError::Gone(connection_id.to_owned()))?
    };
    if c.needs_reconnection {
        return Err(CredentialError::NeedsReconnection);
    }
    let (creds, expires_at) = if refresh_due(&c, now_ms(), force) {
        refresh_locked(state, connection_id, force).await?
    } else {
        (open(state, &c)?, c.expires_at)
    };
    Ok(Fresh {
        values: creds
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect(),
        expires_at,
        auth_key: c.auth_key,
        auth_type: c.auth_type,
        scopes_granted: c.scopes_granted,
    })
}

/// Whether to refresh now: the token is about to expire, or a refresh is forced
/// and the credentials are not brand new (every write of them sets `updated_at`).
fn refresh_due(c: &store::Connection, now: i64, force: bool) -> bool {
    needs_refresh(c, now)
        || (force && c.auth_type == "oauth2" && now - c.updated_at >= FORCE_DEBOUNCE_MS)
}

async fn refresh_locked(
    state: &Connect,
    connection_id: &str,
    force: bool,
) -> Result<(Map<String, Value>, Option<i64>), CredentialError> {
    let lock = state
        .refresh_locks
        .entry(connection_id.to_owned())
        .or_default()
        .clone();
    let _guard = lock.lock().await;
    // PostgreSQL: the row stays locked (other replicas wait) until the new tokens
    // are stored. SQLite serves one process, whose mutex is enough; a transaction
    // held across the HTTP call would only make other writers fail as busy.
    let postgres = state.db.backend() == corral_store::Backend::Postgres;
    let mut tx = if postgres {
        Some(state.db.pool().begin().await.map_err(anyhow::Error::from)?)
    } else {
        None
    };
    let row = match &mut tx {
        Some(t) => store::connection_for_update(t, connection_id, true).await,
        None => {
            let mut conn = state.db.conn().await.map_err(anyhow::Error::from)?;
            store::connection(&mut conn, connection_id).await
        }
    };
    let c = row
        .map_err(anyhow::Error::from)?
        .ok_or_else(|| CredentialError::Gone(connection_id.to_owned()))?;
    if c.needs_reconnection {
        return Err(CredentialError::NeedsReconnection);
    }
    let mut creds = open(state, &c)?;
    let now = now_ms();
    if !refresh_due(&c, now, force) {
        // Someone refreshed while this caller waited for the lock.
        return Ok((creds, c.expires_at));
    }
    let still_valid = c.expires_at.is_some_and(|e| e > now);
    let Some(refresh_token) = creds
        .get("refresh_token")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        if still_valid {
            return Ok((creds, c.expires_at));
        }
        return Err(CredentialError::RefreshFailed(
            "the provider gave no refresh token".into(),
        ));
    };
    let outcome = oauth::refresh(state, &c, &refresh_token).await;
    match outcome {
        Ok(tokens) => {
            creds.insert(
                "access_token".into(),
                Value::from(tokens.access_token.clone()),
            );
            if let Some(rt) = tokens.refresh_token {
                creds.insert("refresh_token".into(), Value::from(rt));
            }
            if let Some(tt) = tokens.token_type {
                creds.insert("token_type".into(), Value::from(tt));
            }
            let refreshed = Refreshed {
                sealed: seal(state, &c.id, &creds),
                expires_at: tokens.expires_in_ms.map(|ms| now + ms),
            };
            record(state, tx, &c.id, Some(&refreshed), now).await?;
            tracing::info!(connection_id = %c.id, package = %c.package_id, forced = force, "access token refreshed");
            Ok((creds, refreshed.expires_at))
        }
        Err(oauth::OauthError::InvalidGrant(detail)) => {
            record(state, tx, &c.id, None, now).await?;
            tracing::warn!(connection_id = %c.id, package = %c.package_id, %detail, "refresh token refused (invalid_grant): the connection needs reconnection");
            Err(CredentialError::NeedsReconnection)
        }
        Err(e) => {
            drop(tx);
            tracing::warn!(connection_id = %c.id, error = %e, "access token refresh failed");
            if still_valid {
                Ok((creds, c.expires_at))
            } else {
                Err(CredentialError::RefreshFailed(e.to_string()))
            }
        }
    }
}

/// New tokens to store, sealed.
struct Refreshed {
    sealed: String,
    expires_at: Option<i64>,
}

/// Stores the outcome of a refresh: the new tokens, or (`None`) that the
/// connection needs reconnection; then releases the row lock, if one is held.
async fn record(
    state: &Connect,
    tx: Option<sqlx::Transaction<'static, sqlx::Any>>,
    id: &str,
    refreshed: Option<&Refreshed>,
    now: i64,
) -> anyhow::Result<()> {
    async fn write(
        conn: &mut sqlx::AnyConnection,
        id: &str,
        refreshed: Option<&Refreshed>,
        now: i64,
    ) -> corral_store::Result<()> {
        match refreshed {
            Some(r) => store::store_refreshed(conn, id, &r.sealed, r.expires_at, now).await,
            None => store::mark_needs_reconnection(conn, id, now).await,
        }
    }
    match tx {
        Some(mut t) => {
            write(&mut t, id, refreshed, now).await?;
            t.commit().await?;
        }
        None => write(&mut *state.db.conn().await?, id, refreshed, now).await?,
    }
    Ok(())
}

/// Validates fields-based credentials against the auth's `credentials.schema`.
pub fn validate_fields(spec: &AuthSpec, creds: &Map<String, Value>) -> Result<(), Vec<FieldError>> {
    let schema = spec
        .credentials_schema
        .clone()
        .unwrap_or_else(|| serde_json::json!({"type": "object"}));
    let validator = jsonschema::validator_for(&schema).map_err(|e| {
        vec![FieldError::new(
            "credentials",
            "invalid_schema",
            format!("the integration's credentials.schema is invalid: {e}"),
        )]
    })?;
    let value = Value::Object(creds.clone());
    let mut errors: Vec<FieldError> = validator
        .iter_errors(&value)
        .map(|e| {
            let path = e.instance_path().to_string();
            let field = if path.is_empty() {
                "credentials".to_owned()
            } else {
                format!("credentials{}", path.replace('/', "."))
            };
            // Never echo a submitted value: the message names the rule only.
            FieldError::new(field, "invalid", schema_message(&e))
        })
        .collect();
    if creds.is_empty() && errors.is_empty() {
        errors.push(FieldError::new(
            "credentials",
            "required",
            "at least one credential value is required",
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn schema_message(e: &jsonschema::ValidationError<'_>) -> String {
    use jsonschema::error::ValidationErrorKind as K;
    match e.kind() {
        K::Required { property } => format!("{property} is required"),
        K::Type { kind } => format!("must be of type {kind:?}"),
        K::AdditionalProperties { unexpected } => {
            format!("unexpected properties: {}", unexpected.join(", "))
        }
        K::MinLength { limit } => format!("must be at least {limit} characters"),
        K::MaxLength { limit } => format!("must be at most {limit} characters"),
        K::Pattern { pattern } => format!("must match {pattern}"),
        K::Enum { .. } => "must be one of the allowed values".into(),
        _ => "does not match the credentials schema".into(),
    }
}
