//! What an execution is: its state, timings, stop metadata and history, read from Redis.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fields as f;
use crate::state::{State, StopReason, ms_to_time};
use crate::timings::ResolvedTimings;

/// Stop metadata of a terminal execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct StopMetadata {
    /// Why it stopped: `succeeded`, `failed`, `cancelled`, `deadline_exceeded`,
    /// `heartbeat_lost`, `no_progress`, `looping`, `start_timeout`, `worker_lost`.
    #[cfg_attr(feature = "server", schema(value_type = String))]
    pub reason: StopReason,
    /// The timeout that applies to this stop, in milliseconds: the one that fired for a
    /// timeout stop, otherwise the deadline.
    #[serde(default, with = "crate::timings::millis")]
    #[cfg_attr(feature = "server", schema(value_type = Option<u64>))]
    pub timeout: Option<Duration>,
    /// Whether that timeout was configured at all.
    pub timeout_configured: bool,
    /// Whether a timeout (rather than the worker or a person) ended the execution.
    pub timeout_fired: bool,
}

/// What an awaiting execution waits for, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Wait {
    /// Why it waits, as its worker said (`await`).
    pub reason: String,
    /// When it began waiting.
    pub since: DateTime<Utc>,
    /// When the watchdog ends the wait if nobody resumes it.
    pub deadline_at: DateTime<Utc>,
    /// What happens then: `fail` (stop reason `wait_expired`) or `requeue`.
    pub on_expiry: String,
}

/// Loop detection's view of the current attempt: the last fingerprint its heartbeats
/// carried and how many of them in a row carried it (judged against `max_repeats`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Fingerprint {
    /// The last fingerprint.
    pub last: String,
    /// Heartbeats in a row that carried it (1 when it just changed).
    pub repeats: u32,
}

/// One recorded transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Transition {
    /// When.
    pub at: DateTime<Utc>,
    /// The state entered.
    pub state: State,
    /// Why (the event reason).
    pub reason: String,
    /// The attempt it belongs to.
    pub attempt: u32,
}

/// A snapshot of one execution: what `GET /v1/queues/{queue}/executions/{id}` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Execution {
    /// The queue.
    pub queue: String,
    /// The execution id.
    pub id: String,
    /// Its state now.
    pub state: State,
    /// Attempts started so far (0 while never claimed); the attempt number of the current
    /// or last attempt.
    pub attempt: u32,
    /// Attempts that ended by an await or a snooze: continuations, not retries, so they do
    /// not count toward `max_attempts` (which `attempt - continuations` is held to).
    pub continuations: u32,
    /// Times it was snoozed (`Ledger::snooze`), held to `max_snoozes`.
    pub snoozes: u32,
    /// When a queued execution becomes claimable (a snooze's time, a retry's backoff, a
    /// delayed enqueue). Read by [`Ledger::get`](crate::Ledger::get) only; `None` in
    /// listings and for every other state.
    pub available_at: Option<DateTime<Utc>>,
    /// The payload it was enqueued with.
    #[cfg_attr(feature = "server", schema(value_type = crate::server::wire::schema::AnyJson, inline))]
    pub payload: serde_json::Value,
    /// The last checkpoint a worker reported; handed to the next attempt.
    #[cfg_attr(feature = "server", schema(value_type = Option<crate::server::wire::schema::AnyJson>, inline))]
    pub checkpoint: Option<serde_json::Value>,
    /// What `complete` recorded.
    #[cfg_attr(feature = "server", schema(value_type = Option<crate::server::wire::schema::AnyJson>, inline))]
    pub result: Option<serde_json::Value>,
    /// The last progress text a heartbeat reported.
    pub progress: Option<String>,
    /// The current attempt's last heartbeat fingerprint and its run (loop detection);
    /// `None` until a heartbeat of this attempt carries one.
    pub fingerprint: Option<Fingerprint>,
    /// Worker holding the current attempt.
    pub worker: Option<String>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When the current attempt was claimed.
    pub dispatched_at: Option<DateTime<Utc>>,
    /// When the current attempt first heartbeated.
    pub started_at: Option<DateTime<Utc>>,
    /// The current attempt's last heartbeat.
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    /// When the progress last changed.
    pub progress_changed_at: Option<DateTime<Utc>>,
    /// When it became stuck (while stuck).
    pub stuck_since: Option<DateTime<Utc>>,
    /// Its hard deadline, if any.
    pub deadline_at: Option<DateTime<Utc>>,
    /// When cancellation was requested, if it was.
    pub cancel_requested_at: Option<DateTime<Utc>>,
    /// When it became terminal.
    pub finished_at: Option<DateTime<Utc>>,
    /// The timings it is judged by (resolved at enqueue).
    pub timings: ResolvedTimings,
    /// Set once the execution is terminal.
    pub stop: Option<StopMetadata>,
    /// The latest failure message or cancellation reason.
    pub last_error: Option<String>,
    /// Times a stuck verdict was withdrawn because the worker turned out to be alive.
    pub false_alarms: u32,
    /// The newest transitions, oldest first (bounded by `history_len`).
    pub history: Vec<Transition>,
    /// The finished execution this one runs again (`Ledger::retry`), as `(queue, id)`;
    /// serialized as `<queue>/<id>`.
    #[serde(with = "retry_of_text")]
    #[cfg_attr(feature = "server", schema(value_type = Option<String>))]
    pub retry_of: Option<(String, String)>,
    /// The ids of the executions made to run this one again, oldest first.
    pub retries: Vec<String>,
    /// Pinned: retention never removes it ([`Ledger::pin`](crate::Ledger::pin)).
    pub pinned: bool,
    /// While `awaiting`: what it waits for and until when.
    pub wait: Option<Wait>,
    /// When its latest wait was resumed (until it awaits again).
    pub resumed_at: Option<DateTime<Utc>>,
    /// The input of that resume, handed to the claims that continue it.
    #[cfg_attr(feature = "server", schema(value_type = Option<crate::server::wire::schema::AnyJson>, inline))]
    pub resume_input: Option<serde_json::Value>,
    /// The W3C trace context stored at enqueue (docs/tracing.md), absent when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// Usage reported over all its attempts, and by model (`None` before any).
    #[serde(default)]
    pub usage: Option<super::UsageSummary>,
    /// Its own budget, given at enqueue (`None`: its queue's default budget applies).
    #[serde(default)]
    pub budget: Option<super::Budget>,
    /// Why cancellation was requested when the ledger asked: `budget_exceeded`.
    #[serde(default)]
    pub cancel_reason: Option<String>,
}

impl Execution {
    /// Builds a snapshot from the execution hash.
    pub(crate) fn from_hash(fields: &HashMap<String, String>) -> Result<Self> {
        let r = Reader(fields);
        let state = parse_state(r.req(f::STATE)?)?;
        let timings = ResolvedTimings::from_stored(fields)?;
        let stop = r.opt(f::STOP_REASON).map(|s| {
            let reason = StopReason::parse(s);
            let (timeout, fired) = match reason {
                StopReason::DeadlineExceeded => (timings.deadline, true),
                StopReason::HeartbeatLost => (Some(timings.heartbeat_timeout), true),
                StopReason::NoProgress => (timings.no_progress_timeout, true),
                StopReason::StartTimeout => (Some(timings.start_grace), true),
                StopReason::WaitExpired => (None, true),
                _ => (timings.deadline, false),
            };
            StopMetadata {
                reason,
                timeout,
                timeout_configured: timeout.is_some(),
                timeout_fired: fired,
            }
        });
        Ok(Execution {
            queue: r.req(f::QUEUE)?.to_owned(),
            id: r.req(f::ID)?.to_owned(),
            state,
            attempt: r.num(f::ATTEMPT)? as u32,
            payload: r.json(f::PAYLOAD)?.unwrap_or(serde_json::Value::Null),
            checkpoint: r.json(f::CHECKPOINT)?,
            result: r.json(f::RESULT)?,
            progress: r.opt(f::PROGRESS).map(str::to_owned),
            fingerprint: match r.opt(f::FINGERPRINT) {
                Some(last) => Some(Fingerprint {
                    last: last.to_owned(),
                    repeats: r.count(f::FINGERPRINT_REPEATS)?,
                }),
                None => None,
            },
            worker: r.opt(f::WORKER).map(str::to_owned),
            created_at: r.time(f::CREATED)?.ok_or_else(|| r.missing(f::CREATED))?,
            dispatched_at: r.time(f::DISPATCHED)?,
            started_at: r.time(f::STARTED)?,
            last_heartbeat_at: r.time(f::HEARTBEAT)?,
            progress_changed_at: r.time(f::PROGRESS_CHANGED)?,
            stuck_since: r.time(f::STUCK_SINCE)?,
            deadline_at: r.time(f::DEADLINE_AT)?,
            cancel_requested_at: r.time(f::CANCEL_REQUESTED)?,
            finished_at: r.time(f::FINISHED)?,
            timings,
            stop,
            last_error: r.opt(f::ERROR).map(str::to_owned),
            false_alarms: r.count(f::FALSE_ALARMS)?,
            continuations: r.count(f::CONTINUATIONS)?,
            snoozes: r.count(f::SNOOZES)?,
            available_at: None,
            history: history_of(fields)?,
            retry_of: r
                .opt(f::RETRY_OF)
                .and_then(|m| m.split_once('/'))
                .map(|(q, id)| (q.to_owned(), id.to_owned())),
            retries: Vec::new(),
            pinned: r.opt(f::PINNED) == Some("1"),
            wait: match (state, r.time(f::WAITING_SINCE)?, r.time(f::WAIT_DEADLINE)?) {
                (State::Awaiting, Some(since), Some(deadline_at)) => Some(Wait {
                    reason: r.opt(f::WAIT_REASON).unwrap_or("").to_owned(),
                    since,
                    deadline_at,
                    on_expiry: r.opt(f::WAIT_EXPIRY).unwrap_or("fail").to_owned(),
                }),
                _ => None,
            },
            resumed_at: r.time(f::RESUMED_AT)?,
            resume_input: r.json(f::RESUME_INPUT)?,
            traceparent: r.opt(f::TRACEPARENT).map(str::to_owned),
            usage: super::UsageSummary::from_fields(fields),
            budget: r.opt(f::BUDGET).and_then(super::usage::Budget::parse),
            cancel_reason: r.opt(f::CANCEL_CAUSE).map(str::to_owned),
        })
    }
}

/// `retry_of` as `<queue>/<id>` text (queue names hold no `/`).
mod retry_of_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        v: &Option<(String, String)>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some((queue, id)) => s.serialize_some(&format!("{queue}/{id}")),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<(String, String)>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| match text.split_once('/') {
                Some((queue, id)) => Ok((queue.to_owned(), id.to_owned())),
                None => Err(serde::de::Error::custom(format!(
                    "retry_of {text:?} is not <queue>/<id>"
                ))),
            })
            .transpose()
    }
}

/// The history, oldest first: the ring of `h<i>` fields ordered by entry number, after
/// the lines of a `hist` field an earlier version wrote (kept readable across upgrades).
fn history_of(fields: &HashMap<String, String>) -> Result<Vec<Transition>> {
    let mut history: Vec<Transition> = fields
        .get(f::HISTORY_LEGACY)
        .map(String::as_str)
        .unwrap_or("")
        .lines()
        .filter(|l| !l.is_empty())
        .map(parse_transition)
        .collect::<Result<_>>()?;
    let mut ring: Vec<(u64, Transition)> = fields
        .iter()
        .filter(|(name, _)| {
            name.strip_prefix('h')
                .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|(_, entry)| {
            let (n, rest) = entry
                .split_once('|')
                .ok_or_else(|| protocol(format!("bad history entry {entry:?}")))?;
            let n = n
                .parse()
                .map_err(|_| protocol(format!("bad history entry number {n:?}")))?;
            Ok((n, parse_transition(rest)?))
        })
        .collect::<Result<_>>()?;
    ring.sort_by_key(|(n, _)| *n);
    history.extend(ring.into_iter().map(|(_, t)| t));
    Ok(history)
}

/// One `<ms>|<state>|<reason>|<attempt>` entry.
fn parse_transition(line: &str) -> Result<Transition> {
    let mut parts = line.splitn(4, '|');
    let (Some(at), Some(state), Some(reason), Some(attempt)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(protocol(format!("bad history entry {line:?}")));
    };
    Ok(Transition {
        at: ms_to_time(
            at.parse()
                .map_err(|_| protocol(format!("bad time {at:?}")))?,
        )?,
        state: parse_state(state)?,
        reason: reason.to_owned(),
        attempt: attempt
            .parse()
            .map_err(|_| protocol(format!("bad attempt {attempt:?}")))?,
    })
}

/// A state name read from Redis: one this version does not know is damaged data.
fn parse_state(s: &str) -> Result<State> {
    s.parse()
        .map_err(|_| protocol(format!("unknown state {s:?}")))
}

fn protocol(detail: String) -> Error {
    Error::Protocol {
        script: "execution hash",
        detail,
    }
}

/// Typed reads of the execution hash's fields.
struct Reader<'a>(&'a HashMap<String, String>);

impl Reader<'_> {
    fn missing(&self, key: &str) -> Error {
        protocol(format!("field {key:?} missing"))
    }

    fn opt(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn req(&self, key: &str) -> Result<&str> {
        self.opt(key).ok_or_else(|| self.missing(key))
    }

    fn num(&self, key: &str) -> Result<i64> {
        let v = self.req(key)?;
        v.parse()
            .map_err(|_| protocol(format!("field {key:?} is not an integer: {v:?}")))
    }

    /// A counter that is absent until it first counts: 0 then.
    fn count(&self, key: &str) -> Result<u32> {
        match self.opt(key) {
            None => Ok(0),
            Some(_) => u32::try_from(self.num(key)?)
                .map_err(|_| protocol(format!("field {key:?} is not a count"))),
        }
    }

    fn time(&self, key: &str) -> Result<Option<DateTime<Utc>>> {
        match self.opt(key) {
            None | Some("0") => Ok(None),
            Some(_) => ms_to_time(self.num(key)?).map(Some),
        }
    }

    fn json(&self, key: &str) -> Result<Option<serde_json::Value>> {
        self.opt(key)
            .map(|v| serde_json::from_str(v).map_err(|e| protocol(format!("{key}: {e}"))))
            .transpose()
    }
}
