//! Usage and budgets: deltas summed over attempts and models, applied once by their seq;
//! the execution budget's warning and cancellation; the queue window budget's pause.

use crate::ledger_common;
use crate::support;

use serde_json::json;
use unstuck::error::Error;
use unstuck::*;

use std::time::Duration;

use ledger_common::{events_of, running};

fn delta(seq: u64, input: u64, output: u64, model: &str) -> Usage {
    Usage::new(seq)
        .input_tokens(input)
        .output_tokens(output)
        .cost(input + output)
        .model(model)
}

fn totals(input: u64, output: u64, cost: u64) -> UsageTotals {
    UsageTotals {
        input_tokens: input,
        output_tokens: output,
        cached_input_tokens: 0,
        cost,
    }
}

#[tokio::test]
async fn usage_is_summed_over_attempts_and_models_and_applied_once() {
    let ledger = support::ledger("usage_sums").await;
    let opts = EnqueueOptions::new()
        .max_attempts(3)
        .backoff_base(Duration::from_millis(1))
        .backoff_max(Duration::from_millis(1));
    let first = running(&ledger, "q", "x", opts).await;
    let beat = |seq, i, o, m| Heartbeat::new().usage(delta(seq, i, o, m));
    ledger
        .heartbeat(&first, beat(1, 100, 10, "a"))
        .await
        .unwrap();
    ledger.heartbeat(&first, beat(2, 50, 5, "b")).await.unwrap();
    // A heartbeat replayed with the same seq (and an older one) is not counted again.
    let keep_going = HeartbeatReply::Ok {
        cancel_requested: false,
        cancel_reason: None,
    };
    for replay in [beat(2, 50, 5, "b"), beat(1, 100, 10, "a")] {
        assert_eq!(ledger.heartbeat(&first, replay).await.unwrap(), keep_going);
    }
    let e = ledger.get("q", "x").await.unwrap();
    let usage = e.usage.expect("usage recorded");
    assert_eq!(usage.totals, totals(150, 15, 165));
    assert_eq!(usage.by_model["a"], totals(100, 10, 110));
    assert_eq!(usage.by_model["b"], totals(50, 5, 55));

    // The next attempt numbers its deltas from 1 again; they add to the same execution.
    assert!(matches!(
        ledger.fail(&first, "flaky", true).await.unwrap(),
        FailOutcome::RetryScheduled { .. }
    ));
    let second = loop {
        if let Some(claim) = ledger.claim("q", "w").await.unwrap() {
            break claim.token;
        }
        tokio::task::yield_now().await;
    };
    ledger
        .heartbeat(&second, beat(1, 10, 1, "a"))
        .await
        .unwrap();
    // A complete carrying the last delta after a heartbeat: counted once, even replayed.
    let last = delta(2, 5, 5, "a");
    ledger
        .complete_with_usage(&second, None, Some(last.clone()))
        .await
        .unwrap();
    let replay = ledger
        .complete_with_usage(&second, None, Some(last))
        .await
        .unwrap();
    assert!(matches!(replay, CompleteOutcome::AlreadyTerminal { .. }));
    let e = ledger.get("q", "x").await.unwrap();
    assert_eq!(e.state, State::Succeeded);
    let usage = e.usage.unwrap();
    assert_eq!(usage.totals, totals(165, 21, 186));
    assert_eq!(usage.by_model["a"], totals(115, 16, 131));

    // The queue's totals and window hold the same sums.
    let q = ledger.queue_usage("q").await.unwrap();
    assert_eq!(q.totals, totals(165, 21, 186));
    assert_eq!(q.window, totals(165, 21, 186));
    assert_eq!(q.by_model["b"], totals(50, 5, 55));
    assert_eq!(q.window_ms, 86_400_000);
    assert_eq!(q.currency, "USD", "the namespace's currency");
    support::invariants::assert_ok(&ledger, &["q"]).await;
}

#[tokio::test]
async fn bad_usage_is_refused_and_nothing_is_written() {
    let ledger = support::ledger("usage_bad").await;
    let token = running(&ledger, "q", "x", EnqueueOptions::new()).await;
    let before = ledger.get("q", "x").await.unwrap();
    let bad = [
        (Usage::new(0).input_tokens(1), "usage.seq"),
        (
            Usage::new(1).input_tokens(1).cached_input_tokens(2),
            "usage.cached_input_tokens",
        ),
        (Usage::new(1).model("a|b"), "usage.model"),
        (Usage::new(1).model("m".repeat(129)), "usage.model"),
        (Usage::new(1).cost(u64::MAX), "usage.cost"),
    ];
    for (usage, name) in bad {
        let err = ledger
            .heartbeat(&token, Heartbeat::new().usage(usage))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument { name: n, .. } if n == name),
            "{err:?}"
        );
    }
    let after = ledger.get("q", "x").await.unwrap();
    assert_eq!(after.usage, None);
    assert_eq!(after.last_heartbeat_at, before.last_heartbeat_at);
    assert_eq!(
        ledger.queue_usage("q").await.unwrap().totals,
        totals(0, 0, 0)
    );
    let err = ledger
        .enqueue(
            "q",
            &json!({}),
            EnqueueOptions::new().budget(Budget {
                tokens: Some(10),
                cost: None,
                warning_share: Some(1.5),
            }),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
}

#[tokio::test]
async fn a_budget_warns_once_then_requests_cancellation_which_ends_budget_exceeded() {
    let ledger = support::ledger("usage_budget").await;
    let budget = Budget {
        tokens: Some(1000),
        cost: None,
        warning_share: Some(0.5),
    };
    let token = running(&ledger, "q", "x", EnqueueOptions::new().budget(budget)).await;
    let mut seq = 0;
    let mut spend = |n| {
        seq += 1;
        Heartbeat::new().usage(Usage::new(seq).input_tokens(n))
    };
    let ok = |reason: Option<&str>| HeartbeatReply::Ok {
        cancel_requested: reason.is_some(),
        cancel_reason: reason.map(str::to_owned),
    };
    assert_eq!(
        ledger.heartbeat(&token, spend(400)).await.unwrap(),
        ok(None)
    );
    assert_eq!(
        ledger.heartbeat(&token, spend(200)).await.unwrap(),
        ok(None)
    );
    assert_eq!(
        ledger.heartbeat(&token, spend(100)).await.unwrap(),
        ok(None)
    );
    let reasons = |events: Vec<Event>| -> Vec<String> {
        events
            .into_iter()
            .map(|e| e.reason)
            .filter(|r| r.starts_with("budget"))
            .collect()
    };
    assert_eq!(reasons(events_of(&ledger, "q").await), ["budget_warning"]);

    let exceeded = ok(Some("budget_exceeded"));
    assert_eq!(
        ledger.heartbeat(&token, spend(300)).await.unwrap(),
        exceeded
    );
    // Later beats, plain or with usage, keep saying why.
    assert_eq!(
        ledger.heartbeat(&token, Heartbeat::new()).await.unwrap(),
        exceeded
    );
    assert_eq!(ledger.heartbeat(&token, spend(10)).await.unwrap(), exceeded);
    assert_eq!(
        reasons(events_of(&ledger, "q").await),
        ["budget_warning", "budget_exceeded"]
    );
    let e = ledger.get("q", "x").await.unwrap();
    assert_eq!(e.state, State::Running);
    assert_eq!(e.cancel_reason.as_deref(), Some("budget_exceeded"));
    assert!(e.cancel_requested_at.is_some());

    ledger.acknowledge_cancel(&token).await.unwrap();
    let e = ledger.get("q", "x").await.unwrap();
    assert_eq!(e.state, State::Cancelled);
    assert_eq!(e.stop.unwrap().reason, StopReason::BudgetExceeded);
    assert_eq!(e.usage.unwrap().totals.tokens(), 1010, "usage kept");
    support::invariants::assert_ok(&ledger, &["q"]).await;
}

#[tokio::test]
async fn a_queue_default_budget_applies_to_executions_without_one() {
    let ledger = support::ledger("usage_qbudget").await;
    let settings = QueueSettings {
        budget: Some(Budget {
            tokens: None,
            cost: Some(500),
            warning_share: None,
        }),
        ..QueueSettings::default()
    };
    ledger.set_queue("q", &settings).await.unwrap();
    assert_eq!(
        ledger
            .queue_settings("q")
            .await
            .unwrap()
            .budget
            .unwrap()
            .cost,
        Some(500)
    );
    let token = running(&ledger, "q", "x", EnqueueOptions::new()).await;
    let reply = ledger
        .heartbeat(&token, Heartbeat::new().usage(Usage::new(1).cost(500)))
        .await
        .unwrap();
    assert!(matches!(
        reply,
        HeartbeatReply::Ok {
            cancel_requested: true,
            ..
        }
    ));
    // A failure after the request ends it cancelled, stop reason budget_exceeded.
    assert!(matches!(
        ledger.fail(&token, "stopping", true).await.unwrap(),
        FailOutcome::Cancelled { .. }
    ));
    let e = ledger.get("q", "x").await.unwrap();
    assert_eq!(e.stop.unwrap().reason, StopReason::BudgetExceeded);
}

#[tokio::test]
async fn a_spent_window_budget_pauses_the_queue_once() {
    let ledger = support::ledger("usage_window").await;
    let settings = QueueSettings {
        window_budget: Some(WindowBudget {
            tokens: Some(100),
            cost: None,
            window: Some(Duration::from_secs(3600)),
        }),
        ..QueueSettings::default()
    };
    ledger.set_queue("q", &settings).await.unwrap();
    let token = running(&ledger, "q", "x", EnqueueOptions::new()).await;
    let beat = |seq, n| Heartbeat::new().usage(Usage::new(seq).output_tokens(n));
    ledger.heartbeat(&token, beat(1, 60)).await.unwrap();
    assert!(!ledger.queue_overview("q").await.unwrap().paused);
    ledger.heartbeat(&token, beat(2, 40)).await.unwrap();
    let o = ledger.queue_overview("q").await.unwrap();
    let pause = o.pause.expect("paused by its budget");
    assert_eq!(pause.by, "budget");
    assert!(
        pause.reason.contains("100 tokens of a budget of 100"),
        "{}",
        pause.reason
    );
    let usage = ledger.queue_usage("q").await.unwrap();
    assert_eq!(usage.window.tokens(), 100);
    assert_eq!(usage.window_ms, 3_600_000);
    // The running execution goes on; nothing new is claimed.
    ledger
        .enqueue("q", &json!({}), EnqueueOptions::new().id("y"))
        .await
        .unwrap();
    assert!(ledger.claim("q", "w").await.unwrap().is_none());
    // Resumed while still spent: the work goes on (no pause again until the window is
    // crossed again).
    ledger
        .resume_queue("q", "ops", "let it finish")
        .await
        .unwrap();
    ledger.heartbeat(&token, beat(3, 5)).await.unwrap();
    assert!(!ledger.queue_overview("q").await.unwrap().paused);
    assert_eq!(ledger.claim("q", "w").await.unwrap().unwrap().id(), "y");
    let paused: Vec<_> = events_of(&ledger, "q")
        .await
        .into_iter()
        .filter(|e| e.reason == "queue_paused")
        .collect();
    assert_eq!(paused.len(), 1);
    assert!(
        paused[0]
            .detail
            .starts_with("by budget: window budget spent"),
        "{}",
        paused[0].detail
    );
}
