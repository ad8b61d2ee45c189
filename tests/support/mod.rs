//! Shared integration-test support: one throwaway Redis (and cluster) per test binary, a unique
//! key namespace per test, and condition polling.
//!
//! Each test file does `mod support;`. Not every binary uses every helper, hence the
//! `#[allow(dead_code)]`s.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

#[allow(unused_imports)]
pub use unstuck::testkit::invariants;
use unstuck::testkit::{RedisCluster, RedisProcess, RedisProcessOptions};

/// The test binary's Redis server, started on first use. Statics are never dropped; the server
/// dies with the process (see `unstuck::testkit`).
#[allow(dead_code)]
pub fn redis() -> &'static RedisProcess {
    static REDIS: OnceLock<RedisProcess> = OnceLock::new();
    REDIS.get_or_init(|| {
        RedisProcess::start(RedisProcessOptions::default())
            .unwrap_or_else(|error| panic!("could not start a test redis-server: {error}"))
    })
}

/// The test binary's 3-master Redis Cluster, started on first use.
#[allow(dead_code)]
pub fn cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        RedisCluster::start(RedisProcessOptions::default())
            .unwrap_or_else(|error| panic!("could not start a test Redis Cluster: {error}"))
    })
}

/// A redis-server stopped with SIGSTOP (frozen: connections stay open, nothing answers),
/// sent SIGCONT when dropped so a failing assertion never leaves it frozen.
#[allow(dead_code)]
pub struct Frozen(nix::unistd::Pid);

#[allow(dead_code)]
impl Frozen {
    pub fn freeze(redis: &RedisProcess) -> Self {
        let pid = nix::unistd::Pid::from_raw(redis.pid() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
        Self(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGCONT);
    }
}

/// A namespace no other test in this binary uses (see [`unstuck::testkit::namespace`]).
#[allow(dead_code)]
pub fn namespace(test_name: &str) -> String {
    unstuck::testkit::namespace(test_name)
}

/// Polls `condition` every 10 ms until it returns true; panics naming `what` after `timeout`.
#[allow(dead_code)]
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// --- ledger helpers ---

/// A ledger on the shared test server with a namespace of its own.
#[allow(dead_code)]
pub async fn ledger(test_name: &str) -> unstuck::Ledger {
    ledger_with(test_name, |_| {}).await
}

/// A ledger on the shared test server, with the config adjusted by `tweak`.
#[allow(dead_code)]
pub async fn ledger_with(
    test_name: &str,
    tweak: impl FnOnce(&mut unstuck::LedgerConfig),
) -> unstuck::Ledger {
    let mut config = unstuck::LedgerConfig::new(redis().url());
    config.namespace = namespace(test_name);
    tweak(&mut config);
    unstuck::Ledger::connect(config)
        .await
        .expect("ledger connects to the test redis")
}

/// A ledger on the shared test cluster, with a namespace of its own.
#[allow(dead_code)]
pub async fn cluster_ledger(test_name: &str) -> unstuck::Ledger {
    let config = unstuck::LedgerConfig {
        cluster_urls: cluster().urls(),
        namespace: namespace(test_name),
        ..unstuck::LedgerConfig::default()
    };
    unstuck::Ledger::connect(config)
        .await
        .expect("ledger connects to the test cluster")
}

/// EVAL + EVALSHA calls `conn`'s server has served (since start or `CONFIG RESETSTAT`): a
/// count of the whole server, so a test that reads it has a server of its own.
#[allow(dead_code)]
pub async fn script_calls(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}
