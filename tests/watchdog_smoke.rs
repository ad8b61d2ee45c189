mod support;

use std::time::Duration;

use serde_json::json;
use unstuck::watchdog::{Watchdog, WatchdogConfig};
use unstuck::*;

#[tokio::test]
async fn stale_goes_stuck_then_retried_then_dead() {
    let l = support::ledger("wd_smoke").await;
    let wd = Watchdog::new(l.clone(), WatchdogConfig::default()).unwrap();
    let ch = wd.rebalance().await.unwrap();
    println!("{ch:?}");
    let opts = EnqueueOptions::new()
        .id("a")
        .heartbeat_timeout(Duration::from_millis(100))
        .stuck_threshold(Duration::from_millis(100))
        .backoff_base(Duration::ZERO)
        .max_attempts(2);
    l.enqueue("q", &json!({}), opts).await.unwrap();
    let c = l.claim("q", "w").await.unwrap().unwrap();
    l.heartbeat(&c.token, Heartbeat::new()).await.unwrap();
    let p = l.partition_of("q");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let r = wd.round(p).await.unwrap();
    println!("{r:?}");
    assert_eq!(r.stuck, 1);
    assert_eq!(l.get("q", "a").await.unwrap().state, State::Stuck);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let r = wd.round(p).await.unwrap();
    println!("{r:?}");
    assert_eq!(r.retried, 1);
    let c2 = l.claim("q", "w").await.unwrap().unwrap();
    assert_eq!(c2.attempt(), 2);
    l.heartbeat(&c2.token, Heartbeat::new()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    wd.round(p).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let r = wd.round(p).await.unwrap();
    println!("{r:?}");
    assert_eq!(r.dead, 1);
    let e = l.get("q", "a").await.unwrap();
    println!("{:?} {:?} {:?}", e.state, e.stop, e.last_error);
    for ev in l.read_events(p, None, 100).await.unwrap() {
        println!(
            "{} {:?}->{:?} {} | {} | lag {:?}",
            ev.execution_id,
            ev.from,
            ev.to,
            ev.reason,
            ev.detail,
            ev.timer_due_at.map(|d| ev.at - d)
        );
    }
}
