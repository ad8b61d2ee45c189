//! Several replicas running at once over thousands of stale executions, and a replica
//! killed mid-work: every (execution, attempt) is acted on exactly once and the ledger's
//! invariants hold at the end.

use crate::support;
use crate::watchdog_common;

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use unstuck::watchdog::{Watchdog, WatchdogConfig};
use unstuck::*;
use watchdog_common::*;

/// Even executions have one attempt (they end dead), odd ones two (they are retried).
fn attempts(i: usize) -> u32 {
    if i.is_multiple_of(2) { 1 } else { 2 }
}

/// A ledger whose event streams keep every event and whose queues never run out of slots.
async fn big_ledger(name: &str) -> Ledger {
    support::ledger_with(name, |c| {
        c.events_max_len = 1_000_000;
        c.default_capacity = 100_000;
    })
    .await
}

/// `per_queue` running executions in each queue, each stale 200 ms after its first
/// heartbeat and then retried or dead in the same round (stuck threshold 0).
async fn stale_fleet(l: &Ledger, queues: &[String], per_queue: usize) {
    for q in queues {
        for chunk in (0..per_queue).collect::<Vec<_>>().chunks(250) {
            join_all(chunk.iter().map(|i| async move {
                let opts = EnqueueOptions::new()
                    .id(format!("e{i:05}"))
                    .heartbeat_timeout(Duration::from_millis(200))
                    .stuck_threshold(Duration::ZERO)
                    .backoff_base(Duration::ZERO)
                    .max_attempts(attempts(*i));
                l.enqueue(q, &json!({ "i": i }), opts).await
            }))
            .await
            .into_iter()
            .for_each(|r| assert!(r.unwrap().created));
        }
        let mut claims = Vec::new();
        while claims.len() < per_queue {
            let batch = l.claim_many(q, "w1", 1000).await.unwrap();
            assert!(!batch.claims.is_empty(), "all enqueued are available");
            claims.extend(batch.claims);
        }
        for chunk in claims.chunks(250) {
            join_all(chunk.iter().map(|c| beat(l, &c.token, Heartbeat::new()))).await;
        }
    }
}

async fn slots_in_use(l: &Ledger, queues: &[String]) -> usize {
    let mut total = 0;
    for q in queues {
        total += l.slots_in_use(q).await.unwrap();
    }
    total
}

/// Thousands going stale at once would start a systemic hold; `running_config` turns the
/// share rule off, so this is about sharing the work, not about holding back.
fn replica_config(id: &str, batch: usize) -> WatchdogConfig {
    WatchdogConfig {
        batch,
        ..running_config(id)
    }
}

/// Starts `run()` on a replica with a connection of its own.
async fn spawn_replica(
    l: &Ledger,
    config: WatchdogConfig,
    shutdown: &CancellationToken,
) -> (Watchdog, JoinHandle<Result<()>>) {
    let wd = Watchdog::new(reconnect(l).await, config).unwrap();
    let task = tokio::spawn({
        let wd = wd.clone();
        let shutdown = shutdown.clone();
        async move { wd.run(shutdown).await }
    });
    (wd, task)
}

/// Every execution of the fleet got exactly its two verdicts, once each, and nothing else
/// was decided.
async fn assert_each_acted_on_once(l: &Ledger, queues: &[String], per_queue: usize) {
    let counts = verdict_counts(l).await;
    let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(repeated.is_empty(), "acted on more than once: {repeated:?}");
    for q in queues {
        for i in 0..per_queue {
            let member = format!("{q}/e{i:05}");
            let stuck = (
                member.clone(),
                1,
                Some(State::Running),
                Some(State::Stuck),
                "heartbeat_lost".to_owned(),
            );
            let outcome = if attempts(i) == 1 {
                (Some(State::Stuck), Some(State::Dead), "attempts_exhausted")
            } else {
                (Some(State::Stuck), Some(State::Queued), "heartbeat_lost")
            };
            let outcome = (member, 1, outcome.0, outcome.1, outcome.2.to_owned());
            assert!(counts.contains_key(&stuck), "missing {stuck:?}");
            assert!(counts.contains_key(&outcome), "missing {outcome:?}");
        }
    }
    assert_eq!(
        counts.len(),
        2 * queues.len() * per_queue,
        "no other verdicts"
    );
    let names: Vec<&str> = queues.iter().map(String::as_str).collect();
    support::invariants::assert_ok(l, &names).await;
    let mut pending = 0;
    for q in queues {
        pending += l.pending_count(q).await.unwrap();
    }
    assert_eq!(pending, queues.len() * per_queue / 2, "retried ones wait");
}

/// `n` queue names whose partitions are distinct and alternate between the lower and the
/// upper half of the 16, so that two replicas sharing the partitions both get work.
fn spread_queues(l: &Ledger, n: usize) -> Vec<String> {
    let mut taken = Vec::new();
    let mut queues = Vec::new();
    for i in 0.. {
        let q = format!("q{i}");
        let p = l.partition_of(&q);
        let upper = queues.len() % 2 == 1;
        if !taken.contains(&p) && (p >= 8) == upper {
            taken.push(p);
            queues.push(q);
            if queues.len() == n {
                break;
            }
        }
    }
    queues
}

async fn replicas_share_the_work(name: &str, replicas: usize, queues: usize, per_queue: usize) {
    let l = big_ledger(name).await;
    let queues = spread_queues(&l, queues);
    stale_fleet(&l, &queues, per_queue).await;
    pass(250).await; // every execution is now past its heartbeat timeout

    // The first two split the partitions before they start (r0 keeps 0..8, r1 takes
    // 8..16); any further replica joins while they work, so leases move mid-work.
    let shutdown = CancellationToken::new();
    let mut first = Vec::new();
    for r in 0..2 {
        let config = replica_config(&format!("r{r}"), 50);
        first.push(Watchdog::new(reconnect(&l).await, config).unwrap());
    }
    for _ in 0..2 {
        for wd in &first {
            wd.rebalance().await.unwrap();
        }
    }
    assert_eq!(first[0].held_partitions().len(), 8);
    assert_eq!(first[1].held_partitions().len(), 8);
    let mut running = Vec::new();
    for wd in first {
        let task = tokio::spawn({
            let (wd, shutdown) = (wd.clone(), shutdown.clone());
            async move { wd.run(shutdown).await }
        });
        running.push((wd, task));
    }
    for r in 2..replicas {
        pass(100).await;
        running.push(spawn_replica(&l, replica_config(&format!("r{r}"), 50), &shutdown).await);
    }
    support::wait_until(Duration::from_secs(60), "every slot released", || async {
        slots_in_use(&l, &queues).await == 0
    })
    .await;
    shutdown.cancel();
    let (mut stuck, mut retried, mut dead) = (0, 0, 0);
    for (r, (wd, task)) in running.into_iter().enumerate() {
        task.await.unwrap().expect("clean shutdown");
        let t = wd.totals();
        assert_eq!(t.timed_out + t.cancelled + t.orphaned, 0, "{t:?}");
        if r < 2 {
            assert!(t.stuck > 0, "replica r{r} shared the work: {t:?}");
        }
        (stuck, retried, dead) = (stuck + t.stuck, retried + t.retried, dead + t.dead);
    }
    let total = (queues.len() * per_queue) as u64;
    assert_eq!((stuck, retried, dead), (total, total / 2, total / 2));
    assert_each_acted_on_once(&l, &queues, per_queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_act_on_each_stale_attempt_exactly_once() {
    replicas_share_the_work("wd_two_replicas", 2, 4, 500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_act_on_each_stale_attempt_exactly_once() {
    replicas_share_the_work("wd_three_replicas", 3, 6, 500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_work_is_replaced_and_nothing_is_half_done() {
    let l = big_ledger("wd_killed").await;
    let queues: Vec<String> = (0..6).map(|i| format!("k{i}")).collect();
    let per_queue = 500;
    stale_fleet(&l, &queues, per_queue).await;
    pass(250).await;

    // A works in tiny batches, so it is killed with most of the work still to do.
    let shutdown_a = CancellationToken::new();
    let (a, task_a) = spawn_replica(&l, replica_config("a", 2), &shutdown_a).await;
    support::wait_until(Duration::from_secs(30), "a is at work", || async {
        a.totals().stuck >= 50
    })
    .await;
    task_a.abort();
    assert!(task_a.await.unwrap_err().is_cancelled());
    let epochs_a = a.held_partitions();
    let left = slots_in_use(&l, &queues).await;
    assert!(left > 0, "killed while work remained");

    // B takes the partitions over once A's leases lapse and finishes the work.
    let shutdown_b = CancellationToken::new();
    let (b, task_b) = spawn_replica(&l, replica_config("b", 200), &shutdown_b).await;
    support::wait_until(Duration::from_secs(60), "every slot released", || async {
        slots_in_use(&l, &queues).await == 0
    })
    .await;
    assert!(b.totals().stuck > 0, "b took over: {:?}", b.totals());
    support::wait_until(
        Duration::from_secs(5),
        "b holds every partition",
        || async { b.held_partitions().len() == 16 },
    )
    .await;
    for (p, epoch) in b.held_partitions() {
        assert_ne!(epochs_a.get(&p), Some(&epoch), "partition {p}: a new epoch");
    }
    shutdown_b.cancel();
    task_b.await.unwrap().expect("clean shutdown");
    assert_each_acted_on_once(&l, &queues, per_queue).await;
}
