//! A budget's cancellation the worker ignores: the watchdog ends it after cancel_grace,
//! stop reason budget_exceeded, the usage kept. The round folds the usage journals: a
//! window budget spent by beats that nothing read pauses the queue.

use crate::support;
use crate::watchdog_common;

use std::time::Duration;

use unstuck::*;
use watchdog_common::*;

const LONG: Duration = Duration::from_secs(60);

#[tokio::test]
async fn an_ignored_budget_cancellation_is_forced_as_budget_exceeded() {
    let l = support::ledger("wd_budget").await;
    let wd = sole_replica(&l, config("r1")).await;
    let q = "bx";
    let p = l.partition_of(q);
    let opts = EnqueueOptions::new()
        .cancel_grace(Duration::from_millis(100))
        .heartbeat_timeout(LONG)
        .budget(Budget {
            tokens: Some(100),
            cost: None,
            warning_share: None,
        });
    let token = start(&l, q, "a", opts).await;
    let reply = l
        .heartbeat(
            &token,
            Heartbeat::new().usage(Usage::new(1).input_tokens(90).output_tokens(30)),
        )
        .await
        .unwrap();
    assert_eq!(
        reply,
        HeartbeatReply::Ok {
            cancel_requested: true,
            cancel_reason: Some("budget_exceeded".into()),
        }
    );
    assert!(!wd.round(p).await.unwrap().acted(), "within the grace");

    pass(150).await;
    let report = wd.round(p).await.unwrap();
    assert_eq!(report.cancelled, 1, "{report:?}");
    let e = l.get(q, "a").await.unwrap();
    assert_eq!(e.state, State::Cancelled);
    assert_eq!(e.stop.unwrap().reason, StopReason::BudgetExceeded);
    assert_eq!(e.usage.unwrap().totals.tokens(), 120, "usage kept");
    assert_eq!(l.slots_in_use(q).await.unwrap(), 0, "slot freed");
    let last = events_of(&l, q, "a").await.pop().unwrap();
    assert_eq!(
        (last.to, last.reason.as_str()),
        (Some(State::Cancelled), "cancel_forced")
    );
    // The late acknowledgement changes nothing.
    assert_eq!(
        l.acknowledge_cancel(&token).await.unwrap(),
        CompleteOutcome::AlreadyTerminal {
            state: State::Cancelled,
            stop_reason: StopReason::BudgetExceeded
        }
    );
    support::invariants::assert_ok(&l, &[q]).await;
}

#[tokio::test]
async fn the_round_folds_the_usage_journals_and_judges_the_window_budget() {
    let l = support::ledger("wd_usage_fold").await;
    let wd = sole_replica(&l, config("r1")).await;
    let q = "wq";
    let p = l.partition_of(q);
    let settings = QueueSettings {
        window_budget: Some(WindowBudget {
            tokens: Some(100),
            cost: None,
            window: Some(Duration::from_secs(3600)),
        }),
        ..QueueSettings::default()
    };
    l.set_queue(q, &settings).await.unwrap();
    let opts = || EnqueueOptions::new().heartbeat_timeout(LONG);
    let a = start(&l, q, "a", opts()).await;
    let b = start(&l, q, "b", opts()).await;
    let spend = |seq, n| Heartbeat::new().usage(Usage::new(seq).output_tokens(n));
    for seq in 1..=5 {
        l.heartbeat(&a, spend(seq, 10)).await.unwrap();
        l.heartbeat(&b, spend(seq, 10)).await.unwrap();
    }
    let k = unstuck::testkit::keys(&l);
    let mut conn = raw(&l).await;
    let listed: Vec<String> = redis::AsyncCommands::smembers(&mut conn, k.usage_journals(p))
        .await
        .unwrap();
    assert_eq!(listed, [q], "the beats journaled, nothing folded yet");

    wd.round(p).await.unwrap();
    let listed: Vec<String> = redis::AsyncCommands::smembers(&mut conn, k.usage_journals(p))
        .await
        .unwrap();
    assert!(listed.is_empty(), "{listed:?}");
    // Read raw: every read through the ledger folds first.
    let by: Option<String> = redis::AsyncCommands::hget(&mut conn, k.queue_settings(q), "pby")
        .await
        .unwrap();
    assert_eq!(by.as_deref(), Some("budget"), "paused by the round's fold");
    let usage: Option<String> = redis::AsyncCommands::hget(&mut conn, k.queue_usage(q), "t")
        .await
        .unwrap();
    assert_eq!(usage.as_deref(), Some("0|100|0|0"));
    support::invariants::assert_ok(&l, &[q]).await;
}
