//! `unstuck enqueue --budget-tokens`, `unstuck show` with usage and budget, and
//! `unstuck queues usage <queue>`.

use crate::cli_common;
use crate::support;

use unstuck::*;

use cli_common::{run, run_json};

#[tokio::test]
async fn enqueue_with_a_budget_show_usage_and_queue_usage() {
    let l = support::ledger("cli_usage").await;
    let out = run(
        &l,
        &["enqueue", "q", "--id", "a", "--budget-tokens", "1000"],
    )
    .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let e = l.get("q", "a").await.unwrap();
    assert_eq!(e.budget.and_then(|b| b.tokens), Some(1000));
    let token = l.claim("q", "w").await.unwrap().unwrap().token;
    let beat = Heartbeat::new().usage(Usage::new(1).input_tokens(120).output_tokens(40).model("m"));
    l.heartbeat(&token, beat).await.unwrap();

    let show = run(&l, &["show", "q", "a"]).await;
    assert!(
        show.stdout
            .contains("usage           120 in (0 cached), 40 out, cost 0 micros; models m"),
        "{show:?}"
    );
    assert!(
        show.stdout.contains("budget          1000 tokens"),
        "{show:?}"
    );

    let table = run(&l, &["queues", "usage", "q"]).await;
    assert_eq!(table.code, Some(0), "{table:?}");
    assert!(table.stdout.contains("model m"), "{table:?}");
    assert!(table.stdout.contains("no window budget"), "{table:?}");
    let json = run_json(&l, &["queues", "usage", "q"]).await;
    assert_eq!(json["totals"]["input_tokens"], 120);
    assert_eq!(json["by_model"]["m"]["output_tokens"], 40);

    let bad = run(
        &l,
        &[
            "enqueue",
            "q",
            "--budget-warning-share",
            "2",
            "--budget-tokens",
            "5",
        ],
    )
    .await;
    assert_ne!(bad.code, Some(0), "{bad:?}");
    assert_eq!(l.pending_count("q").await.unwrap(), 0, "nothing written");
}
