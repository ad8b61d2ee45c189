//! `unstuck exec`: runs any command as a worker, one process group per execution.
//!
//! The [`Supervisor`] runs the worker loop (`crate::runner::worker_loop`: registration,
//! registry beats, long-poll claims up to its concurrency, drain and restart requests)
//! with commands as its kind of job, and runs the command once per attempt: the payload (JSON) on
//! stdin; `UNSTUCK_EXECUTION_ID`, `UNSTUCK_QUEUE`, `UNSTUCK_ATTEMPT` and the previous
//! attempt's checkpoint (`UNSTUCK_CHECKPOINT`, JSON text up to 64 KiB, and always
//! `UNSTUCK_CHECKPOINT_FILE`, a file holding it) in its environment. Its own settings
//! (`UNSTUCK_LEDGER__*`, ...) are not passed on: the command never sees Redis credentials.
//!
//! - **Liveness** comes from the command: the attempt is heartbeated while it runs, and
//!   its output is the progress (see `output.rs`); a command silent for
//!   [`ExecConfig::no_output_timeout`] is killed and its attempt failed retryably.
//! - **Its output is kept** where [`ExecConfig::output`] says ([`CommandOutput`]): passed
//!   on to the supervisor's stdout and stderr, stream for stream (each line after
//!   `[<queue>/<id>#<attempt>] ` with `prefix`), or one file per attempt,
//!   `<dir>/<queue>/<id>.<attempt>.log`, both streams and the supervisor's notes about the
//!   attempt. Directive lines are kept too. Lines are queued and written by a thread of
//!   their own, so a destination that stalls never blocks the command: what overflows
//!   the queue is dropped and counted in a line that says so (`logs.rs`). What was
//!   queued is written out before the supervisor returns.
//! - **Outcome**: exit 0 completes (the last stdout line, when it is JSON, is the
//!   result); another exit code or a signal fails the attempt retryably, with the tail of
//!   stderr in the message.
//! - **Stopping**: a cancellation, a lost attempt, a no-output timeout or the
//!   supervisor's own shutdown sends SIGTERM to the command's process group and to the
//!   processes of the attempt that left it, SIGKILL after [`ExecConfig::stop_grace`];
//!   the same happens to what is left running when the command exits by itself. Nothing
//!   of the attempt survives. A cancellation is then acknowledged; a shutdown fails the
//!   attempt retryably ("supervisor stopped").
//! - **Reaping** (Linux, [`ExecConfig::subreaper`]): the supervisor is a child
//!   subreaper, so what a command detaches (`setsid`, a double fork) is reparented to it
//!   rather than to init: it is found by the attempt's environment, stopped with the
//!   attempt, and reaped (`reaper.rs`). When the supervisor stops, whatever still
//!   descends from it is stopped too. Other Unix systems have no subreaper: a process
//!   that leaves the group there and whose parent exits escapes.
//! - **Asked to restart or drain** (tier 1 of worker remediation, in a registry heartbeat
//!   reply): it stops claiming; on `restart` it stops its commands as on shutdown, on
//!   `drain` it lets them finish; then it deregisters ([`ExecReport::stopped_by`]).
//! - **Restart safety**: a state file on disk (`records.rs`) names each attempt's pid,
//!   process group and start time; a supervisor started later on the same host stops
//!   what its dead predecessor left running and sends those attempts down the retry path
//!   once (`recover.rs`).
//!
//! # Layout
//! - this file: the supervisor around the worker loop (state file, recovery, reaper,
//!   notes) and `Commands`, the loop's kind of job;
//! - `attempt.rs`: one attempt, from claim to outcome; `beat.rs`: its heartbeats;
//! - `child.rs`: spawning in a process group, stopping the attempt's processes;
//! - `reaper.rs`: the subreaper, an attempt's strays, reaping adopted orphans;
//! - `output.rs`: output as progress, directives, tails; `logs.rs`: where it is kept;
//! - `report.rs`: recording outcomes (`crate::runner::record`) as notes; `records.rs`:
//!   the state file;
//! - `recover.rs`: cleaning up after a dead supervisor (its command's process group: what
//!   left the group went to init with it); `procfs.rs`: reading `/proc`;
//! - `program.rs`: finding the program before anything starts;
//! - `config.rs`: [`ExecConfig`].

mod attempt;
mod beat;
mod child;
mod config;
mod logs;
mod output;
mod procfs;
mod program;
mod reaper;
mod records;
mod recover;
mod report;

pub use config::{CommandOutput, ExecConfig, LineSink, default_state_dir};
pub use logs::stderr_lines;
pub use recover::Recovered;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::ledger::{Claim, Ledger, WorkerRegistration, WorkerRequest};
use crate::runner::worker_loop::{self, Kind, Pump, Settings};
use crate::runner::{AttemptCounts, Outcome};
use attempt::Context;
use program::command_line;
use records::Records;

/// What can stop a supervisor from starting or running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// The ledger refused (a bad configuration, an unreachable Redis, a claim refused).
    #[error(transparent)]
    Ledger(#[from] Error),
    /// The command cannot be run: fix the command line.
    #[error("cannot run {program}: {reason}")]
    Command {
        /// The program, as given.
        program: String,
        /// Why not.
        reason: String,
    },
    /// The log directory cannot be used: pick another (`CommandOutput::LogDir`).
    #[error("cannot use the log directory {}: {source}", path.display())]
    LogDir {
        /// The directory (of this queue).
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// The state directory cannot be used: pick another with `state_dir`.
    #[error("cannot use the state directory {}: {source}", path.display())]
    StateDir {
        /// The directory (of this namespace and queue).
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
}

/// What a [`Supervisor::run`] did, counted per attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExecReport {
    /// The attempts, counted by what became of them (a command that exited 0 succeeded).
    pub attempts: AttemptCounts,
    /// What was cleaned up after a previous supervisor at start-up.
    pub recovered: Recovered,
    /// Set when the supervisor stopped because the watchdog asked it to (tier 1): after
    /// `restart` it handed back what it ran, after `drain` it finished it first. Either
    /// way it deregistered; the binary exits 75 after a restart request so that a process
    /// manager starts a fresh one.
    pub stopped_by: Option<WorkerRequest>,
}

/// Runs a command per execution of one queue. See the module docs.
///
/// ```no_run
/// use tokio_util::sync::CancellationToken;
/// use unstuck::supervise::{ExecConfig, Supervisor};
/// use unstuck::{Ledger, LedgerConfig};
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let ledger = Ledger::connect(LedgerConfig::new("redis://127.0.0.1:6379/")).await?;
/// let command = vec!["sh".into(), "-c".into(), "./summarise.sh".into()];
/// let config = ExecConfig { concurrency: 4, ..ExecConfig::new("agents", command) };
/// let report = Supervisor::new(ledger, config)?.run(CancellationToken::new()).await?;
/// println!("{} succeeded", report.attempts.succeeded);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Supervisor {
    ledger: Ledger,
    config: Arc<ExecConfig>,
}

impl Supervisor {
    /// # Errors
    /// As [`ExecConfig::check`].
    pub fn new(ledger: Ledger, config: ExecConfig) -> Result<Self, ExecError> {
        config.check()?;
        Ok(Self {
            ledger,
            config: Arc::new(config),
        })
    }

    /// Cleans up after a dead predecessor, registers, then claims and runs commands until
    /// `shutdown` is cancelled. On shutdown it stops claiming, stops every command (SIGTERM,
    /// SIGKILL after the grace), fails their attempts retryably, deregisters and reports.
    ///
    /// # Errors
    /// The state directory cannot be used; registering failed; a claim was refused for a
    /// reason other than an unreachable Redis (running commands are stopped and reported
    /// first). Transient Redis errors are retried, never returned.
    pub async fn run(self, shutdown: CancellationToken) -> Result<ExecReport, ExecError> {
        let config = &self.config;
        let registration = WorkerRegistration::for_this_process(
            env!("CARGO_PKG_VERSION"),
            vec![config.queue.clone()],
        )
        .heartbeat_interval(config.worker_heartbeat_interval);
        let namespace = &self.ledger.config().namespace;
        let dir = records::queue_dir(&config.state_dir, namespace, &config.queue);
        let records = Records::create(&dir, &registration.worker_id).map_err(|source| {
            ExecError::StateDir {
                path: dir.clone(),
                source,
            }
        })?;
        if let CommandOutput::LogDir(logs) = &config.output {
            let path = logs.join(&config.queue);
            if let Err(source) = std::fs::create_dir_all(&path) {
                records.remove();
                return Err(ExecError::LogDir { path, source });
            }
        }
        let note = |line: &str| {
            if let Some(sink) = &config.notes {
                sink(line);
            }
        };
        let reaper = Arc::new(reaper::Reaper::new(config.subreaper));
        let reaping = CancellationToken::new();
        let reaper_task = tokio::spawn({
            let reaper = reaper.clone();
            let stop = reaping.clone();
            async move { reaper.run(stop).await }
        });
        let recovered = recover::previous(
            &self.ledger,
            &dir,
            &registration.worker_id,
            config.stop_grace,
            &note,
        )
        .await;
        let records = Arc::new(records);
        let commands = Arc::new(Commands {
            ctx: Arc::new(Context {
                ledger: self.ledger.clone(),
                config: config.clone(),
                records: records.clone(),
                reaper: reaper.clone(),
                shutdown: shutdown.child_token(),
            }),
        });
        let settings = Settings {
            queue: config.queue.clone(),
            concurrency: config.concurrency,
            claim_wait: config.claim_wait,
            registration,
            worker_heartbeat_interval: config.worker_heartbeat_interval,
        };
        let ran = match worker_loop::run(&self.ledger, settings, commands, &shutdown).await {
            Ok(ran) => ran,
            Err(e) => {
                records.remove();
                reaping.cancel();
                let _ = reaper_task.await;
                logs::flush_shared().await;
                return Err(e.into());
            }
        };
        records.remove();
        // Whatever still descends from the supervisor is a command's: a stray that
        // cleared its environment, or one that started after its attempt was swept.
        reaping.cancel();
        let _ = reaper_task.await;
        let swept = reaper.sweep(config.stop_grace).await;
        if swept > 0 {
            note(&format!(
                "unstuck: {swept} processes the commands left running were stopped"
            ));
        }
        let report = ExecReport {
            attempts: ran.tally,
            recovered,
            stopped_by: ran.stopped_by,
        };
        note(&format!(
            "unstuck: worker {} stopped: {} claimed, {} succeeded, {} retried, {} failed, \
             {} cancelled, {} lost, {} unreported",
            ran.worker_id,
            report.attempts.claimed,
            report.attempts.succeeded,
            report.attempts.retried,
            report.attempts.failed,
            report.attempts.cancelled,
            report.attempts.lost,
            report.attempts.unreported
        ));
        logs::flush_shared().await;
        match ran.refused {
            Some(e) => Err(e.into()),
            None => Ok(report),
        }
    }
}

/// Supervised commands as the worker loop's kind of job: one process group per attempt.
struct Commands {
    ctx: Arc<Context>,
}

impl Kind for Commands {
    /// The attempt's beats go through the worker's heartbeat batcher, on the pump's thread.
    fn launch(&self, claim: Claim, pump: &Pump) -> impl Future<Output = Outcome> + Send + 'static {
        attempt::run(self.ctx.clone(), pump.beats().clone(), claim)
    }

    fn running(&self) -> Vec<(String, String)> {
        self.ctx.records.running()
    }

    /// SIGTERM to every command's group, SIGKILL after the grace; their attempts fail
    /// retryably ("supervisor stopped").
    fn stop_all(&self) {
        self.ctx.shutdown.cancel();
    }

    fn started(&self, worker_id: &str) {
        let config = &self.ctx.config;
        self.note(&format!(
            "worker {worker_id} runs {} from queue {} ({} at a time)",
            command_line(&config.command),
            config.queue,
            config.concurrency,
        ));
    }

    fn note(&self, line: &str) {
        if let Some(sink) = &self.ctx.config.notes {
            sink(&format!("unstuck: {line}"));
        }
    }
}
