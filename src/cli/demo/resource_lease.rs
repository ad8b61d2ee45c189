//! The demo row "a crashed agent whose tool lease passes to its retry": an agent takes the
//! only unit of a browser profile, then crashes (its task is aborted: no release, no
//! complete, no heartbeat). The watchdog retries the lost attempt and the same round's
//! sweep frees the unit; the retry acquires it and succeeds. Without the release at the
//! attempt's end, the profile would stay held and the retry would wait forever.

use std::time::Duration;

use serde_json::json;
use unstuck::{Acquire, AcquireOutcome, EnqueueOptions, Heartbeat, Ledger, Result, State};

use super::waiting::{Observed, WaitingRow, watched};

const QUEUE: &str = "browsing";
const ID: &str = "agent-crash-1";
const RESOURCE: &str = "browser-profile";
const HEARTBEAT_TIMEOUT: Duration = Duration::from_millis(300);
/// Longest wait for each step of the case.
const WAIT: Duration = Duration::from_secs(20);

/// Runs the scenario against `redis_url` in `namespace` with a watchdog of its own.
///
/// # Errors
/// Redis errors.
pub async fn run(redis_url: &str, namespace: &str) -> Result<WaitingRow> {
    let case = "a crashed agent whose tool lease passes to its retry";
    let expected = "unit freed by the watchdog's sweep; the retry holds it and succeeds";
    watched(redis_url, namespace, case, expected, |l, _| async move {
        scenario(&l).await
    })
    .await
}

/// `Ok(Ok(what))` when the case went as expected, `Ok(Err(what))` when not.
async fn scenario(ledger: &Ledger) -> Observed {
    let opts = EnqueueOptions::new()
        .id(ID)
        .heartbeat_timeout(HEARTBEAT_TIMEOUT)
        .stuck_threshold(Duration::from_millis(100))
        .max_attempts(2)
        .backoff_base(Duration::ZERO);
    ledger
        .enqueue(QUEUE, &json!({"task": "browse"}), opts)
        .await?;
    let Some(first) = ledger.claim(QUEUE, "demo-agent-1").await? else {
        return Ok(Err("nothing to claim".into()));
    };
    // The agent: takes the profile, beats a few times, then dies holding it.
    let agent = {
        let (ledger, token) = (ledger.clone(), first.token.clone());
        tokio::spawn(async move {
            ledger.acquire(&token, Acquire::new(RESOURCE)).await?;
            loop {
                ledger.heartbeat(&token, Heartbeat::new()).await?;
                tokio::time::sleep(HEARTBEAT_TIMEOUT / 3).await;
            }
            #[allow(unreachable_code)]
            Ok::<(), unstuck::Error>(())
        })
    };
    let began = tokio::time::Instant::now();
    while ledger.resource(RESOURCE).await?.is_none() {
        if began.elapsed() > WAIT {
            return Ok(Err("the agent never held the profile".into()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    agent.abort(); // the crash: no release, no complete, no more heartbeats
    let _ = agent.await;

    // The retry waits for the profile (it would wait forever if the dead unit stayed).
    let retry = loop {
        if let Some(claim) = ledger.claim(QUEUE, "demo-agent-2").await? {
            break claim;
        }
        if began.elapsed() > WAIT {
            return Ok(Err("the lost attempt was never retried".into()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let got = ledger
        .acquire(
            &retry.token,
            Acquire::new(RESOURCE).wait(Duration::from_secs(10)),
        )
        .await;
    if !matches!(got, Ok(AcquireOutcome::Acquired { .. })) {
        return Ok(Err(format!(
            "the retry could not take the profile: {got:?}"
        )));
    }
    ledger
        .complete(&retry.token, Some(&json!({"pages": 3})))
        .await?;
    let e = ledger.get(QUEUE, ID).await?;
    let events = ledger.execution_events(QUEUE, ID).await?;
    let swept = events
        .iter()
        .any(|ev| ev.reason == "resource_freed" && ev.attempt == 1 && ev.detail.contains("sweep"));
    let free = ledger.resource(RESOURCE).await?.is_none();
    let what = format!(
        "{} on attempt {}; attempt 1's unit {}; {}",
        e.state,
        e.attempt,
        if swept {
            "freed by the sweep"
        } else {
            "not swept"
        },
        if free {
            "profile free after"
        } else {
            "profile still held"
        }
    );
    if e.state == State::Succeeded && e.attempt == 2 && swept && free {
        Ok(Ok(what))
    } else {
        Ok(Err(what))
    }
}
