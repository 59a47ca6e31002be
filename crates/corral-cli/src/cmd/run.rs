//! `run @scope/name`: start a run; with `--follow`, stream its logs over SSE, print
//! its output, and exit with a code for its outcome. Ctrl-C asks whether to cancel.

use anyhow::{anyhow, Result};
use clap::Args;
use serde_json::{json, Value};

use crate::client::{agent_path, seg, Api};
use crate::follow::{follow, LogFormat, LogSink};
use crate::output::{
    duration_ms, field, paint, print_json, status_color, stdin_tty, Color, Stream,
};
use crate::{exit, Global};

pub const RUN_HELP: &str = "Examples:\n  corral run @corral/hello-world --input '{\"name\":\"Ada\"}' --follow\n  corral run @acme/triage --input @ticket.json -f > output.json\n  corral run @acme/triage --version 1.2.0 --model claude-sonnet-4-5 --json\n\nWith --follow, logs go to stderr as they arrive and the run's output (JSON) to\nstdout; with --json too, stdout gets the final run object instead. Ctrl-C asks\nwhether to cancel the run (without a terminal it detaches, exit 130).\n\nExit codes:\n  0    the run succeeded (or, without --follow, was created)\n  1    error (server refused, network, bad input)\n  2    usage error\n  3    the run failed\n  4    the run timed out\n  5    the run was cancelled\n  130  Ctrl-C: detached, the run keeps going";

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The agent: `@scope/name`.
    pub agent: String,
    /// Input: inline JSON, `@file.json`, or `@-` for stdin.
    #[arg(long, short, value_name = "JSON|@FILE")]
    pub input: Option<String>,
    /// Version: `draft`, `published` (default), an exact version, a tag or a range.
    #[arg(long)]
    pub version: Option<String>,
    /// Model id to use instead of the agent's or the org's default.
    #[arg(long)]
    pub model: Option<String>,
    /// Stream the logs live and wait for the end; exit code = outcome.
    #[arg(long, short)]
    pub follow: bool,
    /// With --follow: do not print logs.
    #[arg(long, short)]
    pub quiet: bool,
}

pub async fn run(global: &Global, a: RunArgs) -> Result<u8> {
    let api = super::api(global)?;
    let (scope, name) = agent_path(&a.agent)?;
    let mut body = json!({});
    if let Some(raw) = &a.input {
        let input = super::json_arg(raw)?;
        if !input.is_object() {
            anyhow::bail!("--input must be a JSON object");
        }
        body["input"] = input;
    }
    if let Some(m) = &a.model {
        body["modelId"] = json!(m);
    }
    let mut path = format!("/api/agents/{}/{}/run", seg(&scope), seg(&name));
    if let Some(v) = &a.version {
        path.push_str(&format!("?version={}", seg(v)));
    }
    let run = api.post(&path, &body).await?;
    let id = run["id"]
        .as_str()
        .ok_or_else(|| anyhow!("the server returned no run id"))?
        .to_owned();
    if !a.follow {
        if global.json {
            print_json(&run);
        } else {
            println!("{id}");
            eprintln!(
                "{} run {id} of {} ({}); follow it with `corral runs logs -f {id}`",
                paint(Stream::Err, Color::Green, "✓"),
                a.agent,
                field(&run, "status")
            );
        }
        return Ok(exit::OK);
    }
    if !global.json && !a.quiet {
        eprintln!(
            "{}",
            paint(Stream::Err, Color::Dim, &format!("run {id} of {}", a.agent))
        );
    }
    let format = if a.quiet {
        LogFormat::Quiet
    } else {
        LogFormat::Human(Stream::Err)
    };
    let sink = LogSink::new(format).with_spinner("waiting for the agent…");
    follow_until_end(&api, &id, sink, global.json, true).await
}

/// Follows `id` to its end with the Ctrl-C prompt; prints the outcome; returns the
/// exit code. `print_output`: the output JSON goes to stdout (`run`), or only the
/// status line (`runs logs -f`).
pub async fn follow_until_end(
    api: &Api,
    id: &str,
    mut sink: LogSink,
    json_out: bool,
    print_output: bool,
) -> Result<u8> {
    let done = loop {
        let interrupted = {
            let fut = follow(api, id, &mut sink);
            tokio::pin!(fut);
            tokio::select! {
                r = &mut fut => Some(r?),
                _ = tokio::signal::ctrl_c() => None,
            }
        };
        sink.clear_spinner();
        match interrupted {
            Some(run) => break run,
            None => {
                if !stdin_tty() || !ask_cancel(id).await {
                    eprintln!("\ndetached; the run keeps going: `corral runs logs -f {id}` to follow it again");
                    return Ok(exit::DETACHED);
                }
                match api
                    .post(&format!("/api/runs/{id}/cancel"), &json!({}))
                    .await
                {
                    Ok(_) => eprintln!("cancel requested"),
                    Err(e) => eprintln!("could not cancel: {e:#}"),
                }
            }
        }
    };
    let status = done["status"].as_str().unwrap_or("unknown").to_owned();
    if json_out {
        print_json(&done);
    } else {
        report(&done, print_output);
    }
    Ok(exit::of_status(&status))
}

async fn ask_cancel(id: &str) -> bool {
    use std::io::Write as _;
    eprint!("\nCancel run {id}? [y/N] ");
    std::io::stderr().flush().ok();
    let answer = tokio::select! {
        r = tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            std::io::stdin().read_line(&mut s).map(|_| s)
        }) => r.ok().and_then(Result::ok).unwrap_or_default(),
        // A second Ctrl-C: not a yes.
        _ = tokio::signal::ctrl_c() => String::new(),
    };
    matches!(answer.trim(), "y" | "Y" | "yes" | "Yes")
}

/// The end of a run: a status line (stderr) and the output (stdout).
fn report(run: &Value, print_output: bool) {
    let status = run["status"].as_str().unwrap_or("unknown");
    let s = Stream::Err;
    let mut line = format!(
        "{} {} in {}",
        paint(
            s,
            status_color(status),
            if status == "success" { "✓" } else { "✗" }
        ),
        paint(s, status_color(status), status),
        duration_ms(run["duration"].as_i64())
    );
    if let Some(code) = run.pointer("/metadata/error_code").and_then(Value::as_str) {
        line.push_str(&format!(" ({code})"));
    }
    eprintln!("{line}");
    if let Some(err) = run["error"].as_str() {
        eprintln!("  {}", paint(s, Color::Red, err));
    }
    if print_output {
        if let Some(out) = run.pointer("/result/output").filter(|v| !v.is_null()) {
            print_json(out);
        }
    }
}
