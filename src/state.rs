//! What an execution's state and stop reason are, and how Redis writes an instant: the
//! words every other module speaks (the ledger, the scripts' replies, retention, events).
//!
//! A leaf module: it depends on nothing else of the crate but the error type. Public as
//! [`crate::State`], [`crate::StopReason`] and under [`crate::ledger`].

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where an execution is in its life. See the lifecycle in the crate docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting to be claimed (or backing off before a retry).
    Queued,
    /// Claimed; the worker has not heartbeated yet.
    Dispatched,
    /// Heartbeating.
    Running,
    /// Judged stale; a heartbeat of the current attempt revives it.
    Stuck,
    /// Its worker ended the attempt to wait on a person or an outside event (`await`):
    /// no slot, no staleness rule; only its wait deadline and its hard deadline apply.
    /// A resume puts it back in the queue.
    Awaiting,
    /// Completed (terminal).
    Succeeded,
    /// Failed for good (terminal).
    Failed,
    /// Cancelled (terminal).
    Cancelled,
    /// Its deadline passed (terminal).
    TimedOut,
    /// Its attempts were used up by lost attempts (terminal).
    Dead,
}

impl State {
    /// Every state, in lifecycle order.
    pub const ALL: [State; 10] = [
        State::Queued,
        State::Dispatched,
        State::Running,
        State::Stuck,
        State::Awaiting,
        State::Succeeded,
        State::Failed,
        State::Cancelled,
        State::TimedOut,
        State::Dead,
    ];

    /// The state's name, as stored and as the HTTP API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Dispatched => "dispatched",
            State::Running => "running",
            State::Stuck => "stuck",
            State::Awaiting => "awaiting",
            State::Succeeded => "succeeded",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
            State::TimedOut => "timed_out",
            State::Dead => "dead",
        }
    }

    /// Terminal states never change.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            State::Succeeded | State::Failed | State::Cancelled | State::TimedOut | State::Dead
        )
    }

    /// Active states hold a capacity slot.
    pub fn is_active(self) -> bool {
        matches!(self, State::Dispatched | State::Running | State::Stuck)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        State::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| Error::InvalidArgument {
                name: "state".into(),
                value: s.into(),
                expected: "one of queued, dispatched, running, stuck, awaiting, succeeded, \
                           failed, cancelled, timed_out, dead"
                    .into(),
            })
    }
}

/// Why an execution stopped, recorded with every terminal state. Serialized as its name
/// (a reason of a newer version as written).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
#[non_exhaustive]
pub enum StopReason {
    /// Completed by its worker.
    Succeeded,
    /// Failed by its worker (not retryable, or no attempts left).
    Failed,
    /// Cancelled by a person or an orchestrator.
    Cancelled,
    /// Its deadline passed.
    DeadlineExceeded,
    /// No heartbeat within its heartbeat timeout, for its last attempt.
    HeartbeatLost,
    /// Heartbeats arrived but progress did not move, for its last attempt.
    NoProgress,
    /// Heartbeats carried the same fingerprint `max_repeats` times in a row (a busy
    /// loop), for its last attempt.
    Looping,
    /// Dispatched but never started, for its last attempt.
    StartTimeout,
    /// Its worker was gone or no longer listed it, for its last attempt.
    WorkerLost,
    /// It waited (`awaiting`) past its wait deadline and nobody resumed it.
    WaitExpired,
    /// Cancelled because its usage reached its budget (the worker acknowledged, or the
    /// watchdog ended it after `cancel_grace`); the usage so far is kept.
    BudgetExceeded,
    /// A reason written by a newer version.
    Other(String),
}

impl StopReason {
    /// The reason's name, as stored.
    pub fn as_str(&self) -> &str {
        match self {
            StopReason::Succeeded => "succeeded",
            StopReason::Failed => "failed",
            StopReason::Cancelled => "cancelled",
            StopReason::DeadlineExceeded => "deadline_exceeded",
            StopReason::HeartbeatLost => "heartbeat_lost",
            StopReason::NoProgress => "no_progress",
            StopReason::Looping => "looping",
            StopReason::StartTimeout => "start_timeout",
            StopReason::WorkerLost => "worker_lost",
            StopReason::WaitExpired => "wait_expired",
            StopReason::BudgetExceeded => "budget_exceeded",
            StopReason::Other(s) => s,
        }
    }

    /// Every reason this version writes (all but [`Other`](Self::Other)): what parsing
    /// knows and what `/openapi.json` lists. A new reason is added here too.
    pub const KNOWN: [StopReason; 11] = [
        StopReason::Succeeded,
        StopReason::Failed,
        StopReason::Cancelled,
        StopReason::DeadlineExceeded,
        StopReason::HeartbeatLost,
        StopReason::NoProgress,
        StopReason::Looping,
        StopReason::StartTimeout,
        StopReason::WorkerLost,
        StopReason::WaitExpired,
        StopReason::BudgetExceeded,
    ];

    pub(crate) fn parse(s: &str) -> Self {
        Self::KNOWN
            .iter()
            .find(|r| r.as_str() == s)
            .cloned()
            .unwrap_or_else(|| StopReason::Other(s.to_owned()))
    }
}

impl From<StopReason> for String {
    fn from(reason: StopReason) -> Self {
        reason.as_str().to_owned()
    }
}

impl From<String> for StopReason {
    fn from(name: String) -> Self {
        StopReason::parse(&name)
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An instant in Redis milliseconds (as every script and hash writes it).
pub(crate) fn ms_to_time(ms: i64) -> Result<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| Error::Protocol {
            script: "execution hash",
            detail: format!("timestamp {ms} out of range"),
        })
}
