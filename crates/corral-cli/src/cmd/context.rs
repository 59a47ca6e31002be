//! `org list|switch`, `app list|switch`: the org and app a session works in, stored
//! in the profile and sent as `X-Org-Id` / `X-App-Id` on every call.

use anyhow::{anyhow, Result};
use clap::Subcommand;
use serde_json::{json, Value};

use crate::client::Context;
use crate::config::{ConfigFile, Credential, Profile};
use crate::output::{field, print_json, short_time, Table};
use crate::{exit, Global};

#[derive(Subcommand, Debug)]
pub enum OrgCmd {
    /// Your organizations (`*` marks the selected one).
    #[command(after_help = "Examples:\n  corral org list\n  corral org list --json")]
    List,
    /// Select an organization (id or slug) and its default application.
    #[command(after_help = "Examples:\n  corral org switch acme\n  corral org switch org_0193…")]
    Switch {
        /// Organization id or slug.
        org: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum AppCmd {
    /// Applications of the current organization (`*` marks the selected one).
    #[command(after_help = "Examples:\n  corral app list\n  corral app list --json")]
    List,
    /// Select an application (id or name).
    #[command(
        after_help = "Examples:\n  corral app switch Production\n  corral app switch app_0193…"
    )]
    Switch {
        /// Application id or name.
        app: String,
    },
}

/// The profile name and a copy of it, for a session (org/app selection needs one).
fn session_profile(global: &Global, cfg: &ConfigFile) -> Result<String> {
    let ctx = Context::resolve(global, cfg)?;
    match (&ctx.credential, &ctx.profile) {
        (Some(Credential::Session { .. }), Some(name)) => Ok(name.clone()),
        (Some(Credential::ApiKey { .. }), _) => Err(anyhow!(
            "an API key is bound to one org and app; `corral login` with an email to switch"
        )),
        _ => Err(anyhow!("not logged in: run `corral login`")),
    }
}

/// Stores a profile's new org/app selection and reports it.
fn save_selection(
    global: &Global,
    mut cfg: ConfigFile,
    name: String,
    profile: Profile,
    message: &str,
) -> Result<u8> {
    let (org_id, app_id) = (profile.org_id.clone(), profile.app_id.clone());
    cfg.profiles.insert(name.clone(), profile);
    cfg.save()?;
    if global.json {
        print_json(&json!({"profile": name, "orgId": org_id, "appId": app_id}));
    } else {
        eprintln!("{message}");
    }
    Ok(exit::OK)
}

pub async fn org(global: &Global, c: OrgCmd) -> Result<u8> {
    match c {
        OrgCmd::List => {
            let api = super::api(global)?;
            let orgs = super::list_of(&api.get("/api/me/orgs").await?);
            if global.json {
                print_json(&Value::Array(orgs));
                return Ok(exit::OK);
            }
            let mut t = Table::new(&["", "ID", "SLUG", "NAME", "ROLE"]);
            for o in &orgs {
                let current = api.ctx.org_id.as_deref() == o["id"].as_str();
                t.row(vec![
                    if current { "*".into() } else { String::new() },
                    field(o, "id"),
                    field(o, "slug"),
                    field(o, "name"),
                    field(o, "role"),
                ]);
            }
            t.print("no organizations");
            Ok(exit::OK)
        }
        OrgCmd::Switch { org } => {
            let cfg = ConfigFile::load()?;
            let name = session_profile(global, &cfg)?;
            let mut profile = cfg.profiles[&name].clone();
            super::auth::select_org_app(&mut profile, Some(&org), None).await?;
            let message = format!(
                "Switched to org {} (app {})",
                profile.org_id.as_deref().unwrap_or("-"),
                profile.app_id.as_deref().unwrap_or("none")
            );
            save_selection(global, cfg, name, profile, &message)
        }
    }
}

pub async fn app(global: &Global, c: AppCmd) -> Result<u8> {
    match c {
        AppCmd::List => {
            let api = super::api(global)?;
            let apps = super::list_of(&api.get("/api/applications").await?);
            if global.json {
                print_json(&Value::Array(apps));
                return Ok(exit::OK);
            }
            let mut t = Table::new(&["", "ID", "NAME", "DEFAULT", "CREATED"]);
            for a in &apps {
                let current = api.ctx.app_id.as_deref() == a["id"].as_str();
                t.row(vec![
                    if current { "*".into() } else { String::new() },
                    field(a, "id"),
                    field(a, "name"),
                    if a["isDefault"] == true {
                        "yes".into()
                    } else {
                        String::new()
                    },
                    short_time(&field(a, "createdAt")),
                ]);
            }
            t.print("no applications");
            Ok(exit::OK)
        }
        AppCmd::Switch { app } => {
            let cfg = ConfigFile::load()?;
            let name = session_profile(global, &cfg)?;
            let mut profile = cfg.profiles[&name].clone();
            let org_id = profile
                .org_id
                .clone()
                .ok_or_else(|| anyhow!("no organization selected: `corral org switch` first"))?;
            let api = super::api(global)?;
            profile.app_id = super::auth::pick_app(&api, &org_id, Some(&app)).await?;
            let message = format!(
                "Switched to app {}",
                profile.app_id.as_deref().unwrap_or("-")
            );
            save_selection(global, cfg, name, profile, &message)
        }
    }
}
