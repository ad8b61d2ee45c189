//! Tier 1 and the local actions as workers see them: the Rust runner and `unstuck exec`
//! honour a restart request in their registry heartbeat reply; a local `unstuck exec` that
//! cannot answer (SIGSTOPped) is terminated, then killed, and its successor cleans up.

use crate::exec_common;
use crate::runner_common;
use crate::support;
use crate::watchdog_common;

use std::time::Duration;

use exec_common::{Scratch, group_members, running, wait_gone};
use nix::sys::signal::Signal;
use unstuck::watchdog::{TierConfig, Watchdog, WatchdogConfig};
use unstuck::*;

const COOL: Duration = Duration::from_millis(200);

/// A replica that expects another version than this build's, judging by hand.
async fn replica(l: &Ledger) -> Watchdog {
    let config = WatchdogConfig {
        worker_timeout: Duration::from_millis(300),
        expected_worker_version: Some("99.0.0".into()),
        tiers: TierConfig {
            enabled: true,
            cooldown_cooperative: COOL,
            cooldown_terminate: COOL,
            cooldown_kill: COOL,
            signal_wait: Duration::from_millis(300),
            ..TierConfig::default()
        },
        ..watchdog_common::config("r1")
    };
    watchdog_common::sole_replica(l, config).await
}

async fn judge_until_tier(l: &Ledger, wd: &Watchdog, worker: &str, tier: u8) {
    support::wait_until(
        exec_common::WAIT,
        &format!("{worker} at tier {tier}"),
        || async {
            let _ = wd.judge_workers().await.unwrap();
            l.worker(worker)
                .await
                .unwrap()
                .is_some_and(|w| w.remediation.tier >= tier)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_asked_to_restart_hands_back_its_job_and_stops() {
    let l = support::ledger("req_runner").await;
    let wd = replica(&l).await;
    runner_common::enqueue(&l, "j", EnqueueOptions::new().backoff_base(Duration::ZERO)).await;
    let handler = |job: Job| async move {
        job.cancelled().await;
        Err(JobError::retryable("stopped"))
    };
    let runner = runner_common::start(&l, runner_common::config(1), handler);
    runner_common::wait_state(&l, "j", State::Running).await;
    let worker = l.workers().await.unwrap()[0].worker_id.clone();

    let report = wd.judge_workers().await.unwrap();
    assert_eq!(report.escalated, vec![(worker.clone(), 1)]);
    // It stops by itself (nothing cancels its shutdown token).
    let report = tokio::time::timeout(runner_common::WAIT, runner.task)
        .await
        .expect("the runner stops when asked")
        .unwrap()
        .unwrap();
    assert_eq!(
        report.stopped_by,
        Some(WorkerRequest::Restart),
        "{report:?}"
    );
    assert_eq!(
        (report.attempts.claimed, report.attempts.retried),
        (1, 1),
        "{report:?}"
    );
    let e = l.get("q", "j").await.unwrap();
    assert_eq!(
        (e.state, e.attempt),
        (State::Queued, 1),
        "handed back: {e:?}"
    );
    assert!(l.workers().await.unwrap().is_empty(), "deregistered");
}

#[tokio::test]
async fn unstuck_exec_asked_to_restart_stops_its_command_and_exits_75() {
    let l = support::ledger("req_exec").await;
    let wd = replica(&l).await;
    let s = Scratch::new();
    exec_common::enqueue(&l, "e", 3).await;
    let args = [
        "--stop-grace",
        "300ms",
        "--worker-heartbeat-interval",
        "50ms",
    ];
    let mut exec = exec_common::start(&l, &s, &args, "echo $$ > e.pids; sleep 30");
    let pids = s.wait_for_pids("e.pids", 1).await;
    exec_common::wait_state(&l, "e", State::Running).await;
    let worker = l.workers().await.unwrap()[0].worker_id.clone();

    judge_until_tier(&l, &wd, &worker, 1).await;
    assert_eq!(exec.exited().await, Some(75), "stderr:\n{}", exec.stderr());
    wait_gone(&pids).await;
    assert!(group_members(pids[0]).is_empty());
    let e = l.get("q", "e").await.unwrap();
    assert_eq!(
        (e.state, e.attempt),
        (State::Queued, 1),
        "handed back: {e:?}"
    );
    assert!(l.workers().await.unwrap().is_empty(), "deregistered");
}

#[tokio::test]
async fn a_stopped_unstuck_exec_is_terminated_then_killed_and_its_successor_cleans_up() {
    let l = support::ledger("req_exec_killed").await;
    let wd = replica(&l).await;
    let s = Scratch::new();
    exec_common::enqueue(&l, "e", 3).await;
    let script = r#"if [ "$UNSTUCK_ATTEMPT" -gt 1 ]; then exit 0; fi
echo $$ > e.pids; sleep 30"#;
    let args = [
        "--stop-grace",
        "300ms",
        "--worker-heartbeat-interval",
        "50ms",
    ];
    let mut exec = exec_common::start(&l, &s, &args, script);
    let pids = s.wait_for_pids("e.pids", 1).await;
    exec_common::wait_state(&l, "e", State::Running).await;
    let worker = l.workers().await.unwrap()[0].worker_id.clone();

    // Frozen: it cannot read the restart request, nor act on SIGTERM.
    exec.signal(Signal::SIGSTOP);
    judge_until_tier(&l, &wd, &worker, 2).await;
    support::wait_until(exec_common::WAIT, "SIGTERM failed", || async {
        let r = l.worker(&worker).await.unwrap().unwrap().remediation;
        r.action.as_deref() == Some("failed")
    })
    .await;
    judge_until_tier(&l, &wd, &worker, 3).await;
    assert_eq!(exec.exited().await, None, "killed by SIGKILL");
    assert!(running(pids[0]), "its command outlived it");
    support::wait_until(exec_common::WAIT, "SIGKILL recorded", || async {
        let r = l.worker(&worker).await.unwrap().unwrap().remediation;
        r.action.as_deref() == Some("ok")
    })
    .await;

    // Its process manager starts another: the leftover group is stopped, the execution
    // retried once, and succeeds.
    let mut next = exec_common::start(&l, &s, &args, script);
    let e = exec_common::wait_state(&l, "e", State::Succeeded).await;
    assert_eq!(e.attempt, 2);
    wait_gone(&pids).await;
    let retries = exec_common::details(&l, "e", "retry_scheduled").await;
    assert_eq!(retries.len(), 1, "{retries:?}");
    let moves: Vec<String> = l
        .worker_events(None, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.worker_id == worker)
        .map(|e| e.reason)
        .collect();
    assert_eq!(
        moves,
        [
            "tier_1",
            "tier_2",
            "action_failed",
            "tier_3",
            "action_succeeded"
        ]
    );
    assert_eq!(next.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_asked_to_drain_finishes_its_job_claims_nothing_more_and_stops() {
    let l = support::ledger("req_runner_drain").await;
    runner_common::enqueue(&l, "first", EnqueueOptions::new()).await;
    let (release, wait) = tokio::sync::watch::channel(false);
    let handler = move |_job: Job| {
        let mut wait = wait.clone();
        async move {
            let _ = wait.wait_for(|go| *go).await;
            Ok(None)
        }
    };
    let runner = runner_common::start(&l, runner_common::config(1), handler);
    runner_common::wait_state(&l, "first", State::Running).await;
    let worker = l.workers().await.unwrap()[0].worker_id.clone();
    l.request_worker(&worker, WorkerRequest::Drain, "deploy")
        .await
        .unwrap();
    let asked_at = l
        .worker_events(None, 10)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.reason == "asked_to_drain")
        .expect("the request is an event")
        .at;
    // The next registry beat carries the request; only then is more work queued.
    support::wait_until(exec_common::WAIT, "a beat after the request", || async {
        l.worker(&worker)
            .await
            .unwrap()
            .is_some_and(|w| w.last_seen_at > asked_at)
    })
    .await;
    runner_common::enqueue(&l, "second", EnqueueOptions::new()).await;
    release.send(true).unwrap();
    let report = tokio::time::timeout(runner_common::WAIT, runner.task)
        .await
        .expect("the runner stops after draining")
        .unwrap()
        .unwrap();
    assert_eq!(report.stopped_by, Some(WorkerRequest::Drain), "{report:?}");
    assert_eq!(
        (report.attempts.claimed, report.attempts.succeeded),
        (1, 1),
        "{report:?}"
    );
    assert_eq!(l.get("q", "second").await.unwrap().state, State::Queued);
    assert!(l.workers().await.unwrap().is_empty(), "deregistered");
}

#[tokio::test]
async fn unstuck_exec_asked_to_drain_lets_its_command_finish_and_exits_0() {
    let l = support::ledger("req_exec_drain").await;
    let s = Scratch::new();
    exec_common::enqueue(&l, "e", 3).await;
    let args = ["--worker-heartbeat-interval", "50ms"];
    let script = "echo $$ > e.pids; while [ ! -f go ]; do sleep 0.05; done; echo '{\"ok\": 1}'";
    let mut exec = exec_common::start(&l, &s, &args, script);
    s.wait_for_pids("e.pids", 1).await;
    let worker = l.workers().await.unwrap()[0].worker_id.clone();
    l.request_worker(&worker, WorkerRequest::Drain, "deploy")
        .await
        .unwrap();
    support::wait_until(
        exec_common::WAIT,
        "the supervisor says it drains",
        || async { exec.stderr().contains("asked to drain") },
    )
    .await;
    std::fs::write(s.path("go"), "").unwrap();
    assert_eq!(exec.exited().await, Some(0), "stderr:\n{}", exec.stderr());
    let e = exec_common::wait_state(&l, "e", State::Succeeded).await;
    assert_eq!(e.attempt, 1);
    assert!(l.workers().await.unwrap().is_empty(), "deregistered");
    assert!(matches!(
        l.request_worker("nobody", WorkerRequest::Drain, "x").await,
        Err(Error::UnknownWorker { .. })
    ));
}
