//! Redis ACL: a user holding exactly the permissions of docs/redis.md (its namespace's keys, the
//! commands unstuck sends and its scripts call) runs every library call, a watchdog and
//! `unstuck serve`, and Redis refuses nothing along the way (its ACL LOG stays empty). A
//! user missing a command, or restricted to another namespace's keys, is refused at
//! connect with one error naming what to grant; a user that may not `ACL DRYRUN` is not
//! checked and its first call that needs the missing permission fails naming it.

use crate::security_common;

use std::time::Duration;

use redis::Value;
use security_common::*;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use unstuck::error::Error;
use unstuck::testkit::RedisProcess;
use unstuck::*;

const USER: &str = "unstuck";
const PASSWORD: &str = "acl-pw-31f0";

/// A server with user `unstuck` holding the rules of docs/redis.md for `rules_namespace` plus
/// `extra`; the ledger config for `namespace` as that user.
async fn setup(
    rules_namespace: &str,
    extra: &[&str],
    namespace: &str,
) -> (RedisProcess, LedgerConfig) {
    let redis = server();
    let mut admin = admin(redis.url()).await;
    add_user(
        &mut admin,
        USER,
        PASSWORD,
        &acl_rules(rules_namespace, extra),
    )
    .await;
    let url = url("redis", &format!("{USER}:{PASSWORD}"), redis.port());
    (redis, config(&url, namespace))
}

/// What Redis refused since the server started (`ACL LOG`), one entry each, less the one
/// refusal expected: `CONFIG GET maxmemory-policy`, which the documented user may not run
/// (it would show `requirepass`), so the eviction check reads `INFO memory` instead.
async fn acl_log(redis: &RedisProcess) -> Vec<String> {
    let entries: Vec<Value> = redis::cmd("ACL")
        .arg("LOG")
        .query_async(&mut admin(redis.url()).await)
        .await
        .expect("ACL LOG");
    let expected = "bulk-string('\"config|get\"')";
    let all: Vec<String> = entries.iter().map(|e| format!("{e:?}")).collect();
    assert!(
        all.iter().any(|e| e.contains(expected)),
        "CONFIG GET was tried: {all:?}"
    );
    all.into_iter().filter(|e| !e.contains(expected)).collect()
}

#[tokio::test]
async fn the_readme_user_runs_every_library_call_and_nothing_is_refused() {
    let (redis, config) = setup("acl-ok", &[], "acl-ok").await;
    let ledger = Ledger::connect(config)
        .await
        .expect("the documented user passes the check");
    workout(&ledger).await;
    assert_eq!(
        acl_log(&redis).await,
        Vec::<String>::new(),
        "Redis refused nothing"
    );
}

#[tokio::test]
async fn serve_runs_as_the_readme_user() {
    let (redis, config) = setup("acl-serve", &[], "acl-serve").await;
    let mut settings = unstuck::settings::Settings {
        ledger: config,
        ..Default::default()
    };
    settings.server.listen = "127.0.0.1:0".into();
    let server = unstuck::server::Server::bind(settings.ledger, settings.server, settings.watchdog)
        .await
        .expect("binds as the ACL user");
    let base = format!("http://{}", server.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    let http = reqwest::Client::new();
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "{:?}", ready.text().await);
    let claim = tokio::spawn({
        let (http, base) = (http.clone(), base.clone());
        async move {
            let body = json!({"worker_id": "w1", "wait_ms": 5000});
            http.post(format!("{base}/v1/queues/q/claims"))
                .json(&body)
                .send()
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let body = json!({"id": "e1", "payload": {}});
    let created = http
        .post(format!("{base}/v1/queues/q/executions"))
        .json(&body)
        .send()
        .await;
    assert_eq!(created.unwrap().status(), 201);
    let claimed = claim.await.unwrap().unwrap();
    assert_eq!(
        claimed.status(),
        200,
        "the long poll is woken by the enqueue"
    );
    let status = http
        .get(format!("{base}/v1/watchdog"))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 200);
    shutdown.cancel();
    task.await.unwrap().expect("serve stops cleanly");
    assert_eq!(
        acl_log(&redis).await,
        Vec::<String>::new(),
        "Redis refused nothing"
    );
}

#[tokio::test]
async fn the_eviction_check_reads_info_when_config_is_not_granted() {
    let (redis, config) = setup("acl-evict", &[], "acl-evict").await;
    let () = redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory-policy", "allkeys-lru"])
        .query_async(&mut admin(redis.url()).await)
        .await
        .unwrap();
    match Ledger::connect(config).await {
        Err(Error::EvictionPolicy { policy }) => assert_eq!(policy, "allkeys-lru"),
        other => panic!("expected EvictionPolicy, got {other:?}"),
    }
}

/// Connects and expects [`Error::Permission`]; returns (commands, keys, message).
async fn refused(config: LedgerConfig) -> (Vec<String>, Vec<String>, String) {
    let error = Ledger::connect(config)
        .await
        .expect_err("refused at connect");
    let message = error.to_string();
    match error {
        Error::Permission {
            user,
            commands,
            keys,
        } => {
            assert_eq!(user, USER);
            assert!(!message.contains(PASSWORD), "{message}");
            (commands, keys, message)
        }
        other => panic!("expected Permission, got {other:?}"),
    }
}

#[tokio::test]
async fn a_missing_command_is_named_at_connect_with_the_rule_that_grants_it() {
    // One the library sends (the event followers' blocking read), one only a script calls.
    for (taken, name) in [
        ("-xread", "xread"),
        ("-zadd", "zadd"),
        ("-evalsha", "evalsha"),
    ] {
        let (_redis, config) = setup("acl-missing", &[taken], "acl-missing").await;
        let (commands, keys, message) = refused(config).await;
        assert_eq!(commands, vec![name.to_owned()], "{message}");
        assert!(keys.is_empty(), "{message}");
        assert!(
            message.contains(&format!("ACL SETUSER {USER} +{name}")),
            "{message}"
        );
    }
    // Everything missing is listed in one error.
    let (_redis, config) = setup("acl-missing", &["-hset", "-lpop"], "acl-missing").await;
    let (commands, _, message) = refused(config).await;
    assert_eq!(
        commands,
        vec!["hset".to_owned(), "lpop".to_owned()],
        "{message}"
    );
}

#[tokio::test]
async fn a_user_of_another_namespace_is_refused_at_connect() {
    let (_redis, config) = setup("tenant-b", &[], "tenant-a").await;
    let (commands, keys, message) = refused(config).await;
    assert!(commands.is_empty(), "{message}");
    assert!(
        !keys.is_empty() && keys.iter().all(|k| k.starts_with("{tenant-a:")),
        "{keys:?}"
    );
    assert!(message.contains("~{tenant-a:*"), "{message}");
}

#[tokio::test]
async fn without_acl_dryrun_the_first_call_that_needs_a_missing_permission_names_it() {
    let (redis, config) = setup("acl-late", &["-acl|dryrun", "-xread"], "acl-late").await;
    let ledger = Ledger::connect(config)
        .await
        .expect("not checked: connects");
    ledger
        .enqueue("q", &json!({}), EnqueueOptions::new())
        .await
        .expect("enqueue is allowed");
    let mut follower = ledger
        .follow_events(Vec::new())
        .await
        .expect("XREVRANGE is allowed");
    let error = follower.next_batch().await.expect_err("XREAD is not");
    let message = error.to_string();
    assert!(
        message.contains("no permissions to run the 'xread' command"),
        "{message}"
    );
    assert!(
        !error.is_transient(),
        "a refusal is not worth retrying: {error:?}"
    );

    // Another namespace's user, unchecked: the first write is refused, nothing is written
    // (Redis does not say which key: the check at connect would have).
    drop(redis);
    let (redis, config) = setup("tenant-b", &["-acl|dryrun"], "tenant-a").await;
    let ledger = Ledger::connect(config)
        .await
        .expect("not checked: connects");
    let error = ledger
        .enqueue("q", &json!({}), EnqueueOptions::new())
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("no permissions to access"),
        "{error}"
    );
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut admin(redis.url()).await)
        .await
        .unwrap();
    assert!(keys.is_empty(), "nothing written: {keys:?}");
}

/// The `ACL SETUSER` line of docs/redis.md is the one these tests grant (with `unstuck` as
/// the namespace), so a user following the docs gets exactly what was tested.
#[test]
fn the_readme_line_is_the_tested_one() {
    let readme = include_str!("../../docs/redis.md");
    let line = readme
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("ACL SETUSER unstuck on >PASSWORD "))
        .expect("docs/redis.md has the ACL SETUSER line");
    let rules = line.trim_start_matches("ACL SETUSER unstuck on >PASSWORD ");
    assert_eq!(
        rules.split_whitespace().collect::<Vec<_>>(),
        acl_rules("unstuck", &[]),
        "docs/redis.md's ACL line and tests/security_common's ACL_RULES differ"
    );
}

/// On a Redis Cluster the documented rules plus `+cluster|slots +asking` (on every node, as
/// ACLs are per node) run every library call, and no node refuses anything.
#[tokio::test]
async fn the_readme_user_runs_on_a_cluster_with_the_cluster_rules() {
    let cluster = unstuck::testkit::RedisCluster::start(Default::default())
        .expect("a 3-master Redis Cluster");
    let rules = acl_rules("acl-cluster", &["+cluster|slots", "+asking"]);
    for node in cluster.nodes() {
        add_user(&mut admin(node.url()).await, USER, PASSWORD, &rules).await;
    }
    let config = LedgerConfig {
        redis_url: None,
        cluster_urls: cluster
            .nodes()
            .iter()
            .map(|n| url("redis", &format!("{USER}:{PASSWORD}"), n.port()))
            .collect(),
        ..config("redis://unused/", "acl-cluster")
    };
    let ledger = Ledger::connect(config)
        .await
        .expect("the documented user with the cluster rules passes the check");
    workout(&ledger).await;
    for node in cluster.nodes() {
        let entries: Vec<Value> = redis::cmd("ACL")
            .arg("LOG")
            .query_async(&mut admin(node.url()).await)
            .await
            .expect("ACL LOG");
        let refused: Vec<String> = entries
            .iter()
            .map(|e| format!("{e:?}"))
            .filter(|e| !e.contains("bulk-string('\"config|get\"')"))
            .collect();
        assert_eq!(refused, Vec::<String>::new(), "node {}", node.port());
    }
}
