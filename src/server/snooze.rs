//! `POST /v1/attempts/snooze`: the worker ends its attempt and the execution waits in the
//! queue until a given time, without counting an attempt (`Ledger::snooze`).

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::extract::Body;
use super::problem::ApiError;
use super::wire::DurationIn;
use super::wire::schema;
use crate::error::Error;
use crate::ledger::{AttemptToken, Snooze, SnoozeOutcome, SnoozeTime};

/// `POST /v1/attempts/snooze`: exactly one of `after_ms` and `until`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SnoozeIn {
    token: String,
    /// Claimable again this long from now (1 ms to 7 days).
    #[serde(default)]
    #[schema(value_type = Option<schema::SnoozeDelay>, inline)]
    after_ms: Option<DurationIn>,
    /// Claimable again at this instant (RFC 3339; after now, at most 7 days ahead).
    #[serde(default)]
    until: Option<DateTime<Utc>>,
    /// Why it waits (1 to 1024 bytes), named in the `snoozed` event.
    reason: String,
}

/// What a snooze led to.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct SnoozeOut {
    /// `snoozed`; past `max_snoozes`, the retryable failure's `retry_scheduled` or
    /// `failed` (no attempt left); `cancelled` when cancellation had been requested.
    pub(crate) outcome: String,
    /// When the execution becomes claimable (`snoozed`, `retry_scheduled`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) available_at: Option<DateTime<Utc>>,
    /// Snoozes of the execution so far, this one included (`snoozed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) snoozes: Option<u32>,
    /// True when this call freed the attempt's capacity slot.
    pub(crate) slot_released: bool,
}

fn time_of(b: &SnoozeIn) -> Result<SnoozeTime, ApiError> {
    match (&b.after_ms, b.until) {
        (Some(after), None) => Ok(SnoozeTime::After(after.0)),
        (None, Some(until)) => Ok(SnoozeTime::Until(until)),
        (after, until) => Err(Error::InvalidArgument {
            name: "after_ms".into(),
            value: if after.is_some() && until.is_some() {
                "both after_ms and until".into()
            } else {
                "neither after_ms nor until".into()
            },
            expected: "exactly one of after_ms and until".into(),
        }
        .into()),
    }
}

/// The attempt ends; the execution is claimable again at the snooze's time, and that claim
/// is a continuation (no attempt counted). Past `max_snoozes`, a retryable failure.
#[utoipa::path(post, path = "/v1/attempts/snooze", tag = "attempts",
    request_body = SnoozeIn, responses((status = 200, body = SnoozeOut),
        (status = 409, description = "stale-attempt or already-terminal")))]
pub(crate) async fn snooze(
    State(s): State<AppState>,
    Body(b): Body<SnoozeIn>,
) -> Result<Json<SnoozeOut>, ApiError> {
    let time = time_of(&b)?;
    let token: AttemptToken = b.token.parse()?;
    let snooze = Snooze {
        time,
        reason: b.reason,
    };
    let out = |outcome: &str, available_at, snoozes, slot_released| {
        Ok(Json(SnoozeOut {
            outcome: outcome.into(),
            available_at,
            snoozes,
            slot_released,
        }))
    };
    match s.ledger.snooze(&token, snooze).await? {
        SnoozeOutcome::Snoozed {
            available_at,
            snoozes,
            slot_released,
        } => out("snoozed", Some(available_at), Some(snoozes), slot_released),
        SnoozeOutcome::LimitReached {
            retry_at: Some(at),
            slot_released,
        } => out("retry_scheduled", Some(at), None, slot_released),
        SnoozeOutcome::LimitReached {
            retry_at: None,
            slot_released,
        } => out("failed", None, None, slot_released),
        SnoozeOutcome::Cancelled { slot_released } => out("cancelled", None, None, slot_released),
        refused => Err(refused.refusal().into()),
    }
}
