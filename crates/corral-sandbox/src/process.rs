//! The process backend (SPEC §8, tier 0 on machines without Docker): the sidecar
//! and the agent run as child processes of the server, each in its own process
//! group, with a cleared, allow-listed environment (never the server's secrets),
//! in their own directory `root_dir/<sandbox id>/` (the agent works in its
//! `workspace/`). The sidecar listens on free loopback ports and announces them on
//! its first stdout line.
//!
//! Each sandbox directory holds `sandbox.json` (pids, process start times, owner,
//! creation time), so that a server that restarts after a crash finds what the
//! previous one left ([`ProcessBackend::list`]) and removes it
//! ([`ProcessBackend::destroy`]) — killing a recorded pid only after checking in
//! `/proc` that it is still the same process running the expected binary.
//!
//! Resource limits ([`Resources`]) are not enforced here; this backend isolates
//! secrets and the environment, not the machine.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use corral_protocol::sidecar_api::{self, ENV_CONFIGURE_TOKEN};
use corral_protocol::Secret;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::docker::{new_configure_token, new_sandbox_id, tail_utf8};
use crate::pool::{Factory, Pool};
use crate::{
    Lease, PoolStats, Resources, RunnerKind, SandboxBackend, SandboxError, SandboxInfo,
    SandboxState,
};

/// Name of the record file in each sandbox directory.
pub const RECORD_FILE: &str = "sandbox.json";
/// How long processes get between SIGTERM and SIGKILL on destroy.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// Variables of the server's environment a sandbox process inherits.
const ENV_ALLOW: &[&str] = &["PATH", "LANG", "RUST_LOG"];

/// Configuration of [`ProcessBackend`].
#[derive(Debug, Clone)]
pub struct ProcessOptions {
    /// The `corral-agent` binary; empty: found by [`ProcessOptions::locate_binaries`].
    pub agent_bin: PathBuf,
    /// The `corral-sidecar` binary; empty: found by [`ProcessOptions::locate_binaries`].
    pub sidecar_bin: PathBuf,
    /// Each sandbox gets `root_dir/<id>/` (and `root_dir/<id>/workspace/`).
    pub root_dir: PathBuf,
    /// This server instance (recorded as the sandbox's owner).
    pub owner: String,
    /// Ready sandboxes kept in the warm pool (0: every lease is cold).
    pub pool_size: usize,
    /// Pool members older than this are destroyed and replaced.
    pub pool_ttl: Duration,
    /// Extra environment of the agent (e.g. `CORRAL_HEARTBEAT_SECS`).
    pub agent_env: Vec<(String, String)>,
    /// How long a new sandbox may take until its sidecar answers `/health`.
    pub start_timeout: Duration,
}

impl Default for ProcessOptions {
    fn default() -> Self {
        Self {
            agent_bin: PathBuf::new(),
            sidecar_bin: PathBuf::new(),
            root_dir: std::env::temp_dir().join("corral-sandboxes"),
            owner: "corral".to_owned(),
            pool_size: 2,
            pool_ttl: Duration::from_secs(600),
            agent_env: Vec::new(),
            start_timeout: Duration::from_secs(15),
        }
    }
}

impl ProcessOptions {
    /// Finds `(corral-agent, corral-sidecar)`: from `CORRAL_AGENT_BIN` /
    /// `CORRAL_SIDECAR_BIN` when set, else next to the current executable, else in
    /// its parent directory (so `target/debug/deps/<test>` finds
    /// `target/debug/corral-agent`), else on `PATH`.
    pub fn locate_binaries() -> Result<(PathBuf, PathBuf), SandboxError> {
        Ok((
            locate("corral-agent", "CORRAL_AGENT_BIN")?,
            locate("corral-sidecar", "CORRAL_SIDECAR_BIN")?,
        ))
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn locate(name: &str, env: &str) -> Result<PathBuf, SandboxError> {
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(SandboxError::BinaryMissing(format!(
                "{env}={} is not an executable file",
                path.display()
            )))
        };
    }
    let mut searched = vec![format!("${env} (unset)")];
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        dirs.extend(exe.ancestors().skip(1).take(2).map(Path::to_path_buf));
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    for dir in dirs {
        let candidate = dir.join(name);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
        searched.push(dir.display().to_string());
    }
    Err(SandboxError::BinaryMissing(format!(
        "`{name}` not found (searched {}); build it with `cargo build -p {name}` or set {env}",
        searched.join(", ")
    )))
}

/// A process of a sandbox as recorded on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcRecord {
    /// Its process id.
    pub pid: i32,
    /// Its own process group (the process leads it).
    pub pgid: i32,
    /// `/proc/<pid>/stat` start time (clock ticks since boot): tells a recorded
    /// process from a later one that got the same pid.
    pub start_time: Option<u64>,
    /// The binary it was started from (its `argv[0]`).
    pub exe: PathBuf,
}

/// Contents of `root_dir/<id>/sandbox.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxRecord {
    /// The sandbox id.
    pub id: String,
    /// The server instance that created it.
    pub owner: String,
    /// The run it was created for (cold path), if any.
    pub run_id: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// The sidecar process.
    pub sidecar: ProcRecord,
    /// The agent process (absent while the sandbox is being started).
    pub agent: Option<ProcRecord>,
    /// `http://127.0.0.1:<port>`.
    pub sidecar_url: Option<String>,
}

/// The agent's stdout and stderr, in its sandbox directory.
pub const AGENT_LOG: &str = "agent.log";
/// The sidecar's stderr, in its sandbox directory.
pub const SIDECAR_LOG: &str = "sidecar.log";

fn log_file(dir: &Path, name: &str) -> Result<Stdio, SandboxError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
        .map(Stdio::from)
        .map_err(|e| SandboxError::Start(format!("opening {}: {e}", dir.join(name).display())))
}

/// The last `max_bytes` of a file (lossy UTF-8, cut on a character boundary).
fn file_tail(path: &Path, max_bytes: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(max_bytes as u64);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut buf = Vec::with_capacity(max_bytes.min(1 << 20));
    let _ = f.take(max_bytes as u64).read_to_end(&mut buf);
    tail_utf8(&buf, max_bytes)
}

/// Reads and discards what a child writes to a pipe (so it never blocks on a full
/// pipe while this server lives).
fn drain(mut reader: impl AsyncRead + Unpin + Send + 'static) {
    tokio::spawn(async move {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = reader.read(&mut chunk).await {
            if n == 0 {
                break;
            }
        }
    });
}

/// Exit status of a child: `None` while it runs, `Some(code)` once it exited
/// (`code` is `None` when a signal ended it).
type Exit = watch::Receiver<Option<Option<i32>>>;

/// Reaps `child` in the background and publishes its exit.
fn watch_exit(mut child: Child) -> Exit {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let code = child.wait().await.ok().and_then(|s| s.code());
        tx.send_replace(Some(code));
    });
    rx
}

fn exited(exit: &Exit) -> bool {
    exit.borrow().is_some()
}

/// A sandbox this instance started.
struct Live {
    record: SandboxRecord,
    agent_exit: Exit,
    sidecar_exit: Exit,
}

/// The process side: everything but the pool.
pub(crate) struct Procs {
    opts: ProcessOptions,
    http: reqwest::Client,
    live: Mutex<HashMap<String, Live>>,
}

/// Sandboxes as child processes. Cheap to share behind an `Arc`.
pub struct ProcessBackend {
    procs: Arc<Procs>,
    pool: Pool<Procs>,
}

impl std::fmt::Debug for ProcessBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessBackend")
            .field("opts", &self.procs.opts)
            .finish_non_exhaustive()
    }
}

impl ProcessBackend {
    /// Checks the binaries (locating empty paths), creates `root_dir` and starts the
    /// warm pool. Must be called within a Tokio runtime.
    pub fn new(mut opts: ProcessOptions) -> Result<Self, SandboxError> {
        if opts.agent_bin.as_os_str().is_empty() || opts.sidecar_bin.as_os_str().is_empty() {
            let (agent, sidecar) = ProcessOptions::locate_binaries()?;
            if opts.agent_bin.as_os_str().is_empty() {
                opts.agent_bin = agent;
            }
            if opts.sidecar_bin.as_os_str().is_empty() {
                opts.sidecar_bin = sidecar;
            }
        }
        for bin in [&opts.agent_bin, &opts.sidecar_bin] {
            if !is_executable(bin) {
                return Err(SandboxError::BinaryMissing(format!(
                    "{} is not an executable file",
                    bin.display()
                )));
            }
        }
        std::fs::create_dir_all(&opts.root_dir).map_err(|e| {
            SandboxError::Other(anyhow::anyhow!("creating {}: {e}", opts.root_dir.display()))
        })?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| SandboxError::Other(e.into()))?;
        let procs = Arc::new(Procs {
            opts,
            http,
            live: Mutex::new(HashMap::new()),
        });
        let pool = Pool::start(procs.clone(), procs.opts.pool_size, 0, procs.opts.pool_ttl);
        Ok(Self { procs, pool })
    }

    /// The options this backend runs with (binaries resolved).
    pub fn options(&self) -> &ProcessOptions {
        &self.procs.opts
    }

    /// The directory of sandbox `id`.
    pub fn sandbox_dir(&self, id: &str) -> Option<PathBuf> {
        self.procs.dir(id)
    }

    /// The on-disk record of sandbox `id`, if it exists.
    pub fn record(&self, id: &str) -> Option<SandboxRecord> {
        self.procs.read_record(id)
    }
}

fn valid_id(id: &str) -> bool {
    id.strip_prefix("sbx_").is_some_and(|hex| {
        !hex.is_empty() && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Fields of `/proc/<pid>/stat` after the command name: (state, ppid, pgid, start time).
fn proc_stat(pid: i32) -> Option<(char, i32, i32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself contain spaces or ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let pgid = fields.get(2)?.parse().ok()?;
    // Field 22 of the whole line; the 20th after the name.
    let start = fields.get(19)?.parse().ok()?;
    Some((state, ppid, pgid, start))
}

/// Whether `rec` still names the same, living process running the expected binary.
fn still_ours(rec: &ProcRecord) -> bool {
    let Some((state, _, _, start)) = proc_stat(rec.pid) else {
        return false;
    };
    if state == 'Z' || state == 'X' {
        return false;
    }
    if rec.start_time.is_some_and(|t| t != start) {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{}/cmdline", rec.pid)) else {
        return false;
    };
    if cmdline.is_empty() {
        // A process in the middle of `execve` shows no command line yet; the start
        // time alone then tells whether it is the one we spawned.
        return rec.start_time.is_some();
    }
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    Path::new(std::ffi::OsStr::from_bytes(argv0)) == rec.exe
}

/// Every living descendant of `roots` as `(pid, start time)`.
fn descendants(roots: &[i32]) -> Vec<(i32, u64)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut children: HashMap<i32, Vec<(i32, u64)>> = HashMap::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if let Some((state, ppid, _, start)) = proc_stat(pid) {
            if state != 'Z' {
                children.entry(ppid).or_default().push((pid, start));
            }
        }
    }
    let mut out = Vec::new();
    let mut seen: HashSet<i32> = roots.iter().copied().collect();
    let mut queue: VecDeque<i32> = roots.iter().copied().collect();
    while let Some(p) = queue.pop_front() {
        for &(c, start) in children.get(&p).into_iter().flatten() {
            if seen.insert(c) {
                out.push((c, start));
                queue.push_back(c);
            }
        }
    }
    out
}

/// Sends `signal` to the process group led by `rec`, if it is still ours.
fn signal_group(rec: &ProcRecord, signal: Signal) {
    let own = nix::unistd::getpgrp().as_raw();
    if rec.pgid > 1 && rec.pgid != own && still_ours(rec) {
        let _ = killpg(Pid::from_raw(rec.pgid), signal);
    }
}

impl Procs {
    fn dir(&self, id: &str) -> Option<PathBuf> {
        valid_id(id).then(|| self.opts.root_dir.join(id))
    }

    fn read_record(&self, id: &str) -> Option<SandboxRecord> {
        let path = self.dir(id)?.join(RECORD_FILE);
        let text = std::fs::read_to_string(path).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn write_record(&self, dir: &Path, record: &SandboxRecord) -> Result<(), SandboxError> {
        let tmp = dir.join(format!("{RECORD_FILE}.tmp"));
        let text = serde_json::to_vec_pretty(record).map_err(anyhow::Error::from)?;
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, dir.join(RECORD_FILE)))
            .map_err(|e| SandboxError::Start(format!("writing {}: {e}", dir.display())))
    }

    fn base_command(&self, bin: &Path, dir: &Path) -> Command {
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env("HOME", dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        for key in ENV_ALLOW {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        if std::env::var_os("PATH").is_none() {
            cmd.env("PATH", "/usr/local/bin:/usr/bin:/bin");
        }
        cmd
    }

    fn proc_record(&self, child: &Child, exe: &Path) -> Result<ProcRecord, SandboxError> {
        let pid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| SandboxError::Start("a child exited at once".into()))?;
        Ok(ProcRecord {
            pid,
            pgid: pid,
            start_time: proc_stat(pid).map(|s| s.3),
            exe: exe.to_path_buf(),
        })
    }

    async fn start(
        &self,
        id: &str,
        run_id: Option<&str>,
        token: &str,
    ) -> Result<Lease, SandboxError> {
        let dir = self.dir(id).expect("a generated id is valid");
        let workspace = dir.join("workspace");
        std::fs::create_dir_all(&workspace)
            .map_err(|e| SandboxError::Start(format!("creating {}: {e}", workspace.display())))?;
        // The agent runs *in* its workspace: a relative path (a relative data dir,
        // the default `./data`) would point elsewhere from there, and its tools
        // (bash's working directory) would fail.
        let dir = std::path::absolute(&dir)
            .map_err(|e| SandboxError::Start(format!("resolving {}: {e}", dir.display())))?;
        let workspace = dir.join("workspace");

        // The sidecar, on free loopback ports.
        let mut cmd = self.base_command(&self.opts.sidecar_bin, &dir);
        // Logs go to files in the sandbox directory, not to pipes into this server:
        // a sandbox must outlive a crashed server (to be re-attached) without its
        // writes failing on a closed pipe.
        cmd.stderr(log_file(&dir, SIDECAR_LOG)?);
        cmd.current_dir(&dir)
            .env(ENV_CONFIGURE_TOKEN, token)
            .env("CORRAL_SIDECAR_LISTEN", "127.0.0.1:0")
            .env("CORRAL_PROXY_LISTEN", "127.0.0.1:0");
        let mut sidecar = cmd.spawn().map_err(|e| {
            SandboxError::Start(format!("spawning {}: {e}", self.opts.sidecar_bin.display()))
        })?;
        let sidecar_rec = self.proc_record(&sidecar, &self.opts.sidecar_bin)?;
        let mut record = SandboxRecord {
            id: id.to_owned(),
            owner: self.opts.owner.clone(),
            run_id: run_id.map(str::to_owned),
            created_at: unix_now(),
            sidecar: sidecar_rec,
            agent: None,
            sidecar_url: None,
        };
        let stdout = sidecar.stdout.take().expect("stdout is piped");
        let sidecar_exit = watch_exit(sidecar);
        // Recorded before anything can fail, so that cleanup finds the process.
        self.live.lock().insert(
            id.to_owned(),
            Live {
                record: record.clone(),
                agent_exit: watch::channel(Some(None)).1,
                sidecar_exit: sidecar_exit.clone(),
            },
        );
        self.write_record(&dir, &record)?;

        let mut lines = BufReader::new(stdout);
        let mut first = String::new();
        let read = tokio::time::timeout(self.opts.start_timeout, lines.read_line(&mut first)).await;
        let bound = match read {
            Ok(Ok(n)) if n > 0 => serde_json::from_str::<Bound>(first.trim()).map_err(|e| {
                SandboxError::Start(format!(
                    "unexpected first line from the sidecar {first:?}: {e}"
                ))
            })?,
            Ok(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                return Err(SandboxError::Start(format!(
                    "the sidecar exited before listening: {}",
                    file_tail(&dir.join(SIDECAR_LOG), 2000)
                )));
            }
            Err(_) => {
                return Err(SandboxError::Start(format!(
                    "the sidecar did not announce its addresses within {:?}",
                    self.opts.start_timeout
                )))
            }
        };
        drain(lines);
        let sidecar_url = format!("http://{}", bound.api);
        let proxy = format!("http://{}", bound.proxy);

        // The agent, pointed at the sidecar.
        let mut cmd = self.base_command(&self.opts.agent_bin, &dir);
        cmd.stdout(log_file(&dir, AGENT_LOG)?)
            .stderr(log_file(&dir, AGENT_LOG)?);
        cmd.current_dir(&workspace)
            .env("CORRAL_SIDECAR_URL", &sidecar_url)
            .env("CORRAL_WORKSPACE", &workspace);
        for key in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            cmd.env(key, &proxy);
        }
        for key in ["NO_PROXY", "no_proxy"] {
            cmd.env(key, "127.0.0.1,localhost");
        }
        cmd.envs(self.opts.agent_env.iter().map(|(k, v)| (k, v)));
        let agent = cmd.spawn().map_err(|e| {
            SandboxError::Start(format!("spawning {}: {e}", self.opts.agent_bin.display()))
        })?;
        record.agent = Some(self.proc_record(&agent, &self.opts.agent_bin)?);
        record.sidecar_url = Some(sidecar_url.clone());
        let agent_exit = watch_exit(agent);
        self.live.lock().insert(
            id.to_owned(),
            Live {
                record: record.clone(),
                agent_exit: agent_exit.clone(),
                sidecar_exit: sidecar_exit.clone(),
            },
        );
        self.write_record(&dir, &record)?;

        self.wait_healthy(&sidecar_url).await?;
        if exited(&agent_exit) {
            return Err(SandboxError::Start(format!(
                "the agent exited at start: {}",
                file_tail(&dir.join(AGENT_LOG), 2000)
            )));
        }
        Ok(Lease {
            id: id.to_owned(),
            sidecar_url,
            configure_token: Secret::new(token),
            warm: false,
            kind: RunnerKind::Process,
        })
    }

    async fn health(&self, url: &str) -> bool {
        self.http
            .get(format!("{url}{}", sidecar_api::HEALTH_PATH))
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    async fn wait_healthy(&self, url: &str) -> Result<(), SandboxError> {
        let deadline = Instant::now() + self.opts.start_timeout;
        loop {
            if self.health(url).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(SandboxError::Start(format!(
                    "the sidecar did not answer {url}/health"
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Kills both process groups (SIGTERM, then SIGKILL after a grace, including
    /// descendants that left the groups) and removes the directory.
    async fn remove(&self, id: &str) -> Result<(), SandboxError> {
        let Some(dir) = self.dir(id) else {
            return Ok(());
        };
        let live = self.live.lock().remove(id);
        let record = match &live {
            Some(l) => Some(l.record.clone()),
            None => self.read_record(id),
        };
        if let Some(record) = record {
            let procs: Vec<ProcRecord> = std::iter::once(record.sidecar.clone())
                .chain(record.agent.clone())
                .collect();
            let roots: Vec<i32> = procs
                .iter()
                .filter(|p| still_ours(p))
                .map(|p| p.pid)
                .collect();
            let mut family: HashSet<(i32, u64)> = descendants(&roots).into_iter().collect();
            for p in &procs {
                signal_group(p, Signal::SIGTERM);
            }
            let gone = || procs.iter().all(|p| !still_ours(p));
            let deadline = Instant::now() + KILL_GRACE;
            while !gone() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            family.extend(descendants(&roots));
            for p in &procs {
                signal_group(p, Signal::SIGKILL);
            }
            for (pid, start) in family {
                if proc_stat(pid).is_some_and(|s| s.3 == start && s.0 != 'Z') {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
            let deadline = Instant::now() + KILL_GRACE;
            while !gone() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if let Some(l) = &live {
                // Our own children: wait until they are reaped.
                for mut exit in [l.agent_exit.clone(), l.sidecar_exit.clone()] {
                    let _ = tokio::time::timeout(KILL_GRACE, exit.wait_for(Option::is_some)).await;
                }
            }
        }
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(SandboxError::Other(anyhow::anyhow!(
                "removing {}: {e}",
                dir.display()
            ))),
        }
    }
}

/// The sidecar's first stdout line (`corral_sidecar::Bound`).
#[derive(Debug, Deserialize)]
struct Bound {
    api: SocketAddr,
    proxy: SocketAddr,
}

#[async_trait]
impl Factory for Procs {
    async fn create(
        &self,
        run_id: Option<&str>,
        _resources: Resources,
    ) -> Result<Lease, SandboxError> {
        let id = new_sandbox_id();
        let token = new_configure_token();
        match self.start(&id, run_id, &token).await {
            Ok(lease) => Ok(lease),
            Err(e) => {
                if let Err(cleanup) = self.remove(&id).await {
                    tracing::warn!(sandbox = id, error = %cleanup, "cleanup after a failed start");
                }
                Err(e)
            }
        }
    }

    async fn adapt(&self, _lease: &Lease, _resources: Resources) -> Result<(), SandboxError> {
        Ok(())
    }

    async fn alive(&self, lease: &Lease) -> bool {
        self.live
            .lock()
            .get(&lease.id)
            .is_some_and(|l| !exited(&l.agent_exit) && !exited(&l.sidecar_exit))
    }

    async fn destroy(&self, id: &str) -> Result<(), SandboxError> {
        self.remove(id).await
    }
}

#[async_trait]
impl SandboxBackend for ProcessBackend {
    fn kind(&self) -> RunnerKind {
        RunnerKind::Process
    }

    fn sidecar_view(&self, url: &str) -> String {
        url.to_owned()
    }

    async fn platform_bind_ip(&self) -> Result<Option<std::net::IpAddr>, SandboxError> {
        Ok(None)
    }

    async fn lease(&self, run_id: &str, resources: Resources) -> Result<Lease, SandboxError> {
        self.pool.lease(run_id, resources).await
    }

    async fn state(&self, id: &str) -> Result<SandboxState, SandboxError> {
        if let Some(l) = self.procs.live.lock().get(id) {
            return Ok(match *l.agent_exit.borrow() {
                None => SandboxState::Running,
                Some(code) => SandboxState::AgentExited {
                    code: code.map(i64::from),
                },
            });
        }
        let Some(record) = self.procs.read_record(id) else {
            return Ok(SandboxState::Gone);
        };
        Ok(match &record.agent {
            Some(agent) if still_ours(agent) => SandboxState::Running,
            _ => SandboxState::AgentExited { code: None },
        })
    }

    async fn agent_logs(&self, id: &str, max_bytes: usize) -> String {
        self.procs
            .dir(id)
            .map(|d| file_tail(&d.join(AGENT_LOG), max_bytes))
            .unwrap_or_default()
    }

    async fn signal_stop(&self, id: &str) -> Result<(), SandboxError> {
        let record = self.procs.live.lock().get(id).map(|l| l.record.clone());
        if let Some(agent) = record
            .or_else(|| self.procs.read_record(id))
            .and_then(|r| r.agent)
        {
            signal_group(&agent, Signal::SIGTERM);
        }
        Ok(())
    }

    async fn destroy(&self, id: &str) -> Result<(), SandboxError> {
        self.procs.remove(id).await
    }

    async fn list(&self) -> Result<Vec<SandboxInfo>, SandboxError> {
        let root = &self.procs.opts.root_dir;
        let mut entries = match tokio::fs::read_dir(root).await {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(SandboxError::Other(anyhow::anyhow!(
                    "reading {}: {e}",
                    root.display()
                )))
            }
        };
        let mut out = Vec::new();
        while let Ok(Some(entry)) = entries.next_entry().await {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !valid_id(&name) {
                continue;
            }
            let record = self.procs.read_record(&name);
            // No record yet: the sandbox is being created (its record is written once
            // the sidecar runs). Its directory's age stands in, so that the reaper
            // sees a fresh sandbox, not an ownerless leak.
            let dir_age = || {
                let modified = entry.path().metadata().ok()?.modified().ok()?;
                let secs = modified
                    .duration_since(std::time::UNIX_EPOCH)
                    .ok()?
                    .as_secs();
                i64::try_from(secs).ok()
            };
            out.push(SandboxInfo {
                id: name,
                owner: record.as_ref().map(|r| r.owner.clone()),
                run_id: record.as_ref().and_then(|r| r.run_id.clone()),
                created_at: record.as_ref().map(|r| r.created_at).or_else(dir_age),
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    fn pool_members(&self) -> Vec<String> {
        self.pool.members()
    }

    fn stats(&self) -> PoolStats {
        self.pool.stats()
    }

    async fn shutdown(&self) {
        self.pool.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_tail_keeps_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(AGENT_LOG);
        assert_eq!(file_tail(&path, 10), "");
        let mut text = "a".repeat(100_000);
        text.push_str("é-end");
        std::fs::write(&path, &text).unwrap();
        let tail = file_tail(&path, 7);
        assert!(tail.ends_with("é-end"), "{tail}");
        assert!(tail.len() <= 7);
    }

    #[test]
    fn own_process_is_recognised_and_foreign_ones_are_not() {
        let me = std::process::id() as i32;
        let exe = std::env::current_exe().unwrap();
        let start = proc_stat(me).map(|s| s.3);
        assert!(start.is_some());
        let rec = ProcRecord {
            pid: me,
            pgid: me,
            start_time: start,
            exe: exe.clone(),
        };
        assert!(still_ours(&rec));
        assert!(!still_ours(&ProcRecord {
            exe: PathBuf::from("/bin/other"),
            ..rec.clone()
        }));
        assert!(!still_ours(&ProcRecord {
            start_time: start.map(|s| s + 1),
            ..rec.clone()
        }));
    }

    #[test]
    fn only_sandbox_ids_make_paths() {
        assert!(valid_id("sbx_0a1b"));
        for bad in ["", "sbx_", "../x", "sbx_../../etc", "sbx_0a/b"] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn missing_binaries_name_what_was_searched() {
        let err = locate("corral-no-such-binary", "CORRAL_NO_SUCH_BIN_FOR_TEST").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("corral-no-such-binary"), "{msg}");
        assert!(msg.contains("CORRAL_NO_SUCH_BIN_FOR_TEST"), "{msg}");
        assert!(matches!(err, SandboxError::BinaryMissing(_)));
    }
}
