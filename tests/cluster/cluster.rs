//! The ledger on a 3-master Redis Cluster: the whole worker and orchestrator API over 40
//! queues, so every partition and every node is used. Each script and pipeline must touch
//! one slot; a CROSSSLOT reply would surface as `Error::Redis`, and every call must succeed.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::json;
use unstuck::testkit::Keyspace;
use unstuck::*;

const QUEUES: usize = 40;

/// The value of a call that must succeed; a cross-slot failure is named as such.
fn must<T>(what: &str, result: Result<T>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => {
            let text = error.to_string();
            assert!(
                !text.contains("CROSSSLOT"),
                "{what}: keys of one call span several slots: {text}"
            );
            panic!("{what} failed: {text}");
        }
    }
}

fn queue_names() -> Vec<String> {
    (0..QUEUES).map(|i| format!("q-{i:02}")).collect()
}

/// Indexes of the cluster nodes that own the hash tag of some partition of `ledger` (plus
/// the worker registry's): a node answers a key it does not own with MOVED.
async fn owning_nodes(ledger: &Ledger) -> BTreeSet<usize> {
    let config = ledger.config();
    let keys = Keyspace::new(&config.namespace, config.partitions).unwrap();
    let mut probes: Vec<String> = (0..config.partitions)
        .map(|p| format!("{}:probe", keys.tag(p)))
        .collect();
    probes.push(keys.worker_index());
    let mut owners = BTreeSet::new();
    for (i, node) in support::cluster().nodes().iter().enumerate() {
        let client = redis::Client::open(node.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        for probe in &probes {
            let owned: redis::RedisResult<i64> =
                redis::cmd("EXISTS").arg(probe).query_async(&mut conn).await;
            if owned.is_ok() {
                owners.insert(i);
            }
        }
    }
    owners
}

/// A cluster ledger whose namespace has keys on all three masters (namespaces are
/// random, so a few may be tried).
async fn ledger_on_every_node(test_name: &str) -> Ledger {
    for _ in 0..20 {
        let ledger = support::cluster_ledger(test_name).await;
        if owning_nodes(&ledger).await.len() == 3 {
            return ledger;
        }
    }
    panic!("no namespace spread over all three nodes in 20 tries");
}

/// Keys of `namespace` stored on each node.
async fn keys_per_node(namespace: &str) -> Vec<usize> {
    let mut counts = Vec::new();
    for node in support::cluster().nodes() {
        let client = redis::Client::open(node.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let mut keys =
            redis::AsyncCommands::scan_match::<_, String>(&mut conn, format!("{{{namespace}:*"))
                .await
                .unwrap();
        let mut n = 0;
        while futures_util::StreamExt::next(&mut keys).await.is_some() {
            n += 1;
        }
        counts.push(n);
    }
    counts
}

/// The reasons each execution of `queue` went through, by id.
type Reasons = BTreeMap<String, Vec<String>>;

fn expected_reasons() -> Reasons {
    let list = |r: &[&str]| r.iter().map(|s| s.to_string()).collect();
    BTreeMap::from([
        (
            "a".into(),
            list(&["enqueued", "claimed", "started", "completed"]),
        ),
        (
            "c".into(),
            list(&[
                "enqueued",
                "claimed",
                "started",
                "retry_scheduled",
                "claimed",
                "started",
                "completed",
            ]),
        ),
        (
            "b".into(),
            list(&[
                "enqueued",
                "claimed",
                "started",
                "cancel_requested",
                "cancel_acknowledged",
            ]),
        ),
        ("d".into(), list(&["enqueued", "cancelled"])),
    ])
}

fn reasons_of(events: &[Event], queue: &str) -> Reasons {
    let mut reasons = Reasons::new();
    for event in events.iter().filter(|e| e.queue == queue) {
        let entry = reasons.entry(event.execution_id.clone()).or_default();
        entry.push(event.reason.clone());
    }
    reasons
}

/// One queue's life: `a` completes, `b` is cancelled while running and acknowledges, `c`
/// fails once and completes on retry, `d` is cancelled while queued. Ids sort in claim order
/// (pending work is ordered by time, then by id).
async fn lifecycle(ledger: &Ledger, queue: &str) {
    let w = "worker-1";
    for id in ["a", "b", "c", "d"] {
        let opts = EnqueueOptions::new()
            .id(id)
            .max_attempts(2)
            .backoff_base(Duration::ZERO);
        let enqueued = must(
            "enqueue",
            ledger.enqueue(queue, &json!({ "id": id }), opts).await,
        );
        assert!(enqueued.created);
    }
    let cancelled = must(
        "cancel queued",
        ledger.cancel(queue, "d", "not needed").await,
    );
    assert_eq!(cancelled, CancelOutcome::Cancelled);

    let a = must("claim", ledger.claim(queue, w).await).expect("a is available");
    assert_eq!((a.id(), a.attempt()), ("a", 1));
    let beat = Heartbeat::new()
        .progress("1")
        .checkpoint(json!({ "step": 1 }));
    let reply = must("heartbeat", ledger.heartbeat(&a.token, beat).await);
    assert!(!reply.should_stop());
    let running = must(
        "list running",
        ledger.list(queue, State::Running, None, 10).await,
    );
    assert_eq!(
        running
            .items
            .iter()
            .map(|e| e.id.as_str())
            .collect::<Vec<_>>(),
        ["a"]
    );
    let done = must(
        "complete",
        ledger.complete(&a.token, Some(&json!("ok"))).await,
    );
    assert_eq!(
        done,
        CompleteOutcome::Recorded {
            slot_released: true
        }
    );

    let b = must("claim", ledger.claim(queue, w).await).expect("b is available");
    assert_eq!(b.id(), "b");
    must(
        "heartbeat",
        ledger.heartbeat(&b.token, Heartbeat::new()).await,
    );
    let requested = must("cancel active", ledger.cancel(queue, "b", "stop").await);
    assert!(matches!(
        requested,
        CancelOutcome::Requested { already: false, .. }
    ));
    let reply = must(
        "heartbeat",
        ledger.heartbeat(&b.token, Heartbeat::new()).await,
    );
    assert_eq!(
        reply,
        HeartbeatReply::Ok {
            cancel_requested: true,
            cancel_reason: None,
        }
    );
    let acked = must("acknowledge", ledger.acknowledge_cancel(&b.token).await);
    assert_eq!(
        acked,
        CompleteOutcome::Recorded {
            slot_released: true
        }
    );

    let c = must("claim", ledger.claim(queue, w).await).expect("c is available");
    assert_eq!(c.id(), "c");
    let beat = Heartbeat::new().checkpoint(json!({ "step": 7 }));
    must("heartbeat", ledger.heartbeat(&c.token, beat).await);
    let failed = must("fail", ledger.fail(&c.token, "flaky", true).await);
    assert!(matches!(
        failed,
        FailOutcome::RetryScheduled {
            slot_released: true,
            ..
        }
    ));
    let retry = must("claim retry", ledger.claim(queue, w).await).expect("c is retried");
    assert_eq!((retry.id(), retry.attempt()), ("c", 2));
    assert_eq!(retry.checkpoint, Some(json!({ "step": 7 })));
    let stale = must(
        "stale heartbeat",
        ledger.heartbeat(&c.token, Heartbeat::new()).await,
    );
    assert!(matches!(
        stale,
        HeartbeatReply::StaleAttempt {
            current_attempt: 2,
            ..
        }
    ));
    must(
        "heartbeat",
        ledger.heartbeat(&retry.token, Heartbeat::new()).await,
    );
    let done = must("complete retry", ledger.complete(&retry.token, None).await);
    assert_eq!(
        done,
        CompleteOutcome::Recorded {
            slot_released: true
        }
    );
    assert!(must("claim", ledger.claim(queue, w).await).is_none());

    let expected = [
        ("a", State::Succeeded, 1),
        ("b", State::Cancelled, 1),
        ("c", State::Succeeded, 2),
        ("d", State::Cancelled, 0),
    ];
    for (id, state, attempt) in expected {
        let execution = must("get", ledger.get(queue, id).await);
        assert_eq!(
            (execution.state, execution.attempt),
            (state, attempt),
            "{queue}/{id}"
        );
        assert!(execution.stop.is_some(), "{queue}/{id} has stop metadata");
    }
    // Terminal listings are newest first; two finishes in one millisecond tie, so compare
    // them as sets.
    let listed = |state| async move {
        let page = must("list", ledger.list(queue, state, None, 10).await);
        page.items
            .into_iter()
            .map(|e| e.id)
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(
        listed(State::Succeeded).await,
        BTreeSet::from(["a".into(), "c".into()])
    );
    assert_eq!(
        listed(State::Cancelled).await,
        BTreeSet::from(["b".into(), "d".into()])
    );
    assert!(listed(State::Queued).await.is_empty());
    assert!(listed(State::Running).await.is_empty());
    assert_eq!(must("slots", ledger.slots_in_use(queue).await), 0);
    assert_eq!(must("pending", ledger.pending_count(queue).await), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_whole_api_works_on_a_cluster_across_all_partitions() {
    let ledger = ledger_on_every_node("cluster_api").await;
    let names = queue_names();
    let partitions: BTreeSet<u16> = names.iter().map(|q| ledger.partition_of(q)).collect();
    assert_eq!(partitions.len(), usize::from(ledger.config().partitions));

    futures_util::future::join_all(names.iter().map(|q| lifecycle(&ledger, q))).await;

    let mut events = Vec::new();
    for p in &partitions {
        events.extend(must(
            "read events",
            ledger.read_events(*p, None, 10_000).await,
        ));
    }
    for queue in &names {
        assert_eq!(
            reasons_of(&events, queue),
            expected_reasons(),
            "events of {queue}"
        );
    }
    let mut listed = must("queues", ledger.queues().await);
    listed.retain(|q| names.contains(q));
    assert_eq!(listed, names);

    let registration = WorkerRegistration::for_this_process("1.0", names.clone());
    let id = registration.worker_id.clone();
    must("register", ledger.register_worker(&registration).await);
    match ledger.register_worker(&registration).await {
        Err(Error::WorkerExists { .. }) => {}
        other => panic!("registering twice gave {other:?}"),
    }
    let running = vec![(names[0].clone(), "a".to_owned())];
    must(
        "worker heartbeat",
        ledger.worker_heartbeat(&id, &running).await,
    );
    let info = must("worker", ledger.worker(&id).await).expect("registered");
    assert_eq!((info.queues.len(), info.running), (QUEUES, running));
    let all = must("workers", ledger.workers().await);
    assert_eq!(all.iter().map(|w| &w.worker_id).collect::<Vec<_>>(), [&id]);
    must("deregister", ledger.deregister_worker(&id).await);
    assert!(must("worker", ledger.worker(&id).await).is_none());

    // The operator's reads span every partition, so every node.
    let status = must("watchdog status", unstuck::watchdog::status(&ledger).await);
    assert_eq!(
        status.partitions.len(),
        usize::from(ledger.config().partitions)
    );
    must(
        "watchdog activity",
        unstuck::watchdog::activity(&ledger, std::time::Duration::from_secs(600), 100).await,
    );
    let all_partitions: Vec<u16> = partitions.iter().copied().collect();
    let recent = must(
        "recent events",
        ledger.recent_events(all_partitions, 1000).await,
    );
    assert!(
        recent.len() >= names.len(),
        "{} recent events",
        recent.len()
    );
    let found = must(
        "find",
        ledger.find(&unstuck::Filter::default(), None, 1000).await,
    );
    assert!(
        found.items.len() >= names.len(),
        "{} found",
        found.items.len()
    );
    assert_eq!(
        must("overviews", ledger.queue_overviews().await).len(),
        listed.len()
    );
    must("slot holders", ledger.slot_holders().await);

    let per_node = keys_per_node(&ledger.config().namespace).await;
    assert!(
        per_node.iter().all(|n| *n > 0),
        "keys per node {per_node:?}"
    );
    let queues: Vec<&str> = names.iter().map(String::as_str).collect();
    support::invariants::assert_ok(&ledger, &queues).await;
}

// Cluster mode follows by non-blocking reads, stream by stream: the follower's cursors
// must be pinned when it starts, or it never sees an event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn following_events_on_a_cluster_sees_every_transition() {
    let ledger = ledger_on_every_node("cluster_follow").await;
    let names = queue_names();
    let mut follower = must("follow", ledger.follow_events(Vec::new()).await);
    futures_util::future::join_all(names.iter().map(|q| lifecycle(&ledger, q))).await;

    let wanted: usize = expected_reasons().values().map(Vec::len).sum::<usize>() * QUEUES;
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while seen.len() < wanted && tokio::time::Instant::now() < deadline {
        seen.extend(must("next batch", follower.next_batch().await));
    }
    assert_eq!(seen.len(), wanted, "events followed");
    for queue in &names {
        assert_eq!(
            reasons_of(&seen, queue),
            expected_reasons(),
            "followed events of {queue}"
        );
    }
}
