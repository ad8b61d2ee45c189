//! The service's own routes where they carry a rule of the library: `/readyz` answers
//! what the in-process watchdog replica found (`Watchdog::check_ready`).

use std::time::Duration;

use reqwest::StatusCode;

use crate::http_common::*;
use crate::support;

#[tokio::test]
async fn readyz_is_not_ready_once_the_replica_finds_redis_lost_the_data() {
    let s = start("http_ready_lost").await;
    assert_eq!(s.get("/readyz").await.body["status"], "ready");
    // The replica remembers the namespace's marker at its first presence beat, before it
    // takes any partition.
    support::wait_until(
        Duration::from_secs(5),
        "the replica holds partitions",
        || async {
            let wd = s.get("/v1/watchdog").await;
            wd.body["partitions"]
                .as_array()
                .is_some_and(|ps| ps.iter().all(|p| p["owner"].is_string()))
        },
    )
    .await;
    // Redis "restarted empty": every key of the namespace, the marker with them, is gone.
    let mut conn = redis::Client::open(s.ledger.config().server_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let pattern = format!("{{{}:*", s.ledger.config().namespace);
    let doomed: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!doomed.is_empty());
    let _: () = redis::cmd("DEL")
        .arg(doomed)
        .query_async(&mut conn)
        .await
        .unwrap();
    support::wait_until(
        Duration::from_secs(5),
        "readyz reports the loss",
        || async { s.get("/readyz").await.status == StatusCode::SERVICE_UNAVAILABLE },
    )
    .await;
    let ready = s.get("/readyz").await;
    assert_eq!(ready.problem(), "redis-data-lost", "{ready:?}");
    // Redis itself answers and would not evict: the loss is what makes it not ready.
    s.ledger.check_ready().await.expect("Redis answers");
    s.stop().await;
}
