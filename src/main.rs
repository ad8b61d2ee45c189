//! The `unstuck` command: parses the command line and hands over to the library.

use anyhow::Context;
use clap::{Parser, Subcommand};

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
    /// Walk through one execution's life: enqueue, claim, heartbeat, crash, retry, complete.
    Demo {
        /// Use this Redis instead of starting a throwaway redis-server.
        #[arg(long, env = "UNSTUCK_REDIS_URL")]
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
        Command::Demo { redis } => {
            let redis = unstuck::demo::DemoRedis::obtain(redis).context("starting redis")?;
            println!("redis: {}", redis.url);
            unstuck::demo::walkthrough(&redis.url).await?;
        }
    }
    Ok(())
}
