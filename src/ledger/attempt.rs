//! What the attempt scripts share: the replies when a token is not current, and the keys
//! they take. The operations live in `heartbeat.rs`, `complete.rs`, `fail.rs` and
//! `cancel.rs` (acknowledge).

use super::{AttemptToken, CompleteOutcome, Ledger, State, StopReason};
use crate::error::{Error, Result};
use crate::keys::{Keyspace, Timer};
use crate::scripts::Reply;

/// The replies every attempt script shares when the token is not current.
pub(super) enum Verdict {
    Stale {
        current_attempt: u32,
        state: State,
    },
    Terminal {
        state: State,
        stop_reason: StopReason,
    },
}

pub(super) fn verdict(reply: &Reply, token: &AttemptToken) -> Result<Option<Verdict>> {
    match reply.status() {
        "stale" => Ok(Some(Verdict::Stale {
            current_attempt: reply.u32(1)?,
            state: reply.state(2)?,
        })),
        "terminal" => Ok(Some(Verdict::Terminal {
            state: reply.state(1)?,
            stop_reason: StopReason::parse(reply.str(2)?),
        })),
        "missing" => Err(Error::NotFound {
            queue: token.queue.clone(),
            id: token.id.clone(),
        }),
        "mismatch" => Err(Error::TokenMismatch {
            queue: token.queue.clone(),
            id: token.id.clone(),
            current_attempt: reply.u32(1)?,
        }),
        _ => Ok(None),
    }
}

/// The queue's keys every attempt script takes after the execution hash, in this order:
/// the events stream, the slots, and the start, heartbeat, progress, deadline, stuck and
/// cancel timers.
pub(super) fn queue_attempt_keys(k: &Keyspace, queue: &str) -> [String; 8] {
    [
        k.queue_events(queue),
        k.slots(queue),
        k.queue_timer(queue, Timer::Start),
        k.queue_timer(queue, Timer::Heartbeat),
        k.queue_timer(queue, Timer::Progress),
        k.queue_timer(queue, Timer::Deadline),
        k.queue_timer(queue, Timer::Stuck),
        k.queue_timer(queue, Timer::Cancel),
    ]
}

impl Ledger {
    /// The execution hash, then [`queue_attempt_keys`].
    pub(super) fn attempt_keys(&self, token: &AttemptToken) -> Vec<String> {
        let mut keys = vec![self.keys.execution(&token.queue, &token.id)];
        keys.extend(queue_attempt_keys(&self.keys, &token.queue));
        keys
    }
}

pub(super) fn finish_outcome(reply: &Reply, token: &AttemptToken) -> Result<CompleteOutcome> {
    match verdict(reply, token)? {
        Some(Verdict::Stale {
            current_attempt,
            state,
        }) => Ok(CompleteOutcome::StaleAttempt {
            current_attempt,
            state,
        }),
        Some(Verdict::Terminal { state, stop_reason }) => {
            Ok(CompleteOutcome::AlreadyTerminal { state, stop_reason })
        }
        None if reply.status() == "ok" => Ok(CompleteOutcome::Recorded {
            slot_released: reply.flag(1)?,
        }),
        None => Err(reply.unexpected()),
    }
}
