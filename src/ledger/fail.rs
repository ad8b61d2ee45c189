//! `fail`: the attempt failed; retry it after its backoff (or the worker's `retry_after`,
//! when later), or fail the execution (`lua/fail.lua`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::attempt::refusal;
use super::{AttemptToken, Ledger, State, StopReason};
use crate::error::{Error, Result};
use crate::keys::Keyspace;
use crate::scripts::FAIL;

super::attempt::attempt_outcome! {
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
    }
}

/// How a failure is to be handled: [`Ledger::fail_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailOptions {
    /// With attempts left, retry after the backoff; otherwise the execution fails.
    pub retryable: bool,
    /// The earliest the retry may start (say, a provider's `Retry-After`): it wins over
    /// the backoff when later. At most [`MAX_SNOOZE`](super::MAX_SNOOZE), whole ms.
    pub retry_after: Option<Duration>,
}

impl FailOptions {
    /// A retryable failure, retried after the backoff.
    pub fn retryable() -> Self {
        Self {
            retryable: true,
            retry_after: None,
        }
    }

    /// A failure that ends the execution.
    pub fn fatal() -> Self {
        Self {
            retryable: false,
            retry_after: None,
        }
    }

    /// Retry no sooner than `delay` from now (when the backoff is shorter).
    pub fn retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// The `retry_after` argument in ms (0: none), checked with the rest.
    pub(crate) fn check(&self) -> Result<u64> {
        let retry_after = self.retry_after_ms()?;
        if retry_after > 0 && !self.retryable {
            return Err(Error::InvalidArgument {
                name: "retry_after".into(),
                value: format!("{retry_after}ms"),
                expected: "no value: a failure that is not retryable is never retried".into(),
            });
        }
        Ok(retry_after)
    }

    /// The `retry_after` argument in ms (0: none), checked.
    fn retry_after_ms(&self) -> Result<u64> {
        let Some(d) = self.retry_after else {
            return Ok(0);
        };
        super::snooze::check_delay("retry_after", d)
    }
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
    /// [`Error::NotFound`], [`Error::TokenMismatch`].
    pub async fn fail(
        &self,
        token: &AttemptToken,
        message: &str,
        retryable: bool,
    ) -> Result<FailOutcome> {
        let options = if retryable {
            FailOptions::retryable()
        } else {
            FailOptions::fatal()
        };
        self.fail_with(token, message, options).await
    }

    /// As [`fail`](Self::fail), with its options: a retryable failure may say when the
    /// retry may start at the earliest (`retry_after`, say a provider's `Retry-After`),
    /// which wins over the backoff when later. One round trip.
    ///
    /// # Errors
    /// As [`fail`](Self::fail); [`Error::InvalidArgument`] for a `retry_after` of zero,
    /// of a fraction of a millisecond or longer than [`MAX_SNOOZE`](super::MAX_SNOOZE), or
    /// given with a failure that is not retryable (nothing written).
    pub async fn fail_with(
        &self,
        token: &AttemptToken,
        message: &str,
        options: FailOptions,
    ) -> Result<FailOutcome> {
        let at = (token.queue.as_str(), token.id.as_str(), Some(token.attempt));
        crate::otel::settle(self, at, "fail", self.fail_once(token, message, options)).await
    }

    async fn fail_once(
        &self,
        token: &AttemptToken,
        message: &str,
        options: FailOptions,
    ) -> Result<FailOutcome> {
        let retry_after = options.check()?;
        let retryable = options.retryable;
        let message = cut_message(message);
        let (maxlen, hist) = self.limits();
        let mut call = FAIL.call();
        for key in self.failure_keys(token) {
            call.key(key);
        }
        call.arg(Keyspace::member(&token.queue, &token.id))
            .arg(token.attempt)
            .arg(&token.nonce)
            .arg(if retryable { "1" } else { "0" })
            .arg(message)
            .arg(maxlen)
            .arg(hist)
            .arg(retry_after);
        let reply = call.run(&mut self.conn.clone()).await?;
        self.free_if_ended(&reply, token, "failed").await?;
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
