//! The `bash` tool: runs a command in the workspace with a timeout, a scrubbed
//! environment and capped output. The command runs in its own process group so a
//! timeout or a cancelled run kills everything it started, not just the shell.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::process::Command;

/// Variables passed through to commands. Everything else is dropped: the agent's
/// own environment holds no secret by design, and this keeps it that way even if a
/// launcher gets it wrong.
const ENV_ALLOW: &[&str] = &[
    "PATH",
    "LANG",
    "LC_ALL",
    "TZ",
    "TERM",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

/// How long readers may keep draining after the command exited; a background job
/// that inherited the pipes would otherwise hold the tool call open forever.
const DRAIN_GRACE: Duration = Duration::from_millis(300);

pub struct BashOutcome {
    pub text: String,
    pub is_error: bool,
}

/// Kills the process group when dropped, unless disarmed: covers the run future
/// being dropped on SIGTERM or the wall-clock timeout while a command runs.
struct GroupGuard(Option<Pid>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = killpg(pid, Signal::SIGKILL);
        }
    }
}

#[derive(Clone, Default)]
struct Capture {
    buf: Arc<Mutex<(Vec<u8>, usize)>>,
}

impl Capture {
    fn spawn_reader(
        &self,
        mut reader: impl AsyncRead + Unpin + Send + 'static,
        cap: usize,
    ) -> tokio::task::JoinHandle<()> {
        let buf = self.buf.clone();
        tokio::spawn(async move {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = reader.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                let mut b = buf.lock();
                let room = cap.saturating_sub(b.0.len());
                let take = room.min(n);
                b.0.extend_from_slice(&chunk[..take]);
                b.1 += n - take;
            }
        })
    }

    fn render(&self) -> String {
        let b = self.buf.lock();
        let mut s = String::from_utf8_lossy(&b.0).into_owned();
        if b.1 > 0 {
            s.push_str(&format!("\n[… {} more bytes truncated]", b.1));
        }
        s
    }
}

pub async fn run(command: &str, cwd: &Path, timeout: Duration, output_limit: usize) -> BashOutcome {
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(command)
        .current_dir(cwd)
        .env_clear()
        .env("HOME", cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for key in ENV_ALLOW {
        if let Ok(v) = std::env::var(key) {
            cmd.env(key, v);
        }
    }
    if std::env::var_os("PATH").is_none() {
        cmd.env("PATH", "/usr/local/bin:/usr/bin:/bin");
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return BashOutcome {
                text: format!("could not start bash: {e}"),
                is_error: true,
            }
        }
    };
    let mut guard = GroupGuard(
        child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw),
    );
    let (out, err) = (Capture::default(), Capture::default());
    let mut readers = Vec::new();
    if let Some(s) = child.stdout.take() {
        readers.push(out.spawn_reader(s, output_limit));
    }
    if let Some(s) = child.stderr.take() {
        readers.push(err.spawn_reader(s, output_limit));
    }
    let status = tokio::time::timeout(timeout, child.wait()).await;
    let (header, is_error) = match status {
        Ok(Ok(status)) => {
            // The shell is gone; its group may live on (background jobs) by design.
            guard.0 = None;
            match status.code() {
                Some(0) => ("exit code 0".to_owned(), false),
                Some(code) => (format!("exit code {code}"), true),
                None => ("killed by a signal".to_owned(), true),
            }
        }
        Ok(Err(e)) => (format!("waiting for bash failed: {e}"), true),
        Err(_) => {
            drop(guard);
            let _ = child.wait().await;
            (
                format!(
                    "timed out after {}s; the command and its children were killed",
                    timeout.as_secs()
                ),
                true,
            )
        }
    };
    for r in readers {
        let abort = r.abort_handle();
        if tokio::time::timeout(DRAIN_GRACE, r).await.is_err() {
            abort.abort();
        }
    }
    let mut text = header;
    let (stdout, stderr) = (out.render(), err.render());
    if !stdout.is_empty() {
        text.push_str("\n--- stdout ---\n");
        text.push_str(&stdout);
    }
    if !stderr.is_empty() {
        text.push_str("\n--- stderr ---\n");
        text.push_str(&stderr);
    }
    BashOutcome { text, is_error }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_in_cwd_and_reports_exit_code() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f.txt"), "x").unwrap();
        let r = run(
            "ls; echo oops >&2; exit 3",
            dir.path(),
            Duration::from_secs(10),
            1000,
        )
        .await;
        assert!(r.is_error);
        assert!(r.text.starts_with("exit code 3"), "{}", r.text);
        assert!(r.text.contains("f.txt"));
        assert!(r.text.contains("--- stderr ---\noops"));
    }

    #[tokio::test]
    async fn output_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let r = run(
            "head -c 5000 /dev/zero | tr '\\0' a",
            dir.path(),
            Duration::from_secs(10),
            100,
        )
        .await;
        assert!(!r.is_error);
        assert!(
            r.text.contains("[… 4900 more bytes truncated]"),
            "{}",
            r.text
        );
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let start = std::time::Instant::now();
        // The background child would keep the pipe open if it survived.
        let r = run(
            "sleep 30 & sleep 30",
            dir.path(),
            Duration::from_millis(500),
            1000,
        )
        .await;
        assert!(r.is_error);
        assert!(r.text.contains("timed out"), "{}", r.text);
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
