//! `unstuck exec` against a real redis-server: how a command's exit, signal, silence,
//! progress and checkpoint lines become the attempt's outcome, and bad input. Stopping
//! commands (cancel, lost attempts, shutdown, restart) is in `exec_stop.rs`.

use crate::cli_common;
use crate::exec_common;
use crate::support;

use exec_common::*;
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
    let (stdout, stderr) = (exec.stdout(), exec.stderr());
    assert!(stdout.lines().any(|l| l == "working on text"), "{stdout}");
    assert!(stderr.contains("[q/json#1] unstuck: succeeded"), "{stderr}");
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
async fn output_passes_through_stream_for_stream_with_or_without_a_prefix() {
    let l = support::ledger("exec_passthrough").await;
    let s = Scratch::new();
    // The last line has no newline, and the command exits right after it.
    let script = r#"echo "to stdout"
echo "to stderr" >&2
echo "::progress half way" >&2
printf 'last words, no newline'"#;
    for (id, args, label) in [
        ("plain", &[][..], ""),
        ("labelled", &["--prefix"][..], "[q/labelled#1] "),
    ] {
        enqueue(&l, id, 1).await;
        let mut exec = start(&l, &s, args, script);
        let e = wait_state(&l, id, State::Succeeded).await;
        // The directive still names the progress (stdout may be read before or after it).
        let progress = e.progress.unwrap_or_default();
        assert!(progress.starts_with("half way"), "{progress}");
        assert_eq!(exec.stop().await, Some(0));
        let (stdout, stderr) = (exec.stdout(), exec.stderr());
        assert_eq!(
            stdout,
            format!("{label}to stdout\n{label}last words, no newline\n"),
            "stdout has the command's stdout, and only that"
        );
        assert!(
            stderr.contains(&format!("\n{label}to stderr\n{label}::progress half way\n")),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!("[q/{id}#1] unstuck: succeeded")),
            "{stderr}"
        );
        assert!(
            !stderr.contains(&format!("\n{label}to stdout\n")),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn a_stdout_nobody_reads_never_blocks_the_command_and_says_what_it_dropped() {
    let l = support::ledger("exec_backpressure").await;
    let s = Scratch::new();
    enqueue(&l, "e", 1).await;
    // Far more than the pipe and the supervisor's queue hold.
    let script = r#"yes 'a line of output that nobody reads for now' | head -n 200000
echo '{"done": true}'"#;
    let mut exec = start_with_stdout(&l, &s, &[], script, Some(std::process::Stdio::piped()));
    let mut stdout = exec.child.stdout.take().expect("a stdout pipe");

    let e = wait_state(&l, "e", State::Succeeded).await;
    assert_eq!(result(&e), json!({"done": true}));
    assert_eq!(e.progress.as_deref(), Some("output: 200001 lines"));
    let reader = tokio::spawn(async move {
        let mut text = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut text)
            .await
            .map(|_| text)
    });
    assert_eq!(exec.stop().await, Some(0));
    let text = reader.await.unwrap().unwrap();
    let kept = text.lines().filter(|l| !l.starts_with("unstuck: ")).count();
    assert!(kept > 0 && kept < 200001, "{kept} lines kept");
    // Every line was written or counted in a line that says how many were dropped.
    let dropped: usize = text
        .lines()
        .filter_map(|l| {
            let count = l.strip_prefix("unstuck: ")?;
            let count = count.strip_suffix(" lines dropped: stdout did not keep up")?;
            count.parse::<usize>().ok()
        })
        .sum();
    assert!(dropped > 0, "no line says what was dropped");
    assert_eq!(kept + dropped, 200001, "every line kept or counted");
}

#[tokio::test]
async fn a_log_dir_keeps_a_file_per_attempt_and_directives_still_apply() {
    let l = support::ledger("exec_log_dir").await;
    let s = Scratch::new();
    enqueue(&l, "e", 2).await;
    let script = r#"echo "out $UNSTUCK_ATTEMPT"
echo "err $UNSTUCK_ATTEMPT" >&2
echo "::progress step $UNSTUCK_ATTEMPT" >&2
if [ "$UNSTUCK_ATTEMPT" = 1 ]; then exit 3; fi
echo '{"ok": 2}'"#;
    let logs = s.path("logs");
    let mut exec = start(&l, &s, &["--log-dir", logs.to_str().unwrap()], script);

    let e = wait_state(&l, "e", State::Succeeded).await;
    assert_eq!((e.attempt, result(&e)), (2, json!({"ok": 2})));
    let progress = e.progress.clone().unwrap_or_default();
    assert!(progress.starts_with("step 2"), "{progress}");
    assert_eq!(exec.stop().await, Some(0));
    let file = |attempt: u32| {
        std::fs::read_to_string(logs.join("q").join(format!("e.{attempt}.log")))
            .unwrap_or_else(|err| panic!("the log of attempt {attempt}: {err}"))
    };
    let (first, second) = (file(1), file(2));
    assert!(
        first.starts_with("unstuck: attempt 1 started as pid "),
        "{first}"
    );
    assert!(first.contains("\nout 1\n"), "{first}");
    assert!(first.contains("\nerr 1\n"), "{first}");
    assert!(first.contains("\n::progress step 1\n"), "{first}");
    assert!(
        first.contains("\nunstuck: exited with code 3; stderr: err 1 — retry scheduled"),
        "{first}"
    );
    assert!(second.contains("\nout 2\n"), "{second}");
    assert!(second.contains("\n{\"ok\": 2}\n"), "{second}");
    // The outcome comes after every line the command wrote.
    assert!(second.ends_with("\nunstuck: succeeded\n"), "{second}");
    assert!(!second.contains("out 1"), "{second}");
    // Nothing of the command's is passed on; the notes still go to stderr.
    let (stdout, stderr) = (exec.stdout(), exec.stderr());
    assert_eq!(stdout, "");
    assert!(!stderr.lines().any(|l| l.ends_with("err 1")), "{stderr}");
    assert!(stderr.contains("[q/e#2] unstuck: succeeded"), "{stderr}");
}

#[tokio::test]
async fn a_log_dir_that_cannot_be_made_stops_the_supervisor_before_it_claims() {
    let l = support::ledger("exec_bad_log_dir").await;
    let s = Scratch::new();
    enqueue(&l, "e", 1).await;
    let not_a_dir = s.path("a-file");
    std::fs::write(&not_a_dir, "").unwrap();
    let args = ["--log-dir", not_a_dir.to_str().unwrap()];
    let mut exec = start(&l, &s, &args, "echo never");
    assert_eq!(exec.exited().await, Some(1));
    let stderr = exec.stderr();
    assert!(
        stderr.contains(&format!(
            "cannot use the log directory {}/q",
            not_a_dir.display()
        )),
        "{stderr}"
    );
    assert_eq!(l.get("q", "e").await.unwrap().state, State::Queued);
    assert!(l.workers().await.unwrap().is_empty(), "never registered");
    assert_eq!(
        files_under(&s.state_dir()),
        Vec::<std::path::PathBuf>::new()
    );
}

#[tokio::test]
async fn bad_input_is_one_line_and_starts_nothing() {
    let cases: [(&[&str], &str); 6] = [
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
            &[
                "exec",
                "--queue",
                "q",
                "--prefix",
                "--log-dir",
                "x",
                "--",
                "true",
            ],
            "--prefix is for output passed on to stdout and stderr",
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
