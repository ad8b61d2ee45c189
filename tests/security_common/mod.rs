//! Helpers shared by the security test binaries: throwaway redis-servers that want a
//! password or hold ACL users, the ACL rules of docs/redis.md, and a workout that drives every
//! kind of library call (each connection kind: the shared one, the blocking pool of the
//! event followers, claim waits, a watchdog) through one ledger.
//!
//! Each `tests/security_*.rs` does `mod security_common;`. Not every binary uses every
//! helper.
#![allow(dead_code)]

pub mod tls;

use std::time::Duration;

use serde_json::json;
use unstuck::testkit::{RedisProcess, RedisProcessOptions};
use unstuck::watchdog::{Watchdog, WatchdogConfig};
use unstuck::*;

/// The `ACL SETUSER` rules of docs/redis.md for a namespace, after the user's name and password:
/// the namespace's keys, no channels, and exactly the commands unstuck sends or its
/// scripts call (`acl|dryrun` lets it check the rest at connect and `info` lets it read
/// maxmemory-policy; both are optional, see docs/redis.md).
pub const ACL_RULES: &str = "resetkeys ~{NS:* resetchannels -@all \
    +ping +unwatch +time +info +acl|dryrun \
    +evalsha +eval \
    +get +set +incr +del \
    +hget +hmget +hgetall +hkeys +hlen +hset +hdel +hincrby \
    +zadd +zrem +zcard +zcount +zrange +zrevrange +zrangebyscore +zremrangebyscore +zscore \
    +lrange +llen +lindex +lpush +rpush +lpop +lrem +ltrim \
    +sadd +sismember +smembers +srem +scard \
    +xadd +xrange +xrevrange +xread";

/// [`ACL_RULES`] for `namespace`, one rule per item, with `extra` rules appended (later
/// rules win: `-xread` takes a command away).
pub fn acl_rules(namespace: &str, extra: &[&str]) -> Vec<String> {
    ACL_RULES
        .replace("NS", namespace)
        .split_whitespace()
        .map(str::to_owned)
        .chain(extra.iter().map(|r| (*r).to_owned()))
        .collect()
}

/// A fresh redis-server of this test's own (its users and passwords are the test's).
pub fn server() -> RedisProcess {
    RedisProcess::start(RedisProcessOptions::default()).expect("a throwaway redis-server starts")
}

/// A connection as the `default` user, for setting the server up.
pub async fn admin(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("a valid url")
        .get_multiplexed_async_connection()
        .await
        .expect("the admin connects")
}

/// Makes the `default` user need `password`, as `--requirepass` does (the test support's
/// readiness check pings without one, so the server starts open and is locked here).
pub async fn require_password(redis: &RedisProcess, password: &str) {
    let () = redis::cmd("CONFIG")
        .arg(&["SET", "requirepass", password])
        .query_async(&mut admin(redis.url()).await)
        .await
        .expect("CONFIG SET requirepass");
}

/// Creates (or resets) ACL user `name` with `password` and `rules`.
pub async fn add_user(
    admin: &mut redis::aio::MultiplexedConnection,
    name: &str,
    password: &str,
    rules: &[String],
) {
    let () = redis::cmd("ACL")
        .arg(&["SETUSER", name, "reset", "on"])
        .arg(format!(">{password}"))
        .arg(rules)
        .query_async(admin)
        .await
        .unwrap_or_else(|e| panic!("ACL SETUSER {name}: {e}"));
}

/// `scheme://userinfo@127.0.0.1:port/`.
pub fn url(scheme: &str, userinfo: &str, port: u16) -> String {
    format!("{scheme}://{userinfo}@127.0.0.1:{port}/")
}

/// A config for `url` and `namespace` whose succeeded executions may be pruned at once.
pub fn config(url: &str, namespace: &str) -> LedgerConfig {
    let mut config = LedgerConfig::new(url);
    config.namespace = namespace.into();
    config.retention.succeeded = Some(Duration::from_millis(1));
    config
}

/// A watchdog replica for rounds driven by hand (see `tests/watchdog_common`).
pub async fn replica(ledger: &Ledger, id: &str) -> Watchdog {
    let wd = Watchdog::new(
        ledger.clone(),
        WatchdogConfig {
            replica_id: Some(id.into()),
            lease_ttl: Duration::from_secs(60),
            systemic_share: 1.0,
            ..WatchdogConfig::default()
        },
    )
    .expect("a valid watchdog config");
    let changes = wd.rebalance().await.expect("the replica leases partitions");
    assert_eq!(
        changes.acquired.len(),
        usize::from(ledger.config().partitions)
    );
    wd
}

/// Drives every kind of library call through `ledger` and checks each outcome: a queue,
/// a full lifecycle, failure and retry, cancel, pin, batches, reads, the worker registry,
/// events (read and followed on the blocking pool), a claim wait woken by an enqueue, a
/// watchdog round that retries a lost attempt, pruning, status and readiness.
pub async fn workout(ledger: &Ledger) {
    let q = "jobs";
    let p = ledger.partition_of(q);
    ledger.check_ready().await.expect("ready");
    let settings = QueueSettings {
        capacity: Some(4),
        ..Default::default()
    };
    ledger.set_queue(q, &settings).await.expect("set_queue");
    assert_eq!(ledger.queue_settings(q).await.unwrap().capacity, Some(4));
    // Pause and resume (the queue-name set is read with SISMEMBER).
    ledger
        .pause_queue(q, "ops", "acl check")
        .await
        .expect("pause");
    ledger.resume_queue(q, "ops", "").await.expect("resume");
    let mut follower = ledger.follow_events(vec![p]).await.expect("follow");

    // Lifecycle: enqueue, claim, heartbeat, complete.
    let opts = || EnqueueOptions::new().max_attempts(2);
    ledger
        .enqueue(q, &json!({"n": 1}), opts().id("ok"))
        .await
        .expect("enqueue");
    let claim = ledger
        .claim(q, "w1")
        .await
        .expect("claim")
        .expect("claimable");
    let beat = Heartbeat::new()
        .progress("half")
        .checkpoint(json!({"step": 1}));
    let reply = ledger
        .heartbeat(&claim.token, beat)
        .await
        .expect("heartbeat");
    assert_eq!(
        reply,
        HeartbeatReply::Ok {
            cancel_requested: false,
            cancel_reason: None,
        }
    );
    ledger
        .complete(&claim.token, Some(&json!({"r": 1})))
        .await
        .expect("complete");
    assert_eq!(ledger.get(q, "ok").await.unwrap().state, State::Succeeded);

    // Failure, then an operator's retry.
    ledger
        .enqueue(q, &json!({}), opts().id("bad"))
        .await
        .unwrap();
    let claim = ledger.claim(q, "w1").await.unwrap().expect("claimable");
    ledger
        .fail(&claim.token, "boom", false)
        .await
        .expect("fail");
    assert_eq!(ledger.get(q, "bad").await.unwrap().state, State::Failed);
    let again = ledger
        .retry(q, "bad", Some("bad-2"), "fixed")
        .await
        .expect("retry");
    assert_eq!(again.id, "bad-2");

    // Cancel, pin, batches.
    ledger
        .enqueue(q, &json!({}), opts().id("gone"))
        .await
        .unwrap();
    ledger
        .cancel(q, "gone", "not needed")
        .await
        .expect("cancel");
    assert_eq!(ledger.get(q, "gone").await.unwrap().state, State::Cancelled);
    ledger.pin(q, "ok").await.expect("pin");
    ledger.unpin(q, "ok").await.expect("unpin");
    let payload = json!({});
    let items = (0..3).map(|i| (&payload, EnqueueOptions::new().id(format!("b{i}"))));
    assert_eq!(
        ledger
            .enqueue_many(q, items)
            .await
            .expect("enqueue_many")
            .len(),
        3
    );
    // bad-2 and b0..b2 are queued: claim two, finish one and claim the next with it.
    let batch = ledger.claim_many(q, "w2", 2).await.expect("claim_many");
    assert_eq!(batch.claims.len(), 2);
    let (_, next) = ledger
        .complete_and_claim(&batch.claims[0].token, None, "w2", 1)
        .await
        .expect("complete_and_claim");
    assert_eq!(next.claims.len(), 1);

    // Reads.
    let finished = ledger
        .list(q, State::Succeeded, None, 10)
        .await
        .expect("list");
    assert_eq!(finished.items.len(), 2, "ok and one batch item");
    let filter = Filter {
        state: Some(State::Failed),
        ..Filter::default()
    };
    let failed = ledger.find(&filter, None, 10).await.expect("find");
    assert_eq!(failed.items.len(), 1);
    assert_eq!(ledger.queues().await.unwrap(), vec![q.to_owned()]);
    let overview = ledger.queue_overview(q).await.expect("queue_overview");
    assert_eq!((overview.active, overview.capacity), (2, 4));
    assert_eq!(ledger.queue_overviews().await.unwrap().len(), 1);
    assert_eq!(ledger.slots_in_use(q).await.unwrap(), 2);
    assert_eq!(ledger.pending_count(q).await.unwrap(), 1);

    // The worker registry.
    let reg = WorkerRegistration::for_this_process("1.0", vec![q.into()]);
    ledger.register_worker(&reg).await.expect("register_worker");
    let running = vec![(q.to_owned(), next.claims[0].id().to_owned())];
    ledger
        .worker_heartbeat(&reg.worker_id, &running)
        .await
        .expect("worker_heartbeat");
    assert!(ledger.worker(&reg.worker_id).await.unwrap().is_some());
    assert_eq!(ledger.workers().await.unwrap().len(), 1);
    assert_eq!(ledger.slot_holders().await.unwrap()["w2"].len(), 2);
    ledger
        .deregister_worker(&reg.worker_id)
        .await
        .expect("deregister_worker");
    ledger
        .prune_workers(Duration::ZERO, 10)
        .await
        .expect("prune_workers");

    // Events: read back, and followed on the blocking pool.
    assert!(!ledger.read_events(p, None, 100).await.unwrap().is_empty());
    assert!(!ledger.recent_events(vec![p], 10).await.unwrap().is_empty());
    assert!(!ledger.execution_events(q, "ok").await.unwrap().is_empty());
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|e: &Event| e.execution_id == "ok" && e.to == Some(State::Succeeded))
    {
        let batch = tokio::time::timeout(Duration::from_secs(5), follower.next_batch())
            .await
            .expect("the follower sees the completion")
            .expect("next_batch");
        seen.extend(batch);
    }

    // A claim wait woken by an enqueue (the ledger's follower task).
    let waiting = tokio::spawn({
        let ledger = ledger.clone();
        async move {
            ledger
                .claim_wait("waits", "w3", 1, Duration::from_secs(10))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    ledger
        .enqueue("waits", &json!({}), EnqueueOptions::new().id("late"))
        .await
        .unwrap();
    let woken = waiting.await.unwrap().expect("claim_wait");
    assert_eq!(
        woken.claims.len(),
        1,
        "the wait claims what was enqueued during it"
    );

    // A watchdog round retries a lost attempt; pruning removes what finished.
    let lost = EnqueueOptions::new()
        .id("lost")
        .heartbeat_timeout(Duration::from_millis(100))
        .stuck_threshold(Duration::ZERO)
        .max_attempts(3);
    ledger.enqueue("lossy", &json!({}), lost).await.unwrap();
    let claim = ledger
        .claim("lossy", "w4")
        .await
        .unwrap()
        .expect("claimable");
    ledger
        .heartbeat(&claim.token, Heartbeat::new())
        .await
        .unwrap();
    let wd = replica(ledger, "security-r1").await;
    let lp = ledger.partition_of("lossy");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while ledger.get("lossy", "lost").await.unwrap().attempt == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the watchdog retried the lost attempt"
        );
        wd.round(lp).await.expect("round");
        wd.reconcile(lp).await.expect("reconcile");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut pruned = 0;
    for partition in 0..ledger.config().partitions {
        pruned += wd.prune(partition).await.expect("prune").pruned;
    }
    assert!(pruned >= 2, "the succeeded executions are pruned: {pruned}");
    let status = unstuck::watchdog::status(ledger)
        .await
        .expect("watchdog status");
    assert!(status.totals.pruned >= 2);
    assert!(wd.release_all().await.is_ok());
}
