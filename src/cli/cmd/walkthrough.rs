//! `unstuck walkthrough`: `examples/walkthrough.rs` run against a Redis.

use anyhow::Context;

#[path = "../../../examples/walkthrough.rs"]
mod example;

/// Walk through one execution's life: enqueue, claim, heartbeat, crash, retry, complete.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Use this Redis instead of starting a throwaway redis-server.
    #[arg(long)]
    redis: Option<String>,
}

impl Args {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let redis = crate::cli::redis::DemoRedis::obtain(self.redis).context("starting redis")?;
        println!("redis: {}", unstuck::config::redact_url(&redis.url));
        example::walkthrough(&redis.url)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        Ok(())
    }
}
