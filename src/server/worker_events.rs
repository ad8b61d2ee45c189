//! `GET /v1/workers/events` and `GET /v1/workers/events/live`: the workers' event stream
//! (tier changes, action and hook outcomes, circuits), read back or as Server-Sent Events.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::Stream;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::problem::ApiError;
use crate::ledger::WorkerEvent;

/// `GET /v1/workers/events` query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct WorkerEventsQuery {
    /// A stream id: the events after it (absent: the oldest kept).
    after: Option<String>,
    /// At most this many (default 100, at most 1000).
    limit: Option<usize>,
    /// The newest `limit` instead (oldest first); `after` is then ignored.
    newest: bool,
}

/// Worker tier changes, action outcomes, circuits opened and reset.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct WorkerEventsOut {
    pub(crate) events: Vec<WorkerEvent>,
}

/// Worker remediation events, oldest first.
#[utoipa::path(get, path = "/v1/workers/events", tag = "workers", operation_id = "worker_events", params(WorkerEventsQuery),
    responses((status = 200, body = WorkerEventsOut)))]
pub(crate) async fn events(
    State(s): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<WorkerEventsQuery>,
) -> Result<Json<WorkerEventsOut>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    let events = if q.newest {
        s.ledger.recent_worker_events(limit).await?
    } else {
        s.ledger.worker_events(q.after.as_deref(), limit).await?
    };
    Ok(Json(WorkerEventsOut { events }))
}

/// `GET /v1/workers/events/live` parameters.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct LiveQuery {
    /// Resume after this stream id (as the `Last-Event-ID` header does).
    last_event_id: Option<String>,
}

/// Worker remediation events as they happen, one SSE message each (`id:` the stream id);
/// a reconnect with `Last-Event-ID` misses nothing.
#[utoipa::path(get, path = "/v1/workers/events/live", tag = "workers", operation_id = "worker_events_live",
    params(LiveQuery, ("Last-Event-ID" = Option<String>, Header,
        description = "Resume after this stream id (`<ms>-<seq>`); wins over `last_event_id`.")),
    responses((status = 200, content_type = "text/event-stream",
        description = "Server-Sent Events named `worker`, each `data` a WorkerEvent, `id` its stream id.")))]
pub(crate) async fn live(
    State(s): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<LiveQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let resume = super::events::last_event_id(&headers, q.last_event_id);
    if let Some(id) = &resume
        && !id
            .split_once('-')
            .is_some_and(|(ms, seq)| ms.parse::<u64>().is_ok() && seq.parse::<u64>().is_ok())
    {
        return Err(ApiError::BadRequest {
            detail: format!("{id:?} is not a stream id (<ms>-<seq>)"),
            field: Some("Last-Event-ID".into()),
        });
    }
    let follower = s.ledger.follow_worker_events(resume.as_deref()).await?;
    let messages = super::events::messages(follower, |_| true, message, s.shutdown.clone());
    Ok(Sse::new(messages).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn message(e: WorkerEvent) -> SseEvent {
    SseEvent::default()
        .id(e.stream_id.clone())
        .event("worker")
        .json_data(&e)
        .unwrap_or_else(|_| SseEvent::default().comment("unserializable event"))
}
