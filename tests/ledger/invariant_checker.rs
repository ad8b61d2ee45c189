//! The invariant checker of the test support must notice each kind of damage, or the tests
//! relying on it prove nothing.

use crate::support;

use serde_json::json;
use unstuck::*;

const QUEUE: &str = "m";

/// The checker must notice each kind of damage, or the tests relying on it prove nothing.
#[tokio::test]
async fn the_invariant_checker_reports_broken_indexes() {
    use redis::Cmd;
    use unstuck::testkit::{Keyspace, Timer};

    let ledger = support::ledger("checker").await;
    let config = ledger.config();
    let keys = Keyspace::new(&config.namespace, config.partitions).unwrap();
    let client = redis::Client::open(config.server_url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    for id in ["run", "done"] {
        let opts = EnqueueOptions::new().id(id);
        ledger.enqueue(QUEUE, &json!({}), opts).await.unwrap();
        let claim = ledger.claim(QUEUE, "w").await.unwrap().unwrap();
        ledger
            .heartbeat(&claim.token, Heartbeat::new())
            .await
            .unwrap();
        if id == "done" {
            ledger.complete(&claim.token, None).await.unwrap();
        }
    }
    support::invariants::assert_ok(&ledger, &[QUEUE]).await;

    let (k, q) = (&keys, QUEUE);
    let timer = |t: Timer| k.queue_timer(q, t);
    let done = k.execution(q, "done");
    let (run, ghost) = (Keyspace::member(q, "run"), Keyspace::member(q, "ghost"));
    // Applied in order; each leaves the earlier damage in place.
    let damage = [
        ("in pending", Cmd::zadd(k.pending(q), "run", 1)),
        ("missing from slots", Cmd::hdel(k.slots(q), "run")),
        (
            "slot held by attempt 7",
            Cmd::hset(k.slots(q), "run", "7:w"),
        ),
        ("in slots", Cmd::hset(k.slots(q), "done", "1:w")),
        ("in timer:start", Cmd::zadd(timer(Timer::Start), &run, 1)),
        ("in timer:cancel", Cmd::zadd(timer(Timer::Cancel), &run, 1)),
        (
            "heartbeat scored 5",
            Cmd::zadd(timer(Timer::Heartbeat), &run, 5),
        ),
        ("hash is missing", Cmd::zadd(timer(Timer::Start), &ghost, 1)),
        ("without stop reason", Cmd::hdel(&done, "sr")),
        (
            "more than once",
            Cmd::rpush(k.finished(q, "succeeded"), "done"),
        ),
        (
            "from s:succeeded",
            Cmd::lrem(k.finished(q, "succeeded"), 0, "done"),
        ),
        ("above capacity 0", Cmd::hset(k.queue_settings(q), "cap", 0)),
        ("invalid state", Cmd::hset(&done, "st", "lost")),
    ];
    for (expected, cmd) in damage {
        let _: () = cmd.query_async(&mut raw).await.unwrap();
        let violations = support::invariants::check(&ledger, &[QUEUE]).await;
        assert!(
            violations.iter().any(|v| v.contains(expected)),
            "after damage {expected:?} the checker found {violations:?}"
        );
    }
}
