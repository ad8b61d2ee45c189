//! The Lua scripts survive `SCRIPT FLUSH` (a restart or fail-over empties the script cache):
//! every operation reloads its script and succeeds.

use crate::ledger_common;
use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use serde_json::json;
use unstuck::testkit::{RedisProcess, RedisProcessOptions};
use unstuck::*;

use ledger_common::raw;

async fn flush(conn: &mut MultiplexedConnection) {
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn every_operation_works_after_script_flush() {
    // A server of its own: no other test flushes its script cache meanwhile.
    let redis = RedisProcess::start(RedisProcessOptions::default()).unwrap();
    let config = LedgerConfig {
        namespace: support::namespace("scripts_flush"),
        ..LedgerConfig::new(redis.url())
    };
    let ledger = Ledger::connect(config).await.unwrap();
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let opts = EnqueueOptions::new()
        .max_attempts(2)
        .backoff_base(Duration::ZERO);

    // Warm the script cache first, so the flushes below really empty it.
    ledger
        .enqueue("q", &json!(0), opts.clone().id("warm"))
        .await
        .unwrap();
    flush(&mut conn).await;
    let settings = QueueSettings {
        capacity: Some(5),
        timings: Timings::default(),
        ..QueueSettings::default()
    };
    ledger.set_queue("q", &settings).await.unwrap();
    flush(&mut conn).await;
    let e = ledger
        .enqueue("q", &json!(1), opts.clone().id("x"))
        .await
        .unwrap();
    assert!(e.created);
    ledger.cancel("q", "warm", "not needed").await.unwrap();
    flush(&mut conn).await;
    let claim = ledger.claim("q", "w").await.unwrap().unwrap();
    assert_eq!(claim.id(), "x");
    flush(&mut conn).await;
    let beat = Heartbeat::new().progress("1").checkpoint(json!({"at": 1}));
    assert_eq!(
        ledger.heartbeat(&claim.token, beat).await.unwrap(),
        HeartbeatReply::Ok {
            cancel_requested: false,
            cancel_reason: None,
        }
    );
    flush(&mut conn).await;
    assert!(matches!(
        ledger.fail(&claim.token, "retry me", true).await.unwrap(),
        FailOutcome::RetryScheduled { .. }
    ));
    flush(&mut conn).await;
    let retry = ledger.claim("q", "w").await.unwrap().unwrap();
    assert_eq!(
        (retry.attempt(), retry.checkpoint.clone()),
        (2, Some(json!({"at": 1})))
    );
    flush(&mut conn).await;
    assert!(matches!(
        ledger.cancel("q", "x", "stop").await.unwrap(),
        CancelOutcome::Requested { already: false, .. }
    ));
    flush(&mut conn).await;
    assert_eq!(
        ledger.acknowledge_cancel(&retry.token).await.unwrap(),
        CompleteOutcome::Recorded {
            slot_released: true
        }
    );
    flush(&mut conn).await;
    let token = ledger_common::running(&ledger, "q", "y", opts).await;
    flush(&mut conn).await;
    assert_eq!(
        ledger.complete(&token, Some(&json!("ok"))).await.unwrap(),
        CompleteOutcome::Recorded {
            slot_released: true
        }
    );

    let reg = WorkerRegistration::for_this_process("1", vec!["q".into()]);
    flush(&mut conn).await;
    ledger.register_worker(&reg).await.unwrap();
    flush(&mut conn).await;
    ledger.worker_heartbeat(&reg.worker_id, &[]).await.unwrap();
    flush(&mut conn).await;
    ledger.deregister_worker(&reg.worker_id).await.unwrap();

    assert_eq!(ledger.get("q", "x").await.unwrap().state, State::Cancelled);
    assert_eq!(ledger.get("q", "y").await.unwrap().state, State::Succeeded);
    assert_eq!(
        ledger.get("q", "warm").await.unwrap().state,
        State::Cancelled
    );
    assert_eq!(ledger.queue_settings("q").await.unwrap(), settings);
    assert!(ledger.workers().await.unwrap().is_empty());
    support::invariants::assert_ok(&ledger, &["q"]).await;
}

// A flush can land between a SCRIPT LOAD and the EVALSHA that follows it; calls must
// still succeed (the NOSCRIPT fallback is EVAL with the source).
#[tokio::test]
async fn calls_succeed_while_the_script_cache_is_flushed_repeatedly() {
    let ledger = support::ledger("scripts_race").await;
    let stop = Arc::new(AtomicBool::new(false));
    let flusher = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut conn = raw().await;
            let mut flushes = 0u32;
            while !stop.load(Ordering::Relaxed) {
                flush(&mut conn).await;
                flushes += 1;
                tokio::task::yield_now().await;
            }
            flushes
        })
    };
    let mut tasks = Vec::new();
    for n in 0..200 {
        let ledger = ledger.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("e{n}");
            ledger
                .enqueue("q", &json!(n), EnqueueOptions::new().id(&id))
                .await?;
            ledger.cancel("q", &id, "done with it").await
        }));
    }
    let mut failures = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(outcome) => assert_eq!(outcome, CancelOutcome::Cancelled),
            Err(error) => failures.push(error.to_string()),
        }
    }
    stop.store(true, Ordering::Relaxed);
    assert!(flusher.await.unwrap() > 0);
    assert!(
        failures.is_empty(),
        "{} of 200 calls failed, first: {}",
        failures.len(),
        failures[0]
    );
    let cancelled = ledger
        .list("q", State::Cancelled, None, 1000)
        .await
        .unwrap();
    assert_eq!(cancelled.items.len(), 200);
}
