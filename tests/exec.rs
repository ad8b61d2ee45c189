//! `unstuck exec` against a real redis-server: exit codes, signals, silence, progress
//! and checkpoint lines, cancellation of a group that ignores SIGTERM, shutdown, and a
//! restart after the supervisor was killed.

mod cli_common;
mod exec_common;
mod support;

use exec_common::*;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::json;
use unstuck::{State, StopReason};

#[tokio::test]
async fn exit_zero_completes_with_the_last_stdout_line_as_its_result() {
    let l = support::ledger("exec_ok").await;
    let s = Scratch::new();
    enqueue(&l, "json", 1).await;
    enqueue(&l, "text", 1).await;
    let script = r#"read -r payload
echo "working on $UNSTUCK_EXECUTION_ID"
if [ "$UNSTUCK_EXECUTION_ID" = text ]; then echo "done, no JSON"; exit 0; fi
printf '{"payload": %s, "queue": "%s", "attempt": %s, "redis": "%s", "checkpoint": "%s"}\n' \
  "$payload" "$UNSTUCK_QUEUE" "$UNSTUCK_ATTEMPT" "${UNSTUCK_LEDGER__REDIS_URL:-}" \
  "${UNSTUCK_CHECKPOINT:-none}""#;
    let mut exec = start(&l, &s, &["--concurrency", "2"], script);

    let with_json = wait_state(&l, "json", State::Succeeded).await;
    // The payload came on stdin; the supervisor's Redis settings did not reach the command.
    let expected = json!({
        "payload": {"id": "json"}, "queue": "q", "attempt": 1, "redis": "", "checkpoint": "none"
    });
    assert_eq!(result(&with_json), expected);
    let text = wait_state(&l, "text", State::Succeeded).await;
    assert_eq!(
        text.result, None,
        "a last line that is not JSON is no result"
    );
    assert_eq!(text.progress.as_deref(), Some("output: 2 lines"));

    assert_eq!(exec.stop().await, Some(0));
    let stderr = exec.stderr();
    assert!(stderr.contains("[text] working on text\n"), "{stderr}");
    assert!(stderr.contains("[json] unstuck: succeeded"), "{stderr}");
    assert!(l.workers().await.unwrap().is_empty(), "deregistered");
    assert_eq!(
        files_under(&s.state_dir()),
        Vec::<std::path::PathBuf>::new()
    );
}

#[tokio::test]
async fn a_nonzero_exit_fails_retryably_with_the_code_and_the_stderr_tail() {
    let l = support::ledger("exec_code").await;
    let s = Scratch::new();
    enqueue(&l, "e", 2).await;
    let script =
        r#"echo "step one ok" >&2; echo "disk full on attempt $UNSTUCK_ATTEMPT" >&2; exit 3"#;
    let mut exec = start(&l, &s, &[], script);

    let e = wait_state(&l, "e", State::Failed).await;
    assert_eq!(e.attempt, 2, "retryable: the second attempt ran");
    let error = e.last_error.unwrap_or_default();
    assert!(error.starts_with("exited with code 3; stderr: "), "{error}");
    assert!(
        error.contains("step one ok\ndisk full on attempt 2"),
        "{error}"
    );
    let retries = details(&l, "e", "retry_scheduled").await;
    assert_eq!(retries.len(), 1, "{retries:?}");
    assert!(retries[0].contains("disk full on attempt 1"), "{retries:?}");
    assert_eq!(exec.stop().await, Some(0));
}

#[tokio::test]
async fn a_command_killed_by_a_signal_fails_naming_the_signal() {
    let l = support::ledger("exec_signal").await;
    let s = Scratch::new();
    enqueue(&l, "e", 1).await;
    let mut exec = start(&l, &s, &[], "echo about to die >&2; kill -USR1 $$");

    let e = wait_state(&l, "e", State::Failed).await;
    let error = e.last_error.unwrap_or_default();
    assert_eq!(error, "killed by signal SIGUSR1; stderr: about to die");
    assert_eq!(e.stop.map(|s| s.reason), Some(StopReason::Failed));
    assert_eq!(exec.stop().await, Some(0));
}

#[tokio::test]
async fn a_silent_command_is_killed_after_the_no_output_timeout() {
    let l = support::ledger("exec_silent").await;
    let s = Scratch::new();
    enqueue(&l, "e", 1).await;
    let script = "echo $$ >> pids; sleep 60 & echo $! >> pids; echo 'started, now silent'; wait";
    let args = ["--no-output-timeout", "300ms", "--stop-grace", "5s"];
    let mut exec = start(&l, &s, &args, script);

    let e = wait_state(&l, "e", State::Failed).await;
    let error = e.last_error.unwrap_or_default();
    assert!(
        error.starts_with("no output for 300ms (no-output timeout)"),
        "{error}"
    );
    assert_eq!(e.progress.as_deref(), Some("output: 1 line"));
    // The outcome is recorded only once the whole group is gone.
    let pids = s.pids("pids");
    assert_eq!(pids.len(), 2, "{pids:?}");
    assert!(!pids.iter().any(|&p| running(p)), "{pids:?} still run");
    assert_eq!(exec.stop().await, Some(0));
}

#[tokio::test]
async fn progress_and_checkpoint_lines_set_them_and_the_retry_resumes_there() {
    let l = support::ledger("exec_checkpoint").await;
    let s = Scratch::new();
    enqueue(&l, "e", 2).await;
    let script = r#"if [ "$UNSTUCK_ATTEMPT" = 1 ]; then
  echo "::progress step 2/5" >&2
  echo '::checkpoint {"step": 2}' >&2
  while [ ! -e go ]; do sleep 0.02; done
  echo '::checkpoint {"step": 3}' >&2
  exit 1
fi
printf '{"env": %s, "file": %s}\n' "$UNSTUCK_CHECKPOINT" "$(cat "$UNSTUCK_CHECKPOINT_FILE")""#;
    let mut exec = start(&l, &s, &[], script);

    support::wait_until(WAIT, "progress and checkpoint are recorded", || async {
        let e = l.get("q", "e").await.unwrap();
        e.state == State::Running
            && e.progress.as_deref() == Some("step 2/5")
            && e.checkpoint == Some(json!({"step": 2}))
    })
    .await;
    std::fs::write(s.path("go"), "").unwrap();

    // The checkpoint printed just before the failing exit reached the next attempt, in
    // the environment and in the file.
    let e = wait_state(&l, "e", State::Succeeded).await;
    assert_eq!(e.attempt, 2);
    assert_eq!(result(&e), json!({"env": {"step": 3}, "file": {"step": 3}}));
    assert_eq!(exec.stop().await, Some(0));
    assert_eq!(
        files_under(&s.state_dir()),
        Vec::<std::path::PathBuf>::new()
    );
}

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
        stderr.contains("[c] unstuck: cancellation requested: SIGTERM to its process group"),
        "{stderr}"
    );
    assert!(
        stderr.contains("[c] unstuck: still running 300ms after SIGTERM: SIGKILL"),
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
async fn bad_input_is_one_line_and_starts_nothing() {
    let cases: [(&[&str], &str); 5] = [
        (&["exec", "--", "true"], "--queue is missing"),
        (
            &["exec", "--queue", "q"],
            "no command to run: give it after --",
        ),
        (
            &[
                "exec",
                "--queue",
                "q",
                "--no-output-timeout",
                "soon",
                "--",
                "true",
            ],
            "--no-output-timeout soon: expected a duration",
        ),
        (
            &["exec", "--queue", "q", "--concurrency", "0", "--", "true"],
            "--concurrency 0: expected a number from 1 to 1000",
        ),
        (
            &["exec", "--queue", "q", "--", "no-such-program-anywhere"],
            "cannot run no-such-program-anywhere: not found in PATH",
        ),
    ];
    for (args, expected) in cases {
        let mut cmd = cli_common::bare();
        cmd.args(args);
        let run = cli_common::output(cmd).await;
        let line = run.one_line_failure();
        assert!(line.contains(expected), "{args:?}: {line}");
    }

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://127.0.0.1:{}/", closed.local_addr().unwrap().port());
    drop(closed);
    let s = Scratch::new();
    let mut cmd = cli_common::bare();
    cmd.env("UNSTUCK_LEDGER__REDIS_URL", &url)
        .env("UNSTUCK_LEDGER__CONNECTION_TIMEOUT", "1s")
        .args(["exec", "--queue", "q", "--state-dir"])
        .arg(s.state_dir())
        .args(["--", "true"]);
    let run = cli_common::output(cmd).await;
    let line = run.one_line_failure();
    assert!(
        line.starts_with(&format!("unstuck: cannot reach Redis at {url}")),
        "{line}"
    );
}
