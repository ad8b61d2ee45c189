//! After the run: what happened to each planned execution, read back from the ledger —
//! its final snapshot, its events, and whether the ledger's invariants hold.

use std::collections::{BTreeSet, HashMap};

use super::plan::PlannedExecution;
use unstuck::{Error, Event, Execution, Ledger, Result};

/// Events read per call.
const PAGE: usize = 1000;
/// Most index violations listed (the count is always exact).
const MAX_LISTED: usize = 20;

/// One planned execution and what became of it.
#[derive(Debug, Clone)]
pub struct Observed {
    pub plan: PlannedExecution,
    /// `None` when it was never enqueued.
    pub execution: Option<Execution>,
    /// Its events, oldest first.
    pub events: Vec<Event>,
}

/// Ids (`queue/id`) of planned executions not terminal yet. `done` remembers the ones
/// seen terminal, so each pass only reads the rest.
///
/// # Errors
/// Redis errors.
pub async fn unfinished(
    ledger: &Ledger,
    plan: &[PlannedExecution],
    done: &mut [bool],
) -> Result<Vec<String>> {
    let mut open = Vec::new();
    for (p, done) in plan.iter().zip(done.iter_mut()).filter(|(_, d)| !**d) {
        match ledger.get(p.queue, &p.id).await {
            Ok(e) if e.state.is_terminal() => *done = true,
            Ok(_) | Err(Error::NotFound { .. }) => open.push(format!("{}/{}", p.queue, p.id)),
            Err(error) => return Err(error),
        }
    }
    Ok(open)
}

/// Final snapshots and events of every planned execution, plus the systemic holds
/// recorded in the partitions the demo used (described).
///
/// # Errors
/// Redis errors.
pub async fn observe(
    ledger: &Ledger,
    plan: &[PlannedExecution],
) -> Result<(Vec<Observed>, Vec<String>)> {
    let partitions: BTreeSet<u16> = plan.iter().map(|p| ledger.partition_of(p.queue)).collect();
    let mut by_execution: HashMap<(String, String), Vec<Event>> = HashMap::new();
    let mut holds = Vec::new();
    for partition in partitions {
        let mut after: Option<String> = None;
        loop {
            let page = ledger
                .read_events(partition, after.as_deref(), PAGE)
                .await?;
            let full = page.len() == PAGE;
            after = page.last().map(|e| e.stream_id.clone()).or(after);
            for event in page {
                if event.reason == "systemic_hold" {
                    holds.push(format!(
                        "partition {partition} at {}: {}",
                        event.at.format("%H:%M:%S%.3f"),
                        event.detail
                    ));
                } else {
                    by_execution
                        .entry((event.queue.clone(), event.execution_id.clone()))
                        .or_default()
                        .push(event);
                }
            }
            if !full {
                break;
            }
        }
    }
    let mut observed = Vec::with_capacity(plan.len());
    for p in plan {
        let execution = match ledger.get(p.queue, &p.id).await {
            Ok(e) => Some(e),
            Err(Error::NotFound { .. }) => None,
            Err(error) => return Err(error),
        };
        let events = by_execution
            .remove(&(p.queue.to_owned(), p.id.clone()))
            .unwrap_or_default();
        observed.push(Observed {
            plan: p.clone(),
            execution,
            events,
        });
    }
    Ok((observed, holds))
}

/// Slots still held in the demo's queues.
///
/// # Errors
/// Redis errors.
pub async fn leaked_slots(ledger: &Ledger, plan: &[PlannedExecution]) -> Result<usize> {
    let queues: BTreeSet<&str> = plan.iter().map(|p| p.queue).collect();
    let mut held = 0;
    for queue in queues {
        held += ledger.slots_in_use(queue).await?;
    }
    Ok(held)
}

/// Every invariant the shared checker knows (one state per execution, indexes that match
/// states, slots held only by their holder, `unstuck::testkit::invariants`) over the
/// demo's queues. Returns the count of violations and the first few, described.
pub async fn index_violations(ledger: &Ledger, plan: &[PlannedExecution]) -> (usize, Vec<String>) {
    let queues: BTreeSet<&str> = plan.iter().map(|p| p.queue).collect();
    let queues: Vec<&str> = queues.into_iter().collect();
    let violations = unstuck::testkit::invariants::check(ledger, &queues).await;
    let listed = violations.iter().take(MAX_LISTED).cloned().collect();
    (violations.len(), listed)
}
