//! The demo's runaway agent: a job that keeps calling its model, reporting the tokens
//! each call spends (`Job::add_usage`), until its budget of 5000 tokens stops it. The
//! budget warns once at 80 %, then asks the job to stop; the runner acknowledges and the
//! execution ends cancelled with stop reason `budget_exceeded`, its usage kept.

use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;
use unstuck::{
    Budget, EnqueueOptions, Job, Ledger, Result, Runner, RunnerConfig, State, StopReason, Usage,
};

use super::waiting::WaitingRow;

const QUEUE: &str = "agents";
const ID: &str = "runaway-agent";
const BUDGET: u64 = 5000;
/// Longest wait for the case.
const WAIT: Duration = Duration::from_secs(20);

/// Runs the case: one execution with a token budget, a runner whose job never finishes
/// on its own and spends 400 tokens a step.
///
/// # Errors
/// Redis errors.
pub async fn runaway(ledger: &Ledger) -> Result<WaitingRow> {
    let budget = Budget {
        tokens: Some(BUDGET),
        cost: None,
        warning_share: None,
    };
    let opts = EnqueueOptions::new()
        .id(ID)
        .heartbeat_timeout(Duration::from_millis(300))
        .budget(budget);
    ledger
        .enqueue(QUEUE, &json!({"task": "loop forever"}), opts)
        .await?;
    let mut config = RunnerConfig::new(QUEUE);
    config.poll_interval = Duration::from_millis(50);
    let stop = CancellationToken::new();
    let runner = tokio::spawn(Runner::new(ledger.clone(), config)?.run(
        |job: Job| async move {
            loop {
                job.add_usage(
                    Usage::new(0)
                        .input_tokens(300)
                        .output_tokens(100)
                        .cost(1200)
                        .model("demo-model"),
                );
                tokio::select! {
                    () = job.cancelled() => return Ok(None),
                    () = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
        },
        stop.clone(),
    ));
    let began = tokio::time::Instant::now();
    let mut e = ledger.get(QUEUE, ID).await?;
    while !e.state.is_terminal() && began.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(50)).await;
        e = ledger.get(QUEUE, ID).await?;
    }
    stop.cancel();
    let _ = runner.await;
    let tokens = e.usage.as_ref().map_or(0, |u| u.totals.tokens());
    let stop_reason = e.stop.as_ref().map(|s| s.reason.clone());
    Ok(WaitingRow {
        case: "a runaway agent stopped by its budget".into(),
        expected: format!("cancelled, budget_exceeded at {BUDGET} tokens, usage kept"),
        observed: format!(
            "{}{}; {tokens} tokens used",
            e.state,
            stop_reason
                .as_ref()
                .map_or(String::new(), |r| format!(", {}", r.as_str()))
        ),
        correct: e.state == State::Cancelled
            && stop_reason == Some(StopReason::BudgetExceeded)
            && tokens >= BUDGET,
    })
}
