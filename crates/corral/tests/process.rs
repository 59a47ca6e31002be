//! The `corral` binary as a user runs it: zero-config tier 0 boot, graceful SIGTERM,
//! production refusing to boot without secrets, config errors naming the variable,
//! PostgreSQL through `DATABASE_URL`, and `migrate` / `openapi`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_corral");

/// A running `corral serve`, killed on drop if still alive.
struct Server {
    child: Child,
    addr: String,
    /// The malloc arena cap the server logged before listening.
    arenas: Option<u64>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CORRAL_LISTEN", "127.0.0.1:0")
        .env("CORRAL_LOG_FORMAT", "json")
        .env("RUST_LOG", "info");
    c
}

/// Starts `corral serve` and reads its JSON log until the listening address shows.
fn start(mut cmd: Command) -> Server {
    let mut child = cmd
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn corral");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut arenas = None;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                arenas = arenas.or(v["fields"]["malloc_arenas"].as_u64());
                if let Some(addr) = v["fields"]["addr"].as_str() {
                    let _ = tx.send((addr.to_owned(), arenas));
                }
            }
        }
    });
    let (addr, arenas) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("server reported its address");
    Server {
        child,
        addr,
        arenas,
    }
}

async fn wait_healthy(addr: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = reqwest::get(format!("http://{addr}/health")).await {
            if r.status() == 200 {
                return r.json().await.expect("health json");
            }
        }
        assert!(Instant::now() < deadline, "never healthy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn sigterm_and_wait(server: &mut Server) -> std::process::ExitStatus {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    kill(Pid::from_raw(server.child.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn zero_config_boot_and_graceful_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(command(dir.path()));
    let health = wait_healthy(&server.addr).await;
    assert_eq!(health["checks"]["database"]["backend"], "sqlite");
    // Four malloc arenas per core, set before the runtime's threads start.
    let cores = std::thread::available_parallelism().unwrap().get() as u64;
    assert_eq!(server.arenas, Some(4 * cores));
    assert!(
        dir.path().join("data/corral.db").exists(),
        "SQLite file under ./data"
    );
    let secrets = dir.path().join("data/secrets.json");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secrets)
            .expect("secrets persisted")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let first = std::fs::read(&secrets).unwrap();
    let status = sigterm_and_wait(&mut server);
    assert!(status.success(), "exit status {status:?}");

    // A restart keeps the same secrets (sessions stay valid) and the same database.
    let mut again = start(command(dir.path()));
    wait_healthy(&again.addr).await;
    assert_eq!(std::fs::read(&secrets).unwrap(), first);
    assert!(sigterm_and_wait(&mut again).success());
}

#[test]
fn production_refuses_to_boot_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let out = command(dir.path())
        .env("CORRAL_ENV", "production")
        .arg("serve")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for var in [
        "CORRAL_SESSION_SECRET",
        "CORRAL_RUN_TOKEN_SECRET",
        "CORRAL_ENCRYPTION_KEY",
    ] {
        assert!(err.contains(var), "stderr should name {var}: {err}");
    }
    assert!(
        !dir.path().join("data/secrets.json").exists(),
        "no secret generated in production"
    );
}

#[test]
fn config_errors_name_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let out = command(dir.path())
        .env("CORRAL_LISTEN", "nowhere")
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CORRAL_LISTEN"));
}

#[test]
fn openapi_command_prints_the_contract() {
    let out = Command::new(BIN).arg("openapi").output().unwrap();
    assert!(out.status.success());
    let spec: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(spec["paths"]["/api/applications"].is_object());
    let help = Command::new(BIN).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("Examples:"));
}

#[tokio::test]
async fn postgres_through_database_url_and_migrate() {
    let url = corral_testkit::fresh_postgres_database().await;
    let dir = tempfile::tempdir().unwrap();
    let out = command(dir.path())
        .env("DATABASE_URL", &url)
        .arg("migrate")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut server = start({
        let mut c = command(dir.path());
        c.env("DATABASE_URL", &url);
        c
    });
    let health = wait_healthy(&server.addr).await;
    assert_eq!(health["checks"]["database"]["backend"], "postgres");
    assert!(sigterm_and_wait(&mut server).success());
}

#[test]
fn secrets_rotate_command_runs_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let out = command(dir.path())
        .args(["secrets", "rotate"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(
        out.stdout
            .split(|b| *b == b'\n')
            .find(|l| String::from_utf8_lossy(l).contains("\"resealed\""))
            .expect("a JSON report on stdout"),
    )
    .unwrap();
    assert_eq!(report["resealed"], 0);
    assert_eq!(report["failed"], 0);
    assert!(report["primary_key"].is_string());
}
