//! The one worker loop behind the Runner and `unstuck exec`: long-poll claims, cut short
//! by the watchdog's requests, and claims that follow a renewed worker id.

use crate::runner_common;
use crate::support;

use std::time::Duration;

use runner_common::*;
use tokio_util::sync::CancellationToken;
use unstuck::supervise::{ExecConfig, Supervisor};
use unstuck::*;

/// Longer than every wait of these tests: a claim that had to sit it out would fail them.
const LONG_POLL: Duration = Duration::from_secs(30);

#[tokio::test]
async fn the_runner_claims_work_enqueued_while_its_long_poll_waits() {
    let ledger = support::ledger("loop-long-poll").await;
    let config = RunnerConfig {
        poll_interval: LONG_POLL,
        ..config(1)
    };
    let runner = start(&ledger, config, |_job: Job| async { Ok(None) });
    enqueue(&ledger, "first", EnqueueOptions::new()).await;
    wait_state(&ledger, "first", State::Succeeded).await;
    // The runner is back to claiming, and finds nothing: a poll would now sleep 30 s,
    // a long poll is woken by the enqueue.
    enqueue(&ledger, "second", EnqueueOptions::new()).await;
    wait_state(&ledger, "second", State::Succeeded).await;
    // Shutdown cuts the waiting claim short (`stop` waits at most WAIT, under 30 s).
    let report = runner.stop().await;
    assert_eq!(
        (report.attempts.claimed, report.attempts.succeeded),
        (2, 2),
        "{report:?}"
    );
    assert!(ledger.workers().await.unwrap().is_empty(), "deregistered");
}

#[tokio::test]
async fn a_forgotten_supervisor_claims_under_its_fresh_id() {
    let ledger = support::ledger("loop-exec-renewal").await;
    let state = tempfile::tempdir().expect("a temporary directory");
    let config = ExecConfig {
        state_dir: state.path().to_owned(),
        worker_heartbeat_interval: Duration::from_millis(50),
        claim_wait: LONG_POLL,
        subreaper: false,
        ..ExecConfig::new("q", vec!["sh".into(), "-c".into(), "cat >/dev/null".into()])
    };
    let shutdown = CancellationToken::new();
    let supervisor = Supervisor::new(ledger.clone(), config).expect("valid exec config");
    let task = tokio::spawn(supervisor.run(shutdown.clone()));
    let old = registered(&ledger).await;
    // Forgotten while its claim waits: the claim must not go on under the old id.
    ledger.deregister_worker(&old).await.unwrap();
    let fresh = format!("{old}.r1");
    support::wait_until(WAIT, "the supervisor registers again", || async {
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
    shutdown.cancel();
    let report = tokio::time::timeout(WAIT, task)
        .await
        .expect("the supervisor stops after shutdown")
        .expect("the supervisor task does not panic")
        .expect("the supervisor reports");
    assert_eq!(
        (report.attempts.claimed, report.attempts.succeeded),
        (1, 1),
        "{report:?}"
    );
    assert!(ledger.workers().await.unwrap().is_empty(), "deregistered");
}

#[tokio::test]
async fn a_drain_request_ends_the_runners_waiting_claim() {
    let ledger = support::ledger("loop-drain-idle").await;
    let config = RunnerConfig {
        poll_interval: LONG_POLL,
        ..config(1)
    };
    let runner = start(&ledger, config, |_job: Job| async { Ok(None) });
    let worker = registered(&ledger).await;
    ledger
        .request_worker(&worker, WorkerRequest::Drain, "deploy")
        .await
        .unwrap();
    // It stops by itself (nothing cancels its shutdown token), well before its claim's
    // 30 s wait would have run out.
    let report = tokio::time::timeout(WAIT, runner.task)
        .await
        .expect("the runner stops when asked")
        .unwrap()
        .unwrap();
    assert_eq!(report.stopped_by, Some(WorkerRequest::Drain), "{report:?}");
    assert_eq!(report.attempts.claimed, 0, "{report:?}");
    assert!(ledger.workers().await.unwrap().is_empty(), "deregistered");
}

#[tokio::test]
async fn a_restart_request_ends_the_supervisors_waiting_claim() {
    let ledger = support::ledger("loop-exec-restart-idle").await;
    let state = tempfile::tempdir().expect("a temporary directory");
    let config = ExecConfig {
        state_dir: state.path().to_owned(),
        worker_heartbeat_interval: Duration::from_millis(50),
        claim_wait: LONG_POLL,
        subreaper: false,
        ..ExecConfig::new("q", vec!["true".into()])
    };
    let supervisor = Supervisor::new(ledger.clone(), config).expect("valid exec config");
    let task = tokio::spawn(supervisor.run(CancellationToken::new()));
    let worker = registered(&ledger).await;
    ledger
        .request_worker(&worker, WorkerRequest::Restart, "new version")
        .await
        .unwrap();
    let report = tokio::time::timeout(WAIT, task)
        .await
        .expect("the supervisor stops when asked")
        .unwrap()
        .unwrap();
    assert_eq!(
        report.stopped_by,
        Some(WorkerRequest::Restart),
        "{report:?}"
    );
    assert!(ledger.workers().await.unwrap().is_empty(), "deregistered");
}

/// The id of the one worker, once it registered.
async fn registered(ledger: &Ledger) -> String {
    support::wait_until(WAIT, "the worker registers", || async {
        ledger.workers().await.unwrap().len() == 1
    })
    .await;
    ledger.workers().await.unwrap()[0].worker_id.clone()
}
