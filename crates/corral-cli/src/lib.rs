//! The client half of the `corral` binary: talks to a Corral server over its HTTP API
//! (reqwest), with profiles in the user's config directory. Shares only
//! `corral-core` types with the server; the binary parses the command line and calls
//! [`main`].
//!
//! Exit codes (see [`exit`]): 0 success, 1 error, 2 usage, and for commands that wait
//! for a run (`run --follow`, `runs logs -f`): 3 failed, 4 timeout, 5 cancelled, 130
//! detached with Ctrl-C.

pub mod client;
mod cmd;
pub mod config;
pub mod follow;
pub mod output;
pub mod sse;

use std::process::ExitCode;

pub use cmd::openapi::OpenapiCmd;
pub use cmd::Command;

/// Options every client command takes.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Global {
    /// Profile to use (default: the current one, or the one of CORRAL_URL).
    #[arg(long, global = true, env = "CORRAL_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,
    /// Machine-readable JSON on stdout (shapes in docs/cli.md).
    #[arg(long, global = true)]
    pub json: bool,
}

/// Process exit codes.
pub mod exit {
    pub const OK: u8 = 0;
    /// Any error: the server refused, the network failed, bad input.
    pub const ERROR: u8 = 1;
    /// Bad command line (clap).
    pub const USAGE: u8 = 2;
    /// The run ended `failed`.
    pub const RUN_FAILED: u8 = 3;
    /// The run ended `timeout`.
    pub const RUN_TIMEOUT: u8 = 4;
    /// The run ended `cancelled`.
    pub const RUN_CANCELLED: u8 = 5;
    /// Ctrl-C while following a run, which keeps running.
    pub const DETACHED: u8 = 130;

    /// The exit code of a terminal run status.
    pub fn of_status(status: &str) -> u8 {
        match status {
            "success" => OK,
            "failed" => RUN_FAILED,
            "timeout" => RUN_TIMEOUT,
            "cancelled" => RUN_CANCELLED,
            _ => ERROR,
        }
    }
}

/// Runs a client command to completion and returns the process exit code. `root` is
/// the binary's whole command tree (for `completions`).
pub fn main(global: Global, command: Command, root: clap::Command) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(cmd::dispatch(&global, command, root));
    // Do not wait for blocking reads (a Ctrl-C prompt) still parked on stdin.
    runtime.shutdown_background();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            print_error(&e);
            ExitCode::from(exit::ERROR)
        }
    }
}

/// Runs `corral openapi list|show` (the binary keeps bare `corral openapi`).
pub fn openapi_main(global: Global, command: OpenapiCmd) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cmd::openapi::run(&global, command)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            print_error(&e);
            ExitCode::from(exit::ERROR)
        }
    }
}

/// `error: …` on stderr; a server error shows its title, detail, field errors and
/// request id.
pub fn print_error(e: &anyhow::Error) {
    use output::{paint, Color, Stream};
    let label = paint(Stream::Err, Color::Red, "error:");
    match e.downcast_ref::<client::ApiError>() {
        Some(api) => {
            let ctx: Vec<String> = e
                .chain()
                .take_while(|c| c.downcast_ref::<client::ApiError>().is_none())
                .map(|c| c.to_string())
                .collect();
            if ctx.is_empty() {
                eprintln!("{label} {api}");
            } else {
                eprintln!("{label} {}: {api}", ctx.join(": "));
            }
        }
        None => eprintln!("{label} {e:#}"),
    }
}
