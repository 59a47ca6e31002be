//! The cap holds against many threads allocating at once. Arenas are per process and a
//! thread keeps the one it got, so each case runs in a fresh copy of this test binary
//! (the `child` test, which does nothing unless started by `arenas_are_capped`), and
//! glibc's `malloc_stats` report, which lists each arena, is read from its stderr.

use std::process::Command;
use std::sync::{Arc, Barrier};

const MODE: &str = "CORRAL_MALLOC_TEST_MODE";
const THREADS: usize = 8;

#[test]
fn child() {
    let Ok(mode) = std::env::var(MODE) else {
        return;
    };
    let capped = match mode.as_str() {
        "cap" => corral_malloc::cap_arenas(2),
        "default" => None,
        "trim" => {
            // 32 MiB in small blocks, then one block after them that stays: the freed
            // ones are not at the arena's top, so glibc keeps them resident.
            let blocks: Vec<Vec<u8>> = (0..32 * 1024).map(|_| vec![1u8; 1000]).collect();
            let pin = vec![1u8; 1000];
            drop(blocks);
            println!("rss_before={}", rss_kib());
            corral_malloc::trim();
            println!("rss_after={}", rss_kib());
            drop(pin);
            return;
        }
        other => panic!("unknown mode {other}"),
    };
    println!("capped={capped:?}");
    // Every thread allocates while all the others are alive and allocating.
    let barrier = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|i| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let kept: Vec<Vec<u8>> = (0..200).map(|j| vec![i as u8; 512 + j]).collect();
                barrier.wait();
                kept.len()
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 200);
    }
    malloc_stats();
}

#[expect(unsafe_code, reason = "glibc's malloc_stats, to count the arenas")]
fn malloc_stats() {
    // SAFETY: malloc_stats takes nothing and prints to stderr.
    unsafe { libc::malloc_stats() }
}

/// Runs `child` in a new process and returns (what it printed, its arena count).
fn run(mode: &str, env: &[(&str, &str)]) -> (String, usize) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(MODE, mode)
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
        // libtest prints the test's name on the same line as its first output.
        let at = out.find(key).expect(key) + key.len();
        let digits = out[at..].split(|c: char| !c.is_ascii_digit()).next();
        digits.unwrap().parse().unwrap()
    };
    let (before, after) = (kib("rss_before="), kib("rss_after="));
    // 32 MiB were freed below a chunk still in use, where glibc keeps them resident.
    assert!(
        before.saturating_sub(after) > 16 * 1024,
        "resident {before} KiB before the trim, {after} KiB after"
    );
}

/// The process's resident memory in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}
