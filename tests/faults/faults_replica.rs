//! The fault suite, the watchdog's side: a replica process frozen (SIGSTOP) past its lease
//! while another takes its partitions over, then thawed (SIGCONT) under load. Its writes
//! are fenced by the lease epoch: none made under the lease it lost is accepted.

use crate::faults_common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use faults_common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = Pid::from_raw(self.0.id() as i32);
        let _ = kill(pid, Signal::SIGCONT);
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `unstuck watchdog` as its own process, on the case's Redis and namespace.
fn watchdog_process(url: &str, namespace: &str, id: &str) -> Daemon {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_unstuck"));
    for (k, _) in std::env::vars() {
        if k.starts_with("UNSTUCK_") || k.starts_with("RUST_") {
            cmd.env_remove(k);
        }
    }
    cmd.arg("watchdog")
        .env("UNSTUCK_LEDGER__REDIS_URL", url)
        .env("UNSTUCK_LEDGER__NAMESPACE", namespace)
        .env("UNSTUCK_WATCHDOG__REPLICA_ID", id)
        .env("UNSTUCK_WATCHDOG__LEASE_TTL", "1s")
        .env("UNSTUCK_WATCHDOG__MAX_POLL_INTERVAL", "50ms")
        .env("UNSTUCK_WATCHDOG__SYSTEMIC_GRACE", "2s")
        .env("UNSTUCK_WATCHDOG__SYSTEMIC_ABSENCE", "1500ms")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Daemon(cmd.spawn().expect("unstuck watchdog starts"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_replica_gets_no_write_accepted_under_the_lease_it_lost() {
    let redis = redis(&[]);
    let ledger = ledger(&redis, "fault_sigstop").await;
    let namespace = ledger.config().namespace.clone();
    let frozen = watchdog_process(redis.url(), &namespace, "frozen-1");
    let steady = Replicas::start(&ledger, &["steady-1"]);
    let load = Load::start(&ledger, 2, 150, 4);
    // Both replicas hold their share.
    let mut held_before: HashMap<u16, u64> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let status = unstuck::watchdog::status(&ledger).await.unwrap();
        held_before = status
            .partitions
            .iter()
            .filter(|p| p.owner.as_deref() == Some("frozen-1"))
            .filter_map(|p| p.epoch.map(|e| (p.partition, e)))
            .collect();
        if !held_before.is_empty() && status.unwatched().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !held_before.is_empty(),
        "the replica process holds partitions"
    );
    let pid = Pid::from_raw(frozen.0.id() as i32);
    let stopped_at = Utc::now();
    kill(pid, Signal::SIGSTOP).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await; // three lease_ttl
    let during = unstuck::watchdog::status(&ledger).await.unwrap();
    assert!(
        during
            .partitions
            .iter()
            .all(|p| p.owner.as_deref() == Some("steady-1")),
        "the other replica took every partition over: {:?}",
        during.partitions
    );
    kill(pid, Signal::SIGCONT).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, ids) = load.finish(&ledger, Duration::from_secs(30)).await;
    steady.stop().await;
    drop(frozen);

    // Every event the thawed replica wrote after it was frozen carries a lease it acquired
    // again afterwards, never the one it lost.
    let mut stale_writes = 0;
    let mut later_writes = 0;
    for p in 0..ledger.config().partitions {
        for e in ledger.read_events(p, None, 1_000_000).await.unwrap() {
            if e.replica.as_deref() != Some("frozen-1") || e.at < stopped_at {
                continue;
            }
            later_writes += 1;
            if held_before
                .get(&p)
                .is_some_and(|old| e.epoch.unwrap_or(0) <= *old)
            {
                stale_writes += 1;
            }
        }
    }
    let a = audit(&ledger, &redis, &ids).await;
    report(
        "watchdog replica SIGSTOP 3 s (lease 1 s), then SIGCONT",
        "2 producers ~150/s, 4 workers, 2 replicas (one a process)",
        &a,
        &format!(
            "{stale_writes} writes accepted under the lost lease; {later_writes} writes after it re-leased"
        ),
    );
    assert_eq!(stale_writes, 0);
    assert_clean(&a);
}
