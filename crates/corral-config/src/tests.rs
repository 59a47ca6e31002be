//! Loading and validation of the whole configuration.

use super::*;

fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_are_tier_zero() {
    let c = Config::load_from(None, &[]).unwrap();
    assert_eq!(c.listen.port(), 3000);
    assert_eq!(c.data_dir, PathBuf::from("./data"));
    assert!(c
        .effective_database_url()
        .starts_with("sqlite://./data/corral.db"));
    assert!(!c.is_production());
}

#[test]
fn env_overrides_file_overrides_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("corral.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:4000\"\nbody_limit_bytes = 2048\n",
    )
    .unwrap();
    let c = Config::load_from(
        Some(&file),
        &vars(&[
            ("CORRAL_LISTEN", "127.0.0.1:5000"),
            (
                "CORRAL_TRUSTED_ORIGINS",
                "https://a.example, https://b.example",
            ),
            ("CORRAL_TRUST_PROXY", "true"),
        ]),
    )
    .unwrap();
    assert_eq!(c.listen.port(), 5000);
    assert_eq!(c.body_limit_bytes, 2048);
    assert_eq!(
        c.trusted_origins,
        vec!["https://a.example", "https://b.example"]
    );
    assert!(c.trust_proxy);
}

#[test]
fn errors_name_the_variable() {
    let e = Config::load_from(None, &vars(&[("CORRAL_BODY_LIMIT_BYTES", "lots")])).unwrap_err();
    assert!(e.to_string().contains("CORRAL_BODY_LIMIT_BYTES"), "{e}");
    let e = Config::load_from(None, &vars(&[("CORRAL_LISTEN", "nowhere")])).unwrap_err();
    assert!(e.to_string().contains("CORRAL_LISTEN"), "{e}");
    let e = Config::load_from(None, &vars(&[("DATABASE_URL", "mysql://x")])).unwrap_err();
    assert!(e.to_string().contains("DATABASE_URL"), "{e}");
    for (var, bad) in [
        ("CORRAL_SANDBOX", "vm"),
        ("CORRAL_SANDBOX_SUBNETS", "10.0.0.0/30"),
        ("CORRAL_SANDBOX_SUBNETS", "not-a-cidr"),
        ("CORRAL_MODEL_API", "gemini"),
        ("CORRAL_MODEL_BASE_URL", "api.openai.com"),
        ("CORRAL_AGENT_ENV", "NOEQUALS"),
        ("CORRAL_WARM_POOL_SIZE", "-1"),
        ("CORRAL_EGRESS_ALLOWED_RANGES", "127.0.0.0/8,loopback"),
        ("CORRAL_PROXY_URL", "socks5://proxy.example.com:1080"),
        ("CORRAL_PROXY_URL", "http://"),
        ("CORRAL_PROXY_URL", "http://proxy.example.com:3128/path"),
        ("CORRAL_PROXY_TEST_URL", "example.com"),
    ] {
        let e = Config::load_from(None, &vars(&[(var, bad)])).unwrap_err();
        assert!(e.to_string().contains(var), "{var}={bad}: {e}");
    }
}

#[test]
fn system_model_needs_api_and_id_and_defaults_the_base_url() {
    assert!(Config::load_from(None, &[])
        .unwrap()
        .system_model()
        .is_none());
    let c = Config::load_from(
        None,
        &vars(&[
            ("CORRAL_MODEL_API", "anthropic"),
            ("CORRAL_MODEL_ID", "claude-x"),
        ]),
    )
    .unwrap();
    let m = c.system_model().unwrap();
    assert_eq!(m.base_url, "https://api.anthropic.com");
    assert!(m.api_key.is_none());
}

#[test]
fn secrets_are_redacted_in_debug() {
    let c = Config::load_from(
        None,
        &vars(&[("CORRAL_SESSION_SECRET", "hunter2-hunter2-hunter2-hunter2")]),
    )
    .unwrap();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("hunter2"), "{dbg}");
    assert!(dbg.contains("redacted"));
}

fn production(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v = vec![
        ("CORRAL_ENV", "production"),
        (
            "CORRAL_SESSION_SECRET",
            "s-s-s-s-s-s-s-s-s-s-s-s-s-s-s-s-s-s",
        ),
    ];
    v.extend_from_slice(extra);
    vars(&v)
}

#[test]
fn rate_limits_from_the_environment_or_the_file() {
    let c = Config::load_from(
        None,
        &vars(&[("CORRAL_RATE_LIMITS", "sign-up=100/60s,run=50/1m")]),
    )
    .unwrap();
    let r = c.rate_limits().unwrap();
    assert_eq!(r.overrides.len(), 2);
    assert!(!r.all_off);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("corral.toml");
    std::fs::write(
        &file,
        "[rate_limits]\nsign-up = \"100/60s\"\nlogs = \"off\"\n",
    )
    .unwrap();
    let c = Config::load_from(Some(&file), &[]).unwrap();
    let r = c.rate_limits().unwrap();
    assert!(r
        .overrides
        .contains(&("logs".to_owned(), LimitOverride::Off)));

    let e = Config::load_from(None, &vars(&[("CORRAL_RATE_LIMITS", "run=lots")])).unwrap_err();
    assert!(e.to_string().contains("CORRAL_RATE_LIMITS"), "{e}");
}

#[test]
fn rate_limits_off_is_refused_in_production_unless_forced() {
    let e = Config::load_from(None, &production(&[("CORRAL_RATE_LIMITS", "off")])).unwrap_err();
    assert!(
        e.to_string().contains("CORRAL_RATE_LIMITS_FORCE_OFF"),
        "{e}"
    );
    let c = Config::load_from(
        None,
        &production(&[
            ("CORRAL_RATE_LIMITS", "off"),
            ("CORRAL_RATE_LIMITS_FORCE_OFF", "1"),
        ]),
    )
    .unwrap();
    assert!(c.rate_limits().unwrap().all_off);
    assert!(Config::load_from(None, &vars(&[("CORRAL_RATE_LIMITS", "off")])).is_ok());
}

#[test]
fn redis_url_is_checked_and_redacted() {
    let e = Config::load_from(None, &vars(&[("REDIS_URL", "http://x")])).unwrap_err();
    assert!(e.to_string().contains("REDIS_URL"), "{e}");
    let c = Config::load_from(None, &vars(&[("REDIS_URL", "redis://:pw-123@h:6379/0")])).unwrap();
    assert!(!format!("{c:?}").contains("pw-123"));
}

#[test]
fn cluster_settings_from_the_environment() {
    let pg = ("DATABASE_URL", "postgres://u:p@127.0.0.1/corral");
    let c = Config::load_from(
        None,
        &vars(&[
            pg,
            ("CORRAL_ROLE", "worker"),
            ("CORRAL_WORKER_CAPACITY", "3"),
            ("CORRAL_WORKER_NAME", "w-1"),
            ("AUTH_PLATFORM_ADMIN_EMAILS", "a@example.com"),
            (
                "CORRAL_PLATFORM_ADMIN_EMAILS",
                "ops@example.com, b@example.com",
            ),
        ]),
    )
    .unwrap();
    assert_eq!(c.role, Role::Worker);
    assert_eq!(c.worker_capacity(), 3);
    assert_eq!(c.worker_name(), "w-1");
    assert_eq!(
        c.platform_admin_emails,
        ["ops@example.com", "b@example.com"]
    );

    // Roles other than `all` need PostgreSQL; a capacity of 0 is refused.
    let e = Config::load_from(None, &vars(&[("CORRAL_ROLE", "api")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("CORRAL_ROLE") && e.contains("PostgreSQL"), "{e}");
    let e = Config::load_from(None, &vars(&[pg, ("CORRAL_WORKER_CAPACITY", "0")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("CORRAL_WORKER_CAPACITY"), "{e}");
    let e = Config::load_from(None, &vars(&[pg, ("CORRAL_ROLE", "boss")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("CORRAL_ROLE"), "{e}");
    // Unset: from CPUs and memory, at most max_concurrent_runs.
    let c = Config::load_from(None, &vars(&[("CORRAL_MAX_CONCURRENT_RUNS", "2")])).unwrap();
    assert!((1..=2).contains(&c.worker_capacity()));
}

#[test]
fn proxy_and_egress_settings() {
    let c = Config::load_from(
        None,
        &vars(&[
            ("CORRAL_PROXY_URL", "http://u:p@proxy.internal:3128"),
            (
                "CORRAL_EGRESS_ALLOWED_HOSTS",
                "*.github.com, api.example.com",
            ),
            ("CORRAL_EGRESS_ALLOWED_RANGES", "10.1.0.0/16,192.168.1.5"),
        ]),
    )
    .unwrap();
    assert_eq!(
        c.proxy_url.as_ref().map(|s| s.expose()),
        Some("http://u:p@proxy.internal:3128")
    );
    assert!(
        !format!("{c:?}").contains("u:p@"),
        "the proxy URL is redacted"
    );
    assert_eq!(c.egress_allowed_hosts, ["*.github.com", "api.example.com"]);
    assert_eq!(c.egress_allowed_ranges, ["10.1.0.0/16", "192.168.1.5"]);
    assert_eq!(c.proxy_test_url, "https://example.com/");
}

#[test]
fn memory_trim_period_from_the_environment() {
    assert_eq!(
        Config::load_from(None, &[]).unwrap().memory_trim_seconds,
        10
    );
    let c = Config::load_from(None, &vars(&[("CORRAL_MEMORY_TRIM_SECONDS", "0")])).unwrap();
    assert_eq!(c.memory_trim_seconds, 0);
    let e = Config::load_from(None, &vars(&[("CORRAL_MEMORY_TRIM_SECONDS", "-1")])).unwrap_err();
    assert!(e.to_string().contains("CORRAL_MEMORY_TRIM_SECONDS"), "{e}");
}
