//! What the attempt scripts share: the replies when a token is not current, and the keys
//! they take. The operations live in `heartbeat.rs`, `complete.rs`, `fail.rs` and
//! `cancel.rs` (acknowledge).

use super::{
    AttemptToken, AwaitOutcome, CompleteOutcome, FailOutcome, HeartbeatReply, Ledger,
    SnoozeOutcome, State, StopReason,
};
use crate::error::{Error, Result};
use crate::keys::{Keyspace, Timer};
use crate::scripts::Reply;

/// An attempt call's outcome type, which has a variant for each refusal every attempt
/// script shares: the token's attempt is no longer current, or the execution is terminal.
pub(super) trait Refusals: Sized {
    fn stale(current_attempt: u32, state: State) -> Self;
    fn terminal(state: State, stop_reason: StopReason) -> Self;
}

/// The attempt number the next claim of an execution gives, when a stale-attempt reply
/// finds it waiting in the queue; `None` when a newer attempt already holds it.
///
/// A waiting retry keeps the number of the attempt that ended (`attempt` counts claims,
/// and the claim is what makes a new attempt): the late heartbeat of attempt N, sent while
/// the retry waits, finds the execution `queued` on attempt N, and the claim makes it N+1.
pub(crate) fn next_claim(current_attempt: u32, state: State) -> Option<u32> {
    (state == State::Queued).then(|| current_attempt.saturating_add(1))
}

/// Why an attempt call was refused, whatever the call: what every attempt outcome type
/// (`HeartbeatReply`, `CompleteOutcome`, `FailOutcome`) holds in its refusal variants,
/// given by their `refusal()` so a caller maps refusals in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttemptRefused {
    /// The caller's attempt is no longer current: a newer attempt holds the execution, or
    /// a retry of it waits in the queue.
    Stale {
        /// The attempt the execution is on now.
        current_attempt: u32,
        /// Its state now.
        state: State,
    },
    /// The execution already ended: its first outcome.
    Terminal {
        /// The terminal state.
        state: State,
        /// Why it stopped.
        stop_reason: StopReason,
    },
}

impl AttemptRefused {
    /// For a stale attempt whose execution waits in the queue, the attempt number its
    /// next claim gives; `None` otherwise.
    pub fn next_attempt(&self) -> Option<u32> {
        match self {
            AttemptRefused::Stale {
                current_attempt,
                state,
            } => next_claim(*current_attempt, *state),
            AttemptRefused::Terminal { .. } => None,
        }
    }
}

/// Declares the outcome of a call that presents an attempt token (complete, fail, snooze,
/// await): the variants given, then the two refusals every such call shares, written once
/// here — `AlreadyTerminal` and `StaleAttempt` (see [`AttemptRefused`]).
macro_rules! attempt_outcome {
    ($(#[$meta:meta])* pub enum $name:ident { $($variants:tt)* }) => {
        $(#[$meta])*
        pub enum $name {
            $($variants)*
            /// Already terminal: nothing changed; the first outcome is reported.
            AlreadyTerminal {
                /// The state it ended in.
                state: State,
                /// Why it stopped (the first outcome).
                stop_reason: StopReason,
            },
            /// The caller's attempt is over (a newer attempt exists, it already ended by
            /// this very call kind, or a retry of it waits in the queue, see
            /// [`next_attempt`](Self::next_attempt)): nothing changed.
            StaleAttempt {
                /// The attempt the execution is on now (the caller's own, when a retry
                /// waits).
                current_attempt: u32,
                /// Its state now.
                state: State,
            },
        }
    };
}
pub(crate) use attempt_outcome;

/// Maps the shared refusals onto an outcome type's variants, and gives the type the two
/// questions a worker asks of a refusal: is my attempt over, and what comes next.
macro_rules! refusals {
    ($outcome:ident: $stale:ident, $terminal:ident) => {
        impl Refusals for $outcome {
            fn stale(current_attempt: u32, state: State) -> Self {
                $outcome::$stale {
                    current_attempt,
                    state,
                }
            }
            fn terminal(state: State, stop_reason: StopReason) -> Self {
                $outcome::$terminal { state, stop_reason }
            }
        }

        impl $outcome {
            /// True when the call was refused because the caller's attempt is over — a
            #[doc = concat!("newer attempt holds the execution or a retry waits (`", stringify!($stale), "`), or")]
            #[doc = concat!("it ended (`", stringify!($terminal), "`): nothing changed; stop working on it.")]
            pub fn attempt_ended(&self) -> bool {
                matches!(self, $outcome::$stale { .. } | $outcome::$terminal { .. })
            }

            /// The refusal, when the call was refused: one type for every attempt call.
            pub fn refusal(&self) -> Option<AttemptRefused> {
                match self {
                    $outcome::$stale {
                        current_attempt,
                        state,
                    } => Some(AttemptRefused::Stale {
                        current_attempt: *current_attempt,
                        state: *state,
                    }),
                    $outcome::$terminal { state, stop_reason } => {
                        Some(AttemptRefused::Terminal {
                            state: *state,
                            stop_reason: stop_reason.clone(),
                        })
                    }
                    _ => None,
                }
            }

            /// For a stale attempt whose execution waits in the queue (a retry of the
            /// caller's attempt, or a continuation), the attempt number its next claim gives:
            /// `current_attempt + 1`. `None` for any other reply, or when a newer attempt
            /// already holds the execution.
            pub fn next_attempt(&self) -> Option<u32> {
                match self {
                    $outcome::$stale {
                        current_attempt,
                        state,
                    } => next_claim(*current_attempt, *state),
                    _ => None,
                }
            }
        }
    };
}

refusals!(CompleteOutcome: StaleAttempt, AlreadyTerminal);
refusals!(FailOutcome: StaleAttempt, AlreadyTerminal);
refusals!(SnoozeOutcome: StaleAttempt, AlreadyTerminal);
refusals!(HeartbeatReply: StaleAttempt, Terminal);
refusals!(AwaitOutcome: StaleAttempt, AlreadyTerminal);

/// The refusal `reply` carries, as `T`; `None` when the script acted (read the rest of
/// the reply); an error when the execution is missing or the token was never issued.
pub(super) fn refusal<T: Refusals>(reply: &Reply, token: &AttemptToken) -> Result<Option<T>> {
    match reply.status() {
        "stale" => Ok(Some(T::stale(reply.u32(1)?, reply.state(2)?))),
        "terminal" => Ok(Some(T::terminal(
            reply.state(1)?,
            StopReason::parse(reply.str(2)?),
        ))),
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

    /// The keys of a script that may retry or end the attempt (fail, snooze: both go
    /// through `lua/_fail.lua`): [`attempt_keys`](Self::attempt_keys), then the queue's
    /// failed list, pending set and cancelled list.
    pub(super) fn failure_keys(&self, token: &AttemptToken) -> Vec<String> {
        let mut keys = self.attempt_keys(token);
        keys.push(self.keys.finished(&token.queue, "failed"));
        keys.push(self.keys.pending(&token.queue));
        keys.push(self.keys.finished(&token.queue, "cancelled"));
        keys
    }
}

/// The outcome of a completing script (complete, acknowledge): a refusal, or recorded.
pub(super) fn finish_outcome(reply: &Reply, token: &AttemptToken) -> Result<CompleteOutcome> {
    if let Some(refused) = refusal(reply, token)? {
        return Ok(refused);
    }
    match reply.status() {
        "ok" => Ok(CompleteOutcome::Recorded {
            slot_released: reply.flag(1)?,
        }),
        _ => Err(reply.unexpected()),
    }
}
