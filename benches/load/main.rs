//! Load harness: heartbeat throughput, end-to-end no-op throughput with 1/16/64 workers
//! (queue drained, and producers running alongside), per-script server cost, and memory
//! per queued execution, all against a throwaway redis-server on this machine.
//!
//! `cargo bench --bench load [-- --seconds 10 --runs 3 --only heartbeat,drain ...]`; see
//! `USAGE`. Run without `--bench` (as `cargo test --all-targets` does), it makes one tiny
//! pass over every scenario so the code stays exercised; those figures mean nothing.

#[path = "../support/mod.rs"]
mod support;

mod heartbeat;
mod measure;
mod memory;
mod scripts;
mod throughput;

use std::time::Duration;

use measure::Measured;
use throughput::Style;

const USAGE: &str = "\
load harness options (after `cargo bench --bench load --`):
  --seconds S            measured window per run (heartbeat, steady) and drain time cap [10]
  --warm-up S            warm-up before each heartbeat/steady window [2]
  --runs R               runs per scenario; the summary shows the median [3]
  --only LIST            scenarios: heartbeat,heartbeat-usage,heartbeat-batched,drain,
                         steady,drain-chained,steady-chained,scripts,memory [all]
  --running N            running executions heartbeated [10000]
  --in-flight K          heartbeats in flight in all [512]
  --tasks T              tasks sharing those heartbeats [4]
  --batch B              beats per call in heartbeat-batched [100]
  --workers LIST         worker counts for drain and steady [1,16,64]
  --executions N         executions enqueued before each drain [100000]
  --producers K          enqueues in flight during steady [32]
  --script-calls N       calls per script in the per-script cost table [50000]
  --memory-executions N  executions enqueued for the memory figure [100000]
  --events-max-len N     event stream cap for the memory figure [10000]
  --threads N            tokio worker threads [number of cores]
  --redis-config K=V     extra redis-server setting, repeatable
                         (e.g. hash-max-listpack-value=256) [none]
  --quiet-wait S         before each run, wait up to S seconds for other processes to
                         leave the cores idle (shared machines) [0: don't wait]";

/// The harness's settings; see [`USAGE`].
#[derive(Debug, Clone)]
pub struct Args {
    pub full: bool,
    pub seconds: Duration,
    pub warm_up: Duration,
    pub runs: usize,
    pub only: Vec<String>,
    pub running: usize,
    pub in_flight: usize,
    pub tasks: usize,
    pub batch: usize,
    pub workers: Vec<usize>,
    pub executions: usize,
    pub producers: usize,
    pub script_calls: usize,
    pub memory_executions: usize,
    pub events_max_len: usize,
    pub threads: usize,
    pub quiet_wait: Duration,
    /// Extra redis-server arguments, as `--key value` pairs.
    pub redis_args: Vec<String>,
}

impl Args {
    fn parse() -> Result<Self, String> {
        let support::args::BenchArgs { full, options } = support::args::BenchArgs::read(USAGE)?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut args = if full {
            Args {
                full,
                seconds: Duration::from_secs(10),
                warm_up: Duration::from_secs(2),
                runs: 3,
                only: Vec::new(),
                running: 10_000,
                in_flight: 512,
                tasks: 4,
                batch: 100,
                workers: vec![1, 16, 64],
                executions: 100_000,
                producers: 32,
                script_calls: 50_000,
                memory_executions: 100_000,
                events_max_len: 10_000,
                threads: cores,
                quiet_wait: Duration::ZERO,
                redis_args: Vec::new(),
            }
        } else {
            // One small pass over every code path, well under 5 s.
            Args {
                full,
                seconds: Duration::from_millis(300),
                warm_up: Duration::from_millis(100),
                runs: 1,
                only: Vec::new(),
                running: 200,
                in_flight: 64,
                tasks: 2,
                batch: 20,
                workers: vec![1, 16],
                executions: 300,
                producers: 8,
                script_calls: 200,
                memory_executions: 300,
                events_max_len: 100,
                threads: cores,
                quiet_wait: Duration::ZERO,
                redis_args: Vec::new(),
            }
        };
        for (flag, value) in options {
            let number = || {
                value
                    .parse::<usize>()
                    .map_err(|_| format!("{flag}: `{value}` is not a whole number"))
            };
            let seconds = || {
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|s| *s > 0.0)
                    .map(Duration::from_secs_f64)
                    .ok_or(format!(
                        "{flag}: `{value}` is not a positive number of seconds"
                    ))
            };
            match flag.as_str() {
                "--seconds" => args.seconds = seconds()?,
                "--warm-up" => args.warm_up = seconds()?,
                "--runs" => args.runs = number()?.max(1),
                "--only" => args.only = value.split(',').map(str::to_owned).collect(),
                "--running" => args.running = number()?.max(1),
                "--in-flight" => args.in_flight = number()?.max(1),
                "--tasks" => args.tasks = number()?.max(1),
                "--batch" => args.batch = number()?.clamp(1, unstuck::MAX_HEARTBEAT_BATCH),
                "--workers" => {
                    args.workers = value
                        .split(',')
                        .map(|w| w.parse::<usize>().ok().filter(|w| *w > 0))
                        .collect::<Option<_>>()
                        .ok_or(format!("--workers: `{value}` is not a list like 1,16,64"))?;
                }
                "--executions" => args.executions = number()?.max(1),
                "--producers" => args.producers = number()?.max(1),
                "--script-calls" => args.script_calls = number()?.max(1),
                "--memory-executions" => args.memory_executions = number()?.max(1),
                "--events-max-len" => args.events_max_len = number()?,
                "--threads" => args.threads = number()?.max(1),
                "--quiet-wait" => args.quiet_wait = seconds()?,
                "--redis-config" => support::args::redis_config(&value, &mut args.redis_args)?,
                _ => return Err(format!("unknown option {flag}")),
            }
        }
        Ok(args)
    }

    fn wants(&self, scenario: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == scenario)
    }

    /// Waits for a quiet machine when `--quiet-wait` asks for it, and says so when it
    /// never came.
    async fn settle(&self) {
        if self.quiet_wait.is_zero() {
            return;
        }
        let (waited, quiet) = support::wait_for_quiet(self.quiet_wait).await;
        if !quiet {
            println!("  (machine still busy after waiting {waited:.0?}; running anyway)");
        }
    }
}

fn main() {
    let args = match Args::parse() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(run(args));
}

async fn run(args: Args) {
    let redis = support::start_redis_with(args.redis_args.clone());
    let url = redis.url();
    let mut admin = support::admin(url).await;
    let version = support::info_field(&mut admin, "server", "redis_version").await;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "unstuck load harness ({}): nproc {cores}, redis-server {version} (same machine), \
         tokio worker threads {}, {} run(s) per scenario",
        if args.full {
            "full"
        } else {
            "quick test pass without --bench: figures not meaningful"
        },
        args.threads,
        args.runs
    );
    if !args.redis_args.is_empty() {
        println!("redis-server settings: {}", args.redis_args.join(" "));
    }
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average at start: {}", load.trim());
    }
    let mut summary: Vec<(String, Vec<Measured>)> = Vec::new();
    let mut note = |name: String, m: Measured| {
        measure::row(&format!("{name} (run)"), &m);
        match summary.iter_mut().find(|(n, _)| *n == name) {
            Some((_, runs)) => runs.push(m),
            None => summary.push((name, vec![m])),
        }
    };
    println!();
    measure::header();

    if args.wants("heartbeat") {
        let (ledger, tokens) = heartbeat::setup(url, &args).await;
        let name = format!(
            "heartbeat ({} running, {} in flight)",
            args.running, args.in_flight
        );
        for _ in 0..args.runs {
            args.settle().await;
            note(
                name.clone(),
                heartbeat::run(url, &ledger, &tokens, &args, heartbeat::Mode::Plain).await,
            );
        }
    }
    if args.wants("heartbeat-usage") {
        let (ledger, tokens) = heartbeat::setup(url, &args).await;
        let name = format!(
            "heartbeat with usage ({} running, {} in flight)",
            args.running, args.in_flight
        );
        for _ in 0..args.runs {
            args.settle().await;
            note(
                name.clone(),
                heartbeat::run(url, &ledger, &tokens, &args, heartbeat::Mode::Usage).await,
            );
        }
    }
    if args.wants("heartbeat-batched") {
        let (ledger, tokens) = heartbeat::setup(url, &args).await;
        let name = format!(
            "heartbeat, batches of {} ({} running, {} in flight)",
            args.batch, args.running, args.in_flight
        );
        for _ in 0..args.runs {
            args.settle().await;
            let mode = heartbeat::Mode::Batched(args.batch);
            note(
                name.clone(),
                heartbeat::run(url, &ledger, &tokens, &args, mode).await,
            );
        }
    }
    // Producers' enqueue rate in each steady run, by scenario.
    let mut steady_enqueue: Vec<(String, Vec<f64>)> = Vec::new();
    let styles = [
        (Style::PerCall, "drain", "steady", ""),
        (
            Style::Chained,
            "drain-chained",
            "steady-chained",
            ", complete_and_claim",
        ),
    ];
    for &workers in &args.workers {
        for (style, drain, steady, label) in styles {
            if args.wants(drain) {
                for _ in 0..args.runs {
                    args.settle().await;
                    let (enqueued, drained) = throughput::drain(url, workers, style, &args).await;
                    let enqueue = match style {
                        Style::PerCall => "enqueue (64 in flight)",
                        Style::Chained => "enqueue_many (batches of 50, 4 in flight)",
                    };
                    note(enqueue.into(), enqueued);
                    note(
                        format!("drain, {}{label}", plural(workers, "worker")),
                        drained,
                    );
                }
            }
            if args.wants(steady) {
                for _ in 0..args.runs {
                    args.settle().await;
                    let (measured, enqueue_rate) =
                        throughput::steady(url, workers, style, &args).await;
                    let name = format!("steady, {}{label}", plural(workers, "worker"));
                    match steady_enqueue.iter_mut().find(|(n, _)| *n == name) {
                        Some((_, rates)) => rates.push(enqueue_rate),
                        None => steady_enqueue.push((name.clone(), vec![enqueue_rate])),
                    }
                    note(name, measured);
                }
            }
        }
    }

    println!("\nSummary (median of {} run(s)):\n", args.runs);
    measure::header();
    for (name, runs) in &summary {
        if let Some(m) = measure::median(runs) {
            measure::row(name, m);
        }
    }
    println!("\nMedian and range of the {} run(s):\n", args.runs);
    for (name, runs) in &summary {
        println!(
            "  {name}: {}/s, redis {} µs/op",
            measure::spread(runs, Measured::rate, 0),
            measure::spread(runs, Measured::redis_us_per_op, 1)
        );
    }
    for (name, rates) in &mut steady_enqueue {
        rates.sort_by(f64::total_cmp);
        println!(
            "  {name}: producers enqueued {:.0}/s (median) in the window",
            rates[rates.len() / 2]
        );
    }

    if args.wants("scripts") {
        args.settle().await;
        scripts::run(url, &args).await;
    }
    if args.wants("memory") {
        let mut footprints = Vec::new();
        for _ in 0..args.runs {
            args.settle().await;
            footprints.push(memory::run(url, &args).await);
        }
        memory::print(&footprints);
    }
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
