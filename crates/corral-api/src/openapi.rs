//! The contract: the OpenAPI document generated from the routes, with the statuses
//! the pipeline itself can answer added to every operation.

use axum::http::Method;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::router::groups;
use crate::{auth, error, ratelimit};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Corral API",
        description = "Corral runs autonomous AI agents in throw-away sandboxes. This contract is generated from the server's code; it is compatible with Appstrate's API.",
        license(name = "Apache-2.0")
    ),
    components(schemas(error::ProblemDetail, error::FieldError)),
    modifiers(&SecuritySchemes),
    security(("bearerApiKey" = []), ("cookieAuth" = [])),
    tags(
        (name = "Auth", description = "Sign-up, sign-in, sessions"),
        (name = "Organizations", description = "Organizations, members, invitations, settings"),
        (name = "Profile", description = "The signed-in user"),
        (name = "Applications", description = "Applications inside an organization"),
        (name = "End Users", description = "External users of an application"),
        (name = "API Keys", description = "API keys of an application"),
        (name = "Health", description = "Liveness and readiness"),
        (name = "Packages", description = "AFPS package archives, bundles, files and the library"),
        (name = "Agents", description = "Agent packages"),
        (name = "Skills", description = "Skill packages"),
        (name = "Integration Packages", description = "Integration packages"),
        (name = "MCP Servers", description = "MCP server packages"),
        (name = "Runs", description = "Running agents in sandboxes, and what runs report"),
        (name = "Integrations", description = "Integration connections: credential fields, OAuth2 with PKCE, OAuth clients"),
        (name = "Models", description = "The organization's models, its default, test calls"),
        (name = "Model Provider Credentials", description = "LLM provider keys (write-only) and model discovery"),
        (name = "Notifications", description = "What the caller's finished runs left unread"),
        (name = "Uploads", description = "Files staged for a run's file inputs"),
        (name = "Documents", description = "Stored files: consumed uploads and agent outputs"),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        openapi.info.version = env!("CARGO_PKG_VERSION").to_owned();
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearerApiKey",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("API key: `Authorization: Bearer ask_…`. The org and application come from the key."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "bearerExecToken",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("Run token for container-to-host internal routes: `Authorization: Bearer rt_…`, valid while its run is active."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "cookieAuth",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                auth::session::COOKIE,
                "Session cookie. Org-scoped routes need `X-Org-Id`, app-scoped routes `X-App-Id`.",
            ))),
        );
    }
}

/// Re-labels a `ProblemDetail` body declared as `application/json` (utoipa's default)
/// as `application/problem+json`, the type every error is served with.
fn problem_json(r: &mut utoipa::openapi::Response) {
    let is_problem = |c: &utoipa::openapi::Content| matches!(&c.schema, Some(utoipa::openapi::RefOr::Ref(r)) if r.ref_location.ends_with("/ProblemDetail"));
    if r.content.get("application/json").is_some_and(is_problem) {
        if let Some(c) = r.content.shift_remove("application/json") {
            r.content.insert("application/problem+json".to_owned(), c);
        }
    }
}

/// Operations that need no authentication.
pub(crate) const PUBLIC_OPERATIONS: &[&str] = &[
    "/health",
    "/api/auth/sign-up/email",
    "/api/auth/sign-in/email",
    "/api/auth/get-session",
    "/api/auth/sign-out",
    "/api/auth/bootstrap/redeem",
    "/invite/{token}/info",
    "/api/runs/{runId}/events",
    "/api/runs/{runId}/events/heartbeat",
    "/api/runs/{runId}/events/finalize",
    "/api/integrations/callback",
    "/api/integrations/connect/start",
    "/api/integrations/connect/context",
    "/api/integrations/connect/submit",
];

/// Documents the problem responses the pipeline itself can give on every operation
/// (bad headers, body limit, media type, rate limit, gates, internal errors), so the
/// contract lists every status a client can see, not only the handler's own.
pub(crate) struct PipelineResponses;

impl utoipa::Modify for PipelineResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::HttpMethod;
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let problem = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/problem+json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ProblemDetail")))
                        .build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let ops = [
                (HttpMethod::Get, &mut item.get),
                (HttpMethod::Post, &mut item.post),
                (HttpMethod::Put, &mut item.put),
                (HttpMethod::Patch, &mut item.patch),
                (HttpMethod::Delete, &mut item.delete),
            ];
            for (method, op) in ops {
                let Some(op) = op else { continue };
                let m: Method = match method {
                    HttpMethod::Get => Method::GET,
                    HttpMethod::Post => Method::POST,
                    HttpMethod::Put => Method::PUT,
                    HttpMethod::Patch => Method::PATCH,
                    _ => Method::DELETE,
                };
                let public = PUBLIC_OPERATIONS.contains(&path.as_str());
                if crate::json::OPTIONAL_BODIES.contains(&(m.as_str(), path.as_str())) {
                    if let Some(body) = op.request_body.as_mut() {
                        body.required = Some(utoipa::openapi::Required::False);
                    }
                }
                let mut add = |status: &str, description: &str| {
                    op.responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| problem(description).into());
                };
                // Any parameter or body can be refused (NUL in a path, a query or a
                // body string is a 400 on every route).
                let takes_input = op.request_body.is_some()
                    || path.contains('{')
                    || op.parameters.as_ref().is_some_and(|p| !p.is_empty());
                if !public || takes_input {
                    add("400", "Invalid request: a malformed header, an unsupported API version, an invalid parameter or body");
                }
                if !public {
                    add("401", "Missing or invalid authentication");
                    add(
                        "403",
                        "Insufficient permissions or wrong organization/application context",
                    );
                }
                if op.request_body.is_some() {
                    add("413", "The request body is larger than the limit");
                    add("415", "The request body must be application/json");
                }
                if ratelimit::rule_for(&m, path).is_some() || path.starts_with("/api/auth/sign-") {
                    add("429", "Rate limited");
                }
                if path.contains('{') || !public {
                    add(
                        "404",
                        "Not found, or not visible to this caller (also an unknown X-App-Id)",
                    );
                }
                add("414", "The request URI is longer than 8 KiB");
                add("431", "The request's header fields are larger than 32 KiB");
                add("500", "Unexpected server error");
                add(
                    "503",
                    "Starting, shutting down, or the database is unavailable",
                );
                // Every problem is served as problem+json: handlers' own error
                // responses name the body alone.
                for r in op.responses.responses.values_mut() {
                    if let utoipa::openapi::RefOr::T(r) = r {
                        problem_json(r);
                    }
                }
            }
        }
    }
}

/// The OpenAPI document of every route the server serves.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut router = OpenApiRouter::with_openapi(ApiDoc::openapi());
    for (_, g) in groups() {
        router = router.merge(g);
    }
    let mut doc = router.split_for_parts().1;
    // After the merge: the modifier needs every path in place.
    utoipa::Modify::modify(&PipelineResponses, &mut doc);
    doc
}

/// Routes that are deliberately not part of the contract (the contract itself, its
/// docs page). Checked by a test: every other route must be in `/api/openapi.json`.
pub const UNDOCUMENTED_ROUTES: &[&str] = &[
    // The docs page's script (the page and the contract are documented).
    "/api/docs/docs.js",
    // On the separate metrics listener, not the API.
    "/metrics",
];
