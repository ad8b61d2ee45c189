//! Heartbeats that fall due together go together: the beats of every attempt a worker
//! holds reach Redis as [`Ledger::heartbeat_many`] calls, each caller getting its own reply.
//!
//! Every beat of the Runner and of `unstuck exec` goes through the worker's [`Coalescer`]
//! (its loops' beats, and the last beats that flush progress and usage). A beat handed to it
//! joins the batch being gathered and waits for its reply. A batch leaves when the first
//! beat in it has waited its [`hold`] (at most [`MAX_HOLD`], a tenth of its interval when
//! that is shorter), or at once when it is full ([`MAX_HEARTBEAT_BATCH`]); up to
//! [`IN_FLIGHT`] calls run at once, and beats that come meanwhile gather for the next.
//!
//! Beats would rarely fall due within a few milliseconds of each other on their own: a
//! worker claims its attempts at different moments. So when a batch starts gathering, the
//! attempts whose next beat is due within a quarter of their interval beat now, in it
//! ([`Coalescer::until_due`]). A beat never goes later than it would have, only sometimes
//! earlier, and attempts with the same interval stay together from then on: a worker
//! holding hundreds of attempts sends a handful of calls per interval, not one per attempt.
//! When an execution is judged does not change (the watchdog reads the last beat and the
//! heartbeat timeout, both as before).
//!
//! A reply means what it meant for a beat sent alone: each beat is judged by itself in the
//! script, and a call that fails as a whole (Redis unreachable) fails each of its beats
//! with that error, which every caller retries as before.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::ledger::{AttemptToken, Heartbeat, HeartbeatReply, Ledger, MAX_HEARTBEAT_BATCH};

/// Longest a beat waits for others to join its batch.
pub(crate) const MAX_HOLD: Duration = Duration::from_millis(5);
/// Calls in flight at once: one slow partition (a Cluster node that stalls) does not hold
/// back the beats that come after it.
const IN_FLIGHT: usize = 4;

/// How long a beat of an attempt beaten every `interval` may wait for company: a tenth of
/// the interval, at most [`MAX_HOLD`]. A loop hands its beat this much before it is due,
/// so the batch leaves by then.
pub(crate) fn hold(interval: Duration) -> Duration {
    (interval / 10).min(MAX_HOLD)
}

/// How much earlier than due a beat goes when a batch starts gathering.
fn early(interval: Duration) -> Duration {
    interval / 4
}

/// A worker's heartbeat batcher. Clones share one dispatcher task, which ends once every
/// clone is dropped; it runs on the runtime that started it, with that runtime's
/// connection, while callers may be on any runtime.
#[derive(Clone)]
pub(crate) struct Coalescer {
    items: mpsc::UnboundedSender<Item>,
    /// Fires when a batch starts gathering: beats due soon join it.
    gathering: Arc<Notify>,
}

/// One beat waiting in a batch.
struct Item {
    token: AttemptToken,
    beat: Heartbeat,
    handed: Instant,
    hold: Duration,
    reply: oneshot::Sender<Result<HeartbeatReply>>,
}

impl Coalescer {
    /// Starts the dispatcher on the current runtime, sending with `ledger`.
    pub(crate) fn start(ledger: Ledger) -> Self {
        let (items, received) = mpsc::unbounded_channel();
        let gathering = Arc::new(Notify::new());
        tokio::spawn(dispatch(ledger, gathering.clone(), received));
        Self { items, gathering }
    }

    /// Sends one beat of `token`'s attempt, beaten every `interval` (zero for a last beat,
    /// which goes at once with whatever is gathered), in the next batch; its own reply.
    ///
    /// # Errors
    /// As [`Ledger::heartbeat`]; [`Error::UnknownOutcome`] (transient) when the dispatcher
    /// is gone (its runtime shut down) before the reply came.
    pub(crate) async fn beat(
        &self,
        token: &AttemptToken,
        beat: Heartbeat,
        interval: Duration,
    ) -> Result<HeartbeatReply> {
        let (reply, replied) = oneshot::channel();
        let item = Item {
            token: token.clone(),
            beat,
            handed: Instant::now(),
            hold: hold(interval),
            reply,
        };
        if self.items.send(item).is_err() {
            return Err(gone());
        }
        replied.await.unwrap_or_else(|_| Err(gone()))
    }

    /// A beat after the attempt's loop stopped (progress, checkpoint or usage left to
    /// send): it goes at once, with whatever is gathering, transient errors retried
    /// ([`retry`](super::retry): also says whether it retried).
    pub(crate) async fn last_beat(
        &self,
        token: &AttemptToken,
        beat: &Heartbeat,
    ) -> Result<(HeartbeatReply, bool)> {
        super::retry(|| self.beat(token, beat.clone(), Duration::ZERO)).await
    }

    /// Waits until `due`, the next beat of an attempt beaten every `interval`; returns
    /// sooner when a batch starts gathering and `due` is less than a quarter of the
    /// interval away, so the beat joins it.
    pub(crate) async fn until_due(&self, due: Instant, interval: Duration) {
        loop {
            // Created before the check: a batch that starts meanwhile still wakes it.
            let gathering = self.gathering.notified();
            tokio::select! {
                () = tokio::time::sleep_until(due) => return,
                () = gathering => {
                    if due.saturating_duration_since(Instant::now()) <= early(interval) {
                        return;
                    }
                }
            }
        }
    }
}

fn gone() -> Error {
    Error::UnknownOutcome {
        operation: "heartbeat",
        detail: "the heartbeat batcher stopped before the reply came".into(),
    }
}

/// Gathers beats into calls until every [`Coalescer`] is dropped, then sends what is left.
async fn dispatch(
    ledger: Ledger,
    gathering: Arc<Notify>,
    mut items: mpsc::UnboundedReceiver<Item>,
) {
    let mut running = FuturesUnordered::new();
    let mut open: Vec<Item> = Vec::new();
    // When the open batch leaves: its first beat's hold, or at once when it is full.
    let mut leaves = Instant::now();
    loop {
        let full = open.len() >= MAX_HEARTBEAT_BATCH;
        tokio::select! {
            biased;
            Some(()) = running.next(), if !running.is_empty() => {}
            () = tokio::time::sleep_until(leaves), if !open.is_empty() && running.len() < IN_FLIGHT => {
                let rest = open.split_off(open.len().min(MAX_HEARTBEAT_BATCH));
                let batch = std::mem::replace(&mut open, rest);
                running.push(send(&ledger, batch, leaves));
            }
            next = items.recv(), if !full => {
                let Some(item) = next else { break };
                if open.is_empty() {
                    leaves = item.handed + item.hold;
                    gathering.notify_waiters();
                } else {
                    leaves = leaves.min(item.handed + item.hold);
                }
                open.push(item);
                if open.len() >= MAX_HEARTBEAT_BATCH {
                    leaves = Instant::now();
                }
            }
        }
    }
    while !open.is_empty() {
        let rest = open.split_off(open.len().min(MAX_HEARTBEAT_BATCH));
        running.push(send(&ledger, std::mem::replace(&mut open, rest), leaves));
    }
    while running.next().await.is_some() {}
}

/// A call as the test records see it (`crate::testkit::beats`).
pub(crate) struct Call {
    /// Numbered across the process, so records tell the calls of every coalescer apart.
    pub(crate) number: u64,
    pub(crate) size: usize,
    /// When the dispatcher meant it to leave: never later than any of its beats' holds.
    pub(crate) planned: Instant,
    pub(crate) sent: Instant,
    pub(crate) replied: Instant,
}

/// One call for `batch`, planned to leave at `planned`; each beat's reply to its caller.
async fn send(ledger: &Ledger, batch: Vec<Item>, planned: Instant) {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let number = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
    let sent = Instant::now();
    let mut beats = Vec::with_capacity(batch.len());
    let mut waiting = Vec::with_capacity(batch.len());
    for item in batch {
        beats.push((item.token, item.beat));
        waiting.push((item.reply, item.handed));
    }
    let replies = match ledger.heartbeat_many(&beats).await {
        Ok(replies) if replies.len() == beats.len() => replies,
        Ok(_) => {
            let e = Error::Protocol {
                script: "heartbeat",
                detail: "a batch's replies do not match its beats".into(),
            };
            vec![Err(e); beats.len()]
        }
        Err(e) => vec![Err(e); beats.len()],
    };
    let call = Call {
        number,
        size: beats.len(),
        planned,
        sent,
        replied: Instant::now(),
    };
    for (((reply, handed), (token, _)), result) in waiting.into_iter().zip(&beats).zip(replies) {
        #[cfg(feature = "testkit")]
        crate::testkit::beats::record(ledger, token, handed, &call, &result);
        #[cfg(not(feature = "testkit"))]
        let _ = (token, handed, &call);
        // A caller that stopped waiting (its attempt ended) does not want its reply.
        let _ = reply.send(result);
    }
}
