//! The worker registry: register under an id unique per process start, heartbeat with the
//! executions held, deregister; ids are never reused while registered.

use crate::ledger_common;
use crate::support;

use unstuck::error::Error;
use unstuck::*;

use ledger_common::{raw, server_ms, wait_for_server_after};

#[test]
fn registration_ids_are_fresh_per_call() {
    let a = WorkerRegistration::for_this_process("1.2.3", vec!["q".into()]);
    let b = WorkerRegistration::for_this_process("1.2.3", vec!["q".into()]);
    assert_ne!(a.worker_id, b.worker_id);
    assert_eq!(a.pid, std::process::id());
    assert_eq!(
        (a.version.as_str(), a.queues.clone()),
        ("1.2.3", vec!["q".to_owned()])
    );
    for reg in [&a, &b] {
        unstuck::names::validate_worker_id(&reg.worker_id).unwrap();
        assert!(
            reg.worker_id.contains(&format!("-{}-", a.pid)),
            "{}",
            reg.worker_id
        );
    }
}

#[tokio::test]
async fn register_heartbeat_list_and_deregister() {
    let ledger = support::ledger("reg_life").await;
    let mut conn = raw().await;
    assert!(ledger.workers().await.unwrap().is_empty());
    let reg = WorkerRegistration::for_this_process("1.0.0", vec!["emails".into(), "pdf".into()])
        .heartbeat_interval(std::time::Duration::from_secs(5));
    let t0 = server_ms(&mut conn).await;
    let registered_at = ledger.register_worker(&reg).await.unwrap();
    let t1 = server_ms(&mut conn).await;
    assert!((t0..=t1).contains(&registered_at.timestamp_millis()));

    let info = ledger.worker(&reg.worker_id).await.unwrap().unwrap();
    assert_eq!(
        info,
        WorkerInfo {
            worker_id: reg.worker_id.clone(),
            host: reg.host.clone(),
            pid: reg.pid,
            version: "1.0.0".into(),
            queues: vec!["emails".into(), "pdf".into()],
            registered_at,
            last_seen_at: registered_at,
            running: Vec::new(),
            held: Vec::new(),
            heartbeat_interval: Some(std::time::Duration::from_secs(5)),
            remediation: WorkerRemediation::default(),
        }
    );

    // The same id again is refused and leaves the first registration alone.
    let mut twin = reg.clone();
    twin.version = "2.0.0".into();
    match ledger.register_worker(&twin).await {
        Err(Error::WorkerExists { worker_id }) => assert_eq!(worker_id, reg.worker_id),
        other => panic!("expected WorkerExists, got {other:?}"),
    }
    assert_eq!(ledger.worker(&reg.worker_id).await.unwrap().unwrap(), info);

    // A heartbeat stores the running list and moves last_seen_at on.
    wait_for_server_after(&conn, registered_at.timestamp_millis()).await;
    let running = vec![
        ("emails".to_owned(), "e-1".to_owned()),
        ("pdf".to_owned(), "p:7".to_owned()),
    ];
    let seen = ledger
        .worker_heartbeat(&reg.worker_id, &running)
        .await
        .unwrap();
    assert!(seen > registered_at);
    let info = ledger.worker(&reg.worker_id).await.unwrap().unwrap();
    assert_eq!(info.last_seen_at, seen);
    assert_eq!(info.registered_at, registered_at);
    assert_eq!(info.running, running);
    ledger.worker_heartbeat(&reg.worker_id, &[]).await.unwrap();
    let info = ledger.worker(&reg.worker_id).await.unwrap().unwrap();
    assert!(info.running.is_empty());

    // workers() lists every registered worker, sorted by id.
    let other = WorkerRegistration::for_this_process("1.0.0", vec![]);
    ledger.register_worker(&other).await.unwrap();
    let mut ids = vec![reg.worker_id.clone(), other.worker_id.clone()];
    ids.sort();
    let listed: Vec<String> = ledger
        .workers()
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.worker_id)
        .collect();
    assert_eq!(listed, ids);

    ledger.deregister_worker(&reg.worker_id).await.unwrap();
    assert_eq!(ledger.worker(&reg.worker_id).await.unwrap(), None);
    let listed: Vec<String> = ledger
        .workers()
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.worker_id)
        .collect();
    assert_eq!(listed, vec![other.worker_id.clone()]);
    match ledger.deregister_worker(&reg.worker_id).await {
        Err(Error::UnknownWorker { worker_id }) => assert_eq!(worker_id, reg.worker_id),
        other => panic!("expected UnknownWorker, got {other:?}"),
    }
    // A deregistered worker's heartbeat is refused, and does not bring it back.
    match ledger.worker_heartbeat(&reg.worker_id, &[]).await {
        Err(Error::UnknownWorker { worker_id }) => assert_eq!(worker_id, reg.worker_id),
        other => panic!("expected UnknownWorker, got {other:?}"),
    }
    assert_eq!(ledger.worker(&reg.worker_id).await.unwrap(), None);
    assert_eq!(ledger.workers().await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_unknown_worker_cannot_heartbeat() {
    let ledger = support::ledger("reg_unknown").await;
    match ledger.worker_heartbeat("never-registered", &[]).await {
        Err(Error::UnknownWorker { worker_id }) => assert_eq!(worker_id, "never-registered"),
        other => panic!("expected UnknownWorker, got {other:?}"),
    }
    assert!(ledger.workers().await.unwrap().is_empty());
    assert!(ledger_common::namespace_keys(&ledger).await.is_empty());
}

#[tokio::test]
async fn namespaces_keep_separate_registries() {
    let a = support::ledger("reg_ns_a").await;
    let b = support::ledger("reg_ns_b").await;
    let reg = WorkerRegistration::for_this_process("1", vec![]);
    a.register_worker(&reg).await.unwrap();
    assert_eq!(a.workers().await.unwrap().len(), 1);
    assert!(b.workers().await.unwrap().is_empty());
    assert!(matches!(
        b.worker_heartbeat(&reg.worker_id, &[]).await,
        Err(Error::UnknownWorker { .. })
    ));
}
