//! The library exporting from this process (`unstuck::otel::init`): the spans of an
//! enqueue, claims, a failure, a completion and a watchdog round.

use std::time::Duration;

use serde_json::json;
use unstuck::otel::{OtlpConfig, TraceParent};
use unstuck::watchdog::{Watchdog, WatchdogConfig};
use unstuck::{EnqueueOptions, FailOutcome, Heartbeat, State, WorkerRegistration};

use crate::otlp::Receiver;
use crate::support;

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT: &str = "b7ad6b7169203331";

// Multi-threaded: flushing the exporter blocks a thread until its task has sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_traces_enqueue_claims_settlements_and_watchdog_rounds() {
    let receiver = Receiver::start().await;
    let tracing = unstuck::otel::init(OtlpConfig {
        traces_endpoint: format!("{}/v1/traces", receiver.url),
        json: true,
        service_name: "trace-library".into(),
    })
    .expect("the exporter starts");
    let ledger = support::ledger("trace_library").await;
    let incoming: TraceParent = format!("00-{TRACE}-{PARENT}-01").parse().expect("valid");
    let opts = EnqueueOptions::new()
        .id("l1")
        .traceparent(incoming)
        .start_grace(Duration::from_millis(100))
        .max_attempts(3);
    ledger
        .enqueue("lib", &json!({}), opts)
        .await
        .expect("enqueue");
    let stored = ledger
        .get("lib", "l1")
        .await
        .expect("get")
        .traceparent
        .expect("stored");
    let stored: TraceParent = stored.parse().expect("stored in the W3C form");
    assert_eq!(stored.trace_id(), incoming.trace_id());
    assert_ne!(
        stored.span_id(),
        incoming.span_id(),
        "the send span's context"
    );

    // Attempt 1 fails (retryable); attempt 2 is lost (never started) and retried by a
    // watchdog round; attempt 3 completes.
    let claim = ledger.claim("lib", "w").await.expect("claim").expect("one");
    assert_eq!(claim.traceparent, Some(stored));
    let failed = ledger
        .fail(&claim.token, "flaky", true)
        .await
        .expect("fail");
    assert!(
        matches!(failed, FailOutcome::RetryScheduled { .. }),
        "{failed:?}"
    );
    let mut claim = None;
    support::wait_until(Duration::from_secs(10), "attempt 2", || {
        let ledger = ledger.clone();
        async move { ledger.get("lib", "l1").await.unwrap().state == State::Queued }
    })
    .await;
    while claim.is_none() {
        claim = ledger.claim("lib", "w").await.expect("claim");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let config = WatchdogConfig {
        replica_id: Some("wd-lib".into()),
        lease_ttl: Duration::from_secs(60),
        systemic_share: 1.0,
        worker_timeout: Duration::from_millis(200),
        ..WatchdogConfig::default()
    };
    let wd = Watchdog::new(ledger.clone(), config).expect("config");
    wd.rebalance().await.expect("leases");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let partition = ledger.partition_of("lib");
    let report = wd.round(partition).await.expect("round");
    assert_eq!(report.retried, 1, "{report:?}");
    let claim = loop {
        if let Some(c) = ledger.claim("lib", "w").await.expect("claim") {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(claim.attempt(), 3);
    ledger.complete(&claim.token, None).await.expect("complete");

    // Reconciliation: the worker of l2 vanished from the registry; its attempt is
    // orphaned, a `retry` span with reason worker_lost.
    let registration = WorkerRegistration::for_this_process("v1", vec!["orph".into()]);
    ledger
        .register_worker(&registration)
        .await
        .expect("register");
    let opts = EnqueueOptions::new().id("l2").traceparent(incoming);
    ledger
        .enqueue("orph", &json!({}), opts)
        .await
        .expect("enqueue");
    let orphan = ledger
        .claim("orph", &registration.worker_id)
        .await
        .expect("claim")
        .expect("one");
    ledger
        .heartbeat(&orphan.token, Heartbeat::new())
        .await
        .expect("beat");
    tokio::time::sleep(Duration::from_millis(250)).await;
    let report = wd
        .reconcile(ledger.partition_of("orph"))
        .await
        .expect("reconcile")
        .expect("registry readable");
    assert_eq!(report.orphaned, 1, "{report:?}");
    tracing.flush().await;

    let spans = receiver
        .wait_for("the library's spans", |s| {
            s.iter().any(|s| s.name == "retry lib")
                && s.iter().any(|s| s.name == "retry orph")
                && s.iter().filter(|s| s.name == "settle lib").count() >= 2
        })
        .await;
    let link = vec![(TRACE.to_owned(), hex(&stored.span_id()))];
    let named = |name: &str| spans.iter().filter(|s| s.name == name).collect::<Vec<_>>();
    let send = named("send lib");
    assert_eq!(send.len(), 1, "{send:?}");
    assert_eq!((send[0].parent_span_id.as_str(), send[0].kind), (PARENT, 4));
    assert_eq!(send[0].service, "trace-library");
    let receives = named("receive lib");
    assert_eq!(receives.len(), 3, "{receives:?}");
    assert!(receives.iter().all(|r| r.links == link), "{receives:?}");
    let mut settles: Vec<_> = named("settle lib")
        .iter()
        .map(|s| {
            (
                s.attr("messaging.operation.name").to_owned(),
                s.attr("unstuck.attempt").to_owned(),
                s.links.clone(),
            )
        })
        .collect();
    settles.sort();
    assert_eq!(
        settles,
        vec![
            ("complete".into(), "3".into(), link.clone()),
            ("fail".into(), "1".into(), link.clone()),
        ]
    );
    let retry = named("retry lib");
    assert_eq!(retry.len(), 1, "{retry:?}");
    assert_eq!(retry[0].links, link);
    assert_eq!(retry[0].attr("unstuck.attempt"), "2");
    assert_eq!(retry[0].attr("unstuck.watchdog.replica"), "wd-lib");
    assert_eq!(retry[0].attr("unstuck.partition"), partition.to_string());
    let orphaned = named("retry orph");
    assert_eq!(orphaned.len(), 1, "{orphaned:?}");
    assert_eq!(orphaned[0].attr("unstuck.reason"), "worker_lost");
    assert_eq!(orphaned[0].attr("unstuck.state.from"), "running");
    assert_eq!(orphaned[0].attr("messaging.message.id"), "l2");
    let l2_send = spans
        .iter()
        .find(|s| s.name == "send orph")
        .expect("l2's send span");
    assert_eq!(
        orphaned[0].links,
        vec![(TRACE.to_owned(), l2_send.span_id.clone())]
    );
    tracing.shutdown().await;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
