//! What a heartbeat carries (progress, checkpoint, fingerprint, usage) and what its reply
//! says; the calls that send them are in `beats.rs`.

use serde::{Deserialize, Serialize};

use super::{State, StopReason, Usage};
use crate::error::{Error, Result};

/// What a heartbeat carries besides "alive".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Heartbeat {
    /// Any text that changes when the work moves on (a step counter, a phase name). A
    /// heartbeat whose progress equals the last one does not count as progress.
    pub progress: Option<String>,
    /// Where a retry should resume from; replaces the previous checkpoint.
    pub checkpoint: Option<serde_json::Value>,
    /// A short text naming the last action and its result (a hash of them, say), for loop
    /// detection: the same fingerprint `max_repeats` times in a row and the execution is
    /// stuck `looping`. A different one starts the count again; none leaves it alone. At
    /// most [`MAX_FINGERPRINT_BYTES`], not empty.
    pub fingerprint: Option<String>,
    /// Tokens and cost spent since the last delta (applied once, by its `seq`).
    pub usage: Option<Usage>,
}

/// Longest fingerprint a heartbeat may carry, in bytes.
pub const MAX_FINGERPRINT_BYTES: usize = 128;

impl Heartbeat {
    /// A heartbeat that says only "alive".
    pub fn new() -> Self {
        Self::default()
    }

    /// Reports progress (it counts as progress only when it changes).
    pub fn progress(mut self, progress: impl Into<String>) -> Self {
        self.progress = Some(progress.into());
        self
    }

    /// Reports usage (tokens, cost) spent since the previous delta.
    pub fn usage(mut self, usage: Usage) -> Self {
        self.usage = Some(usage);
        self
    }

    /// Reports where a retry should resume from.
    pub fn checkpoint(mut self, checkpoint: serde_json::Value) -> Self {
        self.checkpoint = Some(checkpoint);
        self
    }

    /// Reports the fingerprint of the last action and its result (loop detection). Each
    /// heartbeat that carries one counts as one arrival.
    pub fn fingerprint(mut self, fingerprint: impl Into<String>) -> Self {
        self.fingerprint = Some(fingerprint.into());
        self
    }
}

/// Checks a fingerprint: 1 to [`MAX_FINGERPRINT_BYTES`] bytes.
///
/// # Errors
/// [`Error::InvalidArgument`] naming `fingerprint`.
pub(crate) fn check_fingerprint(fingerprint: &str) -> Result<()> {
    if fingerprint.is_empty() || fingerprint.len() > MAX_FINGERPRINT_BYTES {
        let mut shown: String = fingerprint.chars().take(40).collect();
        if shown.len() < fingerprint.len() {
            shown.push('…');
        }
        return Err(Error::InvalidArgument {
            name: "fingerprint".into(),
            value: format!("{shown:?} ({} bytes)", fingerprint.len()),
            expected: format!("a text of 1 to {MAX_FINGERPRINT_BYTES} bytes"),
        });
    }
    Ok(())
}

/// The reply to a heartbeat: keep going, or stop and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HeartbeatReply {
    /// The attempt is current. Stop soon and acknowledge if `cancel_requested`.
    Ok {
        /// Stop soon and acknowledge the cancellation.
        cancel_requested: bool,
        /// Why, when the ledger asked and not an operator: `budget_exceeded`. `None`
        /// for an operator's cancel (or none requested).
        cancel_reason: Option<String>,
    },
    /// The caller's attempt is over: a newer attempt exists, or this one was ended and a
    /// retry waits in the queue still carrying this attempt's number (its claim makes it
    /// N+1, see [`next_attempt`](Self::next_attempt)). Stop, the work is not yours.
    StaleAttempt {
        /// The attempt the execution is on now (the caller's own, when a retry waits).
        current_attempt: u32,
        /// Its state now.
        state: State,
    },
    /// The execution is terminal: stop.
    Terminal {
        /// The state it ended in.
        state: State,
        /// Why it stopped.
        stop_reason: StopReason,
    },
}

impl HeartbeatReply {
    /// True when the worker should stop working on this attempt.
    pub fn should_stop(&self) -> bool {
        !matches!(
            self,
            HeartbeatReply::Ok {
                cancel_requested: false,
                ..
            }
        )
    }
}
