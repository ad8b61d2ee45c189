//! The whole API surface on one screen: every route, the scope a token needs for it, and
//! the layers every request goes through. The route table is also what the OpenAPI
//! document's security requirements come from, and what a test holds it against.

use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::middleware::from_fn_with_state;
use axum::routing::{MethodFilter, MethodRouter, on};
use axum::{BoxError, Router};
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;

use super::auth::{Scope, require};
use super::problem::ApiError;
use super::{
    AppState, attempts, auth, beats, events, executions, metrics, operator, queues, resources,
    snooze, status, ui, waits, worker_events, workers,
};

/// A route's method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    Get,
    Post,
    Put,
    Delete,
}

impl Verb {
    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
            Verb::Put => MethodFilter::PUT,
            Verb::Delete => MethodFilter::DELETE,
        }
    }

    /// The lowercase name, as the OpenAPI document keys an operation.
    #[cfg(test)]
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Post => "post",
            Verb::Put => "put",
            Verb::Delete => "delete",
        }
    }
}

/// One route of the API: what the router serves and the OpenAPI document describes.
pub(crate) struct Route {
    pub(crate) verb: Verb,
    pub(crate) path: &'static str,
    /// The scope a token needs; `None`: no token.
    pub(crate) scope: Option<Scope>,
    handler: MethodRouter<AppState>,
}

fn route<H, T>(verb: Verb, path: &'static str, scope: Option<Scope>, handler: H) -> Route
where
    H: Handler<T, AppState>,
    T: 'static,
{
    Route {
        verb,
        path,
        scope,
        handler: on(verb.filter(), handler),
    }
}

/// Every route of the API (the dashboard's files aside), with the scope it needs. The
/// router is built from it, and a test checks the OpenAPI document against it.
pub(crate) fn table() -> Vec<Route> {
    use Scope::{Admin, Orchestrator, Read, Worker};
    use Verb::{Delete, Get, Post, Put};
    let (open, read, orch, work) = (None, Some(Read), Some(Orchestrator), Some(Worker));
    let admin = Some(Admin);
    vec![
        // No token: probes, the API's own description, the problem types.
        route(Get, "/healthz", open, status::healthz),
        route(Get, "/readyz", open, status::readyz),
        route(Get, "/openapi.json", open, status::openapi),
        route(Get, "/problems/{slug}", open, status::problem),
        route(Get, "/v1/session", open, auth::session),
        route(Get, "/metrics", read, status::metrics),
        // Queues.
        route(Get, "/v1/queues", read, queues::list),
        route(Get, "/v1/queues/{queue}", read, queues::get),
        route(Put, "/v1/queues/{queue}", orch, queues::put),
        route(Post, "/v1/queues/{queue}/pause", admin, queues::pause),
        route(Post, "/v1/queues/{queue}/resume", admin, queues::resume),
        route(Get, "/v1/queues/{queue}/usage", read, queues::usage),
        // Executions.
        route(Get, "/v1/queues/{queue}/executions", read, executions::list),
        route(
            Post,
            "/v1/queues/{queue}/executions",
            orch,
            executions::enqueue,
        ),
        route(
            Post,
            "/v1/queues/{queue}/executions/batch",
            orch,
            executions::enqueue_batch,
        ),
        route(
            Get,
            "/v1/queues/{queue}/executions/{id}",
            read,
            executions::get,
        ),
        route(
            Get,
            "/v1/queues/{queue}/executions/{id}/events",
            read,
            executions::events,
        ),
        route(
            Post,
            "/v1/queues/{queue}/executions/{id}/cancel",
            orch,
            executions::cancel,
        ),
        route(
            Post,
            "/v1/queues/{queue}/executions/{id}/retry",
            orch,
            operator::retry,
        ),
        route(
            Put,
            "/v1/queues/{queue}/executions/{id}/pin",
            orch,
            operator::pin,
        ),
        route(
            Delete,
            "/v1/queues/{queue}/executions/{id}/pin",
            orch,
            operator::unpin,
        ),
        route(
            Post,
            "/v1/queues/{queue}/executions/{id}/resume",
            orch,
            waits::resume,
        ),
        // No bearer: the one-time resume token in the path is the credential.
        route(
            Post,
            "/v1/resume/{resume_token}",
            open,
            waits::resume_by_token,
        ),
        route(Get, "/v1/executions", read, operator::find),
        // Work: claims and the attempt calls.
        route(Post, "/v1/queues/{queue}/claims", work, attempts::claim),
        route(Post, "/v1/attempts/heartbeat", work, attempts::heartbeat),
        route(Post, "/v1/attempts/heartbeats", work, beats::heartbeats),
        route(Post, "/v1/attempts/complete", work, attempts::complete),
        route(Post, "/v1/attempts/fail", work, attempts::fail),
        route(Post, "/v1/attempts/snooze", work, snooze::snooze),
        route(Post, "/v1/attempts/cancel-ack", work, attempts::cancel_ack),
        route(Post, "/v1/attempts/await", work, waits::await_resume),
        route(Post, "/v1/attempts/acquire", work, resources::acquire),
        route(Post, "/v1/attempts/release", work, resources::release),
        route(Get, "/v1/resources", read, resources::list),
        route(Get, "/v1/resources/{resource}", read, resources::get),
        route(
            Post,
            "/v1/resources/{resource}/release",
            admin,
            resources::force_release,
        ),
        // The worker registry.
        route(Get, "/v1/workers", read, workers::list),
        route(Post, "/v1/workers", work, workers::register),
        route(
            Post,
            "/v1/workers/{worker}/heartbeat",
            work,
            workers::heartbeat,
        ),
        route(Delete, "/v1/workers/{worker}", work, workers::deregister),
        route(Post, "/v1/workers/{worker}/reset", orch, workers::reset),
        route(Post, "/v1/workers/{worker}/request", orch, workers::request),
        route(Get, "/v1/workers/events", read, worker_events::events),
        route(Get, "/v1/workers/events/live", read, worker_events::live),
        // Watching.
        route(Get, "/v1/events", read, events::stream),
        route(Get, "/v1/events/recent", read, operator::recent),
        route(Get, "/v1/watchdog", read, status::watchdog),
        route(Get, "/v1/watchdog/activity", read, operator::activity),
    ]
}

/// The router of `unstuck serve`: [`table`], the dashboard, and the layers every request
/// goes through.
pub(crate) fn router(state: AppState) -> Router {
    // Routes of one path share one `MethodRouter`, each method behind its own scope check.
    let mut paths: Vec<(&'static str, MethodRouter<AppState>)> = Vec::new();
    for Route {
        path,
        scope,
        handler,
        ..
    } in table()
    {
        let handler = match scope {
            Some(need) => handler.route_layer(from_fn_with_state((state.clone(), need), require)),
            None => handler,
        };
        match paths.iter_mut().find(|(p, _)| *p == path) {
            Some((_, methods)) => *methods = std::mem::take(methods).merge(handler),
            None => paths.push((path, handler)),
        }
    }
    let (probes, api): (Vec<_>, Vec<_>) = paths
        .into_iter()
        .partition(|(path, _)| UNLIMITED.contains(path));
    let routes = |paths: Vec<(&'static str, MethodRouter<AppState>)>| {
        paths
            .into_iter()
            .fold(Router::new(), |router, (path, methods)| {
                router.route(path, methods)
            })
    };
    let limits = &state.limits;
    let api = routes(api).merge(ui::routes()).layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(overloaded))
            .load_shed()
            // One semaphore for the whole router: `concurrency_limit` would give each
            // route a limit of its own.
            .layer(GlobalConcurrencyLimitLayer::new(
                limits.max_concurrent_requests,
            ))
            .timeout(limits.request_timeout),
    );
    routes(probes)
        .merge(api)
        .route_layer(from_fn_with_state(state.metrics.clone(), metrics::track))
        .fallback(status::no_route)
        .method_not_allowed_fallback(status::method_not_allowed)
        .layer(DefaultBodyLimit::max(limits.body_limit))
        .with_state(state)
}

/// Routes outside `max_concurrent_requests`: a saturated server still answers its liveness
/// and readiness probes and its metrics scrape (which is how saturation is seen), instead
/// of being restarted by an orchestrator for being busy.
const UNLIMITED: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

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
