//! glibc's allocator, tuned for a server that holds many idle connections.
//!
//! glibc gives each new thread an arena of its own, up to eight per core, and memory
//! freed inside an arena stays resident until it lies at the arena's top. A burst of
//! short-lived allocations over many threads therefore leaves holes in many arenas
//! that nothing reuses: after 1,000 live viewers opened in batches of 200 (each
//! request's set-up is freed once its stream runs), `corral-rtbench` measured
//! 7.3–9.0 KB of resident memory per idle subscriber, 5.7–6.8 KB with the free pages
//! handed back every 10 s and half the arenas.
//!
//! [`trim`] hands free pages back to the system; [`cap_arenas`] caps the arenas. Off
//! glibc (musl, macOS) both do nothing: those allocators have no such arenas.

/// glibc's own ways to set the limit: when the environment sets one, the operator
/// chose it and [`cap_arenas`] leaves it.
fn limit_from_environment() -> bool {
    std::env::var_os("MALLOC_ARENA_MAX").is_some()
        || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.arena_max"))
}

/// Caps glibc's malloc arenas at `max` (at least one) unless `MALLOC_ARENA_MAX` or
/// `GLIBC_TUNABLES` sets a limit. Call it first, before other threads start: a thread
/// keeps the arena it was given. Returns the cap it set.
pub fn cap_arenas(max: usize) -> Option<usize> {
    if limit_from_environment() {
        return None;
    }
    let max = max.clamp(1, i32::MAX as usize);
    set_arena_max(max as i32).then_some(max)
}

/// Hands every free page of every arena back to the system. It walks and locks each
/// arena in turn (1–4 ms with 1,000 idle streams), so call it from a periodic job off
/// the async workers, not per request. Returns whether any memory went back.
pub fn trim() -> bool {
    malloc_trim()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[expect(unsafe_code, reason = "glibc's mallopt; it only sets a limit")]
fn set_arena_max(max: i32) -> bool {
    // SAFETY: mallopt takes two integers, reads no memory of ours and is thread-safe.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, max) == 1 }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[expect(
    unsafe_code,
    reason = "glibc's malloc_trim; it only gives free pages back"
)]
fn malloc_trim() -> bool {
    // SAFETY: malloc_trim takes an integer and touches only the allocator's own free
    // chunks, under each arena's lock.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_arena_max(_: i32) -> bool {
    false
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn malloc_trim() -> bool {
    false
}
