//! Awaiting work over HTTP: a worker's `await` (its attempt token in the body), a resume by
//! an orchestrator, and a resume by the one-time resume token (no bearer: the token is the
//! credential).

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::extract::{Body, MaybeBody};
use super::problem::ApiError;
use super::wire::DurationIn;
use super::wire::schema::{self, ExecutionPath};
use crate::ledger::{AttemptToken, AwaitOutcome, AwaitResume, Resumed, State as ExecState};

/// `POST /v1/attempts/await`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AwaitIn {
    token: String,
    /// What it waits for, for the people who may resume it.
    reason: String,
    /// How long it may wait for a resume, from now: more than 0, at most the queue's
    /// `max_wait` (7 days unless set). Milliseconds, or text like `"1h"`.
    wait_deadline_ms: DurationIn,
    /// Where the continuing claim resumes from (replaces the last checkpoint).
    #[serde(default)]
    #[schema(value_type = Option<schema::AnyJson>, inline)]
    checkpoint: Option<serde_json::Value>,
}

/// What an await did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct AwaitOut {
    /// `awaiting`, or `cancelled` (cancellation had been requested).
    pub(crate) outcome: String,
    /// The one-time resume token (`awaiting`): `POST /v1/resume/{resume_token}` resumes
    /// the execution without a bearer token. Only its hash is stored: keep it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) resume_token: Option<String>,
    /// When the watchdog ends the wait if nobody resumes it (`awaiting`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) wait_deadline_at: Option<DateTime<Utc>>,
    pub(crate) slot_released: bool,
}

/// Ends the attempt to wait on a person or an outside event: the slot is freed, the
/// execution is `awaiting` (never judged stale), and the attempt does not count toward
/// `max_attempts`. The token is stale afterwards.
#[utoipa::path(post, path = "/v1/attempts/await", tag = "attempts",
    request_body = AwaitIn, responses((status = 200, body = AwaitOut),
        (status = 409, description = "stale-attempt or already-terminal")))]
pub(crate) async fn await_resume(
    State(s): State<AppState>,
    Body(b): Body<AwaitIn>,
) -> Result<Json<AwaitOut>, ApiError> {
    let token: AttemptToken = b.token.parse()?;
    let wait = AwaitResume {
        reason: b.reason,
        wait_deadline: b.wait_deadline_ms.0,
        checkpoint: b.checkpoint,
    };
    match s.ledger.await_resume(&token, wait).await? {
        AwaitOutcome::Awaiting(a) => Ok(Json(AwaitOut {
            outcome: "awaiting".into(),
            resume_token: Some(a.resume_token),
            wait_deadline_at: Some(a.wait_deadline_at),
            slot_released: a.slot_released,
        })),
        AwaitOutcome::Cancelled { slot_released } => Ok(Json(AwaitOut {
            outcome: "cancelled".into(),
            resume_token: None,
            wait_deadline_at: None,
            slot_released,
        })),
        refused => Err(refused.refusal().into()),
    }
}

/// `POST .../resume` and `POST /v1/resume/{resume_token}`.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ResumeIn {
    /// Handed to the claim that continues the execution (`resume_input`).
    #[schema(value_type = Option<schema::AnyJson>, inline)]
    input: Option<serde_json::Value>,
}

/// What a resume did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct ResumedOut {
    #[schema(value_type = schema::QueueName, inline)]
    pub(crate) queue: String,
    #[schema(value_type = schema::ExecutionId, inline)]
    pub(crate) id: String,
    /// When it was resumed (by the first resume when `already`).
    pub(crate) resumed_at: DateTime<Utc>,
    /// True when an earlier resume did it: nothing changed.
    pub(crate) already: bool,
    /// Its state now (`queued`, or what it went on to when `already`).
    pub(crate) state: ExecState,
}

impl From<Resumed> for ResumedOut {
    fn from(r: Resumed) -> Self {
        ResumedOut {
            queue: r.queue,
            id: r.id,
            resumed_at: r.resumed_at,
            already: r.already,
            state: r.state,
        }
    }
}

/// Resumes an awaiting execution: back in the queue now; the continuing claim gets
/// `input` as `resume_input`. A second resume changes nothing and reports the first.
#[utoipa::path(post, path = "/v1/queues/{queue}/executions/{id}/resume", tag = "executions",
    params(ExecutionPath),
    request_body(content = Option<ResumeIn>, description = "Optional: an empty body is `{}`."),
    responses((status = 200, body = ResumedOut),
        (status = 409, description = "not-awaiting: its state is given.")))]
pub(crate) async fn resume(
    State(s): State<AppState>,
    Path((queue, id)): Path<(String, String)>,
    MaybeBody(body): MaybeBody<ResumeIn>,
) -> Result<Json<ResumedOut>, ApiError> {
    let resumed = s.ledger.resume(&queue, &id, body.input.as_ref()).await?;
    Ok(Json(resumed.into()))
}

/// Resumes the execution a resume token was issued for, once: the token is the
/// credential (no bearer needed), for an approval link or a webhook.
#[utoipa::path(post, path = "/v1/resume/{resume_token}", tag = "executions",
    params(("resume_token" = String, Path, description = "The token `await` returned.")),
    request_body(content = Option<ResumeIn>, description = "Optional: an empty body is `{}`."),
    responses((status = 200, body = ResumedOut),
        (status = 404, description = "invalid-resume-token: never issued, or replaced by a later wait."),
        (status = 409, description = "resume-token-used, or not-awaiting (the wait ended otherwise).")))]
pub(crate) async fn resume_by_token(
    State(s): State<AppState>,
    Path(resume_token): Path<String>,
    MaybeBody(body): MaybeBody<ResumeIn>,
) -> Result<Json<ResumedOut>, ApiError> {
    let resumed = s
        .ledger
        .resume_by_token(&resume_token, body.input.as_ref())
        .await?;
    Ok(Json(resumed.into()))
}
