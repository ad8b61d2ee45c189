//! The fault suite, the network's side: a TCP proxy between the ledger of the producers
//! and workers and Redis delays, stalls and drops their connections under load (the
//! watchdog replicas reach Redis directly). Calls fail with typed errors, a call whose
//! reply never came is reported as an unknown outcome, and retrying with the same ids
//! converges: nothing lost, nothing twice.

use crate::faults_common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use faults_common::proxy::{Mode, Proxy};
use faults_common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_stalled_and_dropped_connections_converge() {
    let redis = redis(&[]);
    let namespace = unstuck::testkit::namespace("fault_net");
    let direct = ledger_at(redis.url(), &namespace).await;
    let proxy = Proxy::start(redis.port()).await;
    let through = ledger_at(&proxy.url, &namespace).await;
    let replicas = Replicas::start(&direct, &["net-a", "net-b", "net-c"]);
    let load = Load::start(&through, 2, 150, 4);
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.set(Mode::Delay(Duration::from_millis(300)));
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.set(Mode::Blackhole); // longer than the 2 s response timeout
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.set(Mode::Pass);
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.set(Mode::Drop);
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.set(Mode::Pass);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (counters, ids) = load.finish(&through, Duration::from_secs(40)).await;
    replicas.stop().await;
    let a = audit(&direct, &redis, &ids).await;
    let errors = counters.errors.load(Ordering::Relaxed);
    let unknown = counters.unknown_outcomes.load(Ordering::Relaxed);
    let refusals = counters.refusals.load(Ordering::Relaxed);
    report(
        "TCP proxy: 300 ms delay 2 s, blackhole 3 s, connections dropped 2 s",
        "2 producers ~150/s, 4 workers (through the proxy), 3 replicas (direct)",
        &a,
        &format!(
            "{errors} calls failed, all transient ({unknown} unknown outcomes); enqueues retried with the same ids converged"
        ),
    );
    assert!(
        unknown > 0,
        "a stall past the response timeout is an unknown outcome"
    );
    assert_eq!(
        refusals, 0,
        "no fault is reported as a refusal: {:?}",
        counters.samples
    );
    assert_clean(&a);
}

/// `Ledger::watch_events` rides out a network partition without losing its place: the
/// events written while its connection was cut are observed once it heals, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_cut_off_from_redis_sees_what_was_written_meanwhile() {
    let redis = redis(&[]);
    let namespace = unstuck::testkit::namespace("fault_watch");
    let direct = ledger_at(redis.url(), &namespace).await;
    let proxy = Proxy::start(redis.port()).await;
    let through = ledger_at(&proxy.url, &namespace).await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = tokio_util::sync::CancellationToken::new();
    let watcher = {
        let (seen, stop) = (seen.clone(), stop.clone());
        tokio::spawn(async move {
            through
                .watch_events(Vec::new(), &stop, |e| {
                    if e.to == Some(unstuck::State::Queued) {
                        seen.lock().unwrap().push(e.execution_id.clone());
                    }
                })
                .await
        })
    };
    let enqueue = |id: String| {
        let direct = direct.clone();
        async move {
            direct
                .enqueue(
                    "w",
                    &serde_json::json!({}),
                    unstuck::EnqueueOptions::new().id(id),
                )
                .await
                .unwrap();
        }
    };
    let saw = |id: &'static str| {
        let seen = seen.clone();
        move || seen.lock().unwrap().iter().any(|s| s.starts_with(id))
    };
    // The watcher follows from when it started: enqueue until one is seen.
    let mut n = 0;
    while !saw("ready")() {
        enqueue(format!("ready-{n}")).await;
        n += 1;
        assert!(n < 200, "the watcher never saw an event");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.set(Mode::Drop);
    for id in ["cut-1", "cut-2", "cut-3"] {
        enqueue(id.into()).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await; // its reads fail meanwhile
    proxy.set(Mode::Pass);
    enqueue("healed".into()).await;
    let healed = saw("healed");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !healed() {
        assert!(
            std::time::Instant::now() < deadline,
            "the watcher never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    watcher.await.unwrap().unwrap();
    let seen = seen.lock().unwrap().clone();
    for id in ["cut-1", "cut-2", "cut-3", "healed"] {
        assert_eq!(
            seen.iter().filter(|s| *s == id).count(),
            1,
            "{id} seen once: {seen:?}"
        );
    }
}
