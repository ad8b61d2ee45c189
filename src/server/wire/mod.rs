//! What exists in HTTP alone: request bodies (durations as integer milliseconds or text
//! like `"30s"`), the claim reply and the schema pieces. The views (executions, events,
//! queues, workers, enqueue replies) are the library's types, serialized where they are
//! defined: integer milliseconds, RFC 3339 times. Conversions only: every rule is the
//! library's.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::openapi::{RefOr, schema::Schema};
use utoipa::{PartialSchema, ToSchema};

use crate::error::Error;
use crate::ledger::{Budget, Claim, QueueSettings, State, WaitExpiry, WindowBudget};
use crate::timings::{Timings, for_each_timing};

pub(crate) mod problem;
mod retention;
pub(crate) mod schema;
pub use retention::RetentionIn;

/// A duration on input: integer milliseconds, or text such as `"500ms"`, `"30s"`, `"5m"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationIn(pub(crate) Duration);

impl PartialSchema for DurationIn {
    fn schema() -> RefOr<Schema> {
        schema::duration().into()
    }
}

impl ToSchema for DurationIn {}

impl Serialize for DurationIn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(ms(self.0))
    }
}

impl<'de> Deserialize<'de> for DurationIn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::timings::millis::deserialize(d).map(DurationIn)
    }
}

/// Milliseconds of a duration, for replies.
pub fn ms(d: Duration) -> u64 {
    crate::timings::millis::ms(d)
}

/// A timing's input form (replies carry the library's `Timings`).
pub trait WireTiming: Sized {
    type In;
    fn from_in(v: Self::In) -> Self;
}

impl WireTiming for Duration {
    type In = DurationIn;
    fn from_in(v: DurationIn) -> Self {
        v.0
    }
}

impl WireTiming for u32 {
    type In = u32;
    fn from_in(v: u32) -> Self {
        v
    }
}

macro_rules! wire_timings {
    ($(
        $(#[doc = $doc:expr])*
        $name:ident: $given:ty => $resolved:ty, $field:literal, $rule:expr, $default:literal
        $(, $serde:meta)?;
    )*) => {
        /// Each timing's input type, named like the timing (for the schema derive).
        #[allow(non_camel_case_types)]
        mod timing_in {
            use super::*;
            $( pub(crate) type $name = <$given as WireTiming>::In; )*
        }

        /// Each timing's input schema, from the rule the library checks it by.
        #[allow(non_camel_case_types)]
        mod timing_schema {
            use crate::timings::Rule;
            use utoipa::openapi::{RefOr, schema::Schema};
            $(
                pub(crate) struct $name;
                impl utoipa::PartialSchema for $name {
                    fn schema() -> RefOr<Schema> {
                        RefOr::T(super::schema::timing($rule))
                    }
                }
                impl utoipa::ToSchema for $name {}
            )*
        }

        /// Timings on input; unset ones come from the queue, then the global defaults.
        #[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
        #[serde(default, deny_unknown_fields)]
        pub struct TimingsIn {
            $( $(#[doc = $doc])*
               #[schema(value_type = Option<timing_schema::$name>, inline)]
               pub $name: Option<timing_in::$name>, )*
        }

        impl From<TimingsIn> for Timings {
            fn from(t: TimingsIn) -> Self {
                Timings { $( $name: t.$name.map(<$given as WireTiming>::from_in), )* }
            }
        }

    };
}

for_each_timing!(wire_timings);

/// `PUT /v1/queues/{queue}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSettingsIn {
    /// Most executions holding a slot at once (the ledger's default when unset).
    pub capacity: Option<u32>,
    pub timings: TimingsIn,
    /// How long its finished executions are kept (unset: the ledger's).
    pub retention: RetentionIn,
    /// Longest wait an `await` may ask for (unset: 7 days).
    pub max_wait: Option<DurationIn>,
    /// At a wait deadline nobody resumed by: `fail` (default, stop reason `wait_expired`)
    /// or `requeue`.
    pub on_wait_expiry: Option<WaitExpiry>,
    /// The budget of its executions enqueued without one.
    pub budget: Option<Budget>,
    /// Its budget per rolling window: when spent, the queue is paused by `budget`.
    pub window_budget: Option<WindowBudget>,
}

impl From<QueueSettingsIn> for QueueSettings {
    fn from(q: QueueSettingsIn) -> Self {
        QueueSettings {
            capacity: q.capacity,
            timings: q.timings.into(),
            retention: q.retention.into(),
            max_wait: q.max_wait.map(|d| d.0),
            on_wait_expiry: q.on_wait_expiry,
            budget: q.budget,
            window_budget: q.window_budget,
        }
    }
}

/// One execution to enqueue.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct EnqueueIn {
    /// Caller-chosen id (idempotency); a fresh time-ordered id when absent.
    #[schema(value_type = Option<schema::ExecutionId>, inline)]
    pub id: Option<String>,
    /// Any JSON value (default `null`), at most the ledger's `max_payload_bytes`
    /// serialized.
    #[schema(value_type = schema::AnyJson, inline)]
    pub payload: serde_json::Value,
    pub timings: TimingsIn,
    /// A limit on its usage over all attempts (unset: the queue's default budget).
    pub budget: Option<Budget>,
    /// Make it claimable only after this long.
    pub delay: Option<DurationIn>,
}

/// One claimed attempt.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClaimOut {
    /// Present it with every attempt call.
    pub token: String,
    pub queue: String,
    pub id: String,
    pub attempt: u32,
    #[schema(value_type = schema::AnyJson, inline)]
    pub payload: serde_json::Value,
    /// The last checkpoint of an earlier attempt: resume from here.
    #[schema(value_type = Option<schema::AnyJson>, inline)]
    pub checkpoint: Option<serde_json::Value>,
    /// Heartbeat at a fraction (a third) of this, in milliseconds.
    pub heartbeat_timeout: u64,
    pub deadline_at: Option<DateTime<Utc>>,
    /// What `resume` handed over, when this claim continues a resumed wait (absent
    /// otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<schema::AnyJson>, inline)]
    pub resume_input: Option<serde_json::Value>,
    /// The W3C trace context stored at enqueue (absent when none): link the worker's span
    /// to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl From<Claim> for ClaimOut {
    fn from(c: Claim) -> Self {
        ClaimOut {
            token: c.token.to_string(),
            queue: c.token.queue().to_owned(),
            id: c.token.execution_id().to_owned(),
            attempt: c.token.attempt(),
            payload: c.payload,
            checkpoint: c.checkpoint,
            heartbeat_timeout: ms(c.heartbeat_timeout),
            deadline_at: c.deadline_at,
            resume_input: c.resume_input,
            traceparent: c.traceparent.map(|t| t.to_string()),
        }
    }
}

/// `(queue, id)` of an execution a worker runs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunningOut {
    #[schema(value_type = schema::QueueName, inline)]
    pub queue: String,
    #[schema(value_type = schema::ExecutionId, inline)]
    pub id: String,
}

/// Reads a state name from a query or a body: the library's names.
pub fn parse_state(s: &str) -> Result<State, Error> {
    s.parse()
}
