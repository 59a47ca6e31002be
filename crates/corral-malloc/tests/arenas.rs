//! The cap holds against many threads allocating at once, and a trim gives freed
//! pages back. Arenas are per process and a thread keeps the one it got, so each case
//! runs in a fresh `corral-malloc-probe` (`src/bin`), and glibc's `malloc_stats`
//! report, which lists each arena, is read from its stderr.

use std::process::Command;

const THREADS: usize = 8;

/// Runs the probe in `mode` and returns (what it printed, its arena count).
fn run(mode: &str, env: &[(&str, &str)]) -> (String, usize) {
    let out = Command::new(env!("CARGO_BIN_EXE_corral-malloc-probe"))
        .arg(mode)
        .env_remove("MALLOC_ARENA_MAX")
        .env_remove("GLIBC_TUNABLES")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let arenas = stderr.lines().filter(|l| l.starts_with("Arena ")).count();
    (stdout, arenas)
}

#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn arenas_are_capped() {
    // Without the cap, each thread gets an arena of its own (up to glibc's eight per
    // core): the test can tell.
    let (_, arenas) = run("default", &[]);
    assert!(arenas > 4, "{arenas} arenas for {THREADS} threads");

    let (out, arenas) = run("cap", &[]);
    assert!(out.contains("capped=Some(2)"), "{out}");
    assert!(arenas <= 2, "{arenas} arenas with the cap at 2");

    // A limit the operator set through glibc wins.
    let (out, arenas) = run("cap", &[("MALLOC_ARENA_MAX", "4")]);
    assert!(out.contains("capped=None"), "{out}");
    assert_eq!(arenas, 4);
    let (out, _) = run("cap", &[("GLIBC_TUNABLES", "glibc.malloc.arena_max=3")]);
    assert!(out.contains("capped=None"), "{out}");
}

#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_gives_freed_pages_back() {
    let (out, _) = run("trim", &[]);
    let kib = |key: &str| -> u64 {
        let line = out.lines().find(|l| l.starts_with(key)).expect(key);
        line[key.len()..].trim().parse().unwrap()
    };
    let (before, after) = (kib("rss_before="), kib("rss_after="));
    // 32 MiB were freed below a chunk still in use, where glibc keeps them resident.
    assert!(
        before.saturating_sub(after) > 16 * 1024,
        "resident {before} KiB before the trim, {after} KiB after"
    );
}
