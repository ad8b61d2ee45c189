//! `claim_wait`: a claim that waits until an execution of the queue becomes claimable —
//! the long poll behind the HTTP API — at next to no cost while it waits.
//!
//! One follower task per [`Ledger`] reads the partitions' event streams (a blocking
//! `XREAD`, so an idle process sends one command a second) and, for each event that can
//! make work claimable (an execution queued, a slot freed, the queue resumed after a
//! pause), wakes one waiter of that queue. A woken waiter runs one claim script; if it
//! took work and more may be there, it wakes the next. A waiter of a paused queue takes
//! nothing and waits on until the resume event. No waiter polls Redis on a timer, so a thousand idle long polls cost
//! what one does. A retry that becomes claimable when its backoff ends produces no event:
//! the waiter sleeps until the instant the claim reply named. The follower starts with
//! the first waiter and stops after [`IDLE_STOP`] without one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{ClaimBatch, Ledger, State};
use crate::error::{Error, Result};
use crate::events::Event;

/// Longest wait one call may ask for.
pub const MAX_CLAIM_WAIT: Duration = Duration::from_secs(30);

/// How long the follower runs on with no waiter before it stops.
const IDLE_STOP: Duration = Duration::from_secs(30);

/// The wake-up signals of one process, one per queue with waiters.
#[derive(Default)]
pub(crate) struct Wakeups {
    queues: Mutex<HashMap<String, Arc<QueueWake>>>,
    /// Whether a follower task runs now.
    following: Mutex<bool>,
}

#[derive(Default)]
struct QueueWake {
    notify: Notify,
    waiters: AtomicUsize,
}

impl Wakeups {
    fn queue(&self, queue: &str) -> Arc<QueueWake> {
        self.queues
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(queue.to_owned())
            .or_default()
            .clone()
    }

    /// Wakes one waiter of `queue`, if any waits.
    fn wake(&self, queue: &str) {
        let wake = self
            .queues
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(queue)
            .cloned();
        if let Some(wake) = wake.filter(|w| w.waiters.load(Ordering::SeqCst) > 0) {
            wake.notify.notify_one();
        }
    }

    fn wake_all(&self) {
        let queues: Vec<Arc<QueueWake>> = self
            .queues
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        for wake in queues
            .iter()
            .filter(|w| w.waiters.load(Ordering::SeqCst) > 0)
        {
            wake.notify.notify_one();
        }
    }

    fn anyone_waiting(&self) -> bool {
        self.queues
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .any(|w| w.waiters.load(Ordering::SeqCst) > 0)
    }
}

/// Counts a waiter for as long as it lives.
struct Waiting(Arc<QueueWake>);

impl Waiting {
    fn new(wake: Arc<QueueWake>) -> Self {
        wake.waiters.fetch_add(1, Ordering::SeqCst);
        Self(wake)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

/// True for the events after which a claim of their queue may find work: an execution
/// queued (enqueued, retried), a slot freed (an active execution ended or went back), or
/// the queue resumed after a pause.
fn frees_work(e: &Event) -> bool {
    let active = |s: Option<State>| s.is_some_and(State::is_active);
    e.to == Some(State::Queued) || (active(e.from) && !active(e.to)) || e.reason == QUEUE_RESUMED
}

/// The reason of the event `lua/resume_queue.lua` emits.
const QUEUE_RESUMED: &str = "queue_resumed";

impl Ledger {
    /// Claims up to `max` executions of `queue`; when none is claimable now, waits up to
    /// `wait` for one to become claimable (an enqueue, a retry's backoff ending, a slot
    /// freed) and claims it. An empty batch means the wait ran out. One claim script per
    /// wake-up, none while nothing changes.
    ///
    /// # Errors
    /// As [`claim_many`](Self::claim_many); [`Error::InvalidArgument`] for a `wait` above
    /// [`MAX_CLAIM_WAIT`].
    pub async fn claim_wait(
        &self,
        queue: &str,
        worker_id: &str,
        max: usize,
        wait: Duration,
    ) -> Result<ClaimBatch> {
        self.claim_wait_until(queue, worker_id, max, wait, &CancellationToken::new())
            .await
    }

    /// [`claim_wait`](Self::claim_wait) that also ends its wait (empty) when `stop` fires
    /// — a server shutting down answers its long polls at once. A claim script already
    /// sent is never abandoned: `stop` only cuts the waiting.
    ///
    /// # Errors
    /// As [`claim_wait`](Self::claim_wait).
    pub async fn claim_wait_until(
        &self,
        queue: &str,
        worker_id: &str,
        max: usize,
        wait: Duration,
        stop: &CancellationToken,
    ) -> Result<ClaimBatch> {
        if wait > MAX_CLAIM_WAIT {
            return Err(Error::InvalidArgument {
                name: "wait".into(),
                value: crate::error::format_duration(wait),
                expected: "at most 30s".into(),
            });
        }
        super::claim::check_claim(queue, worker_id, max)?;
        let deadline = Instant::now() + wait;
        let wake = self.wakeups.queue(queue);
        let _waiting = Waiting::new(wake.clone());
        self.follow_for_waiters();
        loop {
            // Listen before claiming: a change between the claim and the wait still wakes us.
            let notified = wake.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let batch = self.claim_many(queue, worker_id, max).await?;
            if !batch.claims.is_empty() {
                if batch.claims.len() == max && !batch.queue_full {
                    // There may be more: let the next waiter look.
                    self.wakeups.wake(queue);
                }
                return Ok(batch);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(batch);
            }
            // A retry backing off becomes claimable without an event: come back then. A
            // paused queue gives nothing until its resume event wakes us.
            let until = batch
                .next_available_at
                .filter(|_| !batch.queue_full && !batch.queue_paused)
                .and_then(|at| (at - Utc::now()).to_std().ok())
                .map_or(deadline, |d| (now + d).min(deadline));
            tokio::select! {
                _ = &mut notified => {}
                _ = stop.cancelled() => return Ok(batch),
                _ = tokio::time::sleep_until(until) => {
                    if until >= deadline {
                        return Ok(batch); // nothing changed all along: no last look
                    }
                }
            }
        }
    }

    /// Starts the event follower unless it runs.
    fn follow_for_waiters(&self) {
        let mut following = self
            .wakeups
            .following
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *following {
            return;
        }
        *following = true;
        let (ledger, wakeups) = (self.clone(), Arc::downgrade(&self.wakeups));
        tokio::spawn(async move { ledger.follow_until_idle(wakeups).await });
    }

    /// Wakes waiters from the event streams until no one has waited for [`IDLE_STOP`] or
    /// the ledger's handles are gone.
    async fn follow_until_idle(self, wakeups: Weak<Wakeups>) {
        let mut idle_since = Instant::now();
        let mut follower = None;
        loop {
            let Some(w) = wakeups.upgrade() else { return };
            if w.anyone_waiting() {
                idle_since = Instant::now();
            } else if idle_since.elapsed() >= IDLE_STOP {
                *w.following.lock().unwrap_or_else(PoisonError::into_inner) = false;
                return;
            }
            drop(w);
            if follower.is_none() {
                match self.follow_events(Vec::new()).await {
                    Ok(f) => {
                        follower = Some(f);
                        // What changed before we followed was not seen: every waiter
                        // looks once more.
                        if let Some(w) = wakeups.upgrade() {
                            w.wake_all();
                        }
                    }
                    Err(error) => {
                        if waiting(&wakeups) {
                            tracing::warn!(%error, "claim waiters cannot follow events; retrying");
                        } else {
                            tracing::debug!(%error, "cannot follow events (no claim waits now)");
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                }
            }
            let Some(f) = follower.as_mut() else { continue };
            match f.next_batch().await {
                Ok(events) => {
                    let Some(w) = wakeups.upgrade() else { return };
                    for e in events.iter().filter(|e| frees_work(e)) {
                        w.wake(&e.queue);
                    }
                }
                Err(error) => {
                    // Waiters still wake at their own deadlines; resume from now on. With no
                    // waiter (the idle minutes before the follower stops, or a process
                    // shutting its Redis down) nobody is affected: not worth a warning.
                    if waiting(&wakeups) {
                        tracing::warn!(%error, "following events for claim waiters failed");
                    } else {
                        tracing::debug!(%error, "following events failed (no claim waits now)");
                    }
                    follower = None;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

/// Whether a claim of this process waits now.
fn waiting(wakeups: &Weak<Wakeups>) -> bool {
    wakeups.upgrade().is_some_and(|w| w.anyone_waiting())
}
