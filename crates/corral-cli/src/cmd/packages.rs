//! `packages import|list|versions`.

use std::io::Write as _;
use std::path::Path;

use anyhow::{anyhow, Context as _, Result};
use clap::{Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::Value;

use crate::client::{agent_path, seg};
use crate::output::{field, print_json, short_time, stderr_tty, Table};
use crate::{exit, Global};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PackageType {
    Agent,
    Skill,
    Integration,
    McpServer,
}

impl PackageType {
    const ALL: [PackageType; 4] = [
        PackageType::Agent,
        PackageType::Skill,
        PackageType::Integration,
        PackageType::McpServer,
    ];

    fn plural(self) -> &'static str {
        match self {
            PackageType::Agent => "agents",
            PackageType::Skill => "skills",
            PackageType::Integration => "integrations",
            PackageType::McpServer => "mcp-servers",
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum PackagesCmd {
    /// Import a package: a directory (zipped on the fly), a `.afps` archive or a
    /// `.afps-bundle`.
    #[command(
        after_help = "Examples:\n  corral packages import ./my-agent          # a directory with manifest.json\n  corral packages import my-agent-1.0.0.afps\n  corral packages import team.afps-bundle --json"
    )]
    Import {
        /// Directory, `.afps` or `.afps-bundle` file.
        path: String,
    },
    /// The organization's packages (and the system ones).
    #[command(
        after_help = "Examples:\n  corral packages list\n  corral packages list --type skill --json"
    )]
    List {
        /// Only this type.
        #[arg(long = "type", value_enum)]
        ptype: Option<PackageType>,
    },
    /// A package's published versions.
    #[command(
        after_help = "Examples:\n  corral packages versions @acme/triage\n  corral packages versions @acme/pdf --type skill --json"
    )]
    Versions {
        /// `@scope/name`
        package: String,
        /// The package's type.
        #[arg(long = "type", value_enum, default_value = "agent")]
        ptype: PackageType,
    },
}

pub async fn run(global: &Global, c: PackagesCmd) -> Result<u8> {
    let api = super::api(global)?;
    match c {
        PackagesCmd::Import { path } => {
            let p = Path::new(&path);
            let (bytes, bundle) = if p.is_dir() {
                (zip_dir(p)?, false)
            } else {
                let b = std::fs::read(p).with_context(|| format!("cannot read {path}"))?;
                (b, path.ends_with(".afps-bundle"))
            };
            let endpoint = if bundle {
                "/api/packages/import-bundle"
            } else {
                "/api/packages/import"
            };
            let spinner = spinner(&format!("uploading {} ({} KiB)", path, bytes.len() / 1024));
            let rb = api
                .request(Method::POST, endpoint)
                .header(reqwest::header::CONTENT_TYPE, "application/zip")
                .body(bytes);
            let result = api.json(rb).await;
            if let Some(s) = spinner {
                s.finish_and_clear();
            }
            let r = result?;
            if global.json {
                print_json(&r);
            } else if bundle {
                for e in r["imported"].as_array().into_iter().flatten() {
                    println!(
                        "{} {} {} ({})",
                        field(e, "type"),
                        field(e, "id"),
                        field(e, "version"),
                        field(e, "status")
                    );
                }
            } else {
                println!(
                    "imported {} {} {} ({})",
                    field(&r, "type"),
                    field(&r, "packageId"),
                    field(&r, "version"),
                    field(&r, "integrity")
                );
            }
            for w in r["warnings"].as_array().into_iter().flatten() {
                eprintln!("warning: {}", w.as_str().unwrap_or_default());
            }
            Ok(exit::OK)
        }
        PackagesCmd::List { ptype } => {
            let types: Vec<PackageType> = match ptype {
                Some(t) => vec![t],
                None => PackageType::ALL.to_vec(),
            };
            let mut all = Vec::new();
            for t in types {
                all.extend(super::list_of(
                    &api.get(&format!("/api/packages/{}", t.plural())).await?,
                ));
            }
            if global.json {
                print_json(&Value::Array(all));
                return Ok(exit::OK);
            }
            let mut t = Table::new(&["ID", "TYPE", "VERSION", "SOURCE", "UPDATED", "DESCRIPTION"]);
            for p in &all {
                t.row(vec![
                    field(p, "id"),
                    field(p, "type"),
                    field(p, "version"),
                    field(p, "source"),
                    short_time(&field(p, "updatedAt")),
                    field(p, "description").chars().take(50).collect(),
                ]);
            }
            t.print("no packages");
            Ok(exit::OK)
        }
        PackagesCmd::Versions { package, ptype } => {
            let (scope, name) = agent_path(&package)?;
            let r = api
                .get(&format!(
                    "/api/packages/{}/{}/{}/versions",
                    ptype.plural(),
                    seg(&scope),
                    seg(&name)
                ))
                .await?;
            let versions = r["versions"].as_array().cloned().unwrap_or_default();
            if global.json {
                print_json(&Value::Array(versions));
                return Ok(exit::OK);
            }
            let mut t = Table::new(&["VERSION", "CREATED", "SIZE", "YANKED", "INTEGRITY"]);
            for v in &versions {
                t.row(vec![
                    field(v, "version"),
                    short_time(&field(v, "createdAt")),
                    field(v, "artifact_size"),
                    if v["yanked"] == true {
                        "yes".into()
                    } else {
                        String::new()
                    },
                    field(v, "integrity").chars().take(24).collect(),
                ]);
            }
            t.print("no published versions");
            Ok(exit::OK)
        }
    }
}

/// A spinner on stderr when it is a terminal.
pub fn spinner(msg: &str) -> Option<indicatif::ProgressBar> {
    if !stderr_tty() {
        return None;
    }
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_message(msg.to_owned());
    pb.enable_steady_tick(std::time::Duration::from_millis(100));
    Some(pb)
}

/// Zips a package directory: every file under it (paths relative, `/`-separated),
/// skipping `.git` and other dot-entries.
pub fn zip_dir(dir: &Path) -> Result<Vec<u8>> {
    if !dir.join("manifest.json").is_file() {
        return Err(anyhow!("{} has no manifest.json", dir.display()));
    }
    let mut files = Vec::new();
    collect(dir, dir, &mut files)?;
    files.sort();
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for rel in files {
        let bytes = std::fs::read(dir.join(&rel)).with_context(|| format!("cannot read {rel}"))?;
        w.start_file(rel.as_str(), opts)?;
        w.write_all(&bytes)?;
    }
    Ok(w.finish()?.into_inner())
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let ft = entry.file_type()?;
        if ft.is_dir() {
            collect(root, &path, out)?;
        } else if ft.is_file() {
            let rel = path
                .strip_prefix(root)?
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            out.push(rel);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_zips_with_relative_paths_and_no_dotfiles() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("manifest.json"), b"{}").unwrap();
        std::fs::create_dir_all(dir.path().join("skills/a")).unwrap();
        std::fs::write(dir.path().join("skills/a/SKILL.md"), b"x").unwrap();
        std::fs::create_dir_all(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join(".git/HEAD"), b"x").unwrap();
        let bytes = zip_dir(dir.path()).unwrap();
        let z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        let mut names: Vec<&str> = z.file_names().collect();
        names.sort();
        assert_eq!(names, vec!["manifest.json", "skills/a/SKILL.md"]);
        let empty = tempfile::tempdir().unwrap();
        assert!(zip_dir(empty.path()).is_err());
    }
}
