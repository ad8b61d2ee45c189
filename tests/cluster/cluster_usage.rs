//! Usage and budgets on a Redis Cluster: the heartbeat with usage (execution, queue
//! settings, queue usage, cancel timer: one slot), the enqueue with a budget, the budget
//! cancellation and the window budget's pause, for queues of every partition.

use crate::support;

use serde_json::json;
use unstuck::*;

fn must<T>(what: &str, result: Result<T>) -> T {
    result.unwrap_or_else(|e| panic!("{what} failed: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn usage_budgets_and_the_window_pause_work_on_a_cluster() {
    let l = support::cluster_ledger("cluster_usage").await;
    let names: Vec<String> = (0..24).map(|i| format!("uq-{i:02}")).collect();
    let budget = Budget {
        tokens: Some(100),
        cost: None,
        warning_share: None,
    };
    for q in &names {
        let settings = QueueSettings {
            window_budget: Some(WindowBudget {
                tokens: Some(100),
                cost: None,
                window: None,
            }),
            ..QueueSettings::default()
        };
        must("set_queue", l.set_queue(q, &settings).await);
        let opts = EnqueueOptions::new().id("a").budget(budget);
        must("enqueue", l.enqueue(q, &json!({}), opts).await);
        let token = must("claim", l.claim(q, "w1").await)
            .expect("claimable")
            .token;
        let beat = Heartbeat::new().usage(Usage::new(1).input_tokens(60).model("m"));
        must("heartbeat", l.heartbeat(&token, beat).await);
        let beat = Heartbeat::new().usage(Usage::new(2).output_tokens(40));
        let reply = must("heartbeat", l.heartbeat(&token, beat).await);
        assert_eq!(
            reply,
            HeartbeatReply::Ok {
                cancel_requested: true,
                cancel_reason: Some("budget_exceeded".into()),
            },
            "{q}"
        );
        must("ack", l.acknowledge_cancel(&token).await);
        let e = must("get", l.get(q, "a").await);
        assert_eq!(e.stop.unwrap().reason, StopReason::BudgetExceeded, "{q}");
        assert_eq!(e.usage.unwrap().totals.tokens(), 100);
        let usage = must("queue_usage", l.queue_usage(q).await);
        assert_eq!(usage.window.tokens(), 100, "{q}");
        let overview = must("overview", l.queue_overview(q).await);
        assert_eq!(overview.pause.map(|p| p.by), Some("budget".into()), "{q}");
    }
}
