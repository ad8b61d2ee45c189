//! The worker's calls about the attempt it holds: heartbeat, complete, fail, acknowledge
//! a cancellation. Each is one script call, a compare-and-set on (state, attempt, nonce).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::finish::Finish;
use super::{AttemptToken, Ledger, State, StopReason};
use crate::error::{Error, Result};
use crate::keys::{Keyspace, Timer};
use crate::scripts::{ACK_CANCEL, FAIL, HEARTBEAT, Reply};

/// What a heartbeat carries besides "alive".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Heartbeat {
    /// Any text that changes when the work moves on (a step counter, a phase name). A
    /// heartbeat whose progress equals the last one does not count as progress.
    pub progress: Option<String>,
    /// Where a retry should resume from; replaces the previous checkpoint.
    pub checkpoint: Option<serde_json::Value>,
}

impl Heartbeat {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn progress(mut self, progress: impl Into<String>) -> Self {
        self.progress = Some(progress.into());
        self
    }

    pub fn checkpoint(mut self, checkpoint: serde_json::Value) -> Self {
        self.checkpoint = Some(checkpoint);
        self
    }
}

/// The reply to a heartbeat: keep going, or stop and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HeartbeatReply {
    /// The attempt is current. Stop soon and acknowledge if `cancel_requested`.
    Ok { cancel_requested: bool },
    /// A newer attempt exists or this one was ended (retried): stop, the work is not yours.
    StaleAttempt { current_attempt: u32, state: State },
    /// The execution is terminal: stop.
    Terminal {
        state: State,
        stop_reason: StopReason,
    },
}

impl HeartbeatReply {
    /// True when the worker should stop working on this attempt.
    pub fn should_stop(&self) -> bool {
        !matches!(
            self,
            HeartbeatReply::Ok {
                cancel_requested: false
            }
        )
    }
}

/// The outcome of `complete` or `acknowledge_cancel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompleteOutcome {
    /// Recorded now; `slot_released` says this attempt's slot was freed by this call.
    Recorded { slot_released: bool },
    /// Already terminal: nothing changed; the first outcome is reported.
    AlreadyTerminal {
        state: State,
        stop_reason: StopReason,
    },
    /// The attempt is no longer current: nothing changed.
    StaleAttempt { current_attempt: u32, state: State },
}

/// The outcome of `fail`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailOutcome {
    /// Back in the queue; a new attempt may start at `available_at`.
    RetryScheduled {
        available_at: DateTime<Utc>,
        slot_released: bool,
    },
    /// Terminal: not retryable, or attempts exhausted.
    Failed {
        slot_released: bool,
    },
    /// Cancellation had been requested: ended as cancelled instead of retrying.
    Cancelled {
        slot_released: bool,
    },
    AlreadyTerminal {
        state: State,
        stop_reason: StopReason,
    },
    StaleAttempt {
        current_attempt: u32,
        state: State,
    },
}

/// Longest failure message kept; longer ones are cut (with a marker), not refused, so a
/// worker reporting a huge stack trace still gets its failure recorded.
pub const MAX_ERROR_MESSAGE: usize = 4096;

/// The replies every attempt script shares when the token is not current.
enum Verdict {
    Stale {
        current_attempt: u32,
        state: State,
    },
    Terminal {
        state: State,
        stop_reason: StopReason,
    },
}

fn verdict(reply: &Reply, token: &AttemptToken) -> Result<Option<Verdict>> {
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

    /// Reports that the attempt is alive, with optional progress and checkpoint. The first
    /// heartbeat moves dispatched → running. One round trip.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::TokenMismatch`] for a token never issued for this
    /// attempt, [`Error::TooLarge`] for an oversized checkpoint.
    pub async fn heartbeat(&self, token: &AttemptToken, beat: Heartbeat) -> Result<HeartbeatReply> {
        let checkpoint = beat
            .checkpoint
            .as_ref()
            .map(|c| self.json_text("checkpoint", c))
            .transpose()?;
        if let Some(p) = &beat.progress {
            self.check_size("progress", p.len())?;
        }
        let k = &self.keys;
        let q = token.queue.as_str();
        let (maxlen, hist) = self.limits();
        let reply = HEARTBEAT
            .key(k.execution(q, &token.id))
            .key(k.queue_events(q))
            .key(k.queue_timer(q, Timer::Start))
            .key(k.queue_timer(q, Timer::Heartbeat))
            .key(k.queue_timer(q, Timer::Progress))
            .key(k.queue_timer(q, Timer::Stuck))
            .key(k.stale_window(k.partition_of(q)))
            .key(k.namespace_stale_window(k.partition_of(q)))
            .arg(Keyspace::member(q, &token.id))
            .arg(token.attempt)
            .arg(&token.nonce)
            .arg(if beat.progress.is_some() { "1" } else { "0" })
            .arg(beat.progress.as_deref().unwrap_or(""))
            .arg(if checkpoint.is_some() { "1" } else { "0" })
            .arg(checkpoint.as_deref().unwrap_or(""))
            .arg(maxlen)
            .arg(hist)
            .run(&mut self.conn.clone())
            .await?;
        match verdict(&reply, token)? {
            Some(Verdict::Stale {
                current_attempt,
                state,
            }) => Ok(HeartbeatReply::StaleAttempt {
                current_attempt,
                state,
            }),
            Some(Verdict::Terminal { state, stop_reason }) => {
                Ok(HeartbeatReply::Terminal { state, stop_reason })
            }
            None if reply.status() == "ok" => Ok(HeartbeatReply::Ok {
                cancel_requested: reply.flag(1)?,
            }),
            None => Err(reply.unexpected()),
        }
    }

    /// Records that the attempt succeeded, with an optional JSON result. Terminal; frees
    /// the slot this attempt holds. A replay returns the first outcome. One round trip,
    /// shared with the concurrent completions of the same queue (see
    /// [`complete_and_claim`](Self::complete_and_claim)).
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::TokenMismatch`], [`Error::TooLarge`].
    pub async fn complete(
        &self,
        token: &AttemptToken,
        result: Option<&serde_json::Value>,
    ) -> Result<CompleteOutcome> {
        let result = result
            .map(|r| self.json_text("result", r))
            .transpose()?
            .unwrap_or_default();
        let finish = Finish {
            token: token.clone(),
            result,
            worker: String::new(),
            max: 0,
        };
        Ok(self.finish(finish).await?.0)
    }

    /// Records that the attempt failed. With `retryable` and attempts left, the execution
    /// goes back to the queue after its backoff and the next attempt gets the last
    /// checkpoint; otherwise it is failed. `message` is kept as the latest failure (cut at
    /// [`MAX_ERROR_MESSAGE`] bytes). One round trip.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::TokenMismatch`].
    pub async fn fail(
        &self,
        token: &AttemptToken,
        message: &str,
        retryable: bool,
    ) -> Result<FailOutcome> {
        let message = cut_message(message);
        let (maxlen, hist) = self.limits();
        let mut call = FAIL.call();
        for key in self.attempt_keys(token) {
            call.key(key);
        }
        call.key(self.keys.finished(&token.queue, "failed"))
            .key(self.keys.pending(&token.queue))
            .key(self.keys.finished(&token.queue, "cancelled"))
            .arg(Keyspace::member(&token.queue, &token.id))
            .arg(token.attempt)
            .arg(&token.nonce)
            .arg(if retryable { "1" } else { "0" })
            .arg(message)
            .arg(maxlen)
            .arg(hist);
        let reply = call.run(&mut self.conn.clone()).await?;
        match verdict(&reply, token)? {
            Some(Verdict::Stale {
                current_attempt,
                state,
            }) => Ok(FailOutcome::StaleAttempt {
                current_attempt,
                state,
            }),
            Some(Verdict::Terminal { state, stop_reason }) => {
                Ok(FailOutcome::AlreadyTerminal { state, stop_reason })
            }
            None => match reply.status() {
                "retry" => Ok(FailOutcome::RetryScheduled {
                    available_at: reply.time(1)?,
                    slot_released: reply.flag(2)?,
                }),
                "failed" => Ok(FailOutcome::Failed {
                    slot_released: reply.flag(1)?,
                }),
                "cancelled" => Ok(FailOutcome::Cancelled {
                    slot_released: reply.flag(1)?,
                }),
                _ => Err(reply.unexpected()),
            },
        }
    }

    /// The worker acknowledges a cancellation request and has stopped: the execution is
    /// cancelled and its slot freed. One round trip.
    ///
    /// # Errors
    /// [`Error::InvalidTransition`] when no cancellation was requested,
    /// [`Error::NotFound`], [`Error::TokenMismatch`].
    pub async fn acknowledge_cancel(&self, token: &AttemptToken) -> Result<CompleteOutcome> {
        let (maxlen, hist) = self.limits();
        let mut call = ACK_CANCEL.call();
        for key in self.attempt_keys(token) {
            call.key(key);
        }
        call.key(self.keys.finished(&token.queue, "cancelled"))
            .arg(Keyspace::member(&token.queue, &token.id))
            .arg(token.attempt)
            .arg(&token.nonce)
            .arg(maxlen)
            .arg(hist);
        let reply = call.run(&mut self.conn.clone()).await?;
        if reply.status() == "not_requested" {
            return Err(Error::InvalidTransition {
                operation: "acknowledge cancellation of",
                queue: token.queue.clone(),
                id: token.id.clone(),
                reason: format!("no cancellation was requested (state {})", reply.str(1)?),
            });
        }
        finish_outcome(&reply, token)
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

fn cut_message(message: &str) -> String {
    if message.len() <= MAX_ERROR_MESSAGE {
        return message.to_owned();
    }
    let mut end = MAX_ERROR_MESSAGE - 16;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [truncated]", &message[..end])
}
