//! What agents remember (SPEC §13): `note` adds an archive memory, `pin` sets a named
//! slot, both kept per agent, application and actor with the run they came from.
//! Pinned slots are handed to the agent's next runs; archive memories are searched
//! by `recall_memory` through the platform's internal API.
//!
//! Limits: a memory or a slot's value holds at most [`MAX_ITEM_BYTES`]; an actor
//! keeps at most [`MAX_MEMORIES`] memories and [`MAX_PINNED`] slots per agent. What
//! goes over is not stored, and the run's log says so (a warning naming the limit).

use corral_core::time::now_ms;
use corral_protocol::events::EventPayload;
use corral_store::memory::{self as store, Actor, Scope};
use corral_store::runs::Run;
use serde_json::Value;

pub use corral_protocol::platform_api::MAX_MEMORY_BYTES as MAX_ITEM_BYTES;

/// Archive memories per agent, application and actor.
pub const MAX_MEMORIES: i64 = 1_000;
/// Pinned slots per agent, application and actor.
pub const MAX_PINNED: i64 = 50;

/// Whose memory a run reads and writes: its end-user, else its user, else the
/// member who created its API key, else the application's shared memory.
pub async fn actor_of(conn: &mut corral_store::Conn, run: &Run) -> corral_store::Result<Actor> {
    if let Some(eu) = &run.end_user_id {
        return Ok(Actor::end_user(eu));
    }
    if let Some(u) = &run.user_id {
        return Ok(Actor::user(u));
    }
    if let Some(k) = &run.api_key_id {
        let key = corral_store::api_keys::get(conn, &run.org_id, &run.application_id, k).await?;
        if let Some(creator) = key.and_then(|k| k.created_by) {
            return Ok(Actor::user(&creator));
        }
    }
    Ok(Actor::shared())
}

/// The memory scope of a package run (`None` for an inline run, which has no agent
/// identity to remember under).
pub async fn scope_of(
    conn: &mut corral_store::Conn,
    run: &Run,
) -> corral_store::Result<Option<Scope>> {
    let Some(package_id) = run.package_id.clone().filter(|_| run.kind == "package") else {
        return Ok(None);
    };
    Ok(Some(Scope {
        org_id: run.org_id.clone(),
        app_id: run.application_id.clone(),
        package_id,
        actor: actor_of(conn, run).await?,
    }))
}

/// Stores a `memory.added` or `pinned.set` event of `run` (inside the ingest
/// transaction). Returns the warning to log when a limit refused it.
pub async fn record(
    conn: &mut corral_store::Conn,
    run: &Run,
    payload: &EventPayload,
) -> corral_store::Result<Option<String>> {
    if !matches!(payload, EventPayload::Memory(_) | EventPayload::Pinned(_)) {
        return Ok(None);
    }
    let Some(scope) = scope_of(conn, run).await? else {
        return Ok(Some(
            "an inline run has no agent to remember under; the memory was not kept".into(),
        ));
    };
    let now = now_ms();
    let run_id = Some(run.id.as_str());
    match payload {
        EventPayload::Memory(m) => {
            let content = corral_core::text::without_nul(m.content.trim());
            if content.is_empty() {
                return Ok(None);
            }
            if content.len() > MAX_ITEM_BYTES {
                return Ok(Some(format!(
                    "memory not kept: {} bytes, over the limit of {MAX_ITEM_BYTES} per memory",
                    content.len()
                )));
            }
            if store::count(conn, &scope, false).await? >= MAX_MEMORIES {
                return Ok(Some(format!(
                    "memory not kept: this agent already holds {MAX_MEMORIES} memories for this \
                     actor; delete some (DELETE /api/agents/{}/persistence)",
                    scope.package_id
                )));
            }
            store::add_memory(conn, &scope, &content, run_id, now).await?;
        }
        EventPayload::Pinned(p) => {
            let json = p.value.to_string();
            if p.key.is_empty() || p.key.len() > 200 {
                return Ok(Some(
                    "pinned slot not kept: its key must have 1 to 200 bytes".into(),
                ));
            }
            if json.len() > MAX_ITEM_BYTES {
                return Ok(Some(format!(
                    "pinned slot {:?} not kept: {} bytes, over the limit of {MAX_ITEM_BYTES}",
                    p.key,
                    json.len()
                )));
            }
            if !store::has_pinned(conn, &scope, &p.key).await?
                && store::count(conn, &scope, true).await? >= MAX_PINNED
            {
                return Ok(Some(format!(
                    "pinned slot {:?} not kept: this agent already holds {MAX_PINNED} slots for \
                     this actor",
                    p.key
                )));
            }
            store::set_pinned(conn, &scope, &p.key, &json, run_id, now).await?;
        }
        _ => {}
    }
    Ok(None)
}

/// The pinned slots a run starts with (the actor's, then shared ones), by key.
pub async fn pinned_for_run(
    conn: &mut corral_store::Conn,
    run: &Run,
) -> corral_store::Result<Vec<(String, Value)>> {
    let Some(scope) = scope_of(conn, run).await? else {
        return Ok(Vec::new());
    };
    Ok(store::pinned_for(conn, &scope)
        .await?
        .into_iter()
        .filter_map(|i| {
            let value = serde_json::from_str(&i.content).unwrap_or(Value::String(i.content));
            i.key.map(|k| (k, value))
        })
        .collect())
}
