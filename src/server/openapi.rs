//! The OpenAPI document, generated from the route annotations and the wire types (no
//! build step, nothing downloaded); its security requirements come from the route table
//! and its error replies from the problem types.

use std::sync::LazyLock;

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, RefOr};
use utoipa::{Modify, OpenApi};

use super::routes::{self, Verb};
use super::wire::problem::{self, PROBLEM, SHARED, Shape};
use super::{
    attempts, auth, beats, events, executions, operator, queues, resources, snooze, status, waits,
    worker_events, workers,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "unstuck",
        description = "Execution ledger and watchdog on Redis. Durations are integer \
                       milliseconds (strings like \"30s\" are accepted on input); errors are \
                       RFC 9457 problem documents. See docs/http-api.md."
    ),
    paths(
        queues::list, queues::get, queues::put, queues::pause, queues::resume, queues::usage,
        executions::enqueue, executions::enqueue_batch, executions::list, executions::get,
        executions::events, executions::cancel, operator::retry, operator::find,
        operator::pin, operator::unpin,
        attempts::claim, attempts::heartbeat, beats::heartbeats, attempts::complete, attempts::fail,
        attempts::cancel_ack, snooze::snooze, waits::await_resume, waits::resume,
        waits::resume_by_token, resources::acquire, resources::release, resources::list,
        resources::get, resources::force_release,
        workers::register, workers::list, workers::heartbeat, workers::deregister,
        workers::reset, worker_events::events, worker_events::live, workers::request,
        events::stream, operator::recent,
        status::watchdog, operator::activity, auth::session, status::healthz, status::readyz,
        status::metrics, status::openapi, status::problem,
    ),
    modifiers(&FromRouteTable),
)]
struct ApiDoc;

/// Routes that answer without Redis: no `500`/`504` from a Redis call.
const WITHOUT_REDIS: [&str; 5] = [
    "/healthz",
    "/openapi.json",
    "/problems/{slug}",
    "/v1/session",
    "/metrics",
];

/// Fills in what the annotations leave to one place: the bearer scheme, each operation's
/// scope (from [`routes::table`]), the `Problem` schema and the problem responses.
struct FromRouteTable;

impl Modify for FromRouteTable {
    fn modify(&self, api: &mut Document) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components
            .schemas
            .insert(PROBLEM.to_owned(), RefOr::T(problem::schema()));
        for (status, name, description) in SHARED {
            let code = status.parse().unwrap_or(500);
            components.responses.insert(
                name.to_owned(),
                RefOr::T(problem::shared(code, description)),
            );
        }
        for route in routes::table() {
            let Some(operation) = operation(api, route.verb, route.path) else {
                continue; // the test names it
            };
            operation.security = route
                .scope
                .map(|scope| vec![SecurityRequirement::new("bearer", [scope.as_str()])]);
            let shape = Shape {
                needs_token: route.scope.is_some(),
                writes: route.verb != Verb::Get,
                touches_redis: !WITHOUT_REDIS.contains(&route.path),
                names_execution: route.path.contains("{id}")
                    || route.path.starts_with("/v1/attempts/"),
            };
            problem::describe(operation, &shape);
        }
    }
}

fn operation<'a>(api: &'a mut Document, verb: Verb, path: &str) -> Option<&'a mut Operation> {
    let item = api.paths.paths.get_mut(path)?;
    match verb {
        Verb::Get => item.get.as_mut(),
        Verb::Post => item.post.as_mut(),
        Verb::Put => item.put.as_mut(),
        Verb::Delete => item.delete.as_mut(),
    }
}

/// The document as JSON, built once.
pub(crate) fn document() -> String {
    static DOC: LazyLock<String> = LazyLock::new(|| {
        ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    });
    DOC.clone()
}

#[cfg(test)]
mod tests;
