//! Server-side figures: per-command cost (INFO commandstats) and CPU of Redis and of this
//! process.

use std::collections::HashMap;
use std::time::Duration;

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;

/// A plain connection for INFO, MEMORY and FLUSHALL (which takes seconds on a big dataset).
pub(crate) async fn admin(url: &str) -> MultiplexedConnection {
    let config = AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(120)));
    redis::Client::open(url)
        .expect("redis url")
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("admin connection")
}

pub(crate) async fn flush(admin: &mut MultiplexedConnection) {
    let _: () = redis::cmd("FLUSHALL")
        .query_async(admin)
        .await
        .expect("FLUSHALL");
}

pub(crate) async fn info_field(
    admin: &mut MultiplexedConnection,
    section: &str,
    field: &str,
) -> String {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query_async(admin)
        .await
        .expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Cumulative per-command (calls, µs) and Redis CPU seconds; subtract two with `since`.
pub(crate) struct Stats {
    commands: HashMap<String, (u64, u64)>,
    pub(crate) cpu: f64,
}

pub(crate) async fn stats(admin: &mut MultiplexedConnection) -> Stats {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(admin)
        .await
        .expect("INFO commandstats");
    let mut commands = HashMap::new();
    for line in info.lines() {
        let Some((name, rest)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        let field = |key: &str| -> u64 {
            rest.split(',')
                .find_map(|kv| kv.strip_prefix(key))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        commands.insert(name.to_owned(), (field("calls="), field("usec=")));
    }
    let mut cpu = 0.0;
    for field in ["used_cpu_sys", "used_cpu_user"] {
        cpu += info_field(admin, "cpu", field)
            .await
            .parse::<f64>()
            .unwrap_or(0.0);
    }
    Stats { commands, cpu }
}

impl Stats {
    pub(crate) fn since(&self, before: &Stats) -> Stats {
        let commands = self
            .commands
            .iter()
            .map(|(name, (calls, usec))| {
                let (c0, u0) = before.commands.get(name).copied().unwrap_or((0, 0));
                (name.clone(), (calls - c0, usec - u0))
            })
            .filter(|(_, (calls, _))| *calls > 0)
            .collect();
        Stats {
            commands,
            cpu: self.cpu - before.cpu,
        }
    }

    pub(crate) fn calls(&self, name: &str) -> u64 {
        self.commands.get(name).map_or(0, |c| c.0)
    }

    pub(crate) fn per_call(&self, name: &str) -> f64 {
        self.commands
            .get(name)
            .map_or(0.0, |(calls, usec)| *usec as f64 / (*calls).max(1) as f64)
    }

    /// The commands that took the most server time (those run inside scripts included).
    pub(crate) fn top(&self, n: usize) -> String {
        let mut all: Vec<_> = self.commands.iter().collect();
        all.sort_by_key(|(_, (_, usec))| std::cmp::Reverse(*usec));
        all.iter()
            .take(n)
            .map(|(name, (calls, usec))| {
                format!("{name} {calls}×{:.1}µs", *usec as f64 / *calls as f64)
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// CPU seconds (user + system) this process used so far.
pub(crate) fn client_cpu() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

pub(crate) fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The median of some figures (the upper one of the middle two for an even count).
pub(crate) fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut all: Vec<f64> = values.collect();
    all.sort_by(f64::total_cmp);
    all[all.len() / 2]
}

/// The 1-, 5- and 15-minute load averages: how busy the machine was besides this bench.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
