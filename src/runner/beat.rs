//! One heartbeat of an attempt, and what its reply means, for every kind of job.
//!
//! The Rust runner beats from its heartbeat thread, `exec` from a task per attempt; both
//! send each beat here, through the worker's [`Coalescer`] (beats that fall due together
//! share one call), so a reply is read one way: cancellation requested, the attempt lost,
//! progress refused, Redis unreachable.

use std::time::Duration;

use tokio::time::Instant;

use crate::error::Error;
use crate::ledger::{AttemptToken, Heartbeat, HeartbeatReply};

use super::coalesce::{Coalescer, hold};
use super::record::describe_reply;

/// Shortest wait between two beats of one attempt, whatever its timeout.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// An attempt as its heartbeats see it: what to carry, and where to tell what came back.
pub(crate) trait Beaten {
    /// What the job set since the last beat (progress, checkpoint).
    fn take(&self) -> Heartbeat;
    /// Puts back what a failed beat carried, unless newer values were set since.
    fn restore(&self, beat: Heartbeat);
    /// A beat got through (its usage delta is delivered).
    fn delivered(&self, _beat: &Heartbeat) {}
    /// A reply said cancellation was requested (every reply after that says it again).
    fn cancel_requested(&self);
    /// The attempt is no longer ours, and why.
    fn lose(&self, why: String);
    /// The ledger refused the progress or checkpoint carried; it was dropped.
    fn refused(&self, error: &Error);
}

/// Sends one beat of `token`'s attempt. Returns when the next is due, or `None` once the
/// attempt is no longer ours.
///
/// After a beat that got through, the next is due one interval after this one was handed
/// over, less the time it may wait for company ([`hold`]): the call carrying it leaves at
/// most one interval after the call that carried this one, batched or not.
pub(crate) async fn beat_once(
    beats: &Coalescer,
    token: &AttemptToken,
    attempt: &impl Beaten,
    interval: Duration,
) -> Option<Instant> {
    let handed = Instant::now();
    let beat = attempt.take();
    let after = |wait: Duration| Some(Instant::now() + wait);
    match beats.beat(token, beat.clone(), interval).await {
        Ok(HeartbeatReply::Ok {
            cancel_requested, ..
        }) => {
            attempt.delivered(&beat);
            if cancel_requested {
                attempt.cancel_requested();
            }
            Some(handed + interval.saturating_sub(hold(interval)))
        }
        Ok(refused) => {
            attempt.lose(describe_reply(&refused));
            None
        }
        Err(e) if e.is_transient() => {
            tracing::warn!(execution = %label(token), error = %e, "heartbeat failed; retrying soon");
            attempt.restore(beat);
            after((interval / 4).max(MIN_INTERVAL))
        }
        Err(e @ (Error::TooLarge { .. } | Error::NotJson { .. })) => {
            // Keep the attempt alive: beat again at once without what was refused.
            attempt.refused(&e);
            after(Duration::ZERO)
        }
        Err(e @ (Error::NotFound { .. } | Error::TokenMismatch { .. })) => {
            attempt.lose(e.to_string());
            None
        }
        Err(e) => {
            tracing::warn!(execution = %label(token), error = %e, "heartbeat failed");
            after(interval)
        }
    }
}

/// How logs name an attempt: its token carries a secret, so it is never logged.
pub(crate) fn label(token: &AttemptToken) -> String {
    format!(
        "{}/{} attempt {}",
        token.queue(),
        token.execution_id(),
        token.attempt()
    )
}
