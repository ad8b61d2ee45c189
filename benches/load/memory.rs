//! Redis memory per queued execution: `used_memory` before and after enqueueing N
//! executions with the payload `{"n":1}`, divided by N; then again with the partition's
//! event stream deleted, since that stream is capped (`events_max_len`) and so is a fixed
//! cost per partition rather than a cost per execution. Then the same executions are
//! claimed and heartbeated once, for the cost of a running execution (its hash grows a
//! history, a token and timestamps; a capacity slot and a heartbeat timer entry appear).

use redis::aio::MultiplexedConnection;
use unstuck::EnqueueOptions;
use unstuck::testkit::Keyspace;

use crate::Args;
use crate::support::{self, QUEUE};

/// What one memory run found.
#[derive(Debug, Clone)]
pub struct Footprint {
    pub executions: usize,
    pub events_max_len: usize,
    /// used_memory delta / N, event stream included.
    pub with_stream: f64,
    /// used_memory delta / N after deleting the event stream.
    pub without_stream: f64,
    /// used_memory delta / N once every execution is running, event stream deleted.
    pub running: f64,
    pub stream_entries: i64,
    pub stream_bytes: i64,
    /// MEMORY USAGE and OBJECT ENCODING of one execution hash, queued.
    pub execution_hash: i64,
    pub execution_encoding: String,
    /// The same once running.
    pub running_hash: i64,
    pub running_encoding: String,
    /// MEMORY USAGE of the pending zset / N.
    pub pending_per_execution: f64,
}

pub async fn run(url: &str, args: &Args) -> Footprint {
    let mut admin = support::admin(url).await;
    support::flush(&mut admin).await;
    let ledger = support::ledger(url, "memory", |config| {
        config.events_max_len = args.events_max_len;
    })
    .await;
    let n = args.memory_executions;
    let payload = serde_json::json!({"n": 1});
    // One execution first, so the queue's own keys exist before the baseline.
    let first = ledger
        .enqueue(QUEUE, &payload, EnqueueOptions::new())
        .await
        .expect("enqueue succeeds");
    let before = support::used_memory(&mut admin).await;
    support::enqueue_many(&ledger, n, 64).await;
    let after = support::used_memory(&mut admin).await;

    let config = ledger.config();
    let keys = Keyspace::new(&config.namespace, config.partitions).expect("a valid keyspace");
    let stream = keys.queue_events(QUEUE);
    let pending = keys.pending(QUEUE);
    let execution = keys.execution(QUEUE, &first.id);
    let stream_entries: i64 = redis::cmd("XLEN")
        .arg(&stream)
        .query_async(&mut admin)
        .await
        .expect("XLEN answers");
    let stream_bytes = memory_usage(&mut admin, &stream).await;
    let execution_hash = memory_usage(&mut admin, &execution).await;
    let pending_bytes = memory_usage(&mut admin, &pending).await;
    assert!(
        execution_hash > 0 && pending_bytes > 0,
        "the key layout the memory figures read ({execution}, {pending}) exists"
    );

    let execution_encoding = encoding(&mut admin, &execution).await;
    delete(&mut admin, &stream).await;
    let without = support::used_memory(&mut admin).await;

    let tokens = support::claim_all(&ledger, "bench-memory").await;
    assert_eq!(tokens.len(), n + 1, "every queued execution was claimed");
    support::heartbeat_all(&ledger, &tokens, 64).await;
    delete(&mut admin, &stream).await;
    let running = support::used_memory(&mut admin).await;
    Footprint {
        executions: n,
        events_max_len: args.events_max_len,
        with_stream: (after - before) as f64 / n as f64,
        without_stream: (without - before) as f64 / n as f64,
        running: (running - before) as f64 / n as f64,
        stream_entries,
        stream_bytes,
        execution_hash,
        execution_encoding,
        running_hash: memory_usage(&mut admin, &execution).await,
        running_encoding: encoding(&mut admin, &execution).await,
        pending_per_execution: pending_bytes as f64 / (n + 1) as f64,
    }
}

async fn delete(admin: &mut MultiplexedConnection, key: &str) {
    let _: i64 = redis::cmd("DEL")
        .arg(key)
        .query_async(admin)
        .await
        .expect("DEL answers");
}

async fn encoding(admin: &mut MultiplexedConnection, key: &str) -> String {
    redis::cmd("OBJECT")
        .arg("ENCODING")
        .arg(key)
        .query_async(admin)
        .await
        .expect("OBJECT ENCODING answers")
}

/// Exact `MEMORY USAGE` of a key (every element counted); 0 when it does not exist.
async fn memory_usage(admin: &mut MultiplexedConnection, key: &str) -> i64 {
    let bytes: Option<i64> = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(key)
        .arg("SAMPLES")
        .arg(0)
        .query_async(admin)
        .await
        .expect("MEMORY USAGE answers");
    bytes.unwrap_or(0)
}

pub fn print(runs: &[Footprint]) {
    let Some(f) = runs.first() else { return };
    println!(
        "\nMemory per queued execution (N = {}, payload {{\"n\":1}}, events_max_len = {}):\n",
        f.executions, f.events_max_len
    );
    println!(
        "| run | queued, with stream B/exec | queued, without stream B/exec | running, without stream B/exec | stream entries | stream bytes | B/stream entry | exec hash queued B | exec hash running B | pending zset B/exec |"
    );
    println!("|----:|------:|------:|------:|------:|------:|------:|------:|------:|------:|");
    for (i, f) in runs.iter().enumerate() {
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {} | {} | {:.0} | {} ({}) | {} ({}) | {:.0} |",
            i + 1,
            f.with_stream,
            f.without_stream,
            f.running,
            f.stream_entries,
            f.stream_bytes,
            f.stream_bytes as f64 / f.stream_entries.max(1) as f64,
            f.execution_hash,
            f.execution_encoding,
            f.running_hash,
            f.running_encoding,
            f.pending_per_execution
        );
    }
}
