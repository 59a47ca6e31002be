use super::*;

// ---------------------------------------------------------------------------------
// Generic handlers, one per operation; `typed_routes!` instantiates them per type.

pub(super) async fn list_impl(
    state: &AppState,
    ctx: &Ctx,
    ptype: PackageType,
) -> ApiResult<PackageList> {
    let org_id = ctx.org_id()?;
    let mut conn = state.db.conn().await?;
    let rows = store::list_visible(&mut conn, org_id, Some(ptype.as_str())).await?;
    let mut data = Vec::with_capacity(rows.len());
    for row in rows {
        let used = if ptype == PackageType::Agent {
            0
        } else {
            store::count_dependents(&mut conn, org_id, &row.id).await?
        };
        data.push(item(row, used));
    }
    Ok(PackageList {
        object: "list",
        total: data.len() as i64,
        data,
        has_more: false,
    })
}

pub(super) async fn create_impl(
    state: &AppState,
    ctx: &Ctx,
    ptype: PackageType,
    body: CreatePackageBody,
) -> ApiResult<Detail> {
    let org_id = ctx.org_id()?;
    let files = files_from_body(ptype, body.content, body.files);
    let pkg = Package::from_parts(body.manifest, files)?;
    check_type(&pkg, ptype)?;
    svc::check_scope(state, org_id, &pkg).await?;
    let id = pkg.name.id();
    {
        let mut conn = state.db.conn().await?;
        if store::get_visible(&mut conn, org_id, &id, None)
            .await?
            .is_some()
        {
            let mut e = ApiError::new(ErrorCode::Conflict, format!("{id} already exists"));
            e.param = Some("manifest.name".into());
            return Err(e);
        }
    }
    match svc::upsert_with_draft(state, Some(org_id), &pkg, ctx.principal.actor_user_id()).await {
        Err(e) if e.code == ErrorCode::Conflict => return Err(e.into()),
        other => other?,
    };
    let row = load_row(state, ctx, &id, Some(ptype)).await?;
    detail(state, ctx, &row, ptype).await
}

pub(super) async fn get_impl(
    state: &AppState,
    ctx: &Ctx,
    ptype: PackageType,
    id: &str,
) -> ApiResult<Detail> {
    let row = load_row(state, ctx, id, Some(ptype)).await?;
    detail(state, ctx, &row, ptype).await
}

pub(super) async fn update_impl(
    state: &AppState,
    ctx: &Ctx,
    ptype: PackageType,
    id: &str,
    body: UpdatePackageBody,
) -> ApiResult<Detail> {
    let row = load_own(state, ctx, id, ptype).await?;
    let mut files = svc::decode_files(&row.draft_files)?;
    if let Some(more) = body.files {
        files.extend(more.into_iter().map(|(k, v)| (k, v.into_bytes())));
    }
    if let (Some(f), Some(c)) = (main_file(ptype), body.content) {
        files.insert(f.to_owned(), c.into_bytes());
    }
    let pkg = Package::from_parts(body.manifest, files)?;
    check_type(&pkg, ptype)?;
    if pkg.name.id() != row.id {
        return Err(ApiError::field(
            "manifest.name",
            "immutable",
            "a package cannot be renamed",
        ));
    }
    let manifest = serde_json::to_string(&pkg.manifest).map_err(ApiError::internal)?;
    let encoded = svc::encode_files(&pkg.files)?;
    let integrity = corral_afps::integrity(&pkg.to_archive());
    let mut conn = state.db.conn().await?;
    let updated = store::update_draft(
        &mut conn,
        row.org_id.as_ref(),
        &row.id,
        &store::DraftUpdate {
            manifest: &manifest,
            files: &encoded,
            integrity: &integrity,
            display_name: pkg.manifest.get("display_name").and_then(Value::as_str),
            description: pkg.manifest.get("description").and_then(Value::as_str),
            now: now_ms(),
        },
        body.lock_version,
    )
    .await?;
    if !updated {
        let mut e = ApiError::new(
            ErrorCode::LockConflict,
            "the package was changed by someone else; reload and retry",
        );
        e.param = Some("lock_version".into());
        return Err(e);
    }
    drop(conn);
    get_impl(state, ctx, ptype, id).await
}

pub(super) async fn delete_impl(
    state: &AppState,
    ctx: &Ctx,
    ptype: PackageType,
    id: &str,
) -> ApiResult<StatusCode> {
    let row = load_own(state, ctx, id, ptype).await?;
    let mut conn = state.db.conn().await?;
    let users = dependents(&mut conn, ctx.org_id()?, &row.id).await?;
    if !users.is_empty() {
        return Err(ApiError::new(
            ErrorCode::PackageInUse,
            format!(
                "{} is used by {}",
                row.id,
                users
                    .iter()
                    .map(|a| a.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    store::delete(&mut conn, ctx.org_id()?, &row.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn versions_impl(
    state: &AppState,
    ctx: &Ctx,
    ptype: PackageType,
    id: &str,
) -> ApiResult<VersionList> {
    let row = load_row(state, ctx, id, Some(ptype)).await?;
    let mut conn = state.db.conn().await?;
    let versions = store::versions(&mut conn, &row.id).await?;
    Ok(VersionList {
        versions: versions.into_iter().map(version_info).collect(),
    })
}

pub(super) async fn publish_impl(
    state: &AppState,
    ctx: &Ctx,
    ptype: PackageType,
    id: &str,
    body: CreateVersionBody,
) -> ApiResult<PackageVersionDetail> {
    let row = load_own(state, ctx, id, ptype).await?;
    let mut pkg = svc::draft_package(&row)?;
    let body_tag = body.tag;
    if let Some(v) = body.version {
        let mut manifest = pkg.manifest.clone();
        manifest["version"] = Value::String(v);
        let mut files = pkg.files.clone();
        files.remove("manifest.json");
        pkg = Package::from_parts(manifest, files)?;
    }
    let archive = pkg.to_archive();
    let v = svc::publish(state, &row.id, &pkg, archive, ctx.principal.actor_user_id()).await?;
    if let Some(tag) = &body_tag {
        let mut conn = state.db.conn().await?;
        store::set_dist_tag(&mut conn, &row.id, tag, &v.version, now_ms()).await?;
    }
    version_detail(state, v, ptype).await
}

pub(super) async fn load_version(
    state: &AppState,
    ctx: &Ctx,
    ptype: PackageType,
    id: &str,
    version: &str,
) -> ApiResult<store::Version> {
    let row = load_row(state, ctx, id, Some(ptype)).await?;
    let mut conn = state.db.conn().await?;
    store::version(&mut conn, &row.id, version)
        .await?
        .ok_or_else(|| ApiError::not_found("version"))
}

pub(super) async fn restore_impl(
    state: &AppState,
    ctx: &Ctx,
    ptype: PackageType,
    id: &str,
    version: &str,
) -> ApiResult<Detail> {
    let row = load_own(state, ctx, id, ptype).await?;
    let v = load_version(state, ctx, ptype, id, version).await?;
    let bytes = svc::load_verified(state, &v).await?;
    let pkg = Package::from_archive(&bytes, &corral_afps::Limits::default())?;
    svc::upsert_with_draft(
        state,
        row.org_id.as_ref(),
        &pkg,
        ctx.principal.actor_user_id(),
    )
    .await?;
    get_impl(state, ctx, ptype, id).await
}

pub(super) async fn yank_impl(
    state: &AppState,
    ctx: &Ctx,
    ptype: PackageType,
    id: &str,
    version: &str,
) -> ApiResult<StatusCode> {
    load_own(state, ctx, id, ptype).await?;
    let v = load_version(state, ctx, ptype, id, version).await?;
    let mut tx = state.db.begin().await?;
    store::set_yanked(
        &mut tx,
        &v.package_id,
        &v.version,
        true,
        Some("deleted through the API"),
    )
    .await?;
    // `latest` never points at a yanked version: move it to the highest remaining one.
    let tags = store::dist_tags(&mut tx, &v.package_id).await?;
    if tags
        .iter()
        .any(|t| t.tag == "latest" && t.version == v.version)
    {
        let best = store::versions(&mut tx, &v.package_id)
            .await?
            .into_iter()
            .filter(|x| !x.yanked && x.version != v.version)
            .filter_map(|x| semver::Version::parse(&x.version).ok())
            .filter(|x| x.pre.is_empty())
            .max();
        match best {
            Some(b) => {
                store::set_dist_tag(&mut tx, &v.package_id, "latest", &b.to_string(), now_ms())
                    .await?
            }
            None => {
                store::delete_dist_tag(&mut tx, &v.package_id, "latest").await?;
            }
        }
    }
    tx.commit().await.map_err(corral_store::StoreError::from)?;
    Ok(StatusCode::NO_CONTENT)
}

macro_rules! typed_routes {
    ($module:ident, $ptype:expr, $plural:literal, $tag:literal, $detail:ty,
     [$list:literal, $create:literal, $get:literal, $update:literal, $delete:literal,
      $versions:literal, $publish:literal, $version:literal, $restore:literal, $yank:literal]) => {
        pub mod $module {
            use super::*;

            pub fn router() -> OpenApiRouter<AppState> {
                OpenApiRouter::new()
                    .routes(routes!(list, create))
                    .routes(routes!(get, update, delete))
                    .routes(routes!(versions, publish))
                    .routes(routes!(version, yank))
                    .routes(routes!(restore))
            }

            #[utoipa::path(get, path = concat!("/api/packages/", $plural), tag = $tag, operation_id = $list,
                responses((status = 200, description = "Packages visible to the organization, system ones included", body = PackageList)))]
            pub async fn list(State(state): State<AppState>, ctx: Perm<perms::PackagesRead>) -> ApiResult<Json<PackageList>> {
                Ok(Json(list_impl(&state, &ctx, $ptype).await?))
            }

            #[utoipa::path(post, path = concat!("/api/packages/", $plural), tag = $tag, operation_id = $create,
                request_body = CreatePackageBody,
                responses((status = 201, description = "Package created (as a draft)", body = $detail),
                          (status = 409, description = "Already exists", body = ProblemDetail)))]
            pub async fn create(
                State(state): State<AppState>,
                ctx: Perm<perms::PackagesWrite>,
                Json(body): Json<CreatePackageBody>,
            ) -> ApiResult<(StatusCode, Json<Detail>)> {
                Ok((StatusCode::CREATED, Json(create_impl(&state, &ctx, $ptype, body).await?)))
            }

            #[utoipa::path(get, path = concat!("/api/packages/", $plural, "/{scope}/{name}"), tag = $tag, operation_id = $get,
                params(("scope" = String, Path, description = "Package scope (@org)"), ("name" = String, Path, description = "Package name")),
                responses((status = 200, description = "The package", body = $detail)))]
            pub async fn get(
                State(state): State<AppState>,
                ctx: Perm<perms::PackagesRead>,
                Path((scope, name)): Path<(String, String)>,
            ) -> ApiResult<Json<Detail>> {
                Ok(Json(get_impl(&state, &ctx, $ptype, &package_id(&scope, &name)?).await?))
            }

            #[utoipa::path(put, path = concat!("/api/packages/", $plural, "/{scope}/{name}"), tag = $tag, operation_id = $update,
                params(("scope" = String, Path, description = "Package scope (@org)"), ("name" = String, Path, description = "Package name")),
                request_body = UpdatePackageBody,
                responses((status = 200, description = "Draft updated", body = $detail),
                          (status = 409, description = "Edited concurrently", body = ProblemDetail)))]
            pub async fn update(
                State(state): State<AppState>,
                ctx: Perm<perms::PackagesWrite>,
                Path((scope, name)): Path<(String, String)>,
                Json(body): Json<UpdatePackageBody>,
            ) -> ApiResult<Json<Detail>> {
                Ok(Json(update_impl(&state, &ctx, $ptype, &package_id(&scope, &name)?, body).await?))
            }

            #[utoipa::path(delete, path = concat!("/api/packages/", $plural, "/{scope}/{name}"), tag = $tag, operation_id = $delete,
                params(("scope" = String, Path, description = "Package scope (@org)"), ("name" = String, Path, description = "Package name")),
                responses((status = 204, description = "Deleted"),
                          (status = 409, description = "Used by an agent", body = ProblemDetail)))]
            pub async fn delete(
                State(state): State<AppState>,
                ctx: Perm<perms::PackagesWrite>,
                Path((scope, name)): Path<(String, String)>,
            ) -> ApiResult<StatusCode> {
                delete_impl(&state, &ctx, $ptype, &package_id(&scope, &name)?).await
            }

            #[utoipa::path(get, path = concat!("/api/packages/", $plural, "/{scope}/{name}/versions"), tag = $tag, operation_id = $versions,
                params(("scope" = String, Path, description = "Package scope (@org)"), ("name" = String, Path, description = "Package name")),
                responses((status = 200, description = "Versions, newest first", body = VersionList)))]
            pub async fn versions(
                State(state): State<AppState>,
                ctx: Perm<perms::PackagesRead>,
                Path((scope, name)): Path<(String, String)>,
            ) -> ApiResult<Json<VersionList>> {
                Ok(Json(versions_impl(&state, &ctx, $ptype, &package_id(&scope, &name)?).await?))
            }

            #[utoipa::path(post, path = concat!("/api/packages/", $plural, "/{scope}/{name}/versions"), tag = $tag, operation_id = $publish,
                params(("scope" = String, Path, description = "Package scope (@org)"), ("name" = String, Path, description = "Package name")),
                request_body = CreateVersionBody,
                responses((status = 201, description = "The draft, published as an immutable version", body = PackageVersionDetail),
                          (status = 409, description = "The version exists or does not move forward", body = ProblemDetail)))]
            pub async fn publish(
                State(state): State<AppState>,
                ctx: Perm<perms::PackagesWrite>,
                Path((scope, name)): Path<(String, String)>,
                Json(body): Json<CreateVersionBody>,
            ) -> ApiResult<(StatusCode, Json<PackageVersionDetail>)> {
                let v = publish_impl(&state, &ctx, $ptype, &package_id(&scope, &name)?, body).await?;
                Ok((StatusCode::CREATED, Json(v)))
            }

            #[utoipa::path(get, path = concat!("/api/packages/", $plural, "/{scope}/{name}/versions/{version}"), tag = $tag, operation_id = $version,
                params(("scope" = String, Path, description = "Package scope (@org)"), ("name" = String, Path, description = "Package name"),
                       ("version" = String, Path, description = "Version")),
                responses((status = 200, description = "The version", body = PackageVersionDetail)))]
            pub async fn version(
                State(state): State<AppState>,
                ctx: Perm<perms::PackagesRead>,
                Path((scope, name, version)): Path<(String, String, String)>,
            ) -> ApiResult<Json<PackageVersionDetail>> {
                let v = load_version(&state, &ctx, $ptype, &package_id(&scope, &name)?, &version).await?;
                Ok(Json(version_detail(&state, v, $ptype).await?))
            }

            #[utoipa::path(post, path = concat!("/api/packages/", $plural, "/{scope}/{name}/versions/{version}/restore"), tag = $tag, operation_id = $restore,
                params(("scope" = String, Path, description = "Package scope (@org)"), ("name" = String, Path, description = "Package name"),
                       ("version" = String, Path, description = "Version")),
                responses((status = 200, description = "The draft, now a copy of that version", body = $detail)))]
            pub async fn restore(
                State(state): State<AppState>,
                ctx: Perm<perms::PackagesWrite>,
                Path((scope, name, version)): Path<(String, String, String)>,
            ) -> ApiResult<Json<Detail>> {
                Ok(Json(restore_impl(&state, &ctx, $ptype, &package_id(&scope, &name)?, &version).await?))
            }

            #[utoipa::path(delete, path = concat!("/api/packages/", $plural, "/{scope}/{name}/versions/{version}"), tag = $tag, operation_id = $yank,
                params(("scope" = String, Path, description = "Package scope (@org)"), ("name" = String, Path, description = "Package name"),
                       ("version" = String, Path, description = "Version")),
                responses((status = 204, description = "Yanked: kept for exact references, never picked by a range")))]
            pub async fn yank(
                State(state): State<AppState>,
                ctx: Perm<perms::PackagesWrite>,
                Path((scope, name, version)): Path<(String, String, String)>,
            ) -> ApiResult<StatusCode> {
                yank_impl(&state, &ctx, $ptype, &package_id(&scope, &name)?, &version).await
            }
        }
    };
}

typed_routes!(
    agents,
    PackageType::Agent,
    "agents",
    "Agents",
    AgentDetail,
    [
        "listAgentPackages",
        "createAgent",
        "getAgentPackage",
        "updateAgent",
        "deleteAgent",
        "listAgentVersions",
        "createAgentVersion",
        "getAgentVersionDetail",
        "restoreAgentVersion",
        "deleteAgentVersion"
    ]
);
typed_routes!(
    skills,
    PackageType::Skill,
    "skills",
    "Skills",
    PackageDetail,
    [
        "listSkills",
        "createSkill",
        "getSkill",
        "updateSkill",
        "deleteSkill",
        "listSkillVersions",
        "createSkillVersion",
        "getSkillVersionDetail",
        "restoreSkillVersion",
        "deleteSkillVersion"
    ]
);
typed_routes!(
    integrations,
    PackageType::Integration,
    "integrations",
    "Integration Packages",
    PackageDetail,
    [
        "listIntegrationPackages",
        "createIntegrationPackage",
        "getIntegrationPackage",
        "updateIntegrationPackage",
        "deleteIntegrationPackage",
        "listIntegrationPackageVersions",
        "createIntegrationPackageVersion",
        "getIntegrationPackageVersionDetail",
        "restoreIntegrationPackageVersion",
        "deleteIntegrationPackageVersion"
    ]
);
typed_routes!(
    mcp_servers,
    PackageType::McpServer,
    "mcp-servers",
    "MCP Servers",
    PackageDetail,
    [
        "listMcpServerPackages",
        "createMcpServerPackage",
        "getMcpServerPackage",
        "updateMcpServerPackage",
        "deleteMcpServerPackage",
        "listMcpServerPackageVersions",
        "createMcpServerPackageVersion",
        "getMcpServerPackageVersionDetail",
        "restoreMcpServerPackageVersion",
        "deleteMcpServerPackageVersion"
    ]
);
