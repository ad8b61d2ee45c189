//! One attempt of a Rust job from start to recorded outcome: run the job, stop it when
//! told, report.

use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinError;

use super::coalesce::Coalescer;
use super::job::{AttemptState, JobError};
use super::record::{Record, Recorded};
use super::{Outcome, pump};
use crate::ledger::Ledger;

/// The output of a job's code.
pub(crate) type JobResult = Result<Option<serde_json::Value>, JobError>;

/// Runs `job` on its own task and records its outcome. When the attempt is stopped (lost,
/// cancellation requested, shutdown) and the job has not returned within `grace`, its task
/// is aborted; that takes effect at its next `.await`, so code that blocks its thread runs
/// on until it returns.
pub(crate) async fn supervise<F>(
    ledger: Ledger,
    beats: Coalescer,
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
    let mut pending = attempt.finish().await;
    pending.usage = None; // delivered by flush_usage, before the outcome
    let record = Record {
        ledger: &ledger,
        token: &attempt.token,
    };
    if attempt.is_lost() {
        tracing::debug!(execution = %attempt.label(), "attempt lost; its result is dropped");
        return Outcome::Lost;
    }
    pump::flush_usage(&beats, &attempt).await;
    if attempt.is_cancel_requested() {
        return logged(&attempt, record.acknowledge_cancel().await);
    }
    let (message, retryable, retry_after) = match joined {
        Ok(Ok(result)) => return logged(&attempt, record.complete(result).await),
        Ok(Err(JobError {
            snooze: Some(snooze),
            ..
        })) => {
            // The checkpoint set before snoozing is what the continuation resumes from.
            if !pump::flush(&beats, &attempt, pending).await {
                return Outcome::Lost;
            }
            return logged(&attempt, record.snooze(&snooze).await);
        }
        Ok(Err(e)) => match e.into_wait() {
            Ok(wait) => {
                // A checkpoint set just before awaiting goes first (the wait's own, if
                // given, then replaces it).
                if !pump::flush(&beats, &attempt, pending).await {
                    return Outcome::Lost;
                }
                return logged(&attempt, record.await_resume(wait).await);
            }
            Err(e) => (e.message, e.retryable, e.retry_after),
        },
        // A panic is a failure like any other; retries stay bounded by max_attempts.
        Err(e) if e.is_panic() => (format!("job panicked: {}", panic_message(e)), true, None),
        Err(_) => (
            "the worker shut down before the job returned".to_owned(),
            true,
            None,
        ),
    };
    if retryable && !pump::flush(&beats, &attempt, pending).await {
        return Outcome::Lost;
    }
    logged(
        &attempt,
        record.fail(&message, retryable, retry_after).await,
    )
}

/// Logs what recording an outcome did: a success quietly, the rest louder.
fn logged(attempt: &AttemptState, recorded: Recorded) -> Outcome {
    let (execution, note) = (attempt.label(), &recorded.note);
    match recorded.outcome {
        Outcome::Succeeded => tracing::debug!(%execution, "{note}"),
        Outcome::Unreported => tracing::error!(%execution, "{note}"),
        _ => tracing::info!(%execution, "{note}"),
    }
    recorded.outcome
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
