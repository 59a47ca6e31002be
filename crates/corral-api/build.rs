//! Builds the dashboard (`web/`, React + Vite) into `web/dist` before the server is
//! compiled, so that `cargo build` / `cargo run -- serve` embed a working dashboard
//! on a fresh machine. It runs `npm ci` when `web/node_modules` is missing or older
//! than `package-lock.json`, then `npm run build` when a source is newer than
//! `dist/index.html`. It never fails the Rust build: without Node (or with
//! `CORRAL_SKIP_WEB_BUILD=1`) the server serves a page saying how to build it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

const INPUTS: &[&str] = &[
    "src",
    "public",
    "index.html",
    "package.json",
    "package-lock.json",
    "vite.config.ts",
    "tsconfig.json",
];

fn newest(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    let mut best = meta.modified().ok();
    for entry in std::fs::read_dir(path).ok()?.flatten() {
        if let Some(t) = newest(&entry.path()) {
            best = best.max(Some(t));
        }
    }
    best
}

fn npm(web: &Path, args: &[&str]) -> bool {
    match Command::new("npm").args(args).current_dir(web).status() {
        Ok(s) if s.success() => true,
        Ok(s) => {
            println!(
                "cargo:warning=dashboard: `npm {}` failed ({s})",
                args.join(" ")
            );
            false
        }
        Err(e) => {
            println!(
                "cargo:warning=dashboard not built: npm is not available ({e}); install Node 20+ \
                 or set CORRAL_SKIP_WEB_BUILD=1"
            );
            false
        }
    }
}

fn main() {
    println!("cargo:rerun-if-env-changed=CORRAL_SKIP_WEB_BUILD");
    let web = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../../web");
    for input in INPUTS {
        println!("cargo:rerun-if-changed={}", web.join(input).display());
    }
    if std::env::var_os("CORRAL_SKIP_WEB_BUILD").is_some_and(|v| v != "0")
        || !web.join("package.json").exists()
    {
        return;
    }
    let lock = newest(&web.join("package-lock.json"));
    let installed = newest(&web.join("node_modules/.package-lock.json"));
    if (installed.is_none() || installed < lock) && !npm(&web, &["ci", "--no-audit", "--no-fund"]) {
        return;
    }
    let sources = INPUTS.iter().filter_map(|i| newest(&web.join(i))).max();
    let built = newest(&web.join("dist/index.html"));
    if built.is_some() && built >= sources {
        return;
    }
    npm(&web, &["run", "build"]);
}
