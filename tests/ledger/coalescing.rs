//! Concurrent completions of one queue share script calls: each still gets exactly the
//! outcome it would get alone, fewer script calls reach Redis, and a call that fails as a
//! whole fails every completion in it, with nothing written.
//!
//! Each test has a Redis server of its own, so `INFO commandstats` counts only its calls.

use crate::ledger_common;

use futures_util::future::join_all;
use redis::aio::MultiplexedConnection;
use serde_json::json;
use unstuck::error::Error;
use unstuck::testkit::{RedisProcess, RedisProcessOptions};
use unstuck::*;

use ledger_common::forged;

const QUEUE: &str = "work";
const RECORDED: CompleteOutcome = CompleteOutcome::Recorded {
    slot_released: true,
};

struct Server {
    _redis: RedisProcess,
    ledger: Ledger,
    admin: MultiplexedConnection,
}

async fn server(capacity: u32) -> Server {
    let redis = RedisProcess::start(RedisProcessOptions::default()).expect("redis-server starts");
    let ledger = Ledger::connect(LedgerConfig::new(redis.url()))
        .await
        .unwrap();
    let settings = QueueSettings {
        capacity: Some(capacity),
        ..QueueSettings::default()
    };
    ledger.set_queue(QUEUE, &settings).await.unwrap();
    let admin = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    Server {
        _redis: redis,
        ledger,
        admin,
    }
}

/// Script calls (EVALSHA and EVAL) since the last reset.
async fn script_calls(admin: &mut MultiplexedConnection) -> u64 {
    crate::support::script_calls(admin).await
}

async fn reset_stats(admin: &mut MultiplexedConnection) {
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(admin)
        .await
        .unwrap();
}

/// Changes what the default user (the ledger's) may run.
async fn acl(admin: &mut MultiplexedConnection, rules: &[&str]) {
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg(rules)
        .query_async(admin)
        .await
        .unwrap();
}

/// Enqueues `n` executions `e0`, `e1`, … and claims them all as `worker-1`.
async fn claimed(ledger: &Ledger, n: usize) -> Vec<Claim> {
    let ids: Vec<String> = (0..n).map(|i| format!("e{i}")).collect();
    let payload = json!({});
    let items = ids
        .iter()
        .map(|id| (&payload, EnqueueOptions::new().id(id.as_str())));
    ledger.enqueue_many(QUEUE, items).await.unwrap();
    let batch = ledger.claim_many(QUEUE, "worker-1", n).await.unwrap();
    assert_eq!(batch.claims.len(), n);
    batch.claims
}

#[tokio::test]
async fn concurrent_completions_are_sent_together_and_each_is_recorded() {
    let server = server(500).await;
    let (ledger, mut admin) = (&server.ledger, server.admin.clone());
    let claims = claimed(ledger, 200).await;
    reset_stats(&mut admin).await;

    let result = json!({"ok": 1});
    let outcomes = join_all(
        claims
            .iter()
            .map(|c| ledger.complete(&c.token, Some(&result))),
    )
    .await;

    let calls = script_calls(&mut admin).await;
    assert!(
        calls < 50,
        "200 concurrent completions took {calls} script calls: they were not sent together"
    );
    for (claim, outcome) in claims.iter().zip(outcomes) {
        assert_eq!(outcome.unwrap(), RECORDED, "{}", claim.id());
        let execution = ledger.get(QUEUE, claim.id()).await.unwrap();
        assert_eq!(execution.state, State::Succeeded);
        assert_eq!(execution.result, Some(json!({"ok": 1})));
    }
    assert_eq!(ledger.slots_in_use(QUEUE).await.unwrap(), 0);
}

#[tokio::test]
async fn completions_sent_together_each_get_their_own_outcome() {
    let server = server(500).await;
    let (ledger, mut admin) = (&server.ledger, server.admin.clone());
    let claims = claimed(ledger, 60).await;
    // e0 is already completed (a replay), e1 was retried (its token is stale), e2's
    // token is forged, e3's execution does not exist; the rest are ordinary.
    ledger.complete(&claims[0].token, None).await.unwrap();
    ledger.fail(&claims[1].token, "again", true).await.unwrap();
    let forged_token = forged(&claims[2].token, 1);
    let missing: AttemptToken = format!("{QUEUE}/nobody/1/0123456789abcdef0123456789abcdef")
        .parse()
        .unwrap();
    ledger
        .enqueue(QUEUE, &json!({}), EnqueueOptions::new().id("next"))
        .await
        .unwrap();
    reset_stats(&mut admin).await;

    // The odd ones last, so they ride along with the ordinary ones in flight.
    let ordinary = claims[4..].iter().map(|c| ledger.complete(&c.token, None));
    let odd = async {
        tokio::join!(
            ledger.complete(&claims[0].token, None),
            ledger.complete(&claims[1].token, None),
            ledger.complete(&forged_token, None),
            ledger.complete(&missing, None),
            ledger.complete_and_claim(&claims[3].token, None, "worker-2", 5),
        )
    };
    let (ordinary, (replay, stale, forged, missing, chained)) =
        tokio::join!(join_all(ordinary), odd);

    assert!(
        script_calls(&mut admin).await < 61,
        "some completions were sent together"
    );
    assert!(ordinary.into_iter().all(|o| o.unwrap() == RECORDED));
    assert_eq!(
        replay.unwrap(),
        CompleteOutcome::AlreadyTerminal {
            state: State::Succeeded,
            stop_reason: StopReason::Succeeded
        }
    );
    assert_eq!(
        stale.unwrap(),
        CompleteOutcome::StaleAttempt {
            current_attempt: 1,
            state: State::Queued
        }
    );
    assert!(
        matches!(forged, Err(Error::TokenMismatch { .. })),
        "{forged:?}"
    );
    assert!(
        matches!(missing, Err(Error::NotFound { .. })),
        "{missing:?}"
    );
    let (outcome, batch) = chained.unwrap();
    assert_eq!(outcome, RECORDED);
    // Two executions were queued (the retried e1 waits out its backoff, "next" is due):
    // only "next" can be claimed now.
    let ids: Vec<&str> = batch.claims.iter().map(|c| c.id()).collect();
    assert_eq!(ids, ["next"]);
    assert_eq!(
        ledger.get(QUEUE, "e2").await.unwrap().state,
        State::Dispatched
    );
    assert_eq!(
        ledger.slots_in_use(QUEUE).await.unwrap(),
        2,
        "e2 and next hold slots"
    );
}

#[tokio::test]
async fn a_call_that_fails_fails_every_completion_in_it_and_writes_nothing() {
    let server = server(500).await;
    let (ledger, mut admin) = (&server.ledger, server.admin.clone());
    let claims = claimed(ledger, 40).await;
    // Redis refuses every script call while the ledger's user may not run scripts.
    acl(&mut admin, &["-evalsha", "-eval"]).await;

    let outcomes = join_all(claims.iter().map(|c| ledger.complete(&c.token, None))).await;

    acl(&mut admin, &["+@all"]).await;
    for outcome in outcomes {
        match outcome {
            Err(Error::Redis(e)) => assert!(e.to_string().contains("no permissions"), "{e}"),
            other => panic!("expected the NOPERM refusal, got {other:?}"),
        }
    }
    for claim in &claims {
        let execution = ledger.get(QUEUE, claim.id()).await.unwrap();
        assert_eq!(execution.state, State::Dispatched, "{}", claim.id());
    }
    // Once Redis accepts writes again, the same completions go through.
    let outcomes = join_all(claims.iter().map(|c| ledger.complete(&c.token, None))).await;
    assert!(outcomes.into_iter().all(|o| o.unwrap() == RECORDED));
    assert_eq!(ledger.slots_in_use(QUEUE).await.unwrap(), 0);
}
