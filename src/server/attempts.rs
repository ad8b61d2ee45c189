//! Worker routes about work: claims (long poll) and the attempt calls, each carrying the
//! attempt token a claim returned.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::extract::Body;
use super::problem::ApiError;
use super::wire::schema::{self, QueuePath};
use super::wire::{ClaimOut, DurationIn};
use crate::ledger::{
    AttemptToken, CompleteOutcome, FailOptions, FailOutcome, Heartbeat, HeartbeatReply, Usage,
};

/// `POST /v1/queues/{queue}/claims`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClaimIn {
    /// The claiming worker's registered id.
    #[schema(value_type = schema::WorkerId, inline)]
    worker_id: String,
    #[serde(default = "one")]
    #[schema(value_type = schema::ClaimMax, inline)]
    max: usize,
    #[serde(default)]
    #[schema(value_type = Option<schema::ClaimWait>, inline)]
    wait_ms: Option<DurationIn>,
}

fn one() -> usize {
    1
}

/// The claims made.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct ClaimsOut {
    pub(crate) claims: Vec<ClaimOut>,
}

/// Claims up to `max` executions, waiting up to `wait_ms` for one to become claimable;
/// `204` when none did.
#[utoipa::path(post, path = "/v1/queues/{queue}/claims", tag = "attempts",
    params(QueuePath), request_body = ClaimIn,
    responses((status = 200, body = ClaimsOut), (status = 204, description = "nothing claimable within wait_ms")))]
pub(crate) async fn claim(
    State(s): State<AppState>,
    Path(queue): Path<String>,
    Body(c): Body<ClaimIn>,
) -> Result<Response, ApiError> {
    let wait = c.wait_ms.map_or(Duration::ZERO, |d| d.0);
    let batch = s
        .ledger
        .claim_wait_until(&queue, &c.worker_id, c.max, wait, &s.shutdown)
        .await?;
    if batch.claims.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(Json(ClaimsOut {
        claims: batch.claims.into_iter().map(ClaimOut::from).collect(),
    })
    .into_response())
}

/// Reads an attempt token from a body.
fn token(text: &str) -> Result<AttemptToken, ApiError> {
    Ok(text.parse::<AttemptToken>()?)
}

/// `POST /v1/attempts/heartbeat`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct HeartbeatIn {
    token: String,
    /// Counts as progress only when it changes.
    #[serde(default)]
    progress: Option<String>,
    /// Where a retry should resume from; replaces the previous one.
    #[serde(default)]
    #[schema(value_type = Option<schema::AnyJson>, inline)]
    checkpoint: Option<serde_json::Value>,
    /// Loop detection: the last action and its result, in short; each heartbeat that
    /// carries one is one arrival.
    #[serde(default)]
    #[schema(value_type = Option<schema::FingerprintText>, inline)]
    fingerprint: Option<String>,
    /// Tokens and cost spent since the previous delta; `seq` required.
    #[serde(default)]
    usage: Option<Usage>,
}

/// Keep going, or stop soon and acknowledge.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct HeartbeatOut {
    pub(crate) cancel_requested: bool,
    /// Why, when the ledger asked rather than an operator: `budget_exceeded`. Absent for
    /// an operator's cancel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cancel_reason: Option<String>,
}

impl HeartbeatIn {
    /// The beat the library takes: its token, read, and what it carries.
    pub(crate) fn into_beat(self) -> Result<(AttemptToken, Heartbeat), ApiError> {
        let beat = Heartbeat {
            progress: self.progress,
            checkpoint: self.checkpoint,
            fingerprint: self.fingerprint,
            usage: self.usage,
        };
        Ok((token(&self.token)?, beat))
    }
}

impl HeartbeatOut {
    /// The reply to one beat: keep going (or stop soon and acknowledge), or the refusal
    /// of a beat whose attempt is no longer current.
    pub(crate) fn from_reply(reply: HeartbeatReply) -> Result<Self, ApiError> {
        match reply {
            HeartbeatReply::Ok {
                cancel_requested,
                cancel_reason,
            } => Ok(HeartbeatOut {
                cancel_requested,
                cancel_reason,
            }),
            refused => Err(refused.refusal().into()),
        }
    }
}

/// The attempt is alive; optional progress, checkpoint and fingerprint.
#[utoipa::path(post, path = "/v1/attempts/heartbeat", tag = "attempts",
    request_body = HeartbeatIn, responses((status = 200, body = HeartbeatOut),
        (status = 409, description = "stale-attempt or already-terminal")))]
pub(crate) async fn heartbeat(
    State(s): State<AppState>,
    Body(b): Body<HeartbeatIn>,
) -> Result<Json<HeartbeatOut>, ApiError> {
    let (token, beat) = b.into_beat()?;
    HeartbeatOut::from_reply(s.ledger.heartbeat(&token, beat).await?).map(Json)
}

/// `POST /v1/attempts/complete`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CompleteIn {
    token: String,
    /// What it produced.
    #[serde(default)]
    #[schema(value_type = Option<schema::AnyJson>, inline)]
    result: Option<serde_json::Value>,
    /// The attempt's last usage delta (applied once, by its `seq`).
    #[serde(default)]
    usage: Option<Usage>,
}

/// The attempt's outcome was recorded.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct RecordedOut {
    /// True when this call freed the attempt's capacity slot.
    pub(crate) slot_released: bool,
}

fn recorded(outcome: CompleteOutcome) -> Result<Json<RecordedOut>, ApiError> {
    match outcome {
        CompleteOutcome::Recorded { slot_released } => Ok(Json(RecordedOut { slot_released })),
        refused => Err(refused.refusal().into()),
    }
}

/// The attempt succeeded, with an optional result.
#[utoipa::path(post, path = "/v1/attempts/complete", tag = "attempts",
    request_body = CompleteIn, responses((status = 200, body = RecordedOut),
        (status = 409, description = "stale-attempt or already-terminal")))]
pub(crate) async fn complete(
    State(s): State<AppState>,
    Body(c): Body<CompleteIn>,
) -> Result<Json<RecordedOut>, ApiError> {
    recorded(
        s.ledger
            .complete_with_usage(&token(&c.token)?, c.result.as_ref(), c.usage)
            .await?,
    )
}

/// `POST /v1/attempts/fail`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FailIn {
    token: String,
    /// Kept as the latest failure (cut at `MAX_ERROR_MESSAGE`, 4096 bytes).
    message: String,
    /// With attempts left, retry after the backoff (default true).
    #[serde(default = "yes")]
    retryable: bool,
    /// The earliest the retry may start, from now (say, a provider's `Retry-After`): wins
    /// over the backoff when later. Only with `retryable`.
    #[serde(default)]
    #[schema(value_type = Option<schema::SnoozeDelay>, inline)]
    retry_after_ms: Option<DurationIn>,
    /// The attempt's last usage delta (applied once, by its `seq`).
    #[serde(default)]
    usage: Option<Usage>,
}

fn yes() -> bool {
    true
}

/// What a failure led to.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct FailOut {
    /// `retry_scheduled`, `failed` or `cancelled` (cancellation had been requested).
    pub(crate) outcome: String,
    /// When the next attempt may start (`retry_scheduled`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) available_at: Option<DateTime<Utc>>,
    pub(crate) slot_released: bool,
}

/// The attempt failed.
#[utoipa::path(post, path = "/v1/attempts/fail", tag = "attempts",
    request_body = FailIn, responses((status = 200, body = FailOut),
        (status = 409, description = "stale-attempt or already-terminal")))]
pub(crate) async fn fail(
    State(s): State<AppState>,
    Body(f): Body<FailIn>,
) -> Result<Json<FailOut>, ApiError> {
    let out = |outcome: &str, available_at, slot_released| {
        Ok(Json(FailOut {
            outcome: outcome.into(),
            available_at,
            slot_released,
        }))
    };
    let options = FailOptions {
        retryable: f.retryable,
        retry_after: f.retry_after_ms.map(|d| d.0),
    };
    match s
        .ledger
        .fail_with_usage(&token(&f.token)?, &f.message, options, f.usage)
        .await?
    {
        FailOutcome::RetryScheduled {
            available_at,
            slot_released,
        } => out("retry_scheduled", Some(available_at), slot_released),
        FailOutcome::Failed { slot_released } => out("failed", None, slot_released),
        FailOutcome::Cancelled { slot_released } => out("cancelled", None, slot_released),
        refused => Err(refused.refusal().into()),
    }
}

/// `POST /v1/attempts/cancel-ack`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenIn {
    token: String,
}

/// The worker stopped after a cancellation request: the execution is cancelled.
#[utoipa::path(post, path = "/v1/attempts/cancel-ack", tag = "attempts",
    request_body = TokenIn, responses((status = 200, body = RecordedOut),
        (status = 409, description = "invalid-transition, stale-attempt or already-terminal")))]
pub(crate) async fn cancel_ack(
    State(s): State<AppState>,
    Body(t): Body<TokenIn>,
) -> Result<Json<RecordedOut>, ApiError> {
    recorded(s.ledger.acknowledge_cancel(&token(&t.token)?).await?)
}
