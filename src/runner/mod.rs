//! The worker loop, and the runner for Rust workers built on it.
//!
//! The [`Runner`] claims executions of one queue up to its concurrency (a long poll that
//! returns as soon as work is claimable), runs the job's code on a task of its own, and
//! records the outcome: a returned value completes the execution, a [`JobError`] fails
//! it (retryably or not). Heartbeats do not come from the job's runtime: a dedicated
//! thread with its own runtime and Redis connection beats every in-flight attempt at a
//! fraction of its heartbeat timeout, and the worker's registry entry, so a job that hogs
//! its threads with CPU-heavy work is still seen alive. Beats of different attempts that
//! fall due together go in one call (`coalesce.rs`). When a heartbeat reply says the
//! attempt was lost or cancellation was requested, the job's [`Job::cancelled`] fires; an
//! async job that does not return within `stop_grace` is aborted.
//!
//! Job code that blocks its thread cannot be aborted: check [`Job::is_cancelled`] between
//! steps, and prefer `tokio::task::spawn_blocking` for long CPU-bound stretches, so the
//! runner's own claiming and reporting keep running too.
//!
//! # Layout
//! - `worker_loop.rs`: the one worker loop — registration, registry beats and what their
//!   replies ask (restart, drain), long-poll claims into a `JoinSet`, stopping,
//!   deregistration — for every kind of job: Rust closures (`RustJobs`, this file) and
//!   supervised commands (`crate::supervise`);
//! - `outcome.rs`: what became of an attempt, and the tally both reports are built from;
//! - `record.rs`: recording an attempt's outcome in the ledger, for both kinds;
//! - `beat.rs`: one heartbeat of an attempt and what its reply means, for both kinds;
//! - `coalesce.rs`: the worker's heartbeat batcher: beats that fall due together share one
//!   `heartbeat_many` call, for both kinds;
//! - `pump.rs`: the heartbeat thread (registry beats; a Rust job's attempt beats);
//! - `worker.rs`: the worker's identity in the registry, and the attempts a runner holds;
//! - `attempt.rs`: one attempt of a Rust job, supervised from start to recorded outcome;
//! - `job.rs`: what job code sees ([`Job`], [`JobError`], [`StopSignal`]);
//! - `config.rs`: [`RunnerConfig`].

mod attempt;
pub(crate) mod beat;
pub(crate) mod coalesce;
mod config;
mod job;
mod outcome;
mod pump;
pub(crate) mod record;
// `Identity` is shared with `unstuck exec` (`crate::supervise`).
pub(crate) mod worker;
pub(crate) mod worker_loop;

pub use config::{MAX_CONCURRENCY, RunnerConfig};
pub use job::{Job, JobError, StopSignal};
pub use outcome::AttemptCounts;
pub(crate) use outcome::Outcome;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::ledger::{Claim, Ledger, WorkerRegistration, WorkerRequest};
use attempt::supervise;
use job::AttemptState;
use pump::Pump;
use worker::InFlight;
use worker_loop::{Kind, Settings};

/// What a [`Runner::run`] did, counted per attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunReport {
    /// The attempts, counted by what became of them.
    pub attempts: AttemptCounts,
    /// Set when the runner stopped because the watchdog asked it to (tier 1): after
    /// `restart` its jobs were stopped and handed back, after `drain` they finished first.
    /// Either way it deregistered: exit, and let the process manager start a fresh one.
    pub stopped_by: Option<WorkerRequest>,
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
/// println!("{} succeeded, {} failed", report.attempts.succeeded, report.attempts.failed);
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
        let config = self.config;
        let registration = config.registration.clone().unwrap_or_else(|| {
            WorkerRegistration::for_this_process(
                env!("CARGO_PKG_VERSION"),
                vec![config.queue.clone()],
            )
        });
        let settings = Settings {
            queue: config.queue.clone(),
            concurrency: config.concurrency,
            claim_wait: config.poll_interval,
            registration,
            worker_heartbeat_interval: config.worker_heartbeat_interval,
        };
        let jobs = Arc::new(RustJobs {
            ledger: self.ledger.clone(),
            handler,
            in_flight: Arc::new(InFlight::default()),
            heartbeat_fraction: config.heartbeat_fraction,
            stop_grace: config.stop_grace,
        });
        let ran = worker_loop::run(&self.ledger, settings, jobs, &shutdown).await?;
        match ran.refused {
            Some(e) => Err(e),
            None => Ok(RunReport {
                attempts: ran.tally,
                stopped_by: ran.stopped_by,
            }),
        }
    }
}

/// Rust closures as the worker loop's kind of job: each attempt runs the handler's future
/// on a task of its own, beaten from the heartbeat thread.
struct RustJobs<H> {
    ledger: Ledger,
    handler: H,
    /// Listed in registry beats until their outcome is recorded.
    in_flight: Arc<InFlight>,
    heartbeat_fraction: f64,
    stop_grace: Duration,
}

impl<H, F> Kind for RustJobs<H>
where
    H: Fn(Job) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Option<serde_json::Value>, JobError>> + Send + 'static,
{
    /// Tracks the attempt (heartbeats, registry listing) before its job starts.
    fn launch(&self, claim: Claim, pump: &Pump) -> impl Future<Output = Outcome> + Send + 'static {
        let attempt = Arc::new(AttemptState::new(
            claim.token.clone(),
            pump::beat_interval(claim.heartbeat_timeout, self.heartbeat_fraction),
        ));
        self.in_flight.insert(attempt.clone());
        pump.track(attempt.clone());
        let job = (self.handler)(Job::new(claim, attempt.clone(), self.ledger.clone()));
        let (ledger, in_flight) = (self.ledger.clone(), self.in_flight.clone());
        let (beats, grace) = (pump.beats().clone(), self.stop_grace);
        async move {
            let outcome = supervise(ledger, beats, attempt.clone(), job, grace).await;
            in_flight.remove(&attempt);
            outcome
        }
    }

    fn running(&self) -> Vec<(String, String)> {
        self.in_flight.running()
    }

    fn stop_all(&self) {
        for attempt in self.in_flight.all() {
            attempt.mark_shutdown();
        }
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
