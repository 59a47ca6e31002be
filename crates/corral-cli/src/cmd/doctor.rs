//! `doctor`: each check ✓/✗ with the fix to apply. Remote checks read the server's
//! `/health`; local ones (Docker engine, images, secrets) look at this host, which is
//! meaningful where the server runs.

use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::image_hash::{self, Currency};
use crate::client::{env_nonempty, error_chain, Context};
use crate::config::ConfigFile;
use crate::output::{paint, print_json, Color, Stream};
use crate::{exit, Global};

pub const DOCTOR_HELP: &str = "Examples:\n  corral doctor\n  corral doctor --json | jq '.checks[] | select(.ok == false)'\n  DOCKER_HOST=unix:///run/user/1000/docker.sock corral doctor\n\nChecks: server reachable and healthy, database, sandbox backend, Docker engine and\nAPI version, sandbox images present and current (compared with this\ncheckout and the runtime binaries next to this executable), secrets configured (this host), clock skew.\nExit 0 when every check passes, 1 otherwise.";

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// Agent image to look for (default: CORRAL_AGENT_IMAGE or corral-agent:latest).
    #[arg(
        long,
        env = "CORRAL_AGENT_IMAGE",
        default_value = "corral-agent:latest"
    )]
    pub agent_image: String,
    /// Sidecar image to look for.
    #[arg(
        long,
        env = "CORRAL_SIDECAR_IMAGE",
        default_value = "corral-sidecar:latest"
    )]
    pub sidecar_image: String,
}

struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
    fix: Option<String>,
}

fn pass(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        ok: true,
        detail: detail.into(),
        fix: None,
    }
}

fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        name,
        ok: false,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

/// Docker's minimum API version for Corral (Engine 20.10).
const MIN_DOCKER_API: (u32, u32) = (1, 41);

pub async fn run(global: &Global, a: DoctorArgs) -> Result<u8> {
    let mut checks = Vec::new();
    server_checks(global, &mut checks).await;
    docker_checks(&a, &mut checks).await;
    checks.push(secrets_check());
    let all_ok = checks.iter().all(|c| c.ok);
    if global.json {
        print_json(&json!({
            "ok": all_ok,
            "checks": checks.iter().map(|c| json!({
                "name": c.name, "ok": c.ok, "detail": c.detail, "fix": c.fix,
            })).collect::<Vec<_>>(),
        }));
    } else {
        let s = Stream::Out;
        for c in &checks {
            let mark = if c.ok {
                paint(s, Color::Green, "✓")
            } else {
                paint(s, Color::Red, "✗")
            };
            println!("{mark} {:<10} {}", c.name, c.detail);
            if let Some(fix) = &c.fix {
                println!("  {} {fix}", paint(s, Color::Yellow, "fix:"));
            }
        }
    }
    Ok(if all_ok { exit::OK } else { exit::ERROR })
}

async fn server_checks(global: &Global, checks: &mut Vec<Check>) {
    let ctx = match ConfigFile::load().and_then(|cfg| Context::resolve(global, &cfg)) {
        Ok(c) => c,
        Err(e) => {
            checks.push(fail(
                "server",
                format!("{e:#}"),
                "`corral login <url>` or set CORRAL_URL",
            ));
            return;
        }
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build();
    let Ok(http) = http else {
        checks.push(fail(
            "server",
            "cannot build an HTTP client",
            "report a bug",
        ));
        return;
    };
    let t0 = Instant::now();
    let sent_at = std::time::SystemTime::now();
    let resp = match http.get(format!("{}/health", ctx.url)).send().await {
        Ok(r) => r,
        Err(e) => {
            checks.push(fail(
                "server",
                format!("{} unreachable: {}", ctx.url, error_chain(&e)),
                "start it (`corral serve`) or fix the URL (`corral login <url>`, CORRAL_URL)",
            ));
            return;
        }
    };
    let rtt = t0.elapsed();
    let date = resp
        .headers()
        .get(reqwest::header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok());
    let health: Value = resp.json().await.unwrap_or(Value::Null);
    let status = health["status"].as_str().unwrap_or("unknown");
    let version = health
        .pointer("/version/app")
        .and_then(Value::as_str)
        .unwrap_or("?");
    checks.push(if status == "healthy" || status == "degraded" {
        pass(
            "server",
            format!(
                "{} {status}, version {version}, {} ms",
                ctx.url,
                rtt.as_millis()
            ),
        )
    } else {
        fail(
            "server",
            format!("{} {status}", ctx.url),
            "see the server's log (`corral serve` output)",
        )
    });
    let db = &health["checks"]["database"];
    checks.push(match db["status"].as_str() {
        Some("healthy") => pass(
            "database",
            format!(
                "{} healthy, {:.1} ms",
                db["backend"].as_str().unwrap_or("?"),
                db["latency_ms"].as_f64().unwrap_or(0.0)
            ),
        ),
        _ => fail(
            "database",
            format!("{}", db),
            "check DATABASE_URL and that the database is up",
        ),
    });
    let sb = &health["checks"]["sandbox"];
    checks.push(match sb["status"].as_str() {
        Some("ready") => pass("sandbox", format!("{} backend ready", sb["backend"].as_str().unwrap_or("?"))),
        Some("starting") => pass("sandbox", "starting"),
        _ => fail(
            "sandbox",
            sb["error"].as_str().unwrap_or("unavailable").to_owned(),
            "start Docker and build the images (`scripts/build-images.sh`), or set CORRAL_SANDBOX=process",
        ),
    });
    if let Some(server_time) = date {
        // The Date header has 1 s resolution: skew within RTT + 1 s is fine.
        let local = chrono::DateTime::<chrono::Utc>::from(sent_at)
            + chrono::Duration::from_std(rtt / 2).unwrap_or_default();
        let skew = (server_time.with_timezone(&chrono::Utc) - local)
            .num_milliseconds()
            .abs();
        let tolerance = 5_000 + rtt.as_millis() as i64;
        checks.push(if skew <= tolerance {
            pass("clock", format!("skew under {} s", (skew / 1000).max(1)))
        } else {
            fail(
                "clock",
                format!(
                    "this host and the server differ by {:.1} s",
                    skew as f64 / 1000.0
                ),
                "synchronize clocks (NTP: `timedatectl set-ntp true`)",
            )
        });
    }
}

/// The Docker socket of `DOCKER_HOST` (unix:// only) or the default one.
fn docker_socket() -> Result<String, String> {
    match env_nonempty("DOCKER_HOST") {
        None => Ok("/var/run/docker.sock".to_owned()),
        Some(h) => match h.strip_prefix("unix://") {
            Some(p) => Ok(p.to_owned()),
            None => Err(h),
        },
    }
}

/// GET `path` on the Docker engine over its unix socket (HTTP/1.0, one response).
async fn docker_get(socket: &str, path: &str) -> Result<(u16, Value), String> {
    let fut = async {
        let mut s = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&buf);
        let (head, body) = text.split_once("\r\n\r\n").ok_or("malformed response")?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or("malformed status line")?;
        Ok((status, serde_json::from_str(body).unwrap_or(Value::Null)))
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .map_err(|_| "timed out".to_owned())?
}

async fn docker_checks(a: &DoctorArgs, checks: &mut Vec<Check>) {
    let socket = match docker_socket() {
        Ok(s) => s,
        Err(h) => {
            checks.push(fail(
                "docker",
                format!("DOCKER_HOST={h} is not a unix socket; doctor checks unix sockets only"),
                "run doctor on the Docker host",
            ));
            return;
        }
    };
    let v = match docker_get(&socket, "/version").await {
        Ok((200, v)) => v,
        Ok((code, _)) => {
            checks.push(fail(
                "docker",
                format!("engine at {socket} answered {code}"),
                "check the Docker daemon's log",
            ));
            return;
        }
        Err(e) => {
            checks.push(fail(
                "docker",
                format!("engine unreachable at {socket}: {e}"),
                "start Docker (`sudo systemctl start docker`) and make the socket readable (docker group), or set CORRAL_SANDBOX=process",
            ));
            return;
        }
    };
    let api = v["ApiVersion"].as_str().unwrap_or("0.0");
    let parsed: Vec<u32> = api.split('.').filter_map(|p| p.parse().ok()).collect();
    let recent = (
        parsed.first().copied().unwrap_or(0),
        parsed.get(1).copied().unwrap_or(0),
    ) >= MIN_DOCKER_API;
    let engine = v["Version"].as_str().unwrap_or("?");
    checks.push(if recent {
        pass("docker", format!("engine {engine}, API {api}"))
    } else {
        fail(
            "docker",
            format!("engine {engine}, API {api}: too old"),
            "upgrade Docker to 20.10 or later",
        )
    });
    let source = super::images::source_dir(None).ok();
    let bin_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(std::path::Path::to_owned))
        .unwrap_or_default();
    let profile = if bin_dir.ends_with("debug") {
        " --profile debug"
    } else {
        ""
    };
    for (component, image) in [("agent", &a.agent_image), ("sidecar", &a.sidecar_image)] {
        let check = match docker_get(&socket, &format!("/images/{image}/json")).await {
            Ok((200, img)) => {
                let short = |k: &str| {
                    img[k]
                        .as_str()
                        .unwrap_or("?")
                        .chars()
                        .take(19)
                        .collect::<String>()
                };
                let what = format!(
                    "{image} present ({}, built {})",
                    short("Id"),
                    short("Created")
                );
                match image_hash::currency(&img, component, source.as_deref(), &bin_dir) {
                    Currency::Current => pass("image", format!("{what}, current")),
                    Currency::Unknown(why) => {
                        pass("image", format!("{what}; current: unknown ({why})"))
                    }
                    Currency::Stale(bin) => fail(
                        "image",
                        format!("{what}, stale: not built from {}", bin.display()),
                        format!("`corral images build{profile}`"),
                    ),
                }
            }
            Ok((404, _)) => fail(
                "image",
                format!("{image} missing"),
                format!("`corral images build{profile}` (runs scripts/build-images.sh)"),
            ),
            Ok((code, _)) => fail(
                "image",
                format!("{image}: engine answered {code}"),
                "check the Docker daemon's log",
            ),
            Err(e) => fail("image", format!("{image}: {e}"), "check the Docker daemon"),
        };
        checks.push(check);
    }
}

fn secrets_check() -> Check {
    if env_nonempty("CORRAL_ENCRYPTION_KEY").is_some() {
        return pass("secrets", "CORRAL_ENCRYPTION_KEY set (this host)");
    }
    let dev = std::path::Path::new("data/secrets.json");
    if dev.is_file() {
        return pass(
            "secrets",
            "development secrets in ./data/secrets.json (set CORRAL_ENCRYPTION_KEY in production)",
        );
    }
    fail(
        "secrets",
        "no CORRAL_ENCRYPTION_KEY and no ./data/secrets.json on this host",
        "production: set CORRAL_ENCRYPTION_KEY (and _ID); development: `corral serve` once here generates them",
    )
}
