//! `snooze`: the attempt ends and the execution waits in the queue until a given time, a
//! continuation that counts no attempt, bounded by `max_snoozes` (`lua/snooze.lua`).

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::attempt::refusal;
use super::{AttemptToken, Ledger, State, StopReason};
use crate::error::{Error, Result};
use crate::keys::Keyspace;
use crate::scripts::SNOOZE;

/// Longest snooze (and longest `retry_after` of a failure): a week. Anything longer is
/// not a rate limit but a plan, which belongs to a delayed enqueue or an await.
pub const MAX_SNOOZE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Longest snooze reason kept, in bytes.
pub const MAX_SNOOZE_REASON: usize = 1024;

/// When a snoozed execution becomes claimable again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnoozeTime {
    /// This long from now (Redis time): 1 ms to [`MAX_SNOOZE`].
    After(Duration),
    /// At this instant: after now, at most [`MAX_SNOOZE`] ahead.
    Until(DateTime<Utc>),
}

/// A snooze: when the execution becomes claimable again, and why it waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snooze {
    /// When it becomes claimable.
    pub time: SnoozeTime,
    /// Why (say, `rate limited by the provider`): named in the `snoozed` event.
    pub reason: String,
}

impl Snooze {
    /// Claimable again `delay` from now.
    pub fn after(delay: Duration, reason: impl Into<String>) -> Self {
        Self {
            time: SnoozeTime::After(delay),
            reason: reason.into(),
        }
    }

    /// Claimable again at `at`.
    pub fn until(at: DateTime<Utc>, reason: impl Into<String>) -> Self {
        Self {
            time: SnoozeTime::Until(at),
            reason: reason.into(),
        }
    }
}

super::attempt::attempt_outcome! {
    /// The outcome of `snooze`.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub enum SnoozeOutcome {
        /// Back in the queue, claimable from `available_at`; no attempt counted.
        Snoozed {
            /// When it becomes claimable.
            available_at: DateTime<Utc>,
            /// Snoozes of the execution so far, this one included.
            snoozes: u32,
            /// True when this call freed the attempt's slot.
            slot_released: bool,
        },
        /// The execution had used its `max_snoozes`: the snooze was recorded as a retryable
        /// failure instead, naming the limit. `retry_at` is when the retry may start, or
        /// `None` when no attempt was left and the execution failed.
        LimitReached {
            /// When the retry may start; `None`: failed (attempts exhausted).
            retry_at: Option<DateTime<Utc>>,
            /// True when this call freed the attempt's slot.
            slot_released: bool,
        },
        /// Cancellation had been requested: ended as cancelled instead of snoozing.
        Cancelled {
            /// True when this call freed the attempt's slot.
            slot_released: bool,
        },
    }
}

/// A delay from now (`after` of a snooze, `retry_after` of a failure) in whole ms: 1 ms to
/// [`MAX_SNOOZE`].
pub(super) fn check_delay(name: &str, d: Duration) -> Result<u64> {
    let ms = crate::timings::millis::ms(d);
    if ms == 0 || d > MAX_SNOOZE || !d.subsec_nanos().is_multiple_of(1_000_000) {
        return Err(Error::InvalidArgument {
            name: name.into(),
            value: crate::error::format_duration(d),
            expected: "a whole number of milliseconds from 1ms to 7 days".into(),
        });
    }
    Ok(ms)
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Ledger {
    /// Ends the attempt and puts the execution back in the queue, claimable at
    /// `snooze.time` (River's `JobSnooze`: a rate limit, a provider that is down). The slot
    /// is freed (if this attempt holds it) and the next claim is a continuation, not a
    /// retry: it does not count toward `max_attempts`. The checkpoint stays for that claim.
    /// The token is stale afterwards. Past the execution's `max_snoozes` the snooze is a
    /// retryable failure instead ([`SnoozeOutcome::LimitReached`]). One round trip.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] (nothing written) for an `after` of zero, of a fraction
    /// of a millisecond or longer than [`MAX_SNOOZE`], an `until` not after now (Redis
    /// time) or more than [`MAX_SNOOZE`] ahead, an empty reason or one longer than
    /// [`MAX_SNOOZE_REASON`] bytes; [`Error::NotFound`], [`Error::TokenMismatch`].
    pub async fn snooze(&self, token: &AttemptToken, snooze: Snooze) -> Result<SnoozeOutcome> {
        let reason = snooze.reason.trim();
        if reason.is_empty() || reason.len() > MAX_SNOOZE_REASON {
            return Err(Error::InvalidArgument {
                name: "reason".into(),
                value: reason.chars().take(80).collect(),
                expected: format!("1 to {MAX_SNOOZE_REASON} bytes saying why it waits"),
            });
        }
        let (mode, value) = match snooze.time {
            SnoozeTime::After(d) => ("after", check_delay("after", d)?),
            SnoozeTime::Until(at) => {
                let ms = u64::try_from(at.timestamp_millis()).map_err(|_| bad_until(at, None))?;
                ("until", ms)
            }
        };
        let (maxlen, hist) = self.limits();
        let mut call = SNOOZE.call();
        for key in self.failure_keys(token) {
            call.key(key);
        }
        call.arg(Keyspace::member(&token.queue, &token.id))
            .arg(token.attempt)
            .arg(&token.nonce)
            .arg(mode)
            .arg(value)
            .arg(reason)
            .arg(crate::timings::millis::ms(MAX_SNOOZE))
            .arg(maxlen)
            .arg(hist)
            .arg(self.config.defaults.max_snoozes.unwrap_or(50));
        let reply = call.run(&mut self.conn.clone()).await?;
        self.free_if_ended(&reply, token, "snoozed").await?;
        if let Some(refused) = refusal(&reply, token)? {
            return Ok(refused);
        }
        match reply.status() {
            "ok" => Ok(SnoozeOutcome::Snoozed {
                available_at: reply.time(1)?,
                snoozes: reply.u32(2)?,
                slot_released: reply.flag(3)?,
            }),
            "limit" => match reply.str(1)? {
                "retry" => Ok(SnoozeOutcome::LimitReached {
                    retry_at: Some(reply.time(2)?),
                    slot_released: reply.flag(3)?,
                }),
                "failed" => Ok(SnoozeOutcome::LimitReached {
                    retry_at: None,
                    slot_released: reply.flag(2)?,
                }),
                _ => Err(reply.unexpected()),
            },
            "cancelled" => Ok(SnoozeOutcome::Cancelled {
                slot_released: reply.flag(1)?,
            }),
            "bad_time" => match snooze.time {
                SnoozeTime::Until(at) => Err(bad_until(at, Some(reply.time(1)?))),
                SnoozeTime::After(_) => Err(reply.unexpected()),
            },
            _ => Err(reply.unexpected()),
        }
    }
}

fn bad_until(at: DateTime<Utc>, now: Option<DateTime<Utc>>) -> Error {
    let now = now.map_or_else(|| "now".to_owned(), |n| format!("now ({})", iso(n)));
    Error::InvalidArgument {
        name: "until".into(),
        value: iso(at),
        expected: format!("an instant after {now} and at most 7 days ahead"),
    }
}
