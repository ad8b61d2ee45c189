//! `fail`: the attempt failed; retry it after its backoff, or fail the execution
//! (`lua/fail.lua`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::attempt::refusal;
use super::{AttemptToken, Ledger, State, StopReason};
use crate::error::Result;
use crate::keys::Keyspace;
use crate::scripts::FAIL;

/// The outcome of `fail`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailOutcome {
    /// Back in the queue; a new attempt may start at `available_at`.
    RetryScheduled {
        /// When the next attempt may start.
        available_at: DateTime<Utc>,
        /// True when this call freed the attempt's slot.
        slot_released: bool,
    },
    /// Terminal: not retryable, or attempts exhausted.
    Failed {
        /// True when this call freed the attempt's slot.
        slot_released: bool,
    },
    /// Cancellation had been requested: ended as cancelled instead of retrying.
    Cancelled {
        /// True when this call freed the attempt's slot.
        slot_released: bool,
    },
    /// Already terminal: nothing changed; the first outcome is reported.
    AlreadyTerminal {
        /// The state it ended in.
        state: State,
        /// Why it stopped.
        stop_reason: StopReason,
    },
    /// The caller's attempt is over (a newer attempt exists, or a retry of it waits in
    /// the queue, see [`next_attempt`](Self::next_attempt)): nothing changed.
    StaleAttempt {
        /// The attempt the execution is on now (the caller's own, when a retry waits).
        current_attempt: u32,
        /// Its state now.
        state: State,
    },
}

/// Longest failure message kept; longer ones are cut (with a marker), not refused, so a
/// worker reporting a huge stack trace still gets its failure recorded.
pub const MAX_ERROR_MESSAGE: usize = 4096;

impl Ledger {
    /// Records that the attempt failed. With `retryable` and attempts left, the execution
    /// goes back to the queue after its backoff and the next attempt gets the last
    /// checkpoint; otherwise it is failed. `message` is kept as the latest failure (cut at
    /// [`MAX_ERROR_MESSAGE`] bytes). One round trip.
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound), [`Error::TokenMismatch`](crate::Error::TokenMismatch).
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
        if let Some(refused) = refusal(&reply, token)? {
            return Ok(refused);
        }
        match reply.status() {
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
        }
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
