//! The Rust runner's resource leases (`Job::acquire`, `Job::release`): two jobs share a
//! resource of capacity 1 in turn, and a unit a job never released is freed when its
//! attempt ends.

use crate::runner_common;
use crate::support;

use std::time::Duration;

use runner_common::*;
use serde_json::json;
use unstuck::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_take_a_resource_in_turn_and_an_unreleased_unit_is_freed_at_the_end() {
    let ledger = support::ledger("runner_resources").await;
    enqueue(&ledger, "r1", EnqueueOptions::new()).await;
    enqueue(&ledger, "r2", EnqueueOptions::new()).await;
    let handler = |job: Job| async move {
        let wait = Acquire::new("tool").wait(Duration::from_secs(10));
        match job.acquire(wait).await {
            Ok(AcquireOutcome::Acquired { held: 1, .. }) => {}
            other => return Err(JobError::fatal(format!("{other:?}"))),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if job.id() == "r1" {
            // Released by hand.
            assert!(
                job.release("tool")
                    .await
                    .map_err(|e| JobError::fatal(e.to_string()))?
            );
        }
        // r2 keeps its unit: the completion frees it.
        Ok(Some(json!({ "held": true })))
    };
    let runner = start(&ledger, config(2), handler);
    wait_state(&ledger, "r1", State::Succeeded).await;
    wait_state(&ledger, "r2", State::Succeeded).await;
    runner.stop().await;
    assert!(ledger.resources().await.unwrap().is_empty());
    let events = ledger.execution_events("q", "r2").await.unwrap();
    let reasons: Vec<&str> = events
        .iter()
        .map(|e| e.reason.as_str())
        .filter(|r| r.starts_with("resource_"))
        .collect();
    assert_eq!(reasons, ["resource_acquired", "resource_freed"]);
}
