//! One `corral serve` child per scenario: fresh temp dir and data dir, JSON logs
//! teed to `server.log`, listening address read from the log, killed on drop.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, Command};

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub struct Server {
    child: Child,
    pub pid: u32,
    pub base: String,
    pub dir: tempfile::TempDir,
}

impl Server {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir().join("corral.db")
    }

    /// Starts `bin serve` with a cleared environment plus `env`, waits for the
    /// address in its log and for `/health`.
    pub async fn start(bin: &Path, env: &[(String, String)]) -> Result<Server> {
        let dir = tempfile::Builder::new()
            .prefix("corral-runbench-")
            .tempdir()?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)?;
        let stderr = std::fs::File::create(dir.path().join("server.stderr"))?;
        let mut cmd = Command::new(bin);
        cmd.current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "HOME",
                std::env::var("HOME").unwrap_or_else(|_| "/root".into()),
            )
            .env("CORRAL_LISTEN", format!("127.0.0.1:{}", free_port()?))
            .env("CORRAL_DATA_DIR", &data)
            .env("CORRAL_LOG_FORMAT", "json");
        if let Ok(h) = std::env::var("DOCKER_HOST") {
            cmd.env("DOCKER_HOST", h);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let pid = child.id().ok_or_else(|| anyhow!("server exited at once"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let log_path = dir.path().join("server.log");
        tokio::spawn(async move {
            let mut log = tokio::fs::File::create(&log_path).await.ok();
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(f) = log.as_mut() {
                    let _ = f.write_all(line.as_bytes()).await;
                    let _ = f.write_all(b"\n").await;
                }
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if let Some(addr) = v["fields"]["addr"].as_str() {
                        let _ = tx.send(addr.to_owned());
                    }
                }
            }
            if let Some(f) = log.as_mut() {
                let _ = f.flush().await;
            }
        });
        let mut server = Server {
            child,
            pid,
            base: String::new(),
            dir,
        };
        let addr = match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
            Ok(Some(a)) => a,
            _ => bail!(
                "the server never logged its address; stderr:\n{}",
                server.stderr_tail()
            ),
        };
        server.base = format!("http://{addr}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{}/health", server.base)).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!("{} never became healthy", server.base);
            }
            if let Ok(Some(st)) = server.child.try_wait() {
                bail!("the server exited ({st}):\n{}", server.stderr_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(server)
    }

    fn stderr_tail(&self) -> String {
        let s = std::fs::read_to_string(self.dir.path().join("server.stderr")).unwrap_or_default();
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let tail = |s: &str| {
            s.lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        };
        format!("{}\n{}", tail(&log), tail(&s))
    }

    /// SIGTERM, then SIGKILL after `grace` (the server drains its pool on SIGTERM).
    pub async fn stop(&mut self, grace: Duration) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGTERM);
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            eprintln!("runbench: server {} ignored SIGTERM; killing it", self.pid);
            let _ = self.child.kill().await;
        }
        // Let the log task write its last lines.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
