//! The usage journal (lua/_usage.lua): a usage beat of an execution without a budget
//! appends its delta and parses no sum; a read folds the journal first, so it sees every
//! accepted delta once, replays skipped, per execution, per model and per queue; an
//! execution with a budget keeps its total exact on the beat.

use crate::ledger_common::{raw, running};
use crate::support;

use redis::AsyncCommands;
use unstuck::*;

fn spend(seq: u64, n: u64, model: &str) -> Heartbeat {
    Heartbeat::new().usage(Usage::new(seq).input_tokens(n).cost(2 * n).model(model))
}

fn sums(tokens: u64) -> UsageTotals {
    UsageTotals {
        input_tokens: tokens,
        output_tokens: 0,
        cached_input_tokens: 0,
        cost: 2 * tokens,
    }
}

#[tokio::test]
async fn a_usage_beat_journals_its_delta_and_a_read_folds_it_once() {
    let ledger = support::ledger("usage_journal_read").await;
    let k = unstuck::testkit::keys(&ledger);
    let mut conn = raw().await;
    let token = running(&ledger, "q", "x", EnqueueOptions::new()).await;
    let x = k.execution("q", "x");

    // The first delta fixes the budget (none: '0|0|0') and is journaled.
    ledger.heartbeat(&token, spend(1, 10, "a")).await.unwrap();
    let budget: Option<String> = conn.hget(&x, "bg").await.unwrap();
    assert_eq!(budget.as_deref(), Some("0|0|0"));
    // The next ones, on the hot path: journaled, a replay too, nothing summed yet.
    ledger.heartbeat(&token, spend(2, 20, "b")).await.unwrap();
    ledger.heartbeat(&token, spend(2, 20, "b")).await.unwrap();
    ledger.heartbeat(&token, spend(3, 30, "a")).await.unwrap();
    let journal: Vec<String> = conn
        .lrange(k.queue_usage_journal("q"), 0, -1)
        .await
        .unwrap();
    assert_eq!(journal.len(), 4, "{journal:?}");
    assert_eq!(journal[1], "q/x|1|2|20|0|0|40|b");
    let total: Option<String> = conn.hget(&x, "us").await.unwrap();
    assert_eq!(total, None, "the beat sums nothing");
    let listed: Vec<String> = conn
        .smembers(k.usage_journals(k.partition_of("q")))
        .await
        .unwrap();
    assert_eq!(listed, ["q"]);

    // A read folds: the replay counted once, everywhere.
    let usage = ledger.get("q", "x").await.unwrap().usage.unwrap();
    assert_eq!(usage.totals, sums(60));
    assert_eq!(usage.by_model["a"], sums(40));
    assert_eq!(usage.by_model["b"], sums(20));
    let len: u64 = conn.llen(k.queue_usage_journal("q")).await.unwrap();
    assert_eq!(len, 0);
    let listed: Vec<String> = conn
        .smembers(k.usage_journals(k.partition_of("q")))
        .await
        .unwrap();
    assert!(listed.is_empty(), "{listed:?}");
    let q = ledger.queue_usage("q").await.unwrap();
    assert_eq!(q.totals, sums(60));
    assert_eq!(q.window, sums(60));
    assert_eq!(q.by_model["b"], sums(20));

    // A replay of a folded delta is journaled again and skipped again; a new one counts.
    ledger.heartbeat(&token, spend(3, 30, "a")).await.unwrap();
    ledger.heartbeat(&token, spend(4, 1, "a")).await.unwrap();
    let q = ledger.queue_usage("q").await.unwrap();
    assert_eq!(q.totals, sums(61));
    assert_eq!(
        ledger.get("q", "x").await.unwrap().usage.unwrap().totals,
        sums(61)
    );
    support::invariants::assert_ok(&ledger, &["q"]).await;
}

#[tokio::test]
async fn deltas_on_any_beat_are_folded_in_arrival_order() {
    let ledger = support::ledger("usage_journal_order").await;
    let token = running(&ledger, "q", "x", EnqueueOptions::new()).await;
    // Hot, then with progress (the slow path), then with a checkpoint.
    ledger.heartbeat(&token, spend(1, 1, "")).await.unwrap();
    ledger
        .heartbeat(&token, spend(2, 2, "").progress("step 1"))
        .await
        .unwrap();
    ledger
        .heartbeat(
            &token,
            spend(3, 4, "").checkpoint(serde_json::json!({"at": 1})),
        )
        .await
        .unwrap();
    // A delta with a lower seq after a higher one is not counted (as a replay).
    ledger.heartbeat(&token, spend(2, 100, "")).await.unwrap();
    // Completed with a last delta: journaled before the completion.
    ledger
        .complete_with_usage(&token, None, Some(Usage::new(4).input_tokens(8).cost(16)))
        .await
        .unwrap();
    let e = ledger.get("q", "x").await.unwrap();
    assert_eq!(e.state, State::Succeeded);
    assert_eq!(e.usage.unwrap().totals, sums(15));
    assert_eq!(ledger.queue_usage("q").await.unwrap().totals, sums(15));
}

#[tokio::test]
async fn a_budgeted_execution_keeps_its_total_on_the_beat() {
    let ledger = support::ledger("usage_journal_budget").await;
    let k = unstuck::testkit::keys(&ledger);
    let mut conn = raw().await;
    let budget = Budget {
        tokens: Some(1000),
        cost: None,
        warning_share: None,
    };
    let token = running(&ledger, "q", "x", EnqueueOptions::new().budget(budget)).await;
    ledger.heartbeat(&token, spend(1, 10, "a")).await.unwrap();
    ledger.heartbeat(&token, spend(2, 20, "a")).await.unwrap();
    ledger.heartbeat(&token, spend(2, 20, "a")).await.unwrap();
    // Exact on the execution before any fold (the budget is judged on it)...
    let total: Option<String> = conn.hget(k.execution("q", "x"), "us").await.unwrap();
    assert_eq!(total.as_deref(), Some("30|0|0|60"));
    // ...the replay not journaled; per model and the queue's after the fold.
    let len: u64 = conn.llen(k.queue_usage_journal("q")).await.unwrap();
    assert_eq!(len, 2);
    let usage = ledger.get("q", "x").await.unwrap().usage.unwrap();
    assert_eq!(usage.totals, sums(30));
    assert_eq!(usage.by_model["a"], sums(30));
    assert_eq!(ledger.queue_usage("q").await.unwrap().totals, sums(30));
}

#[tokio::test]
async fn a_journal_nothing_folds_is_folded_by_the_beat_that_makes_it_long() {
    let ledger = support::ledger("usage_journal_long").await;
    let k = unstuck::testkit::keys(&ledger);
    let mut conn = raw().await;
    let token = running(&ledger, "q", "x", EnqueueOptions::new()).await;
    // No watchdog, no read: the 4096th entry has the beat's caller fold the journal.
    for seq in 1..=4096 {
        ledger.heartbeat(&token, spend(seq, 1, "")).await.unwrap();
    }
    let journal = k.queue_usage_journal("q");
    support::wait_until(
        std::time::Duration::from_secs(10),
        "the long journal is folded",
        || {
            let mut conn = conn.clone();
            let journal = journal.clone();
            async move { conn.llen::<_, u64>(&journal).await.unwrap() == 0 }
        },
    )
    .await;
    let t: Option<String> = conn.hget(k.queue_usage("q"), "t").await.unwrap();
    assert_eq!(t.as_deref(), Some("4096|0|0|8192"));
}
