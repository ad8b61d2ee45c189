//! The heartbeat pump: one OS thread per worker that beats its registry entry and, for
//! Rust jobs, every in-flight attempt; its [`Coalescer`] batches every attempt beat of the
//! worker (`exec`'s too).
//!
//! Job code may block the threads of the runtime it runs on (CPU-heavy work, a blocking
//! call). Heartbeats sent from those threads would stall with them, and the watchdog would
//! judge live work stale. So the pump has a thread and a current-thread runtime of its own,
//! and a `Ledger` connected on that runtime: a multiplexed connection is driven by a task
//! of the runtime that created it, so even a clone of the runner's connection used from
//! here would stall while the runner's threads are blocked.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::beat::{Beaten, MIN_INTERVAL, beat_once};
use super::coalesce::Coalescer;
use super::job::AttemptState;
use super::worker::Identity;
use crate::config::LedgerConfig;
use crate::error::{Error, Result};
use crate::ledger::{Heartbeat, HeartbeatReply, Ledger};

/// `(queue, id)` of the attempts the worker holds, listed in each registry beat.
pub(crate) type Held = Arc<dyn Fn() -> Vec<(String, String)> + Send + Sync>;

/// Handle to the pump thread. Dropping it stops the thread without waiting for it.
pub(crate) struct Pump {
    attempts: mpsc::UnboundedSender<Arc<AttemptState>>,
    /// Runs on the pump's thread, with its connection.
    beats: Coalescer,
    stop: CancellationToken,
    done: Option<oneshot::Receiver<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Pump {
    /// Starts the pump thread and waits until its connection is up.
    ///
    /// # Errors
    /// Whatever [`Ledger::connect`] refuses.
    ///
    /// # Panics
    /// When the OS refuses a new thread or its runtime, as `std::thread::spawn` does.
    pub(crate) async fn start(
        config: LedgerConfig,
        worker: Arc<Identity>,
        held: Held,
        worker_interval: Duration,
    ) -> Result<Self> {
        let (attempts_tx, attempts_rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = oneshot::channel::<Result<Coalescer>>();
        let (done_tx, done_rx) = oneshot::channel();
        let stop = CancellationToken::new();
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("unstuck-heartbeat".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("build the heartbeat thread's runtime");
                runtime.block_on(async move {
                    let ledger = match Ledger::connect(config).await {
                        Ok(ledger) => ledger,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let beats = Coalescer::start(ledger.clone());
                    let _ = ready_tx.send(Ok(beats.clone()));
                    let pump = Serve {
                        ledger,
                        beats,
                        worker,
                        held,
                        worker_interval,
                        stop: thread_stop,
                    };
                    pump.serve(attempts_rx).await;
                });
                // The runtime (and the connection it drives) is gone before `done` fires.
                drop(runtime);
                let _ = done_tx.send(());
            })
            .expect("spawn the heartbeat thread");
        let beats = match ready_rx.await {
            Ok(Ok(beats)) => beats,
            Ok(Err(e)) => return Err(e),
            // The thread ended without a word: its runtime panicked.
            Err(_) => panic!("the heartbeat thread died while connecting"),
        };
        Ok(Self {
            attempts: attempts_tx,
            beats,
            stop,
            done: Some(done_rx),
            thread: Some(thread),
        })
    }

    /// The worker's heartbeat batcher: every beat of its attempts goes through it.
    pub(crate) fn beats(&self) -> &Coalescer {
        &self.beats
    }

    /// Starts beating an attempt: at once (the first beat moves it to running), then at
    /// its interval until the attempt is finished or lost.
    pub(crate) fn track(&self, attempt: Arc<AttemptState>) {
        if self.attempts.send(attempt).is_err() {
            tracing::error!("the heartbeat thread is gone; an attempt will not be heartbeated");
        }
    }

    /// Stops the thread and waits for it to end.
    pub(crate) async fn stop(mut self) {
        self.stop.cancel();
        if let Some(done) = self.done.take() {
            let _ = done.await;
        }
        if let Some(thread) = self.thread.take() {
            // `done` fired as the thread's last act, so this does not block for long.
            if thread.join().is_err() {
                tracing::error!("the heartbeat thread panicked");
            }
        }
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What runs on the pump thread.
struct Serve {
    ledger: Ledger,
    beats: Coalescer,
    worker: Arc<Identity>,
    held: Held,
    worker_interval: Duration,
    stop: CancellationToken,
}

impl Serve {
    async fn serve(self, mut attempts: mpsc::UnboundedReceiver<Arc<AttemptState>>) {
        let mut tasks = JoinSet::new();
        tasks.spawn(beat_worker(
            self.ledger.clone(),
            self.worker.clone(),
            self.held.clone(),
            self.worker_interval,
            self.stop.clone(),
        ));
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => break,
                next = attempts.recv() => match next {
                    Some(attempt) => {
                        tasks.spawn(beat_attempt(self.beats.clone(), attempt));
                    }
                    None => break,
                },
                Some(joined) = tasks.join_next() => {
                    if let Err(e) = joined {
                        tracing::error!(error = %e, "a heartbeat task panicked");
                    }
                }
            }
        }
        // Dropping `tasks` aborts what is left: beats of attempts the runner abandoned.
    }
}

/// Beats one attempt until the runner finishes it or a reply says it is no longer ours.
async fn beat_attempt(beats: Coalescer, attempt: Arc<AttemptState>) {
    let interval = attempt.interval.max(MIN_INTERVAL);
    let mut due = Instant::now();
    loop {
        tokio::select! {
            () = beats.until_due(due, interval) => {}
            // A fingerprint goes out at once, with a beat of its own.
            _ = attempt.nudge.notified() => {}
            _ = attempt.finished.cancelled() => return,
        }
        let guard = attempt.beat.lock().await;
        if *guard {
            return;
        }
        let next = beat_once(&beats, &attempt.token, &*attempt, interval).await;
        drop(guard);
        match next {
            Some(_) if attempt.has_fingerprints() => due = Instant::now(),
            Some(next) => due = next,
            None => return,
        }
    }
}

impl Beaten for AttemptState {
    fn take(&self) -> Heartbeat {
        self.take_pending()
    }

    fn restore(&self, beat: Heartbeat) {
        self.restore_pending(beat);
    }

    fn delivered(&self, beat: &Heartbeat) {
        self.usage_delivered(beat);
    }

    fn cancel_requested(&self) {
        if !self.is_cancel_requested() {
            tracing::info!(execution = %self.label(), "cancellation requested; stopping the job");
            self.mark_cancel_requested();
        }
    }

    fn lose(&self, why: String) {
        tracing::warn!(execution = %self.label(), %why, "attempt lost; stopping the job");
        self.mark_lost();
    }

    fn refused(&self, error: &Error) {
        tracing::error!(execution = %self.label(), %error, "progress or checkpoint refused; dropped");
    }
}

/// Tells the worker registry this worker is alive and which executions it runs. If the
/// registry no longer knows the worker (it was judged gone, say after a long pause), the
/// executions it held were already handed back; it registers again under a fresh id, so
/// its new work is not mistaken for the old.
async fn beat_worker(
    ledger: Ledger,
    worker: Arc<Identity>,
    held: Held,
    interval: Duration,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let worker_id = worker.worker_id();
        match ledger.worker_beat(&worker_id, &held()).await {
            Ok(beat) => {
                if let Some(request) = beat.request {
                    worker.ask(request);
                }
            }
            Err(Error::UnknownWorker { .. }) => {
                let fresh = worker.renewal();
                // Claims go out under the new id before the registry lists it: a long poll
                // still waiting under the forgotten id ends now, so nothing enqueued once
                // the new id is listed is claimed under the old one. If the registration
                // fails, the next registry beat finds the new id unknown and renews again.
                worker.adopt(fresh.worker_id.clone());
                match ledger.register_worker(&fresh).await {
                    Ok(_) => tracing::warn!(
                        old = %worker_id,
                        new = %fresh.worker_id,
                        "the worker registry forgot this worker; registered again"
                    ),
                    Err(e) => tracing::warn!(
                        worker = %fresh.worker_id,
                        error = %e,
                        "re-registration failed; the next registry beat tries again"
                    ),
                }
            }
            Err(e) => tracing::warn!(worker = %worker_id, error = %e, "worker heartbeat failed"),
        }
    }
}

/// The interval at which an attempt with `heartbeat_timeout` is beaten.
pub(crate) fn beat_interval(heartbeat_timeout: Duration, fraction: f64) -> Duration {
    heartbeat_timeout.mul_f64(fraction).max(MIN_INTERVAL)
}

/// Delivers the usage deltas still pending, one beat each, once the pump has stopped
/// beating the attempt (before its outcome is recorded: the spend is kept whatever the
/// outcome). Stops at the first that does not get through.
pub(crate) async fn flush_usage(beats: &Coalescer, attempt: &AttemptState) {
    while let Some(usage) = attempt.next_usage() {
        let beat = Heartbeat::new().usage(usage);
        match beats.last_beat(&attempt.token, &beat).await {
            Ok((HeartbeatReply::Ok { .. }, _)) => attempt.usage_delivered(&beat),
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(execution = %attempt.label(), error = %e, "usage not recorded");
                return;
            }
        }
    }
}

/// Sends what the job set since the last beat, once the pump has stopped beating the
/// attempt: a checkpoint set just before a retryable failure must reach the next attempt.
/// Returns false if the attempt turned out to be lost.
pub(crate) async fn flush(beats: &Coalescer, attempt: &AttemptState, beat: Heartbeat) -> bool {
    if beat.progress.is_none() && beat.checkpoint.is_none() {
        return true;
    }
    match beats.last_beat(&attempt.token, &beat).await {
        Ok((HeartbeatReply::Ok { .. }, _)) => true,
        Ok(_) => false,
        Err(e) => {
            tracing::warn!(execution = %attempt.label(), error = %e, "last checkpoint not recorded");
            true
        }
    }
}
