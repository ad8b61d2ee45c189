//! Batched calls: `enqueue_many` (one script for many executions, all checked before any
//! write) and `complete_and_claim` (finish one attempt and take the next, atomically).

use crate::ledger_common;
use crate::support;

use std::time::Duration;

use serde_json::{Value, json};
use unstuck::error::Error;
use unstuck::*;

use ledger_common::{events_of, forged, namespace_keys, raw};

/// Asserts that `$call` failed with an error matching `$pat`.
macro_rules! refused {
    ($call:expr, $pat:pat) => {
        match $call {
            Err($pat) => {}
            other => panic!("expected {}, got {other:?}", stringify!($pat)),
        }
    };
}

const YEAR_AND_A_DAY: Duration = Duration::from_secs(366 * 24 * 3600);
pub(crate) const DAY: Duration = Duration::from_secs(24 * 3600);

pub(crate) const RECORDED: CompleteOutcome = CompleteOutcome::Recorded {
    slot_released: true,
};

/// Every key of the namespace with its `DUMP`, to show that nothing changed at all.
async fn snapshot(ledger: &Ledger) -> Vec<(String, Vec<u8>)> {
    let mut conn = raw().await;
    let mut out = Vec::new();
    for key in namespace_keys(ledger).await {
        let cmd = redis::cmd("DUMP").arg(&key).clone();
        let dump: Vec<u8> = cmd.query_async(&mut conn).await.unwrap();
        out.push((key, dump));
    }
    out
}

/// The payload of item `i` of a batch.
fn payload(i: usize) -> Value {
    json!({"n": i})
}

/// Enqueues one item per id (`""`: a generated id) with payload `payload(i)`, in one batch.
pub(crate) async fn enqueue_ids(
    ledger: &Ledger,
    queue: &str,
    ids: &[&str],
) -> Result<Vec<Enqueued>> {
    let payloads: Vec<Value> = (0..ids.len()).map(payload).collect();
    let items = payloads.iter().zip(ids).map(|(p, id)| {
        let opts = EnqueueOptions::new();
        (p, if id.is_empty() { opts } else { opts.id(*id) })
    });
    ledger.enqueue_many(queue, items).await
}

async fn state(ledger: &Ledger, queue: &str, id: &str) -> State {
    ledger.get(queue, id).await.unwrap().state
}

async fn set_capacity(ledger: &Ledger, queue: &str, capacity: u32) {
    let settings = QueueSettings {
        capacity: Some(capacity),
        timings: Timings::default(),
        ..QueueSettings::default()
    };
    ledger.set_queue(queue, &settings).await.unwrap();
}

pub(crate) fn ids(claims: &[Claim]) -> Vec<&str> {
    claims.iter().map(|c| c.id()).collect()
}

#[tokio::test]
async fn enqueue_many_creates_every_item_in_order_and_claims_are_fifo() {
    let ledger = support::ledger("batch_create").await;
    let given = ["b-first", "", "a-third", "", ""];
    let enqueued = enqueue_ids(&ledger, "crawl", &given).await.unwrap();
    assert_eq!(enqueued.len(), 5);
    for (i, e) in enqueued.iter().enumerate() {
        assert!(e.created, "item {i} is created");
        let reply = (e.queue.as_str(), e.state, e.attempt);
        assert_eq!(reply, ("crawl", State::Queued, 0));
        if given[i].is_empty() {
            let uuid = uuid::Uuid::parse_str(&e.id).expect("a generated id is a UUID");
            assert_eq!(uuid.get_version_num(), 7);
        } else {
            assert_eq!(e.id, given[i], "a given id comes back at its item's place");
        }
        let stored = ledger.get("crawl", &e.id).await.unwrap();
        assert_eq!((stored.state, stored.attempt), (State::Queued, 0));
        assert_eq!(
            (stored.payload, stored.created_at),
            (payload(i), e.created_at)
        );
    }
    assert_eq!(ledger.pending_count("crawl").await.unwrap(), 5);
    assert_eq!(ledger.queues().await.unwrap(), ["crawl"]);
    support::invariants::assert_ok(&ledger, &["crawl"]).await;

    // Generated ids only: claimed in item order.
    let enqueued = enqueue_ids(&ledger, "fifo", &[""; 20]).await.unwrap();
    let batch = ledger.claim_many("fifo", "w", 1000).await.unwrap();
    let expected: Vec<&str> = enqueued.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        ids(&batch.claims),
        expected,
        "claimed in the order enqueued"
    );
    let payloads: Vec<Value> = batch.claims.into_iter().map(|c| c.payload).collect();
    assert_eq!(payloads, (0..20).map(payload).collect::<Vec<_>>());
}

/// Item order should be claim order for given ids too, but every item of a batch is
/// scored by the same `now` in the pending zset, so the tie falls back to id order.
#[tokio::test]
async fn enqueue_many_with_given_ids_is_claimed_in_item_order() {
    let ledger = support::ledger("batch_given_fifo").await;
    enqueue_ids(&ledger, "q", &["c", "a", "b"]).await.unwrap();
    let batch = ledger.claim_many("q", "w", 3).await.unwrap();
    assert_eq!(ids(&batch.claims), ["c", "a", "b"]);
}

#[tokio::test]
async fn enqueue_many_is_idempotent_per_id() {
    let ledger = support::ledger("batch_idem").await;
    let opts = EnqueueOptions::new().id("old");
    let first = ledger.enqueue("q", &json!("old"), opts).await.unwrap();
    let claim = ledger.claim("q", "w").await.unwrap().unwrap();
    let before = ledger.get("q", "old").await.unwrap();

    let enqueued = enqueue_ids(&ledger, "q", &["old", "twice", "twice"])
        .await
        .unwrap();
    let replies: Vec<(&str, bool, State, u32)> = enqueued
        .iter()
        .map(|e| (e.id.as_str(), e.created, e.state, e.attempt))
        .collect();
    let expected = [
        ("old", false, State::Dispatched, 1),
        ("twice", true, State::Queued, 0),
        ("twice", false, State::Queued, 0),
    ];
    assert_eq!(replies, expected);
    assert_eq!(enqueued[0].created_at, first.created_at);
    assert_eq!(enqueued[2].created_at, enqueued[1].created_at);
    assert_eq!(ledger.get("q", "old").await.unwrap(), before, "untouched");
    let twice = ledger.get("q", "twice").await.unwrap();
    assert_eq!(twice.payload, payload(1), "the first item of an id wins");
    assert_eq!(ledger.pending_count("q").await.unwrap(), 1);
    assert_eq!(ledger.complete(&claim.token, None).await.unwrap(), RECORDED);
    support::invariants::assert_ok(&ledger, &["q"]).await;
}

#[tokio::test]
async fn one_bad_item_refuses_the_whole_batch() {
    let ledger = support::ledger_with("batch_bad", |c| c.max_payload_bytes = 64).await;
    let (fine, big) = (json!({"fine": true}), json!({"text": "x".repeat(100)}));
    let o = EnqueueOptions::new;
    // Each bad item, with what the typed error names.
    let cases = [
        ("execution id", &fine, o().id("a/b")),
        ("deadline", &fine, o().deadline(YEAR_AND_A_DAY)),
        ("delay", &fine, o().delay(YEAR_AND_A_DAY)),
        ("payload", &big, o()),
    ];
    for (what, bad_payload, bad_opts) in cases {
        // The bad item comes last: the good ones before it must not be written either.
        let items = [(&fine, o().id("ok")), (&fine, o()), (bad_payload, bad_opts)];
        let named = match ledger.enqueue_many("q", items).await {
            Err(Error::InvalidName { what, .. } | Error::TooLarge { what, .. }) => what.to_owned(),
            Err(Error::InvalidArgument { name, .. }) => name,
            other => panic!("{what}: unexpected {other:?}"),
        };
        assert_eq!(named, what);
        assert!(namespace_keys(&ledger).await.is_empty(), "{what}");
    }

    let empty: [(&Value, EnqueueOptions); 0] = [];
    refused!(
        ledger.enqueue_many("q", empty).await,
        Error::InvalidArgument { .. }
    );
    let too_many = vec![""; MAX_ENQUEUE_BATCH + 1];
    refused!(
        enqueue_ids(&ledger, "q", &too_many).await,
        Error::InvalidArgument { .. }
    );
    assert!(namespace_keys(&ledger).await.is_empty());

    // Exactly the limit is accepted.
    let full = enqueue_ids(&ledger, "q", &too_many[1..]).await.unwrap();
    assert!(full.iter().all(|e| e.created));
    assert_eq!(ledger.pending_count("q").await.unwrap(), MAX_ENQUEUE_BATCH);
}

#[tokio::test]
async fn complete_and_claim_hands_the_freed_slot_to_the_next_execution() {
    let ledger = support::ledger("cc_handoff").await;
    set_capacity(&ledger, "q", 1).await;
    enqueue_ids(&ledger, "q", &["a", "b", "c"]).await.unwrap();
    let a = ledger.claim("q", "w1").await.unwrap().unwrap();
    assert_eq!(a.id(), "a");
    assert_eq!(
        ledger.claim("q", "w2").await.unwrap(),
        None,
        "capacity 1 is held"
    );

    let result = json!({"done": "a"});
    let (outcome, next) = ledger
        .complete_and_claim(&a.token, Some(&result), "w1", 1)
        .await
        .unwrap();
    assert_eq!(outcome, RECORDED);
    assert_eq!((ids(&next.claims), next.queue_full), (vec!["b"], false));
    let b = &next.claims[0];
    assert_eq!((b.attempt(), &b.payload), (1, &payload(1)));
    let done = ledger.get("q", "a").await.unwrap();
    assert_eq!((done.state, done.result), (State::Succeeded, Some(result)));
    let stored = ledger.get("q", "b").await.unwrap();
    assert_eq!((stored.state, stored.attempt), (State::Dispatched, 1));
    assert_eq!(stored.worker.as_deref(), Some("w1"));
    assert_eq!(ledger.slots_in_use("q").await.unwrap(), 1);
    assert_eq!(ledger.pending_count("q").await.unwrap(), 1);
    support::invariants::assert_ok(&ledger, &["q"]).await;

    // Asking for more than the capacity allows stops at the capacity.
    let (outcome, next) = ledger
        .complete_and_claim(&b.token, None, "w1", 3)
        .await
        .unwrap();
    assert_eq!(outcome, RECORDED);
    assert_eq!((ids(&next.claims), next.queue_full), (vec!["c"], true));
    assert_eq!(ledger.slots_in_use("q").await.unwrap(), 1);

    // An empty queue: the completion is still recorded, nothing is claimed.
    let c = next.claims[0].token.clone();
    let (outcome, next) = ledger.complete_and_claim(&c, None, "w1", 1).await.unwrap();
    assert_eq!(outcome, RECORDED);
    let nothing = ClaimBatch {
        claims: Vec::new(),
        queue_full: false,
        queue_paused: false,
        next_available_at: None,
    };
    assert_eq!(next, nothing);
    assert_eq!(state(&ledger, "q", "c").await, State::Succeeded);
    assert_eq!(ledger.slots_in_use("q").await.unwrap(), 0);
    support::invariants::assert_ok(&ledger, &["q"]).await;
}

#[tokio::test]
async fn complete_and_claim_takes_several_up_to_max() {
    let ledger = support::ledger("cc_many").await;
    set_capacity(&ledger, "q", 3).await;
    enqueue_ids(&ledger, "q", &["x0", "x1", "x2", "x3", "x4", "x5"])
        .await
        .unwrap();
    let x0 = ledger.claim("q", "w").await.unwrap().unwrap();
    let (outcome, next) = ledger
        .complete_and_claim(&x0.token, None, "w", 2)
        .await
        .unwrap();
    assert_eq!(outcome, RECORDED);
    assert_eq!(
        (ids(&next.claims), next.queue_full),
        (vec!["x1", "x2"], false)
    );
    assert!(next.claims.iter().all(|c| c.attempt() == 1));

    let x1 = &next.claims[0].token;
    let (_, next) = ledger.complete_and_claim(x1, None, "w", 10).await.unwrap();
    let taken = (ids(&next.claims), next.queue_full);
    assert_eq!(taken, (vec!["x3", "x4"], true), "stops at capacity 3");
    assert_eq!(ledger.slots_in_use("q").await.unwrap(), 3);
    assert_eq!(ledger.pending_count("q").await.unwrap(), 1);
    support::invariants::assert_ok(&ledger, &["q"]).await;
}

#[tokio::test]
async fn a_refused_completion_claims_nothing() {
    let ledger = support::ledger("cc_refused").await;
    enqueue_ids(&ledger, "q", &["a", "m", "z"]).await.unwrap();
    let a = ledger.claim("q", "w").await.unwrap().unwrap();
    let m = ledger.claim("q", "w").await.unwrap().unwrap();
    assert_eq!((a.id(), m.id()), ("a", "m"));

    // A replay after the completion was recorded.
    assert_eq!(ledger.complete(&a.token, None).await.unwrap(), RECORDED);
    let (outcome, next) = ledger
        .complete_and_claim(&a.token, None, "w", 5)
        .await
        .unwrap();
    let first = CompleteOutcome::AlreadyTerminal {
        state: State::Succeeded,
        stop_reason: StopReason::Succeeded,
    };
    assert_eq!(outcome, first);
    assert!(next.claims.is_empty() && !next.queue_full);

    // A stale attempt: `m` went back to the queue after a retryable failure.
    let failed = ledger.fail(&m.token, "flaky", true).await.unwrap();
    assert!(matches!(failed, FailOutcome::RetryScheduled { .. }));
    let (outcome, next) = ledger
        .complete_and_claim(&m.token, None, "w", 5)
        .await
        .unwrap();
    let stale = CompleteOutcome::StaleAttempt {
        current_attempt: 1,
        state: State::Queued,
    };
    assert_eq!(outcome, stale);
    assert!(next.claims.is_empty());

    assert_eq!(
        state(&ledger, "q", "z").await,
        State::Queued,
        "z stays queued"
    );
    assert_eq!(state(&ledger, "q", "m").await, State::Queued);
    assert_eq!(ledger.pending_count("q").await.unwrap(), 2);
    assert_eq!(ledger.slots_in_use("q").await.unwrap(), 0);
    support::invariants::assert_ok(&ledger, &["q"]).await;
}

#[tokio::test]
async fn bad_arguments_to_complete_and_claim_write_nothing() {
    let ledger = support::ledger_with("cc_bad", |c| c.max_payload_bytes = 64).await;
    enqueue_ids(&ledger, "q", &["a", "b"]).await.unwrap();
    let a = ledger.claim("q", "w").await.unwrap().unwrap();
    let before = snapshot(&ledger).await;
    let t = &a.token;
    refused!(
        ledger.complete_and_claim(t, None, "bad worker", 1).await,
        Error::InvalidName {
            what: "worker id",
            ..
        }
    );
    refused!(
        ledger.complete_and_claim(t, None, "w", 0).await,
        Error::InvalidArgument { .. }
    );
    refused!(
        ledger
            .complete_and_claim(t, None, "w", MAX_CLAIM_BATCH + 1)
            .await,
        Error::InvalidArgument { .. }
    );
    refused!(
        ledger.complete_and_claim(&forged(t, 1), None, "w", 1).await,
        Error::TokenMismatch {
            current_attempt: 1,
            ..
        }
    );
    let big = json!({"text": "x".repeat(100)});
    refused!(
        ledger.complete_and_claim(t, Some(&big), "w", 1).await,
        Error::TooLarge { what: "result", .. }
    );
    assert_eq!(snapshot(&ledger).await, before, "no key changed");
    assert_eq!(state(&ledger, "q", "a").await, State::Dispatched);
    assert_eq!(state(&ledger, "q", "b").await, State::Queued);
}

#[tokio::test]
async fn complete_and_claim_emits_one_completed_and_one_claimed_event() {
    let ledger = support::ledger("cc_events").await;
    enqueue_ids(&ledger, "q", &["a", "b"]).await.unwrap();
    let a = ledger.claim("q", "w").await.unwrap().unwrap();
    let seen = events_of(&ledger, "q").await.len();
    ledger
        .complete_and_claim(&a.token, None, "w", 1)
        .await
        .unwrap();
    let events = events_of(&ledger, "q").await;
    type Row<'e> = (&'e str, u32, Option<State>, Option<State>, &'e str, &'e str);
    let new: Vec<Row> = events[seen..]
        .iter()
        .map(|e| {
            let (id, reason) = (e.execution_id.as_str(), e.reason.as_str());
            (id, e.attempt, e.from, e.to, reason, e.detail.as_str())
        })
        .collect();
    let (dispatched, queued) = (Some(State::Dispatched), Some(State::Queued));
    let expected = [
        ("a", 1, dispatched, Some(State::Succeeded), "completed", ""),
        ("b", 1, queued, dispatched, "claimed", "w"),
    ];
    assert_eq!(new, expected);
}

#[tokio::test]
async fn batches_run_on_a_cluster() {
    let ledger = support::cluster_ledger("batch_cluster").await;
    let enqueued = enqueue_ids(&ledger, "q", &["", "", ""]).await.unwrap();
    let first = ledger.claim("q", "w").await.unwrap().unwrap();
    assert_eq!(first.id(), enqueued[0].id);
    let (outcome, next) = ledger
        .complete_and_claim(&first.token, None, "w", 5)
        .await
        .unwrap();
    assert_eq!(outcome, RECORDED);
    assert_eq!(ids(&next.claims), [&enqueued[1].id, &enqueued[2].id]);
    support::invariants::assert_ok(&ledger, &["q"]).await;
}
