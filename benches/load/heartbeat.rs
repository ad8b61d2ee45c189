//! Heartbeat throughput from one process (one `Ledger`, one multiplexed connection) against
//! many running executions, with many heartbeats in flight; plain beats, or beats that
//! each carry a usage delta (scenario `heartbeat-usage`).

use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use unstuck::{AttemptToken, Heartbeat, HeartbeatReply, Ledger, Usage};

use crate::Args;
use crate::measure::{Latencies, Measured, Window};
use crate::support;

/// Brings `args.running` executions to running, once; every run heartbeats the same set.
pub async fn setup(url: &str, args: &Args) -> (Ledger, Vec<AttemptToken>) {
    let ledger = support::ledger(url, "heartbeat", |_| {}).await;
    let tokens = support::running_executions(&ledger, args.running).await;
    (ledger, tokens)
}

/// Heartbeats the tokens round-robin from `args.tasks` tasks, `args.in_flight` in flight in
/// all, for a warm-up and then `args.seconds`. With `usage`, every beat carries a usage
/// delta (its own seq: each is applied, none is a replay).
pub async fn run(
    url: &str,
    ledger: &Ledger,
    tokens: &[AttemptToken],
    args: &Args,
    usage: bool,
) -> Measured {
    let mut admin = support::admin(url).await;
    drive(ledger, tokens, args, args.warm_up, usage).await;
    let window = Window::open(&mut admin).await;
    let (ops, latencies) = drive(ledger, tokens, args, args.seconds, usage).await;
    window
        .close(&mut admin, ops)
        .await
        .with_latencies(latencies)
}

async fn drive(
    ledger: &Ledger,
    tokens: &[AttemptToken],
    args: &Args,
    period: Duration,
    usage: bool,
) -> (u64, Latencies) {
    let deadline = Instant::now() + period;
    let tasks = args.tasks.max(1);
    let per_task = (args.in_flight / tasks).max(1);
    let chunk = tokens.len().div_ceil(tasks);
    let handles: Vec<_> = tokens
        .chunks(chunk)
        .map(|share| {
            let ledger = ledger.clone();
            let share = share.to_vec();
            tokio::spawn(
                async move { beat_until(&ledger, &share, per_task, deadline, usage).await },
            )
        })
        .collect();
    let mut ops = 0;
    let mut latencies = Latencies::default();
    for handle in handles {
        let (n, l) = handle.await.expect("a heartbeat task panicked");
        ops += n;
        latencies.merge(l);
    }
    (ops, latencies)
}

/// Heartbeats `tokens` in a cycle, `in_flight` at a time, until `deadline`; the heartbeats
/// in flight at the deadline are waited for and counted.
async fn beat_until(
    ledger: &Ledger,
    tokens: &[AttemptToken],
    in_flight: usize,
    deadline: Instant,
    usage: bool,
) -> (u64, Latencies) {
    let mut latencies = Latencies::default();
    let mut ops = 0;
    // Seqs go on from the wall clock: above those of an earlier run on the same tokens.
    let mut seq = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_micros() as u64);
    let mut next = tokens.iter().cycle();
    let mut beats = FuturesUnordered::new();
    loop {
        while beats.len() < in_flight && Instant::now() < deadline {
            let token = next.next().expect("a cycle over running executions");
            let beat = match usage {
                true => {
                    seq += 1;
                    Heartbeat::new().usage(
                        Usage::new(seq)
                            .input_tokens(1200)
                            .output_tokens(300)
                            .cost(4500)
                            .model("bench-model"),
                    )
                }
                false => Heartbeat::new(),
            };
            beats.push(timed_beat(ledger, token, beat));
        }
        let Some((sent, reply)) = beats.next().await else {
            return (ops, latencies);
        };
        latencies.record(sent);
        let reply = reply.expect("heartbeat succeeds");
        assert_eq!(
            reply,
            HeartbeatReply::Ok {
                cancel_requested: false,
                cancel_reason: None,
            },
            "a heartbeat of a held attempt is accepted"
        );
        ops += 1;
    }
}

async fn timed_beat(
    ledger: &Ledger,
    token: &AttemptToken,
    beat: Heartbeat,
) -> (Instant, unstuck::Result<HeartbeatReply>) {
    let sent = Instant::now();
    (sent, ledger.heartbeat(token, beat).await)
}
