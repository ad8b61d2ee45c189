//! Many claimers against one capacity, and the worker calls that race each other on one
//! execution: every race must end in exactly one outcome, with the slot released once.

use crate::ledger_common;
use crate::support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::sync::Barrier;
use unstuck::*;

use ledger_common::events_of;

const RECORDED: CompleteOutcome = CompleteOutcome::Recorded {
    slot_released: true,
};
const KEEP_GOING: HeartbeatReply = HeartbeatReply::Ok {
    cancel_requested: false,
    cancel_reason: None,
};
const SUCCEEDED_BEFORE: CompleteOutcome = CompleteOutcome::AlreadyTerminal {
    state: State::Succeeded,
    stop_reason: StopReason::Succeeded,
};

async fn check_invariants(ledger: &Ledger, queues: &[String]) {
    let names: Vec<&str> = queues.iter().map(String::as_str).collect();
    support::invariants::assert_ok(ledger, &names).await;
}

/// `completed` events per execution id of `queue`.
async fn completions(ledger: &Ledger, queue: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for event in events_of(ledger, queue).await {
        if event.reason == "completed" {
            *counts.entry(event.execution_id).or_insert(0) += 1;
        }
    }
    counts
}

/// Enqueues `id` alone in `queue`, claims it and starts it; returns the attempt's token.
async fn running(ledger: &Ledger, queue: &str, id: &str, opts: EnqueueOptions) -> AttemptToken {
    ledger
        .enqueue(queue, &json!({}), opts.id(id))
        .await
        .unwrap();
    let claim = ledger.claim(queue, "w1").await.unwrap().expect("claimable");
    assert_eq!(claim.id(), id);
    let beat = ledger.heartbeat(&claim.token, Heartbeat::new()).await;
    assert_eq!(beat.unwrap(), KEEP_GOING);
    claim.token
}

const TOTAL: usize = 500;
const CAPACITY: usize = 5;
const QUEUE: &str = "work";

/// Executions whose first attempt fails (retryable) before the second succeeds.
fn fails_once(id: &str) -> bool {
    id.trim_start_matches('e')
        .parse::<usize>()
        .is_ok_and(|n| n % 7 == 0)
}

#[derive(Default)]
struct Tally {
    claims: AtomicUsize,
    releases: AtomicUsize,
    succeeded: AtomicUsize,
}

async fn claimer(ledger: Ledger, worker: String, tally: Arc<Tally>) {
    while tally.succeeded.load(Ordering::SeqCst) < TOTAL {
        let Some(claim) = ledger.claim(QUEUE, &worker).await.unwrap() else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        tally.claims.fetch_add(1, Ordering::SeqCst);
        let used = ledger.slots_in_use(QUEUE).await.unwrap();
        assert!(used <= CAPACITY, "{used} slots in use after a claim");
        let beat = ledger
            .heartbeat(&claim.token, Heartbeat::new().progress("1"))
            .await
            .unwrap();
        assert_eq!(beat, KEEP_GOING);
        if fails_once(claim.id()) && claim.attempt() == 1 {
            match ledger.fail(&claim.token, "flaky", true).await.unwrap() {
                FailOutcome::RetryScheduled {
                    slot_released: true,
                    ..
                } => {}
                other => panic!("{}: fail gave {other:?}", claim.id()),
            }
        } else {
            let outcome = ledger.complete(&claim.token, None).await.unwrap();
            assert_eq!(outcome, RECORDED, "{}", claim.id());
            tally.succeeded.fetch_add(1, Ordering::SeqCst);
        }
        tally.releases.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_respect_capacity_and_finish_each_execution_once() {
    let ledger = support::ledger("concurrent_claimers").await;
    let timings = Timings {
        backoff_base: Some(Duration::ZERO),
        max_attempts: Some(3),
        ..Timings::default()
    };
    let settings = QueueSettings {
        capacity: Some(CAPACITY as u32),
        timings,
        ..QueueSettings::default()
    };
    ledger.set_queue(QUEUE, &settings).await.unwrap();
    let ids: Vec<String> = (0..TOTAL).map(|i| format!("e{i}")).collect();
    for id in &ids {
        let opts = EnqueueOptions::new().id(id);
        let enqueued = ledger.enqueue(QUEUE, &json!({ "id": id }), opts).await;
        assert!(enqueued.unwrap().created);
    }

    let tally = Arc::new(Tally::default());
    let mut tasks = Vec::new();
    for n in 0..32 {
        // Most workers share one multiplexed connection; some bring their own.
        let worker_ledger = if n % 4 == 0 {
            Ledger::connect(ledger.config().clone()).await.unwrap()
        } else {
            ledger.clone()
        };
        tasks.push(tokio::spawn(claimer(
            worker_ledger,
            format!("worker-{n}"),
            tally.clone(),
        )));
    }
    let sampler = {
        let (ledger, tally) = (ledger.clone(), tally.clone());
        tokio::spawn(async move {
            let (mut samples, mut most) = (0, 0);
            while tally.succeeded.load(Ordering::SeqCst) < TOTAL {
                let used = ledger.slots_in_use(QUEUE).await.unwrap();
                assert!(used <= CAPACITY, "sampled {used} slots in use");
                most = most.max(used);
                samples += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (samples, most)
        })
    };
    let all = async {
        for task in tasks {
            task.await.unwrap();
        }
        sampler.await.unwrap()
    };
    let (samples, most) = tokio::time::timeout(Duration::from_secs(300), all)
        .await
        .expect("the claimers finish the queue");
    assert!(
        samples > 0 && most >= 1,
        "{samples} samples, at most {most}"
    );

    let claims = tally.claims.load(Ordering::SeqCst);
    let retried = ids.iter().filter(|id| fails_once(id)).count();
    assert_eq!(claims, TOTAL + retried);
    assert_eq!(tally.releases.load(Ordering::SeqCst), claims);
    assert_eq!(tally.succeeded.load(Ordering::SeqCst), TOTAL);
    assert_eq!(ledger.slots_in_use(QUEUE).await.unwrap(), 0);
    assert_eq!(ledger.pending_count(QUEUE).await.unwrap(), 0);

    let completed = completions(&ledger, QUEUE).await;
    assert_eq!(completed.len(), TOTAL);
    for id in &ids {
        assert_eq!(completed.get(id), Some(&1), "completed events of {id}");
        let execution = ledger.get(QUEUE, id).await.unwrap();
        assert_eq!(execution.state, State::Succeeded, "{id}");
        let attempts = if fails_once(id) { 2 } else { 1 };
        assert_eq!(execution.attempt, attempts, "{id}");
    }
    let events = events_of(&ledger, QUEUE).await;
    let claimed = events.iter().filter(|e| e.reason == "claimed").count();
    assert_eq!(claimed, claims);
    support::invariants::assert_ok(&ledger, &[QUEUE]).await;
}

/// Runs `a` and `b` at the same moment on two tasks.
async fn race<A, B, FA, FB>(a: FA, b: FB) -> (A, B)
where
    FA: Future<Output = A> + Send + 'static,
    FB: Future<Output = B> + Send + 'static,
    A: Send + 'static,
    B: Send + 'static,
{
    let barrier = Arc::new(Barrier::new(2));
    let (ba, bb) = (barrier.clone(), barrier);
    let a = tokio::spawn(async move {
        ba.wait().await;
        a.await
    });
    let b = tokio::spawn(async move {
        bb.wait().await;
        b.await
    });
    (a.await.unwrap(), b.await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn complete_racing_cancel_ends_succeeded_with_one_release() {
    let ledger = support::ledger("complete_vs_cancel").await;
    let other = Ledger::connect(ledger.config().clone()).await.unwrap();
    let mut queues = Vec::new();
    let (mut cancel_first, mut complete_first) = (0, 0);
    for i in 0..200 {
        let queue = format!("cc{i}");
        let token = running(&ledger, &queue, "x", EnqueueOptions::new()).await;
        let (worker, orchestrator) = (ledger.clone(), other.clone());
        let (t, q) = (token.clone(), queue.clone());
        let (completed, cancelled) = race(
            async move { worker.complete(&t, None).await.unwrap() },
            async move { orchestrator.cancel(&q, "x", "stop").await.unwrap() },
        )
        .await;
        // Complete always wins the slot: cancel only asks active work to stop.
        assert_eq!(completed, RECORDED, "iteration {i}");
        match cancelled {
            CancelOutcome::Requested { already: false, .. } => cancel_first += 1,
            CancelOutcome::AlreadyTerminal {
                state: State::Succeeded,
                stop_reason: StopReason::Succeeded,
            } => complete_first += 1,
            other => panic!("iteration {i}: cancel gave {other:?}"),
        }
        let execution = ledger.get(&queue, "x").await.unwrap();
        assert_eq!(execution.state, State::Succeeded);
        let reason = execution.stop.map(|s| s.reason);
        assert_eq!(reason, Some(StopReason::Succeeded));
        assert_eq!(ledger.slots_in_use(&queue).await.unwrap(), 0);
        // A late acknowledgement changes nothing.
        assert_eq!(
            ledger.acknowledge_cancel(&token).await.unwrap(),
            SUCCEEDED_BEFORE
        );
        assert_eq!(completions(&ledger, &queue).await.get("x"), Some(&1));
        queues.push(queue);
    }
    println!("cancel first {cancel_first}, complete first {complete_first}");
    check_invariants(&ledger, &queues).await;
}

/// What raced a `complete`: a second `complete` with a copy of the token, or a `fail`.
enum Rival {
    Complete(CompleteOutcome),
    Fail(FailOutcome),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn complete_racing_fail_or_complete_has_one_winner() {
    let ledger = support::ledger("complete_vs_fail").await;
    let other = Ledger::connect(ledger.config().clone()).await.unwrap();
    let mut queues = Vec::new();
    for i in 0..150 {
        let queue = format!("cf{i}");
        let opts = EnqueueOptions::new().max_attempts(2);
        let token = running(&ledger, &queue, "x", opts).await;
        let (a, b) = (ledger.clone(), other.clone());
        let (ta, tb) = (token.clone(), token.clone());
        let kind = i % 3;
        let (completed, rival) = race(
            async move { a.complete(&ta, None).await.unwrap() },
            async move {
                match kind {
                    0 => Rival::Complete(b.complete(&tb, None).await.unwrap()),
                    retryable => Rival::Fail(b.fail(&tb, "boom", retryable == 1).await.unwrap()),
                }
            },
        )
        .await;
        let state = match rival {
            Rival::Complete(second) => {
                // Two copies of one token: exactly one completion is recorded.
                let mut outcomes = [&completed, &second];
                outcomes.sort_by_key(|o| **o != RECORDED);
                assert_eq!(outcomes, [&RECORDED, &SUCCEEDED_BEFORE], "iteration {i}");
                State::Succeeded
            }
            Rival::Fail(failed) => {
                // Whichever wins releases the slot; the loser is told what happened.
                let (state, loser) = match failed {
                    FailOutcome::RetryScheduled {
                        slot_released: true,
                        ..
                    } => {
                        let stale = CompleteOutcome::StaleAttempt {
                            current_attempt: 1,
                            state: State::Queued,
                        };
                        (State::Queued, stale)
                    }
                    FailOutcome::Failed {
                        slot_released: true,
                    } => {
                        let stop_reason = StopReason::Failed;
                        let state = State::Failed;
                        (
                            state,
                            CompleteOutcome::AlreadyTerminal { state, stop_reason },
                        )
                    }
                    FailOutcome::AlreadyTerminal {
                        state: State::Succeeded,
                        ..
                    } => (State::Succeeded, RECORDED),
                    other => panic!("iteration {i}: fail gave {other:?}"),
                };
                assert_eq!(completed, loser, "iteration {i}");
                state
            }
        };
        let execution = ledger.get(&queue, "x").await.unwrap();
        assert_eq!(execution.state, state, "iteration {i}");
        assert_eq!(execution.attempt, 1);
        assert_eq!(ledger.slots_in_use(&queue).await.unwrap(), 0);
        let done = completions(&ledger, &queue).await.get("x").copied();
        assert_eq!(done.unwrap_or(0), usize::from(state == State::Succeeded));
        queues.push(queue);
    }
    check_invariants(&ledger, &queues).await;
}

/// Whether a reply to a call of attempt 1 rejected it: stale while attempt 2 is queued or
/// active, or terminal once attempt 2 has succeeded.
macro_rules! rejected {
    ($reply:expr, $kind:ident, $terminal:ident) => {
        match $reply {
            $kind::StaleAttempt {
                current_attempt: a,
                state: s,
            } => (a == 1 && s == State::Queued) || (a == 2 && s.is_active()),
            $kind::$terminal { state, .. } => state == State::Succeeded,
            _ => false,
        }
    };
}

/// Calls of attempt 1 while attempt 2 runs; returns the replies that did not reject it.
async fn old_attempt_calls(ledger: Ledger, old: AttemptToken) -> Vec<String> {
    let mut accepted = Vec::new();
    for _ in 0..3 {
        let beat = ledger.heartbeat(&old, Heartbeat::new()).await.unwrap();
        let done = ledger.complete(&old, None).await.unwrap();
        let failed = ledger.fail(&old, "late", true).await.unwrap();
        if !rejected!(beat.clone(), HeartbeatReply, Terminal)
            || !rejected!(done.clone(), CompleteOutcome, AlreadyTerminal)
            || !rejected!(failed.clone(), FailOutcome, AlreadyTerminal)
        {
            accepted.push(format!("{beat:?} / {done:?} / {failed:?}"));
        }
    }
    accepted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_old_attempt_racing_the_new_one_is_always_rejected() {
    let ledger = support::ledger("old_vs_new").await;
    let other = Ledger::connect(ledger.config().clone()).await.unwrap();
    let mut queues = Vec::new();
    for i in 0..60 {
        let queue = format!("on{i}");
        let opts = EnqueueOptions::new()
            .max_attempts(3)
            .backoff_base(Duration::ZERO);
        let old = running(&ledger, &queue, "x", opts).await;
        let retry = ledger.fail(&old, "lost", true).await.unwrap();
        let retried = matches!(
            retry,
            FailOutcome::RetryScheduled {
                slot_released: true,
                ..
            }
        );
        assert!(retried, "{retry:?}");

        // The old worker keeps talking while the retry is claimed, started and completed.
        let (worker, q) = (ledger.clone(), queue.clone());
        let (new_done, accepted) = race(
            async move {
                let claim = worker
                    .claim(&q, "w2")
                    .await
                    .unwrap()
                    .expect("retry claimable");
                assert_eq!(claim.attempt(), 2);
                let beat = worker.heartbeat(&claim.token, Heartbeat::new()).await;
                assert!(!beat.unwrap().should_stop());
                worker.complete(&claim.token, None).await.unwrap()
            },
            old_attempt_calls(other.clone(), old.clone()),
        )
        .await;
        assert_eq!(new_done, RECORDED, "iteration {i}");
        assert!(
            accepted.is_empty(),
            "iteration {i}: old attempt accepted {accepted:?}"
        );
        let execution = ledger.get(&queue, "x").await.unwrap();
        assert_eq!((execution.state, execution.attempt), (State::Succeeded, 2));
        assert_eq!(ledger.slots_in_use(&queue).await.unwrap(), 0);
        let completed = events_of(&ledger, &queue).await;
        let completed: Vec<u32> = completed
            .iter()
            .filter(|e| e.reason == "completed")
            .map(|e| e.attempt)
            .collect();
        assert_eq!(completed, [2], "completions by attempt");
        queues.push(queue);
    }
    check_invariants(&ledger, &queues).await;
}
