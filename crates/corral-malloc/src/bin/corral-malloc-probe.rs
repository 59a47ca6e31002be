//! The process the arena tests (`tests/arenas.rs`) start, one per case: arenas belong
//! to a process and a thread keeps the one it got, so each case needs a fresh one.
//! `corral-malloc-probe cap|default` starts eight threads that allocate at once and
//! prints glibc's `malloc_stats` report (one `Arena N:` per arena) on stderr;
//! `corral-malloc-probe trim` prints the RSS around a trim of freed memory.

use std::sync::{Arc, Barrier};

const THREADS: usize = 8;

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
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
        other => panic!("unknown mode {other:?} (cap, default or trim)"),
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

/// The process's resident memory in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[expect(unsafe_code, reason = "glibc's malloc_stats, to count the arenas")]
fn malloc_stats() {
    // SAFETY: malloc_stats takes nothing and prints to stderr.
    unsafe { libc::malloc_stats() }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn malloc_stats() {}
