//! Helpers shared by the binary's fault tests: start the real `corral` binary on a
//! port (its JSON log kept in `server.log` of its directory), wait for health, and
//! make an API-key client.

#![allow(dead_code, reason = "each test binary uses a subset")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_testkit::client::Client;
use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_corral");

pub struct Server {
    pub child: Child,
    pub base: String,
    /// The server's directory: its data dir (and process sandboxes) are under it.
    pub dir: PathBuf,
}

impl Drop for Server {
    /// A clean stop (SIGTERM, which tears the warm pool down), SIGKILL after 10 s;
    /// then whatever still runs under the server's directory is killed with its
    /// group: process sandboxes survive a SIGKILL of their server by design (to be
    /// re-attached), and a test that ends on one must not leave them behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        kill_processes_under(&self.dir);
    }
}

/// SIGKILLs the process group of every process whose working directory is under `dir`.
pub fn kill_processes_under(dir: &Path) {
    let Ok(dir) = dir.canonicalize() else { return };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cwd) = std::fs::read_link(e.path().join("cwd")) else {
            continue;
        };
        // A deleted directory reads as "<path> (deleted)".
        let cwd = cwd.to_string_lossy();
        if Path::new(cwd.trim_end_matches(" (deleted)")).starts_with(&dir) {
            let pid = nix::unistd::Pid::from_raw(pid);
            let pgid = nix::unistd::getpgid(Some(pid)).unwrap_or(pid);
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn start(dir: &Path, port: u16, extra: &[(&str, &str)]) -> Server {
    let mut c = Command::new(BIN);
    c.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CORRAL_LISTEN", format!("127.0.0.1:{port}"))
        .env("CORRAL_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env("CORRAL_AGENT_ENV", "CORRAL_HEARTBEAT_SECS=1");
    for (k, v) in extra {
        c.env(k, v);
    }
    let mut child = c
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(
            std::fs::File::create(dir.join("server.stderr.log"))
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
        )
        .spawn()
        .expect("spawn corral");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let log_path = dir.join("server.log");
    std::thread::spawn(move || {
        use std::io::Write as _;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .ok();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(f) = log.as_mut() {
                let _ = writeln!(f, "{line}");
            }
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if let Some(addr) = v["fields"]["addr"].as_str() {
                    let _ = tx.send(addr.to_owned());
                }
            }
        }
    });
    let addr = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(addr) => addr,
        Err(e) => {
            // Never leave the server running behind a failed test.
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the server did not report its address ({e}); see {}",
                dir.display()
            );
        }
    };
    Server {
        child,
        base: format!("http://{addr}"),
        dir: dir.to_path_buf(),
    }
}

pub async fn wait_healthy(base: &str) -> Arc<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("{base}/health")).await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "never healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Arc::new(
        reqwest::get(format!("{base}/api/openapi.json"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap(),
    )
}

/// Signs up, creates an org, and returns a client with an API key of its app.
pub async fn api_client(base: &str, spec: Arc<Value>) -> Client {
    let c = Client::new(base, spec.clone())
        .sign_up("ops@example.com", "correct horse battery", "Ops")
        .await;
    let org = c.post("/api/orgs", json!({"name": "Ops Org"}), 201).await;
    let c = c.org(org["id"].as_str().unwrap());
    let apps = c.get("/api/applications", 200).await;
    let app_id = apps["data"][0]["id"].as_str().unwrap().to_owned();
    let c = c.app(&app_id);
    let key = c.post("/api/api-keys", json!({"name": "ops"}), 201).await;
    Client::new(base, spec).bearer(key["key"].as_str().unwrap())
}

/// SIGTERM, then waits (up to 15 s) for the graceful exit.
pub fn sigterm_and_wait(server: &mut Server) -> std::process::ExitStatus {
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
