//! The event stream: every transition appends one event naming from, to and why; events are
//! read back page by page, or followed live.

use crate::ledger_common;
use crate::support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use unstuck::*;

use ledger_common::{events_of, running};

type Step = (Option<State>, Option<State>, &'static str, u32);

fn steps(events: &[Event]) -> Vec<(Option<State>, Option<State>, String, u32)> {
    events
        .iter()
        .map(|e| (e.from, e.to, e.reason.clone(), e.attempt))
        .collect()
}

fn expect(steps: &[Step]) -> Vec<(Option<State>, Option<State>, String, u32)> {
    steps
        .iter()
        .map(|(f, t, r, a)| (*f, *t, (*r).to_owned(), *a))
        .collect()
}

#[tokio::test]
async fn every_transition_appends_one_event() {
    let ledger = support::ledger("ev_all").await;
    use State::*;

    // Success on the first attempt. Refused calls and heartbeats that only move progress
    // are not transitions: no event.
    let token = running(&ledger, "q2", "ok", EnqueueOptions::new()).await;
    assert_eq!(events_of(&ledger, "q2").await.len(), 3);
    let forged = ledger_common::forged(&token, 1);
    assert!(ledger.heartbeat(&forged, Heartbeat::new()).await.is_err());
    assert!(ledger.complete(&forged, None).await.is_err());
    for n in 0..3 {
        let beat = Heartbeat::new().progress(n.to_string());
        ledger.heartbeat(&token, beat).await.unwrap();
    }
    assert!(ledger.acknowledge_cancel(&token).await.is_err());
    assert_eq!(events_of(&ledger, "q2").await.len(), 3);
    ledger.complete(&token, Some(&json!("done"))).await.unwrap();
    ledger.complete(&token, None).await.unwrap(); // a replay: no event
    let events = events_of(&ledger, "q2").await;
    assert_eq!(
        steps(&events),
        expect(&[
            (None, Some(Queued), "enqueued", 0),
            (Some(Queued), Some(Dispatched), "claimed", 1),
            (Some(Dispatched), Some(Running), "started", 1),
            (Some(Running), Some(Succeeded), "completed", 1),
        ])
    );
    let partition = ledger.partition_of("q2");
    for e in &events {
        assert_eq!((e.queue.as_str(), e.execution_id.as_str()), ("q2", "ok"));
        assert_eq!(e.partition, partition);
        assert_eq!(e.timer_due_at, None);
    }
    assert_eq!(events[1].detail, "worker-1", "the claim names its worker");
    assert!(events.windows(2).all(|w| w[0].at <= w[1].at));
    assert!(events.windows(2).all(|w| w[0].stream_id < w[1].stream_id));
    let e = ledger.get("q2", "ok").await.unwrap();
    // An event's time is its stream id, which XADD takes from the server clock a moment
    // after the script read TIME: the same clock, possibly a millisecond on.
    for (event, transition) in events.iter().zip(&e.history) {
        let lag = event.at - transition.at;
        assert!(
            lag >= chrono::Duration::zero() && lag < chrono::Duration::seconds(1),
            "event at {} for a transition at {}",
            event.at,
            transition.at
        );
        assert_eq!(event.to, Some(transition.state));
        assert_eq!(event.reason, transition.reason);
    }

    // A retry, a cancellation request and its acknowledgement.
    let opts = EnqueueOptions::new()
        .max_attempts(2)
        .backoff_base(Duration::ZERO);
    let first = running(&ledger, "q3", "r", opts).await;
    ledger.fail(&first, "flaky", true).await.unwrap();
    let second = ledger.claim("q3", "w").await.unwrap().unwrap();
    ledger.cancel("q3", "r", "stop it | now").await.unwrap();
    ledger.cancel("q3", "r", "again").await.unwrap(); // already requested: no event
    ledger.acknowledge_cancel(&second.token).await.unwrap();
    let events = events_of(&ledger, "q3").await;
    assert_eq!(
        steps(&events),
        expect(&[
            (None, Some(Queued), "enqueued", 0),
            (Some(Queued), Some(Dispatched), "claimed", 1),
            (Some(Dispatched), Some(Running), "started", 1),
            (Some(Running), Some(Queued), "retry_scheduled", 1),
            (Some(Queued), Some(Dispatched), "claimed", 2),
            (Some(Dispatched), Some(Dispatched), "cancel_requested", 2),
            (Some(Dispatched), Some(Cancelled), "cancel_acknowledged", 2),
        ])
    );
    assert_eq!(events[3].detail, "flaky");
    assert_eq!(
        events[5].detail, "stop it | now",
        "free text may hold the separator"
    );

    // Failure and queued cancellation.
    let token = running(&ledger, "q4", "f", EnqueueOptions::new()).await;
    ledger.fail(&token, "fatal", false).await.unwrap();
    ledger
        .enqueue("q4", &json!({}), EnqueueOptions::new().id("c"))
        .await
        .unwrap();
    ledger.cancel("q4", "c", "unwanted").await.unwrap();
    let tail: Vec<_> = steps(&events_of(&ledger, "q4").await)
        .into_iter()
        .filter(|s| s.2 == "failed" || s.2 == "cancelled")
        .collect();
    assert_eq!(
        tail,
        expect(&[
            (Some(Running), Some(Failed), "failed", 1),
            (Some(Queued), Some(Cancelled), "cancelled", 0),
        ])
    );
}

#[tokio::test]
async fn read_events_pages_with_after() {
    let ledger = support::ledger_with("ev_paging", |c| c.partitions = 1).await;
    for n in 0..7 {
        ledger
            .enqueue("q", &json!(n), EnqueueOptions::new().id(format!("e{n}")))
            .await
            .unwrap();
    }
    let all = ledger.read_events(0, None, 100).await.unwrap();
    assert_eq!(all.len(), 7);
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = ledger.read_events(0, after.as_deref(), 3).await.unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        after = Some(last.stream_id.clone());
        paged.extend(page);
    }
    assert_eq!(paged, all);
    let ids: Vec<&str> = all.iter().map(|e| e.execution_id.as_str()).collect();
    assert_eq!(ids, ["e0", "e1", "e2", "e3", "e4", "e5", "e6"]);
    let after_third = ledger
        .read_events(0, Some(&all[2].stream_id), 100)
        .await
        .unwrap();
    assert_eq!(after_third, all[3..]);
    let after_last = ledger
        .read_events(0, Some(&all[6].stream_id), 100)
        .await
        .unwrap();
    assert!(after_last.is_empty());
}

#[tokio::test]
async fn follow_events_sees_what_happens_after_it_started() {
    let ledger = support::ledger_with("ev_follow", |c| c.partitions = 2).await;
    ledger
        .enqueue("q", &json!({}), EnqueueOptions::new().id("before"))
        .await
        .unwrap();
    // A second queue on the other partition, whose stream is still empty.
    let other = (0..)
        .map(|n| format!("other-{n}"))
        .find(|q| ledger.partition_of(q) != ledger.partition_of("q"))
        .unwrap();
    let mut follower = ledger.follow_events(vec![]).await.unwrap();

    // Produced after follow_events returned but before the first read: still seen.
    ledger
        .enqueue("q", &json!({}), EnqueueOptions::new().id("early"))
        .await
        .unwrap();
    let seen: Arc<Mutex<Vec<Event>>> = Arc::default();
    let collector = {
        let seen = seen.clone();
        tokio::spawn(async move {
            loop {
                let batch = follower.next_batch().await.unwrap();
                seen.lock().unwrap().extend(batch);
            }
        })
    };
    let producer = {
        let (ledger, other) = (ledger.clone(), other.clone());
        tokio::spawn(async move {
            let token = running(&ledger, &other, "x", EnqueueOptions::new()).await;
            ledger.complete(&token, None).await.unwrap();
            ledger
                .enqueue("q", &json!({}), EnqueueOptions::new().id("late"))
                .await
                .unwrap();
        })
    };
    producer.await.unwrap();
    let wanted = |events: &[Event]| {
        let has = |queue: &str, id: &str, reason: &str| {
            events
                .iter()
                .any(|e| e.queue == queue && e.execution_id == id && e.reason == reason)
        };
        has("q", "late", "enqueued") && has(&other, "x", "completed")
    };
    support::wait_until(
        Duration::from_secs(10),
        "the follower sees every event",
        || {
            let found = wanted(&seen.lock().unwrap());
            async move { found }
        },
    )
    .await;
    collector.abort();

    let seen = seen.lock().unwrap().clone();
    let of = |queue: &str| -> Vec<(String, String)> {
        seen.iter()
            .filter(|e| e.queue == queue)
            .map(|e| (e.execution_id.clone(), e.reason.clone()))
            .collect()
    };
    let owned = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    };
    // Each event once, in order per partition, none from before the follower started.
    assert_eq!(
        of("q"),
        owned(&[("early", "enqueued"), ("late", "enqueued")])
    );
    assert_eq!(
        of(&other),
        owned(&[
            ("x", "enqueued"),
            ("x", "claimed"),
            ("x", "started"),
            ("x", "completed"),
        ])
    );
    assert_eq!(seen.len(), 6, "{seen:#?}");
}
