//! One execution's life, printed as it happens: enqueue, claim, heartbeats with progress
//! and a checkpoint, a crash, a retry that resumes from the checkpoint, completion.
//!
//! Uses the public API only. Run it against a Redis of your own, or let it start a
//! throwaway one (the test support's `redis-server` helper):
//!
//! ```sh
//! cargo run --example walkthrough -- redis://127.0.0.1:6379/
//! cargo run --example walkthrough
//! ```
//!
//! `unstuck walkthrough` runs the same code.

use std::time::Duration;

use serde_json::json;

use unstuck::{
    EnqueueOptions, FailOutcome, Heartbeat, HeartbeatReply, Ledger, LedgerConfig, QueueSettings,
    Timings,
};

/// What the walkthrough can fail with: a ledger error, or a step that did not go as shown.
pub type WalkthroughResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// `cargo run --example walkthrough [-- REDIS_URL]`. (Unused when `unstuck walkthrough`
/// includes this file as a module.)
#[allow(dead_code)]
#[tokio::main]
async fn main() -> WalkthroughResult {
    let url = std::env::args().nth(1);
    let _own;
    let url = match url {
        Some(url) => url,
        None => {
            let server = unstuck::testkit::RedisProcess::start(Default::default())?;
            let url = server.url().to_owned();
            _own = server;
            url
        }
    };
    println!("redis: {url}");
    walkthrough(&url).await
}

/// Runs the walkthrough against the Redis at `redis_url`.
///
/// # Errors
/// Any ledger error; the walkthrough stops at the first one.
pub async fn walkthrough(redis_url: &str) -> WalkthroughResult {
    let mut config = LedgerConfig::new(redis_url);
    config.namespace = format!("demo-{}", uuid::Uuid::now_v7().simple());
    let ledger = Ledger::connect(config).await?;
    let queue = "research";
    say(
        "queue",
        "capacity 2, heartbeat timeout 2s, 2 attempts, backoff 500ms",
    );
    ledger
        .set_queue(
            queue,
            &QueueSettings {
                capacity: Some(2),
                timings: Timings {
                    heartbeat_timeout: Some(Duration::from_secs(2)),
                    max_attempts: Some(2),
                    backoff_base: Some(Duration::from_millis(500)),
                    ..Timings::default()
                },
                ..QueueSettings::default()
            },
        )
        .await?;

    let enqueued = ledger
        .enqueue(
            queue,
            &json!({"topic": "redis cluster hash tags", "steps": 3}),
            EnqueueOptions::new().id("research-42"),
        )
        .await?;
    say(
        "enqueue",
        &format!(
            "{} is {} (created: {})",
            enqueued.id, enqueued.state, enqueued.created
        ),
    );

    let first = ledger
        .claim(queue, "worker-a")
        .await?
        .ok_or("nothing to claim")?;
    say(
        "claim",
        &format!(
            "worker-a holds attempt {} (token {})",
            first.attempt(),
            first.token
        ),
    );
    for step in 1..=2 {
        let beat = Heartbeat::new()
            .progress(format!("step {step}/3"))
            .checkpoint(json!({"done_steps": step}));
        let reply = ledger.heartbeat(&first.token, beat).await?;
        say(
            "heartbeat",
            &format!("worker-a: step {step}/3, checkpoint saved -> {reply:?}"),
        );
    }

    say(
        "crash",
        "worker-a dies in step 3; its supervisor reports the attempt as failed (retryable)",
    );
    match ledger
        .fail(&first.token, "worker-a: process exited with signal 9", true)
        .await?
    {
        FailOutcome::RetryScheduled {
            available_at,
            slot_released,
        } => say(
            "retry",
            &format!("scheduled for {available_at} (slot released: {slot_released})"),
        ),
        other => say("retry", &format!("unexpected: {other:?}")),
    }

    let second = loop {
        if let Some(claim) = ledger.claim(queue, "worker-b").await? {
            break claim;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    say(
        "claim",
        &format!(
            "worker-b holds attempt {}, resuming from checkpoint {}",
            second.attempt(),
            second
                .checkpoint
                .as_ref()
                .map(|c| c.to_string())
                .unwrap_or_else(|| "none".into())
        ),
    );
    let late = ledger.heartbeat(&first.token, Heartbeat::new()).await?;
    say(
        "stale",
        &format!("a late heartbeat from worker-a's attempt 1 -> {late:?}"),
    );
    let reply = ledger
        .heartbeat(&second.token, Heartbeat::new().progress("step 3/3"))
        .await?;
    if reply
        != (HeartbeatReply::Ok {
            cancel_requested: false,
            cancel_reason: None,
        })
    {
        return Err("worker-b lost its attempt".into());
    }
    say("heartbeat", "worker-b: step 3/3");
    let done = ledger
        .complete(&second.token, Some(&json!({"summary": "tags go first"})))
        .await?;
    say("complete", &format!("{done:?}"));
    let replay = ledger.complete(&second.token, None).await?;
    say(
        "replay",
        &format!("completing again is a no-op -> {replay:?}"),
    );

    let execution = ledger.get(queue, "research-42").await?;
    say(
        "result",
        &format!(
            "{} after {} attempts, stop reason {}",
            execution.state,
            execution.attempt,
            execution
                .stop
                .as_ref()
                .map(|s| s.reason.to_string())
                .unwrap_or_default()
        ),
    );
    println!("\nhistory of {queue}/research-42:");
    for t in &execution.history {
        println!(
            "  {}  attempt {}  {:<11} {}",
            t.at.format("%H:%M:%S%.3f"),
            t.attempt,
            t.state.as_str(),
            t.reason
        );
    }
    println!(
        "\nevent stream of partition {}:",
        ledger.partition_of(queue)
    );
    for e in ledger
        .read_events(ledger.partition_of(queue), None, 100)
        .await?
    {
        println!(
            "  {}  {:<12} {:>10} -> {:<10} {} {}",
            e.stream_id,
            e.execution_id,
            e.from.map(|s| s.as_str()).unwrap_or("-"),
            e.to.map(|s| s.as_str()).unwrap_or("-"),
            e.reason,
            e.detail
        );
    }
    println!(
        "\nslots in use: {} (every slot released)",
        ledger.slots_in_use(queue).await?
    );
    Ok(())
}

fn say(step: &str, text: &str) {
    println!("[{:<9}] {text}", step);
}
