//! The audit every fault case ends with, and its row of the fault table.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use unstuck::testkit::{RedisProcess, invariants};
use unstuck::*;

use super::{Counters, QUEUES};

/// One row of the fault table.
#[derive(Debug, Default)]
pub struct Audit {
    pub executions: usize,
    pub lost: usize,
    pub double_terminal: usize,
    pub leaked_slots: usize,
    pub unaccounted_attempts: usize,
    pub still_open: usize,
    pub invariant_problems: Vec<String>,
    pub longest_script_us: u64,
    pub holds: u64,
}

/// Audits `ids` (the acknowledged enqueues) against Redis: every one exists, none reached
/// a terminal state twice (from the event stream), every attempt was started by a claim,
/// no slot is held by an execution that does not run, and the invariant checker agrees.
pub async fn audit(ledger: &Ledger, redis: &RedisProcess, ids: &[(String, String)]) -> Audit {
    audit_on(ledger, &[redis.url().to_owned()], ids).await
}

/// [`audit`] of a ledger on several servers (a cluster's nodes): the longest script is the
/// longest of any node's slow log.
pub async fn audit_on(ledger: &Ledger, urls: &[String], ids: &[(String, String)]) -> Audit {
    let mut a = Audit {
        executions: ids.len(),
        ..Audit::default()
    };
    let mut terminal_events: HashMap<(String, String), usize> = HashMap::new();
    let mut claims: HashMap<(String, String), u32> = HashMap::new();
    for e in all_events(ledger).await {
        let key = (e.queue.clone(), e.execution_id.clone());
        if e.to.is_some_and(|s| s.is_terminal()) {
            *terminal_events.entry(key.clone()).or_default() += 1;
        }
        if e.reason == "claimed" {
            *claims.entry(key).or_default() += 1;
        }
        if e.reason == "systemic_hold" {
            a.holds += 1;
        }
    }
    let states = unstuck::testkit::states(ledger, ids)
        .await
        .expect("reading states");
    for (key, read) in ids.iter().zip(states) {
        match read {
            None => a.lost += 1,
            Some((state, attempt)) => {
                if terminal_events.get(key).copied().unwrap_or(0) > 1 {
                    a.double_terminal += 1;
                }
                if claims.get(key).copied().unwrap_or(0) != attempt {
                    a.unaccounted_attempts += 1;
                }
                if !state.is_terminal() {
                    a.still_open += 1;
                }
            }
        }
    }
    let holders = ledger.slot_holders().await.expect("slots");
    for held in holders.values() {
        for (queue, id) in held {
            let active = ledger.get(queue, id).await.map(|e| e.state.is_active());
            if !matches!(active, Ok(true)) {
                a.leaked_slots += 1;
            }
        }
    }
    a.invariant_problems = invariants::check(ledger, &QUEUES).await;
    for url in urls {
        a.longest_script_us = a.longest_script_us.max(longest_script_at(url).await);
    }
    a
}

/// Acknowledged completions that Redis no longer shows: the execution is not succeeded by
/// the attempt that completed it (or is gone), as after a failover lost the write.
pub async fn reverted_completions(ledger: &Ledger, c: &Counters) -> usize {
    let done = c.completions.lock().unwrap().clone();
    let mut reverted = 0;
    for (queue, id, attempt) in done {
        match ledger.get(&queue, &id).await {
            Ok(e) if e.state == State::Succeeded && e.attempt == attempt => {}
            _ => reverted += 1,
        }
    }
    reverted
}

/// Empties the slow log, so what follows is measured alone.
pub async fn reset_slowlog(redis: &RedisProcess) {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SLOWLOG")
        .arg("RESET")
        .query_async(&mut conn)
        .await
        .unwrap();
}

/// The longest command in the slow log, in µs (0: none over 1 ms).
pub async fn longest_script(redis: &RedisProcess) -> u64 {
    longest_script_at(redis.url()).await
}

/// [`longest_script`] of the server at `url` (0 when it cannot be read).
pub async fn longest_script_at(url: &str) -> u64 {
    let Ok(mut conn) = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
    else {
        return 0;
    };
    let entries: Vec<redis::Value> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(1024)
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    entries
        .iter()
        .filter_map(|e| match e {
            redis::Value::Array(fields) => match fields.get(2) {
                Some(redis::Value::Int(us)) => Some(*us as u64),
                _ => None,
            },
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

/// Prints the case's row of the fault table and appends it to `target/tmp/faults.md`.
pub fn report(fault: &str, load: &str, a: &Audit, note: &str) {
    let longest = if a.longest_script_us == 0 {
        "< 1 ms".to_owned()
    } else {
        format!("{:.1} ms", a.longest_script_us as f64 / 1000.0)
    };
    let row = format!(
        "| {fault} | {load} | {} | {} | {} | {} | {longest} | {note} |",
        a.executions, a.lost, a.double_terminal, a.leaked_slots
    );
    println!("{row}");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("faults.md");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{row}");
    }
}

/// Asserts the audit found nothing wrong (every case's ending).
pub fn assert_clean(a: &Audit) {
    assert_eq!(a.lost, 0, "{a:?}");
    assert_eq!(a.double_terminal, 0, "{a:?}");
    assert_eq!(a.leaked_slots, 0, "{a:?}");
    assert_eq!(a.unaccounted_attempts, 0, "{a:?}");
    assert_eq!(a.still_open, 0, "every execution finished: {a:?}");
    assert!(
        a.invariant_problems.is_empty(),
        "{:?}",
        a.invariant_problems
    );
}

/// The watchdog actions by reason in the event streams (what it did during a case).
pub async fn actions(ledger: &Ledger) -> BTreeMap<String, u64> {
    let mut by = BTreeMap::new();
    for e in all_events(ledger)
        .await
        .into_iter()
        .filter(|e| e.replica.is_some())
    {
        *by.entry(format!("{}→{}", e.reason, e.to.map_or("-", |s| s.as_str())))
            .or_default() += 1;
    }
    by
}

/// Every event of every partition's stream, oldest first per partition.
async fn all_events(ledger: &Ledger) -> Vec<Event> {
    let mut all = Vec::new();
    for p in 0..ledger.config().partitions {
        let mut after: Option<String> = None;
        loop {
            let page = ledger
                .read_events(p, after.as_deref(), 5000)
                .await
                .expect("events");
            let Some(last) = page.last() else { break };
            after = Some(last.stream_id.clone());
            all.extend(page);
        }
    }
    all
}
