//! The demo row "an agent waiting for approval": it writes a plan, awaits a person's
//! approval (no heartbeat for many heartbeat timeouts while a watchdog judges), is resumed
//! with `{"approved": true}`, continues from its checkpoint with that input and succeeds —
//! never judged stuck, and the wait not counted against `max_attempts` (1 here).

use std::time::Duration;

use serde_json::json;
use unstuck::{AwaitOutcome, AwaitResume, EnqueueOptions, Heartbeat, Ledger, Result, State};

use super::waiting::{Observed, WaitingRow, watched};

const QUEUE: &str = "approvals";
const ID: &str = "agent-plan-1";
/// The execution's heartbeat timeout: the wait lasts many of them.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_millis(300);
/// How long the agent waits for the person, in the demo's compressed time.
const WAITED: Duration = Duration::from_millis(2000);

/// Runs the scenario against `redis_url` in `namespace` with a watchdog of its own.
///
/// # Errors
/// Redis errors.
pub async fn run(redis_url: &str, namespace: &str) -> Result<WaitingRow> {
    let case = "an agent waiting for approval";
    let expected = "never judged stuck, resumed, succeeds (the wait not counted)";
    watched(redis_url, namespace, case, expected, |l, _| async move {
        scenario(&l).await
    })
    .await
}

/// `Ok(Ok(what happened))` when all went as expected, `Ok(Err(what went wrong))` else.
async fn scenario(l: &Ledger) -> Observed {
    let opts = EnqueueOptions::new()
        .id(ID)
        .heartbeat_timeout(HEARTBEAT_TIMEOUT)
        .start_grace(HEARTBEAT_TIMEOUT)
        .stuck_threshold(Duration::ZERO)
        .max_attempts(1);
    l.enqueue(QUEUE, &json!({"task": "migrate the billing schema"}), opts)
        .await?;
    let Some(first) = l.claim(QUEUE, "agent-a").await? else {
        return Ok(Err("nothing to claim".into()));
    };
    l.heartbeat(&first.token, Heartbeat::new().progress("plan written"))
        .await?;
    let wait = AwaitResume {
        reason: "a person approves the migration plan".into(),
        wait_deadline: Duration::from_secs(3600),
        checkpoint: Some(json!({"step": "planned", "plan": ["add column", "backfill"]})),
    };
    if !matches!(
        l.await_resume(&first.token, wait).await?,
        AwaitOutcome::Awaiting(_)
    ) {
        return Ok(Err("the await was refused".into()));
    }
    // The person takes their time: many heartbeat timeouts without a single heartbeat.
    tokio::time::sleep(WAITED).await;
    let waiting = l.get(QUEUE, ID).await?;
    if waiting.state != State::Awaiting {
        return Ok(Err(format!("{} while waiting for approval", waiting.state)));
    }
    l.resume(QUEUE, ID, Some(&json!({"approved": true})))
        .await?;
    let Some(next) = l.claim(QUEUE, "agent-b").await? else {
        return Ok(Err("the resumed execution could not be claimed".into()));
    };
    let approved = next.resume_input == Some(json!({"approved": true}));
    let resumed_from_plan = next
        .checkpoint
        .as_ref()
        .is_some_and(|c| c["step"] == "planned");
    if !approved || !resumed_from_plan {
        return Ok(Err(format!(
            "the continuation got input {:?} and checkpoint {:?}",
            next.resume_input, next.checkpoint
        )));
    }
    l.heartbeat(&next.token, Heartbeat::new().progress("migrated"))
        .await?;
    l.complete(&next.token, Some(&json!({"migrated": true})))
        .await?;
    let done = l.get(QUEUE, ID).await?;
    let judged = done
        .history
        .iter()
        .any(|t| t.state == State::Stuck || t.reason == "heartbeat_lost");
    if done.state != State::Succeeded || judged {
        return Ok(Err(format!(
            "ended {} after {:?}",
            done.state,
            done.history.iter().map(|t| &t.reason).collect::<Vec<_>>()
        )));
    }
    Ok(Ok(format!(
        "waited {} heartbeat timeouts; succeeded, {} of {} counted",
        WAITED.as_millis() / HEARTBEAT_TIMEOUT.as_millis(),
        done.attempt - done.continuations,
        done.timings.max_attempts
    )))
}
