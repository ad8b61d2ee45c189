//! The claim's shared reads: a claim passes over stale pending hints and names the next
//! delayed execution, and a single claim (its hot path above the preludes) writes what a
//! claim in a batch writes.

use crate::batches::{DAY, RECORDED, enqueue_ids, ids};
use crate::ledger_common::{events_of, raw};
use crate::support;

use serde_json::json;
use unstuck::*;

/// A claim reads the due ids of the queue's head at once and removes the ones it took at
/// the end of its script: a stale hint among them (a pending id whose execution is not
/// queued) is passed over and removed, and when the due ones run out the reply names the
/// earliest delayed execution, not one the call just took.
#[tokio::test]
async fn a_claim_passes_over_stale_hints_and_names_the_next_delayed_one() {
    use unstuck::testkit::Keyspace;

    let ledger = support::ledger("cc_head").await;
    let config = ledger.config();
    let keys = Keyspace::new(&config.namespace, config.partitions).unwrap();
    enqueue_ids(&ledger, "q", &["x0", "x1", "x2"])
        .await
        .unwrap();
    let later = ledger
        .enqueue(
            "q",
            &json!({}),
            EnqueueOptions::new().id("later").delay(DAY * 300),
        )
        .await
        .unwrap();
    let x0 = ledger.claim("q", "w").await.unwrap().unwrap();
    // A hint left behind: "ghost" has no execution, and sorts between x1 and x2.
    let score: f64 = redis::cmd("ZSCORE")
        .arg(keys.pending("q"))
        .arg("x1")
        .query_async(&mut raw().await)
        .await
        .unwrap();
    let _: i64 = redis::cmd("ZADD")
        .arg(keys.pending("q"))
        .arg(score)
        .arg("x1~ghost")
        .query_async(&mut raw().await)
        .await
        .unwrap();

    let (outcome, next) = ledger
        .complete_and_claim(&x0.token, None, "w", 5)
        .await
        .unwrap();
    assert_eq!(outcome, RECORDED);
    assert_eq!(ids(&next.claims), vec!["x1", "x2"]);
    assert!(!next.queue_full && !next.queue_paused);
    let due = ledger.get("q", "later").await.unwrap();
    assert_eq!(due.state, State::Queued);
    let expected = next.next_available_at.expect("the delayed one is named");
    assert!(
        expected > chrono::Utc::now() + chrono::Duration::days(299),
        "{expected} is the delayed execution's time, not a taken one's ({later:?})"
    );
    let pending: Vec<String> = redis::cmd("ZRANGE")
        .arg(keys.pending("q"))
        .arg(0)
        .arg(-1)
        .query_async(&mut raw().await)
        .await
        .unwrap();
    assert_eq!(
        pending,
        vec!["later"],
        "the taken ids and the stale hint are gone"
    );
    assert_eq!(ledger.slots_in_use("q").await.unwrap(), 2);
    support::invariants::assert_ok(&ledger, &["q"]).await;
}

/// A single claim of a first attempt runs on the claim script's hot path; a batch takes
/// the general path. Both leave the same execution fields, slot, timer and event.
#[tokio::test]
async fn a_single_claim_writes_what_a_batch_claim_writes() {
    use std::collections::BTreeMap;
    use unstuck::testkit::{Keyspace, Timer};

    let ledger = support::ledger("cc_hot").await;
    let config = ledger.config();
    let keys = Keyspace::new(&config.namespace, config.partitions).unwrap();
    for queue in ["hot", "cold"] {
        enqueue_ids(&ledger, queue, &["a"]).await.unwrap();
    }
    let hot = ledger.claim("hot", "w").await.unwrap().unwrap();
    let cold = ledger.claim_many("cold", "w", 2).await.unwrap();
    assert_eq!(ids(&cold.claims), vec!["a"]);
    let cold = &cold.claims[0];
    assert_eq!(
        (hot.attempt(), &hot.payload, hot.heartbeat_timeout),
        (cold.attempt(), &cold.payload, cold.heartbeat_timeout)
    );

    // The hash, with the times, the queue and the nonce taken out.
    let fields = |queue: &'static str| {
        let key = keys.execution(queue, "a");
        async move {
            let all: BTreeMap<String, String> = redis::cmd("HGETALL")
                .arg(key)
                .query_async(&mut raw().await)
                .await
                .unwrap();
            all.into_iter()
                .map(|(f, v)| {
                    let v = match f.as_str() {
                        "q" | "tok" | "cr" | "dsp" => "-".to_owned(),
                        _ if f.starts_with('h') && v.contains('|') => {
                            let parts: Vec<&str> = v.split('|').collect();
                            format!("{}|-|{}", parts[0], parts[2..].join("|"))
                        }
                        _ => v,
                    };
                    (f, v)
                })
                .collect::<BTreeMap<String, String>>()
        }
    };
    let hot_fields = fields("hot").await;
    assert_eq!(hot_fields, fields("cold").await);
    assert_eq!(hot_fields["st"], "dispatched");
    assert_eq!(hot_fields["h1"], "1|-|dispatched|claimed|1");
    for queue in ["hot", "cold"] {
        let holder: Option<String> = redis::cmd("HGET")
            .arg(keys.slots(queue))
            .arg("a")
            .query_async(&mut raw().await)
            .await
            .unwrap();
        assert_eq!(holder.as_deref(), Some("1:w"), "{queue}");
        let timer: Option<f64> = redis::cmd("ZSCORE")
            .arg(keys.queue_timer(queue, Timer::Start))
            .arg(Keyspace::member(queue, "a"))
            .query_async(&mut raw().await)
            .await
            .unwrap();
        assert!(timer.is_some(), "{queue}: start timer set");
        assert_eq!(ledger.pending_count(queue).await.unwrap(), 0);
        let last = events_of(&ledger, queue).await.pop().unwrap();
        assert_eq!(last.queue, queue);
        assert_eq!(
            (
                last.attempt,
                last.from,
                last.to,
                last.reason.as_str(),
                last.detail.as_str()
            ),
            (
                1,
                Some(State::Queued),
                Some(State::Dispatched),
                "claimed",
                "w"
            ),
            "{queue}"
        );
    }
    support::invariants::assert_ok(&ledger, &["hot", "cold"]).await;
}
