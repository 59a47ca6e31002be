//! `login`, `logout`, `whoami`.

use anyhow::{anyhow, Context as _, Result};
use clap::Args;
use serde_json::{json, Value};

use crate::client::{env_nonempty, Api, ApiError, Context};
use crate::config::{normalize_url, profile_name_for, ConfigFile, Credential, Profile};
use crate::output::{paint, print_json, stdin_tty, Color, Stream};
use crate::{exit, Global};

pub const LOGIN_HELP: &str = "Examples:\n  corral login http://localhost:3000                 # prompts for email and password\n  corral login https://corral.example.com --email ada@example.com\n  echo \"$PASSWORD\" | corral login URL --email ada@example.com --password-stdin\n  corral login URL --api-key ask_…                   # an API key (implies its org and app)\n  CORRAL_URL=… CORRAL_EMAIL=… CORRAL_PASSWORD=… corral login\n\nThe profile is named after the server (host:port) unless --profile names it, and\nbecomes the current one. It is stored in $XDG_CONFIG_HOME/corral/config.toml\n(mode 0600) and holds the session token or API key, never the password.";

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Server URL (default: CORRAL_URL, else the current profile's).
    pub url: Option<String>,
    /// Account email (prompted on a terminal).
    #[arg(long, env = "CORRAL_EMAIL")]
    pub email: Option<String>,
    /// Read the password from the first line of stdin.
    #[arg(long)]
    pub password_stdin: bool,
    /// Log in with an API key instead of a password.
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Organization to select (id or slug; default: the first).
    #[arg(long)]
    pub org: Option<String>,
    /// Application to select (id or name; default: the org's default).
    #[arg(long)]
    pub app: Option<String>,
}

fn prompt_line(label: &str) -> Result<String> {
    use std::io::Write as _;
    eprint!("{label}");
    std::io::stderr().flush().ok();
    let mut s = String::new();
    std::io::stdin().read_line(&mut s)?;
    Ok(s.trim().to_owned())
}

pub async fn login(global: &Global, a: LoginArgs) -> Result<u8> {
    let mut cfg = ConfigFile::load()?;
    let raw_url = a
        .url
        .clone()
        .or_else(|| env_nonempty("CORRAL_URL"))
        .or_else(|| {
            cfg.current
                .as_ref()
                .and_then(|c| cfg.profiles.get(c))
                .map(|p| p.url.clone())
        })
        .ok_or_else(|| anyhow!("which server? `corral login <url>` (or set CORRAL_URL)"))?;
    let url = normalize_url(&raw_url)?;
    let name = global
        .profile
        .clone()
        .unwrap_or_else(|| profile_name_for(&url));
    let interactive = stdin_tty();
    let api_key = a.api_key.clone().or_else(|| {
        a.email
            .is_none()
            .then(|| env_nonempty("CORRAL_API_KEY"))
            .flatten()
    });

    let mut profile = match api_key {
        Some(key) => login_with_key(&url, key).await?,
        None => {
            let email = match a.email.clone() {
                Some(e) => e,
                None if interactive => prompt_line("Email: ")?,
                None => anyhow::bail!(
                    "no terminal to prompt on: pass --email (or CORRAL_EMAIL) and the password with --password-stdin or CORRAL_PASSWORD, or use --api-key"
                ),
            };
            let password = if a.password_stdin {
                let mut s = String::new();
                std::io::stdin()
                    .read_line(&mut s)
                    .context("cannot read the password from stdin")?;
                s.trim_end_matches(['\r', '\n']).to_owned()
            } else if let Some(p) = env_nonempty("CORRAL_PASSWORD") {
                p
            } else if interactive {
                rpassword::prompt_password("Password: ").context("cannot read the password")?
            } else {
                anyhow::bail!(
                    "no terminal to prompt on: pass the password with --password-stdin or CORRAL_PASSWORD"
                );
            };
            login_with_password(&url, &email, &password).await?
        }
    };
    if matches!(profile.credential, Credential::Session { .. }) {
        select_org_app(&mut profile, a.org.as_deref(), a.app.as_deref()).await?;
    }
    cfg.profiles.insert(name.clone(), profile.clone());
    cfg.current = Some(name.clone());
    let path = cfg.save()?;
    if global.json {
        print_json(&json!({
            "profile": name,
            "url": profile.url,
            "auth": profile.credential.kind(),
            "email": profile.email,
            "orgId": profile.org_id,
            "appId": profile.app_id,
            "configPath": path,
        }));
    } else {
        let who = profile
            .email
            .clone()
            .unwrap_or_else(|| "an API key".to_owned());
        eprintln!(
            "{} Logged in to {} as {} (profile {name})",
            paint(Stream::Err, Color::Green, "✓"),
            profile.url,
            who
        );
        if let Credential::Session { .. } = profile.credential {
            match (&profile.org_id, &profile.app_id) {
                (Some(o), Some(app)) => eprintln!("  org {o}, app {app}"),
                (Some(o), None) => eprintln!("  org {o} (no application)"),
                _ => eprintln!("  no organization yet: create one in the dashboard or with `corral api POST /api/orgs -d '{{\"name\":\"…\"}}'`"),
            }
        }
    }
    Ok(exit::OK)
}

fn bare_api(url: &str, credential: Option<Credential>) -> Result<Api> {
    Api::new(Context {
        url: url.to_owned(),
        credential,
        org_id: None,
        app_id: None,
        profile: None,
    })
}

async fn login_with_password(url: &str, email: &str, password: &str) -> Result<Profile> {
    let api = bare_api(url, None)?;
    let resp = api
        .post(
            "/api/auth/sign-in/email",
            &json!({ "email": email, "password": password }),
        )
        .await
        .context("sign-in failed")?;
    let token = resp
        .get("token")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("the server returned no session token"))?;
    Ok(Profile {
        url: url.to_owned(),
        credential: Credential::Session {
            token: token.to_owned(),
        },
        email: resp
            .pointer("/user/email")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| Some(email.to_owned())),
        org_id: None,
        app_id: None,
    })
}

async fn login_with_key(url: &str, key: String) -> Result<Profile> {
    let api = bare_api(url, Some(Credential::ApiKey { key: key.clone() }))?;
    // Any org route checks the key; a 403 (a key without that scope) still proves it.
    match api.get("/api/applications").await {
        Ok(_) => {}
        Err(e)
            if e.downcast_ref::<ApiError>()
                .is_some_and(|a| a.status == 403) => {}
        Err(e) => return Err(e.context("the API key was refused")),
    }
    Ok(Profile {
        url: url.to_owned(),
        credential: Credential::ApiKey { key },
        email: None,
        org_id: None,
        app_id: None,
    })
}

/// Picks the org (`want` id or slug, else the first) and its app (`want_app` id or
/// name, else the default).
pub async fn select_org_app(
    profile: &mut Profile,
    want: Option<&str>,
    want_app: Option<&str>,
) -> Result<()> {
    let api = bare_api(&profile.url, Some(profile.credential.clone()))?;
    let orgs = super::list_of(&api.get("/api/me/orgs").await?);
    let org = match want {
        Some(w) => Some(
            orgs.iter()
                .find(|o| o["id"] == w || o["slug"] == w)
                .ok_or_else(|| anyhow!("no organization {w:?} among yours"))?,
        ),
        None => orgs.first(),
    };
    let Some(org) = org else {
        profile.org_id = None;
        profile.app_id = None;
        return Ok(());
    };
    let org_id = org["id"].as_str().unwrap_or_default().to_owned();
    profile.org_id = Some(org_id.clone());
    profile.app_id = pick_app(&api, &org_id, want_app).await?;
    Ok(())
}

/// The application `want` (id or name) of the org, else its default one.
pub async fn pick_app(api: &Api, org_id: &str, want: Option<&str>) -> Result<Option<String>> {
    let rb = api
        .request(reqwest::Method::GET, "/api/applications")
        .header("x-org-id", org_id);
    let apps = super::list_of(&api.json(rb).await?);
    let app = match want {
        Some(w) => Some(
            apps.iter()
                .find(|a| a["id"] == w || a["name"] == w)
                .ok_or_else(|| anyhow!("no application {w:?} in organization {org_id}"))?,
        ),
        None => apps
            .iter()
            .find(|a| a["isDefault"] == true)
            .or(apps.first()),
    };
    Ok(app.and_then(|a| a["id"].as_str()).map(str::to_owned))
}

pub async fn logout(global: &Global) -> Result<u8> {
    let mut cfg = ConfigFile::load()?;
    let ctx = Context::resolve(global, &cfg)?;
    let Some(name) = ctx.profile.clone() else {
        anyhow::bail!("no saved profile to log out of (CORRAL_API_KEY is not stored)");
    };
    let profile = cfg
        .profiles
        .get(&name)
        .cloned()
        .ok_or_else(|| anyhow!("no profile {name:?}"))?;
    if let Credential::Session { .. } = profile.credential {
        let api = bare_api(&profile.url, Some(profile.credential.clone()))?;
        // An expired session (401) or an unreachable server: forget it anyway.
        if let Err(e) = api.post("/api/auth/sign-out", &json!({})).await {
            if e.downcast_ref::<ApiError>().is_none_or(|a| a.status != 401) {
                eprintln!("warning: could not end the session on the server: {e:#}");
            }
        }
    }
    cfg.profiles.remove(&name);
    if cfg.current.as_deref() == Some(name.as_str()) {
        cfg.current = cfg.profiles.keys().next().cloned();
    }
    cfg.save()?;
    if global.json {
        print_json(&json!({ "profile": name, "loggedOut": true }));
    } else {
        eprintln!("Logged out of {} (profile {name} removed)", profile.url);
    }
    Ok(exit::OK)
}

pub async fn whoami(global: &Global) -> Result<u8> {
    let api = super::api(global)?;
    let ctx = &api.ctx;
    let mut out = json!({
        "profile": ctx.profile,
        "url": ctx.url,
        "auth": ctx.credential.as_ref().map(Credential::kind),
        "user": null,
        "orgId": ctx.org_id,
        "appId": ctx.app_id,
    });
    match &ctx.credential {
        None => anyhow::bail!("not logged in: run `corral login`"),
        Some(Credential::Session { .. }) => {
            let s = api.get("/api/auth/get-session").await?;
            if s.is_null() || s["user"].is_null() {
                anyhow::bail!("the session has expired: run `corral login` again");
            }
            out["user"] = json!({
                "id": s["user"]["id"], "email": s["user"]["email"], "name": s["user"]["name"],
            });
        }
        Some(Credential::ApiKey { key }) => {
            api.get("/api/applications")
                .await
                .or_else(|e| match e.downcast_ref::<ApiError>() {
                    Some(a) if a.status == 403 => Ok(Value::Null),
                    _ => Err(e),
                })?;
            out["apiKeyPrefix"] = json!(key.chars().take(12).collect::<String>());
        }
    }
    if global.json {
        print_json(&out);
        return Ok(exit::OK);
    }
    let who = match &ctx.credential {
        Some(Credential::Session { .. }) => format!(
            "{} <{}>",
            out["user"]["name"].as_str().unwrap_or(""),
            out["user"]["email"].as_str().unwrap_or("")
        ),
        _ => format!(
            "API key {}…",
            out["apiKeyPrefix"].as_str().unwrap_or_default()
        ),
    };
    println!("{who}");
    println!("server   {}", ctx.url);
    if let Some(p) = &ctx.profile {
        println!("profile  {p}");
    }
    if let Some(o) = &ctx.org_id {
        println!("org      {o}");
    }
    if let Some(a) = &ctx.app_id {
        println!("app      {a}");
    }
    Ok(exit::OK)
}
