//! `unstuck exec`: any command as a worker (the library's `unstuck::supervise`).

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use tokio_util::sync::CancellationToken;
use unstuck::supervise::{ExecConfig, Supervisor, default_state_dir};

/// How the command is run. Numbers and durations are read here rather than by clap, so a
/// bad one is one line that names the flag.
#[derive(clap::Args, Debug)]
pub(crate) struct ExecArgs {
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
    /// TOML settings file ([ledger]); UNSTUCK_LEDGER__* environment variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The command and its arguments, after `--`: run once per execution, the payload
    /// on stdin.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<OsString>,
}

const USAGE: &str = "unstuck exec --queue Q -- CMD ARGS…";

/// Runs the supervisor until SIGINT/SIGTERM.
pub(crate) async fn exec(args: ExecArgs) -> anyhow::Result<()> {
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
    let output: unstuck::supervise::LineSink = Arc::new(|line: &str| {
        // Passing output on must never stop the work: a closed stderr is ignored.
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    });
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
        output: Some(output),
        ..ExecConfig::new(queue, args.command)
    };
    config.check()?;
    let ledger = super::connect_to(args.config.as_deref()).await?;
    let supervisor = Supervisor::new(ledger, config)?;
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        super::wait_for_signal().await;
        eprintln!("unstuck: stopping: no more claims; running commands get SIGTERM");
        signal.cancel();
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
