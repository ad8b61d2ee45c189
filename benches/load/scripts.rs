//! Server cost of each hot-path script on its own: one phase per script, `IN_FLIGHT` calls
//! in flight, INFO commandstats reset before each phase so EVALSHA's usec_per_call is that
//! script's cost alone (inner commands included), with its costliest inner commands.
//! A last phase claims in batches (`claim_many`), to show what batching saves per execution.

use futures_util::stream::{self, StreamExt, TryStreamExt};
use unstuck::{AttemptToken, CompleteOutcome};

use crate::Args;
use crate::measure::{Measured, Window};
use crate::support::{self, QUEUE};

const IN_FLIGHT: usize = 64;
/// Executions per call in the batched claim phase.
const BATCH: usize = 10;

/// Runs the phases in lifecycle order and prints one line per script.
pub async fn run(url: &str, args: &Args) {
    let mut admin = support::admin(url).await;
    support::flush(&mut admin).await;
    let ledger = support::ledger(url, "scripts", |_| {}).await;
    let n = args.script_calls;
    let mut phases: Vec<(&str, Measured)> = Vec::new();

    let window = Window::open(&mut admin).await;
    support::enqueue_many(&ledger, n, IN_FLIGHT).await;
    phases.push(("enqueue", window.close(&mut admin, n as u64).await));

    let window = Window::open(&mut admin).await;
    let tokens: Vec<AttemptToken> = stream::iter(0..n)
        .map(|_| ledger.claim(QUEUE, "bench-worker"))
        .buffer_unordered(IN_FLIGHT)
        .map_ok(|claim| claim.expect("an execution is available").token)
        .try_collect()
        .await
        .expect("claim succeeds");
    phases.push((
        "claim (1 per call)",
        window.close(&mut admin, n as u64).await,
    ));

    let window = Window::open(&mut admin).await;
    support::heartbeat_all(&ledger, &tokens, IN_FLIGHT).await;
    phases.push((
        "heartbeat, first (→ running)",
        window.close(&mut admin, n as u64).await,
    ));

    let window = Window::open(&mut admin).await;
    support::heartbeat_all(&ledger, &tokens, IN_FLIGHT).await;
    phases.push((
        "heartbeat, steady",
        window.close(&mut admin, n as u64).await,
    ));

    let window = Window::open(&mut admin).await;
    stream::iter(&tokens)
        .map(|token| ledger.complete(token, None))
        .buffer_unordered(IN_FLIGHT)
        .try_for_each(|outcome| async move {
            assert!(
                matches!(outcome, CompleteOutcome::Recorded { .. }),
                "completing a claimed execution records it: {outcome:?}"
            );
            Ok(())
        })
        .await
        .expect("complete succeeds");
    phases.push(("complete", window.close(&mut admin, n as u64).await));

    // The same claims in batches: what a worker with spare concurrency would do.
    support::enqueue_many(&ledger, n, IN_FLIGHT).await;
    let window = Window::open(&mut admin).await;
    let claimed: usize = stream::iter(0..n.div_ceil(BATCH))
        .map(|_| ledger.claim_many(QUEUE, "bench-worker", BATCH))
        .buffer_unordered(IN_FLIGHT / BATCH)
        .map_ok(|batch| batch.claims.len())
        .try_fold(0, |sum, len| async move { Ok(sum + len) })
        .await
        .expect("claim_many succeeds");
    assert_eq!(
        claimed, n,
        "every execution enqueued for the batch phase was claimed"
    );
    phases.push((
        "claim_many (10 per call)",
        window.close(&mut admin, n as u64).await,
    ));

    println!("\nPer-script server cost ({n} calls each, {IN_FLIGHT} in flight):\n");
    println!(
        "| {:<28} | {:>8} | {:>9} | {:>8} | {:>7} | {:>8} | {:>7} | costliest inner commands (µs/call × calls per script)",
        "script", "execs/s", "µs/EVAL", "µs/exec", "redis %", "client %", "other %"
    );
    println!(
        "|{:-<30}|{:->10}|{:->11}|{:->10}|{:->9}|{:->10}|{:->9}|{:-<56}",
        "", "", "", "", "", "", "", ""
    );
    for (name, m) in &phases {
        println!(
            "| {:<28} | {:>8.0} | {:>9.2} | {:>8.2} | {:>7.0} | {:>8.0} | {:>7.0} | {}",
            name,
            m.rate(),
            m.evalsha_usec(),
            m.script_usec_per_op(),
            m.redis_cpu_pct,
            m.client_cpu_pct,
            m.other_cpu_pct,
            m.inner_commands(5)
        );
    }
}
