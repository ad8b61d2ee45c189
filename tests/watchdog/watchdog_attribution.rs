//! Every watchdog action names the replica that took it and the lease epoch it held, so
//! an operator (and this test) can tell who did what and that nothing was written under a
//! lapsed lease; and the `unstuck watchdog` daemon logs to stderr, keeping stdout for
//! output a script may read.

use crate::support;
use crate::watchdog_common;

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use unstuck::watchdog::{Watchdog, WatchdogConfig};
use unstuck::*;
use watchdog_common::*;

fn stale_soon() -> EnqueueOptions {
    EnqueueOptions::new()
        .heartbeat_timeout(Duration::from_millis(100))
        .stuck_threshold(Duration::from_millis(100))
        .backoff_base(Duration::from_secs(60))
}

#[tokio::test]
async fn watchdog_events_name_the_replica_and_the_epoch_it_acted_under() {
    let l = support::ledger("attr_epochs").await;
    let q = "attr";
    let p = l.partition_of(q);
    let a = sole_replica(&l, running_config("wd-a")).await;
    let epoch_a: u64 = a.held_partitions()[&p].parse().unwrap();
    start(&l, q, "first", stale_soon()).await;
    start(&l, q, "second", stale_soon()).await;

    pass(150).await;
    assert_eq!(a.round(p).await.unwrap().stuck, 2);

    // A is paused past its lease; B takes the partition under a new epoch and finishes
    // the work A began.
    pass(700).await;
    let b = Watchdog::new(reconnect(&l).await, running_config("wd-b")).unwrap();
    b.rebalance().await.unwrap();
    let epoch_b: u64 = b.held_partitions()[&p].parse().unwrap();
    assert!(epoch_b > epoch_a, "{epoch_b} after {epoch_a}");
    let taken_over = events(&l, p).await.len();
    assert_eq!(b.round(p).await.unwrap().retried, 2);
    assert!(matches!(a.round(p).await, Err(Error::LeaseLost { .. })));

    let evs = events(&l, p).await;
    for (i, e) in evs.iter().enumerate() {
        let by = (e.replica.as_deref(), e.epoch);
        if CLIENT_REASONS.contains(&e.reason.as_str()) {
            assert_eq!(by, (None, None), "client event {e:?}");
        } else if i < taken_over {
            assert_eq!(by, (Some("wd-a"), Some(epoch_a)), "{e:?}");
            assert_eq!(e.to, Some(State::Stuck), "{e:?}");
        } else {
            assert_eq!(by, (Some("wd-b"), Some(epoch_b)), "{e:?}");
            assert_eq!(e.to, Some(State::Queued), "{e:?}");
        }
    }
    assert_eq!(
        evs.len(),
        taken_over + 2,
        "nothing written by A after it lost"
    );
}

#[tokio::test]
async fn systemic_holds_and_orphaning_name_the_replica_too() {
    let l = support::ledger("attr_hold").await;
    let config = WatchdogConfig {
        systemic_absence: Some(Duration::from_millis(100)),
        systemic_grace: Some(Duration::from_millis(300)),
        worker_timeout: Duration::from_millis(100),
        ..config("wd-h")
    };
    let wd = sole_replica(&l, config).await;
    let q = "attr_hold";
    let p = l.partition_of(q);
    let epoch: u64 = wd.held_partitions()[&p].parse().unwrap();
    let reg = WorkerRegistration::for_this_process("v1", vec![q.to_owned()]);
    l.register_worker(&reg).await.unwrap();
    let claim = dispatch(&l, q, "orphan", EnqueueOptions::new(), &reg.worker_id).await;
    beat(&l, &claim.token, Heartbeat::new()).await;
    start(&l, q, "stale", stale_soon()).await;
    wd.round(p).await.unwrap();

    pass(200).await; // unwatched past the absence, with a timer due: a hold
    assert!(wd.round(p).await.unwrap().hold_started);
    support::wait_until(Duration::from_secs(5), "the hold is over", || async {
        wd.round(p).await.unwrap().holding.is_zero()
    })
    .await;
    let report = wd.reconcile(p).await.unwrap().expect("reconciled");
    assert_eq!(report.orphaned, 1, "{report:?}");

    let evs = events(&l, p).await;
    let acted: Vec<&Event> = evs
        .iter()
        .filter(|e| !CLIENT_REASONS.contains(&e.reason.as_str()))
        .collect();
    let reasons: Vec<&str> = acted.iter().map(|e| e.reason.as_str()).collect();
    assert!(reasons.contains(&"systemic_hold"), "{reasons:?}");
    assert!(reasons.contains(&"worker_lost"), "{reasons:?}");
    for e in acted {
        assert_eq!(
            (e.replica.as_deref(), e.epoch),
            (Some("wd-h"), Some(epoch)),
            "{e:?}"
        );
    }
}

#[tokio::test]
async fn the_daemon_logs_to_stderr_and_leaves_stdout_alone() {
    let url = support::redis().url();
    let namespace = support::namespace("attr_daemon");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_unstuck"))
        .arg("watchdog")
        .env("UNSTUCK_LEDGER__REDIS_URL", url)
        .env("UNSTUCK_LEDGER__NAMESPACE", &namespace)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("unstuck watchdog starts");
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let started = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            seen.push(line.clone());
            if line.contains("partition leases changed") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(started, Ok(true), "log lines on stderr: {seen:?}");

    let pid = child.id().expect("running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let rest = tokio::time::timeout(Duration::from_secs(20), async {
        let mut rest = Vec::new();
        while let Some(line) = stderr.next_line().await.unwrap() {
            rest.push(line);
        }
        rest
    })
    .await
    .expect("stderr closes when the daemon stops");
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        rest.iter().any(|l| l.contains("watchdog replica stopped")),
        "stderr: {rest:?}"
    );
}
