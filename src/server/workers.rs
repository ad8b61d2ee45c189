//! Worker registry routes: register (a fresh id per process start), heartbeat with the
//! executions it runs, deregister, list.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::extract::{Body, MaybeBody};
use super::problem::ApiError;
use super::wire::schema::{self, WorkerPath};
use super::wire::{DurationIn, RunningOut};
use crate::ledger::WorkerInfo;
use crate::ledger::{WorkerRegistration, WorkerRequest, WorkerReset};

/// `POST /v1/workers`.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RegisterIn {
    /// Unique per process start; generated (`<host>-<pid>-<uuid>`) when absent.
    #[schema(value_type = Option<schema::WorkerId>, inline)]
    worker_id: Option<String>,
    host: Option<String>,
    pid: Option<u32>,
    /// Build stamp.
    version: Option<String>,
    /// The queues it serves, as the registry lists them (default `[]`; claims are not
    /// limited by it).
    #[schema(value_type = schema::QueueNames, inline)]
    queues: Vec<String>,
    /// How often it will beat the registry: the watchdog waits three of these before
    /// judging it gone.
    heartbeat_interval: Option<DurationIn>,
}

/// A registration.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct RegisteredOut {
    pub(crate) worker_id: String,
    pub(crate) registered_at: DateTime<Utc>,
}

/// Registers a worker process.
#[utoipa::path(post, path = "/v1/workers", tag = "workers", request_body = RegisterIn,
    responses((status = 201, body = RegisteredOut),
        (status = 409, description = "worker-exists: use a fresh id per process start.")))]
pub(crate) async fn register(
    State(s): State<AppState>,
    Body(r): Body<RegisterIn>,
) -> Result<(StatusCode, Json<RegisteredOut>), ApiError> {
    let mut registration = WorkerRegistration::for_process(
        r.host.unwrap_or_else(|| "unknown".into()),
        r.pid.unwrap_or(0),
        r.version.unwrap_or_default(),
        r.queues,
    );
    registration.heartbeat_interval = r.heartbeat_interval.map(|d| d.0);
    if let Some(id) = r.worker_id {
        registration.worker_id = id;
    }
    let registered_at = s.ledger.register_worker(&registration).await?;
    Ok((
        StatusCode::CREATED,
        Json(RegisteredOut {
            worker_id: registration.worker_id,
            registered_at,
        }),
    ))
}

/// `POST /v1/workers/{worker}/heartbeat`.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct WorkerBeatIn {
    /// The executions it runs now.
    running: Vec<RunningOut>,
}

/// The registry heard the worker.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct WorkerBeatOut {
    pub(crate) last_seen_at: DateTime<Utc>,
    /// What the watchdog asks of the worker (tier 1): `restart` — stop claiming, hand
    /// back what it runs (fail retryably), deregister, exit; `drain` — the same after
    /// finishing what it runs. Absent: carry on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) request: Option<WorkerRequest>,
}

/// The worker is alive and runs these executions.
#[utoipa::path(post, path = "/v1/workers/{worker}/heartbeat", tag = "workers", operation_id = "worker_heartbeat",
    params(WorkerPath),
    request_body(content = Option<WorkerBeatIn>, description = "Optional: an empty body runs nothing."), responses((status = 200, body = WorkerBeatOut),
        (status = 404, description = "unknown-worker: register again under a fresh id")))]
pub(crate) async fn heartbeat(
    State(s): State<AppState>,
    Path(worker): Path<String>,
    MaybeBody(b): MaybeBody<WorkerBeatIn>,
) -> Result<Json<WorkerBeatOut>, ApiError> {
    let running: Vec<(String, String)> = b.running.into_iter().map(|r| (r.queue, r.id)).collect();
    let beat = s.ledger.worker_beat(&worker, &running).await?;
    Ok(Json(WorkerBeatOut {
        last_seen_at: beat.last_seen_at,
        request: beat.request,
    }))
}

/// Removes a worker from the registry (graceful shutdown).
#[utoipa::path(delete, path = "/v1/workers/{worker}", tag = "workers", params(WorkerPath),
    responses((status = 204, description = "Removed."), (status = 404, description = "unknown-worker")))]
pub(crate) async fn deregister(
    State(s): State<AppState>,
    Path(worker): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.ledger.deregister_worker(&worker).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every registered worker.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct WorkersOut {
    pub(crate) workers: Vec<WorkerInfo>,
}

/// Lists the registered workers, each with what it says it runs and the slots it holds.
#[utoipa::path(get, path = "/v1/workers", tag = "workers", operation_id = "list_workers",
    responses((status = 200, body = WorkersOut)))]
pub(crate) async fn list(State(s): State<AppState>) -> Result<Json<WorkersOut>, ApiError> {
    let workers = s.ledger.workers().await?;
    let holders = s.ledger.slot_holders().await?;
    Ok(Json(WorkersOut {
        workers: workers.into_iter().map(|w| w.with_held(&holders)).collect(),
    }))
}

/// `POST /v1/workers/{worker}/reset`.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ResetIn {
    /// Why, for the `circuit_reset` event.
    reason: Option<String>,
}

/// Resets a worker's remediation (tier, failed tier-3 count, open circuit): the watchdog
/// judges it afresh from tier 0.
#[utoipa::path(post, path = "/v1/workers/{worker}/reset", tag = "workers", params(WorkerPath),
    request_body(content = Option<ResetIn>, description = "Optional: an empty body is `{}`."), responses((status = 200, body = WorkerReset),
        (status = 404, description = "unknown-worker")))]
pub(crate) async fn reset(
    State(s): State<AppState>,
    Path(worker): Path<String>,
    MaybeBody(b): MaybeBody<ResetIn>,
) -> Result<Json<WorkerReset>, ApiError> {
    let why = b.reason.unwrap_or_else(|| "reset over HTTP".into());
    Ok(Json(s.ledger.reset_worker(&worker, &why).await?))
}

/// `POST /v1/workers/{worker}/request`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RequestIn {
    /// `restart` or `drain`.
    request: WorkerRequest,
    /// Why, for the event.
    #[serde(default)]
    reason: Option<String>,
}

/// Asks a worker, in its next heartbeat reply, to restart or drain (a deploy, a
/// maintenance).
#[utoipa::path(post, path = "/v1/workers/{worker}/request", tag = "workers", params(WorkerPath),
    request_body = RequestIn, responses((status = 204, description = "Recorded; its next heartbeat reply carries it."),
        (status = 404, description = "unknown-worker")))]
pub(crate) async fn request(
    State(s): State<AppState>,
    Path(worker): Path<String>,
    Body(b): Body<RequestIn>,
) -> Result<StatusCode, ApiError> {
    let why = b.reason.unwrap_or_else(|| "asked over HTTP".into());
    s.ledger.request_worker(&worker, b.request, &why).await?;
    Ok(StatusCode::NO_CONTENT)
}
