//! Shared bench support: a throwaway Redis, ledgers on it, the setup that brings
//! executions to a given state, and the server-side figures (memory, CPU, per-command cost).
//!
//! Each bench target does `mod support;` (the load harness through `#[path]`). Not every
//! target uses every helper, hence the `#[allow(dead_code)]`s.

#[allow(dead_code)]
pub mod args;

use std::time::Duration;

use futures_util::stream::{self, StreamExt, TryStreamExt};
use redis::aio::MultiplexedConnection;
use unstuck::testkit::{RedisProcess, RedisProcessOptions};
use unstuck::{AttemptToken, EnqueueOptions, Heartbeat, HeartbeatReply, Ledger, LedgerConfig};
use unstuck::{QueueSettings, Timings};

/// The queue every bench uses; each run gets a namespace of its own.
#[allow(dead_code)]
pub const QUEUE: &str = "bench";

/// Most claims one setup call takes (the ledger's batch limit).
const CLAIM_BATCH: usize = 1000;

/// Starts a throwaway redis-server on a free port (never 6379); it dies with the handle.
#[allow(dead_code)]
pub fn start_redis() -> RedisProcess {
    start_redis_with(Vec::new())
}

/// Like [`start_redis`], with extra `redis-server` arguments such as
/// `["--hash-max-listpack-value", "256"]`.
#[allow(dead_code)]
pub fn start_redis_with(extra_args: Vec<String>) -> RedisProcess {
    let options = RedisProcessOptions {
        extra_args,
        ..RedisProcessOptions::default()
    };
    RedisProcess::start(options)
        .unwrap_or_else(|error| panic!("could not start a bench redis-server: {error}"))
}

/// A namespace no other run on the same server uses.
#[allow(dead_code)]
pub fn namespace(label: &str) -> String {
    unstuck::testkit::namespace(label)
}

/// A ledger on `url` with a namespace of its own, and [`QUEUE`] given a capacity large
/// enough that slots never limit a bench (every bench measures the ledger, not a full queue).
///
/// # Panics
/// When the ledger cannot connect or the queue cannot be configured.
#[allow(dead_code)]
pub async fn ledger(url: &str, label: &str, tweak: impl FnOnce(&mut LedgerConfig)) -> Ledger {
    let mut config = LedgerConfig::new(url);
    config.namespace = namespace(label);
    tweak(&mut config);
    let ledger = Ledger::connect(config)
        .await
        .expect("ledger connects to the bench redis");
    let settings = QueueSettings {
        capacity: Some(10_000_000),
        timings: Timings::default(),
        ..QueueSettings::default()
    };
    ledger
        .set_queue(QUEUE, &settings)
        .await
        .expect("bench queue settings are accepted");
    ledger
}

/// A plain connection for INFO, CONFIG, MEMORY and FLUSHALL. Its response timeout is
/// long because a synchronous FLUSHALL of a few hundred thousand keys takes a while.
///
/// # Panics
/// When Redis cannot be reached.
#[allow(dead_code)]
pub async fn admin(url: &str) -> MultiplexedConnection {
    let config =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(60)));
    redis::Client::open(url)
        .expect("a valid redis url")
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("admin connection to the bench redis")
}

/// Enqueues `n` executions of [`QUEUE`] with the payload `{"n":1}`, `in_flight` at a time.
#[allow(dead_code)]
pub async fn enqueue_many(ledger: &Ledger, n: usize, in_flight: usize) {
    let payload = serde_json::json!({"n": 1});
    stream::iter(0..n)
        .map(|_| ledger.enqueue(QUEUE, &payload, EnqueueOptions::new()))
        .buffer_unordered(in_flight)
        .try_for_each(|_| async { Ok(()) })
        .await
        .expect("enqueue succeeds");
}

/// Claims every available execution of [`QUEUE`] in batches; returns the claim tokens.
#[allow(dead_code)]
pub async fn claim_all(ledger: &Ledger, worker: &str) -> Vec<AttemptToken> {
    let mut tokens = Vec::new();
    loop {
        let batch = ledger
            .claim_many(QUEUE, worker, CLAIM_BATCH)
            .await
            .expect("claim succeeds");
        let done = batch.claims.len() < CLAIM_BATCH;
        tokens.extend(batch.claims.into_iter().map(|claim| claim.token));
        if done {
            return tokens;
        }
    }
}

/// Sends one heartbeat per token, `in_flight` at a time, and checks every reply is Ok.
#[allow(dead_code)]
pub async fn heartbeat_all(ledger: &Ledger, tokens: &[AttemptToken], in_flight: usize) {
    stream::iter(tokens)
        .map(|token| ledger.heartbeat(token, Heartbeat::new()))
        .buffer_unordered(in_flight)
        .try_for_each(|reply| async move {
            assert_eq!(
                reply,
                HeartbeatReply::Ok {
                    cancel_requested: false,
                    cancel_reason: None,
                },
                "a heartbeat of a held attempt is accepted"
            );
            Ok(())
        })
        .await
        .expect("heartbeat succeeds");
}

/// Brings `n` executions of [`QUEUE`] to `running` (enqueued, claimed, first heartbeat).
#[allow(dead_code)]
pub async fn running_executions(ledger: &Ledger, n: usize) -> Vec<AttemptToken> {
    enqueue_many(ledger, n, 64).await;
    let tokens = claim_all(ledger, "bench-setup").await;
    assert_eq!(tokens.len(), n, "every enqueued execution was claimed");
    heartbeat_all(ledger, &tokens, 64).await;
    tokens
}

/// One field of `INFO <section>`, as text.
///
/// # Panics
/// When INFO fails or lacks the field.
#[allow(dead_code)]
pub async fn info_field(conn: &mut MultiplexedConnection, section: &str, field: &str) -> String {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query_async(conn)
        .await
        .expect("INFO answers");
    let prefix = format!("{field}:");
    info.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("INFO {section} has no field {field}"))
        .trim()
        .to_owned()
}

/// `used_memory` in bytes.
#[allow(dead_code)]
pub async fn used_memory(conn: &mut MultiplexedConnection) -> i64 {
    info_field(conn, "memory", "used_memory")
        .await
        .parse()
        .expect("used_memory is an integer")
}

/// CPU time the server has used so far (user + system).
#[allow(dead_code)]
pub async fn redis_cpu(conn: &mut MultiplexedConnection) -> Duration {
    let mut total = 0.0;
    for field in ["used_cpu_user", "used_cpu_sys"] {
        let seconds: f64 = info_field(conn, "cpu", field)
            .await
            .parse()
            .expect("used_cpu_* is a number");
        total += seconds;
    }
    Duration::from_secs_f64(total)
}

/// CPU time this process (the client) has used so far, all threads.
#[allow(dead_code)]
pub fn client_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let seconds = |tv: libc::timeval| Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000);
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// CPU time the whole machine has spent busy so far (all cores, every process), from
/// `/proc/stat`; zero where that file does not exist. Busy time beyond Redis's and the
/// client's is other processes competing for the same cores.
#[allow(dead_code)]
pub fn machine_busy() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return Duration::ZERO;
    };
    // cpu  user nice system idle iowait irq softirq steal ...
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| fields.get(i))
        .sum();
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Duration::from_secs_f64(busy as f64 / ticks)
}

/// Waits (up to `patience`) until the machine has been nearly idle for half a second, so a
/// run does not share the cores with a compiler; returns how long it waited and whether it
/// found the machine quiet. Call it while the bench itself is idle.
#[allow(dead_code)]
pub async fn wait_for_quiet(patience: Duration) -> (Duration, bool) {
    const SAMPLE: Duration = Duration::from_millis(500);
    /// Busy share of one core below which the machine counts as quiet.
    const QUIET: f64 = 0.15;
    let start = std::time::Instant::now();
    loop {
        let before = machine_busy();
        tokio::time::sleep(SAMPLE).await;
        let busy = (machine_busy() - before).as_secs_f64() / SAMPLE.as_secs_f64();
        if busy < QUIET {
            return (start.elapsed(), true);
        }
        if start.elapsed() >= patience {
            return (start.elapsed(), false);
        }
    }
}

/// One line of `INFO commandstats`.
#[derive(Debug, Clone)]
#[allow(dead_code)]
pub struct CommandStat {
    pub command: String,
    pub calls: u64,
    pub usec_per_call: f64,
}

/// `INFO commandstats`, commands with the most total time first. Commands a script runs
/// are counted here too, so an EVALSHA's inner commands show their own cost.
#[allow(dead_code)]
pub async fn command_stats(conn: &mut MultiplexedConnection) -> Vec<CommandStat> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .expect("INFO commandstats answers");
    let mut stats: Vec<CommandStat> = info
        .lines()
        .filter_map(|line| {
            let (name, fields) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let field = |key: &str| -> Option<f64> {
                fields
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))?
                    .parse()
                    .ok()
            };
            Some(CommandStat {
                command: name.to_owned(),
                calls: field("calls")? as u64,
                usec_per_call: field("usec_per_call")?,
            })
        })
        .collect();
    stats.sort_by(|a, b| {
        let total = |s: &CommandStat| s.calls as f64 * s.usec_per_call;
        total(b).total_cmp(&total(a))
    });
    stats
}

/// Resets INFO commandstats and the other counters.
#[allow(dead_code)]
pub async fn reset_stats(conn: &mut MultiplexedConnection) {
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(conn)
        .await
        .expect("CONFIG RESETSTAT answers");
}

/// Empties the server between scenarios (the scripts stay cached).
#[allow(dead_code)]
pub async fn flush(conn: &mut MultiplexedConnection) {
    let _: () = redis::cmd("FLUSHALL")
        .query_async(conn)
        .await
        .expect("FLUSHALL answers");
}
