//! The worker-side runner against a real Redis: outcomes, heartbeats that survive a job
//! hogging its thread, cancellation, lost attempts, retries with checkpoints, shutdown.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use unstuck::*;

const WAIT: Duration = Duration::from_secs(10);

type JobResult = Result<Option<Value>, JobError>;

/// A runner on its own task, with the token that stops it.
struct Running {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<unstuck::Result<RunReport>>,
}

impl Running {
    async fn stop(self) -> RunReport {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the runner stops after shutdown")
            .expect("the runner task does not panic")
            .expect("the runner reports")
    }
}

/// A runner of queue "q" (every test's queue) that polls and beats its registry entry often.
fn config(concurrency: usize) -> RunnerConfig {
    RunnerConfig {
        concurrency,
        poll_interval: Duration::from_millis(20),
        worker_heartbeat_interval: Duration::from_millis(50),
        ..RunnerConfig::new("q")
    }
}

fn start<H, F>(ledger: &Ledger, config: RunnerConfig, handler: H) -> Running
where
    H: Fn(Job) -> F + Send + Sync + 'static,
    F: Future<Output = JobResult> + Send + 'static,
{
    let runner = Runner::new(ledger.clone(), config).expect("valid runner config");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(runner.run(handler, shutdown.clone()));
    Running { shutdown, task }
}

async fn wait_state(ledger: &Ledger, id: &str, state: State) -> Execution {
    support::wait_until(WAIT, &format!("{id} is {state}"), || async {
        ledger.get("q", id).await.unwrap().state == state
    })
    .await;
    ledger.get("q", id).await.unwrap()
}

async fn recv<T>(rx: &mut mpsc::UnboundedReceiver<T>, what: &str) -> T {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .expect("sender alive")
}

async fn enqueue(ledger: &Ledger, id: &str, options: EnqueueOptions) {
    let payload = json!({ "id": id });
    ledger.enqueue("q", &payload, options.id(id)).await.unwrap();
}

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
    assert_eq!((report.claimed, report.succeeded), (12, 12), "{report:?}");
    let others = [report.failed, report.retried, report.cancelled, report.lost];
    assert_eq!((others, report.unreported), ([0; 4], 0), "{report:?}");
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
    assert_eq!((report.claimed, report.succeeded), (3, 3), "{report:?}");
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

    assert_eq!((report.claimed, report.succeeded), (1, 1), "{report:?}");
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
    assert_eq!(report.claimed, 2, "{report:?}");
    assert_eq!((report.cancelled, report.succeeded), (1, 1), "{report:?}");
    assert_eq!((report.failed, report.retried), (0, 0), "{report:?}");
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
    assert_eq!((report.claimed, report.cancelled), (1, 1), "{report:?}");
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
    assert_eq!((report.claimed, report.lost), (1, 1), "{report:?}");
    assert_eq!((report.succeeded, report.failed), (0, 0), "{report:?}");
    let e = ledger.get("q", "l1").await.unwrap();
    assert_eq!((e.state, e.attempt, e.result), (State::Queued, 1, None));
    assert_eq!(e.last_error.as_deref(), Some("taken away"));
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
    assert_eq!(report.claimed, 2, "{report:?}");
    assert_eq!((report.retried, report.succeeded), (1, 1), "{report:?}");
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
    assert_eq!((report.claimed, report.failed), (2, 2), "{report:?}");
    assert_eq!(report.retried, 0, "{report:?}");
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
    assert_eq!((report.claimed, report.retried), (1, 1), "{report:?}");
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
    assert_eq!((report.claimed, report.succeeded), (1, 1), "{report:?}");
    assert!(ledger.workers().await.unwrap().is_empty(), "deregistered");
}
