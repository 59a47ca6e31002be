use super::*;

use corral_core::AppId;
use corral_engine::runs::remote::{self, Remote};

// ---- remote runs -------------------------------------------------------------------

/// Largest `contextSnapshot`, serialized.
const CONTEXT_SNAPSHOT_MAX_BYTES: usize = 16 * 1024;
/// Longest runner name or kind kept from the `X-Appstrate-Runner-*` headers.
const RUNNER_LABEL_MAX: usize = 120;

/// Which agent a remote run runs.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum RemoteSource {
    /// An agent defined in the request (a full AFPS agent manifest and its prompt).
    Inline {
        #[schema(value_type = Object)]
        manifest: Value,
        prompt: String,
    },
    /// An agent of the catalog, by id.
    Registry {
        /// `@scope/name`.
        #[serde(rename = "packageId")]
        package_id: String,
        /// `draft` or `published` (default).
        stage: Option<String>,
        /// Version, range or dist-tag (published only).
        spec: Option<String>,
        /// SRI digest (`sha256-…`) the runner downloaded; a different resolved
        /// version is logged, never refused.
        integrity: Option<String>,
    },
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SinkRequest {
    /// 1–86400: the sink's lifetime, clamped to `CORRAL_REMOTE_RUN_SINK_MAX_TTL_SECONDS`.
    pub ttl_seconds: Option<i64>,
}

/// Body of `POST /api/runs/remote`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoteRunBody {
    pub source: RemoteSource,
    /// The application the run belongs to (an API key's own).
    #[serde(rename = "applicationId")]
    pub application_id: String,
    /// Validated against the agent's input schema; file fields take inline `data:`
    /// URIs only (`upload://` and `document://` are refused).
    #[schema(value_type = Option<Object>)]
    pub input: Option<Map<String, Value>>,
    /// Per-run dependency version overrides (`{"@scope/skill": "<spec>"}`).
    #[schema(value_type = Option<Object>)]
    pub dependency_overrides: Option<BTreeMap<String, String>>,
    /// The runner's environment (os, CLI version, git sha…), at most 16 KiB.
    #[serde(rename = "contextSnapshot")]
    #[schema(value_type = Option<Object>)]
    pub context_snapshot: Option<Map<String, Value>>,
    pub sink: Option<SinkRequest>,
}

impl Validate for RemoteRunBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        crate::json::check::len(&mut e, "applicationId", &self.application_id, 1, 100);
        match &self.source {
            RemoteSource::Inline { manifest, prompt } => {
                if !manifest.is_object() {
                    e.push(FieldError::new(
                        "source.manifest",
                        "invalid_type",
                        "must be an object",
                    ));
                }
                if prompt.trim().is_empty() {
                    e.push(FieldError::new(
                        "source.prompt",
                        "required",
                        "must not be empty",
                    ));
                }
            }
            RemoteSource::Registry {
                package_id,
                stage,
                spec,
                ..
            } => {
                crate::json::check::len(&mut e, "source.packageId", package_id, 1, 214);
                match stage.as_deref() {
                    None | Some("published") => {}
                    Some("draft") if spec.is_some() => e.push(FieldError::new(
                        "source.spec",
                        "invalid",
                        "spec is only valid with stage: published",
                    )),
                    Some("draft") => {}
                    Some(_) => e.push(FieldError::new(
                        "source.stage",
                        "invalid",
                        "stage is draft or published",
                    )),
                }
            }
        }
        for (k, v) in self.input.iter().flatten() {
            if let Value::String(s) = v {
                if s.starts_with("upload://") || s.starts_with("document://") {
                    e.push(FieldError::new(
                        format!("input.{k}"),
                        "unsupported",
                        "a remote run executes on the caller's host: files are inline data: URIs, not upload:// or document:// references",
                    ));
                }
            }
        }
        if let Some(snap) = &self.context_snapshot {
            if serde_json::to_string(snap).map_or(0, |t| t.len()) > CONTEXT_SNAPSHOT_MAX_BYTES {
                e.push(FieldError::new(
                    "contextSnapshot",
                    "too_large",
                    format!("contextSnapshot exceeds {CONTEXT_SNAPSHOT_MAX_BYTES} bytes"),
                ));
            }
        }
        if let Some(ttl) = self.sink.as_ref().and_then(|s| s.ttl_seconds) {
            if !(1..=86_400).contains(&ttl) {
                e.push(FieldError::new(
                    "sink.ttl_seconds",
                    "out_of_range",
                    "ttl_seconds must be between 1 and 86400",
                ));
            }
        }
        e
    }
}

/// The one-time sink credentials of a remote run.
#[derive(Debug, Serialize, ToSchema)]
pub struct RemoteRunCreated {
    /// The run's id (`GET /api/runs/{id}`).
    pub id: String,
    /// `POST` each signed CloudEvent here.
    #[schema(format = "uri")]
    pub url: String,
    /// `POST` the signed result here.
    #[schema(format = "uri")]
    pub finalize_url: String,
    /// 32 random bytes, base64url: the HMAC key of the events' Standard Webhooks
    /// signatures. Returned once, never again.
    pub secret: String,
    /// Events posted after this are refused with 410.
    #[serde(rename = "expiresAt")]
    #[schema(format = DateTime)]
    pub expires_at: String,
}

fn runner_label(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| v.chars().take(RUNNER_LABEL_MAX).collect())
}

/// The application named in the body, as the caller may use it: an API key's own,
/// or one of the session's organization.
async fn body_application(state: &AppState, ctx: &Ctx, requested: &str) -> ApiResult<AppId> {
    if let crate::auth::Principal::ApiKey(k) = &ctx.principal {
        if k.application_id.as_str() != requested {
            return Err(ApiError::forbidden(
                "this API key belongs to another application",
            ));
        }
        return Ok(k.application_id.clone());
    }
    let mut conn = state.db.conn().await?;
    corral_store::applications::get(&mut conn, ctx.org_id()?, &AppId::from(requested))
        .await?
        .map(|a| a.id)
        .ok_or_else(|| {
            ApiError::field(
                "applicationId",
                "not_found",
                "no such application in this organization",
            )
        })
}

/// Create a run whose agent runs on the caller's host (a CLI, a CI job). Same checks
/// as any run (input, dependencies, connections, model, the organization's gates);
/// the run stays `pending` until its first signed event, never takes a sandbox, and
/// its lifecycle flows through `POST /api/runs/{id}/events` and `…/finalize`. The
/// sink secret is in this answer only.
#[utoipa::path(post, path = "/api/runs/remote", tag = "Runs", operation_id = "createRemoteRun",
    request_body = RemoteRunBody,
    responses((status = 201, description = "Run created: use the returned credentials to stream events", body = RemoteRunCreated),
              (status = 412, description = "A required integration has no usable connection", body = crate::error::ProblemDetail),
              (status = 422, description = "A dependency has no matching version, or no model is configured", body = crate::error::ProblemDetail)))]
pub async fn create_remote_run(
    State(state): State<AppState>,
    ctx: Perm<perms::AgentsRun>,
    headers: axum::http::HeaderMap,
    Json(mut body): Json<RemoteRunBody>,
) -> ApiResult<Response> {
    let org_id = ctx.org_id()?;
    let app_id = body_application(&state, &ctx, &body.application_id).await?;
    let (agent, kind) = match &body.source {
        RemoteSource::Inline { manifest, prompt } => {
            (trigger::inline_agent(manifest, prompt)?, "inline")
        }
        RemoteSource::Registry {
            package_id,
            stage,
            spec,
            integrity,
        } => {
            let version = match stage.as_deref() {
                Some("draft") => Some("draft"),
                _ => spec.as_deref(),
            };
            let agent = trigger::resolve_agent(&state, org_id, package_id, version).await?;
            if let Some(hint) = integrity {
                let resolved = corral_afps::integrity(&agent.pkg.to_archive());
                if &resolved != hint {
                    tracing::warn!(package = %package_id, version = %agent.version_ref, hint, resolved, "the remote runner's bundle differs from the resolved version");
                }
            }
            (agent, "package")
        }
    };
    let caller = ctx.caller_in(app_id)?;
    let req = trigger::Request {
        agent: &agent,
        kind,
        generation: None,
        model_id: None,
        dependency_overrides: body.dependency_overrides.as_ref(),
        connection_overrides: None,
        schedule: None,
        // The caller's host makes its own outbound calls: no sandbox egress to route.
        proxy_id: None,
        schedule_proxy_id: None,
    };
    let input = body.input.take().unwrap_or_default();
    let checked = trigger::check(&state, &caller, &req, input).await?;
    let snapshot = body
        .context_snapshot
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(ApiError::internal)?;
    let runner_name = runner_label(&headers, "x-appstrate-runner-name");
    let runner_kind = runner_label(&headers, "x-appstrate-runner-kind");
    let created = remote::create(
        &state,
        &caller,
        &req,
        checked,
        &Remote {
            sink_ttl_secs: body
                .sink
                .as_ref()
                .and_then(|s| s.ttl_seconds)
                .map(|t| t as u64),
            context_snapshot: snapshot.as_deref(),
            runner_name: runner_name.as_deref(),
            runner_kind: runner_kind.as_deref(),
        },
    )
    .await?;
    let events = format!(
        "{}/api/runs/{}/events",
        state.config.public_url.trim_end_matches('/'),
        created.run.id
    );
    let out = RemoteRunCreated {
        id: created.run.id.to_string(),
        finalize_url: format!("{events}/finalize"),
        url: events,
        secret: created.secret,
        expires_at: to_rfc3339(created.run.sink_expires_at),
    };
    Ok((StatusCode::CREATED, Json(out)).into_response())
}
