//! `unstuck demo` end to end: a short fault-injection run against the test redis-server
//! must come out with every row correct, and bad options are refused up front.

mod support;

use std::time::Duration;

use unstuck::demo::{FaultDemoOptions, FaultKind, fault_demo};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_fault_demo_is_all_correct() {
    let mut opts = FaultDemoOptions::new(support::redis().url());
    opts.duration = Duration::from_secs(8);
    opts.executions = 36;
    let report = fault_demo(opts).await.expect("the demo runs");
    let table = report.to_string();

    assert_eq!(report.rows.len(), FaultKind::ALL.len(), "{table}");
    assert_eq!(
        report.rows.iter().map(|r| r.injected).sum::<usize>(),
        36,
        "{table}"
    );
    for row in &report.rows {
        assert!(row.injected >= 1, "{} injected none\n{table}", row.kind);
        assert_eq!(row.detected, row.injected, "{} detected\n{table}", row.kind);
        assert_eq!(
            row.remediated, row.injected,
            "{} remediated\n{table}",
            row.kind
        );
        assert_eq!(
            row.false_positives, 0,
            "{} false positives\n{table}",
            row.kind
        );
        if !row.kind.must_survive() {
            let lag = row.lag_p50_ms.expect("a detected fault has a lag");
            assert!(lag >= 0, "{} lag {lag}ms is negative\n{table}", row.kind);
        }
    }
    // The worker-gone kind is there to show the registry path: the dead process's jobs are
    // judged leniently, so reconciliation, not a job-level timer, must catch them.
    let gone = report
        .rows
        .iter()
        .find(|r| r.kind == FaultKind::WorkerGone)
        .expect("worker_gone row");
    assert_eq!(
        gone.detected_by.get("worker_lost"),
        Some(&gone.injected),
        "{table}"
    );
    assert_eq!(report.false_positives, 0, "{table}");
    assert_eq!(report.leaked_slots, 0, "{table}");
    assert!(report.unfinished.is_empty(), "{table}");
    assert_eq!(report.index_violations, 0, "{table}");

    let kill = report.replica_kill.as_ref().expect("a replica was killed");
    assert!(!kill.busy_partitions.is_empty(), "{table}");
    assert!(kill.takeover_after_secs.is_some(), "{table}");
    let killed: Vec<_> = report
        .replicas
        .iter()
        .filter(|r| r.killed_at_secs.is_some())
        .collect();
    assert_eq!(killed.len(), 1, "{table}");
    assert_eq!(killed[0].replica_id, kill.replica_id);
    let death = report.worker_death.as_ref().expect("a worker process died");
    assert_eq!(death.held, gone.injected, "{table}");
    assert!(report.all_correct(), "{table}");

    let json = serde_json::to_value(&report).expect("the report serializes");
    assert_eq!(json["leaked_slots"], 0);
    assert_eq!(json["false_positives"], 0);
    assert_eq!(
        json["rows"].as_array().map(Vec::len),
        Some(FaultKind::ALL.len())
    );
}

#[tokio::test]
async fn fewer_executions_than_fault_kinds_is_refused() {
    let mut opts = FaultDemoOptions::new(support::redis().url());
    opts.executions = FaultKind::ALL.len() - 1;
    match fault_demo(opts).await {
        Err(unstuck::Error::InvalidConfig { key, .. }) => assert_eq!(key, "executions"),
        other => panic!("expected an executions error, got {other:?}"),
    }
}

#[test]
fn cli_refuses_too_few_executions_before_starting_redis() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_unstuck"))
        .args([
            "demo",
            "--executions",
            "3",
            "--redis",
            "redis://127.0.0.1:1/",
        ])
        .output()
        .expect("the binary runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("executions"), "stderr: {stderr}");
    assert!(
        stderr.contains("one execution per fault kind"),
        "stderr: {stderr}"
    );
}
