//! The whole API surface on one screen: every route, the scope a token needs for it, and
//! the layers every request goes through.

use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{MethodRouter, delete, get, post, put};
use axum::{BoxError, Router};
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;

use super::auth::{Scope, require};
use super::problem::ApiError;
use super::{
    AppState, attempts, auth, events, executions, metrics, operator, queues, status, ui,
    worker_events, workers,
};

/// The router of `unstuck serve`.
pub(crate) fn router(state: AppState) -> Router {
    use Scope::{Orchestrator, Read, Worker};
    let needs = |need: Scope, route: MethodRouter<AppState>| {
        route.route_layer(from_fn_with_state((state.clone(), need), require))
    };
    let limits = &state.limits;
    Router::new()
        // No token: probes, the API's own description, the dashboard's files.
        .route("/healthz", get(status::healthz))
        .route("/readyz", get(status::readyz))
        .route("/openapi.json", get(status::openapi))
        .route("/problems/{slug}", get(status::problem))
        .route("/metrics", needs(Read, get(status::metrics)))
        .route("/v1/session", get(auth::session))
        .merge(ui::routes())
        // Queues.
        .route("/v1/queues", needs(Read, get(queues::list)))
        .route(
            "/v1/queues/{queue}",
            needs(Read, get(queues::get)).merge(needs(Orchestrator, put(queues::put))),
        )
        // Executions.
        .route(
            "/v1/queues/{queue}/executions",
            needs(Read, get(executions::list))
                .merge(needs(Orchestrator, post(executions::enqueue))),
        )
        .route(
            "/v1/queues/{queue}/executions/batch",
            needs(Orchestrator, post(executions::enqueue_batch)),
        )
        .route(
            "/v1/queues/{queue}/executions/{id}",
            needs(Read, get(executions::get)),
        )
        .route(
            "/v1/queues/{queue}/executions/{id}/events",
            needs(Read, get(executions::events)),
        )
        .route(
            "/v1/queues/{queue}/executions/{id}/cancel",
            needs(Orchestrator, post(executions::cancel)),
        )
        .route(
            "/v1/queues/{queue}/executions/{id}/retry",
            needs(Orchestrator, post(operator::retry)),
        )
        .route(
            "/v1/queues/{queue}/executions/{id}/pin",
            needs(Orchestrator, put(operator::pin))
                .merge(needs(Orchestrator, delete(operator::unpin))),
        )
        .route("/v1/executions", needs(Read, get(operator::find)))
        // Work: claims and the attempt calls.
        .route(
            "/v1/queues/{queue}/claims",
            needs(Worker, post(attempts::claim)),
        )
        .route(
            "/v1/attempts/heartbeat",
            needs(Worker, post(attempts::heartbeat)),
        )
        .route(
            "/v1/attempts/complete",
            needs(Worker, post(attempts::complete)),
        )
        .route("/v1/attempts/fail", needs(Worker, post(attempts::fail)))
        .route(
            "/v1/attempts/cancel-ack",
            needs(Worker, post(attempts::cancel_ack)),
        )
        // The worker registry.
        .route(
            "/v1/workers",
            needs(Read, get(workers::list)).merge(needs(Worker, post(workers::register))),
        )
        .route(
            "/v1/workers/{worker}/heartbeat",
            needs(Worker, post(workers::heartbeat)),
        )
        .route(
            "/v1/workers/{worker}",
            needs(Worker, delete(workers::deregister)),
        )
        .route(
            "/v1/workers/{worker}/reset",
            needs(Orchestrator, post(workers::reset)),
        )
        .route(
            "/v1/workers/{worker}/request",
            needs(Orchestrator, post(workers::request)),
        )
        .route(
            "/v1/workers/events",
            needs(Read, get(worker_events::events)),
        )
        .route(
            "/v1/workers/events/live",
            needs(Read, get(worker_events::live)),
        )
        // Watching.
        .route("/v1/events", needs(Read, get(events::stream)))
        .route("/v1/events/recent", needs(Read, get(operator::recent)))
        .route("/v1/watchdog", needs(Read, get(status::watchdog)))
        .route(
            "/v1/watchdog/activity",
            needs(Read, get(operator::activity)),
        )
        .route_layer(from_fn_with_state(state.metrics.clone(), metrics::track))
        .fallback(status::no_route)
        .method_not_allowed_fallback(status::method_not_allowed)
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(overloaded))
                .load_shed()
                // One semaphore for the whole router: `concurrency_limit` would give each
                // route a limit of its own.
                .layer(GlobalConcurrencyLimitLayer::new(
                    limits.max_concurrent_requests,
                ))
                .timeout(limits.request_timeout),
        )
        .layer(DefaultBodyLimit::max(limits.body_limit))
        .with_state(state)
}

/// The request limits, from `[server]`.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) body_limit: usize,
    pub(crate) request_timeout: Duration,
    pub(crate) max_concurrent_requests: usize,
}

/// A request refused by the limits: saturated (`503` + `Retry-After`) or too slow.
async fn overloaded(error: BoxError) -> ApiError {
    if error.is::<tower::timeout::error::Elapsed>() {
        ApiError::Timeout
    } else {
        ApiError::Saturated
    }
}
