//! The runner's `Job::add_usage`: deltas added before the job returns are all delivered
//! before the completion; a budget reached mid-job asks it to stop and the execution
//! ends cancelled with stop reason budget_exceeded.

use crate::runner_common;
use crate::support;

use std::time::Duration;

use runner_common::*;
use unstuck::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_added_by_a_job_is_delivered_once_before_its_outcome() {
    let ledger = support::ledger("runner_usage").await;
    enqueue(&ledger, "u1", EnqueueOptions::new()).await;
    let handler = |job: Job| async move {
        job.add_usage(Usage::new(0).input_tokens(100).output_tokens(10).model("a"));
        job.add_usage(Usage::new(0).input_tokens(1).model("a"));
        job.add_usage(Usage::new(0).output_tokens(5).cost(70).model("b"));
        Ok(None)
    };
    let runner = start(&ledger, config(1), handler);
    let e = wait_state(&ledger, "u1", State::Succeeded).await;
    runner.stop().await;
    let usage = e.usage.expect("usage recorded");
    assert_eq!(usage.totals.tokens(), 116);
    assert_eq!(usage.by_model["a"].input_tokens, 101);
    assert_eq!(usage.by_model["b"].cost, 70);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_budget_is_stopped_as_budget_exceeded() {
    let ledger = support::ledger("runner_budget").await;
    let budget = Budget {
        tokens: Some(1000),
        cost: None,
        warning_share: None,
    };
    let opts = EnqueueOptions::new()
        .budget(budget)
        .heartbeat_timeout(Duration::from_millis(300));
    enqueue(&ledger, "u2", opts).await;
    let handler = |job: Job| async move {
        loop {
            job.add_usage(Usage::new(0).input_tokens(150));
            tokio::select! {
                () = job.cancelled() => return Ok(None),
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
    };
    let runner = start(&ledger, config(1), handler);
    let e = wait_state(&ledger, "u2", State::Cancelled).await;
    runner.stop().await;
    assert_eq!(e.stop.unwrap().reason, StopReason::BudgetExceeded);
    assert!(e.usage.unwrap().totals.tokens() >= 1000);
}
