//! End-to-end throughput of no-op executions: enqueue, claim, complete.
//!
//! A *worker* is one task that loops `claim` → `complete` on one execution at a time (no
//! batching, no work in between); all workers of a run share one `Ledger`, as the workers
//! of one process would. When `claim` finds nothing, a worker sleeps 1 ms and polls again.
//! Two shapes:
//! - **drain**: the queue is filled first (timed apart, reported as the enqueue rate), then
//!   the workers empty it;
//! - **steady**: producers (a separate `Ledger`, `args.producers` enqueues in flight) and
//!   the workers run at once; producers hold back while the backlog is above
//!   `MAX_BACKLOG`, so the figure is the rate at which the whole cycle sustains itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use unstuck::{CompleteOutcome, EnqueueOptions, Ledger};

use crate::Args;
use crate::measure::{Latencies, Measured, Window};
use crate::support::{self, QUEUE};

/// Queued-but-unclaimed executions above which steady-state producers wait.
const MAX_BACKLOG: u64 = 5_000;
/// How long an idle worker waits before polling an empty queue again.
const IDLE_POLL: Duration = Duration::from_millis(1);
/// Enqueues in flight while filling the queue for a drain.
const PREFILL_IN_FLIGHT: usize = 64;

/// Shared by the workers of one run.
#[derive(Default)]
struct Progress {
    completed: AtomicU64,
    stop: AtomicBool,
}

/// Fills the queue with `args.executions` (measured: the enqueue rate), then lets
/// `workers` workers drain it, stopping early after `args.seconds`.
pub async fn drain(url: &str, workers: usize, args: &Args) -> (Measured, Measured) {
    let mut admin = support::admin(url).await;
    support::flush(&mut admin).await;
    let ledger = support::ledger(url, "drain", |_| {}).await;

    let window = Window::open(&mut admin).await;
    support::enqueue_many(&ledger, args.executions, PREFILL_IN_FLIGHT).await;
    let enqueued = window.close(&mut admin, args.executions as u64).await;

    let progress = Arc::new(Progress::default());
    let window = Window::open(&mut admin).await;
    let stopper = stop_after(progress.clone(), args.seconds);
    let latencies = run_workers(&ledger, workers, progress.clone(), false).await;
    stopper.abort();
    let done = progress.completed.load(Ordering::Relaxed);
    let drained = window
        .close(&mut admin, done)
        .await
        .with_latencies(latencies);
    if done < args.executions as u64 {
        println!(
            "  (drain/{workers}: stopped after {:?} with {} of {} done)",
            args.seconds, done, args.executions
        );
    }
    (enqueued, drained)
}

/// Producers and `workers` workers at once, for a warm-up and then `args.seconds`.
/// Returns the completions measured and the enqueue rate over the same window.
pub async fn steady(url: &str, workers: usize, args: &Args) -> (Measured, f64) {
    let mut admin = support::admin(url).await;
    support::flush(&mut admin).await;
    let worker_ledger = support::ledger(url, "steady", |_| {}).await;
    let producer_ledger = Ledger::connect(worker_ledger.config().clone())
        .await
        .expect("producer ledger connects");

    let progress = Arc::new(Progress::default());
    let enqueued = Arc::new(AtomicU64::new(0));
    let producer = tokio::spawn(produce(
        producer_ledger,
        args.producers,
        progress.clone(),
        enqueued.clone(),
    ));
    let workers_done = {
        let ledger = worker_ledger.clone();
        let progress = progress.clone();
        tokio::spawn(async move { run_workers(&ledger, workers, progress, true).await })
    };

    tokio::time::sleep(args.warm_up).await;
    let window = Window::open(&mut admin).await;
    let (done_before, enq_before) = (
        progress.completed.load(Ordering::Relaxed),
        enqueued.load(Ordering::Relaxed),
    );
    tokio::time::sleep(args.seconds).await;
    let done = progress.completed.load(Ordering::Relaxed) - done_before;
    let enq = enqueued.load(Ordering::Relaxed) - enq_before;
    let measured = window.close(&mut admin, done).await;
    progress.stop.store(true, Ordering::Relaxed);
    producer.await.expect("the producer panicked");
    // Latencies cover the warm-up too: the workers record every cycle.
    let measured = measured.with_latencies(workers_done.await.expect("a worker panicked"));
    let enqueue_rate = enq as f64 / measured.elapsed.as_secs_f64();
    (measured, enqueue_rate)
}

/// Sets `stop` after `period`, so a drain that is slower than planned still ends.
fn stop_after(progress: Arc<Progress>, period: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::time::sleep(period).await;
        progress.stop.store(true, Ordering::Relaxed);
    })
}

/// Runs `workers` worker tasks until `stop`, or (unless `keep_polling`) until the queue is
/// empty; returns the latency of every claim → complete cycle.
async fn run_workers(
    ledger: &Ledger,
    workers: usize,
    progress: Arc<Progress>,
    keep_polling: bool,
) -> Latencies {
    let handles: Vec<_> = (0..workers)
        .map(|n| {
            let ledger = ledger.clone();
            let progress = progress.clone();
            tokio::spawn(
                async move { work(&ledger, &format!("w{n}"), &progress, keep_polling).await },
            )
        })
        .collect();
    let mut latencies = Latencies::default();
    for handle in handles {
        latencies.merge(handle.await.expect("a worker panicked"));
    }
    latencies
}

/// One worker: claim one execution, complete it, repeat.
async fn work(ledger: &Ledger, name: &str, progress: &Progress, keep_polling: bool) -> Latencies {
    let mut latencies = Latencies::default();
    while !progress.stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let Some(claim) = ledger.claim(QUEUE, name).await.expect("claim succeeds") else {
            if !keep_polling {
                break;
            }
            tokio::time::sleep(IDLE_POLL).await;
            continue;
        };
        let outcome = ledger
            .complete(&claim.token, None)
            .await
            .expect("complete succeeds");
        assert_eq!(
            outcome,
            CompleteOutcome::Recorded {
                slot_released: true
            },
            "completing a claimed execution records it"
        );
        latencies.record(started);
        progress.completed.fetch_add(1, Ordering::Relaxed);
    }
    latencies
}

/// Enqueues `in_flight` at a time until `stop`, waiting while the backlog is too long.
async fn produce(
    ledger: Ledger,
    in_flight: usize,
    progress: Arc<Progress>,
    enqueued: Arc<AtomicU64>,
) {
    let payload = serde_json::json!({"n": 1});
    let (ledger, payload) = (&ledger, &payload);
    let (progress, enqueued) = (&progress, &enqueued);
    stream::repeat(())
        .take_while(|_| std::future::ready(!progress.stop.load(Ordering::Relaxed)))
        .map(|_| async move {
            while enqueued.load(Ordering::Relaxed)
                > progress.completed.load(Ordering::Relaxed) + MAX_BACKLOG
            {
                if progress.stop.load(Ordering::Relaxed) {
                    return;
                }
                tokio::time::sleep(IDLE_POLL).await;
            }
            ledger
                .enqueue(QUEUE, payload, EnqueueOptions::new())
                .await
                .expect("enqueue succeeds");
            enqueued.fetch_add(1, Ordering::Relaxed);
        })
        .buffer_unordered(in_flight)
        .for_each(|_| async {})
        .await;
}
