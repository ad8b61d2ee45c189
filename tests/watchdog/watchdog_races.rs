//! A worker's completion racing a watchdog round over an execution just past its
//! heartbeat timeout: exactly one of them decides, the slot is released once, and what the
//! worker is told matches the final state.

use crate::support;
use crate::watchdog_common;

use std::collections::HashMap;
use std::time::Duration;

use unstuck::*;
use watchdog_common::*;

const ITERATIONS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_racing_the_watchdog_ends_in_exactly_one_outcome() {
    let l = support::ledger("wd_race_complete").await;
    let wd = sole_replica(&l, config("r1")).await;
    let worker = reconnect(&l).await; // the worker talks over connections of its own
    let q = "race";
    let p = l.partition_of(q);
    let (mut worker_won, mut watchdog_won) = (0, 0);

    for i in 0..ITERATIONS {
        let id = format!("e{i:03}");
        // Half of them have a retry left; a retry waits an hour in the queue, so the next
        // iteration claims its own execution.
        let opts = EnqueueOptions::new()
            .heartbeat_timeout(Duration::from_millis(30))
            .stuck_threshold(Duration::ZERO)
            .backoff_base(Duration::from_secs(3600))
            .backoff_max(Duration::from_secs(3600))
            .max_attempts(if i % 2 == 0 { 1 } else { 2 });
        let token = start(&worker, q, &id, opts).await;
        pass(35).await; // just past the heartbeat timeout

        // Which side gets a head start varies; sometimes neither does.
        let lead = Duration::from_millis(1);
        let complete = tokio::spawn({
            let (worker, token) = (worker.clone(), token.clone());
            async move {
                if i % 3 == 1 {
                    tokio::time::sleep(lead).await;
                }
                worker.complete(&token, None).await
            }
        });
        let round = tokio::spawn({
            let wd = wd.clone();
            async move {
                if i % 3 == 2 {
                    tokio::time::sleep(lead).await;
                }
                wd.round(p).await
            }
        });
        let completed = complete.await.unwrap().expect("complete");
        let report = round.await.unwrap().expect("round");

        let e = l.get(q, &id).await.unwrap();
        match completed {
            CompleteOutcome::Recorded { slot_released } => {
                worker_won += 1;
                assert!(slot_released, "{id}: the worker's attempt held the slot");
                assert_eq!(e.state, State::Succeeded, "{id}");
                assert!(!report.acted(), "{id}: the round found it done: {report:?}");
            }
            CompleteOutcome::AlreadyTerminal { state, stop_reason } => {
                watchdog_won += 1;
                assert_eq!(
                    (state, stop_reason, e.state),
                    (State::Dead, StopReason::HeartbeatLost, State::Dead),
                    "{id}"
                );
                assert_eq!((report.stuck, report.dead), (1, 1), "{id}: {report:?}");
            }
            CompleteOutcome::StaleAttempt {
                current_attempt,
                state,
            } => {
                watchdog_won += 1;
                assert_eq!(
                    (current_attempt, state, e.state),
                    (1, State::Queued, State::Queued)
                );
                assert_eq!((report.stuck, report.retried), (1, 1), "{id}: {report:?}");
            }
        }

        assert_eq!(l.slots_in_use(q).await.unwrap(), 0, "{id}: slot released");
    }

    // Exactly one decision per execution was recorded after its start.
    let mut decisions: HashMap<String, Vec<String>> = HashMap::new();
    for e in events(&l, p).await {
        if e.to.is_some_and(State::is_terminal) || (e.to == Some(State::Queued) && e.from.is_some())
        {
            decisions
                .entry(e.execution_id)
                .or_default()
                .push(format!("{:?} -> {:?} ({})", e.from, e.to, e.reason));
        }
    }
    assert_eq!(decisions.len(), ITERATIONS);
    for (id, decided) in &decisions {
        assert_eq!(decided.len(), 1, "{id}: {decided:?}");
    }
    assert_eq!(worker_won + watchdog_won, ITERATIONS);
    assert!(
        worker_won > 0 && watchdog_won > 0,
        "both sides won some races (worker {worker_won}, watchdog {watchdog_won})"
    );
    support::invariants::assert_ok(&l, &[q]).await;
}
