//! One attempt of a Rust job from start to recorded outcome: run the job, stop it when
//! told, report.

use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinError;

use super::job::{AttemptState, JobError};
use super::{Outcome, pump, retry};
use crate::error::Error;
use crate::ledger::{CompleteOutcome, FailOutcome, Ledger, State};

/// The output of a job's code.
pub(crate) type JobResult = Result<Option<serde_json::Value>, JobError>;

/// Runs `job` on its own task and records its outcome. When the attempt is stopped (lost,
/// cancellation requested, shutdown) and the job has not returned within `grace`, its task
/// is aborted; that takes effect at its next `.await`, so code that blocks its thread runs
/// on until it returns.
pub(crate) async fn supervise<F>(
    ledger: Ledger,
    attempt: Arc<AttemptState>,
    job: F,
    grace: Duration,
) -> Outcome
where
    F: Future<Output = JobResult> + Send + 'static,
{
    let mut task = tokio::spawn(job);
    // If the runner itself is dropped mid-run, its jobs must not run on unsupervised.
    let _abort = AbortOnDrop(task.abort_handle());
    let stopped = async {
        attempt.stopped().await;
        tokio::time::sleep(grace).await;
    };
    let joined = tokio::select! {
        joined = &mut task => Some(joined),
        _ = stopped => None,
    };
    let joined = match joined {
        Some(joined) => joined,
        None => {
            tracing::warn!(execution = %attempt.label(), ?grace, "job did not stop in time; aborting it");
            task.abort();
            task.await
        }
    };
    let pending = attempt.finish().await;
    let report = Report {
        ledger: &ledger,
        attempt: &attempt,
    };
    if attempt.is_lost() {
        tracing::debug!(execution = %attempt.label(), "attempt lost; its result is dropped");
        return Outcome::Lost;
    }
    if attempt.is_cancel_requested() {
        return report.acknowledge_cancel().await;
    }
    let (message, retryable) = match joined {
        Ok(Ok(result)) => return report.complete(result).await,
        Ok(Err(e)) => (e.message, e.retryable),
        // A panic is a failure like any other; retries stay bounded by max_attempts.
        Err(e) if e.is_panic() => (format!("job panicked: {}", panic_message(e)), true),
        Err(_) => (
            "the worker shut down before the job returned".to_owned(),
            true,
        ),
    };
    if retryable && !pump::flush(&ledger, &attempt, pending).await {
        return Outcome::Lost;
    }
    report.fail(&message, retryable).await
}

/// Records an attempt's outcome, retrying transient Redis errors. A reply that says the
/// attempt is no longer current normally means it was lost; after a retried call it may
/// instead mean an earlier try landed, which the expected terminal state tells apart.
struct Report<'a> {
    ledger: &'a Ledger,
    attempt: &'a AttemptState,
}

impl Report<'_> {
    async fn complete(&self, result: Option<serde_json::Value>) -> Outcome {
        let token = &self.attempt.token;
        let reply = retry(|| self.ledger.complete(token, result.as_ref())).await;
        match reply {
            Ok((CompleteOutcome::Recorded { .. }, _)) => Outcome::Succeeded,
            Ok((
                CompleteOutcome::AlreadyTerminal {
                    state: State::Succeeded,
                    ..
                },
                true,
            )) => Outcome::Succeeded,
            Ok((other, _)) => self.lost(&other),
            // The ledger refused the result itself: a retry would produce it again.
            Err(e @ (Error::TooLarge { .. } | Error::NotJson { .. })) => {
                self.fail(&format!("result not recorded: {e}"), false).await
            }
            Err(e) => self.unreported("complete", &e),
        }
    }

    async fn fail(&self, message: &str, retryable: bool) -> Outcome {
        let token = &self.attempt.token;
        match retry(|| self.ledger.fail(token, message, retryable)).await {
            Ok((FailOutcome::RetryScheduled { .. }, _)) => Outcome::Retried,
            Ok((FailOutcome::Failed { .. }, _)) => Outcome::Failed,
            Ok((FailOutcome::Cancelled { .. }, _)) => Outcome::Cancelled,
            Ok((
                FailOutcome::AlreadyTerminal {
                    state: State::Failed,
                    ..
                },
                true,
            )) => Outcome::Failed,
            Ok((
                FailOutcome::AlreadyTerminal {
                    state: State::Cancelled,
                    ..
                },
                true,
            )) => Outcome::Cancelled,
            // Only a scheduled retry makes our own call's attempt stale.
            Ok((FailOutcome::StaleAttempt { .. }, true)) => Outcome::Retried,
            Ok((other, _)) => self.lost(&other),
            Err(e) => self.unreported("fail", &e),
        }
    }

    async fn acknowledge_cancel(&self) -> Outcome {
        let token = &self.attempt.token;
        match retry(|| self.ledger.acknowledge_cancel(token)).await {
            Ok((CompleteOutcome::Recorded { .. }, _)) => Outcome::Cancelled,
            Ok((
                CompleteOutcome::AlreadyTerminal {
                    state: State::Cancelled,
                    ..
                },
                true,
            )) => Outcome::Cancelled,
            Ok((other, _)) => self.lost(&other),
            Err(e) => self.unreported("acknowledge the cancellation of", &e),
        }
    }

    fn lost(&self, reply: &dyn std::fmt::Debug) -> Outcome {
        tracing::info!(execution = %self.attempt.label(), ?reply, "attempt lost before its outcome was recorded");
        Outcome::Lost
    }

    fn unreported(&self, operation: &str, error: &Error) -> Outcome {
        tracing::error!(
            execution = %self.attempt.label(),
            %error,
            "could not {operation} the attempt; the watchdog will take it over"
        );
        Outcome::Unreported
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn panic_message(error: JoinError) -> String {
    let payload: Box<dyn Any + Send> = error.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}
