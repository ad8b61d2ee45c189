//! Invariant 10 for worker tiers: when most workers look gone at once (a registry blip, a
//! partition cutting the fleet off) no stale worker is escalated; one worker of many going
//! quiet is.

use crate::support;
use crate::watchdog_common;

use std::time::Duration;

use unstuck::watchdog::{TierConfig, WatchdogConfig};
use unstuck::*;
use watchdog_common::*;

#[tokio::test]
async fn most_workers_going_quiet_at_once_escalates_none_one_of_many_is_escalated() {
    let l = support::ledger("tiers_blip").await;
    let config = WatchdogConfig {
        worker_timeout: Duration::from_millis(300),
        systemic_share: 0.5,
        tiers: TierConfig {
            enabled: true,
            ..TierConfig::default()
        },
        ..config("r1")
    };
    let wd = sole_replica(&l, config).await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        let mut reg = WorkerRegistration::for_this_process("v1", vec!["q".into()]);
        reg.pid = 0;
        l.register_worker(&reg).await.unwrap();
        ids.push(reg.worker_id);
    }

    // Three of four fall silent together: held back.
    pass(350).await;
    l.worker_beat(&ids[0], &[]).await.unwrap();
    let report = wd.judge_workers().await.unwrap();
    assert!(report.judged && report.escalated.is_empty(), "{report:?}");

    // They come back; then one alone goes quiet: escalated.
    for id in &ids[..3] {
        l.worker_beat(id, &[]).await.unwrap();
    }
    pass(350).await;
    for id in &ids[..3] {
        l.worker_beat(id, &[]).await.unwrap();
    }
    let report = wd.judge_workers().await.unwrap();
    assert_eq!(report.escalated, vec![(ids[3].clone(), 1)], "{report:?}");
}
