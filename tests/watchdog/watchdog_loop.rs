//! Loop detection through the library: heartbeats carrying a fingerprint, the run of
//! identical ones counted per attempt (a different one resets it, none leaves it), the
//! watchdog's `looping` verdict within one round of the run reaching `max_repeats`, its
//! remediation like no progress (retry from the checkpoint, dead when attempts are
//! spent), which heartbeats revive it, and bad input refused with nothing written. Rounds
//! are driven by hand.

use crate::support;
use crate::watchdog_common;

use std::time::Duration;

use serde_json::json;
use unstuck::*;
use watchdog_common::*;

const LONG: Duration = Duration::from_secs(60);

fn looping_opts(max_repeats: u32) -> EnqueueOptions {
    EnqueueOptions::new()
        .max_repeats(max_repeats)
        .heartbeat_timeout(LONG)
        .stuck_threshold(LONG)
}

async fn run_of(l: &Ledger, q: &str, id: &str) -> Option<(String, u32)> {
    l.get(q, id)
        .await
        .unwrap()
        .fingerprint
        .map(|f| (f.last, f.repeats))
}

fn fp(text: &str) -> Heartbeat {
    Heartbeat::new().fingerprint(text)
}

#[tokio::test]
async fn the_run_counts_identical_fingerprints_resets_on_a_new_one_and_ignores_plain_beats() {
    let l = support::ledger("loop_count").await;
    let wd = sole_replica(&l, config("r1")).await;
    let q = "lc";
    let p = l.partition_of(q);
    let token = start(&l, q, "a", looping_opts(5)).await;
    assert_eq!(run_of(&l, q, "a").await, None, "no fingerprint yet");

    for _ in 0..3 {
        beat(&l, &token, fp("read:a.txt")).await;
    }
    assert_eq!(run_of(&l, q, "a").await, Some(("read:a.txt".into(), 3)));

    // Beats without a fingerprint, plain or with progress and a checkpoint, leave it.
    beat(&l, &token, Heartbeat::new()).await;
    beat(
        &l,
        &token,
        Heartbeat::new()
            .progress("step 9")
            .checkpoint(json!({"step": 9})),
    )
    .await;
    assert_eq!(run_of(&l, q, "a").await, Some(("read:a.txt".into(), 3)));

    // A different fingerprint starts a new run of one; the old one again starts another.
    beat(&l, &token, fp("write:b.txt")).await;
    assert_eq!(run_of(&l, q, "a").await, Some(("write:b.txt".into(), 1)));
    beat(&l, &token, fp("read:a.txt")).await;
    beat(&l, &token, fp("read:a.txt")).await;
    assert_eq!(run_of(&l, q, "a").await, Some(("read:a.txt".into(), 2)));

    let report = wd.round(p).await.unwrap();
    assert!(!report.acted(), "below max_repeats: {report:?}");
    assert_eq!(state(&l, q, "a").await, State::Running);
    support::invariants::assert_ok(&l, &[q]).await;
}

#[tokio::test]
async fn max_repeats_in_a_row_is_judged_looping_within_one_round_even_with_moving_progress() {
    let l = support::ledger("loop_verdict").await;
    let wd = sole_replica(&l, config("r1")).await;
    let q = "lv";
    let p = l.partition_of(q);
    // The no-progress rule is on but far away: the step counter keeps moving anyway.
    let token = start(&l, q, "a", looping_opts(3).no_progress_timeout(LONG)).await;
    for step in 1..=2 {
        beat(&l, &token, fp("grep TODO").progress(format!("step {step}"))).await;
    }
    let report = wd.round(p).await.unwrap();
    assert!(!report.acted(), "two of three: {report:?}");

    beat(&l, &token, fp("grep TODO").progress("step 3")).await;
    support::invariants::assert_ok(&l, &[q]).await;
    // A later beat whose progress moves does not postpone the verdict.
    beat(&l, &token, Heartbeat::new().progress("step 4")).await;
    let report = wd.round(p).await.unwrap();
    assert_eq!(report.stuck, 1, "judged in the next round: {report:?}");

    let e = l.get(q, "a").await.unwrap();
    assert_eq!(e.state, State::Stuck);
    let last = events_of(&l, q, "a").await.pop().unwrap();
    assert_eq!(
        (last.from, last.to, last.reason.as_str()),
        (Some(State::Running), Some(State::Stuck), "looping")
    );
    assert_eq!(
        last.detail,
        "same fingerprint 3 times in a row (max_repeats 3)"
    );
    assert_eq!(e.history.last().unwrap().reason, "looping");
    support::invariants::assert_ok(&l, &[q]).await;

    // Neither the same fingerprint, nor moving progress, nor a plain beat revives it...
    beat(&l, &token, fp("grep TODO").progress("step 5")).await;
    beat(&l, &token, Heartbeat::new().progress("step 6")).await;
    beat(&l, &token, Heartbeat::new()).await;
    let e = l.get(q, "a").await.unwrap();
    assert_eq!((e.state, e.false_alarms), (State::Stuck, 0));
    assert_eq!(e.fingerprint.unwrap().repeats, 4);

    // ...a new fingerprint does: the loop broke.
    beat(&l, &token, fp("edit main.rs")).await;
    let e = l.get(q, "a").await.unwrap();
    assert_eq!((e.state, e.false_alarms), (State::Running, 1));
    assert_eq!(events_of(&l, q, "a").await.pop().unwrap().reason, "revived");
    assert!(!wd.round(p).await.unwrap().acted());
    support::invariants::assert_ok(&l, &[q]).await;
}

#[tokio::test]
async fn a_new_fingerprint_before_the_round_withdraws_the_due_verdict() {
    let l = support::ledger("loop_withdrawn").await;
    let wd = sole_replica(&l, config("r1")).await;
    let q = "lw";
    let p = l.partition_of(q);
    // One with the no-progress rule off, one with it on: the timer goes away, or back.
    let off = start(&l, q, "off", looping_opts(2)).await;
    let on = start(&l, q, "on", looping_opts(2).no_progress_timeout(LONG)).await;
    for token in [&off, &on] {
        beat(&l, token, fp("same")).await;
        beat(&l, token, fp("same")).await;
        beat(&l, token, fp("other")).await;
    }
    support::invariants::assert_ok(&l, &[q]).await;
    let report = wd.round(p).await.unwrap();
    assert!(!report.acted(), "{report:?}");
    assert_eq!(state(&l, q, "off").await, State::Running);
    assert_eq!(state(&l, q, "on").await, State::Running);
}

#[tokio::test]
async fn a_looping_attempt_is_retried_from_its_checkpoint_with_a_fresh_count_then_dead() {
    let l = support::ledger("loop_retry").await;
    let wd = sole_replica(&l, config("r1")).await;
    let q = "lr";
    let p = l.partition_of(q);
    let opts = EnqueueOptions::new()
        .max_repeats(2)
        .max_attempts(2)
        .heartbeat_timeout(LONG)
        .stuck_threshold(Duration::from_millis(100))
        .backoff_base(Duration::ZERO);
    let token = start(&l, q, "a", opts).await;
    beat(&l, &token, fp("call search").checkpoint(json!({"page": 4}))).await;
    beat(&l, &token, fp("call search")).await;
    assert_eq!(wd.round(p).await.unwrap().stuck, 1);

    support::wait_until(Duration::from_secs(5), "retried", || async {
        wd.round(p).await.unwrap();
        state(&l, q, "a").await == State::Queued
    })
    .await;
    let retried = events_of(&l, q, "a").await.pop().unwrap();
    assert_eq!(
        (retried.from, retried.to, retried.reason.as_str()),
        (Some(State::Stuck), Some(State::Queued), "looping")
    );
    assert!(
        retried
            .detail
            .contains("same fingerprint 2 times in a row (max_repeats 2)"),
        "{}",
        retried.detail
    );

    // The retry resumes from the checkpoint and starts with no run at all.
    let next = l.claim(q, "w2").await.unwrap().unwrap();
    assert_eq!(next.attempt(), 2);
    assert_eq!(next.checkpoint, Some(json!({"page": 4})));
    assert_eq!(run_of(&l, q, "a").await, None, "a fresh count");
    beat(&l, &next.token, fp("call search")).await;
    assert_eq!(run_of(&l, q, "a").await, Some(("call search".into(), 1)));
    assert!(
        !wd.round(p).await.unwrap().acted(),
        "one of two this attempt"
    );

    // Looping again with its attempts spent: dead, stop reason looping.
    beat(&l, &next.token, fp("call search")).await;
    support::wait_until(Duration::from_secs(5), "dead", || async {
        wd.round(p).await.unwrap();
        state(&l, q, "a").await == State::Dead
    })
    .await;
    let e = l.get(q, "a").await.unwrap();
    assert_eq!(e.stop.unwrap().reason, StopReason::Looping);
    let message = e.last_error.unwrap();
    assert!(
        message.starts_with("attempt 2 of 2 lost:")
            && message.contains("same fingerprint 2 times in a row (max_repeats 2)"),
        "{message}"
    );
    support::invariants::assert_ok(&l, &[q]).await;
}

#[tokio::test]
async fn without_max_repeats_fingerprints_are_counted_but_never_judged() {
    let l = support::ledger("loop_off").await;
    let wd = sole_replica(&l, config("r1")).await;
    let q = "lo";
    let p = l.partition_of(q);
    let token = start(&l, q, "a", looping_opts(2).max_repeats(0)).await;
    for _ in 0..5 {
        beat(&l, &token, fp("same")).await;
    }
    assert_eq!(run_of(&l, q, "a").await, Some(("same".into(), 5)));
    assert!(!wd.round(p).await.unwrap().acted());
    let e = l.get(q, "a").await.unwrap();
    assert_eq!((e.state, e.timings.max_repeats), (State::Running, None));
    support::invariants::assert_ok(&l, &[q]).await;
}

#[tokio::test]
async fn max_repeats_is_an_enqueue_option_and_a_queue_default() {
    let l = support::ledger("loop_settings").await;
    let q = "ls";
    let mut settings = QueueSettings::default();
    settings.timings.max_repeats = Some(7);
    l.set_queue(q, &settings).await.unwrap();
    assert_eq!(
        l.queue_settings(q).await.unwrap().timings.max_repeats,
        Some(7)
    );
    let plain = l
        .enqueue(q, &json!({}), EnqueueOptions::new().id("plain"))
        .await
        .unwrap();
    let own = l
        .enqueue(
            q,
            &json!({}),
            EnqueueOptions::new().id("own").max_repeats(3),
        )
        .await
        .unwrap();
    let off = l
        .enqueue(
            q,
            &json!({}),
            EnqueueOptions::new().id("off").max_repeats(0),
        )
        .await
        .unwrap();
    let got = |id: String| {
        let l = l.clone();
        async move { l.get(q, &id).await.unwrap().timings.max_repeats }
    };
    assert_eq!(got(plain.id).await, Some(7));
    assert_eq!(got(own.id).await, Some(3));
    assert_eq!(got(off.id).await, None);
    // Off by default.
    let elsewhere = l
        .enqueue("other", &json!({}), EnqueueOptions::new().id("x"))
        .await
        .unwrap();
    assert_eq!(
        l.get("other", &elsewhere.id)
            .await
            .unwrap()
            .timings
            .max_repeats,
        None
    );
}

#[tokio::test]
async fn bad_fingerprints_and_max_repeats_are_refused_with_nothing_written() {
    let l = support::ledger("loop_bad").await;
    let q = "lb";
    let token = start(&l, q, "a", looping_opts(3)).await;
    beat(&l, &token, fp("ok")).await;
    let before = l.get(q, "a").await.unwrap();

    for bad in [String::new(), "x".repeat(MAX_FINGERPRINT_BYTES + 1)] {
        let error = l.heartbeat(&token, fp(&bad)).await.unwrap_err();
        assert!(
            matches!(&error, Error::InvalidArgument { name, .. } if name == "fingerprint"),
            "{error:?}"
        );
        assert!(error.to_string().contains("1 to 128 bytes"), "{error}");
    }
    // The longest allowed is fine.
    let longest = "y".repeat(MAX_FINGERPRINT_BYTES);
    let after = l.get(q, "a").await.unwrap();
    assert_eq!(after.last_heartbeat_at, before.last_heartbeat_at);
    assert_eq!(after.fingerprint, before.fingerprint);
    beat(&l, &token, fp(&longest)).await;
    assert_eq!(run_of(&l, q, "a").await, Some((longest, 1)));

    for bad in [1, 10_001] {
        let error = l
            .enqueue(
                q,
                &json!({}),
                EnqueueOptions::new().id("b").max_repeats(bad),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&error, Error::InvalidArgument { name, .. } if name == "max_repeats"),
            "{error:?}"
        );
        let mut settings = QueueSettings::default();
        settings.timings.max_repeats = Some(bad);
        assert!(l.set_queue(q, &settings).await.is_err());
    }
    assert!(matches!(
        l.get(q, "b").await.unwrap_err(),
        Error::NotFound { .. }
    ));
    assert_eq!(l.queue_settings(q).await.unwrap().timings.max_repeats, None);
    support::invariants::assert_ok(&l, &[q]).await;
}

#[tokio::test]
async fn a_run_at_its_limit_is_judged_again_after_a_heartbeat_verdict_is_withdrawn() {
    let l = support::ledger("loop_after_revival").await;
    let wd = sole_replica(&l, config("r1")).await;
    let q = "lh";
    let p = l.partition_of(q);
    let opts = EnqueueOptions::new()
        .max_repeats(2)
        .heartbeat_timeout(Duration::from_millis(100))
        .stuck_threshold(LONG);
    let token = start(&l, q, "a", opts).await;
    beat(&l, &token, fp("same")).await;
    beat(&l, &token, fp("same")).await;
    // The heartbeat rule comes first in the round: stuck heartbeat_lost, not looping.
    pass(150).await;
    assert_eq!(wd.round(p).await.unwrap().stuck, 1);
    let last = events_of(&l, q, "a").await.pop().unwrap();
    assert_eq!(last.reason, "heartbeat_lost");

    // A plain beat withdraws that verdict; the run is still at its limit: judged again.
    beat(&l, &token, Heartbeat::new()).await;
    assert_eq!(state(&l, q, "a").await, State::Running);
    support::invariants::assert_ok(&l, &[q]).await;
    assert_eq!(wd.round(p).await.unwrap().stuck, 1);
    let last = events_of(&l, q, "a").await.pop().unwrap();
    assert_eq!(
        (last.reason.as_str(), last.detail.as_str()),
        (
            "looping",
            "same fingerprint 2 times in a row (max_repeats 2)"
        )
    );
}
