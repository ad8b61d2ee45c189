//! Watchdog benchmarks: remediation throughput of one replica, round cost as in-flight work
//! grows, detection lag with three replicas, and a fleet of running executions beaten by a
//! load generator while three replicas watch. Figures and how to read them:
//! `BENCHMARKS-watchdog.md`.
//!
//! `cargo bench --bench watchdog [-- throughput|lag|fleet]` runs the full set on a throwaway
//! redis-server (the fleet, many minutes long, only when named). Without `--bench` (as
//! under `cargo test --all-targets`) a tiny run checks, in a few seconds, that every
//! scenario still works and counts what it should.
//! Scale knobs (full run): `WATCHDOG_BENCH_IN_FLIGHT=10000,100000,1000000`,
//! `WATCHDOG_BENCH_BATCHES=100,200,500`, `WATCHDOG_BENCH_RUNS=3`,
//! `WATCHDOG_BENCH_LAG_HEALTHY=10000` (healthy executions beside the stale ones),
//! `WATCHDOG_BENCH_RECONCILE_MS=1000` (the replicas' `reconcile_interval`); the fleet:
//! `WATCHDOG_BENCH_FLEET=1000000` (running executions, beaten every 10 s, timeout 30 s),
//! `WATCHDOG_BENCH_FLEET_SECONDS=300` (each measured window; `WATCHDOG_BENCH_RUNS` windows),
//! `WATCHDOG_BENCH_FLEET_SILENT=1000` (going silent in each window, timeout 2 s),
//! `WATCHDOG_BENCH_FLEET_BATCH=1000` (beats per call), `WATCHDOG_BENCH_FLEET_IN_FLIGHT=8`.

// A bench root resolves `mod` beside itself; the modules live in `benches/watchdog/`.
#[path = "watchdog/fleet.rs"]
mod fleet;
#[path = "watchdog/fleet_load.rs"]
mod fleet_load;
#[path = "watchdog/lag.rs"]
mod lag;
#[path = "watchdog/server.rs"]
mod server;
#[path = "watchdog/setup.rs"]
mod setup;
#[path = "watchdog/throughput.rs"]
mod throughput;

use std::time::Duration;

use unstuck::testkit::{RedisProcess, RedisProcessOptions};

struct Scale {
    in_flight: Vec<usize>,
    stale: usize,
    batches: Vec<usize>,
    runs: usize,
    idle_rounds: usize,
    stale_timeout: Duration,
    lag_healthy: usize,
    lag_stale: usize,
    lag_spread: Duration,
    lag_lease_ttl: Duration,
    lag_reconcile: Duration,
    fleet: fleet::Fleet,
}

impl Scale {
    fn full() -> Self {
        let list = |var: &str, default: &str| -> Vec<usize> {
            std::env::var(var)
                .unwrap_or_else(|_| default.into())
                .split(',')
                .map(|n| n.trim().parse().expect("a comma-separated list of counts"))
                .collect()
        };
        Self {
            in_flight: list("WATCHDOG_BENCH_IN_FLIGHT", "10000,100000,1000000"),
            stale: 10_000,
            batches: list("WATCHDOG_BENCH_BATCHES", "100,200,500"),
            runs: list("WATCHDOG_BENCH_RUNS", "3")[0],
            idle_rounds: 300,
            stale_timeout: Duration::from_secs(1),
            lag_healthy: list("WATCHDOG_BENCH_LAG_HEALTHY", "10000")[0],
            lag_stale: 10_000,
            lag_spread: Duration::from_secs(5),
            lag_lease_ttl: Duration::from_secs(3),
            lag_reconcile: Duration::from_millis(
                list("WATCHDOG_BENCH_RECONCILE_MS", "1000")[0] as u64,
            ),
            fleet: fleet::Fleet {
                running: list("WATCHDOG_BENCH_FLEET", "1000000")[0],
                window: Duration::from_secs(list("WATCHDOG_BENCH_FLEET_SECONDS", "300")[0] as u64),
                silent: list("WATCHDOG_BENCH_FLEET_SILENT", "1000")[0],
                batch: list("WATCHDOG_BENCH_FLEET_BATCH", "1000")[0],
                in_flight: list("WATCHDOG_BENCH_FLEET_IN_FLIGHT", "8")[0],
                period: Duration::from_secs(10),
                timeout: Duration::from_secs(30),
                silent_timeout: Duration::from_secs(2),
                check: false,
            },
        }
    }

    fn tiny() -> Self {
        Self {
            in_flight: vec![300],
            stale: 300,
            batches: vec![200],
            runs: 1,
            idle_rounds: 10,
            stale_timeout: Duration::from_millis(300),
            lag_healthy: 300,
            lag_stale: 300,
            lag_spread: Duration::from_millis(500),
            lag_lease_ttl: Duration::from_millis(900),
            lag_reconcile: Duration::from_secs(1),
            fleet: fleet::Fleet {
                running: 2000,
                window: Duration::from_secs(3),
                silent: 40,
                batch: 100,
                in_flight: 4,
                period: Duration::from_secs(1),
                timeout: Duration::from_secs(3),
                silent_timeout: Duration::from_millis(300),
                check: true,
            },
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let scale = if full { Scale::full() } else { Scale::tiny() };
    let only: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| only.is_empty() || only.contains(&name);
    let redis = RedisProcess::start(RedisProcessOptions::default()).expect("redis-server starts");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let mut admin = server::admin(redis.url()).await;
        let version = server::info_field(&mut admin, "server", "redis_version").await;
        println!(
            "redis-server {version}, {} cores, load average {}",
            server::num_cpus(),
            server::load_average()
        );
        if wanted("throughput") {
            throughput::throughput(redis.url(), &mut admin, &scale).await;
        }
        if wanted("lag") {
            lag::lag(redis.url(), &mut admin, &scale).await;
        }
        // A full fleet run takes many minutes: only when asked for by name.
        if if full {
            only.contains(&"fleet")
        } else {
            wanted("fleet")
        } {
            fleet::fleet(redis.url(), &mut admin, &scale.fleet, scale.runs).await;
        }
        println!("load average at the end {}", server::load_average());
    });
}
