//! Queue routes: overviews and settings.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::extract::Body;
use super::problem::ApiError;
use super::wire::QueueSettingsIn;
use super::wire::schema::QueuePath;
use crate::ledger::QueueOverview;

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
