//! The remediation side of `unstuck workers`: the tier column, the subcommands `events`,
//! `drain` and `reset`, and one-sentence refusals for a worker that is not registered and
//! for a worker named without a subcommand.

use crate::cli_common;
use crate::support;

use cli_common::{run, run_json};
use unstuck::watchdog::{TierConfig, Watchdog, WatchdogConfig};
use unstuck::*;

#[tokio::test]
async fn workers_shows_tiers_and_events_drains_and_resets() {
    let l = support::ledger("cli_workers_tiers").await;
    let wd = Watchdog::new(
        l.clone(),
        WatchdogConfig {
            replica_id: Some("r1".into()),
            expected_worker_version: Some("2.0".into()),
            tiers: TierConfig {
                enabled: true,
                ..TierConfig::default()
            },
            ..WatchdogConfig::default()
        },
    )
    .unwrap();
    let reg = WorkerRegistration::for_this_process("1.0", vec!["wq".into()]);
    l.register_worker(&reg).await.unwrap();
    let w = reg.worker_id.as_str();
    let report = wd.judge_workers().await.unwrap();
    assert_eq!(report.escalated, vec![(w.to_owned(), 1)]);

    let table = run(&l, &["workers"]).await;
    let row: Vec<&str> = table
        .stdout
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(row.last(), Some(&"1"), "the tier column: {table:?}");
    let json = run_json(&l, &["workers"]).await;
    assert_eq!(json["workers"][0]["remediation"]["verdict"], "outdated");

    let drain = run(&l, &["workers", "drain", w]).await;
    assert_eq!(drain.code, Some(0), "{drain:?}");
    assert_eq!(
        l.worker_beat(w, &[]).await.unwrap().request,
        Some(WorkerRequest::Drain)
    );
    let reset = run(&l, &["workers", "reset", w]).await;
    assert_eq!(reset.code, Some(0), "{reset:?}");
    assert!(
        reset.stdout.contains("it was at tier 1, circuit closed"),
        "{reset:?}"
    );

    let events = run(&l, &["workers", "events"]).await;
    let reasons: Vec<&str> = events
        .stdout
        .lines()
        .map(|l| l.split("  ").nth(3).unwrap_or(""))
        .collect();
    assert_eq!(
        reasons,
        ["tier_1", "asked_to_drain", "circuit_reset"],
        "{events:?}"
    );
    let json = run_json(&l, &["workers", "events"]).await;
    assert_eq!(json["events"][0]["to_tier"], 1);
    assert_eq!(json["events"][2]["actor"], "operator");

    let refused = run(&l, &["workers", "reset", "nobody"]).await;
    assert!(
        refused
            .one_line_failure()
            .contains("nobody is not registered"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn workers_subcommands_take_json_on_either_side_and_a_bare_worker_is_refused() {
    let l = support::ledger("cli_workers_subcommands").await;
    let reg = WorkerRegistration::for_this_process("1.0", vec!["wq".into()]);
    l.register_worker(&reg).await.unwrap();
    let w = reg.worker_id.as_str();

    // `--json` before the subcommand reaches it as well as after it.
    let drained = run(&l, &["workers", "drain", w]).await;
    assert_eq!(drained.code, Some(0), "{drained:?}");
    let before = run(&l, &["workers", "--json", "events"]).await.json();
    let after = run_json(&l, &["workers", "events"]).await;
    assert_eq!(before, after);
    assert_eq!(after["events"][0]["worker_id"], w, "{after}");
    assert_eq!(after["events"][0]["reason"], "asked_to_drain", "{after}");

    // A worker without what to do with it: one sentence naming the subcommands, and the
    // worker is left as it was (no reset event, still asked to drain).
    let bare = run(&l, &["workers", w]).await;
    let line = bare.one_line_failure();
    assert!(
        line.contains(&format!("unstuck workers reset {w}")),
        "{line}"
    );
    assert!(line.contains("unstuck workers drain"), "{line}");
    let events = run_json(&l, &["workers", "events"]).await;
    assert_eq!(
        events["events"].as_array().map(Vec::len),
        Some(1),
        "{events}"
    );

    // The old flags are gone: clap refuses them (usage error, exit 2).
    let old = run(&l, &["workers", "--reset", w]).await;
    assert_eq!(old.code, Some(2), "{old:?}");
}
