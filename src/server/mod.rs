//! `unstuck serve`: the HTTP API in front of the library, for workers and orchestrators in
//! any language (they hold an attempt token, never Redis credentials), with a live event
//! stream and Prometheus metrics.
//!
//! A thin layer: every handler extracts and validates, makes one library call, and maps
//! the result; no rule lives only here. `docs/http-api.md` is the contract.
//!
//! # Layout
//! - `routes.rs`: every route with the scope it needs, and the request limits;
//! - `queues.rs`, `executions.rs`, `attempts.rs` (claims and attempt calls), `workers.rs`,
//!   `events.rs` (SSE), `worker_events.rs` (worker remediation events, listed and SSE),
//!   `status.rs` (watchdog, health, metrics, OpenAPI): the handlers;
//! - `operator.rs`: executions across queues, retry, recent events, watchdog activity;
//! - `ui.rs` and `ui/`: the dashboard at `/ui/`, its files embedded in the binary;
//! - `wire.rs`: the JSON types (durations in milliseconds), converted from the library's;
//! - `problem.rs`: every error as a problem document; `auth.rs`: tokens and scopes;
//! - `extract.rs`: body and query extractors that refuse with problems;
//! - `metrics.rs`: the Prometheus registry; `openapi.rs`: the generated document (its
//!   parameter, limit and problem schemas in `wire/schema.rs` and `wire/problem.rs`);
//! - `config.rs`: the `[server]` settings.

mod attempts;
mod auth;
mod beats;
mod config;
mod events;
mod executions;
mod extract;
mod metrics;
mod metrics_resources;
mod metrics_usage;
mod metrics_workers;
mod openapi;
mod operator;
mod problem;
mod queues;
mod resources;
mod routes;
mod snooze;
mod status;
mod ui;
mod waits;
// The JSON views mirror the library types field by field (documented there, in
// docs/http-api.md and in /openapi.json).
#[allow(missing_docs)]
pub mod wire;
mod worker_events;
mod workers;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use auth::Scope;
pub use config::ServerConfig;

/// The OpenAPI 3.1 document of the HTTP API, as JSON: what `GET /openapi.json` serves and
/// `unstuck openapi` prints.
pub fn openapi_document() -> String {
    openapi::document()
}

use crate::config::LedgerConfig;
use crate::error::{Error, Result};
use crate::ledger::Ledger;
use crate::watchdog::{Watchdog, WatchdogConfig};
use auth::Tokens;
use metrics::Metrics;
use routes::Limits;

/// What every handler gets: one shared value, so handing it to a request costs one atomic
/// increment (axum clones the state for every extractor that asks for it).
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

pub(crate) struct Shared {
    pub(crate) ledger: Ledger,
    pub(crate) tokens: Tokens,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) limits: Limits,
    /// Fires when the server shuts down: long polls answer at once, event streams end.
    pub(crate) shutdown: CancellationToken,
    /// This process's watchdog replica, when it runs one.
    pub(crate) replica: Option<Watchdog>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// A server bound to its address, not yet serving.
pub struct Server {
    listener: TcpListener,
    state: AppState,
    replica: Option<Watchdog>,
    sample_interval: std::time::Duration,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.listener.local_addr().ok())
            .finish()
    }
}

impl Server {
    /// Validates `server`, connects to Redis with `ledger`, and binds `server.listen`
    /// (port 0 picks a free port); with `server.watchdog`, a replica configured by
    /// `watchdog` runs in the process. With no tokens configured only a loopback address
    /// is accepted. (The daemon's `Settings` holds all three.)
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the `server.*` key; connection errors as
    /// [`Ledger::connect`].
    pub async fn bind(
        ledger: LedgerConfig,
        server: ServerConfig,
        watchdog: WatchdogConfig,
    ) -> Result<Self> {
        let server = &server;
        server.validate()?;
        let tokens = Tokens::parse(&server.tokens)?;
        let addr: SocketAddr = server.listen_addr()?;
        if tokens.is_empty() && !addr.ip().is_loopback() {
            return Err(Error::InvalidConfig {
                key: "server.listen".into(),
                value: server.listen.clone(),
                expected: "a loopback address (127.0.0.1, ::1) while no server.tokens are \
                           configured: without tokens anyone who can connect can do anything"
                    .into(),
            });
        }
        let ledger = Ledger::connect(ledger).await?;
        let replica = if server.watchdog {
            Some(Watchdog::new(ledger.clone(), watchdog)?)
        } else {
            None
        };
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| Error::InvalidConfig {
                key: "server.listen".into(),
                value: server.listen.clone(),
                expected: format!("an address this process can listen on ({e})"),
            })?;
        let limits = Limits {
            body_limit: server.body_limit,
            request_timeout: server.request_timeout,
            max_concurrent_requests: server.max_concurrent_requests,
        };
        Ok(Self {
            listener,
            state: AppState(Arc::new(Shared {
                ledger,
                tokens,
                metrics: Arc::new(Metrics::new()),
                limits,
                shutdown: CancellationToken::new(),
                replica: replica.clone(),
            })),
            replica,
            sample_interval: server.sample_interval,
        })
    }

    /// The address it listens on.
    ///
    /// # Errors
    /// [`Error::Listener`] when the OS cannot tell (it always can for a bound socket).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener.local_addr().map_err(|e| Error::Listener {
            operation: "reading its address",
            detail: e.to_string(),
        })
    }

    /// Whether requests need a token.
    pub fn requires_tokens(&self) -> bool {
        !self.state.tokens.is_empty()
    }

    /// Serves until `shutdown` fires: then stops accepting, answers waiting long polls
    /// (`204`), ends event streams, finishes the requests in flight, and hands the
    /// watchdog replica's leases back.
    ///
    /// # Errors
    /// [`Error::Listener`] when the listener fails.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let state = self.state.clone();
        let replica_task = self.replica.clone().map(|wd| {
            let stop = shutdown.child_token();
            tokio::spawn(async move { wd.run(stop).await })
        });
        let metrics_task = tokio::spawn(metrics::run(
            state.metrics.clone(),
            state.ledger.clone(),
            self.replica.clone(),
            self.sample_interval,
            shutdown.child_token(),
        ));
        let app = routes::router(state.clone());
        let signal = {
            let (shutdown, inner) = (shutdown.clone(), state.shutdown.clone());
            async move {
                shutdown.cancelled().await;
                inner.cancel();
            }
        };
        tracing::info!(addr = ?self.listener.local_addr().ok(), "serving");
        let served = axum::serve(self.listener, app)
            .with_graceful_shutdown(signal)
            .await
            .map_err(|e| Error::Listener {
                operation: "accepting connections",
                detail: e.to_string(),
            });
        state.shutdown.cancel();
        if let Some(task) = replica_task {
            match task.await {
                Ok(Err(error)) => tracing::warn!(%error, "the watchdog replica stopped badly"),
                Err(error) => tracing::error!(%error, "the watchdog replica panicked"),
                Ok(Ok(())) => {}
            }
        }
        let _ = metrics_task.await;
        tracing::info!("server stopped");
        served
    }
}
