//! The run bus: every state change of a run (`pending → running → terminal`) is
//! published here, so that `GET /api/runs/{id}?wait=` wakes up at once and the
//! executor supervising a run learns that another replica cancelled it.
//!
//! On SQLite (one server) the bus is an in-process broadcast. On PostgreSQL a change is
//! published with `pg_notify` and every server (the publisher included) receives it
//! through one `LISTEN` connection, so all replicas see the same stream. A
//! notification lost while the listener reconnects is covered by the executor's
//! periodic status check and by the long poll's deadline.

use std::time::Duration;

use corral_core::{OrgId, RunId, RunStatus};
use corral_store::{Backend, Db};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::revoke::Revocation;

pub const CHANNEL: &str = "corral_run_status";
/// Realtime events (`realtime_events` rows), notified by the database triggers.
pub const EVENTS_CHANNEL: &str = "corral_events";
/// Revoked credentials and memberships ([`crate::revoke`]).
pub const REVOKE_CHANNEL: &str = "corral_revocations";
/// Webhook deliveries were written (migration 0015's trigger).
pub const WEBHOOKS_CHANNEL: &str = "corral_webhooks";

/// The payload of an [`EVENTS_CHANNEL`] notification (ids only).
#[derive(Debug, Deserialize)]
struct EventNote {
    o: OrgId,
    s: i64,
}

/// A run changed status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSignal {
    pub run_id: RunId,
    pub status: RunStatus,
}

#[derive(Clone)]
pub struct RunBus {
    tx: broadcast::Sender<RunSignal>,
    revoked: broadcast::Sender<Revocation>,
    db: Db,
    /// Tells the realtime hub that events were written.
    pub events: crate::Pokes,
    /// Tells the webhook worker that deliveries were written (PostgreSQL).
    pub webhooks: std::sync::Arc<tokio::sync::Notify>,
}

impl RunBus {
    pub fn new(db: Db) -> RunBus {
        let (tx, _) = broadcast::channel(4096);
        let (revoked, _) = broadcast::channel(1024);
        RunBus {
            tx,
            revoked,
            db,
            events: Default::default(),
            webhooks: Default::default(),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<RunSignal> {
        self.tx.subscribe()
    }

    pub fn revocations(&self) -> broadcast::Receiver<Revocation> {
        self.revoked.subscribe()
    }

    /// Announces a revocation to every server (after it is committed), so the streams
    /// it authorised end within a second wherever they are served.
    /// Delivered here at once (a second delivery through LISTEN is harmless: a
    /// stream ends once).
    pub async fn revoke(&self, r: Revocation) {
        if self.db.backend() == Backend::Postgres {
            let payload = serde_json::to_string(&r).unwrap_or_default();
            let sent = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(REVOKE_CHANNEL)
                .bind(payload)
                .execute(self.db.pool())
                .await;
            if let Err(e) = sent {
                tracing::warn!(error = %e, "pg_notify failed; revoking on this server only");
            }
        }
        let _ = self.revoked.send(r);
    }

    /// Announces a change to every server. Never fails the caller: the state is
    /// already committed, and the watchers have periodic fallbacks.
    pub async fn publish(&self, run_id: &RunId, status: RunStatus) {
        let signal = RunSignal {
            run_id: run_id.to_owned(),
            status,
        };
        match self.db.backend() {
            Backend::Sqlite => {
                let _ = self.tx.send(signal);
                self.events.poke_all();
            }
            Backend::Postgres => {
                let payload = serde_json::to_string(&signal).unwrap_or_default();
                let sent = sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(CHANNEL)
                    .bind(payload)
                    .execute(self.db.pool())
                    .await;
                if let Err(e) = sent {
                    tracing::warn!(error = %e, %run_id, "pg_notify failed; delivering locally only");
                    let _ = self.tx.send(signal);
                }
            }
        }
    }

    /// On SQLite: realtime events of `org` were committed (PostgreSQL notifies by
    /// itself, from the triggers).
    pub fn events_written(&self, org: &OrgId) {
        if self.db.backend() == Backend::Sqlite {
            self.events.poke(org, i64::MAX);
        }
    }

    /// On PostgreSQL: listens on [`CHANNEL`], [`EVENTS_CHANNEL`], [`REVOKE_CHANNEL`] and
    /// [`WEBHOOKS_CHANNEL`] until `stop` (one
    /// connection per server), reconnecting after errors, and forwards each
    /// notification to the local subscribers. After a reconnect the realtime hub
    /// re-reads what it may have missed.
    pub async fn listen(self, database_url: String, stop: CancellationToken) {
        if self.db.backend() != Backend::Postgres {
            return;
        }
        loop {
            let listener = async {
                let mut l = sqlx::postgres::PgListener::connect(&database_url).await?;
                l.listen_all([CHANNEL, EVENTS_CHANNEL, REVOKE_CHANNEL, WEBHOOKS_CHANNEL])
                    .await?;
                Ok::<_, sqlx::Error>(l)
            };
            let mut listener = tokio::select! {
                _ = stop.cancelled() => return,
                l = listener => match l {
                    Ok(l) => {
                        self.events.poke_all();
                        l
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "run bus: LISTEN failed; retrying");
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        }
                    }
                },
            };
            loop {
                let n = tokio::select! {
                    _ = stop.cancelled() => return,
                    n = listener.try_recv() => n,
                };
                match n {
                    Ok(Some(n)) if n.channel() == EVENTS_CHANNEL => {
                        if let Ok(note) = serde_json::from_str::<EventNote>(n.payload()) {
                            self.events.poke(&note.o, note.s);
                        }
                    }
                    Ok(Some(n)) if n.channel() == WEBHOOKS_CHANNEL => {
                        self.webhooks.notify_one();
                    }
                    Ok(Some(n)) if n.channel() == REVOKE_CHANNEL => {
                        if let Ok(r) = serde_json::from_str::<Revocation>(n.payload()) {
                            let _ = self.revoked.send(r);
                        }
                    }
                    Ok(Some(n)) => {
                        if let Ok(signal) = serde_json::from_str::<RunSignal>(n.payload()) {
                            let _ = self.tx.send(signal);
                        }
                    }
                    // The connection dropped; sqlx reconnects on the next call, and
                    // whatever was notified meanwhile is read back from the table.
                    Ok(None) => {
                        tracing::warn!("run bus: LISTEN connection lost; reconnecting");
                        self.events.poke_all();
                        self.webhooks.notify_one();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "run bus: LISTEN failed; reconnecting");
                        break;
                    }
                }
            }
        }
    }
}
