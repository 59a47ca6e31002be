//! External servers for the tier 2 and tier 3 tests: the shared test Redis
//! (`scripts/test-services.sh`), a private `redis-server` a test may kill and restart,
//! and a private S3-protocol server (`moto_server`, from `scripts/python-test-deps.sh`).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The shared test Redis (`CORRAL_TEST_REDIS_URL`).
pub fn redis_url() -> String {
    std::env::var("CORRAL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6390/".into())
}

/// A key prefix no other test uses.
pub fn unique_prefix() -> String {
    format!("t{}:", uuid::Uuid::new_v4().simple())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn wait_for_port(port: u16, what: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited early: {status}");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `redis-server` of the calling test only, on a free loopback port.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    pub fn start() -> PrivateRedis {
        let mut r = PrivateRedis {
            port: free_port(),
            child: None,
        };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it (again) on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        let mut child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/test-services.sh installs it)");
        wait_for_port(self.port, "redis-server", &mut child);
        self.child = Some(child);
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A private S3-protocol server (moto) with one bucket, on a free loopback port.
pub struct S3Server {
    pub endpoint: String,
    pub bucket: String,
    child: Child,
}

impl S3Server {
    pub async fn start() -> S3Server {
        let bin = std::env::var("CORRAL_TEST_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let port = free_port();
        let mut child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{bin}: {e} (scripts/python-test-deps.sh installs moto[server])")
            });
        wait_for_port(port, "moto_server", &mut child);
        let endpoint = format!("http://127.0.0.1:{port}");
        let bucket = format!(
            "corral-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let r = reqwest::Client::new()
            .put(format!("{endpoint}/{bucket}"))
            .send()
            .await
            .expect("create bucket");
        assert!(r.status().is_success(), "create bucket: {}", r.status());
        S3Server {
            endpoint,
            bucket,
            child,
        }
    }

    /// A client of the bucket of its own (signed requests, as moto wants), to look
    /// at or rewrite objects behind the server's back.
    pub fn client(&self) -> corral_storage::Blobs {
        corral_storage::Blobs::s3(&corral_storage::S3Options {
            bucket: self.bucket.clone(),
            prefix: String::new(),
            region: "us-east-1".into(),
            endpoint: Some(self.endpoint.clone()),
            access_key_id: Some("testing".into()),
            secret_access_key: Some("testing".into()),
            allow_http: true,
        })
        .expect("S3 client")
    }

    /// An object's bytes read straight from the server (not through Corral).
    pub async fn object(&self, key: &str) -> Option<Vec<u8>> {
        self.client().get(key).await.expect("GET object")
    }

    /// Points `config` at this server's bucket.
    pub fn configure(&self, config: &mut corral_config::Config) {
        config.storage = format!("s3://{}", self.bucket);
        config.s3_endpoint = Some(self.endpoint.clone());
        config.s3_region = Some("us-east-1".into());
        config.s3_access_key_id = Some("testing".into());
        config.s3_secret_access_key = Some(corral_config::Secret::new("testing"));
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
