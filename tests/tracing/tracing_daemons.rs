//! `unstuck serve` and `unstuck watchdog` as processes, exporting to a local receiver:
//! the send, receive, settle and watchdog spans of executions driven over HTTP.

use std::time::Duration;

use serde_json::json;

use crate::daemon::{Daemon, borrowed, otel_env, post, serve, view};
use crate::otlp::{Receiver, Span};
use crate::support;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

fn one<'a>(spans: &'a [Span], name: &str, id: &str, extra: impl Fn(&Span) -> bool) -> &'a Span {
    let found: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == name && s.attr("messaging.message.id") == id && extra(s))
        .collect();
    assert_eq!(found.len(), 1, "one {name} span of {id}: {found:#?}");
    found[0]
}

/// The messaging attributes every span about an execution carries.
fn assert_message(span: &Span, queue: &str, id: &str, operation: &str) {
    assert_eq!(span.attr("messaging.system"), "unstuck", "{span:?}");
    assert_eq!(span.attr("messaging.destination.name"), queue, "{span:?}");
    assert_eq!(span.attr("messaging.message.id"), id, "{span:?}");
    assert_eq!(span.attr("messaging.operation.type"), operation, "{span:?}");
}

#[tokio::test]
async fn serve_and_the_watchdog_trace_an_execution_from_enqueue_to_remediation() {
    let receiver = Receiver::start().await;
    let namespace = support::namespace("trace_daemons");
    let serve_env = otel_env(&receiver, "trace-serve");
    let (mut server, base) = serve(&namespace, &borrowed(&serve_env)).await;
    let mut watchdog_env = otel_env(&receiver, "trace-watchdog");
    watchdog_env.push(("UNSTUCK_WATCHDOG__REPLICA_ID", "wd-trace".into()));
    watchdog_env.push(("UNSTUCK_WATCHDOG__MAX_POLL_INTERVAL", "50ms".into()));
    let mut watchdog = Daemon::start("watchdog", &namespace, &borrowed(&watchdog_env)).await;
    let http = reqwest::Client::new();
    let incoming = format!("00-{TRACE}-{PARENT}-01");

    // e4: cancelled while queued (a settle span of its own).
    let enqueue = |queue: &str| format!("{base}/v1/queues/{queue}/executions");
    post(&http, enqueue("tc"), Some(&incoming), json!({"id": "e4"})).await;
    post(
        &http,
        format!("{base}/v1/queues/tc/executions/e4/cancel"),
        None,
        json!({"reason": "not needed"}),
    )
    .await;
    // e1 is retried once by the watchdog (it never starts), then completes; e3 has one
    // attempt only and goes dead; e2's traceparent is malformed and ignored.
    let grace = json!({"start_grace": "300ms", "max_attempts": 2});
    post(
        &http,
        enqueue("tr"),
        Some(&incoming),
        json!({"id": "e1", "timings": grace}),
    )
    .await;
    let once = json!({"start_grace": "300ms", "max_attempts": 1});
    post(
        &http,
        enqueue("tr"),
        Some(&incoming),
        json!({"id": "e3", "timings": once}),
    )
    .await;
    post(
        &http,
        enqueue("tb"),
        Some("00-not-a-traceparent"),
        json!({"id": "e2"}),
    )
    .await;

    let stored = view(&http, &base, "tr", "e1").await["traceparent"]
        .as_str()
        .expect("e1 carries a traceparent")
        .to_owned();
    let parts: Vec<&str> = stored.split('-').collect();
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", TRACE, "01"),
        "{stored}"
    );
    let send_span_id = parts[2].to_owned();
    assert_ne!(
        send_span_id, PARENT,
        "the stored context is the send span's"
    );

    let claims = |queue: &str, max: u32| {
        let url = format!("{base}/v1/queues/{queue}/claims");
        let http = http.clone();
        async move {
            post(
                &http,
                url,
                None,
                json!({"worker_id": "w-trace", "max": max}),
            )
            .await
        }
    };
    let first = claims("tr", 2).await;
    let first = first["claims"].as_array().expect("claims").clone();
    assert_eq!(first.len(), 2, "{first:?}");
    for claim in &first {
        let id = claim["id"].as_str().unwrap();
        let view_tp = view(&http, &base, "tr", id).await["traceparent"].clone();
        assert_eq!(
            claim["traceparent"], view_tp,
            "a claim hands over the stored context"
        );
    }
    assert_eq!(first[0]["traceparent"], json!(stored));

    // The watchdog retries e1 (start grace) and kills e3: claim e1 again, complete it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let second = loop {
        let got = claims("tr", 1).await;
        if got["claims"].as_array().is_some_and(|c| !c.is_empty()) {
            break got["claims"][0].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "e1 was never retried"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (second["id"].as_str(), second["attempt"].as_u64()),
        (Some("e1"), Some(2))
    );
    assert_eq!(second["traceparent"], json!(stored));
    let token = second["token"].as_str().unwrap();
    post(
        &http,
        format!("{base}/v1/attempts/complete"),
        None,
        json!({"token": token}),
    )
    .await;

    let bad = claims("tb", 1).await["claims"][0].clone();
    let bad_view = view(&http, &base, "tb", "e2").await;
    assert_eq!(bad["traceparent"], bad_view["traceparent"]);

    let spans = receiver
        .wait_for("the spans of both daemons", |spans| {
            let has = |name: &str, id: &str| {
                spans
                    .iter()
                    .any(|s| s.name == name && s.attr("messaging.message.id") == id)
            };
            has("settle tr", "e1")
                && has("dead tr", "e3")
                && has("retry tr", "e1")
                && has("settle tc", "e4")
                && spans.iter().filter(|s| s.name == "receive tr").count() >= 3
        })
        .await;
    let stored_link = (TRACE.to_owned(), send_span_id.clone());

    // send: a PRODUCER child of the enqueue's traceparent.
    let send = one(&spans, "send tr", "e1", |_| true);
    assert_eq!(send.service, "trace-serve");
    assert_eq!((send.kind, send.trace_id.as_str()), (4, TRACE), "{send:?}");
    assert_eq!(send.parent_span_id, PARENT);
    assert_eq!(send.span_id, send_span_id);
    assert_message(send, "tr", "e1", "send");
    assert_eq!(send.attr("unstuck.enqueue.outcome"), "created");

    // receive: one per claim, linked to the stored context.
    for attempt in ["1", "2"] {
        let receive = one(&spans, "receive tr", "e1", |s| {
            s.attr("unstuck.attempt") == attempt
        });
        assert_eq!(receive.kind, 3, "{receive:?}");
        assert_eq!(receive.links, vec![stored_link.clone()], "{receive:?}");
        assert_message(receive, "tr", "e1", "receive");
    }

    // settle: the completion and the cancel, linked to their stored contexts.
    let settle = one(&spans, "settle tr", "e1", |_| true);
    assert_eq!(settle.kind, 3);
    assert_eq!(settle.links, vec![stored_link.clone()]);
    assert_message(settle, "tr", "e1", "settle");
    assert_eq!(settle.attr("messaging.operation.name"), "complete");
    assert_eq!(settle.attr("unstuck.attempt"), "2");
    let cancel = one(&spans, "settle tc", "e4", |_| true);
    assert_eq!(cancel.attr("messaging.operation.name"), "cancel");
    let e4_send = one(&spans, "send tc", "e4", |_| true);
    assert_eq!(
        cancel.links,
        vec![(TRACE.to_owned(), e4_send.span_id.clone())]
    );

    // The watchdog's actions: from its own process, with its replica and epoch.
    let retry = one(&spans, "retry tr", "e1", |_| true);
    assert_eq!(retry.service, "trace-watchdog");
    assert_eq!(retry.kind, 1);
    assert_eq!(retry.links, vec![stored_link.clone()]);
    assert_message(retry, "tr", "e1", "settle");
    assert_eq!(retry.attr("unstuck.attempt"), "1");
    assert_eq!(retry.attr("unstuck.reason"), "start_timeout");
    assert_eq!(retry.attr("unstuck.state.from"), "dispatched");
    assert_eq!(retry.attr("unstuck.state.to"), "queued");
    assert_eq!(retry.attr("unstuck.watchdog.replica"), "wd-trace");
    assert!(
        retry.attr("unstuck.watchdog.epoch").parse::<u64>().is_ok(),
        "{retry:?}"
    );
    let dead = one(&spans, "dead tr", "e3", |_| true);
    let e3_send = one(&spans, "send tr", "e3", |_| true);
    assert_eq!(
        dead.links,
        vec![(TRACE.to_owned(), e3_send.span_id.clone())]
    );
    assert_eq!(dead.attr("unstuck.stop_reason"), "start_timeout");
    assert_eq!(dead.attr("unstuck.reason"), "attempts_exhausted");
    assert_eq!(dead.attr("unstuck.state.to"), "dead");
    assert_eq!(dead.attr("unstuck.watchdog.replica"), "wd-trace");

    // The malformed traceparent was ignored: e2's send span starts a trace of its own,
    // and its context is the one stored.
    let e2_send = one(&spans, "send tb", "e2", |_| true);
    assert_eq!(e2_send.parent_span_id, "", "{e2_send:?}");
    assert_ne!(e2_send.trace_id, TRACE);
    assert_eq!(
        bad_view["traceparent"],
        json!(format!("00-{}-{}-01", e2_send.trace_id, e2_send.span_id))
    );
    assert!(
        server
            .log()
            .iter()
            .any(|l| l.contains("ignoring a malformed traceparent header")),
        "{:?}",
        server.log()
    );

    assert!(server.stop().await.success());
    assert!(watchdog.stop().await.success());
    assert_eq!(*receiver.refused.lock().unwrap(), Vec::<String>::new());
}

#[tokio::test]
async fn without_the_variables_nothing_is_exported_and_everything_works() {
    // A receiver on the OTLP default port, when it is free, catches a stray export.
    let default_port = Receiver::on("127.0.0.1:4318").await.ok();
    let namespace = support::namespace("trace_off");
    let (mut server, base) = serve(&namespace, &[]).await;
    let mut watchdog = Daemon::start(
        "watchdog",
        &namespace,
        &[("UNSTUCK_WATCHDOG__MAX_POLL_INTERVAL", "50ms")],
    )
    .await;
    let http = reqwest::Client::new();
    let incoming = format!("00-{TRACE}-{PARENT}-01");
    let once = json!({"start_grace": "200ms", "max_attempts": 1});
    let url = format!("{base}/v1/queues/off/executions");
    post(
        &http,
        url,
        Some(&incoming),
        json!({"id": "o1", "timings": once}),
    )
    .await;
    // Without spans the caller's context is stored as it came, and handed over as is.
    assert_eq!(
        view(&http, &base, "off", "o1").await["traceparent"],
        json!(incoming)
    );
    let got = post(
        &http,
        format!("{base}/v1/queues/off/claims"),
        None,
        json!({"worker_id": "w"}),
    )
    .await;
    assert_eq!(got["claims"][0]["traceparent"], json!(incoming));
    support::wait_until(Duration::from_secs(20), "o1 dead", || {
        let (http, base) = (http.clone(), base.clone());
        async move { view(&http, &base, "off", "o1").await["state"] == "dead" }
    })
    .await;
    let url = format!("{base}/v1/queues/off/executions");
    post(&http, url, None, json!({"id": "o2"})).await;
    assert_eq!(
        view(&http, &base, "off", "o2").await.get("traceparent"),
        None
    );

    assert!(server.stop().await.success());
    assert!(watchdog.stop().await.success());
    for log in [server.log(), watchdog.log()] {
        assert!(!log.iter().any(|l| l.contains("exporting")), "{log:?}");
    }
    if let Some(receiver) = default_port {
        assert_eq!(receiver.spans().len(), 0);
        assert_eq!(*receiver.refused.lock().unwrap(), Vec::<String>::new());
    }
}
