//! A healthy worker is never judged gone because the watchdog's `worker_timeout` is shorter
//! than the worker's registry heartbeat interval: a worker declares its interval and is
//! given three of them, and a worker whose executions still heartbeat is alive whatever
//! the registry says. A worker that is really gone is still found.

use crate::runner_common;
use crate::support;
use crate::watchdog_common;

use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;
use unstuck::watchdog::{Watchdog, WatchdogConfig};
use unstuck::*;
use watchdog_common::*;

const SHORT_WORKER_TIMEOUT: Duration = Duration::from_millis(1500);

async fn worker_lost_events(l: &Ledger, q: &str) -> Vec<Event> {
    events(l, l.partition_of(q))
        .await
        .into_iter()
        .filter(|e| e.reason == "worker_lost")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_on_defaults_survives_a_watchdog_with_a_short_worker_timeout() {
    let l = support::ledger("wt_runner").await;
    let q = "q";
    // The runner beats the registry every 5 s (its default); the watchdog would judge a
    // worker gone after 1.5 s of silence. Each job runs 4 s, heartbeating all along.
    let runner = RunnerConfig {
        concurrency: 4,
        ..RunnerConfig::new(q)
    };
    assert_eq!(runner.worker_heartbeat_interval, Duration::from_secs(5));
    let running = runner_common::start(&l, runner, |job: Job| async move {
        for step in 0..8 {
            job.set_progress(format!("step {step}"));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Ok(Some(json!({"done": true})))
    });
    let stop = CancellationToken::new();
    let config = WatchdogConfig {
        worker_timeout: SHORT_WORKER_TIMEOUT,
        reconcile_interval: Duration::from_millis(100),
        ..running_config("r1")
    };
    let wd = Watchdog::new(reconnect(&l).await, config).unwrap();
    let replica = tokio::spawn({
        let (wd, stop) = (wd.clone(), stop.clone());
        async move { wd.run(stop).await }
    });
    for i in 0..4 {
        let opts = EnqueueOptions::new()
            .heartbeat_timeout(Duration::from_secs(1))
            .max_attempts(2);
        runner_common::enqueue(&l, &format!("job{i}"), opts).await;
    }
    for i in 0..4 {
        let e = runner_common::wait_state(&l, &format!("job{i}"), State::Succeeded).await;
        assert_eq!(e.attempt, 1, "job{i} finished on its first attempt");
    }
    let report = running.stop().await;
    assert_eq!(
        (report.attempts.succeeded, report.attempts.lost),
        (4, 0),
        "{report:?}"
    );
    stop.cancel();
    replica.await.unwrap().unwrap();
    assert!(worker_lost_events(&l, q).await.is_empty());
    assert_eq!(wd.totals().orphaned, 0, "{:?}", wd.totals());
}

/// A replica driven by hand that judges workers gone after 200 ms.
async fn replica(l: &Ledger) -> Watchdog {
    let config = WatchdogConfig {
        worker_timeout: Duration::from_millis(200),
        ..config("r1")
    };
    sole_replica(l, config).await
}

/// An execution dispatched to `worker` whose own timers are far off.
fn far_timers() -> EnqueueOptions {
    EnqueueOptions::new()
        .start_grace(Duration::from_secs(60))
        .heartbeat_timeout(Duration::from_secs(60))
        .backoff_base(Duration::from_secs(60))
}

#[tokio::test]
async fn a_declared_registry_interval_gives_the_worker_three_of_them() {
    let l = support::ledger("wt_declared").await;
    let wd = replica(&l).await;
    let q = "declared";
    let p = l.partition_of(q);
    let reg = WorkerRegistration::for_this_process("v1", vec![q.to_owned()])
        .heartbeat_interval(Duration::from_millis(500));
    l.register_worker(&reg).await.unwrap();
    let info = l.worker(&reg.worker_id).await.unwrap().unwrap();
    assert_eq!(info.heartbeat_interval, Some(Duration::from_millis(500)));
    assert_eq!(
        info.gone_after(Duration::from_millis(200)),
        Duration::from_millis(1500)
    );
    dispatch(&l, q, "held", far_timers(), &reg.worker_id).await;

    // Past worker_timeout, well within three intervals: alive.
    pass(600).await;
    let report = wd.reconcile(p).await.unwrap().unwrap();
    assert_eq!(report.orphaned, 0, "{report:?}");
    assert_eq!(state(&l, q, "held").await, State::Dispatched);

    // Three intervals without a registry beat: gone, its execution orphaned.
    pass(1100).await;
    let report = wd.reconcile(p).await.unwrap().unwrap();
    assert_eq!((report.orphaned, report.retried), (1, 1), "{report:?}");
    let lost = worker_lost_events(&l, q).await;
    assert_eq!(lost.len(), 1);
    assert!(lost[0].detail.contains("1500ms"), "{}", lost[0].detail);
}

#[tokio::test]
async fn a_worker_whose_executions_heartbeat_is_not_gone() {
    let l = support::ledger("wt_beating").await;
    let wd = replica(&l).await;
    let q = "beating";
    let p = l.partition_of(q);
    // No interval declared, and no registry beat after registering.
    let reg = WorkerRegistration::for_this_process("v1", vec![q.to_owned()]);
    l.register_worker(&reg).await.unwrap();
    let claim = dispatch(&l, q, "alive", far_timers(), &reg.worker_id).await;

    // The registry entry goes stale, but the execution's own heartbeats keep arriving.
    let began = tokio::time::Instant::now();
    while began.elapsed() < Duration::from_millis(800) {
        beat(&l, &claim.token, Heartbeat::new()).await;
        pass(50).await;
        let report = wd.reconcile(p).await.unwrap().unwrap();
        assert_eq!(report.orphaned, 0, "{report:?}");
    }
    assert_eq!(state(&l, q, "alive").await, State::Running);

    // They stop: once the last one is older than the worker's timeout, it is orphaned.
    pass(300).await;
    let report = wd.reconcile(p).await.unwrap().unwrap();
    assert_eq!((report.orphaned, report.retried), (1, 1), "{report:?}");
    assert_eq!(state(&l, q, "alive").await, State::Queued);
    assert_eq!(worker_lost_events(&l, q).await.len(), 1);
    support::invariants::assert_ok(&l, &[q]).await;
}
