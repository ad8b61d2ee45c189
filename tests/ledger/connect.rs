//! Connecting: a Redis that may evict keys is refused with a message that says how to fix
//! it, unless the check is turned off; where `CONFIG` is disabled the check only warns.

use crate::support;

use std::sync::{Arc, Mutex};

use serde_json::json;
use unstuck::error::Error;
use unstuck::testkit::{RedisProcess, RedisProcessOptions};
use unstuck::*;

fn server(extra_args: &[&str]) -> RedisProcess {
    RedisProcess::start(RedisProcessOptions {
        extra_args: extra_args.iter().map(|a| (*a).to_owned()).collect(),
        ..Default::default()
    })
    .expect("a throwaway redis-server starts")
}

fn config(redis: &RedisProcess) -> LedgerConfig {
    LedgerConfig {
        namespace: support::namespace("connect"),
        ..LedgerConfig::new(redis.url())
    }
}

/// Shows the ledger works on this server: one execution, enqueued and claimed.
async fn usable(ledger: &Ledger) {
    let e = ledger
        .enqueue("q", &json!({}), EnqueueOptions::new())
        .await
        .unwrap();
    assert!(e.created);
    let claim = ledger.claim("q", "w").await.unwrap().unwrap();
    assert_eq!(claim.id(), e.id);
}

#[tokio::test]
async fn an_evicting_redis_is_refused_with_the_fix_in_the_message() {
    let redis = server(&["--maxmemory-policy", "allkeys-lru"]);
    let error = Ledger::connect(config(&redis)).await.unwrap_err();
    match &error {
        Error::EvictionPolicy { policy } => assert_eq!(policy, "allkeys-lru"),
        other => panic!("expected EvictionPolicy, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains("allkeys-lru"), "{message}");
    assert!(
        message.contains("CONFIG SET maxmemory-policy noeviction"),
        "{message}"
    );
    assert!(message.contains("redis.conf"), "{message}");
    assert!(!error.is_transient());

    let lenient = LedgerConfig {
        require_noeviction: false,
        ..config(&redis)
    };
    let ledger = Ledger::connect(lenient).await.unwrap();
    usable(&ledger).await;
}

#[tokio::test]
async fn every_evicting_policy_is_refused() {
    let redis = server(&[]);
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for policy in [
        "volatile-lru",
        "allkeys-random",
        "volatile-ttl",
        "allkeys-lfu",
    ] {
        let () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory-policy")
            .arg(policy)
            .query_async(&mut conn)
            .await
            .unwrap();
        match Ledger::connect(config(&redis)).await {
            Err(Error::EvictionPolicy { policy: p }) => assert_eq!(p, policy),
            Err(other) => panic!("{policy}: expected EvictionPolicy, got {other:?}"),
            Ok(_) => panic!("{policy}: connect accepted an evicting Redis"),
        }
    }
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("noeviction")
        .query_async(&mut conn)
        .await
        .unwrap();
    usable(&Ledger::connect(config(&redis)).await.unwrap()).await;
}

/// Collects what the library logs, to check that it warned.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_redis_without_config_is_accepted_with_a_warning() {
    let redis = server(&["--rename-command", "CONFIG", ""]);
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let probe: redis::RedisResult<redis::Value> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query_async(&mut conn)
        .await;
    assert!(probe.is_err(), "CONFIG is disabled on this server");

    let log = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let log = log.clone();
            move || log.clone()
        })
        .with_ansi(false)
        .finish();
    // #[tokio::test] runs on one thread, so a thread-local subscriber sees every log line.
    let guard = tracing::subscriber::set_default(subscriber);
    let ledger = Ledger::connect(config(&redis)).await.unwrap();
    drop(guard);
    let logged = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert!(logged.contains("WARN"), "{logged}");
    assert!(logged.contains("noeviction"), "{logged}");
    usable(&ledger).await;
}

#[tokio::test]
async fn an_unreachable_redis_is_a_transient_error() {
    // Take a free port, then let it go: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = LedgerConfig {
        connection_timeout: std::time::Duration::from_secs(1),
        ..LedgerConfig::new(format!("redis://127.0.0.1:{port}/"))
    };
    let error = Ledger::connect(config).await.unwrap_err();
    assert!(error.is_unavailable(), "{error:?}");
    assert!(error.is_transient(), "{error:?}");
}

/// Redis killed: once the connection's loss is known, every call — read or write — fails
/// before it is sent, as `Unavailable` ("nothing was written"), not as an unknown outcome;
/// after the restart (on its append-only file) the write is indeed absent.
#[tokio::test]
async fn a_stopped_redis_is_unavailable_for_reads_and_writes_and_nothing_is_written() {
    let mut redis = server(&["--appendonly", "yes", "--appendfsync", "always"]);
    let ledger = Ledger::connect(LedgerConfig {
        connection_timeout: std::time::Duration::from_secs(1),
        ..config(&redis)
    })
    .await
    .unwrap();
    let before = EnqueueOptions::new().id("before");
    ledger.enqueue("q", &json!({}), before).await.unwrap();
    redis.kill_hard();

    // The first call may meet the closed connection itself (redis-rs cannot say whether
    // that one was written); from then on the client reconnects before writing, and fails.
    support::wait_until(
        std::time::Duration::from_secs(20),
        "a read reports Redis unavailable",
        || async { matches!(ledger.get("q", "before").await, Err(e) if e.is_unavailable()) },
    )
    .await;
    let write = ledger
        .enqueue("q", &json!({}), EnqueueOptions::new().id("during"))
        .await
        .unwrap_err();
    assert!(write.is_unavailable(), "{write:?}");
    assert!(!write.is_unknown_outcome(), "{write:?}");
    assert!(write.is_transient(), "{write:?}");
    assert!(write.to_string().contains("nothing was written"), "{write}");
    let settings = ledger
        .set_queue(
            "q",
            &QueueSettings {
                capacity: Some(3),
                ..QueueSettings::default()
            },
        )
        .await
        .unwrap_err();
    assert!(settings.is_unavailable(), "{settings:?}");
    let read = ledger.pending_count("q").await.unwrap_err();
    assert!(read.is_unavailable(), "{read:?}");

    redis.restart().expect("redis restarts on its data");
    support::wait_until(
        std::time::Duration::from_secs(20),
        "the ledger reconnects",
        || async { ledger.pending_count("q").await.is_ok() },
    )
    .await;
    assert_eq!(ledger.get("q", "before").await.unwrap().id, "before");
    let during = ledger.get("q", "during").await.unwrap_err();
    assert!(during.is_not_found(), "nothing was written: {during:?}");
    assert_eq!(ledger.pending_count("q").await.unwrap(), 1);
}

/// Redis frozen (SIGSTOP): the call is written and no reply comes within the response
/// timeout, so its outcome is unknown — not "unavailable", which would promise nothing
/// happened. Thawed, the same call converges.
#[tokio::test]
async fn a_write_sent_to_a_frozen_redis_is_an_unknown_outcome() {
    let redis = server(&[]);
    let ledger = Ledger::connect(LedgerConfig {
        response_timeout: std::time::Duration::from_millis(300),
        ..config(&redis)
    })
    .await
    .unwrap();
    ledger.pending_count("q").await.unwrap();
    let frozen = support::Frozen::freeze(&redis);
    let opts = || EnqueueOptions::new().id("frozen");
    let error = ledger.enqueue("q", &json!({}), opts()).await.unwrap_err();
    assert!(error.is_unknown_outcome(), "{error:?}");
    assert!(!error.is_unavailable(), "{error:?}");
    drop(frozen);

    support::wait_until(
        std::time::Duration::from_secs(20),
        "the same enqueue succeeds after SIGCONT",
        || async { ledger.enqueue("q", &json!({}), opts()).await.is_ok() },
    )
    .await;
    assert_eq!(ledger.pending_count("q").await.unwrap(), 1, "one execution");
}

/// A call sent while Redis holds its clients (`CLIENT PAUSE`) gets no reply within the
/// response timeout: its outcome is unknown, and says so (here the client drops the
/// connection, so Redis never runs it; it could as well have). Retrying with the same id
/// converges on one execution whichever happened.
#[tokio::test]
async fn a_reply_lost_after_sending_is_an_unknown_outcome_and_a_retry_converges() {
    let redis = server(&[]);
    let ledger = Ledger::connect(LedgerConfig {
        response_timeout: std::time::Duration::from_millis(200),
        ..config(&redis)
    })
    .await
    .unwrap();
    let mut admin = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let () = redis::cmd("CLIENT")
        .arg(&["PAUSE", "1000", "WRITE"])
        .query_async(&mut admin)
        .await
        .unwrap();
    let opts = || EnqueueOptions::new().id("sent-once");
    let error = ledger
        .enqueue("q", &json!({"n": 1}), opts())
        .await
        .unwrap_err();
    assert!(error.is_unknown_outcome(), "{error:?}");
    assert!(error.is_transient(), "worth retrying: {error}");
    assert!(
        error.to_string().contains("retrying the same call is safe"),
        "{error}"
    );

    let retried = loop {
        match ledger.enqueue("q", &json!({"n": 1}), opts()).await {
            Ok(e) => break e,
            Err(e) if e.is_transient() => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(retried.id, "sent-once");
    let again = ledger.enqueue("q", &json!({"n": 1}), opts()).await.unwrap();
    assert!(!again.created, "the same id converges on one execution");
    assert_eq!(ledger.pending_count("q").await.unwrap(), 1, "enqueued once");
}
