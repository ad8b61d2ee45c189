//! Fleet scale: N running executions beaten every period by a load generator in this
//! process, three replicas watching, over sustained windows in each of which some
//! executions go silent at staggered instants. Per window: the beats achieved against
//! those needed, false verdicts (a watchdog event about an execution still beaten), the
//! detection lag of the silent ones, Redis memory and CPU, and this process's CPU.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use redis::aio::MultiplexedConnection;
use tokio_util::sync::CancellationToken;
use unstuck::watchdog::{Watchdog, WatchdogConfig};
use unstuck::{EnqueueOptions, Ledger, State};

use crate::fleet_load::{Counters, beat, spawn_fleet, spawn_silent};
use crate::server::{client_cpu, flush, info_field, load_average, median, stats};
use crate::setup::{NO_RETRY_SOON, connect, queues, spread, start_running, wait_for};

/// The fleet scenario's settings (`Scale::fleet`).
pub(crate) struct Fleet {
    pub(crate) running: usize,
    pub(crate) window: Duration,
    pub(crate) silent: usize,
    /// Beats per `heartbeat_many` call (one queue's claim batch).
    pub(crate) batch: usize,
    pub(crate) in_flight: usize,
    pub(crate) period: Duration,
    pub(crate) timeout: Duration,
    pub(crate) silent_timeout: Duration,
    /// Assert the outcome (the tiny run): nothing false, every silent one found.
    pub(crate) check: bool,
}

/// One window's figures.
struct Window {
    beats_per_sec: f64,
    false_verdicts: usize,
    p50: i64,
    p99: i64,
    max: i64,
    memory_mib: f64,
    redis_cpu: f64,
    client_cpu: f64,
}

pub(crate) async fn fleet(url: &str, admin: &mut MultiplexedConnection, f: &Fleet, runs: usize) {
    flush(admin).await;
    let driver = connect(url, "wd_fleet", 10_000).await;
    let queues = queues(&driver);
    let opts = EnqueueOptions::new()
        .heartbeat_timeout(f.timeout)
        .backoff_base(NO_RETRY_SOON)
        .backoff_max(NO_RETRY_SOON);
    println!(
        "fleet: setting up {} running executions (heartbeat_timeout {:?}), load average {}",
        f.running,
        f.timeout,
        load_average()
    );
    let began = Instant::now();
    let plan = spread(&queues, f.running, 0);
    let batches = start_running(&driver, &plan, &opts, "f", f.batch, f.running >= 100_000).await;
    println!(
        "      set up in {:.1?}; used_memory {:.0} MiB; one more beat of every execution",
        began.elapsed(),
        used_memory_mib(admin).await
    );
    // Early claims are older than the timeout by now: beat everything once before any
    // replica runs, then the generator keeps every timer at least timeout − period ahead.
    let warm = Counters::default();
    stream::iter(&batches)
        .for_each_concurrent(f.in_flight, |b| beat(&driver, b, &warm))
        .await;
    assert_eq!(warm.refused(), 0, "the warm-up beats are all accepted");
    let counters = Arc::new(Counters::default());
    let stop_load = CancellationToken::new();
    let generator = spawn_fleet(
        driver.clone(),
        batches,
        f.period,
        f.in_flight,
        counters.clone(),
        stop_load.clone(),
    );

    let shutdown = CancellationToken::new();
    let mut replicas = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let own = Ledger::connect(driver.config().clone())
            .await
            .expect("replica ledger");
        let wd = Watchdog::new(
            own,
            WatchdogConfig {
                max_poll_interval: Duration::from_millis(200),
                ..WatchdogConfig::default()
            },
        )
        .expect("watchdog config");
        let (w, s) = (wd.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move { w.run(s).await }));
        replicas.push(wd);
    }
    wait_for(
        Duration::from_secs(60),
        "leases spread over 3 replicas",
        || {
            let held: Vec<usize> = replicas.iter().map(|w| w.held_partitions().len()).collect();
            held.iter().sum::<usize>() == 16 && held.iter().all(|h| (1..=6).contains(h))
        },
    )
    .await;

    let mut windows = Vec::new();
    for run in 0..runs {
        windows.push(window(run, admin, &driver, &queues, &opts, f, &counters, &replicas).await);
    }
    stop_load.cancel();
    generator.await.expect("generator");
    shutdown.cancel();
    for task in tasks {
        task.await.expect("replica task").expect("replica stops");
    }
    summary(&windows, f);
}

#[allow(clippy::too_many_arguments)]
async fn window(
    run: usize,
    admin: &mut MultiplexedConnection,
    driver: &Ledger,
    queues: &[String],
    opts: &EnqueueOptions,
    f: &Fleet,
    counters: &Counters,
    replicas: &[Watchdog],
) -> Window {
    // The silent ones: beaten by their own beater (every quarter of their timeout) until
    // their instant, spread evenly from one timeout into the window to a margin before it
    // ends, so each is found inside it.
    let silent_opts = opts
        .clone()
        .heartbeat_timeout(f.silent_timeout)
        .stuck_threshold(Duration::ZERO)
        .max_attempts(3);
    let tag = format!("s{run}-");
    let plan = spread(queues, f.silent, run * 16);
    let silent: Vec<_> = start_running(driver, &plan, &silent_opts, &tag, 1000, false)
        .await
        .iter()
        .flat_map(|b| b.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>())
        .collect();
    let lead = f.silent_timeout;
    let span = f
        .window
        .saturating_sub(lead + f.silent_timeout * 2 + Duration::from_secs(1));
    let offset = |i: usize| lead + span.mul_f64(i as f64 / f.silent as f64);

    let totals = || {
        let all: Vec<_> = replicas.iter().map(|w| w.totals()).collect();
        let sum = |g: fn(&unstuck::watchdog::RoundReport) -> u64| all.iter().map(g).sum::<u64>();
        (sum(|t| t.stuck), sum(|t| t.timed_out), sum(|t| t.dead))
    };
    // Every event of the set-up falls in an earlier millisecond than the window's start.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let stuck_before = totals().0;
    let before = stats(admin).await;
    let (now_s, now_us): (u64, u64) = redis::cmd("TIME").query_async(admin).await.expect("TIME");
    let start_ms = (now_s * 1000 + now_us / 1000) as i64;
    let client_before = client_cpu();
    let (beats_before, refused_before, calls_before) =
        (counters.beats(), counters.refused(), counters.calls());
    counters.take_maxima();
    let load_before = load_average();
    println!(
        "fleet run={run}: window of {:?} begins, {} going silent in it",
        f.window, f.silent
    );
    let started = Instant::now();
    let silent_counters = Arc::new(Counters::default());
    let mut stops = HashMap::new();
    let mut schedule = Vec::new();
    for token in silent {
        let i: usize = token.execution_id()[tag.len()..]
            .parse()
            .expect("silent id");
        stops.insert(
            token.execution_id().to_owned(),
            start_ms + offset(i).as_millis() as i64,
        );
        schedule.push((token, started + offset(i)));
    }
    let beater = spawn_silent(
        driver.clone(),
        schedule,
        f.silent_timeout / 4,
        silent_counters.clone(),
    );

    let mut memory = Vec::new();
    let sample = f.window / 10;
    while started.elapsed() + sample <= f.window {
        tokio::time::sleep(sample).await;
        memory.push(used_memory_mib(admin).await);
    }
    tokio::time::sleep(f.window.saturating_sub(started.elapsed())).await;
    if memory.is_empty() {
        memory.push(used_memory_mib(admin).await);
    }
    let secs = started.elapsed().as_secs_f64();
    let delta = stats(admin).await.since(&before);
    let client = client_cpu() - client_before;
    let beats = counters.beats() - beats_before;
    let refused = counters.refused() - refused_before;
    let calls = counters.calls() - calls_before;
    let (late_ms, call_ms) = counters.take_maxima();
    beater.await.expect("silent beater");
    wait_for(Duration::from_secs(30), "every silent one found", || {
        totals().0 - stuck_before >= f.silent as u64
    })
    .await;
    let (_, timed_out, dead) = totals();

    // Every watchdog event since the window began: the silent ones' stuck (and retry)
    // events, and anything else is a verdict on an execution still being beaten.
    let mut lags = Vec::new();
    let mut false_verdicts = Vec::new();
    let mut wrongly_judged = HashSet::new();
    let mut others = 0;
    for p in 0..16 {
        let mut after = format!("{start_ms}-0");
        loop {
            let page = driver
                .read_events(p, Some(&after), 10_000)
                .await
                .expect("events");
            let Some(last) = page.last() else { break };
            after = last.stream_id.clone();
            for e in page {
                let at = e.at.timestamp_millis();
                match (stops.get(&e.execution_id), e.to, e.timer_due_at) {
                    (Some(stop), Some(State::Stuck), Some(due)) if at >= *stop => {
                        lags.push((e.at - due).num_milliseconds());
                    }
                    (Some(_), Some(State::Queued), _) if e.reason == "heartbeat_lost" => {}
                    // A verdict (stuck, timed out, dead, sent back to the queue) on an
                    // execution still beaten, or on a silent one before it went silent.
                    (_, Some(State::Stuck | State::TimedOut | State::Dead | State::Queued), _)
                    | (Some(_), _, _) => {
                        wrongly_judged.insert(e.execution_id.clone());
                        false_verdicts.push(format!(
                            "{} {:?}→{:?} {}",
                            e.execution_id, e.from, e.to, e.reason
                        ));
                    }
                    // Anything else about a beaten one (a beat taking a wrongly judged
                    // execution back to running): counted, not a verdict.
                    _ => others += 1,
                }
            }
        }
    }
    lags.sort_unstable();
    let needed = f.running as f64 / f.period.as_secs_f64();
    let w = Window {
        beats_per_sec: beats as f64 / secs,
        false_verdicts: false_verdicts.len(),
        p50: pct(&lags, 0.50),
        p99: pct(&lags, 0.99),
        max: lags.last().copied().unwrap_or(-1),
        memory_mib: median(memory.iter().copied()),
        redis_cpu: delta.cpu / secs * 100.0,
        client_cpu: client / secs * 100.0,
    };
    println!(
        "fleet run={run}: {} running, beaten every {:?} (timeout {:?}) in calls of {}, {} in \
         flight; 3 replicas; window {secs:.1}s, load average {load_before} → {}",
        f.running,
        f.period,
        f.timeout,
        f.batch,
        f.in_flight,
        load_average(),
    );
    println!(
        "      beats {:.0}/s (needed {needed:.0}/s) in {calls} calls, {refused} refused, \
         latest batch {late_ms} ms behind its slot, longest call {call_ms} ms; silent ones' \
         beats {}",
        w.beats_per_sec,
        silent_counters.beats(),
    );
    println!(
        "      false verdicts {} on {} executions, {others} other events about beaten ones \
         (watchdog totals since the start: timed_out {timed_out}, dead {dead}); {} of {} \
         silent found: stuck lag p50 {} ms, p99 {} ms, max {} ms",
        w.false_verdicts,
        wrongly_judged.len(),
        lags.len(),
        f.silent,
        w.p50,
        w.p99,
        w.max
    );
    println!(
        "      Redis used_memory {:.0} MiB (median of {} samples, max {:.0}), Redis CPU {:.1}% \
         of a core ({:.1} µs per beat, watchdog included), bench process {:.1}% (generator + \
         3 replicas)",
        w.memory_mib,
        memory.len(),
        memory.iter().copied().fold(0.0, f64::max),
        w.redis_cpu,
        delta.cpu * 1e6 / (beats + silent_counters.beats()).max(1) as f64,
        w.client_cpu
    );
    println!("      top commands: {}", delta.top(6));
    for v in false_verdicts.iter().take(5) {
        println!("      false verdict: {v}");
    }
    if f.check {
        assert_eq!(refused, 0, "every fleet beat accepted");
        assert!(
            false_verdicts.is_empty(),
            "false verdicts: {false_verdicts:?}"
        );
        assert_eq!(lags.len(), f.silent, "one stuck event per silent execution");
    }
    w
}

fn summary(windows: &[Window], f: &Fleet) {
    let spread = |g: fn(&Window) -> f64| {
        let all: Vec<f64> = windows.iter().map(g).collect();
        let lo = all.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("{:.1} ({lo:.1}–{hi:.1})", median(all.into_iter()))
    };
    println!(
        "fleet summary ({} running, {} windows of {:?}, median (min–max)): beats/s {} of {:.0} \
         needed; false verdicts {} in all; silent stuck lag p50 {} ms, p99 {} ms, max {} ms; \
         Redis used_memory {} MiB, Redis CPU {} % of a core, bench process {} %",
        f.running,
        windows.len(),
        f.window,
        spread(|w| w.beats_per_sec),
        f.running as f64 / f.period.as_secs_f64(),
        windows.iter().map(|w| w.false_verdicts).sum::<usize>(),
        spread(|w| w.p50 as f64),
        spread(|w| w.p99 as f64),
        spread(|w| w.max as f64),
        spread(|w| w.memory_mib),
        spread(|w| w.redis_cpu),
        spread(|w| w.client_cpu),
    );
}

async fn used_memory_mib(admin: &mut MultiplexedConnection) -> f64 {
    let bytes: f64 = info_field(admin, "memory", "used_memory")
        .await
        .parse()
        .unwrap_or(0.0);
    bytes / (1024.0 * 1024.0)
}

fn pct(sorted: &[i64], q: f64) -> i64 {
    if sorted.is_empty() {
        return -1;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}
