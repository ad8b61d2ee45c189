//! `unstuck queues pause` and `resume`: the pause names the OS user, `unstuck queues`
//! shows it, repeats say nothing changed, an unknown queue or a missing reason is one
//! line on stderr and nothing written.

use crate::cli_common;
use crate::support;

use serde_json::json;
use unstuck::*;

use cli_common::{run, run_json, unstuck};

#[tokio::test]
async fn queues_pause_and_resume_and_the_list_shows_the_pause() {
    let l = support::ledger("cli_pause").await;
    l.enqueue("q", &json!({}), EnqueueOptions::new().id("a"))
        .await
        .unwrap();

    let mut cmd = unstuck(&l, &["queues", "pause", "q", "--reason", "provider outage"]);
    cmd.env("USER", "alice");
    let paused = cli_common::output(cmd).await;
    assert_eq!(paused.code, Some(0), "{paused:?}");
    assert_eq!(
        paused.stdout.trim(),
        "paused q by cli:alice (provider outage): its claims take nothing"
    );
    let pause = l.queue_overview("q").await.unwrap().pause.expect("paused");
    assert_eq!(
        (pause.by.as_str(), pause.reason.as_str()),
        ("cli:alice", "provider outage")
    );
    assert!(l.claim("q", "w1").await.unwrap().is_none());

    let events = run(&l, &["events", "--queue", "q"]).await;
    assert!(
        events
            .stdout
            .lines()
            .any(|line| line.ends_with("queue q - → - queue_paused: by cli:alice: provider outage")),
        "{events:?}"
    );
    let again = run_json(&l, &["queues", "pause", "q", "--reason", "other"]).await;
    assert_eq!(
        (&again["changed"], &again["paused"]),
        (&json!(false), &json!(true))
    );
    assert_eq!(again["pause"]["reason"], "provider outage");

    let list = run_json(&l, &["queues"]).await;
    assert_eq!(list["queues"][0]["paused"], true, "{list}");
    assert_eq!(list["queues"][0]["pause"]["by"], "cli:alice");
    let table = run(&l, &["queues"]).await;
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].trim_end().ends_with("PAUSED"), "{lines:?}");
    assert!(
        lines[1].ends_with("by cli:alice: provider outage"),
        "{lines:?}"
    );

    let resumed = run(&l, &["queues", "resume", "q"]).await;
    assert_eq!(resumed.code, Some(0), "{resumed:?}");
    assert!(
        resumed.stdout.starts_with("resumed q (paused by cli:alice"),
        "{resumed:?}"
    );
    let again = run(&l, &["queues", "resume", "q", "--reason", "twice"]).await;
    assert_eq!(again.stdout.trim(), "q is not paused: nothing changed");
    assert!(!l.queue_overview("q").await.unwrap().paused);
    let table = run(&l, &["queues"]).await;
    assert!(
        table
            .stdout
            .lines()
            .nth(1)
            .unwrap()
            .trim_end()
            .ends_with('-')
    );
    assert_eq!(l.claim("q", "w1").await.unwrap().unwrap().id(), "a");
}

#[tokio::test]
async fn pausing_an_unknown_queue_or_without_a_reason_fails_in_one_line() {
    let l = support::ledger("cli_pause_bad").await;
    let unknown = run(&l, &["queues", "pause", "nope", "--reason", "x"]).await;
    assert!(
        unknown.one_line_failure().contains("no queue \"nope\""),
        "{unknown:?}"
    );
    l.enqueue("q", &json!({}), EnqueueOptions::new())
        .await
        .unwrap();
    let empty = run(&l, &["queues", "pause", "q", "--reason", ""]).await;
    assert!(empty.one_line_failure().contains("reason"), "{empty:?}");
    let missing = run(&l, &["queues", "pause", "q"]).await;
    assert_ne!(missing.code, Some(0));
    let stray = run(&l, &["queues", "q"]).await;
    assert!(
        stray.one_line_failure().contains("unstuck queues pause q"),
        "{stray:?}"
    );
    assert!(!l.queue_overview("q").await.unwrap().paused);
    assert!(
        l.read_events(l.partition_of("q"), None, 100)
            .await
            .unwrap()
            .iter()
            .all(|e| !e.reason.starts_with("queue_"))
    );
}
