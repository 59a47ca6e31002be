//! OAuth 2.0 for integrations (the `oauth2` crate): RFC 8414 metadata discovery,
//! the authorization code grant with PKCE (S256), the RFC 8707 `resource`
//! indicator, and refresh. Every call to an authorization server goes through the
//! webhook SSRF guard (no redirects, no proxy, no private address unless in
//! development mode on loopback).

use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_store::integrations as store;
use corral_webhooks::ssrf::{self, GuardedResolver, Policy};
use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError,
    Scope, TokenResponse, TokenUrl,
};
use serde::Deserialize;

use crate::integrations::AuthSpec;
use crate::Connect;

type Client = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

const TIMEOUT: Duration = Duration::from_secs(15);
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum OauthError {
    #[error("the authorization server refused the grant (invalid_grant): {0}")]
    InvalidGrant(String),
    #[error("{0}")]
    Config(String),
    #[error("authorization server: {0}")]
    Server(String),
    #[error("cannot reach the authorization server: {0}")]
    Network(String),
}

/// Tokens as the token endpoint answered.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub token_type: Option<String>,
    pub expires_in_ms: Option<i64>,
    pub scopes: Option<Vec<String>>,
}

/// The endpoints of an auth: from the manifest, else discovered from its issuer.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub authorization: String,
    pub token: String,
    pub code_challenge_methods: Option<Vec<String>>,
}

/// One guarded client per policy for the server.
fn http(state: &Connect, policy: Policy) -> Result<reqwest::Client, OauthError> {
    let strict = policy == Policy::Strict;
    let map = &state.oauth_clients;
    if let Some(c) = map.get(&strict) {
        return Ok(c.clone());
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        // The oauth2 crate's advice too: a redirect could lead past the URL check.
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(GuardedResolver::new(policy)))
        .timeout(TIMEOUT)
        .user_agent(concat!("Corral/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| OauthError::Config(e.to_string()))?;
    map.insert(strict, client.clone());
    Ok(client)
}

fn check(url: &str, policy: Policy, what: &str) -> Result<(), OauthError> {
    ssrf::check_url(url, policy)
        .map(|_| ())
        .map_err(|e| OauthError::Config(format!("{what} {url} is refused: {e}")))
}

#[derive(Deserialize)]
struct Metadata {
    issuer: String,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    code_challenge_methods_supported: Option<Vec<String>>,
}

/// RFC 8414 §3.1: the well-known path is inserted between the host and the
/// issuer's path. OpenID Connect discovery is tried second.
fn discovery_urls(issuer: &str) -> Result<Vec<String>, OauthError> {
    let url = url::Url::parse(issuer)
        .map_err(|e| OauthError::Config(format!("issuer {issuer} is not a URL: {e}")))?;
    let origin = url.origin().ascii_serialization();
    let path = url.path().trim_end_matches('/');
    Ok(vec![
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
        format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        ),
    ])
}

pub async fn endpoints(state: &Connect, spec: &AuthSpec) -> Result<Endpoints, OauthError> {
    if let (Some(a), Some(t)) = (&spec.authorization_endpoint, &spec.token_endpoint) {
        return Ok(Endpoints {
            authorization: a.clone(),
            token: t.clone(),
            code_challenge_methods: None,
        });
    }
    let issuer = spec.issuer.as_deref().ok_or_else(|| {
        OauthError::Config(format!(
            "auth {} declares neither endpoints nor an issuer to discover them from",
            spec.key
        ))
    })?;
    let cache = &state.discovery;
    if let Some(hit) = cache.get(issuer) {
        if hit.0.elapsed() < DISCOVERY_TTL {
            return Ok(hit.1.clone());
        }
    }
    let policy = state.policy();
    let client = http(state, policy)?;
    let mut last = String::new();
    for url in discovery_urls(issuer)? {
        check(&url, policy, "the discovery URL")?;
        let resp = match client.get(&url).send().await {
            Ok(r) => r,
            Err(e) => {
                last = e.without_url().to_string();
                continue;
            }
        };
        if !resp.status().is_success() {
            last = format!("{url} answered {}", resp.status());
            continue;
        }
        let meta: Metadata = resp
            .json()
            .await
            .map_err(|e| OauthError::Server(format!("metadata at {url} is invalid: {e}")))?;
        // RFC 8414 §3.3: the metadata must be about the issuer asked for.
        if meta.issuer.trim_end_matches('/') != issuer.trim_end_matches('/') {
            return Err(OauthError::Server(format!(
                "metadata at {url} is for issuer {}, not {issuer}",
                meta.issuer
            )));
        }
        let endpoints = Endpoints {
            authorization: spec
                .authorization_endpoint
                .clone()
                .or(meta.authorization_endpoint)
                .ok_or_else(|| {
                    OauthError::Server("metadata has no authorization_endpoint".into())
                })?,
            token: spec
                .token_endpoint
                .clone()
                .or(meta.token_endpoint)
                .ok_or_else(|| OauthError::Server("metadata has no token_endpoint".into()))?,
            code_challenge_methods: meta.code_challenge_methods_supported,
        };
        cache.insert(issuer.to_owned(), (Instant::now(), endpoints.clone()));
        return Ok(endpoints);
    }
    Err(OauthError::Network(format!(
        "no authorization server metadata for {issuer}: {last}"
    )))
}

/// The client as registered by the application, with its secret opened.
pub struct RegisteredClient {
    pub id: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub auth_method: Option<String>,
    pub redirect_uri: Option<String>,
}

impl RegisteredClient {
    pub fn open(state: &Connect, c: &store::OauthClient) -> Result<Self, OauthError> {
        let client_secret = c
            .client_secret
            .as_deref()
            .map(|s| {
                state
                    .keyring
                    .open_str(s, &crate::integrations::client_secret_aad(&c.id))
                    .map_err(|e| OauthError::Config(format!("cannot open the client secret: {e}")))
            })
            .transpose()?;
        Ok(RegisteredClient {
            id: c.id.clone(),
            client_id: c.client_id.clone(),
            client_secret,
            auth_method: c.token_endpoint_auth_method.clone(),
            redirect_uri: c.redirect_uri.clone(),
        })
    }
}

fn client(
    spec: &AuthSpec,
    reg: &RegisteredClient,
    endpoints: &Endpoints,
    redirect_uri: &str,
    policy: Policy,
) -> Result<Client, OauthError> {
    check(
        &endpoints.authorization,
        policy,
        "the authorization endpoint",
    )?;
    check(&endpoints.token, policy, "the token endpoint")?;
    let method = reg
        .auth_method
        .as_deref()
        .or(spec.token_endpoint_auth_method.as_deref())
        .unwrap_or("client_secret_basic");
    let mut c = BasicClient::new(ClientId::new(reg.client_id.clone()))
        .set_auth_uri(
            AuthUrl::new(endpoints.authorization.clone())
                .map_err(|e| OauthError::Config(e.to_string()))?,
        )
        .set_token_uri(
            TokenUrl::new(endpoints.token.clone())
                .map_err(|e| OauthError::Config(e.to_string()))?,
        )
        .set_redirect_uri(
            RedirectUrl::new(redirect_uri.to_owned())
                .map_err(|e| OauthError::Config(e.to_string()))?,
        )
        .set_auth_type(if method == "client_secret_basic" {
            AuthType::BasicAuth
        } else {
            AuthType::RequestBody
        });
    if method != "none" {
        if let Some(secret) = &reg.client_secret {
            c = c.set_client_secret(ClientSecret::new(secret.clone()));
        }
    }
    Ok(c)
}

/// A new authorization: the URL to send the user to, the state and the PKCE
/// verifier to keep until the callback.
pub struct Authorization {
    pub url: String,
    pub state: String,
    pub verifier: String,
}

pub fn authorize(
    spec: &AuthSpec,
    reg: &RegisteredClient,
    endpoints: &Endpoints,
    redirect_uri: &str,
    scopes: &[String],
    policy: Policy,
) -> Result<Authorization, OauthError> {
    if let Some(methods) = &endpoints.code_challenge_methods {
        if !methods.iter().any(|m| m == "S256") {
            return Err(OauthError::Config(
                "the authorization server does not support PKCE with S256".into(),
            ));
        }
    }
    let c = client(spec, reg, endpoints, redirect_uri, policy)?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut req = c
        .authorize_url(CsrfToken::new_random)
        .set_pkce_challenge(challenge)
        .add_scopes(scopes.iter().cloned().map(Scope::new));
    if let Some(resource) = &spec.resource {
        req = req.add_extra_param("resource", resource.clone());
    }
    for (k, v) in &spec.authorization_params {
        let v = match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        req = req.add_extra_param(k.clone(), v);
    }
    let (url, state) = req.url();
    Ok(Authorization {
        url: url.to_string(),
        state: state.secret().clone(),
        verifier: verifier.secret().clone(),
    })
}

fn tokens(r: &oauth2::basic::BasicTokenResponse) -> Tokens {
    Tokens {
        access_token: r.access_token().secret().clone(),
        refresh_token: r.refresh_token().map(|t| t.secret().clone()),
        token_type: Some(r.token_type().as_ref().to_owned()),
        expires_in_ms: r.expires_in().map(|d| d.as_millis() as i64),
        scopes: r
            .scopes()
            .map(|s| s.iter().map(|x| x.as_ref().to_owned()).collect()),
    }
}

fn classify<RE: std::error::Error + 'static>(
    e: RequestTokenError<RE, oauth2::basic::BasicErrorResponse>,
) -> OauthError {
    match e {
        RequestTokenError::ServerResponse(r) => {
            let detail = r.error_description().cloned().unwrap_or_default();
            if *r.error() == BasicErrorResponseType::InvalidGrant {
                OauthError::InvalidGrant(detail)
            } else {
                OauthError::Server(format!("{} {detail}", r.error()).trim().to_owned())
            }
        }
        RequestTokenError::Request(e) => OauthError::Network(e.to_string()),
        RequestTokenError::Parse(e, _) => {
            OauthError::Server(format!("unreadable token response: {e}"))
        }
        RequestTokenError::Other(s) => OauthError::Server(s),
    }
}

pub async fn exchange(
    state: &Connect,
    spec: &AuthSpec,
    reg: &RegisteredClient,
    redirect_uri: &str,
    code: &str,
    verifier: &str,
) -> Result<Tokens, OauthError> {
    let policy = state.policy();
    let endpoints = endpoints(state, spec).await?;
    let c = client(spec, reg, &endpoints, redirect_uri, policy)?;
    let http = http(state, policy)?;
    let mut req = c
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()));
    if let Some(resource) = &spec.resource {
        req = req.add_extra_param("resource", resource.clone());
    }
    req.request_async(&http)
        .await
        .map(|r| tokens(&r))
        .map_err(classify)
}

/// Refreshes a connection's access token with the client that minted it.
pub async fn refresh(
    state: &Connect,
    c: &store::Connection,
    refresh_token: &str,
) -> Result<Tokens, OauthError> {
    let manifest = crate::integrations::manifest(state, &c.org_id, &c.package_id)
        .await
        .map_err(|e| OauthError::Config(format!("the integration is unavailable: {}", e.detail)))?;
    let specs = crate::integrations::auths(&manifest);
    let spec = crate::integrations::auth(&specs, &c.auth_key)
        .ok_or_else(|| OauthError::Config(format!("auth {} is no longer declared", c.auth_key)))?;
    let client_ref = c.client_ref.as_deref().ok_or_else(|| {
        OauthError::Config("the OAuth client that minted this connection was deleted".into())
    })?;
    let row = {
        let mut conn = state
            .db
            .conn()
            .await
            .map_err(|e| OauthError::Config(e.to_string()))?;
        store::client_by_id(&mut conn, client_ref)
            .await
            .map_err(|e| OauthError::Config(e.to_string()))?
            .ok_or_else(|| OauthError::Config("the OAuth client was deleted".into()))?
    };
    let reg = RegisteredClient::open(state, &row)?;
    let redirect = reg
        .redirect_uri
        .clone()
        .unwrap_or_else(|| default_redirect_uri(state));
    let policy = state.policy();
    let endpoints = endpoints(state, spec).await?;
    let client = client(spec, &reg, &endpoints, &redirect, policy)?;
    let http = http(state, policy)?;
    let token = RefreshToken::new(refresh_token.to_owned());
    let mut req = client.exchange_refresh_token(&token);
    if let Some(resource) = &spec.resource {
        req = req.add_extra_param("resource", resource.clone());
    }
    req.request_async(&http)
        .await
        .map(|r| tokens(&r))
        .map_err(classify)
}

/// `{CORRAL_PUBLIC_URL}/api/integrations/callback`.
pub fn default_redirect_uri(state: &Connect) -> String {
    format!(
        "{}/api/integrations/callback",
        state.config.public_url.trim_end_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_inserts_the_well_known_segment_before_the_issuer_path() {
        assert_eq!(
            discovery_urls("https://as.example.com/tenant/1").unwrap(),
            vec![
                "https://as.example.com/.well-known/oauth-authorization-server/tenant/1",
                "https://as.example.com/tenant/1/.well-known/openid-configuration"
            ]
        );
        assert_eq!(
            discovery_urls("https://as.example.com/").unwrap()[0],
            "https://as.example.com/.well-known/oauth-authorization-server"
        );
    }
}
