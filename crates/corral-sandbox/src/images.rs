//! Building the sandbox images from this workspace (`scripts/build-images.sh`), for
//! tests, benchmarks and tooling.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};

/// The command that builds the images, named in [`crate::SandboxError::ImageMissing`].
pub const BUILD_COMMAND: &str = "scripts/build-images.sh";

/// Variables passed to the build script. Everything else is dropped: a test's own
/// `CARGO_*` variables would make env-tracking build scripts rebuild (and the next
/// `cargo test` rebuild back).
const KEEP_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "RUSTUP_TOOLCHAIN",
    "CARGO_INCREMENTAL",
    "RUSTFLAGS",
    "DOCKER_HOST",
    "CORRAL_IMAGE_CACHE",
    "CORRAL_DEBIAN_MIRROR",
];

/// Runs `scripts/build-images.sh --profile <profile> --tag <tag>` under `repo_root`
/// with a clean environment (and `CARGO_TARGET_DIR=target_dir` when given), and
/// returns the exact `(agent, sidecar)` image references it built or found up to
/// date (content-hash tags such as `corral-agent:c-0123456789abcdef`). The script's
/// progress goes to this process's stderr.
pub fn build_images(
    repo_root: &Path,
    profile: &str,
    tag: &str,
    target_dir: Option<&Path>,
) -> Result<(String, String), anyhow::Error> {
    let script = repo_root.join(BUILD_COMMAND);
    let mut cmd = Command::new(&script);
    cmd.args(["--profile", profile, "--tag", tag])
        .current_dir(repo_root)
        .env_clear()
        .envs(std::env::vars_os().filter(|(k, _)| KEEP_ENV.iter().any(|w| k == w)))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(dir) = target_dir {
        cmd.env("CARGO_TARGET_DIR", dir);
    }
    let out = cmd
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("{} failed ({})", script.display(), out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let pick = |name: &str| {
        parse_ref(&stdout, name).with_context(|| {
            format!("no `{name}:…=…` line in the output of {BUILD_COMMAND}: {stdout}")
        })
    };
    Ok((pick("corral-agent")?, pick("corral-sidecar")?))
}

/// The image of a `name:tag=name:c-<hash>` line.
fn parse_ref(stdout: &str, name: &str) -> Option<String> {
    stdout
        .lines()
        .filter(|l| l.starts_with(&format!("{name}:")))
        .find_map(|l| l.split_once('='))
        .map(|(_, image)| image.trim().to_owned())
        .filter(|image| !image.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_script_output() {
        let out = "corral-sidecar:x=corral-sidecar:c-aa\ncorral-agent:x=corral-agent:c-bb\n";
        assert_eq!(
            parse_ref(out, "corral-agent").as_deref(),
            Some("corral-agent:c-bb")
        );
        assert_eq!(
            parse_ref(out, "corral-sidecar").as_deref(),
            Some("corral-sidecar:c-aa")
        );
        assert_eq!(parse_ref("", "corral-agent"), None);
    }
}
