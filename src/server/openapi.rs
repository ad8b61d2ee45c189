//! The OpenAPI document, generated from the route annotations and the wire types (no
//! build step, nothing downloaded).

use std::sync::LazyLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{attempts, auth, events, executions, operator, queues, status, worker_events, workers};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "unstuck",
        description = "Execution ledger and watchdog on Redis. Durations are integer \
                       milliseconds (strings like \"30s\" are accepted on input); errors are \
                       RFC 9457 problem documents. See docs/http-api.md."
    ),
    paths(
        queues::list, queues::get, queues::put,
        executions::enqueue, executions::enqueue_batch, executions::list, executions::get,
        executions::events, executions::cancel, operator::retry, operator::find,
        operator::pin, operator::unpin,
        attempts::claim, attempts::heartbeat, attempts::complete, attempts::fail,
        attempts::cancel_ack,
        workers::register, workers::list, workers::heartbeat, workers::deregister,
        workers::reset, worker_events::events, worker_events::live, workers::request,
        events::stream, operator::recent,
        status::watchdog, operator::activity, auth::session, status::healthz, status::readyz, status::metrics,
    ),
    modifiers(&Bearer),
)]
struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
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
