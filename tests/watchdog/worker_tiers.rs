//! Worker remediation tiers against a real Redis and real processes: one tier per
//! judgement after each tier's cooldown, the circuit opening, an operator's reset, the tier
//! state surviving a replica's death, stale reclaims never counted, recovery.

use crate::support;
use crate::watchdog_common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use unstuck::watchdog::{TierConfig, Watchdog, WatchdogConfig};
use unstuck::*;
use watchdog_common::*;

const WAIT: Duration = Duration::from_secs(10);
const COOL: Duration = Duration::from_millis(150);

fn tier_config() -> TierConfig {
    TierConfig {
        enabled: true,
        interval: Duration::from_millis(100),
        cooldown_cooperative: COOL,
        cooldown_terminate: COOL,
        cooldown_kill: COOL,
        signal_wait: Duration::from_millis(300),
        breaker_failures: 2,
        ..TierConfig::default()
    }
}

fn tiers_replica(replica: &str) -> WatchdogConfig {
    WatchdogConfig {
        worker_timeout: Duration::from_millis(400),
        expected_worker_version: Some("v2".into()),
        tiers: tier_config(),
        ..config(replica)
    }
}

/// A process that passes for a local `unstuck exec` supervisor (its program is named
/// `unstuck-…` and it has an `exec` argument) and ignores SIGTERM when `stubborn`.
fn fake_supervisor(dir: &std::path::Path, stubborn: bool) -> Child {
    let program = dir.join("unstuck-fake");
    if !program.exists() {
        std::os::unix::fs::symlink("/bin/sh", &program).expect("symlink sh");
    }
    let trap = if stubborn { "trap '' TERM; " } else { "" };
    Command::new(&program)
        .arg("-c")
        .arg(format!("{trap}while :; do sleep 0.05; done"))
        .arg("exec")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn the fake supervisor")
}

async fn register(l: &Ledger, version: &str, pid: u32) -> String {
    let mut reg = WorkerRegistration::for_this_process(version, vec!["q".into()]);
    reg.pid = pid;
    l.register_worker(&reg).await.unwrap();
    reg.worker_id
}

async fn remediation(l: &Ledger, worker: &str) -> WorkerRemediation {
    l.worker(worker)
        .await
        .unwrap()
        .expect("registered")
        .remediation
}

/// `(from, to, reason)` of the worker's events.
async fn tier_moves(l: &Ledger, worker: &str) -> Vec<(u8, u8, String)> {
    l.worker_events(None, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.worker_id == worker)
        .map(|e| (e.from_tier, e.to_tier, e.reason))
        .collect()
}

fn moves(list: &[(u8, u8, &str)]) -> Vec<(u8, u8, String)> {
    list.iter()
        .map(|(a, b, r)| (*a, *b, r.to_string()))
        .collect()
}

/// Judges once, with a registry beat first so the worker is never stale.
async fn beat_and_judge(l: &Ledger, wd: &Watchdog, worker: &str) -> watchdog::TierReport {
    l.worker_beat(worker, &[]).await.unwrap();
    wd.judge_workers().await.unwrap()
}

async fn action_is(l: &Ledger, worker: &str, outcome: &str) {
    support::wait_until(WAIT, &format!("the action is {outcome}"), || async {
        remediation(l, worker).await.action.as_deref() == Some(outcome)
    })
    .await;
}

#[tokio::test]
async fn an_outdated_worker_climbs_one_tier_per_judgement_after_each_cooldown() {
    let l = support::ledger("tiers_ladder").await;
    let wd = sole_replica(&l, tiers_replica("r1")).await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = fake_supervisor(dir.path(), true);
    let w = register(&l, "v1", child.id()).await;

    // Tier 1: the heartbeat reply asks it to restart.
    let report = beat_and_judge(&l, &wd, &w).await;
    assert!(report.judged, "{report:?}");
    assert_eq!(report.escalated, vec![(w.clone(), 1)]);
    assert_eq!(
        l.worker_beat(&w, &[]).await.unwrap().request,
        Some(WorkerRequest::Restart)
    );
    let r = remediation(&l, &w).await;
    assert_eq!(
        (r.tier, r.verdict.as_deref()),
        (1, Some("outdated")),
        "{r:?}"
    );

    // Within the cooldown nothing moves, however often it is judged.
    for _ in 0..3 {
        assert!(beat_and_judge(&l, &wd, &w).await.escalated.is_empty());
    }
    assert_eq!(remediation(&l, &w).await.tier, 1);

    // Tier 2: SIGTERM, which this one ignores: the action fails.
    pass(COOL.as_millis() as u64 + 20).await;
    let report = beat_and_judge(&l, &wd, &w).await;
    assert_eq!(report.actions, vec![(w.clone(), 2)], "{report:?}");
    action_is(&l, &w, "failed").await;
    assert!(child.try_wait().unwrap().is_none(), "still running");

    // Tier 3, after tier 2's cooldown: SIGKILL works.
    pass(COOL.as_millis() as u64 + 20).await;
    let report = beat_and_judge(&l, &wd, &w).await;
    assert_eq!(report.actions, vec![(w.clone(), 3)], "{report:?}");
    action_is(&l, &w, "ok").await;
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );

    // The process is gone: judged again (stale, once its beats stop) nothing more is done.
    pass(500).await;
    let report = wd.judge_workers().await.unwrap();
    assert!(
        report.escalated.is_empty() && report.opened.is_empty(),
        "{report:?}"
    );
    assert_eq!(
        tier_moves(&l, &w).await,
        moves(&[
            (0, 1, "tier_1"),
            (1, 2, "tier_2"),
            (2, 2, "action_failed"),
            (2, 3, "tier_3"),
            (3, 3, "action_succeeded"),
        ])
    );
    let events = l.worker_events(None, 100).await.unwrap();
    assert!(
        events[0].detail.contains("expected \"v2\""),
        "{:?}",
        events[0]
    );
    assert!(
        events[0].actor.starts_with("r1@"),
        "fenced: {:?}",
        events[0]
    );
}

#[tokio::test]
async fn a_worker_nothing_can_terminate_opens_its_circuit_until_reset() {
    let l = support::ledger("tiers_no_means").await;
    let wd = sole_replica(&l, tiers_replica("r1")).await;
    // Registered over HTTP, say: no pid, and no hook is configured.
    let w = register(&l, "v1", 0).await;

    assert_eq!(
        beat_and_judge(&l, &wd, &w).await.escalated,
        vec![(w.clone(), 1)]
    );
    pass(COOL.as_millis() as u64 + 20).await;
    let report = beat_and_judge(&l, &wd, &w).await;
    assert_eq!(report.opened, vec![w.clone()], "{report:?}");
    let r = remediation(&l, &w).await;
    assert!(r.circuit_open, "{r:?}");
    assert!(
        r.circuit_reason
            .unwrap()
            .contains("no terminate or kill hook")
    );

    // Open: unstuck no longer acts, however long it waits.
    pass(COOL.as_millis() as u64 + 20).await;
    let report = beat_and_judge(&l, &wd, &w).await;
    assert_eq!(
        report,
        watchdog::TierReport {
            judged: true,
            ..Default::default()
        }
    );

    // An operator resets it: judged afresh from tier 0.
    let reset = l.reset_worker(&w, "fixed by hand").await.unwrap();
    assert_eq!((reset.previous_tier, reset.circuit_was_open), (1, true));
    let r = remediation(&l, &w).await;
    assert_eq!(
        (r.tier, r.circuit_open, r.request),
        (0, false, None),
        "{r:?}"
    );
    assert_eq!(
        beat_and_judge(&l, &wd, &w).await.escalated,
        vec![(w.clone(), 1)]
    );
    assert_eq!(
        tier_moves(&l, &w).await,
        moves(&[
            (0, 1, "tier_1"),
            (1, 1, "circuit_opened"),
            (1, 0, "circuit_reset"),
            (0, 1, "tier_1"),
        ])
    );
    assert!(matches!(
        l.reset_worker("nobody", "x").await,
        Err(Error::UnknownWorker { .. })
    ));
}

#[tokio::test]
async fn the_tier_state_survives_a_replica_that_dies() {
    let l = support::ledger("tiers_replica_dies").await;
    let short = |id: &str| WatchdogConfig {
        lease_ttl: Duration::from_millis(300),
        ..tiers_replica(id)
    };
    let a = sole_replica(&l, short("ra")).await;
    let w = register(&l, "v1", 0).await;
    assert_eq!(
        beat_and_judge(&l, &a, &w).await.escalated,
        vec![(w.clone(), 1)]
    );

    // Replica a dies without handing anything back; b waits for its lease to lapse.
    drop(a);
    let b = Watchdog::new(l.clone(), short("rb")).unwrap();
    let report = beat_and_judge(&l, &b, &w).await;
    assert!(
        !report.judged,
        "a still holds the workers lease: {report:?}"
    );
    pass(350).await;
    let report = beat_and_judge(&l, &b, &w).await;
    assert!(report.judged);
    // b goes on from tier 1 (its cooldown long passed), not from the start.
    assert_eq!(report.opened, vec![w.clone()], "{report:?}");
    let events = l.worker_events(None, 100).await.unwrap();
    let actors: Vec<&str> = events.iter().map(|e| e.actor.as_str()).collect();
    assert_eq!(actors.len(), 2, "{events:?}");
    assert!(
        actors[0].starts_with("ra@") && actors[1].starts_with("rb@"),
        "{actors:?}"
    );
    assert_ne!(actors[0][3..], actors[1][3..], "a new epoch: {actors:?}");
}

#[tokio::test]
async fn reclaiming_a_stale_workers_executions_never_counts_toward_the_breaker() {
    let l = support::ledger("tiers_stale_reclaims").await;
    let mut config = tiers_replica("r1");
    config.expected_worker_version = None;
    config.tiers.breaker_failures = 1;
    let wd = sole_replica(&l, config).await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = fake_supervisor(dir.path(), false);
    let w = register(&l, "v1", child.id()).await;
    let long = Duration::from_secs(60);
    let opts = EnqueueOptions::new()
        .heartbeat_timeout(long)
        .stuck_threshold(long)
        .backoff_base(Duration::ZERO);
    for id in ["a", "b"] {
        let claim = dispatch(&l, "q", id, opts.clone(), &w).await;
        beat(&l, &claim.token, Heartbeat::new()).await;
    }
    l.worker_beat(&w, &[("q".into(), "a".into()), ("q".into(), "b".into())])
        .await
        .unwrap();

    // It goes silent: reconciliation reclaims its executions, the tiers judge it stale.
    pass(450).await;
    let p = l.partition_of("q");
    let reclaimed = wd.reconcile(p).await.unwrap().expect("judged");
    assert_eq!(reclaimed.retried, 2, "{reclaimed:?}");
    let report = wd.judge_workers().await.unwrap();
    assert_eq!(report.escalated, vec![(w.clone(), 1)]);
    assert_eq!(wd.reconcile(p).await.unwrap().expect("judged").orphaned, 0);
    pass(COOL.as_millis() as u64 + 20).await;
    let report = wd.judge_workers().await.unwrap();
    assert_eq!(report.actions, vec![(w.clone(), 2)]);
    action_is(&l, &w, "ok").await;
    assert!(child.wait().unwrap().signal_is_term());

    let r = remediation(&l, &w).await;
    assert_eq!((r.tier3_failures, r.circuit_open), (0, false), "{r:?}");
    for id in ["a", "b"] {
        let e = l.get("q", id).await.unwrap();
        assert_eq!(
            (e.state, e.attempt),
            (State::Queued, 1),
            "retried once: {e:?}"
        );
    }
}

trait TermStatus {
    fn signal_is_term(&self) -> bool;
}

impl TermStatus for std::process::ExitStatus {
    fn signal_is_term(&self) -> bool {
        std::os::unix::process::ExitStatusExt::signal(self) == Some(15)
    }
}

#[tokio::test]
async fn a_wedged_worker_is_escalated_and_recovers_when_its_work_moves_again() {
    let l = support::ledger("tiers_wedged").await;
    let mut config = tiers_replica("r1");
    config.expected_worker_version = None;
    let wd = sole_replica(&l, config).await;
    let w = register(&l, "v1", 0).await;
    let opts = EnqueueOptions::new()
        .heartbeat_timeout(Duration::from_millis(100))
        .stuck_threshold(Duration::from_secs(60));
    let claim = dispatch(&l, "q", "e", opts, &w).await;
    beat(&l, &claim.token, Heartbeat::new()).await;
    let running = [("q".to_owned(), "e".to_owned())];

    // Its registry beats go on; the execution's own heartbeats stop: stuck.
    assert!(beat_and_judge(&l, &wd, &w).await.escalated.is_empty());
    pass(150).await;
    wd.round(l.partition_of("q")).await.unwrap();
    assert_eq!(state(&l, "q", "e").await, State::Stuck);
    l.worker_beat(&w, &running).await.unwrap();
    let report = wd.judge_workers().await.unwrap();
    assert_eq!(report.escalated, vec![(w.clone(), 1)], "{report:?}");
    assert_eq!(remediation(&l, &w).await.verdict.as_deref(), Some("wedged"));

    // The execution beats again (a false alarm): the worker is healthy, back to tier 0.
    l.heartbeat(&claim.token, Heartbeat::new()).await.unwrap();
    l.worker_beat(&w, &running).await.unwrap();
    let report = wd.judge_workers().await.unwrap();
    assert_eq!(report.recovered, vec![w.clone()], "{report:?}");
    let r = remediation(&l, &w).await;
    assert_eq!((r.tier, r.request), (0, None));
    assert_eq!(l.worker_beat(&w, &running).await.unwrap().request, None);
}

#[tokio::test]
async fn a_stale_local_worker_whose_process_exited_is_left_alone() {
    let l = support::ledger("tiers_exited").await;
    let mut config = tiers_replica("r1");
    config.expected_worker_version = None;
    let wd = sole_replica(&l, config).await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = fake_supervisor(dir.path(), false);
    let w = register(&l, "v1", child.id()).await;
    child.kill().unwrap();
    child.wait().unwrap();
    pass(450).await;
    let report = wd.judge_workers().await.unwrap();
    assert!(report.judged && report.escalated.is_empty(), "{report:?}");
    assert_eq!(remediation(&l, &w).await.tier, 0);
}
