//! The demo's paused-queue row: a queue is paused while work waits in it and a worker
//! long-polls it; nothing is claimed while it is paused, and the resume drains it (the
//! resume event wakes the worker's waiting claims at once). Run after the fault kinds in
//! a namespace of its own.

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use unstuck::{EnqueueOptions, Job, Ledger, Result, Runner, RunnerConfig, State};

use super::waiting::WaitingRow;

const QUEUE: &str = "exports";
const EXECUTIONS: usize = 6;
/// How long the queue stays paused with work in it and a worker waiting.
const PAUSED_FOR: Duration = Duration::from_millis(1500);
/// Longest wait for the drain after the resume.
const WAIT: Duration = Duration::from_secs(20);

/// Runs the case against `redis_url` in namespace `namespace`.
///
/// # Errors
/// Redis errors.
pub async fn run(redis_url: &str, namespace: &str) -> Result<WaitingRow> {
    let ledger = super::waiting::ledger_in(redis_url, namespace).await?;
    for i in 1..=EXECUTIONS {
        let opts = EnqueueOptions::new().id(format!("export-{i}"));
        ledger.enqueue(QUEUE, &json!({ "n": i }), opts).await?;
    }
    ledger
        .pause_queue(QUEUE, "demo", "maintenance window")
        .await?;

    // A worker that long-polls the queue (claims wait up to 5 s each).
    let stop = CancellationToken::new();
    let mut runner = RunnerConfig::new(QUEUE);
    runner.concurrency = 3;
    let worker = Runner::new(ledger.clone(), runner)?;
    let handle = tokio::spawn(worker.run(
        |_job: Job| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(Some(json!({ "exported": true })))
        },
        stop.clone(),
    ));

    tokio::time::sleep(PAUSED_FOR).await;
    let overview = ledger.queue_overview(QUEUE).await?;
    let claimed_while_paused = overview.active + (EXECUTIONS as u64 - overview.depth);
    let resumed_at = Instant::now();
    ledger.resume_queue(QUEUE, "demo", "window over").await?;
    let drained = drain(&ledger).await?;
    let drained_after = resumed_at.elapsed();
    stop.cancel();
    let report = handle.await.ok().and_then(|r| r.ok());
    let succeeded = report.map_or(0, |r| r.attempts.succeeded);

    let correct = claimed_while_paused == 0 && drained && succeeded == EXECUTIONS as u64;
    Ok(WaitingRow {
        case: "a paused queue".into(),
        expected: "nothing claimed while paused, drained after resume".into(),
        observed: format!(
            "{claimed_while_paused} of {EXECUTIONS} claimed in {:.1}s paused; {succeeded} \
             succeeded {:.1}s after resume",
            PAUSED_FOR.as_secs_f64(),
            drained_after.as_secs_f64()
        ),
        correct,
    })
}

/// Waits until every execution succeeded; false when [`WAIT`] ran out first.
async fn drain(ledger: &Ledger) -> Result<bool> {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        let mut done = 0;
        for i in 1..=EXECUTIONS {
            if ledger.get(QUEUE, &format!("export-{i}")).await?.state == State::Succeeded {
                done += 1;
            }
        }
        if done == EXECUTIONS {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(false)
}
