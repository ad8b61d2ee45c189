//! The demo's orchestrators: enqueue the planned executions on schedule, and cancel the
//! ignores-cancel ones once a worker is running them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::plan::{DEADLINE, FaultKind, PlannedExecution};
use unstuck::{EnqueueOptions, Ledger, State};
use unstuck::{Error, Result};

/// How long a canceller waits for its execution to be running before giving up (the row
/// then shows the execution as not remediated).
const CANCEL_WAIT: Duration = Duration::from_secs(20);
/// How long the execution runs before the cancellation is requested.
const CANCEL_AFTER_START: Duration = Duration::from_millis(300);

/// Orchestrator `me` (0 or 1): enqueues its share of `plan`, each at its planned instant
/// after `start`, counting into `enqueued`. With `cancels`, it also requests the
/// cancellation of every ignores-cancel execution (whoever enqueued it) once running.
///
/// # Errors
/// The first enqueue or cancel that fails.
pub async fn orchestrate(
    ledger: Ledger,
    plan: Arc<Vec<PlannedExecution>>,
    me: usize,
    start: Instant,
    enqueued: Arc<AtomicUsize>,
    cancels: bool,
) -> Result<()> {
    let cancellers: Vec<_> = if cancels {
        plan.iter()
            .filter(|p| p.kind == FaultKind::IgnoresCancel)
            .map(|p| tokio::spawn(cancel_when_running(ledger.clone(), p.clone(), start)))
            .collect()
    } else {
        Vec::new()
    };
    for planned in plan.iter().filter(|p| p.orchestrator == me) {
        tokio::time::sleep_until(start + planned.at).await;
        let mut opts = EnqueueOptions::new().id(planned.id.clone());
        if planned.kind == FaultKind::DeadlineBlown {
            opts = opts.deadline(DEADLINE);
        }
        let payload = json!({ "kind": planned.kind, "seq": planned.seq });
        ledger.enqueue(planned.queue, &payload, opts).await?;
        enqueued.fetch_add(1, Ordering::Relaxed);
    }
    for canceller in cancellers {
        match canceller.await {
            Ok(result) => result?,
            Err(panic) => tracing::error!(%panic, "canceller panicked"),
        }
    }
    Ok(())
}

/// Waits until `planned` is running, then requests its cancellation.
async fn cancel_when_running(
    ledger: Ledger,
    planned: PlannedExecution,
    start: Instant,
) -> Result<()> {
    tokio::time::sleep_until(start + planned.at).await;
    let until = Instant::now() + CANCEL_WAIT;
    while Instant::now() < until {
        match ledger.get(planned.queue, &planned.id).await {
            Ok(e) if e.state == State::Running => {
                tokio::time::sleep(CANCEL_AFTER_START).await;
                ledger
                    .cancel(planned.queue, &planned.id, "orchestrator: no longer needed")
                    .await?;
                return Ok(());
            }
            Ok(e) if e.state.is_terminal() => return Ok(()),
            // Not enqueued yet by the other orchestrator.
            Ok(_) | Err(Error::NotFound { .. }) => {}
            Err(error) => return Err(error),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::warn!(id = %planned.id, "never saw it running; not cancelled");
    Ok(())
}
