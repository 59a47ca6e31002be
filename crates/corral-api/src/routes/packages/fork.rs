//! `POST /api/packages/{scope}/{name}/fork`: a copy, under the organization's scope,
//! of a package it does not own (a system package), made from the source's latest
//! published version and published at once as the fork's first version; and
//! `POST /api/packages/import-github`.

use super::*;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForkBody {
    /// The fork's name (slug); defaults to the source package's name.
    #[schema(pattern = "^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")]
    pub name: Option<String>,
}

impl Validate for ForkBody {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if let Some(n) = &self.name {
            if PackageName::parse(&format!("@x/{n}")).is_none() {
                errors.push(FieldError::new(
                    "name",
                    "invalid_format",
                    "must be a slug: lowercase letters, digits and dashes, not starting or ending with a dash",
                ));
            }
        }
        errors
    }
}

/// The forked package, as its GET detail shows it (`AgentDetail` for agents).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum ForkedPackage {
    Agent(Box<AgentDetail>),
    Other(Box<PackageDetail>),
}

#[utoipa::path(post, path = "/api/packages/{scope}/{name}/fork", tag = "Packages", operation_id = "forkPackage",
    params(("scope" = String, Path, description = "Package scope (@org)"), ("name" = String, Path, description = "Package name")),
    request_body = ForkBody,
    responses((status = 201, description = "Package forked successfully", body = ForkedPackage),
              (status = 400, description = "Already owned, no published version (`invalid_request`) or the name is taken (`name_collision`)", body = ProblemDetail),
              (status = 422, description = "The source's published archive cannot be read", body = ProblemDetail)))]
pub async fn fork_package(
    State(state): State<AppState>,
    ctx: Perm<perms::PackagesWrite>,
    Path((scope, name)): Path<(String, String)>,
    Json(body): Json<ForkBody>,
) -> ApiResult<(StatusCode, Json<Detail>)> {
    let org_id = ctx.org_id()?;
    let source_id = package_id(&scope, &name)?;
    let source = load_row(&state, &ctx, &source_id, None).await?;
    if source.org_id.as_ref() == Some(org_id) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("{source_id} already belongs to this organization: edit it in place"),
        ));
    }
    let ptype = PackageType::parse(&source.ptype)
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("unknown type {}", source.ptype)))?;
    let Some(latest) = source.latest_version.clone() else {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("{source_id} has no published version to fork"),
        ));
    };
    let version = {
        let mut conn = state.db.conn().await?;
        store::version(&mut conn, &source.id, &latest)
            .await?
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("latest version row missing")))?
    };
    let bytes = svc::load_verified(&state, &version).await?;
    let original = Package::from_archive(&bytes, &corral_afps::Limits::default()).map_err(|e| {
        let mut p = ApiError::from(e);
        p.code = ErrorCode::PackageArchiveUnreadable;
        p
    })?;

    let slug = {
        let mut conn = state.db.conn().await?;
        corral_store::orgs::by_id(&mut conn, org_id)
            .await?
            .ok_or_else(|| ApiError::not_found("organization"))?
            .slug
    };
    let new_name = body.name.unwrap_or_else(|| source.name.clone());
    let new_id = format!("@{slug}/{new_name}");
    {
        let mut conn = state.db.conn().await?;
        let taken = store::get_visible(&mut conn, org_id, &new_id, None).await?;
        let taken_elsewhere =
            taken.is_none() && store::get_system(&mut conn, &new_id).await?.is_some();
        if taken.is_some() || taken_elsewhere {
            let mut e = ApiError::new(
                ErrorCode::NameCollision,
                format!("{new_id} already exists; pass another `name`"),
            );
            e.param = Some("name".into());
            return Err(e);
        }
    }

    let mut manifest = original.manifest.clone();
    manifest["name"] = Value::String(new_id.clone());
    let mut files = original.files.clone();
    files.remove("manifest.json");
    let pkg = Package::from_parts(manifest, files)?;
    let manifest_text = serde_json::to_string(&pkg.manifest).map_err(ApiError::internal)?;
    let encoded = svc::encode_files(&pkg.files)?;
    let archive = pkg.to_archive();
    let integrity = corral_afps::integrity(&archive);
    {
        let mut conn = state.db.conn().await?;
        store::insert(
            &mut conn,
            &store::NewPackage {
                id: &new_id,
                org_id: Some(org_id),
                ptype: pkg.ptype.as_str(),
                scope: &pkg.name.scope,
                name: &pkg.name.name,
                display_name: pkg.manifest.get("display_name").and_then(Value::as_str),
                description: pkg.manifest.get("description").and_then(Value::as_str),
                draft_manifest: &manifest_text,
                draft_files: &encoded,
                draft_integrity: &integrity,
                forked_from: Some(&source.id),
                created_by: ctx.principal.actor_user_id(),
                now: now_ms(),
            },
        )
        .await
        .map_err(|e| match e {
            corral_store::StoreError::Conflict { .. } => {
                let mut e = ApiError::new(
                    ErrorCode::NameCollision,
                    format!("{new_id} already exists; pass another `name`"),
                );
                e.param = Some("name".into());
                e
            }
            other => other.into(),
        })?;
    }
    if let Err(e) = svc::publish(
        &state,
        &new_id,
        &pkg,
        archive,
        ctx.principal.actor_user_id(),
    )
    .await
    {
        // No half fork: the row goes with its failed first version.
        let mut conn = state.db.conn().await?;
        store::delete(&mut conn, org_id, &new_id).await?;
        return Err(e.into());
    }
    let row = load_row(&state, &ctx, &new_id, Some(ptype)).await?;
    Ok((
        StatusCode::CREATED,
        Json(detail(&state, &ctx, &row, ptype).await?),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportGithubBody {
    /// A GitHub URL of a repository or a directory in it
    /// (`https://github.com/owner/repo/tree/main/path`).
    pub url: String,
}

impl Validate for ImportGithubBody {}

/// What an import answers (never reached here: see [`import_github`]).
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportedPackage {
    #[serde(rename = "packageId")]
    pub package_id: String,
    #[serde(rename = "type")]
    pub ptype: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warnings: Option<Vec<String>>,
}

/// `owner`, `repo` and the rest of a `https://github.com/owner/repo[/tree/ref/path]` URL.
pub(crate) fn parse_github_url(url: &str) -> Option<(String, String, Option<String>)> {
    let u = url::Url::parse(url.trim()).ok()?;
    if u.scheme() != "https" || !matches!(u.host_str(), Some("github.com" | "www.github.com")) {
        return None;
    }
    let segs: Vec<&str> = u.path_segments()?.filter(|s| !s.is_empty()).collect();
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    match segs.as_slice() {
        [owner, repo] if valid(owner) && valid(repo) => Some((
            (*owner).to_owned(),
            repo.trim_end_matches(".git").to_owned(),
            None,
        )),
        [owner, repo, "tree", rest @ ..] if valid(owner) && valid(repo) && !rest.is_empty() => {
            Some((
                (*owner).to_owned(),
                (*repo).to_owned(),
                Some(rest.join("/")),
            ))
        }
        _ => None,
    }
}

/// Imports from GitHub need the server to reach `github.com`. Corral makes no
/// outbound request for this: the URL is checked (`INVALID_URL`), then the import is
/// refused with the reference's `GITHUB_ERROR`, saying so; nothing is written.
/// Download the repository and use `POST /api/packages/import` with the archive.
#[utoipa::path(post, path = "/api/packages/import-github", tag = "Packages", operation_id = "importPackageFromGithub",
    request_body = ImportGithubBody,
    responses((status = 201, description = "Package imported", body = ImportedPackage),
              (status = 400, description = "`INVALID_URL` (not a GitHub repository or directory URL) or `GITHUB_ERROR` (this server does not fetch from GitHub)", body = ProblemDetail)))]
pub async fn import_github(
    ctx: Perm<perms::PackagesWrite>,
    Json(body): Json<ImportGithubBody>,
) -> ApiResult<(StatusCode, Json<ImportedPackage>)> {
    let _ = ctx.org_id()?;
    let Some((owner, repo, _)) = parse_github_url(&body.url) else {
        let mut e = ApiError::new(
            ErrorCode::InvalidUrl,
            "url must be a GitHub repository or directory URL (https://github.com/owner/repo/tree/ref/path)",
        );
        e.param = Some("url".into());
        return Err(e);
    };
    Err(ApiError::new(
        ErrorCode::GithubError,
        format!(
            "this server does not fetch packages from GitHub (no outbound network access is configured); \
             download {owner}/{repo} and upload it with POST /api/packages/import instead"
        ),
    ))
}

pub fn fork_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(fork_package))
        .routes(routes!(import_github))
}
