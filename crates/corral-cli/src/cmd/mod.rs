//! The client commands, one module per group, and their dispatch.

pub mod agents;
pub mod api;
pub mod auth;
pub mod context;
pub mod doctor;
pub mod image_hash;
pub mod images;
pub mod openapi;
pub mod packages;
pub mod run;
pub mod runs;
pub mod webhooks;

use anyhow::Result;
use clap::Subcommand;

use crate::client::{Api, Context};
use crate::config::ConfigFile;
use crate::Global;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Sign in to a Corral server (email + password, or an API key) and save a profile.
    #[command(after_help = auth::LOGIN_HELP)]
    Login(auth::LoginArgs),
    /// Sign out and forget the profile's credential.
    #[command(
        after_help = "Examples:\n  corral logout\n  corral logout --profile corral.example.com"
    )]
    Logout,
    /// Show who the CLI is signed in as, where, and the selected org and app.
    #[command(after_help = "Examples:\n  corral whoami\n  corral whoami --json")]
    Whoami,
    /// List or select organizations (sessions; an API key is bound to its org).
    #[command(subcommand)]
    Org(context::OrgCmd),
    /// List or select applications of the current organization.
    #[command(subcommand)]
    App(context::AppCmd),
    /// Agents available to the current application.
    #[command(subcommand)]
    Agents(agents::AgentsCmd),
    /// Run an agent; with --follow, stream its logs and exit with its outcome.
    #[command(after_help = run::RUN_HELP)]
    Run(run::RunArgs),
    /// List, inspect, tail and cancel runs.
    #[command(subcommand)]
    Runs(runs::RunsCmd),
    /// Import and list packages (agents, skills, integrations, MCP servers).
    #[command(subcommand)]
    Packages(packages::PackagesCmd),
    /// Manage webhooks of the current application.
    #[command(subcommand)]
    Webhooks(webhooks::WebhooksCmd),
    /// Authenticated request to any API path (curl-like).
    #[command(after_help = api::API_HELP)]
    Api(api::ApiArgs),
    /// Check the server, database, Docker engine, images, secrets and clock.
    #[command(after_help = doctor::DOCTOR_HELP)]
    Doctor(doctor::DoctorArgs),
    /// Sandbox images.
    #[command(subcommand)]
    Images(images::ImagesCmd),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  corral completions bash > ~/.local/share/bash-completion/completions/corral\n  corral completions zsh > \"${fpath[1]}/_corral\"\n  corral completions fish > ~/.config/fish/completions/corral.fish"
    )]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

pub async fn dispatch(global: &Global, command: Command, root: clap::Command) -> Result<u8> {
    match command {
        Command::Login(a) => auth::login(global, a).await,
        Command::Logout => auth::logout(global).await,
        Command::Whoami => auth::whoami(global).await,
        Command::Org(c) => context::org(global, c).await,
        Command::App(c) => context::app(global, c).await,
        Command::Agents(c) => agents::run(global, c).await,
        Command::Run(a) => run::run(global, a).await,
        Command::Runs(c) => runs::run(global, c).await,
        Command::Packages(c) => packages::run(global, c).await,
        Command::Webhooks(c) => webhooks::run(global, c).await,
        Command::Api(a) => api::run(global, a).await,
        Command::Doctor(a) => doctor::run(global, a).await,
        Command::Images(c) => images::run(global, c).await,
        Command::Completions { shell } => {
            let mut root = root;
            clap_complete::generate(shell, &mut root, "corral", &mut std::io::stdout());
            Ok(crate::exit::OK)
        }
    }
}

/// The API client of the resolved context.
pub fn api(global: &Global) -> Result<Api> {
    let cfg = ConfigFile::load()?;
    Api::new(Context::resolve(global, &cfg)?)
}

/// The `data` array of a list response (or the response itself when it is an array).
pub fn list_of(v: &serde_json::Value) -> Vec<serde_json::Value> {
    match v {
        serde_json::Value::Array(a) => a.clone(),
        other => other
            .get("data")
            .and_then(serde_json::Value::as_array)
            .cloned()
            .unwrap_or_default(),
    }
}

/// Reads `JSON`, `@file` or `@-` (stdin) into a JSON value.
pub fn json_arg(raw: &str) -> Result<serde_json::Value> {
    use anyhow::Context as _;
    let text = match raw.strip_prefix('@') {
        Some("-") => std::io::read_to_string(std::io::stdin()).context("cannot read stdin")?,
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?
        }
        None => raw.to_owned(),
    };
    serde_json::from_str(&text).context("not valid JSON")
}
