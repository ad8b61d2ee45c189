//! Queue settings and capacity: timings resolved execution → queue → global default and
//! frozen at enqueue; capacity slots taken by claims and freed by endings.

use crate::support;

use std::time::Duration;

use serde_json::json;
use unstuck::*;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Global defaults that differ from the built-in ones in every field.
fn config_defaults() -> Timings {
    Timings {
        start_grace: Some(secs(11)),
        heartbeat_timeout: Some(secs(12)),
        no_progress_timeout: Some(secs(13)),
        deadline: Some(secs(14)),
        stuck_threshold: Some(secs(15)),
        max_attempts: Some(6),
        backoff_base: Some(secs(17)),
        backoff_max: Some(secs(18)),
        cancel_grace: Some(secs(19)),
        max_snoozes: Some(20),
        max_repeats: Some(21),
    }
}

#[tokio::test]
async fn timings_resolve_execution_then_queue_then_global_default() {
    let ledger = support::ledger_with("q_timings", |c| c.defaults = config_defaults()).await;
    let queue_timings = Timings {
        heartbeat_timeout: Some(secs(22)),
        deadline: Some(secs(24)),
        max_attempts: Some(3),
        cancel_grace: Some(secs(29)),
        max_snoozes: Some(30),
        max_repeats: Some(31),
        ..Timings::default()
    };
    ledger
        .set_queue(
            "q",
            &QueueSettings {
                capacity: None,
                timings: queue_timings,
                ..QueueSettings::default()
            },
        )
        .await
        .unwrap();
    let opts = EnqueueOptions::new()
        .id("x")
        .deadline(secs(34))
        .cancel_grace(secs(39))
        .no_progress_timeout(Duration::ZERO);
    ledger.enqueue("q", &json!({}), opts).await.unwrap();
    let x = ledger.get("q", "x").await.unwrap();
    let expected = ResolvedTimings {
        start_grace: secs(11),
        heartbeat_timeout: secs(22),
        no_progress_timeout: None, // zero set on the execution: the rule is off
        deadline: Some(secs(34)),
        stuck_threshold: secs(15),
        max_attempts: 3,
        backoff_base: secs(17),
        backoff_max: secs(18),
        cancel_grace: secs(39),
        max_snoozes: 30,
        max_repeats: Some(31),
    };
    assert_eq!(x.timings, expected);
    assert_eq!(
        x.deadline_at,
        Some(x.created_at + chrono::Duration::seconds(34))
    );

    // A queue with no settings takes every global default.
    ledger
        .enqueue("plain", &json!({}), EnqueueOptions::new().id("y"))
        .await
        .unwrap();
    let y = ledger.get("plain", "y").await.unwrap();
    assert_eq!(
        y.timings,
        ResolvedTimings {
            start_grace: secs(11),
            heartbeat_timeout: secs(12),
            no_progress_timeout: Some(secs(13)),
            deadline: Some(secs(14)),
            stuck_threshold: secs(15),
            max_attempts: 6,
            backoff_base: secs(17),
            backoff_max: secs(18),
            cancel_grace: secs(19),
            max_snoozes: 20,
            max_repeats: Some(21),
        }
    );
    let claim = ledger.claim("q", "w").await.unwrap().unwrap();
    assert_eq!(claim.heartbeat_timeout, secs(22));
    assert_eq!(claim.deadline_at, x.deadline_at);

    // Changing the queue later leaves enqueued work alone; new work takes the new values.
    ledger
        .set_queue(
            "q",
            &QueueSettings {
                capacity: Some(1),
                timings: Timings {
                    heartbeat_timeout: Some(secs(99)),
                    max_attempts: Some(9),
                    ..Timings::default()
                },
                ..QueueSettings::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(ledger.get("q", "x").await.unwrap().timings, expected);
    ledger
        .enqueue("q", &json!({}), EnqueueOptions::new().id("z"))
        .await
        .unwrap();
    let z = ledger.get("q", "z").await.unwrap().timings;
    assert_eq!((z.heartbeat_timeout, z.max_attempts), (secs(99), 9));
    assert_eq!(
        z.deadline,
        Some(secs(14)),
        "replaced settings dropped the queue deadline"
    );
    assert_eq!(z.cancel_grace, secs(19));
}

#[tokio::test]
async fn built_in_defaults_apply_when_nothing_is_set() {
    let ledger = support::ledger("q_builtin").await;
    ledger
        .enqueue("q", &json!({}), EnqueueOptions::new().id("x"))
        .await
        .unwrap();
    let t = ledger.get("q", "x").await.unwrap().timings;
    let d = Timings::global_defaults();
    assert_eq!(
        t,
        ResolvedTimings {
            start_grace: d.start_grace.unwrap(),
            heartbeat_timeout: d.heartbeat_timeout.unwrap(),
            no_progress_timeout: None,
            deadline: None,
            stuck_threshold: d.stuck_threshold.unwrap(),
            max_attempts: d.max_attempts.unwrap(),
            backoff_base: d.backoff_base.unwrap(),
            backoff_max: d.backoff_max.unwrap(),
            cancel_grace: d.cancel_grace.unwrap(),
            max_snoozes: 50,
            max_repeats: None,
        }
    );
}

#[tokio::test]
async fn queue_settings_round_trip_and_replace() {
    let ledger = support::ledger("q_settings").await;
    assert_eq!(
        ledger.queue_settings("q").await.unwrap(),
        QueueSettings::default()
    );
    let full = QueueSettings {
        capacity: Some(7),
        timings: Timings {
            start_grace: Some(Duration::from_millis(1500)),
            heartbeat_timeout: Some(secs(2)),
            no_progress_timeout: Some(Duration::ZERO),
            deadline: Some(secs(3600)),
            stuck_threshold: Some(secs(4)),
            max_attempts: Some(5),
            backoff_base: Some(Duration::from_millis(250)),
            backoff_max: Some(secs(60)),
            cancel_grace: Some(secs(8)),
            max_snoozes: Some(0),
            max_repeats: Some(10_000),
        },
        ..QueueSettings::default()
    };
    ledger.set_queue("q", &full).await.unwrap();
    assert_eq!(ledger.queue_settings("q").await.unwrap(), full);
    assert!(ledger.queues().await.unwrap().contains(&"q".to_owned()));

    let partial = QueueSettings {
        capacity: None,
        timings: Timings {
            heartbeat_timeout: Some(secs(9)),
            ..Timings::default()
        },
        ..QueueSettings::default()
    };
    ledger.set_queue("q", &partial).await.unwrap();
    assert_eq!(ledger.queue_settings("q").await.unwrap(), partial);
    ledger
        .set_queue("q", &QueueSettings::default())
        .await
        .unwrap();
    assert_eq!(
        ledger.queue_settings("q").await.unwrap(),
        QueueSettings::default()
    );
}

#[tokio::test]
async fn capacity_bounds_claims_and_endings_free_slots() {
    let ledger = support::ledger("q_capacity").await;
    let settings = QueueSettings {
        capacity: Some(2),
        timings: Timings::default(),
        ..QueueSettings::default()
    };
    ledger.set_queue("q", &settings).await.unwrap();
    for n in 0..5 {
        ledger
            .enqueue("q", &json!(n), EnqueueOptions::new().id(format!("e{n}")))
            .await
            .unwrap();
    }
    let batch = ledger.claim_many("q", "w", 5).await.unwrap();
    assert_eq!(batch.claims.len(), 2);
    assert!(batch.queue_full);
    assert_eq!(batch.next_available_at, None);
    assert_eq!(ledger.slots_in_use("q").await.unwrap(), 2);
    assert_eq!(ledger.pending_count("q").await.unwrap(), 3);
    let full = ledger.claim_many("q", "w", 1).await.unwrap();
    assert_eq!((full.claims.len(), full.queue_full), (0, true));
    assert!(ledger.claim("q", "w").await.unwrap().is_none());

    // Completion frees a slot: exactly one more claim fits.
    let mut held: Vec<Claim> = batch.claims;
    let done = held.remove(0);
    ledger.complete(&done.token, None).await.unwrap();
    assert_eq!(ledger.slots_in_use("q").await.unwrap(), 1);
    let batch = ledger.claim_many("q", "w", 5).await.unwrap();
    assert_eq!((batch.claims.len(), batch.queue_full), (1, true));
    held.extend(batch.claims);

    // So does a terminal failure, and a retry (which goes back to pending).
    let failed = held.remove(0);
    ledger.fail(&failed.token, "no", false).await.unwrap();
    assert_eq!(ledger.slots_in_use("q").await.unwrap(), 1);
    held.push(ledger.claim("q", "w").await.unwrap().unwrap());
    let retried = held.remove(0);
    let outcome = ledger.fail(&retried.token, "again", true).await.unwrap();
    assert!(matches!(
        outcome,
        FailOutcome::RetryScheduled {
            slot_released: true,
            ..
        }
    ));
    assert_eq!(ledger.slots_in_use("q").await.unwrap(), 1);
    assert_eq!(ledger.pending_count("q").await.unwrap(), 2);

    // Raising the capacity applies to the next claim.
    ledger
        .set_queue(
            "q",
            &QueueSettings {
                capacity: Some(3),
                ..settings
            },
        )
        .await
        .unwrap();
    let batch = ledger.claim_many("q", "w", 1).await.unwrap();
    assert_eq!(batch.claims.len(), 1);
    assert_eq!(ledger.slots_in_use("q").await.unwrap(), 2);
    support::invariants::assert_ok(&ledger, &["q"]).await;
}

#[tokio::test]
async fn lowering_capacity_below_use_holds_claims_until_enough_slots_free() {
    let ledger = support::ledger("q_shrink").await;
    let capacity = |n| QueueSettings {
        capacity: Some(n),
        timings: Timings::default(),
        ..QueueSettings::default()
    };
    ledger.set_queue("q", &capacity(3)).await.unwrap();
    for n in 0..6 {
        ledger
            .enqueue("q", &json!(n), EnqueueOptions::new())
            .await
            .unwrap();
    }
    let mut held = ledger.claim_many("q", "w", 3).await.unwrap().claims;
    assert_eq!(held.len(), 3);
    ledger.set_queue("q", &capacity(1)).await.unwrap();
    for _ in 0..2 {
        let batch = ledger.claim_many("q", "w", 3).await.unwrap();
        assert_eq!((batch.claims.len(), batch.queue_full), (0, true));
        let done = held.pop().unwrap();
        ledger.complete(&done.token, None).await.unwrap();
    }
    // Now one slot is held, the capacity: still full. One more ending frees it.
    assert_eq!(ledger.slots_in_use("q").await.unwrap(), 1);
    assert!(ledger.claim("q", "w").await.unwrap().is_none());
    ledger
        .complete(&held.pop().unwrap().token, None)
        .await
        .unwrap();
    let batch = ledger.claim_many("q", "w", 3).await.unwrap();
    assert_eq!((batch.claims.len(), batch.queue_full), (1, true));
    assert_eq!(ledger.slots_in_use("q").await.unwrap(), 1);
    support::invariants::assert_ok(&ledger, &["q"]).await;
}

#[tokio::test]
async fn default_capacity_applies_to_queues_without_settings() {
    let ledger = support::ledger_with("q_defcap", |c| c.default_capacity = 3).await;
    for n in 0..4 {
        ledger
            .enqueue("q", &json!(n), EnqueueOptions::new())
            .await
            .unwrap();
    }
    let batch = ledger.claim_many("q", "w", 10).await.unwrap();
    assert_eq!((batch.claims.len(), batch.queue_full), (3, true));
    assert_eq!(ledger.slots_in_use("q").await.unwrap(), 3);
    let empty = ledger.claim_many("other", "w", 10).await.unwrap();
    assert_eq!(
        (
            empty.claims.len(),
            empty.queue_full,
            empty.next_available_at
        ),
        (0, false, None)
    );
}
