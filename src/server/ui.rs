//! The dashboard at `/ui/`: files embedded in the binary (nothing fetched at build
//! or run time) that use only the public API with the token the operator types in.

use axum::Router;
use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use super::AppState;
use super::problem::ApiError;

const INDEX: &str = include_str!("ui/index.html");
const STYLE: &str = include_str!("ui/style.css");

/// The scripts (ES modules), by file name.
const SCRIPTS: [(&str, &str); 9] = [
    ("app.js", include_str!("ui/app.js")),
    ("api.js", include_str!("ui/api.js")),
    ("dom.js", include_str!("ui/dom.js")),
    ("overview.js", include_str!("ui/overview.js")),
    ("queues.js", include_str!("ui/queues.js")),
    ("executions.js", include_str!("ui/executions.js")),
    ("feed.js", include_str!("ui/feed.js")),
    ("waiting.js", include_str!("ui/waiting.js")),
    ("resources.js", include_str!("ui/resources.js")),
];

/// Only our own files and our own API: no inline script, no third-party origin.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                      connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                      form-action 'none'; frame-ancestors 'none'";

/// The dashboard's routes; they need no token (the page asks for one).
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route(
            "/ui/",
            get(|| async { file(INDEX, "text/html; charset=utf-8") }),
        )
        .route("/ui/{script}", get(script))
        .route(
            "/ui/style.css",
            get(|| async { file(STYLE, "text/css; charset=utf-8") }),
        )
}

async fn script(Path(name): Path<String>) -> Result<Response, ApiError> {
    let (_, body) = SCRIPTS
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or(ApiError::NoRoute)?;
    Ok(file(body, "text/javascript; charset=utf-8"))
}

fn file(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}
