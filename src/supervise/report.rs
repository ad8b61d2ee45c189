//! Recording an attempt's outcome, retrying transient Redis errors, and saying what
//! happened in one note.

use crate::error::Error;
use crate::ledger::{AttemptToken, CompleteOutcome, FailOutcome, HeartbeatReply, Ledger, State};
use crate::runner::{Outcome, retry};

use super::beat::describe_reply;
use super::output::Output;

/// Records the outcome of one attempt. A reply that says the attempt is no longer
/// current normally means it was lost; after a retried call it may instead mean the
/// first try landed, which the state it ended in tells apart.
pub(crate) struct Report<'a> {
    ledger: &'a Ledger,
    token: &'a AttemptToken,
    output: &'a Output,
}

impl<'a> Report<'a> {
    pub(crate) fn new(ledger: &'a Ledger, token: &'a AttemptToken, output: &'a Output) -> Self {
        Self {
            ledger,
            token,
            output,
        }
    }

    /// Sends the progress and checkpoint the heartbeats have not carried yet; the reply,
    /// or `None` when there was nothing to send or it could not be sent.
    pub(crate) async fn flush(&self) -> Option<HeartbeatReply> {
        let beat = self.output.take_beat();
        if beat.checkpoint.is_none() && beat.progress.is_none() {
            return None;
        }
        match retry(|| self.ledger.heartbeat(self.token, beat.clone())).await {
            Ok((reply, _)) => Some(reply),
            Err(e) => {
                self.output
                    .note(&format!("last progress and checkpoint not recorded: {e}"));
                None
            }
        }
    }

    pub(crate) async fn complete(&self, result: Option<serde_json::Value>) -> Outcome {
        let reply = retry(|| self.ledger.complete(self.token, result.as_ref())).await;
        match reply {
            Ok((CompleteOutcome::Recorded { .. }, _))
            | Ok((
                CompleteOutcome::AlreadyTerminal {
                    state: State::Succeeded,
                    ..
                },
                true,
            )) => {
                self.output.note("succeeded");
                Outcome::Succeeded
            }
            Ok((other, _)) => self.lost(&format!("{other:?}")),
            // The ledger refused the result itself: a retry would produce it again.
            Err(e @ (Error::TooLarge { .. } | Error::NotJson { .. })) => {
                self.fail(&format!("result not recorded: {e}"), false).await
            }
            Err(e) => self.unreported("complete", &e),
        }
    }

    pub(crate) async fn fail(&self, message: &str, retryable: bool) -> Outcome {
        let outcome = match retry(|| self.ledger.fail(self.token, message, retryable)).await {
            Ok((FailOutcome::RetryScheduled { available_at, .. }, _)) => {
                self.output
                    .note(&format!("{message} — retry scheduled at {available_at}"));
                return Outcome::Retried;
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
            // Only a scheduled retry makes our own call's attempt stale.
            Ok((FailOutcome::StaleAttempt { .. }, true)) => return Outcome::Retried,
            Ok((other, _)) => return self.lost(&format!("{other:?}")),
            Err(e) => return self.unreported("fail", &e),
        };
        let ended = match outcome {
            Outcome::Cancelled => "cancelled",
            _ => "failed",
        };
        self.output.note(&format!("{message} — {ended}"));
        outcome
    }

    pub(crate) async fn acknowledge_cancel(&self) -> Outcome {
        match retry(|| self.ledger.acknowledge_cancel(self.token)).await {
            Ok((CompleteOutcome::Recorded { .. }, _))
            | Ok((
                CompleteOutcome::AlreadyTerminal {
                    state: State::Cancelled,
                    ..
                },
                true,
            )) => {
                self.output.note("stopped; cancellation acknowledged");
                Outcome::Cancelled
            }
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
                self.lost(&describe_reply(&reply))
            }
            Ok((other, _)) => self.lost(&format!("{other:?}")),
            Err(e) => self.unreported("acknowledge the cancellation of", &e),
        }
    }

    fn lost(&self, why: &str) -> Outcome {
        self.output.note(&format!(
            "attempt lost before its outcome was recorded: {why}"
        ));
        Outcome::Lost
    }

    fn unreported(&self, operation: &str, error: &Error) -> Outcome {
        self.output.note(&format!(
            "could not {operation} the attempt ({error}); the watchdog will take it over"
        ));
        Outcome::Unreported
    }
}
