//! Worker tiers and hooks on a real 3-master Redis Cluster: every script of them touches
//! one hash tag (the workers' tag for the tier state and the outbox, a partition's for the
//! terminate verdict), so they run there as on a single server.

use crate::support;
use crate::watchdog_common;

use std::time::Duration;

use unstuck::hooks::HookConfig;
use unstuck::watchdog::{TierConfig, WatchdogConfig};
use unstuck::*;
use watchdog_common::*;

#[tokio::test]
async fn tiers_hooks_and_terminate_first_run_on_a_cluster() {
    let l = support::cluster_ledger("cluster_tiers").await;
    let dir = tempfile::tempdir().unwrap();
    let log = format!(
        "cat > /dev/null; echo $UNSTUCK_HOOK >> '{}'/calls",
        dir.path().display()
    );
    let hook = |name: &str, on: &str| HookConfig {
        command: vec!["sh".into(), "-c".into(), log.clone()],
        retries: 0,
        ..HookConfig::command(name, &[on], &[])
    };
    let config = WatchdogConfig {
        expected_worker_version: Some("2".into()),
        tiers: TierConfig {
            enabled: true,
            cooldown_cooperative: Duration::from_secs(3600),
            ..TierConfig::default()
        },
        hooks: vec![
            hook("notify", "worker.tier_1"),
            hook("stop", "execution.terminate"),
        ],
        ..config("r1")
    };
    let wd = sole_replica(&l, config).await;
    wd.feed_hooks().await.unwrap();
    let mut reg = WorkerRegistration::for_this_process("1", vec!["q".into()]);
    reg.pid = 0;
    l.register_worker(&reg).await.unwrap();
    let opts = EnqueueOptions::new().deadline(Duration::from_millis(100));
    let claim = dispatch(&l, "q", "e", opts, &reg.worker_id).await;
    beat(&l, &claim.token, Heartbeat::new()).await;
    l.worker_beat(&reg.worker_id, &[("q".into(), "e".into())])
        .await
        .unwrap();

    let report = wd.judge_workers().await.unwrap();
    assert_eq!(report.escalated, vec![(reg.worker_id.clone(), 1)]);
    pass(150).await;
    wd.round(l.partition_of("q")).await.unwrap();
    assert_eq!(
        state(&l, "q", "e").await,
        State::Running,
        "waits for the terminate"
    );
    support::wait_until(
        Duration::from_secs(10),
        "timed out after the hook",
        || async {
            wd.feed_hooks().await.unwrap();
            wd.deliver_hooks().await.unwrap();
            state(&l, "q", "e").await == State::TimedOut
        },
    )
    .await;
    assert_eq!(l.slots_in_use("q").await.unwrap(), 0);
    let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap();
    let mut calls: Vec<&str> = calls.lines().collect();
    calls.sort();
    assert_eq!(calls, ["notify", "stop"]);
    let reset = l.reset_worker(&reg.worker_id, "done").await.unwrap();
    assert_eq!(reset.previous_tier, 1);
}
