//! `unstuck serve`: the HTTP API (and, by default, one watchdog replica) until
//! SIGINT/SIGTERM.

use std::path::{Path, PathBuf};

use anyhow::Context;
use unstuck::server::Server;
use unstuck::settings::Settings;

/// Serve the HTTP API (and one watchdog replica) until SIGINT/SIGTERM; see
/// docs/http-api.md.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// TOML settings file ([ledger], [watchdog] and [server] sections); UNSTUCK_*
    /// environment variables override it (UNSTUCK_SERVER__LISTEN=127.0.0.1:9000).
    #[arg(long)]
    config: Option<PathBuf>,
    /// For trying it out: start a throwaway redis-server (no persistence, gone when
    /// the server stops) instead of connecting to ledger.redis_url.
    #[arg(long)]
    throwaway_redis: bool,
}

impl Args {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        serve(self.config.as_deref(), self.throwaway_redis).await
    }
}

/// Loads the settings, binds, and serves until a signal; then drains and hands the
/// leases back.
async fn serve(config: Option<&Path>, throwaway_redis: bool) -> anyhow::Result<()> {
    let mut settings = Settings::load(config)?;
    let tracing = crate::cli::tracing::start()?;
    let redis = if throwaway_redis {
        let redis = crate::cli::redis::DemoRedis::obtain(None).context("starting redis")?;
        eprintln!(
            "throwaway redis-server at {} (gone when this server stops)",
            redis.url
        );
        settings.ledger.redis_url = Some(redis.url.clone());
        settings.ledger.cluster_urls.clear();
        Some(redis)
    } else {
        None
    };
    let shutdown = crate::cli::signal::shutdown_on_signal(|| {
        eprintln!(
            "shutting down: answering long polls, closing event streams, handing leases back"
        );
    });
    let watchdog = settings.server.watchdog;
    let server = Server::bind(settings.ledger, settings.server, settings.watchdog)
        .await
        .context("starting the server")?;
    let addr = server.local_addr()?;
    if server.requires_tokens() {
        eprintln!("unstuck serve listening on http://{addr} (bearer tokens required)");
    } else {
        eprintln!(
            "unstuck serve listening on http://{addr} with no tokens configured: every \
             route is open, so it listens on loopback only (set server.tokens to serve others)"
        );
    }
    eprintln!("dashboard: http://{addr}/ui/   API description: http://{addr}/openapi.json");
    if watchdog {
        eprintln!(
            "a watchdog replica runs in this process (server.watchdog = false to turn it off)"
        );
    }
    let served = server.run(shutdown).await;
    crate::cli::tracing::stop(tracing).await;
    served?;
    drop(redis);
    Ok(())
}
