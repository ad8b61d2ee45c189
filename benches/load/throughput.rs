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
//!
//! Each shape runs in two styles: **per call** (`enqueue`, `claim`, `complete`: one script
//! call per step) and **chained** (a worker finishes one execution and takes the next with
//! `complete_and_claim`, producers enqueue with `enqueue_many` in batches of
//! `ENQUEUE_BATCH`), the calls a worker loop and a fan-out orchestrator would use.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt, TryStreamExt};
use unstuck::{Claim, CompleteOutcome, EnqueueOptions, Ledger};

use crate::Args;
use crate::measure::{Latencies, Measured, Window};
use crate::support::{self, QUEUE};

/// Queued-but-unclaimed executions above which steady-state producers wait.
const MAX_BACKLOG: u64 = 5_000;
/// How long an idle worker waits before polling an empty queue again.
const IDLE_POLL: Duration = Duration::from_millis(1);
/// Enqueues in flight while filling the queue for a drain.
const PREFILL_IN_FLIGHT: usize = 64;
/// Executions per `enqueue_many` call in the chained style.
const ENQUEUE_BATCH: usize = 50;
/// `enqueue_many` calls in flight in the chained style.
const BATCHES_IN_FLIGHT: usize = 4;

/// Which calls the workers and producers make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `enqueue`, then `claim` and `complete`: one script call per step.
    PerCall,
    /// `enqueue_many` batches, and `complete_and_claim` to finish one and take the next.
    Chained,
}

/// Shared by the workers of one run.
#[derive(Default)]
struct Progress {
    completed: AtomicU64,
    stop: AtomicBool,
}

/// Fills the queue with `args.executions` (measured: the enqueue rate), then lets
/// `workers` workers drain it, stopping early after `args.seconds`.
pub async fn drain(url: &str, workers: usize, style: Style, args: &Args) -> (Measured, Measured) {
    let mut admin = support::admin(url).await;
    support::flush(&mut admin).await;
    let ledger = support::ledger(url, "drain", |_| {}).await;

    let window = Window::open(&mut admin).await;
    match style {
        Style::PerCall => support::enqueue_many(&ledger, args.executions, PREFILL_IN_FLIGHT).await,
        Style::Chained => enqueue_batches(&ledger, args.executions).await,
    }
    let enqueued = window.close(&mut admin, args.executions as u64).await;

    let progress = Arc::new(Progress::default());
    let window = Window::open(&mut admin).await;
    let stopper = stop_after(progress.clone(), args.seconds);
    let latencies = run_workers(&ledger, workers, style, progress.clone(), false).await;
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
pub async fn steady(url: &str, workers: usize, style: Style, args: &Args) -> (Measured, f64) {
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
        style,
        args.producers,
        progress.clone(),
        enqueued.clone(),
    ));
    let workers_done = {
        let ledger = worker_ledger.clone();
        let progress = progress.clone();
        tokio::spawn(async move { run_workers(&ledger, workers, style, progress, true).await })
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
    style: Style,
    progress: Arc<Progress>,
    keep_polling: bool,
) -> Latencies {
    let handles: Vec<_> = (0..workers)
        .map(|n| {
            let ledger = ledger.clone();
            let progress = progress.clone();
            tokio::spawn(async move {
                let name = format!("w{n}");
                work(&ledger, &name, style, &progress, keep_polling).await
            })
        })
        .collect();
    let mut latencies = Latencies::default();
    for handle in handles {
        latencies.merge(handle.await.expect("a worker panicked"));
    }
    latencies
}

/// One worker: claim one execution, complete it, repeat. Chained, the completion claims
/// the next one in the same call; a plain `claim` polls only when that found nothing.
async fn work(
    ledger: &Ledger,
    name: &str,
    style: Style,
    progress: &Progress,
    keep_polling: bool,
) -> Latencies {
    let mut latencies = Latencies::default();
    let mut next: Option<Claim> = None;
    while !progress.stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let claim = match next.take() {
            Some(claim) => claim,
            None => match ledger.claim(QUEUE, name).await.expect("claim succeeds") {
                Some(claim) => claim,
                None if keep_polling => {
                    tokio::time::sleep(IDLE_POLL).await;
                    continue;
                }
                None => break,
            },
        };
        let outcome = match style {
            Style::PerCall => ledger
                .complete(&claim.token, None)
                .await
                .expect("complete succeeds"),
            Style::Chained => {
                let (outcome, batch) = ledger
                    .complete_and_claim(&claim.token, None, name, 1)
                    .await
                    .expect("complete_and_claim succeeds");
                next = batch.claims.into_iter().next();
                outcome
            }
        };
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
    // Stopped with a claim in hand: hand it back done, so no slot stays held.
    if let Some(claim) = next {
        ledger
            .complete(&claim.token, None)
            .await
            .expect("complete succeeds");
    }
    latencies
}

/// Fills the queue with `n` executions in `enqueue_many` batches.
async fn enqueue_batches(ledger: &Ledger, n: usize) {
    let payload = serde_json::json!({"n": 1});
    let payload = &payload;
    stream::iter((0..n).step_by(ENQUEUE_BATCH))
        .map(|start| async move {
            let size = ENQUEUE_BATCH.min(n - start);
            let items = (0..size).map(|_| (payload, EnqueueOptions::new()));
            ledger.enqueue_many(QUEUE, items).await.map(|e| e.len())
        })
        .buffer_unordered(BATCHES_IN_FLIGHT)
        .try_for_each(|_| async { Ok(()) })
        .await
        .expect("enqueue_many succeeds");
}

/// Enqueues `in_flight` at a time (per call) or `BATCHES_IN_FLIGHT` batches of
/// `ENQUEUE_BATCH` (chained) until `stop`, waiting while the backlog is too long.
async fn produce(
    ledger: Ledger,
    style: Style,
    in_flight: usize,
    progress: Arc<Progress>,
    enqueued: Arc<AtomicU64>,
) {
    let payload = serde_json::json!({"n": 1});
    let (ledger, payload) = (&ledger, &payload);
    let (progress, enqueued) = (&progress, &enqueued);
    let (in_flight, batch) = match style {
        Style::PerCall => (in_flight, 1),
        Style::Chained => (BATCHES_IN_FLIGHT, ENQUEUE_BATCH),
    };
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
            if batch == 1 {
                ledger
                    .enqueue(QUEUE, payload, EnqueueOptions::new())
                    .await
                    .expect("enqueue succeeds");
            } else {
                let items = (0..batch).map(|_| (payload, EnqueueOptions::new()));
                ledger
                    .enqueue_many(QUEUE, items)
                    .await
                    .expect("enqueue_many succeeds");
            }
            enqueued.fetch_add(batch as u64, Ordering::Relaxed);
        })
        .buffer_unordered(in_flight)
        .for_each(|_| async {})
        .await;
}
