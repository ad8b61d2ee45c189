//! The `unstuck` command line: parses it and hands each command to its file in `cmd/`.
//!
//! # Layout
//! - this file: the top-level parser, the flags every operator command shares (`Common`),
//!   and `run`, which hands the parsed command over;
//! - `cmd/`: one file per command, its arguments (`Args`) and its `run` (`cmd/mod.rs`
//!   names them all);
//! - `connect.rs`: the ledger an operator command talks to; `output.rs`: stdout lines and
//!   JSON; `table.rs`: tables for people; `signal.rs`: waiting for SIGINT/SIGTERM;
//! - `demo/`: the fault-injection demo behind `unstuck demo`;
//! - `redis.rs`: a throwaway `redis-server` for the demos when no `--redis` is given;
//! - `tracing.rs`: the daemons' span exporter from the `OTEL_*` variables (docs/tracing.md).

/// `println!` for what a command prints on stdout: when stdout's reader has gone
/// (`unstuck executions | head`), the command ends quietly, as Unix tools do, instead of
/// panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::emit_line(format_args!($($arg)*))
    };
}

mod cmd;
mod connect;
mod demo;
mod output;
mod redis;
mod signal;
mod table;
mod tracing;

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "unstuck",
    version,
    about = "Execution ledger and watchdog on Redis"
)]
struct Cli {
    #[command(subcommand)]
    command: cmd::Command,
}

/// What every operator command takes.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Common {
    /// TOML settings file (the one the watchdog and the server read); UNSTUCK_LEDGER__*
    /// environment variables override it.
    #[arg(long, global = true)]
    pub(crate) config: Option<PathBuf>,
    /// Print JSON (the HTTP API's field names) instead of a table.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

/// A command with actions of its own (`unstuck queues pause Q`, `unstuck workers reset W`)
/// that lists what it is about when given none.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct WithActions<A: clap::Subcommand> {
    #[command(subcommand)]
    pub(crate) action: Option<A>,
    /// Not an option: catches `unstuck queues Q` (a name without what to do with it),
    /// which would otherwise be clap's multi-line "unrecognized subcommand".
    #[arg(hide = true)]
    pub(crate) stray: Option<String>,
    #[command(flatten)]
    pub(crate) common: Common,
}

/// What a command on one execution takes first: `QUEUE ID` and the options every command
/// takes.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ExecutionRef {
    #[command(flatten)]
    pub(crate) common: Common,
    pub(crate) queue: String,
    pub(crate) id: String,
}

impl ExecutionRef {
    /// The ledger the options name.
    pub(crate) async fn connect(&self) -> anyhow::Result<unstuck::Ledger> {
        connect::connect(&self.common).await
    }
}

/// Runs the command named on the command line.
pub(crate) async fn run() -> anyhow::Result<()> {
    // Logs go to stderr: stdout is for what a script may read (`demo --json`, tables).
    // Colours only on a terminal: a log file or journald gets plain text.
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    Cli::parse().command.run().await
}

#[cfg(test)]
mod tests {
    /// clap checks a command line's definition only when it parses one, and only in debug
    /// builds: two arguments of one name (a flattened group repeated) would panic the first
    /// user of that subcommand. Every subcommand is checked here instead.
    #[test]
    fn every_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
