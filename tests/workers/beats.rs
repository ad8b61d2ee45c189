//! The Runner and `unstuck exec` batch their heartbeats: beats of many attempts that fall
//! due together go in one script call, and no beat goes later than one interval (a third of
//! the heartbeat timeout) after the one before it, so the watchdog judges nothing stuck.

use crate::runner_common;
use crate::support;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use runner_common::JobResult;
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use unstuck::supervise::{ExecConfig, Supervisor};
use unstuck::testkit::beats::MAX_HOLD;
use unstuck::testkit::{BeatLog, BeatRecord, RedisProcess, RedisProcessOptions, invariants};
use unstuck::watchdog::{Watchdog, WatchdogConfig};
use unstuck::*;

const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(3);
const WAIT: Duration = Duration::from_secs(30);
/// How late a timer or a thread may wake on a loaded machine (two cores shared with other
/// builds, load averages above 10 seen): a sleep until an instant ends after it, never
/// before. A twelfth of the timeout, far below what it leaves (two more intervals). What
/// the batcher itself adds is checked exactly, from the instants it planned.
const SCHEDULING: Duration = Duration::from_millis(250);

fn options() -> EnqueueOptions {
    EnqueueOptions::new().heartbeat_timeout(HEARTBEAT_TIMEOUT)
}

/// Enqueues `<queue>0..n`, a queue with room for a thousand at once.
async fn enqueue_many(ledger: &Ledger, queue: &str, n: usize) {
    let settings = QueueSettings {
        capacity: Some(1000),
        ..QueueSettings::default()
    };
    ledger.set_queue(queue, &settings).await.unwrap();
    for i in 0..n {
        let options = options().id(format!("{queue}{i}"));
        ledger.enqueue(queue, &json!({}), options).await.unwrap();
    }
}

/// A job that holds its execution until `go` turns true.
fn held_job(
    go: &watch::Receiver<bool>,
) -> impl Fn(Job) -> futures_util::future::BoxFuture<'static, JobResult> + Send + Sync + 'static {
    let go = go.clone();
    move |_job: Job| {
        let mut go = go.clone();
        Box::pin(async move {
            let _ = go.wait_for(|go| *go).await;
            Ok(Some(json!("done")))
        })
    }
}

fn runner_config(queue: &str, concurrency: usize) -> RunnerConfig {
    RunnerConfig {
        concurrency,
        poll_interval: Duration::from_millis(50),
        worker_heartbeat_interval: Duration::from_secs(1),
        ..RunnerConfig::new(queue)
    }
}

async fn count(ledger: &Ledger, queue: &str, state: State) -> usize {
    let page = ledger.list(queue, state, None, 1000).await.unwrap();
    page.items.len()
}

/// The beats of `queue`, by execution, in the order they were sent.
fn by_execution(records: &[BeatRecord], queue: &str) -> BTreeMap<String, Vec<BeatRecord>> {
    let mut map: BTreeMap<String, Vec<BeatRecord>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.queue == queue) {
        map.entry(r.execution_id.clone())
            .or_default()
            .push(r.clone());
    }
    for beats in map.values_mut() {
        beats.sort_by_key(|r| r.sent);
    }
    map
}

/// No beat was meant to wait more than the batcher's hold for company, and each beat of
/// every execution left at most a third of the heartbeat timeout after the one before it
/// (plus [`SCHEDULING`]).
fn assert_gaps(records: &[BeatRecord], queue: &str) {
    let limit = HEARTBEAT_TIMEOUT / 3 + SCHEDULING;
    for (id, beats) in by_execution(records, queue) {
        for beat in &beats {
            assert!(
                beat.planned <= beat.handed + MAX_HOLD,
                "{queue}/{id}: a beat was held {:?} for company",
                beat.planned - beat.handed
            );
        }
        for pair in beats.windows(2) {
            let gap = pair[1].sent - pair[0].sent;
            assert!(
                gap <= limit,
                "{queue}/{id}: a beat left {gap:?} after the one before it (at most {limit:?})"
            );
        }
    }
}

/// Beats of `queue` and the calls that carried them.
fn beats_and_calls(records: &[BeatRecord], queue: &str) -> (usize, usize) {
    let beats: Vec<&BeatRecord> = records.iter().filter(|r| r.queue == queue).collect();
    let calls: HashSet<u64> = beats.iter().map(|r| r.call).collect();
    (beats.len(), calls.len())
}

/// Stuck verdicts of `queue`'s executions `<queue>0..n`.
async fn stuck_verdicts(ledger: &Ledger, queue: &str, n: usize) -> Vec<String> {
    let mut stuck = Vec::new();
    for i in 0..n {
        let id = format!("{queue}{i}");
        for event in ledger.execution_events(queue, &id).await.unwrap() {
            if event.to == Some(State::Stuck) {
                stuck.push(format!("{id}: {}", event.reason));
            }
        }
    }
    stuck
}

/// Script calls (EVALSHA and EVAL) the server has served.
async fn script_calls(admin: &mut MultiplexedConnection) -> u64 {
    support::script_calls(admin).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_holding_many_executions_sends_few_heartbeat_calls() {
    // A server of its own, so `INFO commandstats` counts only this test's calls.
    let redis = RedisProcess::start(RedisProcessOptions::default()).expect("redis-server starts");
    let ledger = Ledger::connect(LedgerConfig::new(redis.url()))
        .await
        .unwrap();
    let mut admin = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let log = BeatLog::start(&ledger);
    const N: usize = 200;
    let (go, held) = watch::channel(false);
    let runner = runner_common::start(&ledger, runner_config("q", N), held_job(&held));
    // One at a time, each once the one before runs: their beats fall due at moments spread
    // over more than an interval, not together, and only the batcher brings them in step.
    enqueue_many(&ledger, "q", 0).await;
    for i in 0..N {
        let id = format!("q{i}");
        ledger
            .enqueue("q", &json!({}), options().id(&id))
            .await
            .unwrap();
        support::wait_until(WAIT, &format!("{id} runs"), || async {
            ledger.get("q", &id).await.unwrap().state == State::Running
        })
        .await;
    }

    // While every job waits, the only scripts are heartbeats and a registry beat a second.
    let from = Instant::now();
    let calls_before = script_calls(&mut admin).await;
    let beats_since = |records: Vec<BeatRecord>| records.iter().filter(|r| r.sent > from).count();
    support::wait_until(WAIT, "three more beats of each", || async {
        beats_since(log.records()) >= 3 * N
    })
    .await;
    let calls = script_calls(&mut admin).await - calls_before;
    let to = Instant::now();
    let beats = log
        .records()
        .iter()
        .filter(|r| r.sent > from && r.replied < to)
        .count();
    assert!(
        calls * 5 < beats as u64,
        "{calls} script calls for {beats} beats: not batched"
    );

    go.send_replace(true);
    support::wait_until(WAIT, "all 200 succeeded", || async {
        count(&ledger, "q", State::Succeeded).await == N
    })
    .await;
    let report = runner.stop().await;
    assert_eq!(
        (
            report.attempts.succeeded,
            report.attempts.lost,
            report.attempts.unreported
        ),
        (N as u64, 0, 0),
        "{report:?}"
    );
    let records = log.records();
    let (beats, calls) = beats_and_calls(&records, "q");
    assert!(calls * 5 < beats, "{beats} beats went in {calls} calls");
    assert!(records.iter().all(|r| r.ok), "every beat was accepted");
    assert_gaps(&records, "q");
    invariants::assert_ok(&ledger, &["q"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_beats_of_the_runner_and_exec_never_leave_a_third_of_the_timeout_apart() {
    let ledger = support::ledger("beats_gaps").await;
    let log = BeatLog::start(&ledger);
    const JOBS: usize = 100;
    const COMMANDS: usize = 40;
    enqueue_many(&ledger, "rust", JOBS).await;
    enqueue_many(&ledger, "cmd", COMMANDS).await;

    let watchdog_config = WatchdogConfig {
        lease_ttl: Duration::from_millis(500),
        max_poll_interval: Duration::from_millis(20),
        systemic_share: 1.0,
        ..WatchdogConfig::default()
    };
    let watchdog = Watchdog::new(ledger.clone(), watchdog_config).unwrap();
    let stop_watchdog = CancellationToken::new();
    let replica = {
        let stop = stop_watchdog.clone();
        tokio::spawn(async move { watchdog.run(stop).await })
    };

    let (go, held) = watch::channel(false);
    let runner = runner_common::start(&ledger, runner_config("rust", JOBS), held_job(&held));
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let go_file = scratch.path().join("go");
    let script = format!(
        "while [ ! -e '{}' ]; do sleep 0.05; done",
        go_file.display()
    );
    let exec_config = ExecConfig {
        concurrency: COMMANDS,
        state_dir: scratch.path().join("state"),
        worker_heartbeat_interval: Duration::from_secs(1),
        claim_wait: Duration::from_millis(50),
        stop_grace: Duration::from_millis(500),
        subreaper: false,
        ..ExecConfig::new("cmd", vec!["sh".into(), "-c".into(), script.into()])
    };
    let stop_exec = CancellationToken::new();
    let supervisor = Supervisor::new(ledger.clone(), exec_config).expect("valid exec config");
    let exec = tokio::spawn(supervisor.run(stop_exec.clone()));

    // Every execution beats at least five times: long enough for attempts that started
    // apart to beat together, and for a late beat to show.
    support::wait_until(WAIT, "five beats of every execution", || async {
        let records = log.records();
        ["rust", "cmd"].iter().all(|queue| {
            let beats = by_execution(&records, queue);
            let n = if *queue == "rust" { JOBS } else { COMMANDS };
            beats.len() == n && beats.values().all(|b| b.len() >= 5)
        })
    })
    .await;
    go.send_replace(true);
    std::fs::write(&go_file, b"").unwrap();
    support::wait_until(WAIT, "every execution succeeded", || async {
        count(&ledger, "rust", State::Succeeded).await == JOBS
            && count(&ledger, "cmd", State::Succeeded).await == COMMANDS
    })
    .await;
    let report = runner.stop().await;
    assert_eq!(report.attempts.succeeded, JOBS as u64, "{report:?}");
    stop_exec.cancel();
    let exec_report = tokio::time::timeout(WAIT, exec)
        .await
        .expect("the supervisor stops")
        .unwrap()
        .unwrap();
    assert_eq!(
        exec_report.attempts.succeeded, COMMANDS as u64,
        "{exec_report:?}"
    );
    stop_watchdog.cancel();
    replica.await.unwrap().unwrap();

    let records = log.records();
    for (queue, n) in [("rust", JOBS), ("cmd", COMMANDS)] {
        assert_gaps(&records, queue);
        let (beats, calls) = beats_and_calls(&records, queue);
        assert!(beats >= 5 * n, "{queue}: {beats} beats");
        assert!(
            calls * 5 < beats,
            "{queue}: {beats} beats went in {calls} calls"
        );
        assert_eq!(
            stuck_verdicts(&ledger, queue, n).await,
            Vec::<String>::new()
        );
    }
    invariants::assert_ok(&ledger, &["rust", "cmd"]).await;
}
