//! Test-only helpers: [`TestApp`] spawns a real Corral server on `127.0.0.1:0` with a
//! fresh database (a SQLite file in a temp dir, or a new PostgreSQL database), and
//! [`Client`] talks to it over real HTTP, checking every JSON response against the
//! server's own generated OpenAPI contract.

pub mod client;
pub mod contract;
pub mod databases;
pub mod forward_proxy;
pub mod model_oauth;
pub mod oauth;
pub mod receiver;
pub mod recorder;
pub mod services;
pub mod sse;

use std::path::PathBuf;
use std::sync::Arc;

use corral_api::state::AppState;
use corral_config::Config;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use client::{Client, Resp};
pub use databases::{fresh_postgres_database, postgres_admin_url};

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub base: String,
    pub state: AppState,
    pub backend: Backend,
    pub dir: tempfile::TempDir,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
    spec: Arc<serde_json::Value>,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        TestApp::spawn_with(backend, |_| {}).await
    }

    /// Spawns with a configuration tweak (body limit, trusted origins, …).
    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::load_from(None, &[]).expect("default config");
        config.data_dir = PathBuf::from(dir.path());
        config.listen = "127.0.0.1:0".parse().expect("addr");
        config.shutdown_grace_seconds = 5;
        config.database_max_connections = 5;
        // Runs use child processes and no warm pool unless a test asks otherwise, so
        // the many tests that never run an agent start no sandbox.
        config.sandbox = Some("process".into());
        config.warm_pool_size = 0;
        config.prepared_pool_size = 0;
        if backend == Backend::Postgres {
            config.database_url = Some(fresh_postgres_database().await);
        }
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = corral_api::build_state(config).await.expect("build state");
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(corral_api::serve_with_state(
            state.clone(),
            listener,
            shutdown.clone(),
        ));
        let base = format!("http://{addr}");
        let http = reqwest::Client::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(format!("{base}/health")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "server did not become healthy"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let spec: serde_json::Value = http
            .get(format!("{base}/api/openapi.json"))
            .send()
            .await
            .expect("openapi")
            .json()
            .await
            .expect("openapi json");
        TestApp {
            base,
            state,
            backend,
            dir,
            shutdown,
            handle: Some(handle),
            spec: Arc::new(spec),
        }
    }

    /// An unauthenticated client.
    pub fn client(&self) -> Client {
        Client::new(&self.base, self.spec.clone())
    }

    pub fn spec(&self) -> &serde_json::Value {
        &self.spec
    }

    /// Asks the server to shut down (as SIGTERM would) without waiting.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Shuts down and waits for the server to stop.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        match self.handle.take() {
            Some(h) => h.await?,
            None => Ok(()),
        }
    }

    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Runs raw SQL against the server's database (test set-up only).
    pub async fn sql(&self, sql: &str) {
        sqlx::query(sql)
            .execute(self.state.db.pool())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Runs a query returning one integer (test assertions only).
    pub async fn scalar(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(self.state.db.pool())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Signs up a new user, creates an org, and returns a client signed in as that
    /// user with the org and its default application selected.
    pub async fn user_with_org(&self, name: &str) -> Session {
        let c = self.client();
        let email = format!(
            "{}-{}@example.com",
            name.to_lowercase(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let c = c.sign_up(&email, "correct horse battery", name).await;
        let org = c
            .post(
                "/api/orgs",
                serde_json::json!({ "name": format!("{name} Org") }),
                201,
            )
            .await;
        let org_id = org["id"].as_str().expect("org id").to_owned();
        let c = c.org(&org_id);
        let apps = c.get("/api/applications", 200).await;
        let app_id = apps["data"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["isDefault"] == true))
            .and_then(|a| a["id"].as_str())
            .expect("default application")
            .to_owned();
        let user_id = c.get("/api/profile", 200).await["id"]
            .as_str()
            .expect("user id")
            .to_owned();
        Session {
            client: c.app(&app_id),
            email,
            user_id,
            org_id,
            app_id,
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        // A test that ends without `stop()` takes the server's runtime with it before
        // the graceful shutdown can remove process sandboxes (idle pool members, a
        // run still going): kill what their records name, so no test leaks processes.
        kill_process_sandboxes(&self.dir.path().join("sandboxes"));
    }
}

/// SIGKILLs the process groups recorded under `root/<sandbox>/sandbox.json` whose
/// leader is still a Corral runtime binary.
fn kill_process_sandboxes(root: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let Ok(text) = std::fs::read_to_string(entry.path().join("sandbox.json")) else {
            continue;
        };
        let Ok(record) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        for role in ["agent", "sidecar"] {
            let Some(pid) = record[role]["pid"].as_i64() else {
                continue;
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains("corral-") {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// A signed-in user with an org and its default application.
pub struct Session {
    pub client: Client,
    pub email: String,
    pub user_id: String,
    pub org_id: String,
    pub app_id: String,
}

impl Session {
    /// Creates an API key on the session's application; returns (id, key).
    pub async fn api_key(&self, scopes: Option<Vec<&str>>) -> (String, String) {
        let mut body = serde_json::json!({ "name": "test key" });
        if let Some(s) = scopes {
            body["scopes"] = serde_json::json!(s);
        }
        let k = self.client.post("/api/api-keys", body, 201).await;
        (
            k["id"].as_str().expect("key id").to_owned(),
            k["key"].as_str().expect("key").to_owned(),
        )
    }
}

/// Declares a test that runs once per backend: `both!(name);` for `async fn name(b: Backend)`.
#[macro_export]
macro_rules! both {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Sqlite).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Postgres).await;
                }
            )+
        }
    };
}
