//! Remediation throughput of one replica, and the cost of a round with nothing due, as the
//! number of executions in flight grows.
//!
//! Besides wall-clock figures, each measurement reports Redis CPU time per unit of work:
//! on a shared machine Redis is often preempted, which inflates wall time (and the
//! wall-clock `usec` of INFO commandstats) but not the CPU it spends.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use redis::aio::MultiplexedConnection;
use unstuck::testkit::Keyspace;
use unstuck::watchdog::Watchdog;
use unstuck::{EnqueueOptions, Ledger};

use crate::Scale;
use crate::server::{client_cpu, flush, info_field, median, stats};
use crate::setup::{NO_RETRY_SOON, connect, make_running, queues, replica, spread};

/// One line of the summary: medians over the runs of one (in flight, batch) pair.
struct Row {
    in_flight: usize,
    batch: usize,
    idle_us: f64,
    idle_cpu_us: f64,
    actions_per_sec: f64,
    cpu_us_per_action: f64,
}

/// One replica remediating `scale.stale` stale executions among N in flight, and the cost of
/// a round with nothing due, for each N. In-flight work only grows between sizes.
pub(crate) async fn throughput(url: &str, admin: &mut MultiplexedConnection, scale: &Scale) {
    flush(admin).await;
    let ledger = connect(url, "wd_tp", 10_000).await;
    let queues = queues(&ledger);
    let healthy = EnqueueOptions::new()
        .heartbeat_timeout(Duration::from_secs(3600))
        .backoff_base(NO_RETRY_SOON)
        .backoff_max(NO_RETRY_SOON);
    let stale = healthy
        .clone()
        .heartbeat_timeout(scale.stale_timeout)
        .stuck_threshold(Duration::ZERO)
        .max_attempts(3);
    let keys = Keyspace::new(&ledger.config().namespace, 16).expect("keyspace");
    let mut rows = Vec::new();
    let mut have = 0;
    for &n in &scale.in_flight {
        let started = Instant::now();
        make_running(&ledger, &spread(&queues, n - have, 0), &healthy, "h", have).await;
        let took = started.elapsed().as_secs_f64();
        let used: u64 = info_field(admin, "memory", "used_memory")
            .await
            .parse()
            .unwrap_or(0);
        let sample = keys.execution(&queues[0], "h0");
        let one: u64 = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(&sample)
            .query_async(admin)
            .await
            .expect("MEMORY USAGE");
        let encoding: String = redis::cmd("OBJECT")
            .arg("ENCODING")
            .arg(&sample)
            .query_async(admin)
            .await
            .expect("OBJECT ENCODING");
        println!(
            "setup: {have} → {n} in flight in {took:.1}s ({:.0}/s); used_memory {} MB \
             (one running execution hash: {one} bytes, {encoding})",
            (n - have) as f64 / took,
            used >> 20,
        );
        have = n;

        let wd = replica(&ledger, 200, Duration::from_secs(600));
        assert_eq!(wd.rebalance().await.expect("rebalance").acquired.len(), 16);
        for p in 0..16 {
            wd.round(p).await.expect("warm-up round (loads the script)");
        }
        let mut idle = Vec::new();
        for run in 0..scale.runs {
            idle.push(idle_rounds(&wd, admin, scale.idle_rounds, run == 0).await);
        }
        wd.release_all().await.expect("release");
        let idle_us = median(idle.iter().map(|i| i.0));
        let idle_cpu_us = median(idle.iter().map(|i| i.1));

        for &batch in &scale.batches {
            let mut runs = Vec::new();
            for run in 0..scale.runs {
                let plan = spread(&queues, scale.stale, run * 7);
                let tag = format!("s{n}b{batch}r{run}-");
                make_running(&ledger, &plan, &stale, &tag, 0).await;
                tokio::time::sleep(scale.stale_timeout + Duration::from_millis(50)).await;
                let r = remediate(&ledger, admin, batch, scale.stale, run == 0).await;
                let actions = (r.stuck + r.retried) as f64;
                println!(
                    "remed N={n} batch={batch} run={run}: {} stuck + {} retried in {:.3}s: \
                     {:.0} actions/s, {:.0} executions/s; {} round scripts, {:.0} µs/call, \
                     {:.1} µs/action; Redis CPU {:.1} µs/action; CPU redis {:.0}%, \
                     bench process {:.0}%",
                    r.stuck,
                    r.retried,
                    r.secs,
                    actions / r.secs,
                    r.retried as f64 / r.secs,
                    r.calls,
                    r.us_per_call,
                    r.us_per_call * r.calls as f64 / actions,
                    r.redis_cpu * 1e6 / actions,
                    r.redis_cpu / r.secs * 100.0,
                    r.client_cpu / r.secs * 100.0,
                );
                runs.push((actions / r.secs, r.redis_cpu * 1e6 / actions));
            }
            rows.push(Row {
                in_flight: n,
                batch,
                idle_us,
                idle_cpu_us,
                actions_per_sec: median(runs.iter().map(|r| r.0)),
                cpu_us_per_action: median(runs.iter().map(|r| r.1)),
            });
        }
    }
    summarize(&rows, scale);
}

/// Rounds over all 16 partitions (concurrently) with nothing due. Returns the round
/// script's µs per call (commandstats, wall clock inside Redis) and Redis CPU µs per call.
async fn idle_rounds(
    wd: &Watchdog,
    admin: &mut MultiplexedConnection,
    rounds: usize,
    show: bool,
) -> (f64, f64) {
    let before = stats(admin).await;
    let wall = Instant::now();
    join_all((0..16).map(|p| async move {
        for _ in 0..rounds {
            let r = wd.round(p).await.expect("round");
            assert!(
                !r.acted() && r.fixed == 0 && !r.more,
                "nothing is due: {r:?}"
            );
        }
    }))
    .await;
    let calls = 16 * rounds;
    let wall_us = wall.elapsed().as_secs_f64() * 1e6 / calls as f64;
    let delta = stats(admin).await.since(&before);
    assert_eq!(
        delta.calls("evalsha"),
        calls as u64,
        "only round scripts ran"
    );
    let (us, cpu_us) = (delta.per_call("evalsha"), delta.cpu * 1e6 / calls as f64);
    println!(
        "idle  {calls} rounds: round script {us:.1} µs/call, Redis CPU {cpu_us:.1} µs/call, \
         {wall_us:.1} µs/round wall (16 partitions concurrently)"
    );
    if show {
        println!("      top commands: {}", delta.top(8));
    }
    (us, cpu_us)
}

struct Remediation {
    stuck: u64,
    retried: u64,
    secs: f64,
    calls: u64,
    us_per_call: f64,
    /// CPU seconds over the measurement.
    redis_cpu: f64,
    client_cpu: f64,
}

/// One replica holding all 16 partitions runs their rounds concurrently, each partition
/// again at once while its batch ran out, until nothing is due.
async fn remediate(
    ledger: &Ledger,
    admin: &mut MultiplexedConnection,
    batch: usize,
    stale: usize,
    show_commands: bool,
) -> Remediation {
    let wd = replica(ledger, batch, Duration::from_secs(600));
    assert_eq!(wd.rebalance().await.expect("rebalance").acquired.len(), 16);
    let before = stats(admin).await;
    let client_before = client_cpu();
    let started = Instant::now();
    let reports = join_all((0..16).map(|p| {
        let wd = wd.clone();
        async move {
            let (mut stuck, mut retried) = (0, 0);
            loop {
                let r = wd.round(p).await.expect("round");
                assert_eq!(r.dead + r.timed_out + r.cancelled + r.fixed, 0, "{r:?}");
                assert!(r.holding.is_zero(), "no systemic hold: {r:?}");
                (stuck, retried) = (stuck + r.stuck, retried + r.retried);
                if !r.more {
                    return (stuck, retried);
                }
            }
        }
    }))
    .await;
    let secs = started.elapsed().as_secs_f64();
    let client = client_cpu() - client_before;
    let delta = stats(admin).await.since(&before);
    wd.release_all().await.expect("release");
    let (stuck, retried) = reports
        .iter()
        .fold((0, 0), |(s, r), (s2, r2)| (s + s2, r + r2));
    assert_eq!((stuck, retried), (stale as u64, stale as u64));
    if show_commands {
        println!("      top commands: {}", delta.top(8));
    }
    Remediation {
        stuck,
        retried,
        secs,
        calls: delta.calls("evalsha"),
        us_per_call: delta.per_call("evalsha"),
        redis_cpu: delta.cpu,
        client_cpu: client,
    }
}

fn summarize(rows: &[Row], scale: &Scale) {
    println!("\nsummary (median of {} runs each):", scale.runs);
    println!(
        "| in flight | batch | idle round µs/call | idle round Redis CPU µs | actions/s | \
         executions/s | Redis CPU µs/action | actions per Redis CPU second |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.0} | {:.0} | {:.1} | {:.0} |",
            r.in_flight,
            r.batch,
            r.idle_us,
            r.idle_cpu_us,
            r.actions_per_sec,
            r.actions_per_sec / 2.0,
            r.cpu_us_per_action,
            1e6 / r.cpu_us_per_action,
        );
    }
    let (lo, hi) = (
        scale.in_flight[0],
        scale.in_flight[scale.in_flight.len() - 1],
    );
    for &batch in &scale.batches {
        let at = |n: usize| rows.iter().find(|r| r.in_flight == n && r.batch == batch);
        if let (Some(a), Some(b)) = (at(lo), at(hi)) {
            println!(
                "ratio N={hi} / N={lo}, batch {batch}: idle round {:.2}× (Redis CPU {:.2}×), \
                 Redis CPU per action {:.2}×, actions/s {:.2}×",
                b.idle_us / a.idle_us,
                b.idle_cpu_us / a.idle_cpu_us,
                b.cpu_us_per_action / a.cpu_us_per_action,
                b.actions_per_sec / a.actions_per_sec,
            );
        }
    }
}
