//! The runner and awaiting: a job ends its attempt with `JobError::await_resume`; after a
//! resume the continuing job sees the input and the checkpoint, no retry counted; a wait
//! the ledger refuses fails the execution for good.

use crate::runner_common::*;
use crate::support;

use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
use unstuck::*;

#[tokio::test]
async fn a_job_awaits_and_its_continuation_gets_the_input() {
    let ledger = support::ledger("runner_await").await;
    enqueue(&ledger, "a1", EnqueueOptions::new().max_attempts(1)).await;
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    let handler = move |job: Job| {
        let seen = seen_tx.clone();
        async move {
            seen.send((
                job.attempt(),
                job.resume_input().cloned(),
                job.checkpoint().cloned(),
            ))
            .unwrap();
            match job.resume_input() {
                None => {
                    // Set just before awaiting: the continuation must still get it.
                    job.set_checkpoint(json!({ "step": "planned" }));
                    Err(JobError::await_resume(AwaitResume {
                        reason: "approval".into(),
                        wait_deadline: Duration::from_secs(3600),
                        checkpoint: None,
                    }))
                }
                Some(input) => Ok(Some(json!({ "approved": input["approved"] }))),
            }
        }
    };
    let runner = start(&ledger, config(1), handler);
    let waiting = wait_state(&ledger, "a1", State::Awaiting).await;
    assert_eq!(waiting.checkpoint, Some(json!({ "step": "planned" })));
    assert_eq!(recv(&mut seen_rx, "attempt 1").await, (1, None, None));
    ledger
        .resume("q", "a1", Some(&json!({ "approved": true })))
        .await
        .unwrap();
    let done = wait_state(&ledger, "a1", State::Succeeded).await;
    let report = runner.stop().await;
    assert_eq!(
        recv(&mut seen_rx, "attempt 2").await,
        (
            2,
            Some(json!({ "approved": true })),
            Some(json!({ "step": "planned" }))
        )
    );
    assert_eq!((done.attempt, done.continuations), (2, 1));
    assert_eq!(done.result, Some(json!({ "approved": true })));
    assert_eq!(
        (
            report.attempts.awaiting,
            report.attempts.succeeded,
            report.attempts.retried
        ),
        (1, 1, 0),
        "{report:?}"
    );
}

#[tokio::test]
async fn a_refused_wait_fails_the_execution() {
    let ledger = support::ledger("runner_await_bad").await;
    enqueue(&ledger, "z", EnqueueOptions::new().max_attempts(3)).await;
    let handler = |_job: Job| async move {
        Err(JobError::await_resume(AwaitResume {
            reason: "approval".into(),
            wait_deadline: Duration::ZERO,
            checkpoint: None,
        }))
    };
    let runner = start(&ledger, config(1), handler);
    let failed = wait_state(&ledger, "z", State::Failed).await;
    let report = runner.stop().await;
    assert!(
        failed
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("await refused"),
        "{failed:?}"
    );
    assert_eq!(
        (
            failed.attempt,
            report.attempts.failed,
            report.attempts.awaiting
        ),
        (1, 1, 0)
    );
}
