//! Routes for operators and the dashboard: executions across queues, retry, pin, the newest
//! events, the watchdog's recent activity, and what the caller's token may do.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::executions::{EventsOut, PageOut};
use super::extract::{MaybeBody, Query};
use super::problem::ApiError;
use super::wire::parse_state;
use super::wire::schema::{self, ExecutionPath};
use crate::ledger::Enqueued;
use crate::ledger::{Filter, State as ExecState};
use crate::watchdog::{self, WatchdogActivity};

/// `GET /v1/executions` parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct FindQuery {
    /// Only this queue (every queue, by name, when absent).
    #[param(value_type = Option<schema::QueueName>, inline)]
    queue: Option<String>,
    /// Only this state.
    #[param(value_type = Option<ExecState>)]
    state: Option<String>,
    /// Only finished executions that stopped for this reason.
    #[param(value_type = Option<schema::StopReasonName>, inline)]
    stop_reason: Option<String>,
    /// Only executions whose current (or last) attempt is this worker's.
    #[param(value_type = Option<schema::WorkerId>, inline)]
    worker: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// How many at most.
    #[param(value_type = Option<schema::ListLimit>, inline)]
    limit: Option<usize>,
}

/// Executions across queues, newest first within a queue and state, filtered and paged: a
/// page reads a bounded number of executions (it may come back short with a
/// `next_cursor` when matches are rare), never the whole ledger.
#[utoipa::path(get, path = "/v1/executions", tag = "executions", params(FindQuery),
    responses((status = 200, body = PageOut)))]
pub(crate) async fn find(
    State(s): State<AppState>,
    Query(q): Query<FindQuery>,
) -> Result<Json<PageOut>, ApiError> {
    let filter = Filter {
        queue: q.queue,
        state: q.state.as_deref().map(parse_state).transpose()?,
        stop_reason: q.stop_reason,
        worker: q.worker,
    };
    let page = s
        .ledger
        .find(&filter, q.cursor.as_deref(), q.limit.unwrap_or(50))
        .await?;
    Ok(Json(PageOut {
        items: page.items,
        next_cursor: page.next,
    }))
}

/// `POST .../retry`.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RetryIn {
    /// The new execution's id (default `<id>.retry<n>`).
    #[schema(value_type = Option<schema::ExecutionId>, inline)]
    new_id: Option<String>,
    /// Why, recorded in the new execution's first event.
    reason: Option<String>,
}

/// Runs a finished (failed, dead, timed_out, cancelled) execution again as a new one
/// linked by `retry_of`, resuming from its last checkpoint; the original never changes.
/// `201` when created, `200` when that new id already existed.
#[utoipa::path(post, path = "/v1/queues/{queue}/executions/{id}/retry", tag = "executions",
    params(ExecutionPath),
    request_body(content = Option<RetryIn>, description = "Optional: an empty body is `{}`."),
    responses(
        (status = 201, body = Enqueued, description = "Created; `Location` names the new execution.",
            headers(("Location" = String, description = "The new execution's URL."))),
        (status = 200, body = Enqueued, description = "That new id already existed."),
        (status = 409, description = "invalid-transition: it has not finished, or it succeeded")))]
pub(crate) async fn retry(
    State(s): State<AppState>,
    Path((queue, id)): Path<(String, String)>,
    MaybeBody(body): MaybeBody<RetryIn>,
) -> Result<Response, ApiError> {
    let reason = body
        .reason
        .unwrap_or_else(|| "retried through the HTTP API".into());
    let e = s
        .ledger
        .retry(&queue, &id, body.new_id.as_deref(), &reason)
        .await?;
    Ok(super::executions::created(e))
}

/// An execution's pin.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct PinOut {
    pub(crate) pinned: bool,
    /// Its state now.
    pub(crate) state: ExecState,
}

/// Pins an execution: retention never removes it (any state; twice is once).
#[utoipa::path(put, path = "/v1/queues/{queue}/executions/{id}/pin", tag = "executions",
    params(ExecutionPath), responses((status = 200, body = PinOut), (status = 404, description = "not-found")))]
pub(crate) async fn pin(
    State(s): State<AppState>,
    Path((queue, id)): Path<(String, String)>,
) -> Result<Json<PinOut>, ApiError> {
    let state = s.ledger.pin(&queue, &id).await?;
    Ok(Json(PinOut {
        pinned: true,
        state,
    }))
}

/// Unpins an execution: retention applies again (past it, the next prune removes it).
#[utoipa::path(delete, path = "/v1/queues/{queue}/executions/{id}/pin", tag = "executions",
    params(ExecutionPath), responses((status = 200, body = PinOut), (status = 404, description = "not-found")))]
pub(crate) async fn unpin(
    State(s): State<AppState>,
    Path((queue, id)): Path<(String, String)>,
) -> Result<Json<PinOut>, ApiError> {
    let state = s.ledger.unpin(&queue, &id).await?;
    Ok(Json(PinOut {
        pinned: false,
        state,
    }))
}

/// `GET /v1/events/recent` parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct RecentQuery {
    /// Only this queue's events.
    #[param(value_type = Option<schema::QueueName>, inline)]
    queue: Option<String>,
    /// How many at most.
    #[param(value_type = Option<schema::RecentLimit>, inline)]
    limit: Option<usize>,
}

/// The newest events, oldest first: what a live view shows before following
/// `/v1/events` (resume it from the last one's `id`).
#[utoipa::path(get, path = "/v1/events/recent", tag = "events", params(RecentQuery),
    responses((status = 200, body = EventsOut)))]
pub(crate) async fn recent(
    State(s): State<AppState>,
    Query(q): Query<RecentQuery>,
) -> Result<Json<EventsOut>, ApiError> {
    let events = s
        .ledger
        .recent_queue_events(q.queue.as_deref(), q.limit.unwrap_or(100))
        .await?;
    Ok(Json(EventsOut { events }))
}

/// `GET /v1/watchdog/activity` parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ActivityQuery {
    /// The window in minutes.
    #[param(value_type = Option<schema::ActivityMinutes>, inline)]
    minutes: Option<u64>,
}

/// Events read per partition at most for one activity answer.
const ACTIVITY_CAP: usize = 2000;

/// The watchdog's actions per minute by reason and its detection-lag distribution over
/// the last minutes, from the event streams (at most 2000 events per partition read).
#[utoipa::path(get, path = "/v1/watchdog/activity", tag = "watchdog", params(ActivityQuery),
    responses((status = 200, body = WatchdogActivity)))]
pub(crate) async fn activity(
    State(s): State<AppState>,
    Query(q): Query<ActivityQuery>,
) -> Result<Json<WatchdogActivity>, ApiError> {
    let minutes = q.minutes.unwrap_or(30);
    let most = schema::max_activity_minutes();
    if minutes == 0 || minutes > most {
        return Err(ApiError::BadRequest {
            detail: format!("minutes {minutes} is out of range: 1 to {most}"),
            field: Some("minutes".into()),
        });
    }
    let window = Duration::from_secs(minutes * 60);
    Ok(Json(
        watchdog::activity(&s.ledger, window, ACTIVITY_CAP).await?,
    ))
}
