//! The soak's traffic: producers enqueueing at a steady rate, and workers finishing what
//! they claim the way the producer planned, so every terminal state keeps arriving.
//!
//! The producer decides each execution's fate (in its payload) by its sequence number,
//! so the mix is the same over any stretch of the run: most succeed (`complete_and_claim`,
//! the chained worker loop), some fail, some are cancelled while running, and a few are
//! abandoned for the watchdog to end as dead (start grace lapsed, no attempt left) or
//! timed out (deadline passed). Idle workers long-poll (`claim_wait`) instead of polling
//! on a timer, so a paced run does not flood Redis with empty claims.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use unstuck::{CancelOutcome, Claim, CompleteOutcome, EnqueueOptions, FailOutcome, Ledger};

/// Executions per `enqueue_many` call; each call goes to the next queue in turn.
const ENQUEUE_BATCH: u64 = 50;
/// `enqueue_many` calls in flight.
const BATCHES_IN_FLIGHT: usize = 4;
/// Queued-but-unclaimed executions above which the producer waits: if the workers cannot
/// keep up with the rate, the backlog (which costs memory too) stays bounded and the
/// table's rate column shows the shortfall.
const MAX_BACKLOG: u64 = 50_000;
/// How long the producer waits before looking at the backlog again.
const BACKLOG_POLL: Duration = Duration::from_millis(5);
/// One long poll of an idle worker (cut short when the run stops).
const CLAIM_WAIT: Duration = Duration::from_secs(1);
/// Start grace (dying ones) and deadline (overrunning ones) of the abandoned executions:
/// short, so the watchdog ends them about a second after their claim.
const ABANDON_AFTER: Duration = Duration::from_secs(1);

/// What the worker that claims an execution does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Completed (and the next one claimed in the same call): succeeded.
    Succeed,
    /// `fail`, not retryable: failed.
    Fail,
    /// Cancelled while running, and the cancellation acknowledged: cancelled.
    Cancel,
    /// Claimed and dropped, one attempt only: dead once its start grace lapses.
    Die,
    /// Claimed and dropped, with a deadline: timed out once it passes.
    Overrun,
}

impl Fate {
    pub const ALL: [Fate; 5] = [
        Fate::Succeed,
        Fate::Fail,
        Fate::Cancel,
        Fate::Die,
        Fate::Overrun,
    ];

    /// The fate of the `n`th execution enqueued: per 1000, 948 succeed, 40 fail,
    /// 10 are cancelled, 1 dies, 1 overruns its deadline.
    fn of_sequence(n: u64) -> Fate {
        match n % 1000 {
            0 => Fate::Die,
            500 => Fate::Overrun,
            r if r % 100 == 1 => Fate::Cancel,
            r if r % 25 == 2 => Fate::Fail,
            _ => Fate::Succeed,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Fate::Succeed => "succeed",
            Fate::Fail => "fail",
            Fate::Cancel => "cancel",
            Fate::Die => "die",
            Fate::Overrun => "overrun",
        }
    }

    /// The payload the producer writes: `{"n":1}` as in the other benches, or the fate.
    fn payload(self) -> Value {
        match self {
            Fate::Succeed => json!({"n": 1}),
            other => json!({"fate": other.name()}),
        }
    }

    fn of_payload(payload: &Value) -> Fate {
        let named = payload.get("fate").and_then(Value::as_str);
        Fate::ALL
            .into_iter()
            .find(|f| Some(f.name()) == named)
            .unwrap_or(Fate::Succeed)
    }

    fn options(self) -> EnqueueOptions {
        match self {
            Fate::Die => EnqueueOptions::new()
                .start_grace(ABANDON_AFTER)
                .max_attempts(1),
            Fate::Overrun => EnqueueOptions::new()
                .deadline(ABANDON_AFTER)
                .max_attempts(1),
            _ => EnqueueOptions::new(),
        }
    }
}

/// What the traffic has done so far, shared by the producer, the workers and the sampler.
#[derive(Default)]
pub struct Counters {
    pub enqueued: AtomicU64,
    /// Executions a worker has claimed and dealt with (abandoned ones included).
    pub handled: AtomicU64,
    /// Of those, by fate, in [`Fate::ALL`] order.
    pub by_fate: [AtomicU64; 5],
}

impl Counters {
    pub fn handled(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
    }

    pub fn enqueued(&self) -> u64 {
        self.enqueued.load(Ordering::Relaxed)
    }

    pub fn fate(&self, fate: Fate) -> u64 {
        let i = Fate::ALL.iter().position(|f| *f == fate).unwrap_or(0);
        self.by_fate[i].load(Ordering::Relaxed)
    }

    fn count(&self, fate: Fate) {
        let i = Fate::ALL.iter().position(|f| *f == fate).unwrap_or(0);
        self.by_fate[i].fetch_add(1, Ordering::Relaxed);
        self.handled.fetch_add(1, Ordering::Relaxed);
    }
}

/// Enqueues `rate` executions a second (0: as fast as the backlog allows) in batches, one
/// queue after the other, until `stop`. Batch `k` is due `k × batch / rate` after the
/// start, so a stall is caught up and the average rate holds.
pub async fn produce(
    ledger: Ledger,
    queues: Vec<String>,
    rate: f64,
    counters: Arc<Counters>,
    stop: CancellationToken,
) {
    let start = Instant::now();
    let payloads: Vec<Value> = Fate::ALL.iter().map(|f| f.payload()).collect();
    let (ledger, queues, payloads) = (&ledger, &queues, &payloads);
    let (counters, stop) = (&counters, &stop);
    stream::iter(0u64..)
        .take_while(|_| std::future::ready(!stop.is_cancelled()))
        .map(|batch| async move {
            if rate > 0.0 {
                let due = start + Duration::from_secs_f64((batch * ENQUEUE_BATCH) as f64 / rate);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep_until(due) => {}
                }
            }
            while counters.enqueued() > counters.handled() + MAX_BACKLOG {
                if stop.is_cancelled() {
                    return;
                }
                tokio::time::sleep(BACKLOG_POLL).await;
            }
            let queue = &queues[(batch % queues.len() as u64) as usize];
            let first = batch * ENQUEUE_BATCH;
            let items = (first..first + ENQUEUE_BATCH).map(|n| {
                let fate = Fate::of_sequence(n);
                let i = Fate::ALL.iter().position(|f| *f == fate).unwrap_or(0);
                (&payloads[i], fate.options())
            });
            ledger
                .enqueue_many(queue, items)
                .await
                .expect("enqueue_many succeeds");
            counters
                .enqueued
                .fetch_add(ENQUEUE_BATCH, Ordering::Relaxed);
        })
        .buffer_unordered(BATCHES_IN_FLIGHT)
        .for_each(|_| async {})
        .await;
}

/// One worker of `queue`: long-polls for an execution, deals with it as its payload says,
/// and takes the next with the completion when it can. Until `stop`; a claim in hand then
/// is completed without taking another.
pub async fn work(
    ledger: Ledger,
    queue: String,
    name: String,
    counters: Arc<Counters>,
    stop: CancellationToken,
) {
    let mut next: Option<Claim> = None;
    loop {
        let claim = match next.take() {
            Some(claim) => claim,
            None if stop.is_cancelled() => return,
            None => {
                let batch = ledger
                    .claim_wait_until(&queue, &name, 1, CLAIM_WAIT, &stop)
                    .await
                    .expect("claim_wait succeeds");
                match batch.claims.into_iter().next() {
                    Some(claim) => claim,
                    None => continue,
                }
            }
        };
        let fate = Fate::of_payload(&claim.payload);
        next = finish(&ledger, &name, claim, fate, stop.is_cancelled()).await;
        counters.count(fate);
    }
}

/// Does what `fate` says with `claim`; returns the next claim when the completion took one.
async fn finish(
    ledger: &Ledger,
    worker: &str,
    claim: Claim,
    fate: Fate,
    stopping: bool,
) -> Option<Claim> {
    let recorded = |outcome: &CompleteOutcome| matches!(outcome, CompleteOutcome::Recorded { .. });
    match fate {
        Fate::Succeed if stopping => {
            let outcome = ledger
                .complete(&claim.token, None)
                .await
                .expect("complete succeeds");
            assert!(recorded(&outcome), "a held attempt completes: {outcome:?}");
            None
        }
        Fate::Succeed => {
            let (outcome, batch) = ledger
                .complete_and_claim(&claim.token, None, worker, 1)
                .await
                .expect("complete_and_claim succeeds");
            assert!(recorded(&outcome), "a held attempt completes: {outcome:?}");
            batch.claims.into_iter().next()
        }
        Fate::Fail => {
            let outcome = ledger
                .fail(&claim.token, "soak: a planned failure", false)
                .await
                .expect("fail succeeds");
            assert!(
                matches!(outcome, FailOutcome::Failed { .. }),
                "a non-retryable failure fails the execution: {outcome:?}"
            );
            None
        }
        Fate::Cancel => {
            let requested = ledger
                .cancel(claim.queue(), claim.id(), "soak: a planned cancellation")
                .await
                .expect("cancel succeeds");
            assert!(
                matches!(requested, CancelOutcome::Requested { .. }),
                "cancelling a claimed execution asks its worker: {requested:?}"
            );
            let outcome = ledger
                .acknowledge_cancel(&claim.token)
                .await
                .expect("acknowledge_cancel succeeds");
            assert!(
                recorded(&outcome),
                "an acknowledged cancel ends it: {outcome:?}"
            );
            None
        }
        // Left for the watchdog to end.
        Fate::Die | Fate::Overrun => None,
    }
}
