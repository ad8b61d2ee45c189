//! The runner on a paused queue: it keeps long-polling without claiming (the work stays
//! queued, the worker stays registered and well), and takes the work once the queue is
//! resumed.

use crate::runner_common;
use crate::support;

use std::time::Duration;

use runner_common::*;
use serde_json::json;
use unstuck::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_waits_through_a_pause_and_runs_the_work_after_the_resume() {
    let ledger = support::ledger("runner_pause").await;
    enqueue(&ledger, "a", EnqueueOptions::new()).await;
    ledger.pause_queue("q", "ops", "maintenance").await.unwrap();
    let mut slow_polls = config(2);
    slow_polls.poll_interval = Duration::from_secs(5);
    let runner = start(&ledger, slow_polls, |_job: Job| async move {
        Ok(Some(json!({ "done": true })))
    });

    // Registered and polling, yet nothing claimed for a while.
    support::wait_until(WAIT, "the runner registers", || async {
        ledger.workers().await.unwrap().len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ledger.get("q", "a").await.unwrap().state, State::Queued);
    assert!(!runner.task.is_finished(), "the runner goes on");

    ledger.resume_queue("q", "ops", "done").await.unwrap();
    let done = wait_state(&ledger, "a", State::Succeeded).await;
    assert_eq!(done.attempt, 1);
    let report = runner.stop().await;
    assert_eq!(
        (report.attempts.claimed, report.attempts.succeeded),
        (1, 1),
        "{report:?}"
    );
}
