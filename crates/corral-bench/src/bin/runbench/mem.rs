//! Samples, every 100 ms, the server's RSS plus the memory of its sandboxes
//! (Docker: `memory_stats.usage` of the running managed containers; process
//! backend: the RSS of the server's descendants) and keeps the peaks.

use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::engine::{descendants, rss_bytes, Engine};

#[derive(Debug, Default, Clone, Copy)]
pub struct Peaks {
    pub samples: usize,
    pub server: u64,
    pub sandboxes: u64,
    /// Peak of the simultaneous sum (not the sum of the peaks).
    pub total: u64,
    /// Most containers / sandbox processes seen in one sample.
    pub units: usize,
    /// Slowest sample (listing + stats calls), ms.
    pub slowest_sample_ms: f64,
    /// First sample: the idle figure before the load.
    pub idle_total: u64,
}

pub struct Sampler {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Peaks>,
}

impl Sampler {
    pub fn start(server_pid: u32, engine: Option<Engine>) -> Sampler {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut peaks = Peaks::default();
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {}
                }
                let t = Instant::now();
                let server = rss_bytes(server_pid);
                let (sandboxes, units) = match &engine {
                    Some(e) => e.managed_memory().await.unwrap_or((0, 0)),
                    None => {
                        let d = descendants(server_pid);
                        (d.iter().map(|(pid, _)| rss_bytes(*pid)).sum(), d.len())
                    }
                };
                let total = server + sandboxes;
                if peaks.samples == 0 {
                    peaks.idle_total = total;
                }
                peaks.samples += 1;
                peaks.server = peaks.server.max(server);
                peaks.sandboxes = peaks.sandboxes.max(sandboxes);
                peaks.total = peaks.total.max(total);
                peaks.units = peaks.units.max(units);
                peaks.slowest_sample_ms = peaks
                    .slowest_sample_ms
                    .max(t.elapsed().as_secs_f64() * 1000.0);
            }
            peaks
        });
        Sampler { stop, task }
    }

    pub async fn finish(self) -> Peaks {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}
