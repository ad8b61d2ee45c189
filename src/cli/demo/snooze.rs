//! The demo's rate-limited agent: a job told "429, slow down" snoozes three times and then
//! succeeds. Each snooze ends its attempt and frees its slot, and none counts toward
//! `max_attempts` (1 here, so a single retry would have failed it).

use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;
use unstuck::{EnqueueOptions, Job, JobError, Ledger, Result, Runner, RunnerConfig, Snooze, State};

use super::waiting::WaitingRow;

const QUEUE: &str = "llm";
const SNOOZES: u64 = 3;
/// Longest wait for the case.
const WAIT: Duration = Duration::from_secs(20);

/// Runs the case: one execution with `max_attempts` 1, a runner whose job snoozes until
/// its checkpoint has counted three rate limits.
///
/// # Errors
/// Redis errors.
pub async fn rate_limited(ledger: &Ledger) -> Result<WaitingRow> {
    let opts = EnqueueOptions::new().id("agent-429").max_attempts(1);
    ledger
        .enqueue(QUEUE, &json!({"prompt": "summarize"}), opts)
        .await?;
    let mut config = RunnerConfig::new(QUEUE);
    config.poll_interval = Duration::from_millis(50);
    let stop = CancellationToken::new();
    let runner = tokio::spawn(Runner::new(ledger.clone(), config)?.run(
        |job: Job| async move {
            let limited = job
                .checkpoint()
                .and_then(|c| c["rate_limited"].as_u64())
                .unwrap_or(0);
            if limited < SNOOZES {
                job.set_checkpoint(json!({ "rate_limited": limited + 1 }));
                let reason = "429 from the model provider: retry in 200ms";
                return Err(JobError::snooze(Snooze::after(
                    Duration::from_millis(200),
                    reason,
                )));
            }
            Ok(Some(json!({ "summary": "done", "rate_limited": limited })))
        },
        stop.clone(),
    ));
    let began = tokio::time::Instant::now();
    let mut e = ledger.get(QUEUE, "agent-429").await?;
    while !e.state.is_terminal() && began.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(50)).await;
        e = ledger.get(QUEUE, "agent-429").await?;
    }
    stop.cancel();
    let report = runner.await.ok().transpose()?;
    let counted = e.attempt.saturating_sub(e.continuations);
    let snoozed = report.map_or(0, |r| r.attempts.snoozed);
    Ok(WaitingRow {
        case: "rate-limited agent snoozes 3x".into(),
        expected: "succeeds; attempts counted 1 of 1 (3 snoozes)".into(),
        observed: format!(
            "{}; {} snoozes; counted {counted} of {} ({} claims)",
            e.state, e.snoozes, e.timings.max_attempts, e.attempt
        ),
        correct: e.state == State::Succeeded
            && u64::from(e.snoozes) == SNOOZES
            && snoozed == SNOOZES
            && counted == 1,
    })
}
