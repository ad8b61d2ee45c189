//! `unstuck watchdog`: one watchdog replica until SIGINT/SIGTERM.

use std::path::PathBuf;

use anyhow::Context;

/// Run one watchdog replica until SIGINT/SIGTERM, then hand its leases back.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// TOML settings file ([ledger] and [watchdog] sections); UNSTUCK_LEDGER__* and
    /// UNSTUCK_WATCHDOG__* environment variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
}

impl Args {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        watchdog(self.config).await
    }
}

async fn watchdog(config: Option<PathBuf>) -> anyhow::Result<()> {
    let settings = unstuck::settings::Settings::load(config.as_deref())?;
    let tracing = crate::cli::tracing::start()?;
    let ledger = unstuck::Ledger::connect(settings.ledger)
        .await
        .context("connecting to redis")?;
    let replica = unstuck::watchdog::Watchdog::new(ledger, settings.watchdog)?;
    let shutdown = crate::cli::signal::shutdown_on_signal(|| {});
    eprintln!(
        "watchdog replica {} running; Ctrl-C to stop",
        replica.replica_id()
    );
    let ran = replica.run(shutdown).await;
    crate::cli::tracing::stop(tracing).await;
    ran?;
    Ok(())
}
