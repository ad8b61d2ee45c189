//! Routes about the service itself: the watchdog's state, health and readiness, metrics,
//! the OpenAPI document and the problem types.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::problem::{ApiError, TYPES};
use crate::watchdog::{self, Health, WatchdogStatus};

/// Partitions with their lease owner, epoch and expiry; live replicas; holds in force;
/// what every replica did; the health verdict (`health`). With Redis unreachable: a 503
/// `redis-unavailable` problem that still carries the verdict as its `health` member.
#[utoipa::path(get, path = "/v1/watchdog", tag = "watchdog",
    responses((status = 200, body = WatchdogStatus),
        (status = 503, description = "redis-unavailable, with the `health` verdict")))]
pub(crate) async fn watchdog(State(s): State<AppState>) -> Result<Json<WatchdogStatus>, ApiError> {
    match watchdog::status(&s.ledger).await {
        Ok(status) => Ok(Json(status)),
        Err(error) => Err(match Health::unreachable(&error) {
            Some(health) => ApiError::Unhealthy(error, Box::new(health)),
            None => error.into(),
        }),
    }
}

/// A health answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct HealthOut {
    pub(crate) status: String,
}

/// The process is up (it says nothing of Redis; see `/readyz`).
#[utoipa::path(get, path = "/healthz", tag = "service", responses((status = 200, body = HealthOut)))]
pub(crate) async fn healthz() -> Json<HealthOut> {
    Json(HealthOut {
        status: "ok".into(),
    })
}

/// Ready to serve: Redis answers and will not evict keys, and has not lost the
/// namespace's data under this process's watchdog replica.
#[utoipa::path(get, path = "/readyz", tag = "service",
    responses((status = 200, body = HealthOut), (status = 503, description = "redis-unavailable, eviction-policy or redis-data-lost")))]
pub(crate) async fn readyz(State(s): State<AppState>) -> Result<Json<HealthOut>, ApiError> {
    if s.shutdown.is_cancelled() {
        return Err(ApiError::Saturated);
    }
    match &s.replica {
        Some(replica) => replica.check_ready().await?,
        None => s.ledger.check_ready().await?,
    }
    Ok(Json(HealthOut {
        status: "ready".into(),
    }))
}

/// The Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus text format")))]
pub(crate) async fn metrics(State(s): State<AppState>) -> Response {
    // The verdict is judged at each scrape, so it agrees with `GET /v1/watchdog`.
    // (A status that cannot be read for another reason leaves the last verdict.)
    if let Ok(health) = watchdog::health(&s.ledger).await {
        s.metrics.record_health(&health);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

/// The OpenAPI 3.1 document of this API, generated from the code (`unstuck openapi`
/// prints the same).
#[utoipa::path(get, path = "/openapi.json", tag = "service",
    responses((status = 200, description = "This document.", content_type = "application/json")))]
pub(crate) async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::openapi::document(),
    )
        .into_response()
}

/// What a problem type means, so each `type` URI can be looked up.
#[utoipa::path(get, path = "/problems/{slug}", tag = "service",
    params(("slug" = String, Path, description = "The problem type's slug: the last part of its `type`.")),
    responses((status = 200, description = "A page saying what the problem type means.", content_type = "text/html"),
        (status = 404, description = "no-route: no such problem type.")))]
pub(crate) async fn problem(Path(slug): Path<String>) -> Result<Response, ApiError> {
    let Some(kind) = TYPES.iter().find(|k| k.slug == slug) else {
        return Err(ApiError::NoRoute);
    };
    let (slug, status, meaning) = (kind.slug, kind.status.as_u16(), kind.meaning);
    let page = format!(
        "<!doctype html><title>{slug}</title><h1>{slug}</h1><p>HTTP {status}: {meaning}</p>\
         <p>Every error of this API is an RFC 9457 problem document whose <code>type</code> \
         is <code>/problems/{slug}</code>.</p>"
    );
    Ok((StatusCode::OK, Html(page)).into_response())
}

/// A route that exists, with a method it does not take.
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Any route that does not exist.
pub(crate) async fn no_route() -> ApiError {
    ApiError::NoRoute
}
