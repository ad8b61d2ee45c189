//! `unstuck exec` stopping commands: a cancel whose group ignores SIGTERM, an attempt
//! lost while its command runs (taken away by hand, and by the watchdog's no-progress
//! rule), SIGTERM to the supervisor, a restart after the supervisor was killed, and
//! processes a command detached (`setsid`, double fork) stopped and reaped with it.

use crate::exec_common;
use crate::support;

use std::time::Duration;

use exec_common::*;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use unstuck::watchdog::{Watchdog, WatchdogConfig};
use unstuck::{AttemptToken, EnqueueOptions, FailOutcome, State, StopReason};

#[tokio::test]
async fn cancel_kills_the_whole_group_even_members_that_ignore_sigterm() {
    let l = support::ledger("exec_cancel").await;
    let s = Scratch::new();
    enqueue(&l, "c", 2).await;
    let script = r#"trap '' TERM
sleep 60 & echo $! >> pids
sh -c 'trap "" TERM; sleep 60; echo never' & echo $! >> pids
echo $$ >> pids
echo ready
wait"#;
    let mut exec = start(&l, &s, &["--stop-grace", "300ms"], script);

    let pids = s.wait_for_pids("pids", 3).await;
    let leader = pids[2];
    support::wait_until(WAIT, "the group's members run", || async {
        group_members(leader).len() >= 4
    })
    .await;
    let members = group_members(leader);
    // The state file names the command's process group.
    let records = s
        .state_files(&l)
        .into_iter()
        .find(|p| p.extension() == Some("json".as_ref()));
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(records.unwrap()).unwrap()).unwrap();
    assert_eq!(state["children"][0]["pgid"], json!(leader), "{state}");
    wait_state(&l, "c", State::Running).await;

    l.cancel("q", "c", "not needed").await.unwrap();
    let c = wait_state(&l, "c", State::Cancelled).await;
    assert_eq!(c.stop.map(|s| s.reason), Some(StopReason::Cancelled));
    assert_eq!(c.attempt, 1);
    // Acknowledged only after SIGKILL took every member, grandchildren included.
    assert_eq!(
        group_members(leader),
        Vec::<u32>::new(),
        "before: {members:?}"
    );
    assert!(!members.iter().any(|&p| running(p)), "{members:?}");
    let stderr = exec.stderr();
    assert!(
        stderr.contains("[q/c#1] unstuck: cancellation requested: SIGTERM to its processes"),
        "{stderr}"
    );
    assert!(
        stderr.contains("[q/c#1] unstuck: still running 300ms after SIGTERM: SIGKILL"),
        "{stderr}"
    );
    assert_eq!(exec.stop().await, Some(0));
}

#[tokio::test]
async fn sigterm_stops_the_commands_fails_them_retryably_and_deregisters() {
    let l = support::ledger("exec_shutdown").await;
    let s = Scratch::new();
    enqueue(&l, "e", 2).await;
    let script = "echo $$ >> pids; sleep 60 & echo $! >> pids; wait";
    let mut exec = start(&l, &s, &[], script);
    let pids = s.wait_for_pids("pids", 2).await;
    wait_state(&l, "e", State::Running).await;
    exec.registered(&l).await;

    assert_eq!(exec.stop().await, Some(0));
    let e = l.get("q", "e").await.unwrap();
    assert_eq!((e.state, e.attempt), (State::Queued, 1), "back for a retry");
    let error = e.last_error.unwrap_or_default();
    assert!(error.starts_with("supervisor stopped"), "{error}");
    assert!(!pids.iter().any(|&p| running(p)), "{pids:?} still run");
    assert!(l.workers().await.unwrap().is_empty(), "deregistered");
    assert_eq!(
        files_under(&s.state_dir()),
        Vec::<std::path::PathBuf>::new()
    );
}

#[tokio::test]
async fn a_restart_stops_a_detached_command_reports_a_lost_one_and_retries_each_once() {
    let l = support::ledger("exec_restart").await;
    let s = Scratch::new();
    enqueue(&l, "live", 3).await;
    enqueue(&l, "dead", 3).await;
    let script = r#"if [ "$UNSTUCK_ATTEMPT" -gt 1 ]; then echo "{\"attempt\": $UNSTUCK_ATTEMPT}"; exit 0; fi
echo $$ >> "$UNSTUCK_EXECUTION_ID.pids"
sleep 60 & echo $! >> "$UNSTUCK_EXECUTION_ID.pids"
wait"#;
    let args = ["--concurrency", "2", "--stop-grace", "300ms"];
    let mut first = start(&l, &s, &args, script);
    let live = s.wait_for_pids("live.pids", 2).await;
    let dead = s.wait_for_pids("dead.pids", 2).await;
    wait_state(&l, "live", State::Running).await;
    wait_state(&l, "dead", State::Running).await;

    // The supervisor dies without a word; one of its commands dies while it is down.
    first.signal(Signal::SIGKILL);
    assert_eq!(first.exited().await, None);
    assert!(live.iter().all(|&p| running(p)), "{live:?} outlived it");
    killpg(Pid::from_raw(dead[0] as i32), Signal::SIGKILL).unwrap();
    wait_gone(&dead).await;
    let left_behind: Vec<(std::path::PathBuf, Vec<u8>)> = s
        .state_files(&l)
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    assert_eq!(
        left_behind.len(),
        2,
        "its lock and records: {left_behind:?}"
    );

    let mut second = start(&l, &s, &args, script);
    let live_e = wait_state(&l, "live", State::Succeeded).await;
    let dead_e = wait_state(&l, "dead", State::Succeeded).await;
    assert!(!live.iter().any(|&p| running(p)), "{live:?} still run");
    assert_eq!((live_e.attempt, dead_e.attempt), (2, 2));
    assert_eq!(result(&live_e), json!({"attempt": 2}));
    let live_retries = details(&l, "live", "retry_scheduled").await;
    let dead_retries = details(&l, "dead", "retry_scheduled").await;
    assert_eq!(live_retries.len(), 1, "{live_retries:?}");
    assert_eq!(dead_retries.len(), 1, "{dead_retries:?}");
    assert!(
        live_retries[0].starts_with("process_detached: "),
        "{live_retries:?}"
    );
    assert!(
        dead_retries[0].starts_with("process_lost: "),
        "{dead_retries:?}"
    );
    assert_eq!(second.stop().await, Some(0));
    assert!(
        l.workers().await.unwrap().is_empty(),
        "the dead one deregistered too"
    );

    // The same records found again (say, a copy restored): the tokens are stale now, so
    // nothing moves and nothing is said.
    for (path, bytes) in &left_behind {
        std::fs::write(path, bytes).unwrap();
    }
    let mut third = start(&l, &s, &args, script);
    third.registered(&l).await;
    assert_eq!(third.stop().await, Some(0));
    assert_eq!(details(&l, "live", "retry_scheduled").await.len(), 1);
    assert_eq!(details(&l, "dead", "retry_scheduled").await.len(), 1);
    assert_eq!(l.get("q", "live").await.unwrap().state, State::Succeeded);
    assert!(!third.stderr().contains("process_"), "{}", third.stderr());
    assert_eq!(
        files_under(&s.state_dir()),
        Vec::<std::path::PathBuf>::new()
    );
}

#[tokio::test]
async fn an_attempt_taken_away_kills_its_processes_and_records_nothing() {
    let l = support::ledger("exec_lost").await;
    let s = Scratch::new();
    enqueue(&l, "e", 2).await;
    let marker = format!("unstuck-test-{}", uuid::Uuid::new_v4().simple());
    let script = format!(
        r#"if [ "$UNSTUCK_ATTEMPT" = 2 ]; then echo '"second"'; exit 0; fi
{}trap '' TERM
echo $$ >> pids; sleep 60 & echo $! >> pids; wait"#,
        daemonise(&marker, false)
    );
    let mut exec = start(&l, &s, &["--stop-grace", "200ms"], &script);
    let pids = s.wait_for_pids("pids", 2).await;
    let daemons = daemons_of(&s, "e").await;
    wait_state(&l, "e", State::Running).await;

    // Someone else moves the execution on under the attempt's token (as a watchdog
    // would): the next heartbeat is refused.
    let records = s
        .state_files(&l)
        .into_iter()
        .find(|p| p.extension() == Some("json".as_ref()));
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(records.unwrap()).unwrap()).unwrap();
    let token: AttemptToken = state["children"][0]["token"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let moved = l
        .fail(&token, "taken over by the test", true)
        .await
        .unwrap();
    assert!(
        matches!(moved, FailOutcome::RetryScheduled { .. }),
        "{moved:?}"
    );

    let e = wait_state(&l, "e", State::Succeeded).await;
    assert_eq!((e.attempt, result(&e)), (2, json!("second")));
    assert!(!pids.iter().any(|&p| running(p)), "{pids:?} still run");
    // What it detached went with it.
    assert!(
        !daemons.iter().any(|&p| running(p)),
        "{daemons:?} still run"
    );
    assert_eq!(with_marker(&marker), Vec::<u32>::new());
    // The lost attempt recorded nothing of its own.
    let retries = details(&l, "e", "retry_scheduled").await;
    assert_eq!(retries, vec!["taken over by the test".to_owned()]);
    let stderr = exec.stderr();
    assert!(
        stderr.contains("[q/e#1] unstuck: attempt lost (the execution moved on"),
        "{stderr}"
    );
    assert_eq!(exec.stop().await, Some(0));
}

#[tokio::test]
async fn the_watchdog_finds_a_command_whose_output_stopped_and_the_retry_runs() {
    let l = support::ledger("exec_no_progress").await;
    let s = Scratch::new();
    let options = EnqueueOptions::new()
        .id("e")
        .heartbeat_timeout(Duration::from_millis(300))
        .no_progress_timeout(Duration::from_millis(400))
        .stuck_threshold(Duration::ZERO)
        .backoff_base(Duration::from_millis(50))
        .max_attempts(2);
    l.enqueue("q", &json!({}), options).await.unwrap();
    // Alive (the supervisor heartbeats) but silent after one line: no progress.
    let script = r#"if [ "$UNSTUCK_ATTEMPT" = 2 ]; then echo '{"ok": true}'; exit 0; fi
echo $$ >> pids; echo "one line, then nothing"; sleep 60 & echo $! >> pids; wait"#;
    let mut exec = start(&l, &s, &["--stop-grace", "200ms"], script);
    let pids = s.wait_for_pids("pids", 2).await;

    let watchdog_config = WatchdogConfig {
        lease_ttl: Duration::from_millis(500),
        max_poll_interval: Duration::from_millis(20),
        systemic_share: 1.0,
        ..WatchdogConfig::default()
    };
    let watchdog = Watchdog::new(l.clone(), watchdog_config).unwrap();
    let stop_watchdog = CancellationToken::new();
    let replica = {
        let stop = stop_watchdog.clone();
        tokio::spawn(async move { watchdog.run(stop).await })
    };

    let e = wait_state(&l, "e", State::Succeeded).await;
    stop_watchdog.cancel();
    replica.await.unwrap().unwrap();
    assert_eq!((e.attempt, result(&e)), (2, json!({"ok": true})));
    let stuck: Vec<String> = l
        .execution_events("q", "e")
        .await
        .unwrap()
        .into_iter()
        .filter(|ev| ev.to == Some(State::Stuck))
        .map(|ev| ev.reason)
        .collect();
    assert_eq!(stuck, vec![StopReason::NoProgress.to_string()]);
    assert!(!pids.iter().any(|&p| running(p)), "{pids:?} still run");
    assert_eq!(exec.stop().await, Some(0));
}

/// The daemons an execution's command detached, once both run.
async fn daemons_of(s: &Scratch, id: &str) -> Vec<u32> {
    let pids = s.wait_for_pids(&format!("{id}.daemons"), 2).await;
    support::wait_until(WAIT, &format!("{id}'s daemons run"), || async {
        pids.iter().all(|&p| running(p))
    })
    .await;
    pids
}

#[tokio::test]
async fn what_a_command_detaches_is_adopted_stopped_and_reaped_with_its_attempt() {
    let l = support::ledger("exec_reap").await;
    let s = Scratch::new();
    let marker = format!("unstuck-test-{}", uuid::Uuid::new_v4().simple());
    assert_eq!(with_marker(&marker), Vec::<u32>::new(), "none before");
    for id in ["done", "silent", "cancel"] {
        enqueue(&l, id, 1).await;
    }
    // Each command detaches a daemon (setsid, double fork), then: "done" exits 0 once
    // told to, "silent" goes quiet until the no-output timeout, "cancel" ticks on until
    // it is cancelled.
    let script = format!(
        r#"{}
case "$UNSTUCK_EXECUTION_ID" in
  done) while [ ! -e go ]; do echo waiting; sleep 0.05; done; echo '"finished"' ;;
  silent) sleep 300 ;;
  cancel) while :; do echo tick; sleep 0.05; done ;;
esac"#,
        daemonise(&marker, false)
    );
    let args = [
        "--concurrency",
        "3",
        "--no-output-timeout",
        "2s",
        "--stop-grace",
        "300ms",
    ];
    let mut exec = start(&l, &s, &args, &script);
    let done = daemons_of(&s, "done").await;
    let cancel = daemons_of(&s, "cancel").await;
    // Their parents exited: the daemons were reparented to the supervisor, not to init.
    support::wait_until(WAIT, "the daemons are adopted", || async {
        parent(done[0]) == Some(exec.pid) && parent(cancel[0]) == Some(exec.pid)
    })
    .await;
    assert!(with_marker(&marker).len() >= 2, "the marked daemons run");

    std::fs::write(s.path("go"), "").unwrap();
    let e = wait_state(&l, "done", State::Succeeded).await;
    assert_eq!(result(&e), json!("finished"));
    // Recorded only once its daemon was stopped; another attempt's daemon is untouched.
    assert!(!done.iter().any(|&p| running(p)), "{done:?} still run");
    assert!(
        cancel.iter().all(|&p| running(p)),
        "{cancel:?} were stopped too"
    );

    let silent = s.wait_for_pids("silent.daemons", 2).await;
    let e = wait_state(&l, "silent", State::Failed).await;
    let error = e.last_error.unwrap_or_default();
    assert!(error.starts_with("no output for 2s"), "{error}");
    assert_eq!(silent.len(), 2, "{silent:?}");
    assert!(!silent.iter().any(|&p| running(p)), "{silent:?} still run");

    l.cancel("q", "cancel", "not needed").await.unwrap();
    wait_state(&l, "cancel", State::Cancelled).await;
    assert!(!cancel.iter().any(|&p| running(p)), "{cancel:?} still run");

    // Gone, not left as zombies: the supervisor reaped what it adopted.
    let all: Vec<u32> = [done, silent, cancel].concat();
    support::wait_until(WAIT, "the daemons are reaped", || async {
        !all.iter().any(|&p| exists(p)) && zombies_of(exec.pid).is_empty()
    })
    .await;
    assert_eq!(with_marker(&marker), Vec::<u32>::new(), "none after");
    let stderr = exec.stderr();
    assert!(
        stderr.contains("[q/done#1] unstuck: the command exited; what it left running was stopped"),
        "{stderr}"
    );
    assert_eq!(exec.stop().await, Some(0));
}

#[tokio::test]
async fn a_stopping_supervisor_stops_even_a_daemon_that_cleared_its_environment() {
    let l = support::ledger("exec_sweep").await;
    let s = Scratch::new();
    let marker = format!("unstuck-test-{}", uuid::Uuid::new_v4().simple());
    enqueue(&l, "e", 2).await;
    let script = format!("{}echo ready; sleep 300", daemonise(&marker, true));
    let mut exec = start(&l, &s, &[], &script);
    let daemons = s.wait_for_pids("daemons", 2).await;
    support::wait_until(WAIT, "the daemon is adopted", || async {
        parent(daemons[0]) == Some(exec.pid) && daemons.iter().all(|&p| running(p))
    })
    .await;

    // Nothing marks the daemon as the attempt's: the attempt ends without it, and the
    // supervisor's last sweep stops it.
    assert_eq!(exec.stop().await, Some(0));
    assert!(
        !daemons.iter().any(|&p| running(p)),
        "{daemons:?} still run"
    );
    assert_eq!(with_marker(&marker), Vec::<u32>::new());
    let stderr = exec.stderr();
    assert!(
        stderr.contains("unstuck: 2 processes the commands left running were stopped"),
        "{stderr}"
    );
    let e = l.get("q", "e").await.unwrap();
    assert_eq!((e.state, e.attempt), (State::Queued, 1), "back for a retry");
}
