//! The fleet scenario's load generator: every running execution beaten once per period
//! through `Ledger::heartbeat_many`, one batch (one queue, so one script call) at a time,
//! the batches' starts spread evenly over the period; and the beater of the executions
//! that go silent, each beaten until its own instant and never again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use unstuck::{AttemptToken, Heartbeat, Ledger, MAX_HEARTBEAT_BATCH};

/// One heartbeat call's worth: the attempts claimed together from one queue.
pub(crate) type Batch = Arc<Vec<(AttemptToken, Heartbeat)>>;

/// What the generator did, read and reset by each measurement window.
#[derive(Default)]
pub(crate) struct Counters {
    /// Beats answered "alive, carry on".
    pub(crate) beats: AtomicU64,
    /// Beats answered anything else (stale, terminal, cancel requested, an error), or
    /// lost with a failed call: each one a beat the fleet needed and did not get.
    pub(crate) refused: AtomicU64,
    pub(crate) calls: AtomicU64,
    /// How far behind its slot in the period the latest batch started, in ms.
    pub(crate) max_late_ms: AtomicU64,
    /// The longest heartbeat call, in ms.
    pub(crate) max_call_ms: AtomicU64,
}

impl Counters {
    pub(crate) fn beats(&self) -> u64 {
        self.beats.load(Ordering::Relaxed)
    }

    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    pub(crate) fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The window's worst lateness and longest call, in ms; both start again from 0.
    pub(crate) fn take_maxima(&self) -> (u64, u64) {
        (
            self.max_late_ms.swap(0, Ordering::Relaxed),
            self.max_call_ms.swap(0, Ordering::Relaxed),
        )
    }
}

/// Sends one batch and counts its replies.
pub(crate) async fn beat(ledger: &Ledger, batch: &[(AttemptToken, Heartbeat)], c: &Counters) {
    let began = Instant::now();
    let replies = ledger.heartbeat_many(batch).await;
    c.max_call_ms
        .fetch_max(began.elapsed().as_millis() as u64, Ordering::Relaxed);
    c.calls.fetch_add(1, Ordering::Relaxed);
    let (mut ok, mut refused) = (0, 0);
    match replies {
        Ok(replies) => {
            for reply in replies {
                match reply {
                    Ok(r) if !r.should_stop() => ok += 1,
                    _ => refused += 1,
                }
            }
        }
        Err(error) => {
            eprintln!("fleet: a heartbeat call failed: {error}");
            refused = batch.len() as u64;
        }
    }
    c.beats.fetch_add(ok, Ordering::Relaxed);
    c.refused.fetch_add(refused, Ordering::Relaxed);
}

/// Beats every batch once per `period`, batch k of n starting at `k × period / n` into each
/// period, at most `in_flight` calls at once. A batch whose slot comes while `in_flight`
/// calls are still out waits for one (its lateness is counted), so the generator falls
/// behind instead of piling up calls. Runs until `stop`.
pub(crate) fn spawn_fleet(
    ledger: Ledger,
    batches: Vec<Batch>,
    period: Duration,
    in_flight: usize,
    counters: Arc<Counters>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let step = period / batches.len().max(1) as u32;
        let permits = Arc::new(Semaphore::new(in_flight));
        let start = tokio::time::Instant::now();
        let mut slot: u32 = 0;
        'periods: loop {
            for batch in &batches {
                let due = start + step * slot;
                slot += 1;
                tokio::select! {
                    _ = stop.cancelled() => break 'periods,
                    _ = tokio::time::sleep_until(due) => {}
                }
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break 'periods;
                };
                let late = due.elapsed().as_millis() as u64;
                counters.max_late_ms.fetch_max(late, Ordering::Relaxed);
                let (ledger, batch, c) = (ledger.clone(), batch.clone(), counters.clone());
                tokio::spawn(async move {
                    beat(&ledger, &batch, &c).await;
                    drop(permit);
                });
            }
        }
        // Let the calls still out finish, so a later window counts nothing of this one.
        let _ = permits.acquire_many(in_flight as u32).await;
    })
}

/// Beats each of `silent` every `every` until its own instant, then never again; returns
/// once the last one has gone silent. Its beats count in `counters` like the fleet's.
pub(crate) fn spawn_silent(
    ledger: Ledger,
    mut silent: Vec<(AttemptToken, Instant)>,
    every: Duration,
    counters: Arc<Counters>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        loop {
            ticker.tick().await;
            let now = Instant::now();
            silent.retain(|(_, until)| *until > now);
            if silent.is_empty() {
                return;
            }
            let beats: Vec<_> = silent
                .iter()
                .map(|(token, _)| (token.clone(), Heartbeat::new()))
                .collect();
            for chunk in beats.chunks(MAX_HEARTBEAT_BATCH) {
                beat(&ledger, chunk, &counters).await;
            }
        }
    })
}
