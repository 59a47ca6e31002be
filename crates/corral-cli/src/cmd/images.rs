//! `images build`: runs the workspace's `scripts/build-images.sh` (the one image
//! recipe, also what `corral_sandbox::images::build_images` runs) with a progress
//! display, and reports the images built or found up to date.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{anyhow, Context as _, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::output::{paint, print_json, Color, Stream};
use crate::{exit, Global};

const SCRIPT: &str = "scripts/build-images.sh";

#[derive(Subcommand, Debug)]
pub enum ImagesCmd {
    /// Build the sandbox images (corral-agent, corral-sidecar) from a source checkout.
    #[command(
        after_help = "Examples:\n  corral images build                       # release binaries, offline base\n  corral images build --profile debug --tag test\n  corral images build --from-public-base --source ~/src/corral\n\nRuns scripts/build-images.sh of the checkout (found upward from the current\ndirectory, or --source); unchanged images are not rebuilt. Prints one\n`name:tag=image` line per image (JSON with --json)."
    )]
    Build(BuildArgs),
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// The Corral source checkout (default: found upward from the current directory).
    #[arg(long, value_name = "DIR")]
    pub source: Option<PathBuf>,
    /// Cargo profile of the binaries: release or debug.
    #[arg(long, default_value = "release")]
    pub profile: String,
    /// Tag to move to the built images.
    #[arg(long, default_value = "latest")]
    pub tag: String,
    /// Build FROM a registry base image instead of the offline debootstrap base.
    #[arg(long)]
    pub from_public_base: bool,
}

pub async fn run(global: &Global, c: ImagesCmd) -> Result<u8> {
    match c {
        ImagesCmd::Build(a) => build(global, a).await,
    }
}

/// `dir` or the nearest ancestor of the current directory holding the script.
pub fn source_dir(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(d) = explicit {
        if d.join(SCRIPT).is_file() {
            return Ok(d.to_owned());
        }
        return Err(anyhow!("{} has no {SCRIPT}", d.display()));
    }
    let cwd = std::env::current_dir()?;
    cwd.ancestors()
        .find(|d| d.join(SCRIPT).is_file())
        .map(Path::to_owned)
        .ok_or_else(|| {
            anyhow!(
                "not inside a Corral source checkout (no {SCRIPT} above {}): pass --source DIR",
                cwd.display()
            )
        })
}

async fn build(global: &Global, a: BuildArgs) -> Result<u8> {
    let root = source_dir(a.source.as_deref())?;
    let mut cmd = tokio::process::Command::new(root.join(SCRIPT));
    cmd.args(["--profile", &a.profile, "--tag", &a.tag])
        .current_dir(&root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if a.from_public_base {
        cmd.arg("--from-public-base");
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run {}", root.join(SCRIPT).display()))?;
    let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let bar = super::packages::spinner("building images");
    let started = std::time::Instant::now();
    // Progress: the latest line in the spinner on a terminal, else passed through.
    let progress = {
        let bar = bar.clone();
        tokio::spawn(async move {
            let mut tail: Vec<String> = Vec::new();
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match &bar {
                    Some(b) => b.set_message(line.chars().take(100).collect::<String>()),
                    None => eprintln!("{line}"),
                }
                tail.push(line);
                if tail.len() > 40 {
                    tail.remove(0);
                }
            }
            tail
        })
    };
    let mut out_lines = Vec::new();
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines.next_line().await? {
        out_lines.push(line);
    }
    let status = child.wait().await?;
    let tail = progress.await.unwrap_or_default();
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if !status.success() {
        if bar.is_some() {
            for l in &tail {
                eprintln!("{l}");
            }
        }
        anyhow::bail!("{SCRIPT} failed ({status})");
    }
    let images: Vec<Value> = out_lines
        .iter()
        .filter_map(|l| l.split_once('='))
        .map(|(name, image)| json!({ "name": name.trim(), "image": image.trim() }))
        .collect();
    if global.json {
        print_json(&json!({ "images": images, "seconds": started.elapsed().as_secs_f64() }));
    } else {
        for l in &out_lines {
            println!("{l}");
        }
        eprintln!(
            "{} images ready in {:.1}s",
            paint(Stream::Err, Color::Green, "✓"),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(exit::OK)
}
