//! One subscriber's stream (SPEC §10): a first burst (a ping, then any snapshot the
//! caller renders), the replay of everything after the client's `Last-Event-ID` read
//! back from `realtime_events`, then the live frames — with no gap and no duplicate:
//! the subscription is registered before the replay is read, and live frames at or
//! below the last replayed number are skipped. A ping every 30 s keeps proxies open.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use corral_core::OrgId;
use corral_store::realtime as rt_store;
use futures::Stream;

use crate::{render, Filter, Hub, Subscription};

/// Heartbeat period (SPEC §10).
const PING_EVERY: Duration = Duration::from_secs(30);
/// Rows read per replay page.
const REPLAY_PAGE: i64 = 500;

fn ping() -> Bytes {
    Bytes::from_static(b"event: ping\ndata: \n\n")
}

/// The stream's state between frames.
struct Live {
    hub: Hub,
    filter: Arc<Filter>,
    sub: Subscription,
    pending: VecDeque<Bytes>,
    /// Replay still to read: events after this number.
    replay_after: Option<i64>,
    last_sent: i64,
    ping: tokio::time::Interval,
}

impl Live {
    async fn replay_page(&mut self, after: i64) -> corral_store::Result<()> {
        let mut conn = self.hub.inner.db.conn().await?;
        let events = rt_store::after(
            &mut conn,
            &self.sub.org,
            after,
            &self.filter.store_scope(),
            REPLAY_PAGE,
        )
        .await?;
        let done = (events.len() as i64) < REPLAY_PAGE;
        let mut last = after;
        for e in &events {
            last = e.seq;
            if let Some(f) = render(e) {
                if self.filter.channels & (f.kind as u8) != 0 {
                    self.pending.push_back(if self.sub.verbose {
                        f.verbose.clone()
                    } else {
                        f.plain.clone()
                    });
                }
            }
        }
        self.last_sent = self.last_sent.max(last);
        self.replay_after = (!done).then_some(last);
        Ok(())
    }

    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(b) = self.pending.pop_front() {
                if self.pending.is_empty() {
                    // Free the first burst's room: an idle stream keeps nothing.
                    self.pending = VecDeque::new();
                }
                return Some(b);
            }
            if self.sub.overflowed.load(Ordering::SeqCst) {
                // Dropped for falling behind: end the stream; the client reconnects
                // with its last id and catches up from the table.
                return None;
            }
            if let Some(after) = self.replay_after {
                // Boxed: the replay's database futures are large and rare, and would
                // otherwise size every idle subscriber's stream state.
                if let Err(e) = Box::pin(self.replay_page(after)).await {
                    tracing::warn!(error = %e, "realtime replay failed; closing the stream");
                    return None;
                }
                continue;
            }
            tokio::select! {
                f = self.sub.rx.recv_async() => match f {
                    Ok(f) => {
                        if f.seq <= self.last_sent {
                            continue;
                        }
                        self.last_sent = f.seq;
                        return Some(if self.sub.verbose { f.verbose.clone() } else { f.plain.clone() });
                    }
                    Err(_) => return None,
                },
                _ = self.ping.tick() => return Some(ping()),
            }
        }
    }
}

impl Hub {
    /// Subscribes `filter` in `org` and returns its SSE byte stream: the `first`
    /// frames (after an initial ping), the replay after `last_event_id`, then live
    /// frames. `first` (a snapshot) is read once the subscription exists, so a change
    /// committed while the stream opens is in the snapshot or arrives live, never
    /// lost in between. The stream ends when the subscriber falls too far behind
    /// (the client reconnects with its last id) or the hub stops.
    pub async fn stream(
        &self,
        org: &OrgId,
        filter: Filter,
        verbose: bool,
        last_event_id: Option<i64>,
        first: impl Future<Output = corral_store::Result<Vec<Bytes>>>,
    ) -> corral_store::Result<impl Stream<Item = Bytes> + Send + 'static> {
        let filter = Arc::new(filter);
        let sub = self.subscribe(org, filter.clone(), verbose).await?;
        let first = first.await?;
        let mut heartbeat =
            tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pending = VecDeque::with_capacity(first.len() + 1);
        pending.push_back(ping());
        pending.extend(first);
        let live = Live {
            hub: self.clone(),
            filter,
            sub,
            pending,
            replay_after: last_event_id,
            last_sent: 0,
            ping: heartbeat,
        };
        Ok(futures::stream::unfold(live, |mut live| async move {
            live.next().await.map(|b| (b, live))
        }))
    }
}
