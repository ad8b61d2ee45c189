//! Helpers shared by the ledger integration tests: a raw Redis connection beside the
//! ledger's own, the server clock, the keys of a namespace, the events of a partition.
//!
//! Each test file does `mod support; mod ledger_common;`. Not every binary uses every
//! helper, hence the `#[allow(dead_code)]`s.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use serde_json::json;
use unstuck::{AttemptToken, EnqueueOptions, Event, Heartbeat, HeartbeatReply, Ledger};

/// A plain connection to the test binary's Redis server, for reading raw keys.
#[allow(dead_code)]
pub async fn raw() -> MultiplexedConnection {
    redis::Client::open(super::support::redis().url())
        .expect("test redis url parses")
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection to the test redis")
}

/// The server clock (`TIME`), in milliseconds since the epoch, truncated like the scripts'.
#[allow(dead_code)]
pub async fn server_ms(conn: &mut MultiplexedConnection) -> i64 {
    let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(conn).await.unwrap();
    secs * 1000 + micros / 1000
}

/// Waits until the server clock has moved past `ms`, so the next write gets a later
/// timestamp than `ms`.
#[allow(dead_code)]
pub async fn wait_for_server_after(conn: &MultiplexedConnection, ms: i64) {
    super::support::wait_until(Duration::from_secs(5), "the server clock moves on", || {
        let mut conn = conn.clone();
        async move { server_ms(&mut conn).await > ms }
    })
    .await;
}

/// Every key of the ledger's namespace, sorted (`SCAN MATCH {<namespace>:*`).
#[allow(dead_code)]
pub async fn namespace_keys(ledger: &Ledger) -> Vec<String> {
    let mut conn = raw().await;
    let pattern = format!("{{{}:*", ledger.config().namespace);
    let mut cursor = 0u64;
    let mut keys = Vec::new();
    loop {
        let (next, mut batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        keys.append(&mut batch);
        if next == 0 {
            keys.sort();
            return keys;
        }
        cursor = next;
    }
}

/// Every event of `queue`'s partition that names `queue`, oldest first.
#[allow(dead_code)]
pub async fn events_of(ledger: &Ledger, queue: &str) -> Vec<Event> {
    let partition = ledger.partition_of(queue);
    let mut events: Vec<Event> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let batch = ledger
            .read_events(partition, after.as_deref(), 1000)
            .await
            .unwrap();
        let Some(last) = batch.last() else {
            return events.into_iter().filter(|e| e.queue == queue).collect();
        };
        after = Some(last.stream_id.clone());
        events.extend(batch);
    }
}

/// The same attempt with another secret: the right attempt number, never issued.
#[allow(dead_code)]
pub fn forged(token: &AttemptToken, attempt: u32) -> AttemptToken {
    format!(
        "{}/{}/{}/{}",
        token.queue(),
        token.execution_id(),
        attempt,
        "0123456789abcdef0123456789abcdef"
    )
    .parse()
    .unwrap()
}

/// Enqueues `id` in `queue`, claims it as `worker` and sends its first heartbeat; returns
/// the running attempt's token.
#[allow(dead_code)]
pub async fn running(ledger: &Ledger, queue: &str, id: &str, opts: EnqueueOptions) -> AttemptToken {
    ledger
        .enqueue(queue, &json!({"id": id}), opts.id(id))
        .await
        .unwrap();
    let claim = ledger.claim(queue, "worker-1").await.unwrap().unwrap();
    assert_eq!(claim.id(), id, "the only queued execution is claimed");
    let reply = ledger
        .heartbeat(&claim.token, Heartbeat::new())
        .await
        .unwrap();
    assert_eq!(
        reply,
        HeartbeatReply::Ok {
            cancel_requested: false,
            cancel_reason: None,
        }
    );
    claim.token
}
