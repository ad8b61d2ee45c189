//! Recording an attempt's outcome in the ledger, for every kind of job.
//!
//! Transient Redis errors are retried. A reply that says the attempt is no longer current
//! normally means it was lost; after a retried call it may instead mean the first try
//! landed, which the state it ended in tells apart. Each call says what happened in a
//! line the caller logs (the runner) or notes beside the command's output (`exec`).

use std::time::Duration;

use crate::error::Error as LedgerError;
use crate::ledger::{
    AttemptToken, AwaitOutcome, AwaitResume, CompleteOutcome, FailOptions, FailOutcome,
    HeartbeatReply, Ledger, Snooze, SnoozeOutcome, State,
};

use super::{Outcome, retry};

/// What recording did, and the line that says so.
#[derive(Debug)]
pub(crate) struct Recorded {
    pub(crate) outcome: Outcome,
    pub(crate) note: String,
}

impl Recorded {
    fn new(outcome: Outcome, note: impl Into<String>) -> Self {
        Self {
            outcome,
            note: note.into(),
        }
    }

    fn lost(why: &str) -> Self {
        Self::new(
            Outcome::Lost,
            format!("attempt lost before its outcome was recorded: {why}"),
        )
    }

    fn unreported(operation: &str, error: &LedgerError) -> Self {
        Self::new(
            Outcome::Unreported,
            format!("could not {operation} the attempt ({error}); the watchdog will take it over"),
        )
    }
}

/// Records the outcome of one attempt.
pub(crate) struct Record<'a> {
    pub(crate) ledger: &'a Ledger,
    pub(crate) token: &'a AttemptToken,
}

impl Record<'_> {
    pub(crate) async fn complete(&self, result: Option<serde_json::Value>) -> Recorded {
        let reply = retry(|| self.ledger.complete(self.token, result.as_ref())).await;
        match reply {
            Ok((CompleteOutcome::Recorded { .. }, _))
            | Ok((
                CompleteOutcome::AlreadyTerminal {
                    state: State::Succeeded,
                    ..
                },
                true,
            )) => Recorded::new(Outcome::Succeeded, "succeeded"),
            Ok((other, _)) => Recorded::lost(&format!("{other:?}")),
            // The ledger refused the result itself: a retry would produce it again.
            Err(e @ (LedgerError::TooLarge { .. } | LedgerError::NotJson { .. })) => {
                self.fail(&format!("result not recorded: {e}"), false, None)
                    .await
            }
            Err(e) => Recorded::unreported("complete", &e),
        }
    }

    pub(crate) async fn fail(
        &self,
        message: &str,
        retryable: bool,
        retry_after: Option<Duration>,
    ) -> Recorded {
        let options = FailOptions {
            retryable,
            retry_after,
        };
        let failed = retry(|| self.ledger.fail_with(self.token, message, options)).await;
        let outcome = match failed {
            // A retry_after out of bounds: the failure is still recorded, with the backoff.
            Err(LedgerError::InvalidArgument { .. }) if retry_after.is_some() => {
                return Box::pin(self.fail(message, retryable, None)).await;
            }
            Ok((FailOutcome::RetryScheduled { available_at, .. }, _)) => {
                return Recorded::new(
                    Outcome::Retried,
                    format!("{message} — retry scheduled at {available_at}"),
                );
            }
            // Only a scheduled retry makes our own call's attempt stale.
            Ok((FailOutcome::StaleAttempt { .. }, true)) => {
                return Recorded::new(Outcome::Retried, format!("{message} — retry scheduled"));
            }
            Ok((FailOutcome::Failed { .. }, _))
            | Ok((
                FailOutcome::AlreadyTerminal {
                    state: State::Failed,
                    ..
                },
                true,
            )) => Outcome::Failed,
            Ok((FailOutcome::Cancelled { .. }, _))
            | Ok((
                FailOutcome::AlreadyTerminal {
                    state: State::Cancelled,
                    ..
                },
                true,
            )) => Outcome::Cancelled,
            Ok((other, _)) => return Recorded::lost(&format!("{other:?}")),
            Err(e) => return Recorded::unreported("fail", &e),
        };
        let ended = match outcome {
            Outcome::Cancelled => "cancelled",
            _ => "failed",
        };
        Recorded::new(outcome, format!("{message} — {ended}"))
    }

    /// Records a snooze; past `max_snoozes` the ledger records a retryable failure, and a
    /// snooze it refuses (a bad time or reason: the job's bug) is recorded as one.
    pub(crate) async fn snooze(&self, snooze: &Snooze) -> Recorded {
        let reason = &snooze.reason;
        match retry(|| self.ledger.snooze(self.token, snooze.clone())).await {
            Ok((SnoozeOutcome::Snoozed { available_at, .. }, _)) => Recorded::new(
                Outcome::Snoozed,
                format!("snoozed until {available_at}: {reason}"),
            ),
            // Only a recorded snooze (or retry) makes our own call's attempt stale.
            Ok((
                SnoozeOutcome::StaleAttempt {
                    state: State::Queued,
                    ..
                },
                true,
            )) => Recorded::new(Outcome::Snoozed, format!("snoozed: {reason}")),
            Ok((
                SnoozeOutcome::LimitReached {
                    retry_at: Some(at), ..
                },
                _,
            )) => Recorded::new(
                Outcome::Retried,
                format!("snooze limit reached ({reason}) — retry scheduled at {at}"),
            ),
            Ok((SnoozeOutcome::LimitReached { retry_at: None, .. }, _)) => Recorded::new(
                Outcome::Failed,
                format!("snooze limit reached ({reason}) — failed"),
            ),
            Ok((SnoozeOutcome::Cancelled { .. }, _)) => Recorded::new(
                Outcome::Cancelled,
                format!("snoozed ({reason}) — cancelled"),
            ),
            Ok((other, _)) => Recorded::lost(&format!("{other:?}")),
            Err(e @ LedgerError::InvalidArgument { .. }) => {
                self.fail(&format!("snooze refused: {e}"), true, None).await
            }
            Err(e) => Recorded::unreported("snooze", &e),
        }
    }

    /// The job ends its attempt to wait for a resume.
    pub(crate) async fn await_resume(&self, wait: AwaitResume) -> Recorded {
        let reason = wait.reason.clone();
        match retry(|| self.ledger.await_resume(self.token, wait.clone())).await {
            Ok((AwaitOutcome::Awaiting(a), _)) => Recorded::new(
                Outcome::Awaiting,
                format!("awaiting until {}: {reason}", a.wait_deadline_at),
            ),
            // Only our own await makes the attempt stale with the execution awaiting.
            Ok((
                AwaitOutcome::StaleAttempt {
                    state: State::Awaiting,
                    ..
                },
                true,
            )) => Recorded::new(Outcome::Awaiting, format!("awaiting: {reason}")),
            Ok((AwaitOutcome::Cancelled { .. }, _)) => {
                Recorded::new(Outcome::Cancelled, "cancelled instead of waiting")
            }
            Ok((other, _)) => Recorded::lost(&format!("{other:?}")),
            // The ledger refused the wait itself: another attempt would ask the same.
            Err(e @ (LedgerError::InvalidArgument { .. } | LedgerError::TooLarge { .. })) => {
                self.fail(&format!("await refused: {e}"), false, None).await
            }
            Err(e) => Recorded::unreported("await", &e),
        }
    }

    pub(crate) async fn acknowledge_cancel(&self) -> Recorded {
        match retry(|| self.ledger.acknowledge_cancel(self.token)).await {
            Ok((CompleteOutcome::Recorded { .. }, _))
            | Ok((
                CompleteOutcome::AlreadyTerminal {
                    state: State::Cancelled,
                    ..
                },
                true,
            )) => Recorded::new(Outcome::Cancelled, "stopped; cancellation acknowledged"),
            Ok((
                CompleteOutcome::StaleAttempt {
                    current_attempt,
                    state,
                },
                _,
            )) => {
                let reply = HeartbeatReply::StaleAttempt {
                    current_attempt,
                    state,
                };
                Recorded::lost(&describe_reply(&reply))
            }
            Ok((other, _)) => Recorded::lost(&format!("{other:?}")),
            Err(e) => Recorded::unreported("acknowledge the cancellation of", &e),
        }
    }
}

/// Why a heartbeat reply means the attempt is no longer ours.
pub(crate) fn describe_reply(reply: &HeartbeatReply) -> String {
    match reply {
        HeartbeatReply::StaleAttempt {
            current_attempt,
            state,
        } => format!("the execution moved on: now attempt {current_attempt}, {state}"),
        HeartbeatReply::Terminal { state, stop_reason } => {
            format!("the execution ended {state} ({stop_reason})")
        }
        HeartbeatReply::Ok { .. } => "still current".into(),
    }
}
