//! The Docker CLI through `std::process::Command` (bollard comes with the server's
//! sandbox backend), the image build, and a guard that removes everything a test
//! created in every outcome.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Runs `docker args…` and returns its output, whatever the exit status.
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI runs (scripts/test-services.sh installs it)")
}

/// Runs `docker args…`, asserts success and returns the trimmed stdout.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `docker inspect --format {format} {object}`.
pub fn inspect(object: &str, format: &str) -> String {
    docker_ok(&["inspect", "--format", format, object])
}

/// The exact image references (content-hash tags) built for this test run.
pub struct Images {
    pub agent: String,
    pub sidecar: String,
}

/// Builds (or finds up to date) both images once per test binary, from debug
/// binaries of this workspace built into the test's own target directory.
pub fn images() -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        // <target>/debug/deps/it-<hash>: the same target dir as this test, so the
        // binaries built here are the ones cargo already has.
        let exe = std::env::current_exe().expect("test binary path");
        let target_dir: PathBuf = exe
            .ancestors()
            .nth(3)
            .expect("test binary under <target>/<profile>/deps")
            .to_owned();
        // A clean environment: the test's own `CARGO_*` variables would make
        // env-tracking build scripts rebuild, and the next `cargo test` rebuild back.
        let keep = [
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
        let out = Command::new(root.join("scripts/build-images.sh"))
            .args(["--profile", "debug", "--tag", "container-it"])
            .env_clear()
            .envs(std::env::vars_os().filter(|(k, _)| keep.iter().any(|w| k == w)))
            .env("CARGO_TARGET_DIR", &target_dir)
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("run scripts/build-images.sh");
        assert!(out.status.success(), "scripts/build-images.sh failed");
        // One `name:tag=name:c-<hash>` line per image.
        let stdout = String::from_utf8_lossy(&out.stdout);
        let pick = |name: &str| {
            stdout
                .lines()
                .find(|l| l.starts_with(&format!("{name}:")))
                .and_then(|l| l.split_once('='))
                .map(|(_, image)| image.to_owned())
                .unwrap_or_else(|| panic!("no {name} line in: {stdout}"))
        };
        Images {
            agent: pick("corral-agent"),
            sidecar: pick("corral-sidecar"),
        }
    })
}

/// Removes the containers, then the networks, registered with it when dropped —
/// on success, on a failed assertion and on a panic alike.
#[derive(Default)]
pub struct Cleanup {
    containers: Vec<String>,
    networks: Vec<String>,
}

impl Cleanup {
    pub fn container(&mut self, name: &str) {
        self.containers.push(name.to_owned());
    }

    pub fn network(&mut self, name: &str) {
        self.networks.push(name.to_owned());
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The containers' own logs are the first thing one needs on a failure.
            for c in &self.containers {
                let out = docker(&["logs", "--tail", "60", c]);
                eprintln!(
                    "--- docker logs {c}\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        for c in &self.containers {
            let _ = docker(&["rm", "-f", "-v", c]);
        }
        for n in &self.networks {
            let _ = docker(&["network", "rm", n]);
        }
    }
}
