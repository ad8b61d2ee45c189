//! The `unstuck` command: parses the command line and hands over to the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "unstuck",
    version,
    about = "Execution ledger and watchdog on Redis"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one watchdog replica until SIGINT/SIGTERM, then hand its leases back.
    Watchdog {
        /// TOML settings file ([ledger] and [watchdog] sections); UNSTUCK_LEDGER__* and
        /// UNSTUCK_WATCHDOG__* environment variables override it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Walk through one execution's life: enqueue, claim, heartbeat, crash, retry, complete.
    Walkthrough {
        /// Use this Redis instead of starting a throwaway redis-server.
        #[arg(long)]
        redis: Option<String>,
    },
    /// Run the fault-injection demo (see the README).
    Demo {
        /// Use this Redis instead of starting a throwaway redis-server.
        #[arg(long)]
        redis: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Watchdog { config } => watchdog(config).await,
        Command::Walkthrough { redis } | Command::Demo { redis } => {
            let redis = unstuck::demo::DemoRedis::obtain(redis).context("starting redis")?;
            println!("redis: {}", redis.url);
            unstuck::demo::walkthrough(&redis.url).await?;
            Ok(())
        }
    }
}

async fn watchdog(config: Option<PathBuf>) -> anyhow::Result<()> {
    let settings = unstuck::settings::Settings::load(config.as_deref())?;
    let ledger = unstuck::Ledger::connect(settings.ledger)
        .await
        .context("connecting to redis")?;
    let replica = unstuck::watchdog::Watchdog::new(ledger, settings.watchdog)?;
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        signal.cancel();
    });
    eprintln!(
        "watchdog replica {} running; Ctrl-C to stop",
        replica.replica_id()
    );
    replica.run(shutdown).await?;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
