//! The commands: one file each, with its clap arguments (`Args`) and its `run`; the enum
//! below names them all and hands each one to its file.

mod cancel;
mod demo;
mod enqueue;
mod events;
#[cfg(unix)]
mod exec;
mod executions;
mod openapi;
mod pin;
mod queues;
mod resources;
mod resume;
mod retry;
mod serve;
mod show;
mod status;
mod usage;
mod walkthrough;
mod watchdog;
mod workers;

use clap::Subcommand;

/// Every command of `unstuck`; each variant's doc is its line in `unstuck --help`, taken
/// from its `Args` (from the variant for the commands with actions, whose `Args` is a
/// shared `WithActions`).
#[derive(Subcommand)]
pub(crate) enum Command {
    /// Queues: depth, claimable now, slots in use / capacity, age of the oldest queued, and
    /// their pause (since when, by whom, why).
    Queues(queues::Args),
    Executions(executions::Args),
    Show(show::Args),
    Enqueue(enqueue::Args),
    Cancel(cancel::Args),
    Resume(resume::Args),
    Retry(retry::Args),
    Pin(pin::Args),
    Events(events::Args),
    /// Registered workers: host, pid, version, queues, last beat, executions held, and the
    /// remediation tier (`open`: the circuit is open, unstuck no longer acts on it).
    Workers(workers::Args),
    /// Resources held (resource leases): capacity, holders with attempt and since; and
    /// `release` to force-release a unit with a reason.
    Resources(resources::Args),
    Status(status::Args),
    Watchdog(watchdog::Args),
    Serve(serve::Args),
    Openapi(openapi::Args),
    #[cfg(unix)]
    Exec(exec::Args),
    Walkthrough(walkthrough::Args),
    Demo(demo::Args),
}

impl Command {
    /// Runs the command.
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        match self {
            Command::Queues(cmd) => cmd.run().await,
            Command::Executions(cmd) => cmd.run().await,
            Command::Show(cmd) => cmd.run().await,
            Command::Enqueue(cmd) => cmd.run().await,
            Command::Cancel(cmd) => cmd.run().await,
            Command::Resume(cmd) => cmd.run().await,
            Command::Retry(cmd) => cmd.run().await,
            Command::Pin(cmd) => cmd.run().await,
            Command::Events(cmd) => cmd.run().await,
            Command::Workers(cmd) => cmd.run().await,
            Command::Resources(cmd) => cmd.run().await,
            Command::Status(cmd) => cmd.run().await,
            Command::Watchdog(cmd) => cmd.run().await,
            Command::Serve(cmd) => cmd.run().await,
            Command::Openapi(cmd) => cmd.run().await,
            #[cfg(unix)]
            Command::Exec(cmd) => cmd.run().await,
            Command::Walkthrough(cmd) => cmd.run().await,
            Command::Demo(cmd) => cmd.run().await,
        }
    }
}

/// A `--limit`: 1 to 1000.
pub(super) fn page_limit(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=1000).contains(&n) => Ok(n),
        _ => Err("expected a number from 1 to 1000".into()),
    }
}
