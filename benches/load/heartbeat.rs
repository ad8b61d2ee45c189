//! Heartbeat throughput from one process (one `Ledger`, one multiplexed connection) against
//! many running executions, with many heartbeats in flight; plain beats, beats that each
//! carry a usage delta (scenario `heartbeat-usage`), or plain beats sent in batches
//! (`heartbeat-batched`, `Ledger::heartbeat_many`).

use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use unstuck::{AttemptToken, Heartbeat, HeartbeatReply, Ledger, Usage};

/// What each beat carries and how beats are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One call per beat, nothing but "alive".
    Plain,
    /// One call per beat, each with a usage delta.
    Usage,
    /// Plain beats, this many per `heartbeat_many` call.
    Batched(usize),
}

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
/// all (batched: in calls of that many beats, `in_flight / batch` calls in flight, at
/// least 2), for a warm-up and then `args.seconds`. With usage, every beat carries a usage
/// delta (its own seq: each is applied, none is a replay).
pub async fn run(
    url: &str,
    ledger: &Ledger,
    tokens: &[AttemptToken],
    args: &Args,
    mode: Mode,
) -> Measured {
    let mut admin = support::admin(url).await;
    drive(ledger, tokens, args, args.warm_up, mode).await;
    let window = Window::open(&mut admin).await;
    let (ops, latencies) = drive(ledger, tokens, args, args.seconds, mode).await;
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
    mode: Mode,
) -> (u64, Latencies) {
    let deadline = Instant::now() + period;
    let tasks = args.tasks.max(1);
    let per_task = match mode {
        Mode::Batched(batch) => (args.in_flight / batch / tasks).max(1),
        _ => (args.in_flight / tasks).max(1),
    };
    let chunk = tokens.len().div_ceil(tasks);
    let handles: Vec<_> = tokens
        .chunks(chunk)
        .map(|share| {
            let ledger = ledger.clone();
            let share = share.to_vec();
            tokio::spawn(async move { beat_until(&ledger, &share, per_task, deadline, mode).await })
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

/// Heartbeats `tokens` in a cycle, `in_flight` calls at a time, until `deadline`; the calls
/// in flight at the deadline are waited for and counted (every beat of a batch counts).
async fn beat_until(
    ledger: &Ledger,
    tokens: &[AttemptToken],
    in_flight: usize,
    deadline: Instant,
    mode: Mode,
) -> (u64, Latencies) {
    let mut latencies = Latencies::default();
    let mut ops = 0;
    // Seqs go on from the wall clock: above those of an earlier run on the same tokens.
    let mut seq = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_micros() as u64);
    let per_call = match mode {
        Mode::Batched(batch) => batch.clamp(1, tokens.len()),
        _ => 1,
    };
    let mut next = tokens.iter().cycle();
    let mut calls = FuturesUnordered::new();
    loop {
        while calls.len() < in_flight && Instant::now() < deadline {
            let beats: Vec<(AttemptToken, Heartbeat)> = (0..per_call)
                .map(|_| {
                    let token = next.next().expect("a cycle over running executions");
                    let beat = match mode {
                        Mode::Usage => {
                            seq += 1;
                            Heartbeat::new().usage(
                                Usage::new(seq)
                                    .input_tokens(1200)
                                    .output_tokens(300)
                                    .cost(4500)
                                    .model("bench-model"),
                            )
                        }
                        _ => Heartbeat::new(),
                    };
                    (token.clone(), beat)
                })
                .collect();
            calls.push(timed_call(ledger, beats, mode));
        }
        let Some((sent, replies)) = calls.next().await else {
            return (ops, latencies);
        };
        latencies.record(sent);
        for reply in replies.expect("heartbeats succeed") {
            assert_eq!(
                reply.expect("a heartbeat of a held attempt is accepted"),
                HeartbeatReply::Ok {
                    cancel_requested: false,
                    cancel_reason: None,
                },
                "a heartbeat of a held attempt is accepted"
            );
            ops += 1;
        }
    }
}

/// One call: `heartbeat` for a single beat, `heartbeat_many` when batched.
async fn timed_call(
    ledger: &Ledger,
    beats: Vec<(AttemptToken, Heartbeat)>,
    mode: Mode,
) -> (
    Instant,
    unstuck::Result<Vec<unstuck::Result<HeartbeatReply>>>,
) {
    let sent = Instant::now();
    let replies = match mode {
        Mode::Batched(_) => ledger.heartbeat_many(&beats).await,
        _ => {
            let (token, beat) = beats.into_iter().next().expect("one beat");
            ledger.heartbeat(&token, beat).await.map(|r| vec![Ok(r)])
        }
    };
    (sent, replies)
}
