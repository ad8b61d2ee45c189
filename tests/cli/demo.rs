//! `unstuck demo` end to end, as a user runs it: a short fault-injection run against the
//! test redis-server must come out with every row correct (read from its `--json`
//! report, the "waiting is not stuck" rows included), and bad options are refused up
//! front.

use crate::support;

use std::process::Command;

use serde_json::Value;

/// The nine fault kinds, as the report names them.
const KINDS: [&str; 9] = [
    "healthy",
    "crash_mid_run",
    "hang_no_heartbeat",
    "zombie_no_progress",
    "never_started",
    "deadline_blown",
    "slow_but_alive",
    "ignores_cancel",
    "worker_gone",
];

fn unstuck(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_unstuck"))
        .args(args)
        .output()
        .expect("the binary runs")
}

#[test]
fn short_fault_demo_is_all_correct() {
    let url = support::redis().url();
    let out = unstuck(&[
        "demo",
        "--duration",
        "8s",
        "--executions",
        "36",
        "--json",
        "--redis",
        url,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{:?}; the report (which row is off):\n{}\nstderr:\n{stderr}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("stdout is the JSON report");
    let table = serde_json::to_string_pretty(&report).unwrap();
    assert!(
        stderr.contains("enqueued"),
        "progress goes to stderr: {stderr}"
    );

    let rows = report["rows"].as_array().expect("rows");
    let kinds: Vec<&str> = rows.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, KINDS, "{table}");
    let injected: u64 = rows.iter().map(|r| r["injected"].as_u64().unwrap()).sum();
    assert_eq!(injected, 36, "{table}");
    for row in rows {
        let kind = row["kind"].as_str().unwrap();
        let n = row["injected"].as_u64().unwrap();
        assert!(n >= 1, "{kind} injected none\n{table}");
        assert_eq!(
            row["detected"].as_u64(),
            Some(n),
            "{kind} detected\n{table}"
        );
        assert_eq!(
            row["remediated"].as_u64(),
            Some(n),
            "{kind} remediated\n{table}"
        );
        assert_eq!(row["false_positives"], 0, "{kind}\n{table}");
        if kind != "healthy" && kind != "slow_but_alive" {
            let lag = row["lag_p50_ms"]
                .as_i64()
                .expect("a detected fault has a lag");
            assert!(lag >= 0, "{kind} lag {lag}ms is negative\n{table}");
        }
    }
    // The worker-gone kind is there to show the registry path: the dead process's jobs are
    // judged leniently, so reconciliation, not a job-level timer, must catch them.
    let gone = rows.iter().find(|r| r["kind"] == "worker_gone").unwrap();
    assert_eq!(
        gone["detected_by"]["worker_lost"], gone["injected"],
        "{table}"
    );
    for zero in ["false_positives", "leaked_slots", "index_violations"] {
        assert_eq!(report[zero], 0, "{zero}\n{table}");
    }
    assert_eq!(
        report["unfinished"].as_array().map(Vec::len),
        Some(0),
        "{table}"
    );

    let kill = &report["replica_kill"];
    assert!(
        !kill["busy_partitions"].as_array().unwrap().is_empty(),
        "{table}"
    );
    assert!(kill["takeover_after_secs"].is_number(), "{table}");
    let killed: Vec<&Value> = report["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["killed_at_secs"].is_number())
        .collect();
    assert_eq!(killed.len(), 1, "{table}");
    assert_eq!(killed[0]["replica_id"], kill["replica_id"]);
    assert_eq!(report["worker_death"]["held"], gone["injected"], "{table}");
    let supervision = report["supervision"].as_array().expect("supervision rows");
    let cases: Vec<&str> = supervision
        .iter()
        .map(|r| r["case"].as_str().unwrap())
        .collect();
    assert_eq!(
        cases,
        [
            "exec: command goes silent",
            "worker on an outdated version",
            "wedged worker"
        ],
        "{table}"
    );
    assert!(supervision.iter().all(|r| r["correct"] == true), "{table}");
    assert_eq!(supervision[1]["tiers"], serde_json::json!([1]), "{table}");
    assert_eq!(
        supervision[2]["tiers"],
        serde_json::json!([1, 2, 3, 3]),
        "{table}"
    );
    assert_eq!(
        supervision[2]["hooks"],
        serde_json::json!({"page": 1, "restart": 2, "terminate": 1}),
        "{table}"
    );
    let waiting = report["waiting"].as_array().expect("waiting rows");
    let rate_limited = waiting
        .iter()
        .find(|r| r["case"] == "rate-limited agent snoozes 3x")
        .unwrap_or_else(|| panic!("no rate-limited row: {table}"));
    assert_eq!(rate_limited["correct"], true, "{table}");
    let looping = waiting
        .iter()
        .find(|r| r["case"] == "a looping agent caught by its fingerprint")
        .unwrap_or_else(|| panic!("no looping row: {table}"));
    assert_eq!(looping["correct"], true, "{table}");
    assert!(
        looping["observed"]
            .as_str()
            .is_some_and(|o| o.contains("dead (looping: same fingerprint")),
        "{table}"
    );
    let paused = waiting
        .iter()
        .find(|r| r["case"] == "a paused queue")
        .unwrap_or_else(|| panic!("a paused-queue row: {table}"));
    assert_eq!(paused["correct"], true, "{table}");
    assert!(
        paused["observed"]
            .as_str()
            .is_some_and(|o| o.starts_with("0 of 6 claimed") && o.contains("6 succeeded")),
        "{table}"
    );
    assert!(
        waiting
            .iter()
            .any(|r| r["case"] == "an agent waiting for approval" && r["correct"] == true),
        "{table}"
    );
    let lease = waiting
        .iter()
        .find(|r| r["case"] == "a crashed agent whose tool lease passes to its retry")
        .unwrap_or_else(|| panic!("no resource lease row: {table}"));
    assert_eq!(lease["correct"], true, "{table}");
    let runaway = waiting
        .iter()
        .find(|r| r["case"] == "a runaway agent stopped by its budget")
        .unwrap_or_else(|| panic!("a runaway-agent row: {table}"));
    assert_eq!(runaway["correct"], true, "{table}");
    assert!(
        runaway["observed"]
            .as_str()
            .is_some_and(|o| o.starts_with("cancelled, budget_exceeded")),
        "{table}"
    );
    assert_eq!(report["all_correct"], true, "{table}");
    assert_eq!(
        report["problems"].as_array().map(Vec::len),
        Some(0),
        "{table}"
    );
}

#[test]
fn fewer_executions_than_fault_kinds_is_refused_before_starting_redis() {
    let out = unstuck(&[
        "demo",
        "--executions",
        "3",
        "--redis",
        "redis://127.0.0.1:1/",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("executions"), "stderr: {stderr}");
    assert!(
        stderr.contains("one execution per fault kind"),
        "stderr: {stderr}"
    );
}
