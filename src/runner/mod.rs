//! A worker-side runner for Rust workers: claims executions, runs their jobs, heartbeats.
//!
//! The [`Runner`] claims executions of one queue up to its concurrency, runs the job's code
//! on a task of its own, and records the outcome: a returned value completes the
//! execution, a [`JobError`] fails it (retryably or not). Heartbeats do not come from the
//! job's runtime: a dedicated thread with its own runtime and Redis connection beats every
//! in-flight attempt at a fraction of its heartbeat timeout, so a job that hogs its threads
//! with CPU-heavy work is still seen alive. When a heartbeat reply says the attempt was
//! lost or cancellation was requested, the job's [`Job::cancelled`] fires; an async job
//! that does not return within `stop_grace` is aborted.
//!
//! Job code that blocks its thread cannot be aborted: check [`Job::is_cancelled`] between
//! steps, and prefer `tokio::task::spawn_blocking` for long CPU-bound stretches, so the
//! runner's own claiming and reporting keep running too.

mod config;
mod job;
mod pump;
mod supervise;
// `Identity` is shared with `unstuck exec` (`crate::supervise`).
pub(crate) mod worker;

pub use config::{MAX_CONCURRENCY, RunnerConfig};
pub use job::{Job, JobError, StopSignal};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use chrono::Utc;
use tokio::task::{JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::ledger::{ClaimBatch, Ledger, WorkerRegistration, WorkerRequest};
use job::AttemptState;
use pump::Pump;
use supervise::{Outcome, supervise};
use worker::{Identity, InFlight};

/// Shortest idle wait between two claims, so a clock that disagrees with Redis about when
/// delayed work becomes available cannot turn the loop into a busy spin.
const MIN_IDLE_WAIT: Duration = Duration::from_millis(5);

/// What a [`Runner::run`] did, counted per attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunReport {
    /// Attempts claimed.
    pub claimed: u64,
    /// Attempts completed.
    pub succeeded: u64,
    /// Failed for good: a fatal error, or a retryable one with no attempts left.
    pub failed: u64,
    /// Failed retryably and put back in the queue for another attempt.
    pub retried: u64,
    /// Cancellation acknowledged.
    pub cancelled: u64,
    /// The attempt stopped being this worker's while it ran; nothing was recorded.
    pub lost: u64,
    /// The outcome could not be recorded (Redis unreachable); the watchdog takes over.
    pub unreported: u64,
    /// Set when the runner stopped because the watchdog asked it to (tier 1): after
    /// `restart` its jobs were stopped and handed back, after `drain` they finished first.
    /// Either way it deregistered: exit, and let the process manager start a fresh one.
    pub stopped_by: Option<WorkerRequest>,
}

impl RunReport {
    fn count(&mut self, joined: std::result::Result<Outcome, JoinError>) {
        let counter = match joined {
            Ok(Outcome::Succeeded) => &mut self.succeeded,
            Ok(Outcome::Failed) => &mut self.failed,
            Ok(Outcome::Retried) => &mut self.retried,
            Ok(Outcome::Cancelled) => &mut self.cancelled,
            Ok(Outcome::Lost) => &mut self.lost,
            Ok(Outcome::Unreported) => &mut self.unreported,
            Err(e) => {
                tracing::error!(error = %e, "an attempt's supervisor task failed");
                &mut self.unreported
            }
        };
        *counter += 1;
    }
}

/// Runs jobs of one queue: claims, heartbeats from a thread of its own, reports outcomes.
///
/// A minimal worker:
///
/// ```no_run
/// use serde_json::{Value, json};
/// use tokio_util::sync::CancellationToken;
/// use unstuck::{Job, JobError, Ledger, LedgerConfig, Runner, RunnerConfig};
///
/// async fn send_email(job: Job) -> Result<Option<Value>, JobError> {
///     let to = job.payload()["to"]
///         .as_str()
///         .ok_or_else(|| JobError::fatal("payload has no \"to\""))?
///         .to_owned();
///     for step in ["render", "send"] {
///         if job.is_cancelled() {
///             return Err(JobError::retryable("stopped before sending"));
///         }
///         job.set_progress(step);
///         // ... do the step ...
///     }
///     Ok(Some(json!({ "sent_to": to })))
/// }
///
/// # async fn worker() -> unstuck::Result<()> {
/// let ledger = Ledger::connect(LedgerConfig::new("redis://127.0.0.1:6379/")).await?;
/// let config = RunnerConfig { concurrency: 8, ..RunnerConfig::new("emails") };
/// let runner = Runner::new(ledger, config)?;
///
/// let shutdown = CancellationToken::new();
/// let on_ctrl_c = shutdown.clone();
/// tokio::spawn(async move {
///     let _ = tokio::signal::ctrl_c().await;
///     on_ctrl_c.cancel();
/// });
/// let report = runner.run(send_email, shutdown).await?;
/// println!("{} succeeded, {} failed", report.succeeded, report.failed);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Runner {
    ledger: Ledger,
    config: RunnerConfig,
}

impl Runner {
    /// # Errors
    /// As [`RunnerConfig::validate`].
    pub fn new(ledger: Ledger, config: RunnerConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { ledger, config })
    }

    /// Registers the worker, then claims and runs jobs until `shutdown` is cancelled. On
    /// shutdown it stops claiming, signals every running job to stop (see
    /// [`StopSignal::Shutdown`]), waits for them, deregisters, and reports.
    ///
    /// `handler` maps a [`Job`] to its result: `Ok(value)` completes the execution with
    /// that result; `Err` fails it, retryably or not. If cancellation was requested, the
    /// cancellation is acknowledged whatever the job returns; if the attempt was lost,
    /// what it returns is dropped. A panic counts as a retryable failure.
    ///
    /// # Errors
    /// Registering the worker or connecting the heartbeat thread failed; a claim was
    /// refused for a reason other than an unreachable Redis (running jobs are still
    /// stopped and reported first). Transient Redis errors are retried, never returned.
    ///
    /// # Panics
    /// When the OS cannot start the heartbeat thread.
    pub async fn run<H, F>(self, handler: H, shutdown: CancellationToken) -> Result<RunReport>
    where
        H: Fn(Job) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Option<serde_json::Value>, JobError>> + Send + 'static,
    {
        let (identity, in_flight, pump) = self.start().await?;
        let mut report = RunReport::default();
        let mut tasks = JoinSet::new();
        let mut refused = None;
        while !shutdown.is_cancelled() && !identity.asked().is_cancelled() {
            let free = self.config.concurrency - tasks.len();
            // `None`: every slot is busy; wait for a job to finish.
            let mut idle = None;
            if free > 0 {
                match self.claim(&identity, free).await {
                    Ok(batch) => {
                        let claimed = batch.claims.len();
                        if claimed < free {
                            idle = Some(idle_wait(&batch, self.config.poll_interval));
                        }
                        for claim in batch.claims {
                            report.claimed += 1;
                            tasks.spawn(self.launch(claim, &handler, &in_flight, &pump));
                        }
                        if claimed == free {
                            continue;
                        }
                    }
                    Err(e) if e.is_transient() => {
                        tracing::warn!(error = %e, "claim failed; trying again");
                        idle = Some(self.config.poll_interval);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "claim refused; stopping");
                        refused = Some(e);
                        break;
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = identity.asked().cancelled() => {}
                Some(joined) = tasks.join_next() => report.count(joined),
                _ = sleep_or_never(idle) => {}
            }
            while let Some(joined) = tasks.try_join_next() {
                report.count(joined);
            }
        }
        report.stopped_by = identity.request();
        if report.stopped_by == Some(WorkerRequest::Drain) {
            // Finish what runs (unless shut down meanwhile), then stop as usual.
            tracing::info!(worker = %identity.worker_id(), running = tasks.len(), "draining");
            while !tasks.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    Some(joined) = tasks.join_next() => report.count(joined),
                }
            }
        }
        self.stop(&identity, &in_flight, pump, tasks, &mut report)
            .await;
        match refused {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Registers the worker (declaring its registry interval) and starts the heartbeat
    /// thread.
    async fn start(&self) -> Result<(Arc<Identity>, Arc<InFlight>, Pump)> {
        let config = &self.config;
        let mut registration = config.registration.clone().unwrap_or_else(|| {
            WorkerRegistration::for_this_process(
                env!("CARGO_PKG_VERSION"),
                vec![config.queue.clone()],
            )
        });
        // The watchdog must know how often to expect us, or a worker_timeout shorter than
        // our interval would judge a healthy runner gone.
        registration.heartbeat_interval = Some(config.worker_heartbeat_interval);
        self.ledger.register_worker(&registration).await?;
        let identity = Arc::new(Identity::new(registration));
        let in_flight = Arc::new(InFlight::default());
        let pump = match Pump::start(
            self.ledger.config().clone(),
            identity.clone(),
            in_flight.clone(),
            config.worker_heartbeat_interval,
        )
        .await
        {
            Ok(pump) => pump,
            Err(e) => {
                self.deregister(&identity).await;
                return Err(e);
            }
        };
        tracing::info!(
            queue = %config.queue,
            worker = %identity.worker_id(),
            concurrency = config.concurrency,
            "runner started"
        );
        Ok((identity, in_flight, pump))
    }

    /// Claims up to `free` executions, retrying transient errors.
    async fn claim(&self, identity: &Identity, free: usize) -> Result<ClaimBatch> {
        let worker_id = identity.worker_id();
        let queue = &self.config.queue;
        let (batch, _) = retry(|| self.ledger.claim_many(queue, &worker_id, free)).await?;
        Ok(batch)
    }

    /// Tracks a claimed attempt (heartbeats, registry listing) and returns the task that
    /// runs its job and records the outcome.
    fn launch<H, F>(
        &self,
        claim: crate::Claim,
        handler: &H,
        in_flight: &Arc<InFlight>,
        pump: &Pump,
    ) -> impl Future<Output = Outcome> + Send + 'static
    where
        H: Fn(Job) -> F,
        F: Future<Output = Result<Option<serde_json::Value>, JobError>> + Send + 'static,
    {
        let attempt = Arc::new(AttemptState::new(
            claim.token.clone(),
            pump::beat_interval(claim.heartbeat_timeout, self.config.heartbeat_fraction),
        ));
        in_flight.insert(attempt.clone());
        pump.track(attempt.clone());
        let job = handler(Job::new(claim, attempt.clone()));
        let (ledger, in_flight) = (self.ledger.clone(), in_flight.clone());
        let grace = self.config.stop_grace;
        async move {
            let outcome = supervise(ledger, attempt.clone(), job, grace).await;
            in_flight.remove(&attempt);
            outcome
        }
    }

    /// Signals every running job to stop, waits for them, stops the heartbeat thread and
    /// deregisters.
    async fn stop(
        &self,
        identity: &Identity,
        in_flight: &InFlight,
        pump: Pump,
        mut tasks: JoinSet<Outcome>,
        report: &mut RunReport,
    ) {
        for attempt in in_flight.all() {
            attempt.mark_shutdown();
        }
        while let Some(joined) = tasks.join_next().await {
            report.count(joined);
        }
        // The pump stops before deregistering, or its next worker heartbeat would find the
        // worker unknown and register it again.
        pump.stop().await;
        self.deregister(identity).await;
        tracing::info!(
            queue = %self.config.queue,
            worker = %identity.worker_id(),
            claimed = report.claimed,
            succeeded = report.succeeded,
            failed = report.failed,
            retried = report.retried,
            cancelled = report.cancelled,
            lost = report.lost,
            unreported = report.unreported,
            "runner stopped"
        );
    }

    async fn deregister(&self, identity: &Identity) {
        let worker_id = identity.worker_id();
        match retry(|| self.ledger.deregister_worker(&worker_id)).await {
            Ok(_) | Err(Error::UnknownWorker { .. }) => {}
            Err(e) => tracing::warn!(worker = %worker_id, error = %e, "deregistration failed"),
        }
    }
}

/// How long to wait before claiming again after a claim that left slots free.
fn idle_wait(batch: &ClaimBatch, poll_interval: Duration) -> Duration {
    let until_available = batch
        .next_available_at
        .filter(|_| !batch.queue_full)
        .map(|at| (at - Utc::now()).to_std().unwrap_or(Duration::ZERO));
    match until_available {
        Some(wait) => wait.clamp(MIN_IDLE_WAIT, poll_interval.max(MIN_IDLE_WAIT)),
        None => poll_interval,
    }
}

async fn sleep_or_never(wait: Option<Duration>) {
    match wait {
        Some(wait) => tokio::time::sleep(wait).await,
        None => std::future::pending().await,
    }
}

/// Runs a ledger call, retrying transient Redis errors with exponential backoff. Also says
/// whether it retried: a retried write may have landed the first time.
pub(crate) async fn retry<T, C, Fut>(call: C) -> Result<(T, bool)>
where
    C: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(5)
        .with_jitter();
    let mut retried = false;
    let value = call
        .retry(backoff)
        .when(Error::is_transient)
        .notify(|e, after| {
            retried = true;
            tracing::warn!(error = %e, ?after, "redis call failed; retrying");
        })
        .await?;
    Ok((value, retried))
}
