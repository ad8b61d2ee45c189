//! Single-operation latency of the worker and orchestrator hot path, one call in flight:
//! a round trip to a local redis-server plus the script's own cost. `ping` is the floor:
//! the same round trip on a plain multiplexed connection, with no script.
//!
//! Each timed loop runs in a task spawned on the multi-thread runtime, as worker code does
//! (criterion's own `block_on` would add a cross-thread wake-up to every call).
//!
//! `cargo bench --bench ledger` (under a minute). Throughput under concurrency is the load
//! harness's job (`cargo bench --bench load`).

mod support;

use std::future::Future;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use tokio::runtime::Runtime;
use unstuck::{CompleteOutcome, EnqueueOptions, Heartbeat, HeartbeatReply, Ledger};

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Times `iters` sequential calls of `op` inside a spawned task.
async fn timed<F, Fut>(iters: u64, op: F) -> Duration
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let start = Instant::now();
        for _ in 0..iters {
            op().await;
        }
        start.elapsed()
    })
    .await
    .expect("the timed task panicked")
}

fn single_operations(c: &mut Criterion) {
    let redis = support::start_redis();
    let rt = runtime();
    // A namespace per bench, so each starts from an empty queue.
    let ledger_for = |label| -> Ledger { rt.block_on(support::ledger(redis.url(), label, |_| {})) };

    let mut group = c.benchmark_group("ledger");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));

    let admin = rt.block_on(support::admin(redis.url()));
    group.bench_function("ping", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let admin = admin.clone();
            timed(iters, move || {
                let mut admin = admin.clone();
                async move {
                    let pong: String = redis::cmd("PING")
                        .query_async(&mut admin)
                        .await
                        .expect("PING answers");
                    assert_eq!(pong, "PONG");
                }
            })
        });
    });

    let ledger = ledger_for("enqueue");
    group.bench_function("enqueue", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let ledger = ledger.clone();
            timed(iters, move || {
                let ledger = ledger.clone();
                async move {
                    let payload = json!({"n": 1});
                    ledger
                        .enqueue(support::QUEUE, &payload, EnqueueOptions::new())
                        .await
                        .expect("enqueue succeeds");
                }
            })
        });
    });

    // Claim then complete one execution; the executions are enqueued beforehand, untimed.
    let ledger = ledger_for("claim");
    group.bench_function("claim+complete", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let ledger = ledger.clone();
            async move {
                support::enqueue_many(&ledger, iters as usize, 64).await;
                timed(iters, move || {
                    let ledger = ledger.clone();
                    async move {
                        let claim = ledger
                            .claim(support::QUEUE, "bench-worker")
                            .await
                            .expect("claim succeeds")
                            .expect("an execution is available");
                        let outcome = ledger
                            .complete(&claim.token, None)
                            .await
                            .expect("complete succeeds");
                        assert_eq!(
                            outcome,
                            CompleteOutcome::Recorded {
                                slot_released: true
                            }
                        );
                    }
                })
                .await
            }
        });
    });

    // Heartbeats of one running execution: the steady-state path (no state change).
    let ledger = ledger_for("heartbeat");
    let token = rt
        .block_on(support::running_executions(&ledger, 1))
        .remove(0);
    group.bench_function("heartbeat", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (ledger, token) = (ledger.clone(), token.clone());
            timed(iters, move || {
                let (ledger, token) = (ledger.clone(), token.clone());
                async move {
                    let reply = ledger
                        .heartbeat(&token, Heartbeat::new())
                        .await
                        .expect("heartbeat succeeds");
                    assert_eq!(
                        reply,
                        HeartbeatReply::Ok {
                            cancel_requested: false,
                            cancel_reason: None,
                        }
                    );
                }
            })
        });
    });
    group.finish();
}

criterion_group!(benches, single_operations);
criterion_main!(benches);
