//! `unstuck exec`: any command as a worker (the library's `unstuck::supervise`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail};
use unstuck::supervise::{CommandOutput, ExecConfig, Supervisor, default_state_dir, stderr_lines};

// Numbers and durations are read here rather than by clap, so a bad one is one line that
// names the flag.
/// Run a command as a worker: once per execution of the queue, in a process group of
/// its own, the payload on stdin; heartbeats while it lives, its output is progress,
/// its exit code the outcome; a cancel or a lost attempt kills the whole group.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The queue to claim executions from.
    #[arg(long)]
    queue: Option<String>,
    /// Commands run at once (1 to 1000).
    #[arg(long, default_value = "1")]
    concurrency: String,
    /// Kill a command that writes nothing on stdout or stderr for this long, and retry
    /// it (like 30s or 5m). Off by default.
    #[arg(long)]
    no_output_timeout: Option<String>,
    /// How long a command told to stop (cancelled, lost, shutdown) gets between SIGTERM
    /// and SIGKILL to its process group.
    #[arg(long, default_value = "10s")]
    stop_grace: String,
    /// How often the worker registry hears from the supervisor (its reply may ask it to
    /// restart or drain: see docs/worker-tiers.md).
    #[arg(long, default_value = "5s")]
    worker_heartbeat_interval: String,
    /// Where the records of running commands are kept for a restart
    /// (default $XDG_STATE_HOME/unstuck/exec or ~/.local/state/unstuck/exec).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Put `[queue/id#attempt] ` before each line of the commands' output passed on to
    /// stdout and stderr.
    #[arg(long)]
    prefix: bool,
    /// Keep the commands' output in one file per attempt, DIR/<queue>/<id>.<attempt>.log
    /// (stdout and stderr together), instead of passing it on to stdout and stderr.
    #[arg(long, value_name = "DIR")]
    log_dir: Option<PathBuf>,
    /// TOML settings file ([ledger]); UNSTUCK_LEDGER__* environment variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The command and its arguments, after `--`: run once per execution, the payload
    /// on stdin.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<OsString>,
}

const USAGE: &str = "unstuck exec --queue Q -- CMD ARGS…";

impl Args {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        exec(self).await
    }
}

/// Runs the supervisor until SIGINT/SIGTERM.
async fn exec(args: Args) -> anyhow::Result<()> {
    let Some(queue) = args.queue else {
        bail!("--queue is missing: {USAGE}");
    };
    if args.command.is_empty() {
        bail!("no command to run: give it after --, as in {USAGE}");
    }
    let concurrency = match args.concurrency.parse::<usize>() {
        Ok(n) if (1..=unstuck::runner::MAX_CONCURRENCY).contains(&n) => n,
        _ => bail!(
            "--concurrency {}: expected a number from 1 to {}",
            args.concurrency,
            unstuck::runner::MAX_CONCURRENCY
        ),
    };
    let state_dir = match args.state_dir.or_else(default_state_dir) {
        Some(dir) => dir,
        None => {
            bail!("no state directory: set --state-dir (neither XDG_STATE_HOME nor HOME is set)")
        }
    };
    let output = match args.log_dir {
        Some(_) if args.prefix => {
            bail!(
                "--prefix is for output passed on to stdout and stderr; --log-dir writes it to files"
            )
        }
        Some(dir) => CommandOutput::LogDir(dir),
        None => CommandOutput::Passthrough {
            prefix: args.prefix,
        },
    };
    // The notes share the commands' stderr queue: they stay in order with its lines, and
    // a stalled stderr never stops the work.
    let notes = stderr_lines();
    let config = ExecConfig {
        concurrency,
        no_output_timeout: args
            .no_output_timeout
            .map(|d| duration("--no-output-timeout", &d))
            .transpose()?,
        stop_grace: duration("--stop-grace", &args.stop_grace)?,
        worker_heartbeat_interval: duration(
            "--worker-heartbeat-interval",
            &args.worker_heartbeat_interval,
        )?,
        state_dir,
        output,
        notes: Some(notes.clone()),
        ..ExecConfig::new(queue, args.command)
    };
    config.check()?;
    let ledger = crate::cli::connect::connect_to(args.config.as_deref()).await?;
    let supervisor = Supervisor::new(ledger, config)?;
    let shutdown = crate::cli::signal::shutdown_on_signal(move || {
        notes("unstuck: stopping: no more claims; running commands get SIGTERM");
    });
    let report = supervisor.run(shutdown).await?;
    if report.stopped_by == Some(unstuck::WorkerRequest::Restart) {
        // EX_TEMPFAIL: a process manager starts a fresh one (of the expected version).
        std::process::exit(75);
    }
    Ok(())
}

/// A duration flag's value, or one line naming the flag.
fn duration(flag: &str, value: &str) -> anyhow::Result<Duration> {
    humantime::parse_duration(value)
        .map_err(|_| anyhow!("{flag} {value}: expected a duration like 500ms, 30s, 5m or 1h"))
}
