//! `POST /v1/attempts/heartbeats`: a worker beats every attempt it holds in one request,
//! each beat answered in its place as `POST /v1/attempts/heartbeat` would answer it alone.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use super::attempts::{HeartbeatIn, HeartbeatOut};
use super::extract::Body;
use super::problem::ApiError;
use super::wire::schema;
use crate::error::Error;
use crate::ledger::{AttemptToken, Heartbeat, HeartbeatReply, MAX_HEARTBEAT_BATCH};

/// `POST /v1/attempts/heartbeats`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct HeartbeatsIn {
    #[schema(value_type = schema::HeartbeatBatch, inline)]
    heartbeats: Vec<HeartbeatIn>,
}

/// Each beat's answer, in the order of the request.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HeartbeatsOut {
    results: Vec<BeatResult>,
}

/// One beat's answer: the single route's reply, or the problem it would have answered.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum BeatResult {
    /// Keep going, or stop soon and acknowledge.
    Beat(HeartbeatOut),
    /// The beat was refused (`stale-attempt`, `already-terminal`, `token-mismatch`,
    /// `too-large`, ...): stop that attempt or fix that beat; the others are not affected.
    Refused {
        #[schema(value_type = schema::ProblemDocument, inline)]
        problem: Value,
    },
}

impl BeatResult {
    fn of(result: Result<HeartbeatOut, ApiError>) -> Self {
        match result {
            Ok(out) => BeatResult::Beat(out),
            Err(refused) => BeatResult::Refused {
                problem: refused.document().1,
            },
        }
    }
}

/// Up to `MAX_HEARTBEAT_BATCH` (1000) beats, of any queues, in one request: each judged
/// as the single heartbeat judges it, a bad one failing only itself.
#[utoipa::path(post, path = "/v1/attempts/heartbeats", tag = "attempts",
    request_body = HeartbeatsIn, responses((status = 200, body = HeartbeatsOut,
        description = "Per beat in order: the heartbeat reply, or `{\"problem\": ...}`.")))]
pub(crate) async fn heartbeats(
    State(s): State<AppState>,
    Body(b): Body<HeartbeatsIn>,
) -> Result<Json<HeartbeatsOut>, ApiError> {
    batch_size(b.heartbeats.len())?;
    let mut results: Vec<Option<BeatResult>> = Vec::with_capacity(b.heartbeats.len());
    let mut beats: Vec<(AttemptToken, Heartbeat)> = Vec::with_capacity(b.heartbeats.len());
    let mut places = Vec::with_capacity(b.heartbeats.len());
    for item in b.heartbeats {
        match item.into_beat() {
            Ok(beat) => {
                places.push(results.len());
                results.push(None);
                beats.push(beat);
            }
            // A token that does not parse fails its own beat (`invalid-token`).
            Err(refused) => results.push(Some(BeatResult::of(Err(refused)))),
        }
    }
    let replies = s.ledger.heartbeat_many(&beats).await?;
    for (place, reply) in places.into_iter().zip(replies) {
        results[place] = Some(BeatResult::of(answer(reply)));
    }
    let results = results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                BeatResult::of(Err(ApiError::Library(Error::Protocol {
                    script: "heartbeat",
                    detail: "a beat without a reply".into(),
                })))
            })
        })
        .collect();
    Ok(Json(HeartbeatsOut { results }))
}

fn answer(reply: crate::error::Result<HeartbeatReply>) -> Result<HeartbeatOut, ApiError> {
    HeartbeatOut::from_reply(reply?)
}

/// 1 to [`MAX_HEARTBEAT_BATCH`] beats: counted before any token is read, so a batch too
/// large is refused whole whatever its items hold (nothing written).
fn batch_size(beats: usize) -> Result<(), ApiError> {
    if (1..=MAX_HEARTBEAT_BATCH).contains(&beats) {
        return Ok(());
    }
    Err(Error::InvalidArgument {
        name: "heartbeats".into(),
        value: format!("{beats} beats"),
        expected: format!("1 to {MAX_HEARTBEAT_BATCH} in one request"),
    }
    .into())
}
