//! Redis `AUTH`: a password URL (`redis://:password@`) and a user URL
//! (`redis://user:password@`) work for every connection the library opens; a wrong,
//! missing or unknown credential is refused at connect with a typed error that never
//! shows the password; the CLI and `unstuck serve` print URLs with the password redacted.

use crate::security_common;

use std::process::Stdio;
use std::time::Duration;

use security_common::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use unstuck::error::Error;
use unstuck::*;

const PASSWORD: &str = "pw-7c1f-do-not-print";

#[tokio::test]
async fn a_password_url_works_for_every_connection() {
    let redis = server();
    require_password(&redis, PASSWORD).await;
    let url = url("redis", &format!(":{PASSWORD}"), redis.port());
    let ledger = Ledger::connect(config(&url, "auth-pw"))
        .await
        .expect("connects");
    workout(&ledger).await;
}

#[tokio::test]
async fn a_user_and_password_url_works_for_every_connection() {
    let redis = server();
    let mut admin = admin(redis.url()).await;
    add_user(&mut admin, "app", PASSWORD, &["~*".into(), "+@all".into()]).await;
    require_password(&redis, "the-default-users-own").await;
    let url = url("redis", &format!("app:{PASSWORD}"), redis.port());
    let ledger = Ledger::connect(config(&url, "auth-user"))
        .await
        .expect("connects");
    workout(&ledger).await;
}

/// Checks `error` is an [`Error::Authentication`] of `user` whose text and debug form
/// leave `secret` out; returns its message.
fn refused(error: Error, user: &str, secret: &str) -> String {
    let message = error.to_string();
    let debug = format!("{error:?}");
    match &error {
        Error::Authentication { user: u, .. } => assert_eq!(u, user, "{message}"),
        other => panic!("expected Authentication, got {other:?}"),
    }
    assert!(
        !message.contains(secret) && !debug.contains(secret),
        "{debug}"
    );
    assert!(
        message.contains("ledger.redis_url"),
        "names where to fix it: {message}"
    );
    assert!(
        !error.is_transient(),
        "retrying the same password will not help"
    );
    message
}

#[tokio::test]
async fn wrong_missing_or_unknown_credentials_are_refused_by_name_without_the_password() {
    let redis = server();
    require_password(&redis, PASSWORD).await;
    let port = redis.port();
    let connect = |url: String| async move {
        let config = config(&url, "auth-refused");
        let shown = format!("{config:?}");
        let started = std::time::Instant::now();
        let result = Ledger::connect(config).await;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "refused promptly"
        );
        (result.expect_err("refused"), shown)
    };

    let wrong = "wrong-9d2e-secret";
    let (error, shown) = connect(url("redis", &format!(":{wrong}"), port)).await;
    assert!(!shown.contains(wrong) && shown.contains(":***@"), "{shown}");
    let message = refused(error, "default", wrong);
    assert!(message.contains("wrong password"), "{message}");

    let (error, _) = connect(format!("redis://127.0.0.1:{port}/")).await;
    let message = refused(error, "default", PASSWORD);
    assert!(message.contains("requires a password"), "{message}");

    let (error, _) = connect(url("redis", &format!("nobody:{wrong}"), port)).await;
    refused(error, "nobody", wrong);
}

/// The binary, with no settings from this process's environment.
fn unstuck(url: &str, namespace: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_unstuck"));
    for (key, _) in std::env::vars() {
        if key.starts_with("UNSTUCK_") || key.starts_with("RUST_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("UNSTUCK_LEDGER__REDIS_URL", url)
        .env("UNSTUCK_LEDGER__NAMESPACE", namespace)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

#[tokio::test]
async fn the_cli_names_the_redacted_url_when_the_password_is_wrong() {
    let redis = server();
    require_password(&redis, PASSWORD).await;
    let wrong = "wrong-4b7a-secret";
    let out = unstuck(
        &url("redis", &format!("app:{wrong}"), redis.port()),
        "auth-cli",
    )
    .arg("queues")
    .output()
    .await
    .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let redacted = format!("redis://app:***@127.0.0.1:{}/", redis.port());
    assert!(stderr.contains(&redacted), "{stderr}");
    assert!(stderr.contains("refused to authenticate"), "{stderr}");
    assert!(!stderr.contains(wrong), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
}

#[tokio::test]
async fn serve_works_with_a_password_and_never_prints_it() {
    let redis = server();
    require_password(&redis, PASSWORD).await;
    let mut child = unstuck(
        &url("redis", &format!(":{PASSWORD}"), redis.port()),
        "auth-serve",
    )
    .arg("serve")
    .env("UNSTUCK_SERVER__LISTEN", "127.0.0.1:0")
    .env("RUST_LOG", "debug")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("unstuck serve starts");
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let addr = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            seen.push(line.clone());
            if let Some(rest) = line.split("listening on http://").nth(1) {
                return rest.split_whitespace().next().map(str::to_owned);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_else(|| panic!("serve says where it listens: {seen:?}"));

    let http = reqwest::Client::new();
    let base = format!("http://{addr}");
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "{:?}", ready.text().await);
    let created = http
        .post(format!("{base}/v1/queues/q/executions"))
        .json(&serde_json::json!({"id": "e1", "payload": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let claimed = http
        .post(format!("{base}/v1/queues/q/claims"))
        .json(&serde_json::json!({"worker_id": "w1", "wait_ms": 2000}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        claimed.status(),
        200,
        "a long-poll claim through the password URL"
    );

    let pid = child.id().expect("running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let rest = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            seen.push(line);
        }
    })
    .await;
    assert!(rest.is_ok(), "serve stops on SIGTERM");
    let out = child.wait_with_output().await.unwrap();
    let all = format!(
        "{}\n{}",
        seen.join("\n"),
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        !all.contains(PASSWORD),
        "the password is never printed: {all}"
    );
    assert!(out.status.success(), "{:?}: {all}", out.status);
}
