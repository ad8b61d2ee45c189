//! Execution routes: enqueue (one, a batch), list, get, its events, cancel.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::extract::{Body, MaybeBody, Query};
use super::problem::ApiError;
use super::wire::schema::{self, ExecutionPath, IdempotencyKey, QueuePath, TraceParentHeader};
use super::wire::{EnqueueIn, parse_state};
use crate::events::Event;
use crate::ledger::{AttemptRefused, CancelOutcome, EnqueueOptions};
use crate::ledger::{Enqueued, Execution};
use crate::otel::TraceParent;
use crate::timeline::TimelineEntry;

/// The header that may carry an enqueue's id (idempotency).
const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The W3C Trace Context header an enqueue may carry (docs/tracing.md).
const TRACEPARENT: &str = "traceparent";

fn options(
    item: &EnqueueIn,
    id: Option<String>,
    traceparent: Option<TraceParent>,
) -> EnqueueOptions {
    EnqueueOptions {
        id,
        timings: item.timings.clone().into(),
        delay: item.delay.as_ref().map(|d| d.0),
        traceparent,
        budget: item.budget,
    }
}

/// The request's W3C `traceparent` header. One that does not parse (or is repeated) is
/// ignored, as the W3C Trace Context spec says a receiver does, with a warning; the
/// enqueue goes on without it.
fn traceparent(headers: &HeaderMap) -> Option<TraceParent> {
    let mut values = headers.get_all(TRACEPARENT).iter();
    let (value, repeated) = (values.next()?, values.next().is_some());
    let parsed = value.to_str().ok().and_then(TraceParent::parse);
    if parsed.is_none() || repeated {
        tracing::warn!(traceparent = ?value, repeated, "ignoring a malformed traceparent header");
        return None;
    }
    parsed
}

/// The id of an enqueue: the body's, or the Idempotency-Key header's; both must agree.
fn enqueue_id(item: &EnqueueIn, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let key = match headers.get(IDEMPOTENCY_KEY) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::BadRequest {
                    detail: "the Idempotency-Key header is not text".into(),
                    field: Some("Idempotency-Key".into()),
                })?
                .to_owned(),
        ),
    };
    match (&item.id, key) {
        (Some(id), Some(key)) if *id != key => Err(ApiError::BadRequest {
            detail: format!("the body's id {id:?} and the Idempotency-Key {key:?} differ"),
            field: Some("id".into()),
        }),
        (Some(id), _) => Ok(Some(id.clone())),
        (None, key) => Ok(key),
    }
}

/// Enqueues one execution: `201` when created, `200` for a replay of the same request,
/// `422` when the id exists with a different one.
#[utoipa::path(post, path = "/v1/queues/{queue}/executions", tag = "executions",
    request_body = EnqueueIn,
    params(QueuePath, IdempotencyKey, TraceParentHeader),
    responses(
        (status = 201, body = Enqueued, description = "Created; `Location` names it.",
            headers(("Location" = String, description = "The execution's URL."))),
        (status = 200, body = Enqueued, description = "A replay: the id exists with the same request."),
        (status = 422, description = "idempotency-conflict: the id exists with a different request.")))]
pub(crate) async fn enqueue(
    State(s): State<AppState>,
    Path(queue): Path<String>,
    headers: HeaderMap,
    Body(item): Body<EnqueueIn>,
) -> Result<Response, ApiError> {
    let id = enqueue_id(&item, &headers)?;
    let e = s
        .ledger
        .enqueue(
            &queue,
            &item.payload,
            options(&item, id, traceparent(&headers)),
        )
        .await?;
    if e.conflict {
        return Err(ApiError::IdempotencyConflict {
            queue: e.queue,
            id: e.id,
        });
    }
    Ok(created(e))
}

/// `201 Created` with a `Location` for a new execution, `200` with the existing one for a
/// replay of its id.
pub(crate) fn created(e: crate::ledger::Enqueued) -> Response {
    let status = if e.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let location = format!("/v1/queues/{}/executions/{}", e.queue, e.id);
    let mut response = (status, Json(e)).into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// `POST /v1/queues/{queue}/executions/batch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchIn {
    #[schema(value_type = schema::EnqueueBatch, inline)]
    items: Vec<EnqueueIn>,
}

/// What a batch enqueue did, per item in order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct BatchOut {
    pub(crate) items: Vec<Enqueued>,
}

/// Enqueues up to `MAX_ENQUEUE_BATCH` (1000) executions of one queue in one script: all or
/// none.
#[utoipa::path(post, path = "/v1/queues/{queue}/executions/batch", tag = "executions",
    params(QueuePath, TraceParentHeader), request_body = BatchIn,
    responses((status = 200, body = BatchOut, description = "Per item in order: created, or the existing one.")))]
pub(crate) async fn enqueue_batch(
    State(s): State<AppState>,
    Path(queue): Path<String>,
    headers: HeaderMap,
    Body(batch): Body<BatchIn>,
) -> Result<Json<BatchOut>, ApiError> {
    let tp = traceparent(&headers);
    let items: Vec<(&serde_json::Value, EnqueueOptions)> = batch
        .items
        .iter()
        .map(|item| (&item.payload, options(item, item.id.clone(), tp)))
        .collect();
    let done = s.ledger.enqueue_many(&queue, items).await?;
    Ok(Json(BatchOut { items: done }))
}

/// `GET /v1/queues/{queue}/executions` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// The state to list.
    #[param(value_type = crate::ledger::State)]
    state: String,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// How many at most.
    #[param(value_type = Option<schema::ListLimit>, inline)]
    limit: Option<usize>,
}

/// A page of executions.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct PageOut {
    pub(crate) items: Vec<Execution>,
    /// Pass it as `cursor` for the next page; absent on the last.
    pub(crate) next_cursor: Option<String>,
}

/// Lists a queue's executions in one state, paged.
#[utoipa::path(get, path = "/v1/queues/{queue}/executions", tag = "executions", operation_id = "list_executions",
    params(QueuePath, ListQuery), responses((status = 200, body = PageOut)))]
pub(crate) async fn list(
    State(s): State<AppState>,
    Path(queue): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<PageOut>, ApiError> {
    let state = parse_state(&q.state)?;
    let page = s
        .ledger
        .list(&queue, state, q.cursor.as_deref(), q.limit.unwrap_or(50))
        .await?;
    Ok(Json(PageOut {
        items: page.items,
        next_cursor: page.next,
    }))
}

/// One execution, with its recent history.
#[utoipa::path(get, path = "/v1/queues/{queue}/executions/{id}", tag = "executions", operation_id = "get_execution",
    params(ExecutionPath), responses((status = 200, body = Execution)))]
pub(crate) async fn get(
    State(s): State<AppState>,
    Path((queue, id)): Path<(String, String)>,
) -> Result<Json<Execution>, ApiError> {
    Ok(Json(s.ledger.get(&queue, &id).await?))
}

/// Transitions, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct EventsOut {
    pub(crate) events: Vec<Event>,
}

/// An execution's transitions.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct ExecutionEventsOut {
    /// Its events the (capped) stream still holds, oldest first.
    pub(crate) events: Vec<Event>,
    /// Every transition its history holds, with the events' details where they survive;
    /// each entry's `source` says which (`event`, or `history` when its event was trimmed).
    pub(crate) timeline: Vec<TimelineEntry>,
}

/// One execution's transitions, oldest first: the events its partition's stream still
/// holds, and its whole timeline (history merged with those events).
#[utoipa::path(get, path = "/v1/queues/{queue}/executions/{id}/events", tag = "executions", operation_id = "execution_events",
    params(ExecutionPath), responses((status = 200, body = ExecutionEventsOut)))]
pub(crate) async fn events(
    State(s): State<AppState>,
    Path((queue, id)): Path<(String, String)>,
) -> Result<Json<ExecutionEventsOut>, ApiError> {
    let (_, events, timeline) = s.ledger.timeline(&queue, &id).await?;
    Ok(Json(ExecutionEventsOut { events, timeline }))
}

/// `POST .../cancel`.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct CancelIn {
    /// Recorded for the people reading it later.
    reason: Option<String>,
}

/// What a cancel did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct CancelOut {
    /// `cancelled` (it was queued) or `requested` (its worker is asked to stop).
    pub(crate) outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) requested_at: Option<DateTime<Utc>>,
    /// True when an earlier call had requested it (nothing changed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) already: Option<bool>,
}

/// Cancels an execution: at once when queued, by asking its worker when active.
#[utoipa::path(post, path = "/v1/queues/{queue}/executions/{id}/cancel", tag = "executions",
    params(ExecutionPath),
    request_body(content = Option<CancelIn>, description = "Optional: an empty body is `{}`."),
    responses((status = 200, body = CancelOut),
        (status = 409, description = "already-terminal: it ended before; its outcome is given.")))]
pub(crate) async fn cancel(
    State(s): State<AppState>,
    Path((queue, id)): Path<(String, String)>,
    MaybeBody(body): MaybeBody<CancelIn>,
) -> Result<Json<CancelOut>, ApiError> {
    let reason = body
        .reason
        .unwrap_or_else(|| "cancelled through the HTTP API".into());
    match s.ledger.cancel(&queue, &id, &reason).await? {
        CancelOutcome::Cancelled => Ok(Json(CancelOut {
            outcome: "cancelled".into(),
            requested_at: None,
            already: None,
        })),
        CancelOutcome::Requested {
            requested_at,
            already,
        } => Ok(Json(CancelOut {
            outcome: "requested".into(),
            requested_at: Some(requested_at),
            already: Some(already),
        })),
        CancelOutcome::AlreadyTerminal { state, stop_reason } => {
            Err(AttemptRefused::Terminal { state, stop_reason }.into())
        }
    }
}
