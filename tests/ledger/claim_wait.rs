//! `claim_wait`, the long poll: answered by an enqueue, by a freed slot, by a retry whose
//! backoff ends; empty when the wait runs out; and a thousand idle waiters run no scripts.

use crate::support;

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::json;
use tokio::time::Instant;
use unstuck::*;

const LONG: Duration = Duration::from_secs(10);

/// EVAL + EVALSHA calls the server has served so far.
async fn script_calls(ledger: &Ledger) -> u64 {
    let mut conn = redis::Client::open(ledger.config().server_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    support::script_calls(&mut conn).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_claim_is_answered_by_an_enqueue() {
    let l = support::ledger("wait_enqueue").await;
    let waiter = tokio::spawn({
        let l = l.clone();
        async move {
            let began = Instant::now();
            let batch = l.claim_wait("q", "w1", 1, LONG).await.unwrap();
            (batch, began.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    l.enqueue("q", &json!({"n": 1}), EnqueueOptions::new().id("e1"))
        .await
        .unwrap();
    let (batch, waited) = waiter.await.unwrap();
    assert_eq!(batch.claims.len(), 1);
    assert_eq!(batch.claims[0].id(), "e1");
    assert!(
        waited < LONG,
        "answered by the enqueue, not the timeout: {waited:?}"
    );
}

#[tokio::test]
async fn an_unanswered_wait_ends_empty_at_its_timeout() {
    let l = support::ledger("wait_timeout").await;
    let began = Instant::now();
    let batch = l
        .claim_wait("q", "w1", 5, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(batch.claims.is_empty());
    assert!(began.elapsed() >= Duration::from_millis(300));
    assert!(matches!(
        l.claim_wait("q", "w1", 1, Duration::from_secs(31)).await,
        Err(Error::InvalidArgument { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_wakes_a_waiter_when_a_slot_is_freed() {
    let l = support::ledger("wait_slot").await;
    let one = QueueSettings {
        capacity: Some(1),
        ..QueueSettings::default()
    };
    l.set_queue("q", &one).await.unwrap();
    for id in ["a", "b"] {
        l.enqueue("q", &json!({}), EnqueueOptions::new().id(id))
            .await
            .unwrap();
    }
    let first = l.claim("q", "w1").await.unwrap().unwrap();
    let waiter = tokio::spawn({
        let l = l.clone();
        async move { l.claim_wait("q", "w2", 1, LONG).await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "no slot yet");
    l.complete(&first.token, None).await.unwrap();
    let batch = tokio::time::timeout(LONG, waiter).await.unwrap().unwrap();
    assert_eq!(batch.claims[0].id(), "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_is_claimed_when_its_backoff_ends() {
    let l = support::ledger("wait_backoff").await;
    let opts = EnqueueOptions::new()
        .id("r")
        .backoff_base(Duration::from_millis(400));
    l.enqueue("q", &json!({}), opts).await.unwrap();
    let claim = l.claim("q", "w1").await.unwrap().unwrap();
    l.fail(&claim.token, "try again", true).await.unwrap();
    let began = Instant::now();
    let batch = l.claim_wait("q", "w1", 1, LONG).await.unwrap();
    assert_eq!(batch.claims[0].attempt(), 2);
    let waited = began.elapsed();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(waited < LONG, "{waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_waiters_run_no_scripts_and_one_enqueue_wakes_one() {
    // A server of its own: `INFO commandstats` counts every client's scripts, and the
    // other tests of this binary run theirs on the shared one meanwhile.
    let redis = unstuck::testkit::RedisProcess::start(Default::default()).unwrap();
    let l = Ledger::connect(LedgerConfig {
        namespace: support::namespace("wait_idle"),
        ..LedgerConfig::new(redis.url())
    })
    .await
    .unwrap();
    let waiters: Vec<_> = (0..1000)
        .map(|i| {
            let l = l.clone();
            tokio::spawn(async move {
                l.claim_wait("idle", &format!("w{i}"), 1, LONG)
                    .await
                    .unwrap()
            })
        })
        .collect();
    // Every waiter has claimed once and is waiting now: its claims are done when the
    // count stops moving (a busy machine may take longer than a fixed sleep).
    let mut before = script_calls(&l).await;
    let settled = Instant::now() + Duration::from_secs(30);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = script_calls(&l).await;
        if now == before && now >= 1000 {
            break;
        }
        assert!(
            Instant::now() < settled,
            "the waiters' first claims never settled"
        );
        before = now;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let idle = script_calls(&l).await - before;
    assert!(idle <= 2, "{idle} script calls while 1000 waited idle");

    l.enqueue("idle", &json!({}), EnqueueOptions::new().id("one"))
        .await
        .unwrap();
    let results = join_all(waiters).await;
    let claimed: Vec<String> = results
        .into_iter()
        .flat_map(|r| r.unwrap().claims)
        .map(|c| c.id().to_owned())
        .collect();
    assert_eq!(claimed, vec!["one".to_owned()], "claimed exactly once");
    let woken = script_calls(&l).await - before - idle;
    // The enqueue and the woken waiter's claim; the others time out without a script.
    assert!(
        woken <= 4,
        "{woken} script calls for one enqueue among 1000 waiters"
    );
}
