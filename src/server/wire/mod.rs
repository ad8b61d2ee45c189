//! The JSON the HTTP API speaks: durations as integer milliseconds (strings like `"30s"`
//! accepted on input), RFC 3339 times, and the views of the library's types. Conversions
//! only: every rule is the library's.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::openapi::{RefOr, schema::Schema};
use utoipa::{PartialSchema, ToSchema};

use crate::error::Error;
use crate::events::Event;
use crate::ledger::{
    Claim, Enqueued, Execution, QueueOverview, QueueSettings, State, StopMetadata, Transition,
    WorkerInfo,
};
use crate::timings::{ResolvedTimings, Timings, for_each_timing};

pub(crate) mod problem;
mod retention;
pub(crate) mod schema;
pub use retention::{RetentionIn, RetentionOut};

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
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Millis(u64),
            Text(String),
        }
        match Either::deserialize(d)? {
            Either::Millis(ms) => Ok(DurationIn(Duration::from_millis(ms))),
            Either::Text(text) => humantime::parse_duration(text.trim())
                .map(DurationIn)
                .map_err(|e| {
                    serde::de::Error::custom(format!(
                        "{text:?} is not a duration ({e}); write integer milliseconds or \
                         text like \"500ms\", \"30s\", \"5m\""
                    ))
                }),
        }
    }
}

/// Milliseconds of a duration, for replies.
pub fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A timing's input form and its reply form.
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

/// A resolved (or set) timing as a reply value: milliseconds, the count, or `null` for
/// off / unset.
pub trait WireOut {
    fn out(&self) -> Option<u64>;
}

impl WireOut for Duration {
    fn out(&self) -> Option<u64> {
        Some(ms(*self))
    }
}

impl WireOut for Option<Duration> {
    fn out(&self) -> Option<u64> {
        self.map(ms)
    }
}

impl WireOut for u32 {
    fn out(&self) -> Option<u64> {
        Some(u64::from(*self))
    }
}

impl WireOut for Option<u32> {
    fn out(&self) -> Option<u64> {
        self.map(u64::from)
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

        /// Timings in a reply, in milliseconds (`max_attempts` a count); `null` when off
        /// or, for a queue, not set.
        #[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
        pub struct TimingsOut {
            $( $(#[doc = $doc])* pub $name: Option<u64>, )*
        }

        impl From<&ResolvedTimings> for TimingsOut {
            fn from(t: &ResolvedTimings) -> Self {
                TimingsOut { $( $name: t.$name.out(), )* }
            }
        }

        impl From<&Timings> for TimingsOut {
            fn from(t: &Timings) -> Self {
                TimingsOut { $( $name: t.$name.out(), )* }
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
}

impl From<QueueSettingsIn> for QueueSettings {
    fn from(q: QueueSettingsIn) -> Self {
        QueueSettings {
            capacity: q.capacity,
            timings: q.timings.into(),
            retention: q.retention.into(),
        }
    }
}

/// A queue at one instant.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QueueOut {
    pub name: String,
    pub partition: u16,
    /// Queued, retries backing off included.
    pub depth: u64,
    /// Of those, claimable now.
    pub available: u64,
    /// Holding a slot (dispatched, running, stuck).
    pub active: u64,
    pub capacity: u64,
    pub oldest_queued_at: Option<DateTime<Utc>>,
    pub oldest_queued_age_ms: Option<u64>,
    /// The queue's own timings (unset: the global defaults apply).
    pub timings: TimingsOut,
    /// The queue's own retention (unset: the ledger's applies).
    pub retention: RetentionOut,
}

impl From<QueueOverview> for QueueOut {
    fn from(q: QueueOverview) -> Self {
        QueueOut {
            timings: (&q.settings.timings).into(),
            retention: (&q.settings.retention).into(),
            name: q.name,
            partition: q.partition,
            depth: q.depth,
            available: q.available,
            active: q.active,
            capacity: q.capacity,
            oldest_queued_at: q.oldest_queued_at,
            oldest_queued_age_ms: q.oldest_queued_age.map(ms),
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
    /// Make it claimable only after this long.
    pub delay: Option<DurationIn>,
}

/// What an enqueue did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EnqueuedOut {
    pub queue: String,
    pub id: String,
    /// False: the id existed; the fields describe the existing execution.
    pub created: bool,
    /// The id exists with a different payload or timings (the id was reused).
    pub conflict: bool,
    pub state: State,
    pub attempt: u32,
    pub created_at: DateTime<Utc>,
}

impl From<Enqueued> for EnqueuedOut {
    fn from(e: Enqueued) -> Self {
        EnqueuedOut {
            queue: e.queue,
            id: e.id,
            created: e.created,
            conflict: e.conflict,
            state: e.state,
            attempt: e.attempt,
            created_at: e.created_at,
        }
    }
}

/// One recorded transition of an execution's history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TransitionOut {
    pub at: DateTime<Utc>,
    pub state: State,
    pub reason: String,
    pub attempt: u32,
}

/// Stop metadata of a terminal execution.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StopOut {
    /// `succeeded`, `failed`, `cancelled`, `deadline_exceeded`, `heartbeat_lost`,
    /// `no_progress`, `start_timeout`, `worker_lost`.
    pub reason: String,
    /// The timeout that applies to this stop, in milliseconds.
    pub timeout: Option<u64>,
    pub timeout_configured: bool,
    pub timeout_fired: bool,
}

impl From<&StopMetadata> for StopOut {
    fn from(s: &StopMetadata) -> Self {
        StopOut {
            reason: s.reason.as_str().to_owned(),
            timeout: s.timeout.map(ms),
            timeout_configured: s.timeout_configured,
            timeout_fired: s.timeout_fired,
        }
    }
}

/// One execution.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExecutionOut {
    pub queue: String,
    pub id: String,
    pub state: State,
    pub attempt: u32,
    #[schema(value_type = schema::AnyJson, inline)]
    pub payload: serde_json::Value,
    #[schema(value_type = Option<schema::AnyJson>, inline)]
    pub checkpoint: Option<serde_json::Value>,
    #[schema(value_type = Option<schema::AnyJson>, inline)]
    pub result: Option<serde_json::Value>,
    pub progress: Option<String>,
    pub worker: Option<String>,
    pub created_at: DateTime<Utc>,
    pub dispatched_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    pub progress_changed_at: Option<DateTime<Utc>>,
    pub stuck_since: Option<DateTime<Utc>>,
    pub deadline_at: Option<DateTime<Utc>>,
    pub cancel_requested_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub timings: TimingsOut,
    pub stop: Option<StopOut>,
    pub last_error: Option<String>,
    pub false_alarms: u32,
    pub history: Vec<TransitionOut>,
    /// The finished execution this one runs again, `<queue>/<id>`.
    pub retry_of: Option<String>,
    /// The ids of the executions made to run this one again, oldest first.
    pub retries: Vec<String>,
    /// Retention never removes it.
    pub pinned: bool,
}

impl From<Execution> for ExecutionOut {
    fn from(e: Execution) -> Self {
        ExecutionOut {
            timings: (&e.timings).into(),
            stop: e.stop.as_ref().map(StopOut::from),
            history: e
                .history
                .into_iter()
                .map(
                    |Transition {
                         at,
                         state,
                         reason,
                         attempt,
                     }| TransitionOut {
                        at,
                        state,
                        reason,
                        attempt,
                    },
                )
                .collect(),
            queue: e.queue,
            id: e.id,
            state: e.state,
            attempt: e.attempt,
            payload: e.payload,
            checkpoint: e.checkpoint,
            result: e.result,
            progress: e.progress,
            worker: e.worker,
            created_at: e.created_at,
            dispatched_at: e.dispatched_at,
            started_at: e.started_at,
            last_heartbeat_at: e.last_heartbeat_at,
            progress_changed_at: e.progress_changed_at,
            stuck_since: e.stuck_since,
            deadline_at: e.deadline_at,
            cancel_requested_at: e.cancel_requested_at,
            finished_at: e.finished_at,
            last_error: e.last_error,
            false_alarms: e.false_alarms,
            retry_of: e.retry_of.map(|(q, id)| format!("{q}/{id}")),
            retries: e.retries,
            pinned: e.pinned,
        }
    }
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
        }
    }
}

/// One transition in a partition's event stream.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventOut {
    /// `<partition>-<stream id>`: pass it back as `Last-Event-ID` to resume.
    pub id: String,
    pub partition: u16,
    pub at: DateTime<Utc>,
    pub queue: String,
    pub execution_id: String,
    pub attempt: u32,
    pub from: Option<State>,
    pub to: Option<State>,
    pub reason: String,
    pub detail: String,
    /// For watchdog actions: when the timer that triggered it fired.
    pub timer_due_at: Option<DateTime<Utc>>,
    /// For watchdog actions: how long after its timer fired it acted, in milliseconds.
    pub lag_ms: Option<i64>,
    /// For watchdog actions: the replica that acted, and its lease epoch.
    pub replica: Option<String>,
    pub epoch: Option<u64>,
}

impl From<Event> for EventOut {
    fn from(e: Event) -> Self {
        EventOut {
            id: format!("{}-{}", e.partition, e.stream_id),
            lag_ms: e.timer_due_at.map(|due| (e.at - due).num_milliseconds()),
            partition: e.partition,
            at: e.at,
            queue: e.queue,
            execution_id: e.execution_id,
            attempt: e.attempt,
            from: e.from,
            to: e.to,
            reason: e.reason,
            detail: e.detail,
            timer_due_at: e.timer_due_at,
            replica: e.replica,
            epoch: e.epoch,
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

/// A registered worker.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkerOut {
    pub worker_id: String,
    pub host: String,
    pub pid: u32,
    pub version: String,
    pub queues: Vec<String>,
    pub registered_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// The registry heartbeat interval it declared, in milliseconds.
    pub heartbeat_interval: Option<u64>,
    /// What it says it runs (its last registry beat).
    pub running: Vec<RunningOut>,
    /// What the ledger says it holds: the capacity slots in its name.
    #[serde(default)]
    pub held: Vec<RunningOut>,
    /// Its remediation tier and circuit.
    #[serde(default)]
    pub remediation: crate::ledger::WorkerRemediation,
}

impl From<WorkerInfo> for WorkerOut {
    fn from(w: WorkerInfo) -> Self {
        WorkerOut {
            worker_id: w.worker_id,
            host: w.host,
            pid: w.pid,
            version: w.version,
            queues: w.queues,
            registered_at: w.registered_at,
            last_seen_at: w.last_seen_at,
            heartbeat_interval: w.heartbeat_interval.map(ms),
            running: w
                .running
                .into_iter()
                .map(|(queue, id)| RunningOut { queue, id })
                .collect(),
            held: Vec::new(),
            remediation: w.remediation,
        }
    }
}

impl WorkerOut {
    /// Fills `held` from [`crate::Ledger::slot_holders`]'s answer.
    pub fn with_held(
        mut self,
        holders: &std::collections::HashMap<String, Vec<(String, String)>>,
    ) -> Self {
        self.held = holders
            .get(&self.worker_id)
            .map(|list| {
                list.iter()
                    .map(|(queue, id)| RunningOut {
                        queue: queue.clone(),
                        id: id.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        self
    }
}

/// Reads a state name from a query or a body: the library's names.
pub fn parse_state(s: &str) -> Result<State, Error> {
    s.parse()
}
