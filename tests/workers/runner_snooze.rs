//! The runner's snooze outcome (`JobError::snooze`) and a failure's `retry_after`
//! (`JobError::with_retry_after`) against a real Redis.

use crate::runner_common;
use crate::support;

use std::time::Duration;

use runner_common::*;
use serde_json::json;
use unstuck::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_snoozes_three_times_succeeds_without_a_retry() {
    let ledger = support::ledger("runner_snooze").await;
    enqueue(&ledger, "s1", EnqueueOptions::new().max_attempts(1)).await;
    let handler = |job: Job| async move {
        let calls = job
            .checkpoint()
            .and_then(|c| c["calls"].as_u64())
            .unwrap_or(0);
        if calls < 3 {
            job.set_checkpoint(json!({ "calls": calls + 1 }));
            let snooze = Snooze::after(Duration::from_millis(30), "rate limited");
            return Err(JobError::snooze(snooze));
        }
        Ok(Some(json!({ "calls": calls })))
    };
    let runner = start(&ledger, config(1), handler);
    let e = wait_state(&ledger, "s1", State::Succeeded).await;
    let report = runner.stop().await;
    assert_eq!((e.attempt, e.snoozes, e.continuations), (4, 3, 3));
    assert_eq!(e.result, Some(json!({ "calls": 3 })));
    assert_eq!(
        (
            report.attempts.snoozed,
            report.attempts.succeeded,
            report.attempts.retried
        ),
        (3, 1, 0),
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_holds_the_retry_back() {
    let ledger = support::ledger("runner_retry_after").await;
    let options = EnqueueOptions::new()
        .max_attempts(2)
        .backoff_base(Duration::ZERO);
    enqueue(&ledger, "r1", options).await;
    let handler = |_job: Job| async move {
        Err(JobError::retryable("429").with_retry_after(Duration::from_secs(60)))
    };
    let runner = start(&ledger, config(1), handler);
    support::wait_until(WAIT, "the retry is scheduled", || async {
        let e = ledger.get("q", "r1").await.unwrap();
        e.state == State::Queued && e.attempt == 1
    })
    .await;
    let report = runner.stop().await;
    let e = ledger.get("q", "r1").await.unwrap();
    let wait = e.available_at.unwrap() - chrono::Utc::now();
    assert!(wait > chrono::Duration::seconds(50), "{wait}");
    assert_eq!(report.attempts.retried, 1, "{report:?}");
}
