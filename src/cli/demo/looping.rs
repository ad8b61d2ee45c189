//! The demo row "a looping agent caught by its fingerprint": two agents on one Rust
//! runner, both moving their step counter. One repeats the same tool call with the same
//! result (one fingerprint over and over); the other's fingerprints vary. With
//! `max_repeats` 5 the watchdog judges the first stuck `looping` and, its one attempt
//! spent, stops it; the healthy one is never judged and succeeds.

use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;
use unstuck::{
    EnqueueOptions, Job, JobError, Ledger, Result, Runner, RunnerConfig, State, StopReason,
};

use super::waiting::{Observed, WaitingRow, watched};

const QUEUE: &str = "tools";
const MAX_REPEATS: u32 = 5;
/// Steps of the varied agent, one fingerprint each.
const HEALTHY_STEPS: u32 = 12;
/// Longest wait for the case.
const WAIT: Duration = Duration::from_secs(20);

/// Runs the scenario against `redis_url` in `namespace` with a watchdog of its own.
///
/// # Errors
/// Redis errors.
pub async fn run(redis_url: &str, namespace: &str) -> Result<WaitingRow> {
    let case = "a looping agent caught by its fingerprint";
    let expected = "the looping one stopped (looping); the varied one succeeds";
    watched(redis_url, namespace, case, expected, |l, stop| async move {
        scenario(&l, &stop).await
    })
    .await
}

/// One agent: `looping` repeats one fingerprint until stopped; otherwise each step has a
/// fingerprint of its own and the agent finishes.
async fn agent(job: Job) -> std::result::Result<Option<serde_json::Value>, JobError> {
    let looping = job.payload()["looping"].as_bool().unwrap_or(false);
    for step in 0.. {
        if job.is_cancelled() {
            return Err(JobError::retryable("stopped"));
        }
        if !looping && step == HEALTHY_STEPS {
            return Ok(Some(json!({"steps": step})));
        }
        job.set_progress(format!("step {step}"));
        let fingerprint = if looping {
            "search('flights to Lisbon') -> 0 results".to_owned()
        } else {
            format!("read page {step}")
        };
        job.set_fingerprint(fingerprint)
            .map_err(|e| JobError::fatal(e.to_string()))?;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    Ok(None)
}

/// `Ok(Ok(what happened))` when all went as expected, `Ok(Err(what went wrong))` else.
async fn scenario(l: &Ledger, stop: &CancellationToken) -> Observed {
    let opts = |id: &str| {
        EnqueueOptions::new()
            .id(id)
            .max_repeats(MAX_REPEATS)
            .max_attempts(1)
            .heartbeat_timeout(Duration::from_secs(2))
            .stuck_threshold(Duration::from_millis(200))
    };
    l.enqueue(QUEUE, &json!({"looping": true}), opts("agent-loop"))
        .await?;
    l.enqueue(QUEUE, &json!({"looping": false}), opts("agent-varied"))
        .await?;
    let mut config = RunnerConfig::new(QUEUE);
    config.concurrency = 2;
    config.poll_interval = Duration::from_millis(50);
    config.stop_grace = Duration::from_millis(500);
    let runner = tokio::spawn(Runner::new(l.clone(), config)?.run(agent, stop.child_token()));
    let began = tokio::time::Instant::now();
    let (mut looping, mut varied) = (l.get(QUEUE, "agent-loop").await?, None);
    while began.elapsed() < WAIT {
        looping = l.get(QUEUE, "agent-loop").await?;
        let v = l.get(QUEUE, "agent-varied").await?;
        let done = looping.state.is_terminal() && v.state.is_terminal();
        varied = Some(v);
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    let _ = runner.await;
    let Some(varied) = varied else {
        return Ok(Err("the varied agent was never read".into()));
    };
    let reason = looping.stop.as_ref().map(|s| s.reason.clone());
    let judged_varied = varied.history.iter().any(|t| t.state == State::Stuck);
    let caught = looping.state == State::Dead && reason == Some(StopReason::Looping);
    let detail = looping.last_error.clone().unwrap_or_default();
    let count = detail
        .split("same fingerprint ")
        .nth(1)
        .and_then(|rest| rest.split(" in a row").next())
        .unwrap_or("?")
        .to_owned();
    if !caught || varied.state != State::Succeeded || judged_varied {
        return Ok(Err(format!(
            "looping one {} ({}); varied one {}{}",
            looping.state,
            reason.map_or("-".into(), |r| r.to_string()),
            varied.state,
            if judged_varied { ", judged stuck" } else { "" }
        )));
    }
    Ok(Ok(format!(
        "looping one {} (looping: same fingerprint {count}); varied one {}",
        looping.state, varied.state
    )))
}
