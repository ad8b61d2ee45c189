//! Resource leases through the library: acquire and release, capacity, the fence that
//! keeps a stale attempt's release from freeing a later attempt's unit, the release that
//! follows every attempt-ending call, force-release, bad input, waiting for a unit.

use crate::bad_input::snapshot;
use crate::ledger_common;
use crate::support;

use std::time::Duration;

use redis::AsyncCommands;
use serde_json::json;
use unstuck::error::Error;
use unstuck::*;

use ledger_common::{events_of, forged, raw, running};

fn acquired(outcome: &AcquireOutcome) -> (u32, u32) {
    match outcome {
        AcquireOutcome::Acquired { capacity, held, .. } => (*capacity, *held),
        other => panic!("expected acquired, got {other:?}"),
    }
}

/// The holders `<queue>/<id>` of `resource` as Redis holds them (the raw hash).
async fn raw_holders(ledger: &Ledger, resource: &str) -> Vec<String> {
    let mut conn = raw().await;
    let key = format!("{{{}:resources}}:r:{resource}", ledger.config().namespace);
    let mut fields: Vec<String> = conn.hkeys(key).await.unwrap();
    fields.retain(|f| f != "cap");
    fields.sort();
    fields
}

fn resource_events(events: &[Event], id: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.execution_id == id && e.reason.starts_with("resource_"))
        .map(|e| format!("{}@{}", e.reason, e.attempt))
        .collect()
}

#[tokio::test]
async fn acquire_and_release_a_unit_with_events_and_listing() {
    let ledger = support::ledger("res_basic").await;
    let t = running(&ledger, "q", "a", EnqueueOptions::new()).await;
    let out = ledger.acquire(&t, Acquire::new("browser")).await.unwrap();
    assert_eq!(acquired(&out), (1, 1));
    // Again in the same attempt: still one unit, held by it.
    let again = ledger.acquire(&t, Acquire::new("browser")).await.unwrap();
    assert_eq!(acquired(&again), (1, 1));
    assert_eq!(raw_holders(&ledger, "browser").await, ["q/a"]);

    let list = ledger.resources().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].resource, "browser");
    assert_eq!((list[0].capacity, list[0].held), (1, 1));
    assert_eq!(
        (list[0].holders[0].id.as_str(), list[0].holders[0].attempt),
        ("a", 1)
    );

    assert!(ledger.release(&t, "browser").await.unwrap());
    assert!(!ledger.release(&t, "browser").await.unwrap(), "idempotent");
    assert!(ledger.resources().await.unwrap().is_empty());
    assert!(ledger.resource("browser").await.unwrap().is_none());
    assert!(raw_holders(&ledger, "browser").await.is_empty());
    let evs = events_of(&ledger, "q").await;
    assert_eq!(
        resource_events(&evs, "a"),
        [
            "resource_acquired@1",
            "resource_acquired@1",
            "resource_released@1"
        ]
    );
}

#[tokio::test]
async fn capacity_is_never_exceeded_and_busy_names_the_holders() {
    let ledger = support::ledger("res_capacity").await;
    let a = running(&ledger, "q", "a", EnqueueOptions::new()).await;
    let b = running(&ledger, "q", "b", EnqueueOptions::new()).await;
    let c = running(&ledger, "q", "c", EnqueueOptions::new()).await;
    assert_eq!(
        acquired(
            &ledger
                .acquire(&a, Acquire::new("gpu").capacity(2))
                .await
                .unwrap()
        ),
        (2, 1)
    );
    assert_eq!(
        acquired(&ledger.acquire(&b, Acquire::new("gpu")).await.unwrap()),
        (2, 2)
    );
    match ledger.acquire(&c, Acquire::new("gpu")).await {
        Err(Error::ResourceBusy {
            resource,
            capacity,
            holders,
        }) => {
            assert_eq!((resource.as_str(), capacity), ("gpu", 2));
            let ids: Vec<&str> = holders.iter().map(|h| h.id.as_str()).collect();
            assert_eq!(ids.len(), 2);
            assert!(ids.contains(&"a") && ids.contains(&"b"), "{ids:?}");
        }
        other => panic!("expected busy, got {other:?}"),
    }
    // A different capacity while held is refused, nothing written.
    let before = snapshot(&ledger).await;
    match ledger.acquire(&c, Acquire::new("gpu").capacity(3)).await {
        Err(Error::ResourceCapacity {
            capacity: 2,
            requested: 3,
            held: 2,
            ..
        }) => {}
        other => panic!("expected a capacity conflict, got {other:?}"),
    }
    assert_eq!(snapshot(&ledger).await, before);
    assert_eq!(raw_holders(&ledger, "gpu").await, ["q/a", "q/b"]);
    // Once nobody holds it, the next acquire sets the capacity afresh.
    ledger.release(&a, "gpu").await.unwrap();
    ledger.release(&b, "gpu").await.unwrap();
    assert_eq!(
        acquired(
            &ledger
                .acquire(&c, Acquire::new("gpu").capacity(3))
                .await
                .unwrap()
        ),
        (3, 1)
    );
}

#[tokio::test]
async fn a_stale_attempts_release_frees_nothing_and_the_retry_takes_over() {
    let ledger = support::ledger("res_stale").await;
    let opts = EnqueueOptions::new()
        .max_attempts(3)
        .backoff_base(Duration::from_millis(1));
    let first = running(&ledger, "q", "a", opts).await;
    acquired(&ledger.acquire(&first, Acquire::new("tool")).await.unwrap());
    // The attempt ends by a retryable failure: its unit is freed.
    ledger.fail(&first, "boom", true).await.unwrap();
    assert!(raw_holders(&ledger, "tool").await.is_empty());
    // The retry acquires it.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = loop {
        if let Some(c) = ledger.claim("q", "w2").await.unwrap() {
            break c.token;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(second.attempt(), 2);
    acquired(&ledger.acquire(&second, Acquire::new("tool")).await.unwrap());
    // The first attempt's late release (and late acquire) change nothing.
    let before = snapshot(&ledger).await;
    assert!(!ledger.release(&first, "tool").await.unwrap());
    let late = ledger.acquire(&first, Acquire::new("tool")).await.unwrap();
    assert!(late.refusal().is_some(), "{late:?}");
    assert_eq!(snapshot(&ledger).await, before);
    let held = ledger.resource("tool").await.unwrap().unwrap();
    assert_eq!(
        (held.holders[0].id.as_str(), held.holders[0].attempt),
        ("a", 2)
    );
    // A forged token of the current attempt frees nothing either.
    assert!(matches!(
        ledger.release(&forged(&second, 2), "tool").await,
        Err(Error::TokenMismatch { .. })
    ));
    assert_eq!(raw_holders(&ledger, "tool").await, ["q/a"]);
    let evs = events_of(&ledger, "q").await;
    assert_eq!(
        resource_events(&evs, "a"),
        [
            "resource_acquired@1",
            "resource_freed@1",
            "resource_acquired@2"
        ]
    );
}

#[tokio::test]
async fn every_attempt_ending_call_frees_the_attempts_units() {
    let ledger = support::ledger("res_ends").await;
    let long = Duration::from_secs(60);
    let opts = || EnqueueOptions::new().max_attempts(5);
    for (id, how) in [
        ("done", "complete"),
        ("failed", "fail"),
        ("snoozed", "snooze"),
        ("awaiting", "await"),
        ("cancelled", "cancel"),
    ] {
        let t = running(&ledger, id, id, opts()).await;
        acquired(
            &ledger
                .acquire(&t, Acquire::new(format!("r-{id}")))
                .await
                .unwrap(),
        );
        acquired(
            &ledger
                .acquire(&t, Acquire::new("shared").capacity(10))
                .await
                .unwrap(),
        );
        match how {
            "complete" => {
                ledger.complete(&t, Some(&json!({}))).await.unwrap();
            }
            "fail" => {
                ledger.fail(&t, "no", false).await.unwrap();
            }
            "snooze" => {
                ledger
                    .snooze(&t, Snooze::after(long, "later"))
                    .await
                    .unwrap();
            }
            "await" => {
                ledger
                    .await_resume(
                        &t,
                        AwaitResume {
                            reason: "a person".into(),
                            wait_deadline: long,
                            checkpoint: None,
                        },
                    )
                    .await
                    .unwrap();
            }
            _ => {
                ledger.cancel(id, id, "stop").await.unwrap();
                ledger.acknowledge_cancel(&t).await.unwrap();
            }
        }
        assert!(
            ledger.resource(&format!("r-{id}")).await.unwrap().is_none(),
            "{how}"
        );
        let evs = events_of(&ledger, id).await;
        let freed: Vec<&Event> = evs
            .iter()
            .filter(|e| e.reason == "resource_freed")
            .collect();
        assert_eq!(freed.len(), 2, "{how}: {evs:?}");
    }
    assert!(ledger.resources().await.unwrap().is_empty());
}

#[tokio::test]
async fn force_release_needs_a_reason_and_records_it() {
    let ledger = support::ledger("res_force").await;
    let t = running(&ledger, "q", "a", EnqueueOptions::new()).await;
    acquired(&ledger.acquire(&t, Acquire::new("worktree")).await.unwrap());
    let before = snapshot(&ledger).await;
    for reason in ["", "   "] {
        assert!(matches!(
            ledger.force_release("worktree", "q", "a", reason).await,
            Err(Error::InvalidArgument { .. })
        ));
    }
    assert_eq!(snapshot(&ledger).await, before);
    assert_eq!(
        ledger
            .force_release("worktree", "q", "other", "x")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        ledger
            .force_release("worktree", "q", "a", "stuck browser")
            .await
            .unwrap(),
        Some(1)
    );
    assert!(ledger.resource("worktree").await.unwrap().is_none());
    let evs = events_of(&ledger, "q").await;
    let forced = evs
        .iter()
        .find(|e| e.reason == "resource_force_released")
        .expect("event");
    assert!(forced.detail.contains("stuck browser"), "{forced:?}");
}

#[tokio::test]
async fn bad_input_is_refused_with_nothing_written() {
    let ledger = support::ledger("res_bad").await;
    let t = running(&ledger, "q", "a", EnqueueOptions::new()).await;
    let before = snapshot(&ledger).await;
    let cases: Vec<(Acquire, &str)> = vec![
        (Acquire::new(""), "name"),
        (Acquire::new("a/b"), "name"),
        (Acquire::new("{x}"), "name"),
        (Acquire::new("r").capacity(0), "capacity"),
        (Acquire::new("r").capacity(1_000_000), "capacity"),
        (Acquire::new("r").ttl(Duration::ZERO), "ttl"),
        (Acquire::new("r").ttl(Duration::from_micros(1500)), "ttl"),
        (Acquire::new("r").ttl(Duration::from_secs(90_000)), "ttl"),
        (Acquire::new("r").wait(Duration::from_secs(31)), "wait"),
    ];
    for (acquire, what) in cases {
        let err = ledger.acquire(&t, acquire.clone()).await.unwrap_err();
        match (&err, what) {
            (Error::InvalidName { .. }, "name") => {}
            (Error::InvalidArgument { name, .. }, w) if name == w => {}
            _ => panic!("{acquire:?}: {err:?}"),
        }
    }
    assert!(matches!(
        ledger.acquire(&forged(&t, 1), Acquire::new("r")).await,
        Err(Error::TokenMismatch { .. })
    ));
    assert!(matches!(
        ledger.release(&t, "bad name").await,
        Err(Error::InvalidName { .. })
    ));
    assert_eq!(snapshot(&ledger).await, before);
}

#[tokio::test]
async fn a_waiting_acquire_gets_the_unit_when_it_is_released() {
    let ledger = support::ledger("res_wait").await;
    let a = running(&ledger, "q", "a", EnqueueOptions::new()).await;
    let b = running(&ledger, "q", "b", EnqueueOptions::new()).await;
    acquired(&ledger.acquire(&a, Acquire::new("key")).await.unwrap());
    // Without a wait: busy at once.
    assert!(matches!(
        ledger.acquire(&b, Acquire::new("key")).await,
        Err(Error::ResourceBusy { .. })
    ));
    let waiter = {
        let (ledger, b) = (ledger.clone(), b.clone());
        tokio::spawn(async move {
            ledger
                .acquire(&b, Acquire::new("key").wait(Duration::from_secs(10)))
                .await
        })
    };
    // The waiter is still waiting while a holds it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiter.is_finished());
    ledger.complete(&a, None).await.unwrap();
    let got = waiter.await.unwrap().unwrap();
    assert_eq!(acquired(&got), (1, 1));
    let held = ledger.resource("key").await.unwrap().unwrap();
    assert_eq!(held.holders[0].id, "b");
}

#[tokio::test]
async fn a_unit_past_its_ttl_counts_as_free() {
    let ledger = support::ledger("res_ttl").await;
    let a = running(&ledger, "q", "a", EnqueueOptions::new()).await;
    let b = running(&ledger, "q", "b", EnqueueOptions::new()).await;
    let out = ledger
        .acquire(&a, Acquire::new("tok").ttl(Duration::from_millis(100)))
        .await
        .unwrap();
    assert!(matches!(
        out,
        AcquireOutcome::Acquired {
            expires_at: Some(_),
            ..
        }
    ));
    let got = ledger
        .acquire(&b, Acquire::new("tok").wait(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(acquired(&got), (1, 1));
    assert_eq!(raw_holders(&ledger, "tok").await, ["q/b"]);
}

#[tokio::test]
async fn capacity_holds_under_fifty_concurrent_acquirers_checked_from_redis() {
    let ledger = support::ledger("res_fifty").await;
    const CAP: usize = 3;
    let mut tokens = Vec::new();
    for i in 0..50 {
        tokens.push(running(&ledger, "crowd", &format!("e{i}"), EnqueueOptions::new()).await);
    }
    let key = format!("{{{}:resources}}:r:one", ledger.config().namespace);
    // A watcher reads the resource hash from Redis all along: never more holders than
    // the capacity (the hash holds `cap` besides the holders).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (key, stop) = (key.clone(), stop.clone());
        tokio::spawn(async move {
            let mut conn = raw().await;
            let mut most = 0usize;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let fields: usize = conn.hlen(&key).await.unwrap();
                most = most.max(fields.saturating_sub(1));
            }
            most
        })
    };
    let tasks: Vec<_> = tokens
        .into_iter()
        .map(|t| {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                let acquire = Acquire::new("one")
                    .capacity(CAP as u32)
                    .wait(Duration::from_secs(30));
                let out = ledger.acquire(&t, acquire).await.unwrap();
                let (_, held) = acquired(&out);
                assert!(held as usize <= CAP, "held {held}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                assert!(ledger.release(&t, "one").await.unwrap());
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let most = watcher.await.unwrap();
    assert!(
        most <= CAP,
        "Redis held {most} units of a capacity of {CAP}"
    );
    assert!(most >= 1);
    let acquired_events = events_of(&ledger, "crowd")
        .await
        .iter()
        .filter(|e| e.reason == "resource_acquired")
        .count();
    assert_eq!(
        acquired_events, 50,
        "every acquirer got its unit in the end"
    );
    assert!(ledger.resources().await.unwrap().is_empty());
}
