//! The error replies in the OpenAPI document: one `Problem` schema (RFC 9457, its `type`
//! one of the server's problem types) and the problem responses every operation can give,
//! each listing the problem types of its status.

use axum::http::StatusCode;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{Content, HeaderBuilder, Ref, RefOr};

use crate::server::problem::TYPES;

/// The content type of every error reply.
pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// The name of the schema in `components`.
pub(crate) const PROBLEM: &str = "Problem";

fn text(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
}

fn count(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0))
        .description(Some(description))
}

/// The problem document: the four RFC 9457 members every reply has, and the extension
/// members some types add.
pub(crate) fn schema() -> Schema {
    let types = TYPES.iter().map(|k| format!("/problems/{}", k.slug));
    ObjectBuilder::new()
        .description(Some(
            "An RFC 9457 problem document. `type` is stable per kind of error; \
             GET it for what it means.",
        ))
        .property(
            "type",
            text("The problem type: `/problems/<slug>`.").enum_values(Some(types)),
        )
        .required("type")
        .property("title", text("The type's title."))
        .required("title")
        .property(
            "status",
            count("The HTTP status.")
                .minimum(Some(400))
                .maximum(Some(599)),
        )
        .required("status")
        .property("detail", text("What happened, for a person."))
        .required("detail")
        .property(
            "field",
            text("The field, parameter, header or setting at fault."),
        )
        .property("limit", count("The limit that was exceeded, in bytes."))
        .property("queue", text("The execution's queue."))
        .property("id", text("The execution's id."))
        .property("worker_id", text("The worker's id."))
        .property("current_attempt", count("The execution's current attempt."))
        .property(
            "attempt_ended",
            ObjectBuilder::new()
                .schema_type(Type::Boolean)
                .description(Some(
                    "stale-attempt: always true; the caller's attempt is over.",
                )),
        )
        .property(
            "next_attempt",
            ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                    Type::Integer,
                    Type::Null,
                ]))
                .minimum(Some(1))
                .description(Some(
                    "stale-attempt: the attempt number the next claim gives while a retry \
                     waits in the queue; null when a newer attempt holds the execution.",
                )),
        )
        .property(
            "health",
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some(
                    "redis-unavailable from GET /v1/watchdog: the health verdict (as in \
                 WatchdogStatus).",
                )),
        )
        .property("state", Ref::from_schema_name("State"))
        .property("stop_reason", text("Why the execution stopped."))
        .property("scope", text("The token scope the route needs."))
        .into()
}

/// A shared problem response of `status`: `description`, then every problem type of that
/// status.
pub(crate) fn shared(status: u16, description: &str) -> Response {
    let slugs: Vec<String> = TYPES
        .iter()
        .filter(|k| k.status.as_u16() == status)
        .map(|k| format!("`{}`", k.slug))
        .collect();
    let mut text = description.trim_end_matches('.').to_owned();
    if !slugs.is_empty() {
        text.push_str(&format!(". Problem types: {}.", slugs.join(", ")));
    }
    response(status, text)
}

/// A problem response of `status`, described by `description` (which names its types).
fn response(status: u16, description: String) -> Response {
    let mut builder = ResponseBuilder::new().description(description).content(
        PROBLEM_JSON,
        Content::new(Some(Ref::from_schema_name(PROBLEM))),
    );
    // Unavailable (nothing was done) and an unknown outcome (retry the same call) both
    // say when to try again.
    if status == StatusCode::SERVICE_UNAVAILABLE.as_u16()
        || status == StatusCode::GATEWAY_TIMEOUT.as_u16()
    {
        builder = builder.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::Integer))
                .description(Some("Seconds to wait before retrying."))
                .build(),
        );
    }
    builder.build()
}

/// What an operation is, for choosing its problem responses.
pub(crate) struct Shape {
    pub(crate) needs_token: bool,
    pub(crate) writes: bool,
    pub(crate) touches_redis: bool,
    pub(crate) names_execution: bool,
}

/// Adds the problem responses `operation` can give (shared ones by `$ref`) and turns the
/// error responses it declares itself into problem documents.
pub(crate) fn describe(operation: &mut Operation, shape: &Shape) {
    let has_input = operation.request_body.is_some()
        || operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
    let wanted = [
        ("400", has_input),
        ("401", shape.needs_token),
        ("403", shape.needs_token),
        ("404", shape.names_execution),
        ("413", operation.request_body.is_some()),
        ("500", shape.touches_redis),
        ("503", true),
        ("504", shape.writes && shape.touches_redis),
    ];
    let responses = &mut operation.responses.responses;
    for (status, applies) in wanted {
        if applies && !responses.contains_key(status) {
            responses.insert(
                status.to_owned(),
                RefOr::Ref(Ref::new(format!(
                    "#/components/responses/{}",
                    shared_name(status)
                ))),
            );
        }
    }
    for (status, reply) in responses.iter_mut() {
        let (Ok(code), RefOr::T(reply)) = (status.parse::<u16>(), reply) else {
            continue;
        };
        if code >= 400 && reply.content.is_empty() {
            *reply = response(code, std::mem::take(&mut reply.description));
        }
    }
    optional_body_is_not_null(operation);
}

/// An optional body (`request_body(content = Option<T>)`) is documented by utoipa as "T or
/// null"; the server takes T or nothing, never `null`: keep T, not required.
fn optional_body_is_not_null(operation: &mut Operation) {
    let Some(body) = operation.request_body.as_mut() else {
        return;
    };
    for content in body.content.values_mut() {
        let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema else {
            continue;
        };
        let not_null: Vec<_> = one_of
            .items
            .iter()
            .filter(
                |s| !matches!(s, RefOr::T(Schema::Object(o)) if o.schema_type == Type::Null.into()),
            )
            .cloned()
            .collect();
        if let [only] = not_null.as_slice() {
            content.schema = Some(only.clone());
        }
    }
}

/// The shared problem responses: (status, name in `components.responses`, description).
pub(crate) const SHARED: [(&str, &str, &str); 8] = [
    (
        "400",
        "BadRequest",
        "The request is malformed or a value breaks a rule.",
    ),
    (
        "401",
        "Unauthorized",
        "No valid bearer token (when the server has tokens).",
    ),
    (
        "403",
        "Forbidden",
        "The token's scope does not allow this route.",
    ),
    ("404", "NotFound", "No such execution."),
    (
        "413",
        "TooLarge",
        "The body, a payload, a result or a checkpoint is too large.",
    ),
    ("500", "Internal", "Server-side trouble."),
    (
        "503",
        "Unavailable",
        "Redis is unavailable, or the server is busy or shutting down: retry after `Retry-After`.",
    ),
    (
        "504",
        "UnknownOutcome",
        "The call was sent to Redis but no reply came: retrying the same call is safe.",
    ),
];

fn shared_name(status: &str) -> &'static str {
    SHARED
        .iter()
        .find(|(s, ..)| *s == status)
        .map_or("Internal", |(_, name, _)| name)
}
