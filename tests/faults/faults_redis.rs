//! The fault suite, Redis's side: each case breaks Redis while producers, workers and three
//! watchdog replicas run, then audits everything (`faults_common::audit`) and prints its
//! row of the fault table (collected in `target/tmp/faults.md`).

use crate::faults_common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use faults_common::*;
use serde_json::json;
use unstuck::*;

const LOAD: &str = "2 producers ~150/s, 4 workers, 3 replicas";

async fn raw(redis: &unstuck::testkit::RedisProcess) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

fn dead_or_failed(actions: &std::collections::BTreeMap<String, u64>) -> u64 {
    actions
        .iter()
        .filter(|(k, _)| k.ends_with("→dead") || k.ends_with("→failed"))
        .map(|(_, n)| n)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_hard_and_restarted_on_its_data() {
    let mut redis = redis(&["--appendonly", "yes", "--appendfsync", "always"]);
    let ledger = ledger(&redis, "fault_kill9").await;
    let replicas = Replicas::start(&ledger, &["k9-a", "k9-b", "k9-c"]);
    let load = Load::start(&ledger, 2, 150, 4);
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.kill_hard();
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.restart().expect("redis restarts on its data");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (counters, ids) = load.finish(&ledger, Duration::from_secs(30)).await;
    replicas.stop().await;
    let a = audit(&ledger, &redis, &ids).await;
    let actions = actions(&ledger).await;
    report(
        "Redis `kill -9`, 2 s down, restarted on its AOF (`appendfsync always`)",
        LOAD,
        &a,
        &format!(
            "{} calls failed during the outage (typed, retried); {} systemic hold(s); dead/failed {}",
            counters.errors.load(Ordering::Relaxed),
            a.holds,
            dead_or_failed(&actions)
        ),
    );
    assert_clean(&a);
    assert!(
        counters.errors.load(Ordering::Relaxed) > 0,
        "the outage was felt"
    );
    assert!(
        a.holds >= 1,
        "the absence starts a systemic hold: {actions:?}"
    );
    assert_eq!(dead_or_failed(&actions), 0, "no mass failure: {actions:?}");
    assert!(
        counters.completed.load(Ordering::Relaxed) as usize >= ids.len() * 9 / 10,
        "the clients reconnected on their own and the work went on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_is_noticed_and_the_watchdog_refuses_to_act() {
    let mut redis = redis(&[]);
    let ledger = ledger(&redis, "fault_empty").await;
    let replicas = Replicas::start(&ledger, &["em-a", "em-b", "em-c"]);
    let load = Load::start(&ledger, 2, 150, 4);
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.kill_and_wipe();
    redis.restart().expect("redis restarts, empty");
    // Every replica notices at its next presence beat (a third of lease_ttl).
    let noticed = async {
        while !replicas.replicas.iter().all(|r| r.data_lost()) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), noticed)
        .await
        .expect("every replica notices the data loss");
    assert!(
        replicas
            .replicas
            .iter()
            .all(|r| r.held_partitions().is_empty())
    );
    // An execution that hangs after the loss is not judged: nothing acts on an empty Redis.
    // (In a queue of its own, which the load's workers do not serve.)
    let opts = EnqueueOptions::new().id("after-the-loss").max_attempts(2);
    ledger.enqueue("probe", &json!({}), opts).await.unwrap();
    let (counters, ids) = load.finish(&ledger, Duration::from_secs(1)).await;
    let hung = ledger
        .claim("probe", "probe-worker")
        .await
        .unwrap()
        .unwrap();
    ledger
        .heartbeat(&hung.token, Heartbeat::new())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await; // three heartbeat timeouts
    let e = ledger.get("probe", "after-the-loss").await.unwrap();
    assert_eq!(e.state, State::Running, "no replica judged it");
    let lost = {
        let mut n = 0;
        for (q, id) in &ids {
            if matches!(ledger.get(q, id).await, Err(Error::NotFound { .. })) {
                n += 1;
            }
        }
        n
    };
    let a = Audit {
        executions: ids.len(),
        lost,
        longest_script_us: longest_script(&redis).await,
        ..Audit::default()
    };
    report(
        "Redis restarted **empty** (data lost)",
        LOAD,
        &a,
        "lost by Redis, not by unstuck: every replica noticed (marker gone), held nothing and judged nothing until restarted",
    );
    assert!(lost > 0, "the data was gone");
    let _ = counters;
    // A replica started now adopts the empty Redis and judges the hung execution.
    replicas.stop().await;
    let fresh = Replicas::start(&ledger, &["em-new"]);
    let judged = async {
        while ledger.get("probe", "after-the-loss").await.unwrap().state == State::Running {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), judged)
        .await
        .expect("a restarted replica acts again");
    fresh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_pause_longer_than_a_heartbeat_timeout_holds_instead_of_failing() {
    let redis = redis(&[]);
    let ledger = ledger(&redis, "fault_pause").await;
    let replicas = Replicas::start(&ledger, &["cp-a", "cp-b", "cp-c"]);
    let load = Load::start(&ledger, 2, 150, 4);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut conn = raw(&redis).await;
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(2500)
        .arg("ALL")
        .query_async(&mut conn)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (counters, ids) = load.finish(&ledger, Duration::from_secs(30)).await;
    replicas.stop().await;
    let a = audit(&ledger, &redis, &ids).await;
    let actions = actions(&ledger).await;
    report(
        "`CLIENT PAUSE` 2.5 s (heartbeat timeout 1 s)",
        LOAD,
        &a,
        &format!(
            "{} systemic hold(s); dead/failed {}; {} calls timed out",
            a.holds,
            dead_or_failed(&actions),
            counters.errors.load(Ordering::Relaxed)
        ),
    );
    assert_clean(&a);
    assert!(a.holds >= 1, "{actions:?}");
    assert_eq!(dead_or_failed(&actions), 0, "{actions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maxmemory_refuses_writes_clearly_and_service_resumes() {
    let redis = redis(&[]);
    let ledger = ledger(&redis, "fault_oom").await;
    let replicas = Replicas::start(&ledger, &["oom-a", "oom-b"]);
    let load = Load::start(&ledger, 2, 150, 4);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut conn = raw(&redis).await;
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await
        .unwrap();
    let used: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(used)
        .query_async(&mut conn)
        .await
        .unwrap();
    let refused = async {
        while !load
            .counters
            .samples
            .lock()
            .unwrap()
            .iter()
            .any(|m| m.contains("maxmemory") || m.contains("OOM"))
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), refused)
        .await
        .expect("writes are refused with Redis's OOM error");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(0)
        .query_async(&mut conn)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (counters, ids) = load.finish(&ledger, Duration::from_secs(30)).await;
    replicas.stop().await;
    let a = audit(&ledger, &redis, &ids).await;
    let sample = counters
        .samples
        .lock()
        .unwrap()
        .iter()
        .find(|m| m.contains("OOM") || m.contains("maxmemory"))
        .cloned()
        .unwrap_or_default();
    report(
        "`maxmemory` reached under `noeviction` for 1 s",
        LOAD,
        &a,
        &format!(
            "{} writes refused, e.g. \"{}\"",
            counters.errors.load(Ordering::Relaxed),
            sample.chars().take(90).collect::<String>()
        ),
    );
    assert_clean(&a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_flush_over_and_over_costs_nothing() {
    let redis = redis(&[]);
    let ledger = ledger(&redis, "fault_flush").await;
    let replicas = Replicas::start(&ledger, &["sf-a", "sf-b", "sf-c"]);
    let load = Load::start(&ledger, 2, 150, 4);
    let mut conn = raw(&redis).await;
    let mut flushes = 0;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut conn)
            .await
            .unwrap();
        flushes += 1;
    }
    let (counters, ids) = load.finish(&ledger, Duration::from_secs(30)).await;
    replicas.stop().await;
    let a = audit(&ledger, &redis, &ids).await;
    report(
        "`SCRIPT FLUSH` every 100 ms for 4 s",
        LOAD,
        &a,
        &format!(
            "{flushes} flushes; {} calls failed (NOSCRIPT is answered by sending the script)",
            counters.errors.load(Ordering::Relaxed)
        ),
    );
    assert_clean(&a);
    assert_eq!(
        counters.errors.load(Ordering::Relaxed),
        0,
        "{:?}",
        counters.samples
    );
}
