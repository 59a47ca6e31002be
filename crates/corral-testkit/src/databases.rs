//! The PostgreSQL databases tests create, and their removal.
//!
//! Every test on PostgreSQL gets a database of its own (~10 MB once migrated). A test
//! cannot drop it when it ends: several tests hand it from one server to the next,
//! and nothing runs after a test's process returns. So a database is named after the
//! process that made it, `corral_t_<machine>_<pid>_<uuid>`, and each new one first
//! drops this machine's databases whose process has ended. Under nextest (a process
//! per test) the suite then holds only the databases of the tests running now, where
//! it left one per test behind (1.5 GB of 13 GB a fresh CI run wrote to its disk).

use std::path::Path;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};
use sqlx::Connection;

/// The PostgreSQL server tests create their databases on. `scripts/test.sh` starts it.
pub fn postgres_admin_url() -> String {
    std::env::var("CORRAL_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://corral:corral@127.0.0.1:5432/postgres".to_owned())
}

/// Creates an empty PostgreSQL database and returns its URL.
pub async fn fresh_postgres_database() -> String {
    let admin = postgres_admin_url();
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
        panic!(
            "cannot reach the test PostgreSQL at {admin} ({e}); run the suite with scripts/test.sh, \
             which installs and starts it"
        )
    });
    drop_databases_of_ended_processes(&mut conn).await;
    let name = format!(
        "{}{}_{}",
        machine_prefix(),
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    format!("{base}/{name}")
}

/// Drops the databases this machine's tests made in processes that have ended. Best
/// effort: a database another test is dropping at the same moment, or one that cannot
/// be dropped, is left to the next test (or to `scripts/test-services.sh`'s sweep).
async fn drop_databases_of_ended_processes(conn: &mut sqlx::PgConnection) {
    let prefix = machine_prefix();
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE starts_with(datname, $1)")
            .bind(prefix)
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_default();
    for name in names {
        let Some(pid) = owner_pid(prefix, &name) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        // FORCE: a server the ended test started may still hold connections.
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&mut *conn)
            .await;
    }
}

/// The process id in `<prefix><pid>_<uuid>`.
fn owner_pid(prefix: &str, name: &str) -> Option<u32> {
    let (pid, uuid) = name.strip_prefix(prefix)?.split_once('_')?;
    if uuid.len() != 32 || !uuid.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    pid.parse().ok()
}

/// `corral_t_<8 hex>_`: the hex names this machine in this boot (host name and boot
/// id), so a process id is only ever compared with this machine's processes, even
/// when several machines share one test server.
fn machine_prefix() -> &'static str {
    static PREFIX: OnceLock<String> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let digest = Sha256::digest(format!(
            "{}\n{}",
            read("/proc/sys/kernel/hostname").trim(),
            read("/proc/sys/kernel/random/boot_id").trim()
        ));
        let tag: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        format!("corral_t_{tag}_")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_is_read_back_from_the_name() {
        let prefix = machine_prefix();
        assert_eq!(prefix.len(), "corral_t_".len() + 9);
        let uuid = uuid::Uuid::new_v4().simple().to_string();
        assert_eq!(
            owner_pid(prefix, &format!("{prefix}4242_{uuid}")),
            Some(4242)
        );
        // The longest name fits PostgreSQL's 63 bytes.
        assert!(format!("{prefix}{}_{uuid}", u32::MAX).len() <= 63);
        // Another machine's databases, the store tests' and odd names are not ours.
        assert_eq!(
            owner_pid("corral_t_00000000_", &format!("{prefix}1_{uuid}")),
            None
        );
        assert_eq!(owner_pid(prefix, &format!("corral_t_store_{uuid}")), None);
        assert_eq!(owner_pid(prefix, &format!("{prefix}x_{uuid}")), None);
        assert_eq!(owner_pid(prefix, &format!("{prefix}7_short")), None);
    }

    async fn exists(conn: &mut sqlx::PgConnection, name: &str) -> bool {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM pg_database WHERE datname = $1")
            .bind(name)
            .fetch_one(conn)
            .await
            .expect("query pg_database")
            == 1
    }

    #[tokio::test]
    async fn a_new_database_drops_those_of_ended_processes_only() {
        let mut conn = sqlx::PgConnection::connect(&postgres_admin_url())
            .await
            .expect("the test PostgreSQL (scripts/test.sh starts it)");
        // A process id above the kernel's largest never names a live process.
        let pid_max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .expect("pid_max")
            .trim()
            .parse()
            .expect("pid_max number");
        let ended = pid_max + 1;
        let uuid = uuid::Uuid::new_v4().simple().to_string();
        let gone = format!("{}{ended}_{uuid}", machine_prefix());
        let elsewhere = format!("corral_t_00000000_{ended}_{uuid}");
        for name in [&gone, &elsewhere] {
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .expect("create");
        }
        let url = fresh_postgres_database().await;
        let mine = url.rsplit('/').next().expect("database name").to_owned();
        assert!(!exists(&mut conn, &gone).await, "{gone} was not dropped");
        assert!(
            exists(&mut conn, &mine).await,
            "this live process's {mine} was dropped"
        );
        assert!(
            exists(&mut conn, &elsewhere).await,
            "another machine's {elsewhere} was dropped"
        );
        for name in [&mine, &elsewhere] {
            sqlx::query(&format!("DROP DATABASE {name}"))
                .execute(&mut conn)
                .await
                .expect("drop");
        }
    }
}
