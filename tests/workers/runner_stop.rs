//! The worker-side runner stopping jobs: cancellation, a job that ignores it, a lost
//! attempt, shutdown.

use crate::runner_common;
use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use runner_common::*;
use serde_json::json;
use tokio::sync::mpsc;
use unstuck::*;

#[tokio::test]
async fn cancel_stops_the_job_and_frees_its_slot() {
    let ledger = support::ledger("cancel").await;
    let one_slot = QueueSettings {
        capacity: Some(1),
        ..QueueSettings::default()
    };
    ledger.set_queue("q", &one_slot).await.unwrap();
    let beat = EnqueueOptions::new().heartbeat_timeout(Duration::from_millis(300));
    enqueue(&ledger, "c1", beat.clone()).await;
    enqueue(&ledger, "c2", beat).await;
    let (signal_tx, mut signal_rx) = mpsc::unbounded_channel();
    let handler = move |job: Job| {
        let signal = signal_tx.clone();
        async move {
            if job.id() == "c2" {
                return Ok(Some(json!("second")));
            }
            job.set_progress("waiting for cancel");
            job.cancelled().await;
            signal.send(job.stop_signal()).unwrap();
            // Either way, the runner acknowledges the cancellation.
            Err(JobError::retryable("stopped"))
        }
    };
    let runner = start(&ledger, config(2), handler);

    support::wait_until(WAIT, "c1 reports progress and is listed", || async {
        let e = ledger.get("q", "c1").await.unwrap();
        let workers = ledger.workers().await.unwrap();
        e.progress.as_deref() == Some("waiting for cancel")
            && workers.len() == 1
            && workers[0].running == vec![("q".to_owned(), "c1".to_owned())]
    })
    .await;
    assert_eq!(ledger.get("q", "c2").await.unwrap().state, State::Queued);

    let outcome = ledger.cancel("q", "c1", "not needed").await.unwrap();
    assert!(
        matches!(outcome, CancelOutcome::Requested { .. }),
        "{outcome:?}"
    );
    let signal = recv(&mut signal_rx, "the job to see the cancellation").await;
    assert_eq!(signal, Some(StopSignal::CancelRequested));
    let c1 = wait_state(&ledger, "c1", State::Cancelled).await;
    assert_eq!(c1.stop.map(|s| s.reason), Some(StopReason::Cancelled));
    // The freed slot lets the second execution run.
    let c2 = wait_state(&ledger, "c2", State::Succeeded).await;
    assert_eq!(c2.result, Some(json!("second")));

    let report = runner.stop().await;
    assert_eq!(report.attempts.claimed, 2, "{report:?}");
    assert_eq!(
        (report.attempts.cancelled, report.attempts.succeeded),
        (1, 1),
        "{report:?}"
    );
    assert_eq!(
        (report.attempts.failed, report.attempts.retried),
        (0, 0),
        "{report:?}"
    );
}

/// Sets its flag when dropped: tells that an aborted job's future was dropped.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn job_ignoring_cancel_is_aborted_after_the_grace() {
    let ledger = support::ledger("abort").await;
    let beat = EnqueueOptions::new().heartbeat_timeout(Duration::from_millis(300));
    enqueue(&ledger, "stubborn", beat).await;
    let dropped = Arc::new(AtomicBool::new(false));
    let d = dropped.clone();
    let handler = move |_job: Job| {
        let flag = DropFlag(d.clone());
        async move {
            let _flag = flag;
            std::future::pending::<()>().await;
            Ok(None)
        }
    };
    let config = RunnerConfig {
        stop_grace: Duration::from_millis(200),
        ..config(1)
    };
    let runner = start(&ledger, config, handler);
    wait_state(&ledger, "stubborn", State::Running).await;
    ledger.cancel("q", "stubborn", "stop it").await.unwrap();
    wait_state(&ledger, "stubborn", State::Cancelled).await;
    assert!(
        dropped.load(Ordering::SeqCst),
        "the job's future was aborted"
    );
    let report = runner.stop().await;
    assert_eq!(
        (report.attempts.claimed, report.attempts.cancelled),
        (1, 1),
        "{report:?}"
    );
}

#[tokio::test]
async fn lost_attempt_stops_the_job_and_drops_its_result() {
    let ledger = support::ledger("lost").await;
    let options = EnqueueOptions::new()
        .heartbeat_timeout(Duration::from_millis(300))
        .backoff_base(Duration::from_secs(3600))
        .max_attempts(3);
    enqueue(&ledger, "l1", options).await;
    let (token_tx, mut token_rx) = mpsc::unbounded_channel();
    let (signal_tx, mut signal_rx) = mpsc::unbounded_channel();
    let handler = move |job: Job| {
        let (token, signal) = (token_tx.clone(), signal_tx.clone());
        async move {
            token.send(job.token().clone()).unwrap();
            job.cancelled().await;
            signal.send(job.stop_signal()).unwrap();
            Ok(Some(json!("late result")))
        }
    };
    let runner = start(&ledger, config(1), handler);
    let token = recv(&mut token_rx, "the job's token").await;
    // Someone else ends the attempt: it is retried (later), so the runner's is stale.
    let failed = ledger.fail(&token, "taken away", true).await.unwrap();
    assert!(
        matches!(failed, FailOutcome::RetryScheduled { .. }),
        "{failed:?}"
    );
    let signal = recv(&mut signal_rx, "the job to see the loss").await;
    assert_eq!(signal, Some(StopSignal::AttemptLost));

    support::wait_until(WAIT, "the runner lets go of the lost attempt", || async {
        ledger.workers().await.unwrap()[0].running.is_empty()
    })
    .await;
    let report = runner.stop().await;
    assert_eq!(
        (report.attempts.claimed, report.attempts.lost),
        (1, 1),
        "{report:?}"
    );
    assert_eq!(
        (report.attempts.succeeded, report.attempts.failed),
        (0, 0),
        "{report:?}"
    );
    let e = ledger.get("q", "l1").await.unwrap();
    assert_eq!((e.state, e.attempt, e.result), (State::Queued, 1, None));
    assert_eq!(e.last_error.as_deref(), Some("taken away"));
}

#[tokio::test]
async fn shutdown_stops_claiming_and_stops_running_jobs() {
    let ledger = support::ledger("shutdown").await;
    for id in ["s1", "s2", "s3"] {
        enqueue(&ledger, id, EnqueueOptions::new()).await;
    }
    let (signal_tx, mut signal_rx) = mpsc::unbounded_channel();
    let handler = move |job: Job| {
        let signal = signal_tx.clone();
        async move {
            signal.send((job.id().to_owned(), None)).unwrap();
            job.set_checkpoint(json!({ "at": job.id() }));
            job.cancelled().await;
            signal
                .send((job.id().to_owned(), job.stop_signal()))
                .unwrap();
            Err(JobError::retryable("interrupted by shutdown"))
        }
    };
    let runner = start(&ledger, config(1), handler);
    assert_eq!(
        recv(&mut signal_rx, "s1 to start").await,
        ("s1".into(), None)
    );

    let report = runner.stop().await;
    let stopped = recv(&mut signal_rx, "s1 to see the shutdown").await;
    assert_eq!(stopped, ("s1".into(), Some(StopSignal::Shutdown)));
    assert_eq!(
        (report.attempts.claimed, report.attempts.retried),
        (1, 1),
        "{report:?}"
    );
    let s1 = ledger.get("q", "s1").await.unwrap();
    assert_eq!((s1.state, s1.attempt), (State::Queued, 1));
    assert_eq!(s1.checkpoint, Some(json!({ "at": "s1" })));
    for id in ["s2", "s3"] {
        let e = ledger.get("q", id).await.unwrap();
        assert_eq!(
            (e.state, e.attempt),
            (State::Queued, 0),
            "{id} never claimed"
        );
    }
    assert_eq!(ledger.slots_in_use("q").await.unwrap(), 0);
    assert!(ledger.workers().await.unwrap().is_empty(), "deregistered");
}
