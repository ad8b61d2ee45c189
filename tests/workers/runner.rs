//! The worker-side runner against a real Redis: outcomes, heartbeats that survive a job
//! hogging its thread, retries with checkpoints, re-registration.

use crate::runner_common;
use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use runner_common::*;
use serde_json::json;
use tokio::sync::mpsc;
use unstuck::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_jobs_to_success_with_concurrency() {
    let ledger = support::ledger("runs_jobs").await;
    for n in 0..12 {
        let (payload, options) = (json!({ "n": n }), EnqueueOptions::new().id(format!("j{n}")));
        ledger.enqueue("q", &payload, options).await.unwrap();
    }
    // Each job waits until four run at once, which only a concurrency of 4 allows.
    let barrier = Arc::new(tokio::sync::Barrier::new(4));
    let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (b, n, p) = (barrier.clone(), now.clone(), peak.clone());
    let handler = move |job: Job| {
        let (barrier, now, peak) = (b.clone(), n.clone(), p.clone());
        async move {
            peak.fetch_max(now.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
            barrier.wait().await;
            now.fetch_sub(1, Ordering::SeqCst);
            let n = job.payload()["n"].as_i64().expect("payload has n");
            Ok(Some(json!({ "double": n * 2 })))
        }
    };
    let runner = start(&ledger, config(4), handler);

    support::wait_until(WAIT, "all twelve succeeded", || async {
        let page = ledger.list("q", State::Succeeded, None, 100).await;
        page.unwrap().items.len() == 12
    })
    .await;
    let workers = ledger.workers().await.unwrap();
    assert_eq!(workers.len(), 1, "registered while running: {workers:?}");
    assert_eq!(workers[0].queues, vec!["q".to_owned()]);
    assert_eq!(workers[0].version, env!("CARGO_PKG_VERSION"));

    let report = runner.stop().await;
    assert_eq!(
        (report.attempts.claimed, report.attempts.succeeded),
        (12, 12),
        "{report:?}"
    );
    let others = [
        report.attempts.failed,
        report.attempts.retried,
        report.attempts.cancelled,
        report.attempts.lost,
    ];
    assert_eq!(
        (others, report.attempts.unreported),
        ([0; 4], 0),
        "{report:?}"
    );
    assert_eq!(peak.load(Ordering::SeqCst), 4);
    for n in 0..12 {
        let e = ledger.get("q", &format!("j{n}")).await.unwrap();
        assert_eq!(e.result, Some(json!({ "double": n * 2 })));
        assert_eq!(e.attempt, 1);
    }
    assert_eq!(ledger.slots_in_use("q").await.unwrap(), 0);
    assert!(ledger.workers().await.unwrap().is_empty(), "deregistered");
}

#[tokio::test]
async fn runs_jobs_on_a_cluster() {
    let ledger = support::cluster_ledger("cluster").await;
    for id in ["k1", "k2", "k3"] {
        enqueue(&ledger, id, EnqueueOptions::new()).await;
    }
    let runner = start(&ledger, config(2), |job: Job| async move {
        Ok(Some(json!({ "ran": job.id() })))
    });
    for id in ["k1", "k2", "k3"] {
        let e = wait_state(&ledger, id, State::Succeeded).await;
        assert_eq!(e.result, Some(json!({ "ran": id })));
    }
    let report = runner.stop().await;
    assert_eq!(
        (report.attempts.claimed, report.attempts.succeeded),
        (3, 3),
        "{report:?}"
    );
    assert!(ledger.workers().await.unwrap().is_empty(), "deregistered");
}

/// The job blocks the only thread of the runtime the runner and the job share; the
/// heartbeats must keep coming from the runner's own thread.
#[tokio::test(flavor = "current_thread")]
async fn cpu_bound_job_does_not_starve_heartbeats() {
    let ledger = support::ledger("cpu_bound").await;
    let timeout = Duration::from_secs(1);
    enqueue(
        &ledger,
        "cpu",
        EnqueueOptions::new().heartbeat_timeout(timeout),
    )
    .await;
    let blocked = Arc::new(AtomicBool::new(false));

    // The observer polls from a thread, runtime and connection of its own.
    let (flag, observer_config) = (blocked.clone(), ledger.config().clone());
    let observer = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let ledger = Ledger::connect(observer_config).await.unwrap();
            let (mut beats, mut beats_while_blocked, mut states) = (vec![], vec![], vec![]);
            loop {
                let before = flag.load(Ordering::SeqCst);
                let e = ledger.get("q", "cpu").await.unwrap();
                let during = before && flag.load(Ordering::SeqCst);
                if let Some(hb) = e.last_heartbeat_at {
                    if beats.last() != Some(&hb) {
                        beats.push(hb);
                    }
                    if during && beats_while_blocked.last() != Some(&hb) {
                        beats_while_blocked.push(hb);
                    }
                }
                if during {
                    states.push(e.state);
                }
                if e.state.is_terminal() {
                    return (beats, beats_while_blocked, states, e);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    });

    let b = blocked.clone();
    let handler = move |_job: Job| {
        let blocked = b.clone();
        async move {
            blocked.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_secs(3));
            blocked.store(false, Ordering::SeqCst);
            Ok(Some(json!("done")))
        }
    };
    let runner = start(&ledger, config(1), handler);
    wait_state(&ledger, "cpu", State::Succeeded).await;
    let report = runner.stop().await;
    let (beats, beats_while_blocked, states, last) = observer.join().unwrap();

    assert_eq!(
        (report.attempts.claimed, report.attempts.succeeded),
        (1, 1),
        "{report:?}"
    );
    assert_eq!(last.result, Some(json!("done")));
    // Three heartbeat values seen while the thread was blocked: two were sent during it.
    assert!(
        beats_while_blocked.len() >= 3,
        "heartbeats while blocked: {beats_while_blocked:?}"
    );
    // The first beat may land after the job started blocking; from then on it is running.
    let running: Vec<_> = states
        .iter()
        .skip_while(|s| **s == State::Dispatched)
        .collect();
    assert!(!running.is_empty(), "{states:?}");
    assert!(running.iter().all(|s| **s == State::Running), "{states:?}");
    let finished = last.finished_at.expect("finished");
    let mut instants = beats.clone();
    instants.push(finished);
    for pair in instants.windows(2) {
        let gap = (pair[1] - pair[0]).to_std().unwrap();
        assert!(
            gap <= timeout,
            "a {gap:?} gap between heartbeats: {beats:?}"
        );
    }
}

#[tokio::test]
async fn retryable_error_retries_from_the_checkpoint() {
    let ledger = support::ledger("retry").await;
    let options = EnqueueOptions::new()
        .max_attempts(2)
        .backoff_base(Duration::from_millis(10));
    enqueue(&ledger, "r1", options).await;
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    let handler = move |job: Job| {
        let seen = seen_tx.clone();
        async move {
            seen.send((job.attempt(), job.checkpoint().cloned()))
                .unwrap();
            if job.attempt() == 1 {
                // Set just before failing: the runner must still hand it to attempt 2.
                job.set_checkpoint(json!({ "done": 3 }));
                return Err(JobError::retryable("flaky dependency"));
            }
            Ok(Some(json!({ "resumed_from": job.checkpoint() })))
        }
    };
    let runner = start(&ledger, config(1), handler);
    let e = wait_state(&ledger, "r1", State::Succeeded).await;
    let report = runner.stop().await;

    assert_eq!(recv(&mut seen_rx, "attempt 1").await, (1, None));
    let second = recv(&mut seen_rx, "attempt 2").await;
    assert_eq!(second, (2, Some(json!({ "done": 3 }))));
    assert_eq!(e.attempt, 2);
    assert_eq!(e.result, Some(json!({ "resumed_from": { "done": 3 } })));
    assert_eq!(report.attempts.claimed, 2, "{report:?}");
    assert_eq!(
        (report.attempts.retried, report.attempts.succeeded),
        (1, 1),
        "{report:?}"
    );
}

#[tokio::test]
async fn fatal_error_and_panic_fail_the_execution() {
    let ledger = support::ledger("fatal").await;
    enqueue(&ledger, "bad", EnqueueOptions::new().max_attempts(3)).await;
    enqueue(&ledger, "boom", EnqueueOptions::new().max_attempts(1)).await;
    let handler = |job: Job| async move {
        if job.id() == "boom" {
            panic!("boom");
        }
        Err(JobError::fatal("bad input"))
    };
    let runner = start(&ledger, config(2), handler);
    let bad = wait_state(&ledger, "bad", State::Failed).await;
    let boom = wait_state(&ledger, "boom", State::Failed).await;
    let report = runner.stop().await;

    assert_eq!(
        (bad.attempt, bad.last_error.as_deref()),
        (1, Some("bad input"))
    );
    assert_eq!(boom.last_error.as_deref(), Some("job panicked: boom"));
    assert_eq!(
        (report.attempts.claimed, report.attempts.failed),
        (2, 2),
        "{report:?}"
    );
    assert_eq!(report.attempts.retried, 0, "{report:?}");
}

#[tokio::test]
async fn forgotten_worker_registers_again_under_a_fresh_id() {
    let ledger = support::ledger("reregister").await;
    let runner = start(&ledger, config(1), |_job: Job| async { Ok(None) });
    support::wait_until(WAIT, "the worker registers", || async {
        ledger.workers().await.unwrap().len() == 1
    })
    .await;
    let old = ledger.workers().await.unwrap()[0].worker_id.clone();
    ledger.deregister_worker(&old).await.unwrap();
    let fresh = format!("{old}.r1");
    support::wait_until(WAIT, "the worker registers again", || async {
        let workers = ledger.workers().await.unwrap();
        workers.len() == 1 && workers[0].worker_id == fresh
    })
    .await;
    enqueue(&ledger, "after", EnqueueOptions::new()).await;
    let e = wait_state(&ledger, "after", State::Succeeded).await;
    assert_eq!(
        e.worker.as_deref(),
        Some(fresh.as_str()),
        "claimed under the new id"
    );
    let report = runner.stop().await;
    assert_eq!(
        (report.attempts.claimed, report.attempts.succeeded),
        (1, 1),
        "{report:?}"
    );
    assert!(ledger.workers().await.unwrap().is_empty(), "deregistered");
}
