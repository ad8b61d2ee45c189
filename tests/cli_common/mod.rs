//! Helpers shared by the CLI test binaries: the `unstuck` binary run against a test
//! ledger's namespace, its output read back, executions driven into a given state.
//!
//! Each `tests/cli_*.rs` does `mod support; mod cli_common;`. Not every binary uses every
//! helper.
#![allow(dead_code)]

use std::process::Stdio;

use serde_json::{Value, json};
use tokio::process::Command;
use unstuck::{EnqueueOptions, Heartbeat, Ledger};

/// What one run of the binary left behind.
#[derive(Debug)]
pub struct Run {
    /// The exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Stdout parsed as one JSON document, after checking the run succeeded.
    pub fn json(&self) -> Value {
        assert_eq!(self.code, Some(0), "the command succeeds: {self:?}");
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is JSON ({e}): {:?}", self.stdout))
    }

    /// The run failed with exit code 1 and one line on stderr; returns that line.
    pub fn one_line_failure(&self) -> &str {
        assert_eq!(self.code, Some(1), "the command fails: {self:?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line on stderr: {:?}", self.stderr);
        assert!(lines[0].starts_with("unstuck: "), "{:?}", lines[0]);
        assert!(!self.stderr.contains("panicked"), "{:?}", self.stderr);
        lines[0]
    }
}

/// The binary, with no settings from this process's environment and no backtraces.
pub fn bare() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_unstuck"));
    for (key, _) in std::env::vars() {
        if key.starts_with("UNSTUCK_") || key.starts_with("RUST_") {
            cmd.env_remove(key);
        }
    }
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    cmd
}

/// The binary pointed at `ledger`'s Redis and namespace through the environment.
pub fn unstuck(ledger: &Ledger, args: &[&str]) -> Command {
    let mut cmd = bare();
    cmd.env("UNSTUCK_LEDGER__REDIS_URL", super::support::redis().url())
        .env("UNSTUCK_LEDGER__NAMESPACE", &ledger.config().namespace)
        .args(args);
    cmd
}

/// Runs `cmd` to its end.
pub async fn output(mut cmd: Command) -> Run {
    let out = cmd.output().await.expect("the unstuck binary runs");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `unstuck ARGS` against `ledger`'s namespace.
pub async fn run(ledger: &Ledger, args: &[&str]) -> Run {
    output(unstuck(ledger, args)).await
}

/// Runs `unstuck ARGS --json` against `ledger`'s namespace; its stdout, parsed.
pub async fn run_json(ledger: &Ledger, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    run(ledger, &args).await.json()
}

/// Enqueues `id` in `queue` (one attempt) and drives it to `outcome` as `worker-<queue>`:
/// `failed` (after a checkpoint `{"step": 3}`), `succeeded`, or `running`.
pub async fn finish(l: &Ledger, queue: &str, id: &str, outcome: &str) {
    l.enqueue(
        queue,
        &json!({ "id": id }),
        EnqueueOptions::new().id(id).max_attempts(1),
    )
    .await
    .expect("enqueue");
    let claim = l
        .claim(queue, &format!("worker-{queue}"))
        .await
        .expect("claim")
        .expect("the execution just enqueued is claimable");
    assert_eq!(claim.id(), id);
    match outcome {
        "failed" => {
            let beat = Heartbeat::new()
                .progress("half way")
                .checkpoint(json!({ "step": 3 }));
            l.heartbeat(&claim.token, beat).await.expect("heartbeat");
            l.fail(&claim.token, "boom", false).await.expect("fail");
        }
        "succeeded" => {
            l.complete(&claim.token, None).await.expect("complete");
        }
        "running" => {
            l.heartbeat(&claim.token, Heartbeat::new())
                .await
                .expect("heartbeat");
        }
        other => panic!("no outcome {other}"),
    }
}

/// `queue/id` of every item of an `executions --json` page.
pub fn page_ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items is an array")
        .iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["queue"].as_str().unwrap(),
                e["id"].as_str().unwrap()
            )
        })
        .collect()
}

/// `(name, depth, available, active, capacity)` of each queue of a `queues --json` reply.
pub fn queue_counts(reply: &Value) -> Vec<(String, u64, u64, u64, u64)> {
    let queues = reply["queues"].as_array().expect("queues is an array");
    queues
        .iter()
        .map(|q| {
            let n = |f: &str| q[f].as_u64().unwrap_or_else(|| panic!("{f} in {q}"));
            let name = q["name"].as_str().unwrap().to_owned();
            (name, n("depth"), n("available"), n("active"), n("capacity"))
        })
        .collect()
}

/// `events --json` lines, parsed.
pub fn event_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// `(execution_id, to, reason)` of each event, `-` for none.
pub fn moves(events: &[Value]) -> Vec<(String, String, String)> {
    events
        .iter()
        .map(|e| {
            let s = |f: &str| e[f].as_str().unwrap_or("-").to_owned();
            (s("execution_id"), s("to"), s("reason"))
        })
        .collect()
}
