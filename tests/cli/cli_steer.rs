//! The operator's write commands of the `unstuck` binary — `enqueue`, `cancel`, `retry` —
//! checked through the library afterwards, and what a command says when Redis is not there.

use crate::cli_common;
use crate::ledger_common;
use crate::support;

use std::time::Duration;

use serde_json::json;
use unstuck::*;

use cli_common::{finish, run, run_json};

#[tokio::test]
async fn enqueue_writes_the_execution_with_its_timings() {
    let l = support::ledger("cli_enqueue").await;
    let args = ["enqueue", "q", "--payload", r#"{"n": 1}"#, "--id", "e1"];
    let timing = [
        "--heartbeat-timeout",
        "7s",
        "--deadline",
        "5m",
        "--max-attempts",
        "4",
    ];
    let reply = run_json(&l, &[&args[..], &timing[..]].concat()).await;
    assert_eq!(
        (&reply["queue"], &reply["id"], &reply["created"]),
        (&json!("q"), &json!("e1"), &json!(true))
    );
    assert_eq!(
        (&reply["state"], &reply["attempt"]),
        (&json!("queued"), &json!(0))
    );
    let e = l.get("q", "e1").await.unwrap();
    assert_eq!((e.state, e.payload), (State::Queued, json!({"n": 1})));
    assert_eq!(e.timings.heartbeat_timeout, Duration::from_secs(7));
    assert_eq!(e.timings.deadline, Some(Duration::from_secs(300)));
    assert_eq!(e.timings.max_attempts, 4);

    // The same request again is the same execution: nothing written, exit 0.
    let again = run_json(&l, &[&args[..], &timing[..]].concat()).await;
    assert_eq!(
        (&again["id"], &again["created"]),
        (&json!("e1"), &json!(false))
    );
    let text = run(&l, &args).await;
    assert_eq!(text.code, Some(0), "{text:?}");
    assert_eq!(
        text.stdout.trim(),
        "q/e1 already exists (queued, attempt 0): nothing written"
    );
    // The id reused for other work is refused.
    let other = ["enqueue", "q", "--payload", r#"{"n": 2}"#, "--id", "e1"];
    let refused = run(&l, &other).await;
    assert!(
        refused.one_line_failure().contains("different payload"),
        "{refused:?}"
    );
    assert_eq!(l.get("q", "e1").await.unwrap().payload, json!({"n": 1}));
    assert_eq!(l.pending_count("q").await.unwrap(), 1);

    // No --id: a fresh one; the table says so.
    let fresh = run(&l, &["enqueue", "q"]).await;
    assert_eq!(fresh.code, Some(0), "{fresh:?}");
    let line = fresh.stdout.trim();
    let id = line
        .strip_prefix("enqueued q/")
        .and_then(|rest| rest.strip_suffix(" (queued)"))
        .unwrap_or_else(|| panic!("{line}"));
    assert_eq!(l.get("q", id).await.unwrap().payload, json!(null));
    assert_eq!(l.pending_count("q").await.unwrap(), 2);
}

#[tokio::test]
async fn enqueue_refuses_bad_input_and_writes_nothing() {
    let l = support::ledger("cli_enqueue_bad").await;
    let bad = run(&l, &["enqueue", "q", "--payload", "{not json", "--id", "x"]).await;
    let line = bad.one_line_failure();
    assert!(line.starts_with("unstuck: --payload is not JSON"), "{line}");
    let bad = run(&l, &["enqueue", "q", "--heartbeat-timeout", "soon"]).await;
    assert!(
        bad.one_line_failure()
            .contains("--heartbeat-timeout \"soon\": expected a duration"),
        "{bad:?}"
    );
    let bad = run(&l, &["enqueue", "no spaces", "--id", "x"]).await;
    bad.one_line_failure();
    assert_eq!(
        ledger_common::namespace_keys(&l).await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn cancel_ends_a_queued_execution_and_asks_a_running_one() {
    let l = support::ledger("cli_cancel").await;
    l.enqueue("q", &json!({}), EnqueueOptions::new().id("c1"))
        .await
        .unwrap();
    let reply = run_json(&l, &["cancel", "q", "c1", "--reason", "not needed"]).await;
    assert_eq!(
        reply,
        json!({"outcome": "cancelled", "queue": "q", "id": "c1"})
    );
    let e = l.get("q", "c1").await.unwrap();
    assert_eq!(e.state, State::Cancelled);
    assert_eq!(e.stop.map(|s| s.reason), Some(StopReason::Cancelled));
    assert_eq!(e.last_error.as_deref(), Some("not needed"));
    assert_eq!(l.pending_count("q").await.unwrap(), 0);

    let twice = run(&l, &["cancel", "q", "c1", "--reason", "again"]).await;
    let line = twice.one_line_failure();
    assert!(line.contains("already ended cancelled"), "{line}");

    finish(&l, "q", "r1", "running").await;
    let asked = run(&l, &["cancel", "q", "r1", "--reason", "stop it"]).await;
    assert_eq!(asked.code, Some(0), "{asked:?}");
    assert!(
        asked.stdout.starts_with("cancellation of q/r1 requested"),
        "{asked:?}"
    );
    let e = l.get("q", "r1").await.unwrap();
    assert_eq!(e.state, State::Running, "its worker stops it");
    assert!(e.cancel_requested_at.is_some());
    let again = run_json(&l, &["cancel", "q", "r1", "--reason", "stop it"]).await;
    assert_eq!(again["outcome"], "requested");

    let missing = run(&l, &["cancel", "q", "nobody", "--reason", "x"]).await;
    assert!(missing.one_line_failure().contains("nobody"), "{missing:?}");
}

#[tokio::test]
async fn retry_makes_a_linked_execution_from_the_checkpoint() {
    let l = support::ledger("cli_retry").await;
    finish(&l, "q", "orig", "failed").await;
    let before = l.get("q", "orig").await.unwrap();

    let reply = run_json(&l, &["retry", "q", "orig"]).await;
    assert_eq!(
        (&reply["id"], &reply["created"], &reply["state"]),
        (&json!("orig.retry1"), &json!(true), &json!("queued"))
    );
    assert_eq!(reply["retry_of"], "q/orig");
    let copy = l.get("q", "orig.retry1").await.unwrap();
    assert_eq!(copy.state, State::Queued);
    assert_eq!(copy.retry_of, Some(("q".into(), "orig".into())));
    assert_eq!(copy.checkpoint, Some(json!({"step": 3})));
    assert_eq!(copy.payload, before.payload);
    let orig = l.get("q", "orig").await.unwrap();
    assert_eq!(orig.retries, ["orig.retry1"]);
    assert_eq!(
        (orig.state, orig.finished_at, orig.attempt),
        (before.state, before.finished_at, before.attempt),
        "the original is unchanged"
    );

    let named = run(&l, &["retry", "q", "orig", "--new-id", "by-hand"]).await;
    assert_eq!(named.code, Some(0), "{named:?}");
    assert_eq!(
        named.stdout.trim(),
        "q/orig runs again as q/by-hand (queued)"
    );
    assert_eq!(l.get("q", "by-hand").await.unwrap().retry_of, copy.retry_of);
    let shown = run(&l, &["show", "q", "by-hand"]).await;
    assert!(
        shown.stdout.contains("retry of        q/orig\n"),
        "{shown:?}"
    );

    // A running execution is not finished: refused, and nothing is made.
    finish(&l, "other", "busy", "running").await;
    let refused = run(&l, &["retry", "other", "busy"]).await;
    let line = refused.one_line_failure();
    assert!(line.contains("running"), "{line}");
    assert!(matches!(
        l.get("other", "busy.retry1").await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(l.get("other", "busy").await.unwrap().state, State::Running);
    assert_eq!(l.pending_count("other").await.unwrap(), 0);
    assert_eq!(
        l.pending_count("q").await.unwrap(),
        2,
        "orig.retry1, by-hand"
    );
}

#[tokio::test]
async fn a_missing_redis_is_one_line_on_stderr() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://127.0.0.1:{}/", closed.local_addr().unwrap().port());
    drop(closed);
    for backtrace in [None, Some("1")] {
        let mut cmd = cli_common::bare();
        cmd.env("UNSTUCK_LEDGER__REDIS_URL", &url)
            .env("UNSTUCK_LEDGER__CONNECTION_TIMEOUT", "1s")
            .args(["queues", "--json"]);
        if let Some(b) = backtrace {
            cmd.env("RUST_BACKTRACE", b);
        }
        let run = cli_common::output(cmd).await;
        let line = run.one_line_failure();
        assert!(
            line.starts_with(&format!("unstuck: cannot reach Redis at {url} (")),
            "{line}"
        );
        // Why (the refusal), what to do, and that nothing happened; Redis named once.
        assert!(line.contains("Connection refused"), "{line}");
        assert!(line.ends_with("nothing was done"), "{line}");
        assert_eq!(line.matches("Redis").count(), 1, "{line}");
        assert!(!run.stderr.contains("backtrace"), "{run:?}");
        assert_eq!(run.stdout, "");
    }
}

#[tokio::test]
async fn pin_keeps_an_execution_and_off_lets_retention_apply() {
    let l = support::ledger("cli_pin").await;
    finish(&l, "q", "keep-me", "failed").await;
    let reply = run_json(&l, &["pin", "q", "keep-me"]).await;
    assert_eq!(
        reply,
        json!({"queue": "q", "id": "keep-me", "pinned": true, "state": "failed"})
    );
    assert!(l.get("q", "keep-me").await.unwrap().pinned);
    let shown = run(&l, &["show", "q", "keep-me"]).await;
    assert!(shown.stdout.contains("pinned          yes"), "{shown:?}");
    let off = run(&l, &["pin", "q", "keep-me", "--off"]).await;
    assert_eq!(off.code, Some(0), "{off:?}");
    assert_eq!(
        off.stdout.trim(),
        "unpinned q/keep-me (failed): retention applies again"
    );
    assert!(!l.get("q", "keep-me").await.unwrap().pinned);
    let missing = run(&l, &["pin", "q", "nope"]).await;
    assert!(missing.one_line_failure().contains("nope"), "{missing:?}");
}

#[tokio::test]
async fn enqueue_takes_a_traceparent_and_show_names_it() {
    let l = support::ledger("cli_traceparent").await;
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let done = run(&l, &["enqueue", "q", "--id", "t1", "--traceparent", tp]).await;
    assert_eq!(done.code, Some(0), "{done:?}");
    assert_eq!(
        l.get("q", "t1").await.unwrap().traceparent.as_deref(),
        Some(tp)
    );
    let shown = run(&l, &["show", "q", "t1"]).await;
    assert!(
        shown.stdout.contains(&format!("traceparent     {tp}\n")),
        "{shown:?}"
    );
    // Run again by hand, the new execution keeps the trace context.
    l.cancel("q", "t1", "by hand").await.unwrap();
    let again = run(&l, &["retry", "q", "t1"]).await;
    assert_eq!(again.code, Some(0), "{again:?}");
    let copy = l.get("q", "t1.retry1").await.unwrap();
    assert_eq!(copy.traceparent.as_deref(), Some(tp));

    // A malformed one is refused before anything is written.
    let bad = run(
        &l,
        &["enqueue", "q", "--id", "t2", "--traceparent", "00-abc"],
    )
    .await;
    assert_eq!(bad.code, Some(2), "{bad:?}");
    assert!(bad.stderr.contains("W3C traceparent"), "{bad:?}");
    assert!(matches!(
        l.get("q", "t2").await,
        Err(Error::NotFound { .. })
    ));
}
