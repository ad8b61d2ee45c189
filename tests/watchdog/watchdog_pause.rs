//! A paused queue's running work is still judged by the watchdog, and what goes back to
//! the queue (a retry) waits there until the resume.

use crate::support;
use crate::watchdog_common;

use std::time::Duration;

use unstuck::*;
use watchdog_common::*;

const LONG: Duration = Duration::from_secs(60);

#[tokio::test]
async fn running_work_of_a_paused_queue_is_still_judged_and_its_retry_waits_for_the_resume() {
    let l = support::ledger("wd_pause").await;
    let wd = sole_replica(&l, config("r1")).await;
    let q = "paused";
    let p = l.partition_of(q);
    let opts = EnqueueOptions::new()
        .heartbeat_timeout(Duration::from_millis(100))
        .stuck_threshold(Duration::from_millis(100))
        .start_grace(LONG)
        .backoff_base(Duration::from_millis(50))
        .max_attempts(3);
    let token = start(&l, q, "a", opts).await;
    l.pause_queue(q, "ops", "incident").await.unwrap();

    // No heartbeat: stuck, then retried, as if the queue ran.
    support::wait_until(
        Duration::from_secs(5),
        "the watchdog judges it stuck",
        || async {
            wd.round(p).await.unwrap();
            state(&l, q, "a").await == State::Stuck
        },
    )
    .await;
    support::wait_until(
        Duration::from_secs(5),
        "the watchdog retries it",
        || async {
            wd.round(p).await.unwrap();
            state(&l, q, "a").await == State::Queued
        },
    )
    .await;
    assert_eq!(l.slots_in_use(q).await.unwrap(), 0);
    let late = l.heartbeat(&token, Heartbeat::new()).await.unwrap();
    assert!(
        matches!(late, HeartbeatReply::StaleAttempt { .. }),
        "{late:?}"
    );

    // The retry waits in the paused queue (its backoff long over), then goes.
    support::wait_until(
        Duration::from_secs(5),
        "the retry's backoff ends",
        || async {
            let o = l.queue_overview(q).await.unwrap();
            o.available == 1
        },
    )
    .await;
    let batch = l.claim_many(q, "w2", 1).await.unwrap();
    assert!(batch.claims.is_empty() && batch.queue_paused, "{batch:?}");
    l.resume_queue(q, "ops", "over").await.unwrap();
    let claim = l
        .claim(q, "w2")
        .await
        .unwrap()
        .expect("the retry is claimed");
    assert_eq!((claim.id(), claim.attempt()), ("a", 2));
    support::invariants::assert_ok(&l, &[q]).await;
}
