//! Queue routes: overviews, settings, and pause and resume.

use axum::Json;
use axum::extract::{Extension, Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::extract::{Body, MaybeBody};
use super::problem::ApiError;
use super::wire::QueueSettingsIn;
use super::wire::schema::QueuePath;
use crate::ledger::{QueueOverview, QueuePauseChange, QueueUsage};

/// Every known queue.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct QueuesOut {
    pub(crate) queues: Vec<QueueOverview>,
}

/// Every known queue's overview.
#[utoipa::path(get, path = "/v1/queues", tag = "queues", operation_id = "list_queues",
    responses((status = 200, body = QueuesOut)))]
pub(crate) async fn list(State(s): State<AppState>) -> Result<Json<QueuesOut>, ApiError> {
    let queues = s.ledger.queue_overviews().await?;
    Ok(Json(QueuesOut { queues }))
}

/// One queue's overview.
#[utoipa::path(get, path = "/v1/queues/{queue}", tag = "queues", operation_id = "get_queue", params(QueuePath),
    responses((status = 200, body = QueueOverview)))]
pub(crate) async fn get(
    State(s): State<AppState>,
    Path(queue): Path<String>,
) -> Result<Json<QueueOverview>, ApiError> {
    Ok(Json(s.ledger.queue_overview(&queue).await?))
}

/// A queue's usage: totals since its first usage, by model, and the rolling window with
/// its window budget.
#[utoipa::path(get, path = "/v1/queues/{queue}/usage", tag = "queues", operation_id = "queue_usage", params(QueuePath),
    responses((status = 200, body = QueueUsage)))]
pub(crate) async fn usage(
    State(s): State<AppState>,
    Path(queue): Path<String>,
) -> Result<Json<QueueUsage>, ApiError> {
    Ok(Json(s.ledger.queue_usage(&queue).await?))
}

/// Replaces a queue's settings (capacity, default timings).
#[utoipa::path(put, path = "/v1/queues/{queue}", tag = "queues", operation_id = "put_queue", params(QueuePath),
    request_body = QueueSettingsIn,
    responses((status = 200, body = QueueOverview)))]
pub(crate) async fn put(
    State(s): State<AppState>,
    Path(queue): Path<String>,
    Body(settings): Body<QueueSettingsIn>,
) -> Result<Json<QueueOverview>, ApiError> {
    s.ledger.set_queue(&queue, &settings.into()).await?;
    Ok(Json(s.ledger.queue_overview(&queue).await?))
}

/// `POST /v1/queues/{queue}/pause`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PauseIn {
    /// Why (1 to 500 bytes): shown with the queue and in the `queue_paused` event.
    reason: String,
}

/// Pauses a queue: its claims take nothing (long polls keep waiting, they are not
/// refused) until it is resumed; running work goes on and is still judged. The event
/// names the caller's scope (`http:admin`) and the reason. Pausing a paused queue changes
/// nothing (`changed: false`, the pause in force).
#[utoipa::path(post, path = "/v1/queues/{queue}/pause", tag = "queues", operation_id = "pause_queue",
    params(QueuePath), request_body = PauseIn,
    responses((status = 200, body = QueuePauseChange), (status = 404, description = "unknown-queue")))]
pub(crate) async fn pause(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(queue): Path<String>,
    Body(body): Body<PauseIn>,
) -> Result<Json<QueuePauseChange>, ApiError> {
    Ok(Json(
        s.ledger
            .pause_queue(&queue, &caller.name(), &body.reason)
            .await?,
    ))
}

/// `POST /v1/queues/{queue}/resume`.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct QueueResumeIn {
    /// Why, for the `queue_resumed` event (up to 500 bytes).
    reason: Option<String>,
}

/// Resumes a paused queue: its waiting claims wake at once and take its work. Resuming a
/// running queue changes nothing (`changed: false`).
#[utoipa::path(post, path = "/v1/queues/{queue}/resume", tag = "queues", operation_id = "resume_queue",
    params(QueuePath),
    request_body(content = Option<QueueResumeIn>, description = "Optional: an empty body is `{}`."),
    responses((status = 200, body = QueuePauseChange), (status = 404, description = "unknown-queue")))]
pub(crate) async fn resume(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(queue): Path<String>,
    MaybeBody(body): MaybeBody<QueueResumeIn>,
) -> Result<Json<QueuePauseChange>, ApiError> {
    let reason = body.reason.unwrap_or_default();
    Ok(Json(
        s.ledger
            .resume_queue(&queue, &caller.name(), &reason)
            .await?,
    ))
}
