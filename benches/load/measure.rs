//! What one measured window saw: operations, wall time, CPU of Redis and of this process,
//! per-command cost on the server, and the latency of each operation as the client saw it.

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

use crate::support::{self, CommandStat};

/// Latencies in microseconds, collected by one task and merged at the end.
#[derive(Debug, Default, Clone)]
pub struct Latencies(Vec<u32>);

impl Latencies {
    pub fn record(&mut self, since: Instant) {
        self.0
            .push(since.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
    }

    pub fn merge(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    /// The `q` quantile (0.0..=1.0) of a non-empty sorted slice.
    fn quantile(sorted: &[u32], q: f64) -> u32 {
        let at = ((sorted.len() - 1) as f64 * q).round() as usize;
        sorted[at]
    }
}

/// Counters read when a window opens; the window's figures are the differences.
pub struct Window {
    start: Instant,
    redis_cpu: Duration,
    client_cpu: Duration,
    machine_busy: Duration,
}

impl Window {
    /// Resets INFO commandstats, so the window's stats cover only its own calls.
    pub async fn open(admin: &mut MultiplexedConnection) -> Self {
        support::reset_stats(admin).await;
        Self {
            redis_cpu: support::redis_cpu(admin).await,
            client_cpu: support::client_cpu(),
            machine_busy: support::machine_busy(),
            start: Instant::now(),
        }
    }

    /// Closes the window over `ops` operations.
    pub async fn close(self, admin: &mut MultiplexedConnection, ops: u64) -> Measured {
        let elapsed = self.start.elapsed();
        let client_cpu = support::client_cpu().saturating_sub(self.client_cpu);
        let machine_busy = support::machine_busy().saturating_sub(self.machine_busy);
        let redis_cpu = support::redis_cpu(admin)
            .await
            .saturating_sub(self.redis_cpu);
        let stats = support::command_stats(admin).await;
        let pct = |cpu: Duration| 100.0 * cpu.as_secs_f64() / elapsed.as_secs_f64();
        Measured {
            ops,
            elapsed,
            redis_cpu,
            redis_cpu_pct: pct(redis_cpu),
            client_cpu_pct: pct(client_cpu),
            other_cpu_pct: (pct(machine_busy) - pct(redis_cpu) - pct(client_cpu)).max(0.0),
            p50_us: None,
            p99_us: None,
            stats,
        }
    }
}

/// The figures of one measured window.
#[derive(Debug, Clone)]
pub struct Measured {
    pub ops: u64,
    pub elapsed: Duration,
    /// Redis's CPU time (`INFO cpu` user + sys) over the window.
    pub redis_cpu: Duration,
    /// Share of one core; Redis is single-threaded, so 100 % means Redis is the limit.
    pub redis_cpu_pct: f64,
    /// Share of one core, all threads of this process (up to 100 % × cores).
    pub client_cpu_pct: f64,
    /// Share of one core used by every other process on the machine (noise).
    pub other_cpu_pct: f64,
    /// Per-operation latency percentiles, µs; `None` where latencies were not recorded.
    pub p50_us: Option<u32>,
    pub p99_us: Option<u32>,
    /// INFO commandstats over the window, most total time first.
    pub stats: Vec<CommandStat>,
}

impl Measured {
    /// Adds the operations' latency percentiles.
    pub fn with_latencies(mut self, latencies: Latencies) -> Self {
        let mut sorted = latencies.0;
        sorted.sort_unstable();
        if !sorted.is_empty() {
            self.p50_us = Some(Latencies::quantile(&sorted, 0.50));
            self.p99_us = Some(Latencies::quantile(&sorted, 0.99));
        }
        self
    }

    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    /// Redis CPU per operation, µs: all of Redis's time (scripts, I/O, the rest) over the
    /// window divided by the operations, so it holds when the machine is busy.
    pub fn redis_us_per_op(&self) -> f64 {
        self.redis_cpu.as_secs_f64() * 1e6 / self.ops.max(1) as f64
    }

    /// Server time per EVALSHA (the script, its inner commands included), in µs.
    pub fn evalsha_usec(&self) -> f64 {
        self.stat("evalsha").map_or(0.0, |s| s.usec_per_call)
    }

    /// Server time spent in scripts per operation, µs: EVALSHA plus the EVAL fallback
    /// that runs when a script is not cached yet.
    pub fn script_usec_per_op(&self) -> f64 {
        let total: f64 = ["evalsha", "eval"]
            .iter()
            .filter_map(|name| self.stat(name))
            .map(|s| s.calls as f64 * s.usec_per_call)
            .sum();
        total / self.ops.max(1) as f64
    }

    /// Script calls per operation (EVALSHA and EVAL), empty claims included.
    pub fn scripts_per_op(&self) -> f64 {
        let calls: u64 = ["evalsha", "eval"]
            .iter()
            .filter_map(|name| self.stat(name))
            .map(|s| s.calls)
            .sum();
        calls as f64 / self.ops.max(1) as f64
    }

    pub fn stat(&self, command: &str) -> Option<&CommandStat> {
        self.stats.iter().find(|s| s.command == command)
    }

    /// The costliest commands a script ran, as `name usec×calls-per-op`.
    pub fn inner_commands(&self, top: usize) -> String {
        let evalsha_calls = self.stat("evalsha").map_or(0, |s| s.calls).max(1) as f64;
        self.stats
            .iter()
            .filter(|s| {
                !matches!(
                    s.command.as_str(),
                    "evalsha" | "eval" | "script|load" | "info" | "config|resetstat"
                )
            })
            .take(top)
            .map(|s| {
                format!(
                    "{} {:.2}µs×{:.1}",
                    s.command,
                    s.usec_per_call,
                    s.calls as f64 / evalsha_calls
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Prints the table header the rows of [`row`] line up with.
pub fn header() {
    println!(
        "| {:<46} | {:>10} | {:>8} | {:>8} | {:>7} | {:>9} | {:>8} | {:>7} | {:>9} | {:>7} |",
        "scenario",
        "ops/s",
        "p50 µs",
        "p99 µs",
        "redis %",
        "redis µs",
        "client %",
        "other %",
        "µs/EVAL",
        "EVAL/op"
    );
    println!(
        "|{:-<48}|{:->12}|{:->10}|{:->10}|{:->9}|{:->11}|{:->10}|{:->9}|{:->11}|{:->9}|",
        "", "", "", "", "", "", "", "", "", ""
    );
}

/// One table row.
pub fn row(name: &str, m: &Measured) {
    println!(
        "| {:<46} | {:>10.0} | {:>8} | {:>8} | {:>7.0} | {:>9.1} | {:>8.0} | {:>7.0} | {:>9.2} | {:>7.2} |",
        name,
        m.rate(),
        micros(m.p50_us),
        micros(m.p99_us),
        m.redis_cpu_pct,
        m.redis_us_per_op(),
        m.client_cpu_pct,
        m.other_cpu_pct,
        m.evalsha_usec(),
        m.scripts_per_op()
    );
}

fn micros(value: Option<u32>) -> String {
    value.map_or_else(|| "-".to_owned(), |us| us.to_string())
}

/// The median and range of `figure` over the runs: "median (min–max)".
pub fn spread(runs: &[Measured], figure: impl Fn(&Measured) -> f64, precision: usize) -> String {
    let mut values: Vec<f64> = runs.iter().map(figure).collect();
    values.sort_by(f64::total_cmp);
    match (values.first(), values.get(values.len() / 2), values.last()) {
        (Some(min), Some(median), Some(max)) => {
            format!("{median:.precision$} ({min:.precision$}–{max:.precision$})")
        }
        _ => "-".to_owned(),
    }
}

/// The run with the median rate (the upper middle one for an even count).
pub fn median(runs: &[Measured]) -> Option<&Measured> {
    let mut by_rate: Vec<&Measured> = runs.iter().collect();
    by_rate.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
    by_rate.get(by_rate.len() / 2).copied()
}
