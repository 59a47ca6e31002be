//! The `corral` binary: parses the command line and dispatches, to the server
//! (`serve`, `migrate`, `openapi`, `secrets`) or to the client (`corral-cli`). No
//! logic lives here.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(
    name = "corral",
    version,
    about = "Run AI agents in throw-away sandboxes",
    after_help = "Examples:\n  corral serve                      # tier 0: SQLite under ./data on :3000\n  DATABASE_URL=postgres://… corral serve\n  corral migrate                    # apply database migrations and exit\n  corral openapi > openapi.json     # print the API contract\n  corral login http://localhost:3000\n  corral run @corral/hello-world --input '{\"name\":\"Ada\"}' --follow\n  corral runs list --status failed\n\nClient commands read the profile saved by `corral login` (CORRAL_URL and\nCORRAL_API_KEY override it); every one takes --json and --profile."
)]
struct Cli {
    #[command(flatten)]
    global: corral_cli::Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start the server (configuration from corral.toml and CORRAL_* variables).
    Serve {
        /// What this instance does: `all` (default), `api` (serve the API, queue
        /// runs) or `worker` (execute queued runs). Overrides CORRAL_ROLE; roles
        /// other than `all` need PostgreSQL.
        #[arg(long, value_parser = ["all", "api", "worker"])]
        role: Option<String>,
    },
    /// Apply pending database migrations, then exit.
    Migrate,
    /// Print the OpenAPI contract (JSON) generated from the code; `list`/`show`
    /// browse the contract of the server the CLI is logged in to.
    #[command(
        after_help = "Examples:\n  corral openapi > openapi.json      # this binary's contract\n  corral openapi list --tag Runs     # the server's operations\n  corral openapi show runAgent"
    )]
    Openapi {
        #[command(subcommand)]
        command: Option<corral_cli::OpenapiCmd>,
    },
    /// Manage stored secrets.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Manage blob storage (package archives).
    #[command(subcommand)]
    Storage(StorageCommand),
    #[command(flatten)]
    Client(corral_cli::Command),
}

#[derive(Subcommand, Debug)]
enum SecretsCommand {
    /// Re-encrypt every stored secret with the primary key (CORRAL_ENCRYPTION_KEY /
    /// _ID), reading old ones with the retired keys (CORRAL_ENCRYPTION_KEYS).
    /// Resumable: run it again after an interruption.
    Rotate,
}

#[derive(Subcommand, Debug)]
enum StorageCommand {
    /// Copy every blob from the local data dir (tiers 0–2) to the storage configured
    /// by CORRAL_STORAGE=s3://… (tier 3). Idempotent: run it again to resume; blobs
    /// already there are skipped, blobs whose bytes do not match their hash are
    /// reported and not copied.
    #[command(
        after_help = "Examples:\n  CORRAL_STORAGE=s3://corral-blobs AWS_REGION=eu-west-3 corral storage migrate\n  CORRAL_STORAGE=s3://corral CORRAL_S3_ENDPOINT=http://127.0.0.1:9000 corral storage migrate --from ./data/objects"
    )]
    Migrate {
        /// Directory of the blobs (default: <CORRAL_DATA_DIR>/objects).
        #[arg(long)]
        from: Option<std::path::PathBuf>,
    },
}

fn init_tracing(json: bool) {
    use tracing_subscriber::{fmt, EnvFilter};
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    if json {
        fmt()
            .with_env_filter(filter)
            .json()
            .with_current_span(true)
            .init();
    } else {
        fmt().with_env_filter(filter).init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cli = match cli.command {
        Command::Client(command) => {
            use clap::CommandFactory;
            return corral_cli::main(cli.global, command, Cli::command());
        }
        Command::Openapi {
            command: Some(command),
        } => return corral_cli::openapi_main(cli.global, command),
        _ => cli,
    };
    if let Command::Openapi { command: None } = cli.command {
        return match corral_api::openapi().to_pretty_json() {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match corral_config::Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let config = match &cli.command {
        Command::Serve { role: Some(role) } => {
            match config.with_role(role.parse().unwrap_or_default()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        _ => config,
    };
    init_tracing(config.is_production() || config.log_format.as_deref() == Some("json"));
    // Before any other thread starts (see corral-malloc): half of glibc's eight arenas
    // per core, so that a burst leaves its freed memory in fewer of them.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    if let Some(malloc_arenas) = corral_malloc::cap_arenas(4 * cores) {
        tracing::info!(malloc_arenas, "malloc arenas capped at four per core");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve { .. } => serve(config).await,
            Command::Migrate => migrate(config).await,
            Command::Openapi { .. } | Command::Client(_) => Ok(()),
            Command::Secrets(SecretsCommand::Rotate) => rotate(config).await,
            Command::Storage(StorageCommand::Migrate { from }) => {
                migrate_storage(config, from).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "fatal");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: corral_config::Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (CORRAL_LISTEN): {e}", config.listen))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    corral_api::serve(config, listener, shutdown).await
}

async fn migrate(config: corral_config::Config) -> anyhow::Result<()> {
    let state = corral_api::build_state(config).await?;
    state.db.migrate().await?;
    tracing::info!(database = state.db.backend().name(), "migrations applied");
    state.db.close().await;
    Ok(())
}

async fn rotate(config: corral_config::Config) -> anyhow::Result<()> {
    let state = corral_api::build_state(config).await?;
    state.db.migrate().await?;
    let report = corral_engine::secrets::rotate_secrets(&state.db, &state.keyring).await?;
    state.db.close().await;
    println!(
        "{}",
        serde_json::json!({
            "primary_key": state.keyring.primary_id(),
            "resealed": report.resealed,
            "failed": report.failed,
        })
    );
    if report.failed > 0 {
        anyhow::bail!(
            "{} secrets could not be opened with the configured keys (see the log); keep their key in CORRAL_ENCRYPTION_KEYS and run again",
            report.failed
        );
    }
    Ok(())
}

async fn migrate_storage(
    config: corral_config::Config,
    from: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let report = corral_engine::storage::migrate_to_configured(&config, from.as_deref()).await?;
    println!(
        "{}",
        serde_json::json!({
            "copied": report.copied,
            "skipped": report.skipped,
            "corrupt": report.corrupt,
        })
    );
    if !report.corrupt.is_empty() {
        anyhow::bail!(
            "{} blobs do not match their content hash and were not copied",
            report.corrupt.len()
        );
    }
    Ok(())
}

/// SIGTERM or Ctrl-C starts the graceful shutdown; a second one exits at once.
async fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    shutdown.cancel();
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::warn!("second signal: exiting now");
    std::process::exit(130);
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_tree_is_valid() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

    /// Every client command, down to the leaves, shows examples in `--help`.
    #[test]
    fn every_client_command_has_examples() {
        use clap::CommandFactory;
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            let subs: Vec<&clap::Command> = cmd
                .get_subcommands()
                .filter(|c| c.get_name() != "help")
                .collect();
            if subs.is_empty() || cmd.get_name() == "openapi" {
                let help = cmd
                    .get_after_help()
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                if !help.contains("Examples:") {
                    missing.push(path.clone());
                }
            }
            for s in subs {
                walk(s, &path, missing);
            }
        }
        let root = super::Cli::command();
        let mut missing = Vec::new();
        for c in root.get_subcommands() {
            if !["serve", "migrate", "secrets", "help"].contains(&c.get_name()) {
                walk(c, "corral", &mut missing);
            }
        }
        assert!(missing.is_empty(), "no examples in --help of: {missing:?}");
    }
}
