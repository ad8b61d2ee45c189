//! Resource lease routes: a worker acquires and releases units for its attempt; an
//! operator lists resources and force-releases a unit (`Ledger::acquire`, `release`,
//! `resources`, `resource`, `force_release`).

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::extract::Body;
use super::problem::ApiError;
use super::wire::DurationIn;
use super::wire::schema;
use crate::ledger::{Acquire, AcquireOutcome, AttemptToken, Resource};

/// `POST /v1/attempts/acquire`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AcquireIn {
    token: String,
    /// The resource's name (queue-name rules).
    resource: String,
    /// Units the resource has: sets it when nobody holds it; while held, a different
    /// capacity is refused (`409 resource-capacity`). Absent: as set, or 1.
    #[serde(default)]
    capacity: Option<u32>,
    /// Frees the unit this long after the acquire even while the attempt goes on (1 ms to
    /// 24 h). Absent: held until released or the attempt ends.
    #[serde(default)]
    #[schema(value_type = Option<u64>)]
    ttl_ms: Option<DurationIn>,
    /// How long to wait for a unit when all are held (at most 30 s; absent or 0: answer
    /// at once).
    #[serde(default)]
    #[schema(value_type = Option<u64>)]
    wait_ms: Option<DurationIn>,
}

/// The unit held.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct AcquireOut {
    pub(crate) resource: String,
    pub(crate) capacity: u32,
    /// Units held now, this one included.
    pub(crate) held: u32,
    /// When the unit's ttl ends (absent: no ttl).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) expires_at: Option<DateTime<Utc>>,
}

/// Takes one unit of a resource for the attempt, waiting up to `wait_ms` when all are
/// held. Freed by a release, its ttl, or the end of the attempt (any end).
#[utoipa::path(post, path = "/v1/attempts/acquire", tag = "attempts",
    request_body = AcquireIn, responses((status = 200, body = AcquireOut),
        (status = 409, description = "resource-busy (member holders: queue, id, attempt, since, expires_at), resource-capacity, stale-attempt or already-terminal")))]
pub(crate) async fn acquire(
    State(s): State<AppState>,
    Body(b): Body<AcquireIn>,
) -> Result<Json<AcquireOut>, ApiError> {
    let token: AttemptToken = b.token.parse()?;
    let mut acquire = Acquire::new(b.resource);
    acquire.capacity = b.capacity;
    acquire.ttl = b.ttl_ms.map(|d| d.0);
    acquire.wait = b.wait_ms.map(|d| d.0).unwrap_or_default();
    match s.ledger.acquire(&token, acquire).await? {
        AcquireOutcome::Acquired {
            resource,
            capacity,
            held,
            expires_at,
        } => Ok(Json(AcquireOut {
            resource,
            capacity,
            held,
            expires_at,
        })),
        refused => Err(refused.refusal().into()),
    }
}

/// `POST /v1/attempts/release`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReleaseIn {
    token: String,
    resource: String,
}

/// Whether a unit was freed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct ReleaseOut {
    /// False when the attempt held none (never acquired, released before, or freed when
    /// it ended): a release is idempotent.
    pub(crate) released: bool,
}

/// Gives back the attempt's unit. Fenced: frees only a unit held by exactly this
/// attempt, so a stale attempt's release never frees a later attempt's unit.
#[utoipa::path(post, path = "/v1/attempts/release", tag = "attempts",
    request_body = ReleaseIn, responses((status = 200, body = ReleaseOut)))]
pub(crate) async fn release(
    State(s): State<AppState>,
    Body(b): Body<ReleaseIn>,
) -> Result<Json<ReleaseOut>, ApiError> {
    let token: AttemptToken = b.token.parse()?;
    let released = s.ledger.release(&token, &b.resource).await?;
    Ok(Json(ReleaseOut { released }))
}

/// Every resource held now.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct ResourcesOut {
    pub(crate) resources: Vec<Resource>,
}

/// Every resource held now, with its capacity and holders (a resource nobody holds is
/// not listed).
#[utoipa::path(get, path = "/v1/resources", tag = "resources",
    responses((status = 200, body = ResourcesOut)))]
pub(crate) async fn list(State(s): State<AppState>) -> Result<Json<ResourcesOut>, ApiError> {
    Ok(Json(ResourcesOut {
        resources: s.ledger.resources().await?,
    }))
}

/// `{resource}` in a path.
pub(crate) struct ResourcePath;

impl IntoParams for ResourcePath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![schema::path_parameter(
            "resource",
            schema::resource_name(),
            "The resource.",
        )]
    }
}

/// One resource; a resource nobody holds is answered with capacity 0 and no holders.
#[utoipa::path(get, path = "/v1/resources/{resource}", tag = "resources",
    params(ResourcePath), responses((status = 200, body = Resource)))]
pub(crate) async fn get(
    State(s): State<AppState>,
    Path(resource): Path<String>,
) -> Result<Json<Resource>, ApiError> {
    let found = s.ledger.resource(&resource).await?;
    Ok(Json(found.unwrap_or(Resource {
        resource,
        capacity: 0,
        held: 0,
        holders: Vec::new(),
    })))
}

/// `POST /v1/resources/{resource}/release`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ForceReleaseIn {
    /// The holding execution's queue.
    queue: String,
    /// The holding execution.
    id: String,
    /// Why (1 to 1024 bytes), recorded in the `resource_force_released` event.
    reason: String,
}

/// What a force-release freed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct ForceReleaseOut {
    /// False when the execution held no unit of the resource (nothing written).
    pub(crate) released: bool,
    /// The attempt that held it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) attempt: Option<u32>,
}

/// An operator frees the unit an execution holds, whatever its attempt, with a reason.
#[utoipa::path(post, path = "/v1/resources/{resource}/release", tag = "resources",
    params(ResourcePath), request_body = ForceReleaseIn,
    responses((status = 200, body = ForceReleaseOut)))]
pub(crate) async fn force_release(
    State(s): State<AppState>,
    Path(resource): Path<String>,
    Body(b): Body<ForceReleaseIn>,
) -> Result<Json<ForceReleaseOut>, ApiError> {
    let attempt = s
        .ledger
        .force_release(&resource, &b.queue, &b.id, &b.reason)
        .await?;
    Ok(Json(ForceReleaseOut {
        released: attempt.is_some(),
        attempt,
    }))
}
