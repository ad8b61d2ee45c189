//! Bad input is refused with a typed error that names what was wrong, and nothing is
//! written: no key appears in a fresh namespace, no byte changes in a used one.

use crate::ledger_common;
use crate::support;

use std::time::Duration;

use serde_json::json;
use unstuck::error::Error;
use unstuck::*;

use ledger_common::{namespace_keys, raw, running};

/// Asserts that `$call` failed with an error matching `$pat`.
macro_rules! refused {
    ($call:expr, $pat:pat) => {
        match $call {
            Err($pat) => {}
            other => panic!(
                "{}: expected {}, got {:?}",
                stringify!($call),
                stringify!($pat),
                other
            ),
        }
    };
}

const BAD_NAMES: [&str; 8] = [
    "",
    "a/b",
    "has space",
    "{tag}",
    "naïve",
    "line\nbreak",
    "star*",
    "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789",
];

const YEAR_AND_A_DAY: Duration = Duration::from_secs(366 * 24 * 3600);

/// Every key of the namespace with its `DUMP`, to show that nothing changed at all.
pub(crate) async fn snapshot(ledger: &Ledger) -> Vec<(String, Vec<u8>)> {
    let mut conn = raw().await;
    let mut out = Vec::new();
    for key in namespace_keys(ledger).await {
        let dump: Vec<u8> = redis::cmd("DUMP")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        out.push((key, dump));
    }
    out
}

/// Options that each break one timing rule, with the key the error must name.
fn bad_options() -> Vec<(&'static str, EnqueueOptions)> {
    let o = EnqueueOptions::new;
    vec![
        ("heartbeat_timeout", o().heartbeat_timeout(Duration::ZERO)),
        ("start_grace", o().start_grace(Duration::ZERO)),
        (
            "heartbeat_timeout",
            o().heartbeat_timeout(Duration::from_micros(500)),
        ),
        ("deadline", o().deadline(Duration::from_micros(1500))),
        ("backoff_base", o().backoff_base(Duration::from_nanos(1))),
        ("deadline", o().deadline(YEAR_AND_A_DAY)),
        ("stuck_threshold", o().stuck_threshold(YEAR_AND_A_DAY)),
        ("delay", o().delay(YEAR_AND_A_DAY)),
        ("max_attempts", o().max_attempts(0)),
        ("max_attempts", o().max_attempts(1001)),
    ]
}

fn assert_names_key(error: Error, key: &str) {
    match &error {
        Error::InvalidArgument { name: k, .. } => assert_eq!(k, key, "{error}"),
        other => panic!("expected an error naming {key}, got {other:?}"),
    }
    assert!(error.to_string().contains(key), "{error}");
    assert!(!error.is_transient());
}

#[tokio::test]
async fn refused_calls_leave_a_fresh_namespace_empty() {
    let ledger = support::ledger_with("bad_fresh", |c| c.max_payload_bytes = 64).await;
    let ok = EnqueueOptions::new;
    let payload = json!({"fine": true});
    for name in BAD_NAMES {
        refused!(
            ledger.enqueue(name, &payload, ok()).await,
            Error::InvalidName {
                what: "queue name",
                ..
            }
        );
        refused!(
            ledger.enqueue("q", &payload, ok().id(name)).await,
            Error::InvalidName {
                what: "execution id",
                ..
            }
        );
        refused!(
            ledger.enqueue_json(name, "{}", ok()).await,
            Error::InvalidName { .. }
        );
        refused!(
            ledger.claim_many(name, "w", 1).await,
            Error::InvalidName { .. }
        );
        refused!(
            ledger.claim_many("q", name, 1).await,
            Error::InvalidName {
                what: "worker id",
                ..
            }
        );
        refused!(
            ledger.cancel(name, "x", "r").await,
            Error::InvalidName { .. }
        );
        refused!(
            ledger.cancel("q", name, "r").await,
            Error::InvalidName { .. }
        );
        refused!(ledger.get(name, "x").await, Error::InvalidName { .. });
        refused!(ledger.get("q", name).await, Error::InvalidName { .. });
        refused!(
            ledger.list(name, State::Queued, None, 10).await,
            Error::InvalidName { .. }
        );
        refused!(
            ledger.set_queue(name, &QueueSettings::default()).await,
            Error::InvalidName { .. }
        );
        refused!(ledger.queue_settings(name).await, Error::InvalidName { .. });
        let mut reg = WorkerRegistration::for_this_process("1.0", vec!["q".into()]);
        reg.worker_id = name.into();
        refused!(
            ledger.register_worker(&reg).await,
            Error::InvalidName { .. }
        );
        let reg = WorkerRegistration::for_this_process("1.0", vec![name.into()]);
        refused!(
            ledger.register_worker(&reg).await,
            Error::InvalidName { .. }
        );
        refused!(
            ledger.worker_heartbeat(name, &[]).await,
            Error::InvalidName { .. }
        );
        refused!(
            ledger.deregister_worker(name).await,
            Error::InvalidName { .. }
        );
    }

    let big = json!({"text": "x".repeat(100)});
    refused!(
        ledger.enqueue("q", &big, ok()).await,
        Error::TooLarge {
            what: "payload",
            limit: 64,
            ..
        }
    );
    refused!(
        ledger.enqueue_json("q", &big.to_string(), ok()).await,
        Error::TooLarge { .. }
    );
    for text in ["not json", "{\"a\":", "{} {}", "", "[1,]", "{'a': 1}"] {
        refused!(
            ledger.enqueue_json("q", text, ok()).await,
            Error::NotJson {
                what: "payload",
                ..
            }
        );
    }
    for (key, opts) in bad_options() {
        assert_names_key(ledger.enqueue("q", &payload, opts).await.unwrap_err(), key);
    }
    for max in [0, 1001] {
        assert_names_key(ledger.claim_many("q", "w", max).await.unwrap_err(), "max");
    }
    let zero_capacity = QueueSettings {
        capacity: Some(0),
        timings: Timings::default(),
        ..QueueSettings::default()
    };
    assert_names_key(
        ledger.set_queue("q", &zero_capacity).await.unwrap_err(),
        "capacity",
    );
    for (key, opts) in bad_options() {
        if key == "delay" {
            continue; // not a queue setting
        }
        let settings = QueueSettings {
            capacity: None,
            timings: opts.timings,
            ..QueueSettings::default()
        };
        assert_names_key(ledger.set_queue("q", &settings).await.unwrap_err(), key);
    }
    refused!(
        ledger.cancel("q", "x", &"why".repeat(30)).await,
        Error::TooLarge { .. }
    );
    refused!(
        ledger.worker_heartbeat("nobody", &[]).await,
        Error::UnknownWorker { .. }
    );
    refused!(ledger.cancel("q", "x", "r").await, Error::NotFound { .. });

    let keys = namespace_keys(&ledger).await;
    assert!(keys.is_empty(), "refused calls wrote {keys:?}");
    assert_eq!(ledger.pending_count("q").await.unwrap(), 0);
    assert!(ledger.queues().await.unwrap().is_empty());
}

#[tokio::test]
async fn refused_calls_change_nothing_in_a_used_namespace() {
    let ledger = support::ledger_with("bad_used", |c| c.max_payload_bytes = 64).await;
    let token = running(&ledger, "q", "x", EnqueueOptions::new()).await;
    ledger
        .enqueue("q", &json!(1), EnqueueOptions::new().id("waiting"))
        .await
        .unwrap();
    let before = snapshot(&ledger).await;
    assert!(!before.is_empty());

    let big = json!({"text": "x".repeat(100)});
    refused!(
        ledger
            .heartbeat(&token, Heartbeat::new().checkpoint(big.clone()))
            .await,
        Error::TooLarge {
            what: "checkpoint",
            ..
        }
    );
    refused!(
        ledger
            .heartbeat(&token, Heartbeat::new().progress("p".repeat(65)))
            .await,
        Error::TooLarge {
            what: "progress",
            ..
        }
    );
    refused!(
        ledger.complete(&token, Some(&big)).await,
        Error::TooLarge { what: "result", .. }
    );
    refused!(
        ledger
            .enqueue("q", &big, EnqueueOptions::new().id("new"))
            .await,
        Error::TooLarge { .. }
    );
    // Bad options are refused even when the id exists (the check comes first).
    for (key, opts) in bad_options() {
        let opts = opts.id("waiting");
        assert_names_key(ledger.enqueue("q", &json!(1), opts).await.unwrap_err(), key);
    }
    for limit in [0, 1001] {
        assert_names_key(
            ledger
                .list("q", State::Queued, None, limit)
                .await
                .unwrap_err(),
            "limit",
        );
    }
    for cursor in ["abc", "-1", "1.5", "", "18446744073709551616"] {
        for state in [State::Queued, State::Running, State::Succeeded] {
            assert_names_key(
                ledger.list("q", state, Some(cursor), 10).await.unwrap_err(),
                "cursor",
            );
        }
    }
    let partitions = ledger.config().partitions;
    assert_names_key(
        ledger.read_events(partitions, None, 10).await.unwrap_err(),
        "partition",
    );
    assert!(matches!(
        ledger.follow_events(vec![0, partitions]).await.err(),
        Some(Error::InvalidArgument { .. })
    ));

    assert_eq!(snapshot(&ledger).await, before, "a refused call wrote");
    assert_eq!(ledger.slots_in_use("q").await.unwrap(), 1);
    assert_eq!(ledger.pending_count("q").await.unwrap(), 1);
}

#[tokio::test]
async fn damaged_stored_queue_settings_are_refused_before_any_write() {
    let ledger = support::ledger("bad_stored").await;
    let settings_key =
        unstuck::testkit::Keyspace::new(&ledger.config().namespace, ledger.config().partitions)
            .unwrap()
            .queue_settings("q");
    let mut conn = raw().await;
    for (field, value) in [("ht", "soon"), ("ma", "-1"), ("sg", "1.5"), ("ht", "0")] {
        let () = redis::cmd("HSET")
            .arg(&settings_key)
            .arg(field)
            .arg(value)
            .query_async(&mut conn)
            .await
            .unwrap();
        let before = snapshot(&ledger).await;
        refused!(
            ledger
                .enqueue("q", &json!({}), EnqueueOptions::new().id("x"))
                .await,
            Error::Protocol { .. }
        );
        assert_eq!(snapshot(&ledger).await, before, "{field}={value} wrote");
        let () = redis::cmd("DEL")
            .arg(&settings_key)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    // A value set on the execution itself overrides the damaged queue field.
    let () = redis::cmd("HSET")
        .arg(&settings_key)
        .arg("ht")
        .arg("soon")
        .query_async(&mut conn)
        .await
        .unwrap();
    let opts = EnqueueOptions::new()
        .id("x")
        .heartbeat_timeout(Duration::from_secs(5));
    assert!(ledger.enqueue("q", &json!({}), opts).await.unwrap().created);
}

#[tokio::test]
async fn a_payload_exactly_at_the_limit_is_accepted() {
    let ledger = support::ledger_with("bad_edge", |c| c.max_payload_bytes = 64).await;
    let text = format!("\"{}\"", "x".repeat(62));
    assert_eq!(text.len(), 64);
    let e = ledger
        .enqueue_json("q", &text, EnqueueOptions::new().id("edge"))
        .await
        .unwrap();
    assert!(e.created);
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(ledger.get("q", "edge").await.unwrap().payload, value);
    refused!(
        ledger
            .enqueue("q", &json!("x".repeat(63)), EnqueueOptions::new())
            .await,
        Error::TooLarge { size: 65, .. }
    );
}
