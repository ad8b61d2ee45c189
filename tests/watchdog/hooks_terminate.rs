//! Terminate first, clean up after: with a hook on `execution.terminate`, a deadline
//! verdict on running work waits for the hook; a failed terminate is called again after a
//! backoff with the slot kept, and only its success writes timed_out and frees the slot.

use crate::support;
use crate::watchdog_common;

use std::time::Duration;

use unstuck::hooks::HookConfig;
use unstuck::watchdog::WatchdogConfig;
use unstuck::*;
use watchdog_common::*;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn the_slot_is_released_and_timed_out_written_only_after_the_terminate_succeeds() {
    let l = support::ledger("hooks_terminate").await;
    let dir = tempfile::tempdir().unwrap();
    // Fails the first time, succeeds the second.
    let script = format!(
        "cd '{}'; cat > /dev/null; echo $UNSTUCK_IDEMPOTENCY_KEY >> keys; \
         [ $(wc -l < keys) -ge 2 ] || {{ echo 'worker host unreachable' >&2; exit 1; }}",
        dir.path().display()
    );
    let stop = HookConfig {
        command: vec!["sh".into(), "-c".into(), script],
        retries: 0,
        ..HookConfig::command("stop", &["execution.terminate"], &[])
    };
    let wd = sole_replica(
        &l,
        WatchdogConfig {
            hooks: vec![stop],
            ..config("r1")
        },
    )
    .await;
    let p = l.partition_of("q");
    wd.feed_hooks().await.unwrap();
    let opts = EnqueueOptions::new()
        .deadline(Duration::from_millis(100))
        .heartbeat_timeout(Duration::from_millis(150));
    let claim = dispatch(&l, "q", "e", opts, "w1").await;
    beat(&l, &claim.token, Heartbeat::new()).await;

    // The deadline passes: the verdict waits; so does the heartbeat rule.
    pass(200).await;
    wd.round(p).await.unwrap();
    assert_eq!(state(&l, "q", "e").await, State::Running);
    assert_eq!(l.slots_in_use("q").await.unwrap(), 1);
    let requested = events_of(&l, "q", "e").await;
    assert_eq!(requested.last().unwrap().reason, "terminate_requested");

    // The first terminate fails: the slot is kept, and it is called again after a backoff.
    assert_eq!(wd.feed_hooks().await.unwrap(), 1);
    let report = wd.deliver_hooks().await.unwrap();
    assert_eq!(report.settled.len(), 1);
    assert!(!report.settled[0].1, "{report:?}");
    wd.feed_hooks().await.unwrap();
    wd.round(p).await.unwrap();
    assert_eq!(
        state(&l, "q", "e").await,
        State::Running,
        "never stuck meanwhile"
    );
    assert_eq!(
        l.slots_in_use("q").await.unwrap(),
        1,
        "kept while the terminate failed"
    );

    let deadline = tokio::time::Instant::now() + WAIT;
    while state(&l, "q", "e").await != State::TimedOut {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second terminate runs"
        );
        wd.feed_hooks().await.unwrap();
        wd.deliver_hooks().await.unwrap();
        wd.round(p).await.unwrap();
        pass(30).await;
    }
    assert_eq!(
        l.slots_in_use("q").await.unwrap(),
        0,
        "released after the success"
    );
    let e = l.get("q", "e").await.unwrap();
    assert_eq!(
        e.stop.as_ref().map(|s| s.reason.clone()),
        Some(StopReason::DeadlineExceeded),
        "{e:?}"
    );
    let keys = std::fs::read_to_string(dir.path().join("keys")).unwrap();
    let keys: Vec<&str> = keys.lines().collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(
        keys[1],
        format!("{}#2", keys[0]),
        "the second call has a key of its own"
    );
    let reasons: Vec<String> = events_of(&l, "q", "e")
        .await
        .into_iter()
        .map(|e| e.reason)
        .collect();
    assert_eq!(
        reasons[reasons.len() - 2..],
        ["terminate_requested", "deadline_exceeded"],
        "{reasons:?}"
    );
    let last = events_of(&l, "q", "e").await.pop().unwrap();
    assert!(
        last.detail.contains("terminated: hook stop succeeded"),
        "{last:?}"
    );
    let outcomes: Vec<String> = l
        .worker_events(None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.reason)
        .collect();
    assert_eq!(outcomes, ["hook_failed", "hook_succeeded"]);
}

#[tokio::test]
async fn a_worker_that_completes_while_terminating_keeps_its_outcome() {
    let l = support::ledger("hooks_terminate_race").await;
    let stop = HookConfig {
        command: vec!["true".into()],
        retries: 0,
        ..HookConfig::command("stop", &["execution.terminate"], &[])
    };
    let wd = sole_replica(
        &l,
        WatchdogConfig {
            hooks: vec![stop],
            ..config("r1")
        },
    )
    .await;
    let p = l.partition_of("q");
    wd.feed_hooks().await.unwrap();
    let opts = EnqueueOptions::new().deadline(Duration::from_millis(100));
    let claim = dispatch(&l, "q", "e", opts, "w1").await;
    beat(&l, &claim.token, Heartbeat::new()).await;
    pass(150).await;
    wd.round(p).await.unwrap();
    l.complete(&claim.token, None).await.unwrap();
    wd.feed_hooks().await.unwrap();
    wd.deliver_hooks().await.unwrap();
    wd.feed_hooks().await.unwrap();
    assert_eq!(state(&l, "q", "e").await, State::Succeeded);
    assert_eq!(l.slots_in_use("q").await.unwrap(), 0);
}
