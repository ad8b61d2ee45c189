//! Usage deltas on the heartbeat's hot path (a running execution's beat with nothing else
//! to do, lua/_usage.lua `usage_fast`): the sums are the slow path's, a replay is not
//! counted, and a delta that reaches a threshold exactly at its edge still warns, requests
//! cancellation or pauses the queue (those take the slow path).

use crate::ledger_common::{events_of, running};
use crate::support;

use std::time::Duration;
use unstuck::*;

fn spend(seq: u64, n: u64, model: &str) -> Heartbeat {
    Heartbeat::new().usage(Usage::new(seq).input_tokens(n).cost(n).model(model))
}

fn ok(reason: Option<&str>) -> HeartbeatReply {
    HeartbeatReply::Ok {
        cancel_requested: reason.is_some(),
        cancel_reason: reason.map(str::to_owned),
    }
}

fn sums(tokens: u64) -> UsageTotals {
    UsageTotals {
        input_tokens: tokens,
        output_tokens: 0,
        cached_input_tokens: 0,
        cost: tokens,
    }
}

async fn budget_reasons(ledger: &Ledger) -> Vec<String> {
    events_of(ledger, "q")
        .await
        .into_iter()
        .map(|e| e.reason)
        .filter(|r| r.starts_with("budget"))
        .collect()
}

#[tokio::test]
async fn hot_path_deltas_reach_each_threshold_exactly_at_its_edge() {
    let ledger = support::ledger("usage_hot_edges").await;
    let settings = QueueSettings {
        window_budget: Some(WindowBudget {
            tokens: Some(2000),
            cost: None,
            window: Some(Duration::from_secs(3600)),
        }),
        ..QueueSettings::default()
    };
    ledger.set_queue("q", &settings).await.unwrap();
    let budget = Budget {
        tokens: Some(1000),
        cost: None,
        warning_share: Some(0.5),
    };
    let x = running(&ledger, "q", "x", EnqueueOptions::new().budget(budget)).await;

    // The queue's first delta starts its window (slow path); the next ones stay below
    // every threshold, and a replay of one of them is not counted.
    assert_eq!(
        ledger.heartbeat(&x, spend(1, 300, "a")).await.unwrap(),
        ok(None)
    );
    assert_eq!(
        ledger.heartbeat(&x, spend(2, 199, "b")).await.unwrap(),
        ok(None)
    );
    assert_eq!(
        ledger.heartbeat(&x, spend(2, 199, "b")).await.unwrap(),
        ok(None)
    );
    assert!(budget_reasons(&ledger).await.is_empty());
    // 500 of 1000 is exactly the warning share: one warning.
    assert_eq!(
        ledger.heartbeat(&x, spend(3, 1, "a")).await.unwrap(),
        ok(None)
    );
    assert_eq!(budget_reasons(&ledger).await, ["budget_warning"]);
    // 999: no second warning, no cancellation; 1000: the budget is spent.
    assert_eq!(
        ledger.heartbeat(&x, spend(4, 499, "a")).await.unwrap(),
        ok(None)
    );
    assert_eq!(budget_reasons(&ledger).await, ["budget_warning"]);
    let exceeded = ok(Some("budget_exceeded"));
    assert_eq!(
        ledger.heartbeat(&x, spend(5, 1, "b")).await.unwrap(),
        exceeded
    );
    assert_eq!(
        budget_reasons(&ledger).await,
        ["budget_warning", "budget_exceeded"]
    );
    let usage = ledger.get("q", "x").await.unwrap().usage.unwrap();
    assert_eq!(usage.totals, sums(1000));
    assert_eq!(usage.by_model["a"], sums(800));
    assert_eq!(usage.by_model["b"], sums(200));

    // The window budget (2000): 1999 leaves the queue open, 2000 pauses it.
    let y = running(&ledger, "q", "y", EnqueueOptions::new()).await;
    assert_eq!(
        ledger.heartbeat(&y, spend(1, 900, "a")).await.unwrap(),
        ok(None)
    );
    assert_eq!(
        ledger.heartbeat(&y, spend(2, 99, "b")).await.unwrap(),
        ok(None)
    );
    assert!(!ledger.queue_overview("q").await.unwrap().paused);
    assert_eq!(
        ledger.heartbeat(&y, spend(3, 1, "b")).await.unwrap(),
        ok(None)
    );
    let pause = ledger.queue_overview("q").await.unwrap().pause;
    assert_eq!(pause.expect("paused by its budget").by, "budget");

    let q = ledger.queue_usage("q").await.unwrap();
    assert_eq!(q.totals, sums(2000));
    assert_eq!(q.window, sums(2000));
    assert_eq!(q.by_model["a"], sums(1700));
    assert_eq!(q.by_model["b"], sums(300));
    support::invariants::assert_ok(&ledger, &["q"]).await;
}
