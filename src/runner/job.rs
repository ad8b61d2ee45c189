//! What job code sees of the attempt it runs: its input, and a signal to stop.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::ledger::{
    Acquire, AcquireOutcome, AttemptToken, AwaitResume, Claim, Heartbeat, Ledger, Snooze,
    check_fingerprint,
};

/// Why a job was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopSignal {
    /// The attempt is no longer this worker's (a newer attempt exists, or the execution
    /// ended elsewhere): whatever the job returns is dropped.
    AttemptLost,
    /// Someone cancelled the execution: stop; the runner acknowledges the cancellation
    /// whatever the job returns.
    CancelRequested,
    /// The runner is shutting down: return soon. A retryable error (with a checkpoint set)
    /// lets another worker resume the work.
    Shutdown,
}

/// A job's failure: its message is recorded as the execution's latest failure. Or, built
/// by [`JobError::snooze`] or [`JobError::await_resume`], not a failure at all: the attempt
/// ends in a snooze (River's `JobSnooze`: back in the queue until then, no attempt counted)
/// or waits for a resume (`awaiting`), outcomes carried on the error path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct JobError {
    /// Whether another attempt may succeed (a timeout, a busy dependency). The execution
    /// is retried only while it has attempts left.
    pub retryable: bool,
    /// What went wrong, recorded as the execution's latest failure.
    pub message: String,
    /// The earliest a retry may start (a provider's `Retry-After`): wins over the backoff
    /// when later ([`FailOptions::retry_after`](crate::FailOptions::retry_after)).
    pub retry_after: Option<Duration>,
    /// Set by [`JobError::snooze`]: end the attempt with this snooze instead of a failure.
    pub snooze: Option<Snooze>,
    /// Set by [`JobError::await_resume`]: the attempt ends into `awaiting`.
    wait: Option<Box<AwaitResume>>,
}

impl JobError {
    /// A failure worth another attempt.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            retryable: true,
            message: message.into(),
            retry_after: None,
            snooze: None,
            wait: None,
        }
    }

    /// Not a failure: the job ends its attempt to wait on a person or an outside event
    /// ([`Ledger::await_resume`](crate::Ledger::await_resume)). The runner records the wait;
    /// the claim that continues the execution after a resume gets
    /// [`Job::resume_input`] and the checkpoint. A wait the ledger refuses (a zero or too
    /// long wait deadline) fails the execution for good with the refusal as its message.
    pub fn await_resume(wait: AwaitResume) -> Self {
        Self {
            message: format!("awaiting: {}", wait.reason),
            wait: Some(Box::new(wait)),
            ..Self::fatal("")
        }
    }

    /// The wait, when this is [`JobError::await_resume`].
    pub fn wait(&self) -> Option<&AwaitResume> {
        self.wait.as_deref()
    }

    /// The wait when this is one, else the failure itself.
    pub(crate) fn into_wait(self) -> Result<AwaitResume, Self> {
        match self.wait {
            Some(wait) => Ok(*wait),
            None => Err(self),
        }
    }

    /// A failure no retry will fix (bad input): the execution fails now.
    pub fn fatal(message: impl Into<String>) -> Self {
        Self {
            retryable: false,
            ..Self::retryable(message)
        }
    }

    /// Not a failure: snooze (a rate limit, a provider that is down). The execution waits
    /// in the queue until `snooze`'s time and its next claim is a continuation, not a
    /// retry; past its `max_snoozes` the snooze is recorded as a retryable failure.
    pub fn snooze(snooze: Snooze) -> Self {
        Self {
            snooze: Some(snooze.clone()),
            ..Self::retryable(snooze.reason)
        }
    }

    /// Retry no sooner than `delay` from now, when the backoff is shorter.
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }
}

/// One claimed attempt, handed to the job's code.
///
/// Long-running code should look at [`is_cancelled`](Job::is_cancelled) between steps (or
/// `select!` on [`cancelled`](Job::cancelled)): an async job that ignores it is aborted
/// after the runner's `stop_grace`, but code that blocks its thread cannot be aborted.
/// Cloning is cheap apart from the payload; clones share the stop signal and the progress
/// reporting, so a clone can go into `spawn_blocking`.
#[derive(Clone)]
pub struct Job {
    payload: serde_json::Value,
    checkpoint: Option<serde_json::Value>,
    resume_input: Option<serde_json::Value>,
    deadline_at: Option<DateTime<Utc>>,
    attempt: Arc<AttemptState>,
    /// For the calls the job makes itself (resource leases).
    ledger: Ledger,
}

impl Job {
    pub(crate) fn new(claim: Claim, attempt: Arc<AttemptState>, ledger: Ledger) -> Self {
        Self {
            payload: claim.payload,
            checkpoint: claim.checkpoint,
            resume_input: claim.resume_input,
            deadline_at: claim.deadline_at,
            attempt,
            ledger,
        }
    }

    /// Takes one unit of a resource for this attempt ([`Ledger::acquire`]): held until
    /// [`release`](Job::release), its ttl, or the end of the attempt — whatever ends it,
    /// a crash of this process included (the watchdog's sweep frees it within one round),
    /// so the retry can take it.
    ///
    /// # Errors
    /// As [`Ledger::acquire`]; a refusal (the attempt is over) is
    /// [`AcquireOutcome::StaleAttempt`] or `AlreadyTerminal` in the `Ok` value.
    pub async fn acquire(&self, acquire: Acquire) -> crate::Result<AcquireOutcome> {
        self.ledger.acquire(&self.attempt.token, acquire).await
    }

    /// Gives back this attempt's unit of `resource` ([`Ledger::release`]); `false` when it
    /// held none.
    ///
    /// # Errors
    /// As [`Ledger::release`].
    pub async fn release(&self, resource: &str) -> crate::Result<bool> {
        self.ledger.release(&self.attempt.token, resource).await
    }

    /// The execution id.
    pub fn id(&self) -> &str {
        self.attempt.token.execution_id()
    }

    /// The queue.
    pub fn queue(&self) -> &str {
        self.attempt.token.queue()
    }

    /// The attempt number, 1 for the first.
    pub fn attempt(&self) -> u32 {
        self.attempt.token.attempt()
    }

    /// This attempt's token. The runner reports the outcome itself; the token is for
    /// logging, or for handing the attempt to code that talks to the ledger directly.
    pub fn token(&self) -> &AttemptToken {
        &self.attempt.token
    }

    /// The payload the execution was enqueued with.
    pub fn payload(&self) -> &serde_json::Value {
        &self.payload
    }

    /// The last checkpoint an earlier attempt reported: resume from here.
    pub fn checkpoint(&self) -> Option<&serde_json::Value> {
        self.checkpoint.as_ref()
    }

    /// What `resume` handed over, when this attempt continues a resumed wait.
    pub fn resume_input(&self) -> Option<&serde_json::Value> {
        self.resume_input.as_ref()
    }

    /// The execution's hard deadline, if it has one.
    pub fn deadline_at(&self) -> Option<DateTime<Utc>> {
        self.deadline_at
    }

    /// True once the job should stop; see [`stop_signal`](Job::stop_signal) for why.
    pub fn is_cancelled(&self) -> bool {
        self.attempt.stop.is_cancelled()
    }

    /// Completes when the job should stop.
    pub async fn cancelled(&self) {
        self.attempt.stop.cancelled().await
    }

    /// Why the job should stop, if it should. Losing the attempt outranks a cancellation
    /// request, which outranks shutdown.
    pub fn stop_signal(&self) -> Option<StopSignal> {
        self.attempt.stop_signal()
    }

    /// Progress to report with the next heartbeat (a step counter, a phase name). Only
    /// the latest value set between two heartbeats is sent.
    pub fn set_progress(&self, progress: impl Into<String>) {
        self.attempt.pending().progress = Some(progress.into());
    }

    /// A checkpoint to report with the next heartbeat; a retry resumes from the latest one
    /// recorded. The runner also sends it before reporting a retryable failure, so a
    /// checkpoint set just before returning the error is not lost.
    pub fn set_checkpoint(&self, checkpoint: serde_json::Value) {
        self.attempt.pending().checkpoint = Some(checkpoint);
    }

    /// The fingerprint of the action just taken and its result (a hash of them), for loop
    /// detection: the same one `max_repeats` times in a row and the watchdog judges the
    /// execution stuck `looping`. Each call is one arrival, never merged with another: it
    /// goes out with a heartbeat sent at once, and calls made faster than beats return
    /// wait their turn, each with its own beat. Those still waiting when the job returns
    /// are not sent.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for an empty fingerprint
    /// or one over [`MAX_FINGERPRINT_BYTES`](crate::MAX_FINGERPRINT_BYTES); nothing is
    /// queued.
    pub fn set_fingerprint(&self, fingerprint: impl Into<String>) -> Result<()> {
        let fingerprint = fingerprint.into();
        check_fingerprint(&fingerprint)?;
        self.attempt.push_fingerprint(fingerprint);
        Ok(())
    }

    /// Reports usage (tokens, cost) spent since the last call: sent with the next
    /// heartbeat, or before the attempt's outcome is recorded; numbered by the runner (the
    /// `seq` given is ignored), so a retried beat never counts it twice and none is lost.
    /// A delta that reaches the execution's budget makes the next beat ask the job to stop
    /// ([`stop_signal`](Self::stop_signal)), and the attempt ends with stop reason
    /// `budget_exceeded`.
    pub fn add_usage(&self, usage: crate::ledger::Usage) {
        self.attempt.add_usage(usage);
    }
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("queue", &self.queue())
            .field("id", &self.id())
            .field("attempt", &self.attempt())
            .field("stop_signal", &self.stop_signal())
            .finish_non_exhaustive()
    }
}

/// What the runner, the job and the heartbeat pump share about one attempt.
pub(crate) struct AttemptState {
    pub(crate) token: AttemptToken,
    /// How often the pump beats this attempt: a fraction of its heartbeat timeout.
    pub(crate) interval: Duration,
    /// The job's stop signal.
    stop: CancellationToken,
    /// Fired when the runner is done with the attempt, so its pump task ends.
    pub(crate) finished: CancellationToken,
    lost: AtomicBool,
    cancel_requested: AtomicBool,
    shutdown: AtomicBool,
    pending: Mutex<Heartbeat>,
    /// Fingerprints not sent yet, oldest first: one per beat.
    fingerprints: Mutex<VecDeque<String>>,
    /// Wakes the pump when a fingerprint is queued, so it goes out at once.
    pub(crate) nudge: tokio::sync::Notify,
    /// Usage deltas the job added, not yet delivered.
    usage: Mutex<crate::ledger::UsageQueue>,
    /// Held while a heartbeat of this attempt is in flight, so the runner's last beat is
    /// never overtaken by an older one; `true` once no more beats may be sent.
    pub(crate) beat: tokio::sync::Mutex<bool>,
}

impl AttemptState {
    pub(crate) fn new(token: AttemptToken, interval: Duration) -> Self {
        Self {
            token,
            interval,
            stop: CancellationToken::new(),
            finished: CancellationToken::new(),
            lost: AtomicBool::new(false),
            cancel_requested: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            pending: Mutex::new(Heartbeat::default()),
            fingerprints: Mutex::new(VecDeque::new()),
            nudge: tokio::sync::Notify::new(),
            usage: Mutex::new(crate::ledger::UsageQueue::default()),
            beat: tokio::sync::Mutex::new(false),
        }
    }

    /// How logs name the attempt: its token carries a secret, so it is never logged.
    pub(crate) fn label(&self) -> String {
        super::beat::label(&self.token)
    }

    /// A job that panicked while holding the lock cannot leave a heartbeat half-written,
    /// so a poisoned lock is still usable.
    fn pending(&self) -> MutexGuard<'_, Heartbeat> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn fingerprints(&self) -> MutexGuard<'_, VecDeque<String>> {
        self.fingerprints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn push_fingerprint(&self, fingerprint: String) {
        self.fingerprints().push_back(fingerprint);
        self.nudge.notify_one();
    }

    /// True while fingerprints wait for their beat.
    pub(crate) fn has_fingerprints(&self) -> bool {
        !self.fingerprints().is_empty()
    }

    /// Takes what the job set since the last beat, the oldest fingerprint not sent, and
    /// the oldest usage delta not yet delivered (it stays pending until
    /// [`usage_delivered`](Self::usage_delivered)).
    pub(crate) fn take_pending(&self) -> Heartbeat {
        let mut beat = std::mem::take(&mut *self.pending());
        beat.fingerprint = self.fingerprints().pop_front();
        beat.usage = self.usage_queue().next();
        beat
    }

    fn usage_queue(&self) -> MutexGuard<'_, crate::ledger::UsageQueue> {
        self.usage.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A delta the job added ([`Job::add_usage`]).
    pub(crate) fn add_usage(&self, usage: crate::ledger::Usage) {
        self.usage_queue().add(usage);
    }

    /// A beat got through: the usage it carried is delivered.
    pub(crate) fn usage_delivered(&self, beat: &Heartbeat) {
        if let Some(u) = &beat.usage {
            self.usage_queue().delivered(u.seq);
        }
    }

    /// The oldest usage delta not yet delivered, numbered.
    pub(crate) fn next_usage(&self) -> Option<crate::ledger::Usage> {
        self.usage_queue().next()
    }

    /// Puts back what a failed beat carried, unless the job has set newer values since.
    pub(crate) fn restore_pending(&self, beat: Heartbeat) {
        let mut pending = self.pending();
        if pending.progress.is_none() {
            pending.progress = beat.progress;
        }
        if pending.checkpoint.is_none() {
            pending.checkpoint = beat.checkpoint;
        }
        drop(pending);
        if let Some(fingerprint) = beat.fingerprint {
            self.fingerprints().push_front(fingerprint);
        }
    }

    /// Ends the pump's beats of this attempt (waiting out one in flight) and returns what
    /// the job set since the last beat.
    pub(crate) async fn finish(&self) -> Heartbeat {
        let mut done = self.beat.lock().await;
        *done = true;
        self.finished.cancel();
        self.take_pending()
    }

    pub(crate) fn mark_lost(&self) {
        self.lost.store(true, Ordering::SeqCst);
        self.stop.cancel();
    }

    pub(crate) fn mark_cancel_requested(&self) {
        self.cancel_requested.store(true, Ordering::SeqCst);
        self.stop.cancel();
    }

    pub(crate) fn mark_shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        self.stop.cancel();
    }

    pub(crate) fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    pub(crate) fn is_cancel_requested(&self) -> bool {
        self.cancel_requested.load(Ordering::SeqCst)
    }

    pub(crate) async fn stopped(&self) {
        self.stop.cancelled().await
    }

    pub(crate) fn stop_signal(&self) -> Option<StopSignal> {
        if self.is_lost() {
            Some(StopSignal::AttemptLost)
        } else if self.is_cancel_requested() {
            Some(StopSignal::CancelRequested)
        } else if self.shutdown.load(Ordering::SeqCst) {
            Some(StopSignal::Shutdown)
        } else {
            None
        }
    }
}
