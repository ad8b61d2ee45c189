//! After the run: what happened to each planned execution, read back from the ledger —
//! its final snapshot, its events, and whether the indexes agree with its state.

use redis::Value;
use std::collections::{BTreeSet, HashMap};

use super::plan::PlannedExecution;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::keys::{Keyspace, Timer};
use crate::ledger::{Execution, Ledger};

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

/// Checks invariant 2 (indexes match state) for every terminal execution: no pending
/// entry, no slot, no timer, and listed in its terminal state's index. Returns the count
/// of violations and the first few, described.
///
/// # Errors
/// Redis errors.
pub async fn index_violations(
    ledger: &Ledger,
    observed: &[Observed],
) -> Result<(usize, Vec<String>)> {
    let keys: &Keyspace = &ledger.keys;
    let mut conn = ledger.conn.clone();
    let mut count = 0;
    let mut listed = Vec::new();
    for o in observed {
        let Some(e) = o.execution.as_ref().filter(|e| e.state.is_terminal()) else {
            continue;
        };
        let (queue, id) = (e.queue.as_str(), e.id.as_str());
        let partition = ledger.partition_of(queue);
        let member = Keyspace::member(queue, id);
        let mut pipe = redis::pipe();
        pipe.zscore(keys.pending(queue), id)
            .hexists(keys.slots(queue), id)
            .cmd("LPOS")
            .arg(keys.finished(queue, e.state.as_str()))
            .arg(id);
        for timer in Timer::ALL {
            pipe.zscore(keys.timer(partition, timer), &member);
        }
        let found: Vec<Value> = pipe.query_async(&mut conn).await?;
        let present = |v: &Value| !matches!(v, Value::Nil | Value::Int(0));
        let mut problems = Vec::new();
        if found.first().is_some_and(present) {
            problems.push("still pending".to_owned());
        }
        if found.get(1).is_some_and(present) {
            problems.push("still holds a slot".to_owned());
        }
        // LPOS answers the position (0 is the head) or nil.
        if matches!(found.get(2), None | Some(Value::Nil)) {
            problems.push(format!("missing from the {} index", e.state));
        }
        for (timer, v) in Timer::ALL.iter().zip(found.iter().skip(3)) {
            if present(v) {
                problems.push(format!("still in the {timer:?} timer"));
            }
        }
        count += problems.len();
        for problem in problems {
            if listed.len() < MAX_LISTED {
                listed.push(format!("{queue}/{id} ({}): {problem}", e.state));
            }
        }
    }
    Ok((count, listed))
}
