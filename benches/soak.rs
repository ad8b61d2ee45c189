//! Soak: executions pushed through at a steady rate for minutes with a short retention,
//! while watchdog replicas prune; Redis memory is sampled as it goes and must stay flat
//! once the first retention period has passed.
//!
//! A throwaway redis-server (default settings: noeviction, no persistence), one ledger
//! whose five terminal states all live `--retention`, `--queues` queues spread over the
//! partitions, a producer enqueueing `--rate` executions a second (`enqueue_many`), workers
//! finishing them (`complete_and_claim`; some fail, are cancelled, or are left for the
//! watchdog to end as dead or timed out), and `--replicas` watchdog replicas running. Every
//! `--sample` it reads `used_memory` (INFO memory), the finished executions kept and the
//! watchdog's pruned total, and prints a progress line to stderr. The run ends once
//! `--executions` are through and the warm-up plus `--steady` has passed; then the table,
//! and the verdict: after the warm-up, memory's max and min within `--tolerance` of its
//! mean is flat. A run that is not flat exits 1.
//!
//! `cargo bench --bench soak [-- --executions 2000000 --rate 10000 ...]`; see `USAGE`.
//! Run without `--bench` (as `cargo test --all-targets` does), it makes a pass of a few
//! seconds with a 1 s retention and checks that pruning happened; those figures mean
//! nothing and are not judged.

mod support;

#[path = "soak/samples.rs"]
mod samples;
#[path = "soak/traffic.rs"]
mod traffic;

use std::sync::Arc;
use std::time::Duration;

use samples::{Sample, Verdict};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use traffic::{Counters, Fate};
use unstuck::watchdog::{Watchdog, WatchdogConfig};
use unstuck::{Ledger, LedgerConfig, QueueSettings, Retention};

const USAGE: &str = "\
soak options (after `cargo bench --bench soak --`):
  --executions N      executions through before the run may end [2000000]
  --rate R            executions enqueued per second; 0: as fast as the workers go [10000]
  --retention D       time to live of every terminal state [1m]
  --max-finished N    cap of finished executions per queue [none]
  --queues Q          queues, spread over the partitions [16]
  --workers W         workers per queue [4]
  --replicas R        watchdog replicas [2]
  --prune-interval D  the replicas' prune_interval [1s]
  --prune-batch N     the replicas' prune_batch [200]
  --sample D          between two samples [10s]
  --warm-up D         samples before this are not judged [2m, at least retention + 30s]
  --steady D          judged stretch after the warm-up, at least [3m]
  --tolerance PCT     flat: max and min within this of the mean [10]
  --events-max-len N  event stream cap [10000]
  --threads N         tokio worker threads [number of cores]
  --redis-config K=V  extra redis-server setting, repeatable [none]
Durations are written as 500ms, 10s, 2m.";

/// The soak's settings; see [`USAGE`].
#[derive(Debug, Clone)]
pub struct Args {
    pub full: bool,
    pub executions: u64,
    pub rate: f64,
    pub retention: Duration,
    pub max_finished: Option<u64>,
    pub queues: usize,
    pub workers: usize,
    pub replicas: usize,
    pub prune_interval: Duration,
    pub prune_batch: usize,
    pub sample: Duration,
    pub warm_up: Option<Duration>,
    pub steady: Duration,
    pub tolerance: f64,
    pub events_max_len: usize,
    pub threads: usize,
    /// Extra redis-server arguments, as `--key value` pairs.
    pub redis_args: Vec<String>,
}

impl Args {
    fn parse() -> Result<Self, String> {
        let support::args::BenchArgs { full, options } = support::args::BenchArgs::read(USAGE)?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut args = Args {
            full,
            executions: 2_000_000,
            rate: 10_000.0,
            retention: Duration::from_secs(60),
            max_finished: None,
            queues: 16,
            workers: 4,
            replicas: 2,
            prune_interval: Duration::from_secs(1),
            prune_batch: 200,
            sample: Duration::from_secs(10),
            warm_up: None,
            steady: Duration::from_secs(180),
            tolerance: 0.10,
            events_max_len: 10_000,
            threads: cores,
            redis_args: Vec::new(),
        };
        if !full {
            // A few seconds over every code path: abandoned executions are ended after
            // 1 s, so they are pruned within the pass.
            args = Args {
                executions: 6_000,
                rate: 2_000.0,
                retention: Duration::from_secs(1),
                queues: 4,
                workers: 2,
                prune_interval: Duration::from_millis(250),
                sample: Duration::from_millis(500),
                warm_up: Some(Duration::from_secs(2)),
                steady: Duration::from_secs(2),
                events_max_len: 1_000,
                ..args
            };
        }
        for (flag, value) in options {
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("{flag}: `{value}` is not a whole number"))
            };
            let duration = || {
                humantime::parse_duration(&value)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .ok_or(format!(
                        "{flag}: `{value}` is not a duration like 500ms, 10s, 2m"
                    ))
            };
            match flag.as_str() {
                "--executions" => args.executions = number()?,
                "--rate" => {
                    args.rate = value
                        .parse::<f64>()
                        .ok()
                        .filter(|r| *r >= 0.0)
                        .ok_or(format!("--rate: `{value}` is not a rate like 10000"))?;
                }
                "--retention" => args.retention = duration()?,
                "--max-finished" => args.max_finished = Some(number()?).filter(|n| *n > 0),
                "--queues" => args.queues = number()?.max(1) as usize,
                "--workers" => args.workers = number()?.max(1) as usize,
                "--replicas" => args.replicas = number()?.max(1) as usize,
                "--prune-interval" => args.prune_interval = duration()?,
                "--prune-batch" => args.prune_batch = number()?.max(1) as usize,
                "--sample" => args.sample = duration()?,
                "--warm-up" => args.warm_up = Some(duration()?),
                "--steady" => args.steady = duration()?,
                "--tolerance" => {
                    args.tolerance = value
                        .parse::<f64>()
                        .ok()
                        .filter(|t| *t > 0.0)
                        .map(|t| t / 100.0)
                        .ok_or(format!(
                            "--tolerance: `{value}` is not a percentage like 10"
                        ))?;
                }
                "--events-max-len" => args.events_max_len = number()? as usize,
                "--threads" => args.threads = number()?.max(1) as usize,
                "--redis-config" => support::args::redis_config(&value, &mut args.redis_args)?,
                _ => return Err(format!("unknown option {flag}")),
            }
        }
        Ok(args)
    }

    /// Samples before this are not judged: the kept executions grow for one retention
    /// period, and the first prunes lag it by up to a prune interval; 2 minutes, or the
    /// retention plus 30 s when that is longer.
    fn warm_up(&self) -> Duration {
        self.warm_up.unwrap_or_else(|| {
            Duration::from_secs(120).max(self.retention + Duration::from_secs(30))
        })
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
    let flat = runtime.block_on(run(args.clone()));
    if args.full && !flat {
        std::process::exit(1);
    }
}

/// The whole soak; true when memory stayed flat after the warm-up.
async fn run(args: Args) -> bool {
    let redis = support::start_redis_with(args.redis_args.clone());
    let url = redis.url();
    let mut admin = support::admin(url).await;
    let version = support::info_field(&mut admin, "server", "redis_version").await;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let warm_up = args.warm_up();
    println!(
        "unstuck soak ({}): nproc {cores}, redis-server {version} (same machine, default \
         settings{}), tokio worker threads {}",
        if args.full {
            "full"
        } else {
            "quick test pass without --bench: figures not meaningful"
        },
        if args.redis_args.is_empty() {
            String::new()
        } else {
            format!(" and {}", args.redis_args.join(" "))
        },
        args.threads
    );
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average at start: {}", load.trim());
    }

    let retention = Some(args.retention);
    let mut config = LedgerConfig::new(url);
    config.namespace = support::namespace("soak");
    config.events_max_len = args.events_max_len;
    config.retention = Retention {
        succeeded: retention,
        cancelled: retention,
        failed: retention,
        dead: retention,
        timed_out: retention,
        max_finished: args.max_finished,
    };
    let workers_ledger = Ledger::connect(config.clone())
        .await
        .expect("the workers' ledger connects");
    let queues = spread_queues(&workers_ledger, args.queues);
    let settings = QueueSettings {
        capacity: Some(10_000_000),
        ..QueueSettings::default()
    };
    for queue in &queues {
        workers_ledger
            .set_queue(queue, &settings)
            .await
            .expect("the soak's queue settings are accepted");
    }
    let mut partitions: Vec<u16> = queues
        .iter()
        .map(|q| workers_ledger.partition_of(q))
        .collect();
    partitions.sort_unstable();
    partitions.dedup();
    println!(
        "{} executions at {} per second; retention {:?} for every terminal state{}; {} queues \
         over {} of {} partitions, {} workers each; {} watchdog replicas (prune_interval \
         {:?}, prune_batch {}); events_max_len {}; a sample every {:?}, warm-up {:?}, \
         then at least {:?}",
        args.executions,
        if args.rate > 0.0 {
            format!("{:.0}", args.rate)
        } else {
            "as many as go".to_owned()
        },
        args.retention,
        args.max_finished
            .map_or(String::new(), |cap| format!(", at most {cap} per queue")),
        queues.len(),
        partitions.len(),
        config.partitions,
        args.workers,
        args.replicas,
        args.prune_interval,
        args.prune_batch,
        args.events_max_len,
        args.sample,
        warm_up,
        args.steady
    );

    let watch_stop = CancellationToken::new();
    let mut replicas = Vec::new();
    for r in 0..args.replicas {
        let ledger = Ledger::connect(config.clone())
            .await
            .expect("a replica's ledger connects");
        let watchdog = Watchdog::new(
            ledger,
            WatchdogConfig {
                replica_id: Some(format!("soak-r{r}")),
                prune_interval: args.prune_interval,
                prune_batch: args.prune_batch,
                ..WatchdogConfig::default()
            },
        )
        .expect("a valid watchdog config");
        let stop = watch_stop.clone();
        replicas.push(tokio::spawn(async move { watchdog.run(stop).await }));
    }

    let counters = Arc::new(Counters::default());
    let reader = Ledger::connect(config.clone())
        .await
        .expect("the sampler's ledger connects");
    let mut samples =
        vec![Sample::take(&mut admin, &reader, &queues, &counters, Duration::ZERO).await];
    let traffic_stop = CancellationToken::new();
    let producer = tokio::spawn(traffic::produce(
        Ledger::connect(config.clone())
            .await
            .expect("the producer's ledger connects"),
        queues.clone(),
        args.rate,
        counters.clone(),
        traffic_stop.clone(),
    ));
    let mut workers = Vec::new();
    for queue in &queues {
        for w in 0..args.workers {
            workers.push(tokio::spawn(traffic::work(
                workers_ledger.clone(),
                queue.clone(),
                format!("soak-{queue}-w{w}"),
                counters.clone(),
                traffic_stop.clone(),
            )));
        }
    }

    let start = Instant::now();
    let mut due = start;
    loop {
        due += args.sample;
        tokio::time::sleep_until(due).await;
        let sample = Sample::take(&mut admin, &reader, &queues, &counters, start.elapsed()).await;
        eprintln!("{}", sample.progress(samples.last()));
        let done = sample.handled >= args.executions && sample.elapsed >= warm_up + args.steady;
        samples.push(sample);
        if done {
            break;
        }
    }
    traffic_stop.cancel();
    producer.await.expect("the producer panicked");
    for worker in workers {
        worker.await.expect("a worker panicked");
    }
    watch_stop.cancel();
    for replica in replicas {
        replica
            .await
            .expect("a replica panicked")
            .expect("a replica stops cleanly");
    }

    let verdict = Verdict::of(&samples, warm_up, args.tolerance);
    samples::print_table(&samples, warm_up, verdict.as_ref());
    let last = samples.last().expect("samples were taken");
    let fates: Vec<String> = Fate::ALL
        .iter()
        .map(|f| format!("{f:?} {}", counters.fate(*f)))
        .collect();
    println!(
        "\n{} enqueued, {} through the workers ({}); the watchdog pruned {}, ended {} as \
         dead and {} as timed out; kept at the end: {:?}",
        counters.enqueued(),
        last.handled,
        fates.join(", "),
        last.pruned,
        last.dead,
        last.timed_out,
        last.finished_by_state
    );
    assert!(last.pruned > 0, "the replicas pruned finished executions");
    assert!(
        last.dead > 0 && last.timed_out > 0,
        "the abandoned executions were ended by the watchdog (dead {}, timed out {})",
        last.dead,
        last.timed_out
    );
    match &verdict {
        Some(verdict) => {
            // What the time to live alone would keep at the planned rate (a cap keeps less).
            let expected = (args.rate > 0.0).then_some(args.rate * args.retention.as_secs_f64());
            verdict.print(warm_up, samples[0].used_memory, expected);
            verdict.flat()
        }
        None => {
            println!("\nFewer than two samples after the warm-up: nothing to judge.");
            false
        }
    }
}

/// `n` queue names, each in a partition of its own while partitions remain, so the load
/// (and the pruning, which runs per partition) is spread as many queues would spread it.
fn spread_queues(ledger: &Ledger, n: usize) -> Vec<String> {
    let partitions = usize::from(ledger.config().partitions);
    let mut taken = vec![false; partitions];
    let mut queues = Vec::new();
    for i in 0.. {
        if queues.len() == n {
            break;
        }
        let name = format!("soak-{i}");
        let p = usize::from(ledger.partition_of(&name));
        // Past 4 × partitions names, any partition will do (more queues than partitions).
        if !taken[p] || queues.len() >= partitions || i > 4 * partitions {
            taken[p] = true;
            queues.push(name);
        }
    }
    queues
}
