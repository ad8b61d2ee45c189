//! Queue pause and resume: a paused queue's claims take nothing (a long poll waits on and
//! gets the work right after the resume), each change is one event naming who and why,
//! repeats are no-ops, the pause survives `set_queue` and a new ledger handle, and bad
//! input (an unknown queue, no reason) writes nothing.

use crate::ledger_common;
use crate::support;

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;
use unstuck::*;

use ledger_common::{events_of, namespace_keys};

const LONG: Duration = Duration::from_secs(10);

async fn enqueue(l: &Ledger, queue: &str, id: &str) {
    l.enqueue(queue, &json!({ "id": id }), EnqueueOptions::new().id(id))
        .await
        .unwrap();
}

/// The queue events (pause, resume) of `queue`, as (reason, detail).
async fn pause_events(l: &Ledger, queue: &str) -> Vec<(String, String)> {
    events_of(l, queue)
        .await
        .into_iter()
        .filter(|e| e.execution_id.is_empty())
        .map(|e| {
            assert_eq!((e.from, e.to, e.attempt), (None, None, 0), "{e:?}");
            (e.reason, e.detail)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_queue_is_not_claimed_and_a_long_poll_gets_the_work_right_after_resume() {
    let l = support::ledger("pause_claims").await;
    enqueue(&l, "q", "a").await;
    let paused = l.pause_queue("q", "ops", "provider outage").await.unwrap();
    assert!(paused.paused && paused.changed, "{paused:?}");

    // A claim takes nothing and says why; the execution stays queued.
    let batch = l.claim_many("q", "w1", 5).await.unwrap();
    assert!(batch.claims.is_empty() && batch.queue_paused, "{batch:?}");
    assert_eq!(l.get("q", "a").await.unwrap().state, State::Queued);

    // A long poll is not refused: it waits, through an enqueue that wakes it (its claim
    // takes nothing again), until the resume.
    let waiter = tokio::spawn({
        let l = l.clone();
        async move {
            let batch = l.claim_wait("q", "w1", 2, LONG).await.unwrap();
            (batch, Instant::now())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    enqueue(&l, "q", "b").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiter.is_finished(),
        "the long poll still waits while paused"
    );
    assert_eq!(l.slots_in_use("q").await.unwrap(), 0);

    let resumed_at = Instant::now();
    let resumed = l.resume_queue("q", "ops", "provider back").await.unwrap();
    assert!(!resumed.paused && resumed.changed, "{resumed:?}");
    let (batch, answered_at) = waiter.await.unwrap();
    let ids: Vec<&str> = batch.claims.iter().map(Claim::id).collect();
    assert_eq!(ids, vec!["a", "b"], "the waiter got the work");
    assert!(
        answered_at - resumed_at < LONG / 2,
        "woken by the resume, not its timeout"
    );
    support::invariants::assert_ok(&l, &["q"]).await;
}

#[tokio::test]
async fn each_pause_and_resume_is_one_event_naming_who_and_why_and_repeats_change_nothing() {
    let l = support::ledger("pause_events").await;
    enqueue(&l, "q", "a").await;
    let first = l.pause_queue("q", "alice", "deploy").await.unwrap();
    let pause = first.pause.clone().expect("the pause in force");
    assert_eq!(
        (pause.by.as_str(), pause.reason.as_str()),
        ("alice", "deploy")
    );

    // Pausing again: nothing written, the pause in force reported.
    let again = l.pause_queue("q", "bob", "other").await.unwrap();
    assert!(again.paused && !again.changed, "{again:?}");
    assert_eq!(again.pause.as_ref(), Some(&pause));

    let overview = l.queue_overview("q").await.unwrap();
    assert!(overview.paused);
    assert_eq!(overview.pause.as_ref(), Some(&pause));
    let listed = l.queue_overviews().await.unwrap();
    assert_eq!(listed[0].pause.as_ref(), Some(&pause));

    let resumed = l.resume_queue("q", "bob", "").await.unwrap();
    assert!(resumed.changed && !resumed.paused);
    assert_eq!(resumed.pause.as_ref(), Some(&pause), "the pause it ended");
    let again = l.resume_queue("q", "bob", "twice").await.unwrap();
    assert!(!again.changed && !again.paused && again.pause.is_none());

    let overview = l.queue_overview("q").await.unwrap();
    assert!(!overview.paused && overview.pause.is_none());
    assert_eq!(
        pause_events(&l, "q").await,
        vec![
            ("queue_paused".to_owned(), "by alice: deploy".to_owned()),
            ("queue_resumed".to_owned(), "by bob".to_owned()),
        ]
    );
    assert_eq!(l.claim("q", "w1").await.unwrap().unwrap().id(), "a");
}

#[tokio::test]
async fn the_pause_survives_set_queue_and_a_new_ledger_handle() {
    let l = support::ledger("pause_kept").await;
    enqueue(&l, "q", "a").await;
    l.pause_queue("q", "ops", "incident 42").await.unwrap();
    let settings = QueueSettings {
        capacity: Some(3),
        ..QueueSettings::default()
    };
    l.set_queue("q", &settings).await.unwrap();

    // A process started afresh sees the pause and the new settings.
    let fresh = Ledger::connect(l.config().clone()).await.unwrap();
    let overview = fresh.queue_overview("q").await.unwrap();
    assert_eq!(overview.capacity, 3);
    let pause = overview.pause.expect("still paused");
    assert_eq!(
        (pause.by.as_str(), pause.reason.as_str()),
        ("ops", "incident 42")
    );
    assert_eq!(fresh.queue_settings("q").await.unwrap(), settings);
    assert!(fresh.claim("q", "w1").await.unwrap().is_none());

    // Settings without any field still keep it.
    fresh
        .set_queue("q", &QueueSettings::default())
        .await
        .unwrap();
    assert!(fresh.queue_overview("q").await.unwrap().paused);
    fresh.resume_queue("q", "ops", "fixed").await.unwrap();
    assert_eq!(fresh.claim("q", "w1").await.unwrap().unwrap().id(), "a");
}

#[tokio::test]
async fn a_completion_on_a_paused_queue_is_recorded_and_claims_nothing_more() {
    let l = support::ledger("pause_complete_claim").await;
    for id in ["a", "b"] {
        enqueue(&l, "q", id).await;
    }
    let a = l.claim("q", "w1").await.unwrap().unwrap();
    l.pause_queue("q", "ops", "drain").await.unwrap();
    let (outcome, next) = l.complete_and_claim(&a.token, None, "w1", 1).await.unwrap();
    assert!(
        matches!(outcome, CompleteOutcome::Recorded { .. }),
        "{outcome:?}"
    );
    assert!(next.claims.is_empty() && next.queue_paused, "{next:?}");
    assert_eq!(l.get("q", "a").await.unwrap().state, State::Succeeded);
    assert_eq!(l.get("q", "b").await.unwrap().state, State::Queued);
    support::invariants::assert_ok(&l, &["q"]).await;
}

#[tokio::test]
async fn bad_pause_input_is_refused_and_writes_nothing() {
    let l = support::ledger("pause_bad_input").await;
    enqueue(&l, "q", "a").await;
    let before = namespace_keys(&l).await;
    let events_before = events_of(&l, "q").await.len();

    let unknown = l.pause_queue("nope", "ops", "why").await.unwrap_err();
    assert!(
        matches!(&unknown, Error::UnknownQueue { queue } if queue == "nope"),
        "{unknown:?}"
    );
    assert!(matches!(
        l.resume_queue("nope", "ops", "").await,
        Err(Error::UnknownQueue { .. })
    ));
    assert!(matches!(
        l.pause_queue("bad name", "ops", "why").await,
        Err(Error::InvalidName { .. })
    ));
    for (by, reason) in [
        ("", "why"),
        ("ops", ""),
        ("ops", "  "),
        ("ops\n", "why"),
        (&*"o".repeat(MAX_PAUSED_BY + 1), "why"),
        ("ops", &*"r".repeat(MAX_PAUSE_REASON + 1)),
    ] {
        let refused = l.pause_queue("q", by, reason).await;
        assert!(
            matches!(refused, Err(Error::InvalidArgument { .. })),
            "{by:?} {reason:?}: {refused:?}"
        );
    }
    assert!(matches!(
        l.resume_queue("q", "", "").await,
        Err(Error::InvalidArgument { .. })
    ));

    assert_eq!(namespace_keys(&l).await, before, "no key written");
    assert_eq!(events_of(&l, "q").await.len(), events_before, "no event");
    assert!(!l.queue_overview("q").await.unwrap().paused);
}
