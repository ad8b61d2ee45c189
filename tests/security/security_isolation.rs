//! Namespace isolation: two tenants on one Redis, with the same queue names, execution
//! ids and worker ids. Nothing tenant A does through any public call — writes, reads,
//! tokens, the worker registry, events, claim waits, a watchdog's rounds and pruning —
//! is visible to tenant B or changes B's executions; and a namespace cannot escape its
//! hash tag or reach into another's keys by its name.

use crate::security_common;

use std::time::Duration;

use security_common::*;
use serde_json::json;
use unstuck::error::Error;
use unstuck::*;

const Q: &str = "jobs";
const IDS: [&str; 4] = ["e1", "e2", "e3", "e4"];

/// Everything B's public read calls report, as text; equal before and after A's calls
/// means A changed nothing B can see. (Ages and the reading's own instant are left out.)
async fn snapshot(l: &Ledger) -> String {
    let mut s = String::new();
    for id in IDS.iter().chain(&["only-b", "e1-again", "b0"]) {
        s += &format!(
            "{id}: {:?}\n",
            l.get(Q, id).await.map_err(|e| e.to_string())
        );
    }
    for state in State::ALL {
        let page = l.list(Q, state, None, 100).await.unwrap();
        let ids: Vec<&str> = page.items.iter().map(|e| e.id.as_str()).collect();
        s += &format!("{state:?}: {ids:?}\n");
    }
    let all = l.find(&Filter::default(), None, 1000).await.unwrap();
    let found: Vec<(&str, &str, State)> = all
        .items
        .iter()
        .map(|e| (e.queue.as_str(), e.id.as_str(), e.state))
        .collect();
    s += &format!("find: {found:?}\n");
    for o in l.queue_overviews().await.unwrap() {
        s += &format!(
            "{} {} {} {} {} {:?}\n",
            o.name, o.depth, o.available, o.active, o.capacity, o.finished
        );
    }
    s += &format!("queues: {:?}\n", l.queues().await.unwrap());
    s += &format!("settings: {:?}\n", l.queue_settings(Q).await.unwrap());
    let workers: Vec<String> = l
        .workers()
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.worker_id)
        .collect();
    s += &format!(
        "workers: {workers:?} holders: {:?}\n",
        l.slot_holders()
            .await
            .unwrap()
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>()
    );
    for p in 0..l.config().partitions {
        s += &format!(
            "events {p}: {}\n",
            l.read_events(p, None, 1000).await.unwrap().len()
        );
    }
    s += &format!(
        "recent: {}\n",
        l.recent_events(Vec::new(), 1000).await.unwrap().len()
    );
    let status = unstuck::watchdog::status(l).await.unwrap();
    let owners: Vec<Option<String>> = status.partitions.iter().map(|p| p.owner.clone()).collect();
    s += &format!(
        "owners: {owners:?} replicas: {} totals: {:?}\n",
        status.replicas.len(),
        status.totals
    );
    s
}

/// Tenant B's follower saw nothing for a while.
async fn quiet(follower: &mut EventFollower) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
    while tokio::time::Instant::now() < deadline {
        let batch = follower.next_batch().await.expect("next_batch");
        assert!(batch.is_empty(), "B sees none of A's events: {batch:?}");
    }
}

#[tokio::test]
async fn nothing_one_tenant_does_is_seen_or_changes_anything_of_the_other() {
    let redis = server();
    let connect = |namespace: &'static str| {
        let url = redis.url().to_owned();
        async move {
            Ledger::connect(config(&url, namespace))
                .await
                .expect("connects")
        }
    };
    let (a, b) = (connect("tenant-a").await, connect("tenant-b").await);
    let short = || {
        EnqueueOptions::new()
            .heartbeat_timeout(Duration::from_millis(100))
            .stuck_threshold(Duration::ZERO)
            .max_attempts(3)
    };

    // Both tenants set up the same names: queue, ids, a worker; B runs e1, holds e2 running.
    for (l, tenant, capacity) in [(&a, "a", 3), (&b, "b", 5)] {
        let settings = QueueSettings {
            capacity: Some(capacity),
            ..Default::default()
        };
        l.set_queue(Q, &settings).await.unwrap();
        for id in IDS {
            let e = l
                .enqueue(Q, &json!({"tenant": tenant}), short().id(id))
                .await
                .unwrap();
            assert!(e.created, "{tenant}/{id} is new in its own namespace");
        }
    }
    b.enqueue(
        Q,
        &json!({"tenant": "b"}),
        EnqueueOptions::new().id("only-b"),
    )
    .await
    .unwrap();
    let b_claim = b.claim(Q, "w1").await.unwrap().expect("B claims e1");
    b.complete(&b_claim.token, None).await.unwrap();
    let b_running = b.claim(Q, "w1").await.unwrap().expect("B claims e2");
    let wb = WorkerRegistration {
        worker_id: "w1".into(),
        ..WorkerRegistration::for_this_process("1", vec![Q.into()])
    };
    b.register_worker(&wb).await.unwrap();
    // Both tenants have a running execution whose heartbeats stopped: only A has a watchdog.
    for l in [&a, &b] {
        l.enqueue("lossy", &json!({}), short().id("lost"))
            .await
            .unwrap();
    }
    let b_lost = b
        .claim("lossy", "w3")
        .await
        .unwrap()
        .expect("B claims its lost");
    b.heartbeat(&b_lost.token, Heartbeat::new()).await.unwrap();
    let before = snapshot(&b).await;
    let mut follower = b.follow_events(Vec::new()).await.unwrap();
    let b_waits = tokio::spawn({
        let b = b.clone();
        async move { b.claim_wait("waits", "w9", 1, Duration::from_secs(2)).await }
    });

    // A reads only its own: its payloads, its queue settings; B's ids are unknown to it.
    assert_eq!(
        a.get(Q, "e1").await.unwrap().payload,
        json!({"tenant": "a"})
    );
    assert_eq!(a.queue_settings(Q).await.unwrap().capacity, Some(3));
    assert!(a.get(Q, "only-b").await.unwrap_err().is_not_found());
    assert!(a.cancel(Q, "only-b", "x").await.unwrap_err().is_not_found());
    assert!(
        a.retry(Q, "only-b", None, "x")
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(a.pin(Q, "only-b").await.unwrap_err().is_not_found());
    assert!(
        a.workers().await.unwrap().is_empty(),
        "B's worker is not A's"
    );
    assert!(
        a.find(&Filter::default(), None, 1000)
            .await
            .unwrap()
            .items
            .iter()
            .all(|e| e.id != "only-b")
    );

    // B's attempt token does nothing in A, though A has the same queue, id and attempt.
    let a_claim = a.claim(Q, "w1").await.unwrap().expect("A claims e1");
    assert_eq!(
        (a_claim.id(), a_claim.attempt()),
        (b_claim.id(), b_claim.attempt())
    );
    for refused in [
        a.heartbeat(&b_running.token, Heartbeat::new()).await.err(),
        a.complete(&b_running.token, None).await.err(),
        a.fail(&b_running.token, "x", false).await.err(),
        a.acknowledge_cancel(&b_running.token).await.err(),
    ] {
        assert!(
            matches!(
                refused,
                Some(Error::TokenMismatch { .. }) | Some(Error::InvalidTransition { .. })
            ),
            "{refused:?}"
        );
    }
    // B's e1 has finished: A's token for it is told so (as any late heartbeat is) and
    // changes nothing (the snapshot below compares all of B).
    let crossed = b.heartbeat(&a_claim.token, Heartbeat::new()).await;
    assert!(
        matches!(
            crossed,
            Ok(HeartbeatReply::Terminal { .. }) | Err(Error::TokenMismatch { .. })
        ),
        "{crossed:?}"
    );

    // A does everything else with the same names.
    a.heartbeat(&a_claim.token, Heartbeat::new().progress("1/2"))
        .await
        .unwrap();
    a.complete(&a_claim.token, Some(&json!({"r": "a"})))
        .await
        .unwrap();
    let next = a.claim(Q, "w1").await.unwrap().expect("A claims e2");
    a.fail(&next.token, "boom", false).await.unwrap();
    a.retry(Q, "e2", Some("e1-again"), "again").await.unwrap();
    a.cancel(Q, "e3", "not needed").await.unwrap();
    a.pin(Q, "e1").await.unwrap();
    a.unpin(Q, "e1").await.unwrap();
    let payload = json!({"tenant": "a"});
    let items = ["b0", "only-b"].map(|id| (&payload, EnqueueOptions::new().id(id)));
    assert!(
        a.enqueue_many(Q, items)
            .await
            .unwrap()
            .iter()
            .all(|e| e.created),
        "B's ids are free in A"
    );
    let batch = a.claim_many(Q, "w1", 2).await.unwrap();
    a.complete_and_claim(&batch.claims[0].token, None, "w1", 1)
        .await
        .unwrap();
    a.enqueue("waits", &json!({}), EnqueueOptions::new().id("late"))
        .await
        .unwrap();
    a.set_queue(
        Q,
        &QueueSettings {
            capacity: Some(1),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let wa = WorkerRegistration {
        worker_id: "w1".into(),
        ..WorkerRegistration::for_this_process("1", vec![Q.into()])
    };
    a.register_worker(&wa)
        .await
        .expect("the same worker id registers in A");
    a.worker_heartbeat("w1", &[]).await.unwrap();
    a.deregister_worker("w1").await.unwrap();
    a.prune_workers(Duration::ZERO, 100).await.unwrap();

    // A's watchdog: A's lost attempt is retried and A's finished executions are pruned.
    let lost = a
        .claim("lossy", "w3")
        .await
        .unwrap()
        .expect("A claims its lost");
    a.heartbeat(&lost.token, Heartbeat::new()).await.unwrap();
    let wd = replica(&a, "a-replica").await;
    let lp = a.partition_of("lossy");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while a.get("lossy", "lost").await.unwrap().attempt == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "A's watchdog retries A's lost"
        );
        wd.round(lp).await.unwrap();
        wd.reconcile(lp).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut pruned = 0;
    for p in 0..a.config().partitions {
        pruned += wd.prune(p).await.unwrap().pruned;
    }
    assert!(pruned >= 2, "A's succeeded e1 and e4 are pruned: {pruned}");
    assert!(
        a.get(Q, "e1").await.unwrap_err().is_not_found(),
        "A's e1 is pruned"
    );

    // B saw and lost nothing: its wait was not woken, its follower is quiet, and every
    // read reports what it did before. B's own e2 is still held as claimed.
    let woken = b_waits.await.unwrap().unwrap();
    assert!(
        woken.claims.is_empty(),
        "B's claim wait is not woken by A's enqueue"
    );
    quiet(&mut follower).await;
    assert_eq!(snapshot(&b).await, before);
    assert_eq!(b.get(Q, "e2").await.unwrap().state, State::Dispatched);
    assert_eq!(
        b.get(Q, "e1").await.unwrap().state,
        State::Succeeded,
        "not pruned by A"
    );
    let b_lost = b.get("lossy", "lost").await.unwrap();
    assert_eq!(
        (b_lost.state, b_lost.attempt),
        (State::Running, 1),
        "A's watchdog left B's be"
    );
    wd.release_all().await.unwrap();

    // Every key in Redis belongs to one of the two namespaces, behind its hash tag.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut admin(redis.url()).await)
        .await
        .unwrap();
    assert!(!keys.is_empty());
    for key in keys {
        assert!(
            key.starts_with("{tenant-a:") || key.starts_with("{tenant-b:"),
            "{key}"
        );
    }
}

#[tokio::test]
async fn a_namespace_cannot_escape_its_hash_tag_or_reach_another_by_name() {
    for bad in [
        "a}",
        "{a",
        "a}{b",
        "a:b",
        "a*",
        "a?",
        "a b",
        "a/b",
        "",
        &"n".repeat(65),
    ] {
        let config = config("redis://127.0.0.1:1/", bad);
        match config.validate() {
            Err(Error::InvalidName { what, .. }) => assert_eq!(what, "namespace"),
            other => panic!("namespace {bad:?} accepted: {other:?}"),
        }
        // Refused before connecting (nothing listens on port 1).
        assert!(matches!(
            Ledger::connect(config).await,
            Err(Error::InvalidName { .. })
        ));
    }
    // A namespace is cut by ':' inside the tag, so the ACL pattern of `tenant` does not
    // cover `tenant-a`, though one name starts with the other.
    let redis = server();
    let mut admin = admin(redis.url()).await;
    add_user(&mut admin, "t", "t-pw", &acl_rules("tenant", &[])).await;
    let url = url("redis", "t:t-pw", redis.port());
    assert!(Ledger::connect(config(&url, "tenant")).await.is_ok());
    match Ledger::connect(config(&url, "tenant-a")).await {
        Err(Error::Permission { keys, .. }) => assert!(!keys.is_empty()),
        other => panic!("expected Permission, got {other:?}"),
    }
}
