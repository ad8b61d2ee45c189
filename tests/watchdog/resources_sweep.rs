//! The watchdog's resource sweep: a unit whose holder attempt the watchdog ended (a lost
//! heartbeat → retry) or whose ttl passed is free when that round returns, and the retry
//! acquires it; a current holder's unit is left alone.

use crate::support;
use crate::watchdog_common;

use std::time::Duration;

use unstuck::*;
use watchdog_common::*;

const LONG: Duration = Duration::from_secs(60);

#[tokio::test]
async fn the_sweep_frees_a_unit_whose_attempt_was_retried_by_the_watchdog() {
    let l = support::ledger("wd_res_sweep").await;
    let wd = sole_replica(&l, config("r1")).await;
    let q = "agents";
    let p = l.partition_of(q);
    let opts = || {
        EnqueueOptions::new()
            .heartbeat_timeout(Duration::from_millis(100))
            .stuck_threshold(Duration::from_millis(1))
            .max_attempts(3)
            .backoff_base(Duration::from_millis(1))
            .start_grace(LONG)
    };
    let lost = start(&l, q, "lost", opts()).await;
    let healthy = start(&l, q, "healthy", opts().heartbeat_timeout(LONG)).await;
    l.acquire(&lost, Acquire::new("browser")).await.unwrap();
    l.acquire(&healthy, Acquire::new("api-key")).await.unwrap();

    // The holder stops beating (as a killed process would): the watchdog retries it and
    // the same round's sweep frees its unit.
    let freed = std::cell::Cell::new(0);
    support::wait_until(
        Duration::from_secs(10),
        "the lost attempt is retried",
        || async {
            let report = wd.round(p).await.unwrap();
            freed.set(freed.get() + report.resources_freed);
            l.get(q, "lost").await.unwrap().state == State::Queued
        },
    )
    .await;
    assert_eq!(freed.get(), 1);
    assert!(l.resource("browser").await.unwrap().is_none());
    let kept = l
        .resource("api-key")
        .await
        .unwrap()
        .expect("the current holder keeps it");
    assert_eq!(kept.holders[0].id, "healthy");

    // The retry acquires it; the late release of the lost attempt frees nothing.
    let retry = loop {
        if let Some(c) = l.claim(q, "w2").await.unwrap() {
            break c;
        }
        pass(5).await;
    };
    assert_eq!((retry.id(), retry.token.attempt()), ("lost", 2));
    l.acquire(&retry.token, Acquire::new("browser"))
        .await
        .unwrap();
    assert!(!l.release(&lost, "browser").await.unwrap());
    let held = l.resource("browser").await.unwrap().unwrap();
    assert_eq!(held.holders[0].attempt, 2);
    let evs = events_of(&l, q, "lost").await;
    let freed: Vec<&Event> = evs
        .iter()
        .filter(|e| e.reason == "resource_freed")
        .collect();
    assert_eq!(freed.len(), 1, "{evs:?}");
    assert_eq!(freed[0].attempt, 1);
    assert!(freed[0].detail.contains("sweep"), "{:?}", freed[0]);
}

#[tokio::test]
async fn the_sweep_frees_units_past_their_ttl() {
    let l = support::ledger("wd_res_ttl").await;
    let wd = sole_replica(&l, config("r1")).await;
    let q = "ttl";
    let p = l.partition_of(q);
    let t = start(&l, q, "a", EnqueueOptions::new().heartbeat_timeout(LONG)).await;
    l.acquire(&t, Acquire::new("key").ttl(Duration::from_millis(50)))
        .await
        .unwrap();
    pass(80).await;
    support::wait_until(Duration::from_secs(5), "the sweep frees it", || async {
        wd.round(p).await.unwrap().resources_freed == 1
    })
    .await;
    let mut conn = raw(&l).await;
    let key = format!("{{{}:resources}}:r:key", l.config().namespace);
    let exists: bool = redis::AsyncCommands::exists(&mut conn, key).await.unwrap();
    assert!(!exists);
    // Released already: the holder's own release is a no-op.
    assert!(!l.release(&t, "key").await.unwrap());
    assert!(matches!(
        l.acquire(&t, Acquire::new("key")).await,
        Ok(AcquireOutcome::Acquired { .. })
    ));
}
