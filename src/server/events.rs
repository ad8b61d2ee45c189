//! `GET /v1/events`: the partitions' event streams as Server-Sent Events, resumable with
//! `Last-Event-ID`, ending when the server shuts down.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use utoipa::IntoParams;

use super::AppState;
use super::extract::Query;
use super::problem::ApiError;
use crate::error::Error;
use crate::events::{Event, EventFollower};
use crate::ledger::{WorkerEvent, WorkerEventFollower};
use crate::names;

/// How often an idle stream sends a comment, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `GET /v1/events` parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// Only this queue's events.
    #[param(value_type = Option<super::wire::schema::QueueName>, inline)]
    queue: Option<String>,
    /// Resume after this event id (as the `Last-Event-ID` header does).
    last_event_id: Option<String>,
}

/// `<partition>-<ms>-<seq>` → (partition, stream id).
fn parse_event_id(id: &str) -> Result<(u16, String), ApiError> {
    let bad = || ApiError::BadRequest {
        detail: format!("{id:?} is not an event id (<partition>-<ms>-<seq>)"),
        field: Some("Last-Event-ID".into()),
    };
    let (p, stream_id) = id.split_once('-').ok_or_else(bad)?;
    Ok((p.parse().map_err(|_| bad())?, stream_id.to_owned()))
}

/// Every transition as it happens, one SSE message per event (`id:` the event id); a
/// reconnect with `Last-Event-ID` misses nothing.
#[utoipa::path(get, path = "/v1/events", tag = "events", operation_id = "event_stream",
    params(EventsQuery, ("Last-Event-ID" = Option<String>, Header,
        description = "Resume after this event id (`<partition>-<ms>-<seq>`); wins over `last_event_id`.")),
    responses((status = 200, content_type = "text/event-stream",
        description = "Server-Sent Events named `transition`, each `data` an Event, `id` its event id.")))]
pub(crate) async fn stream(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let partitions = match &q.queue {
        Some(queue) => {
            names::validate_queue(queue)?;
            vec![s.ledger.partition_of(queue)]
        }
        None => Vec::new(),
    };
    let resume = last_event_id(&headers, q.last_event_id);
    let follower = match resume {
        Some(id) => {
            let (p, stream_id) = parse_event_id(&id)?;
            s.ledger
                .follow_events_after(partitions, (p, &stream_id))
                .await?
        }
        None => s.ledger.follow_events(partitions).await?,
    };
    let queue = q.queue;
    let keep = move |e: &Event| queue.as_ref().is_none_or(|q| *q == e.queue);
    let events = messages(follower, keep, message, s.shutdown.clone());
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// A live stream an SSE route follows, one batch at a time.
pub(super) trait Follow: Send + 'static {
    type Item: Send;
    fn next_batch(&mut self) -> impl Future<Output = crate::Result<Vec<Self::Item>>> + Send;
}

impl Follow for EventFollower {
    type Item = Event;
    fn next_batch(&mut self) -> impl Future<Output = crate::Result<Vec<Event>>> + Send {
        EventFollower::next_batch(self)
    }
}

impl Follow for WorkerEventFollower {
    type Item = WorkerEvent;
    fn next_batch(&mut self) -> impl Future<Output = crate::Result<Vec<WorkerEvent>>> + Send {
        WorkerEventFollower::next_batch(self)
    }
}

/// The resume point: the `Last-Event-ID` header, else the query's `last_event_id`.
pub(super) fn last_event_id(headers: &HeaderMap, query: Option<String>) -> Option<String> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(query)
}

/// The SSE messages of what `follower` reads and `keep` lets through, oldest first, until
/// `shutdown`; a read error ends the stream (the client reconnects with `Last-Event-ID`
/// and misses nothing).
pub(super) fn messages<F: Follow>(
    follower: F,
    keep: impl Fn(&F::Item) -> bool + Clone + Send + 'static,
    message: fn(F::Item) -> SseEvent,
    shutdown: CancellationToken,
) -> impl Stream<Item = Result<SseEvent, Infallible>> + Send {
    let state = (follower, Vec::<SseEvent>::new());
    stream::unfold(state, move |(mut follower, mut ready)| {
        let (keep, shutdown) = (keep.clone(), shutdown.clone());
        async move {
            loop {
                if let Some(next) = ready.pop() {
                    return Some((Ok(next), (follower, ready)));
                }
                let batch = tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    batch = follower.next_batch() => batch,
                };
                match batch {
                    Ok(items) => {
                        ready = items.into_iter().filter(&keep).map(message).collect();
                        ready.reverse(); // popped from the end: oldest first
                    }
                    Err(Error::Redis(e)) if e.is_timeout() => {}
                    Err(error) => {
                        tracing::warn!(%error, "event stream ended");
                        return None;
                    }
                }
            }
        }
    })
}

fn message(e: Event) -> SseEvent {
    SseEvent::default()
        .id(e.id.clone())
        .event("transition")
        .json_data(&e)
        .unwrap_or_else(|_| SseEvent::default().comment("unserializable event"))
}
