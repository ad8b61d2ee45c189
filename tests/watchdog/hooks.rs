//! Remediation hooks against a real Redis and real processes: a command called with the
//! event on stdin, failures and timeouts retried then recorded, a signed webhook, a
//! worker's kill hook failing until the circuit opens, and the outbox delivering a call
//! again after the replica delivering it died.

use crate::support;
use crate::watchdog_common;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use unstuck::hooks::{HookConfig, signature};
use unstuck::watchdog::{TierConfig, Watchdog, WatchdogConfig};
use unstuck::*;
use watchdog_common::*;

const WAIT: Duration = Duration::from_secs(10);

async fn replica(l: &Ledger, hooks: Vec<HookConfig>) -> Watchdog {
    let config = WatchdogConfig {
        hooks,
        ..config("r1")
    };
    sole_replica(l, config).await
}

fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

fn hook(name: &str, on: &[&str], script: &str) -> HookConfig {
    HookConfig {
        command: sh(script),
        timeout: Duration::from_secs(5),
        retries: 0,
        ..HookConfig::command(name, on, &[])
    }
}

/// Makes `id` dead: one attempt, dispatched and never started past its start grace.
async fn make_dead(l: &Ledger, wd: &Watchdog, id: &str) {
    let opts = EnqueueOptions::new()
        .max_attempts(1)
        .start_grace(Duration::from_millis(50));
    dispatch(l, "q", id, opts, "w1").await;
    pass(80).await;
    wd.round(l.partition_of("q")).await.unwrap();
    assert_eq!(state(l, "q", id).await, State::Dead);
}

/// `(reason, detail)` of the hook outcome events.
async fn hook_events(l: &Ledger) -> Vec<(String, String)> {
    l.worker_events(None, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.reason.starts_with("hook_"))
        .map(|e| (e.reason, e.detail))
        .collect()
}

fn files(dir: &Path, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_command_hook_gets_the_event_on_stdin_once() {
    let l = support::ledger("hooks_command").await;
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        "cat > '{}'/call.$UNSTUCK_HOOK.json; echo $UNSTUCK_IDEMPOTENCY_KEY >> '{}'/keys",
        dir.path().display(),
        dir.path().display()
    );
    let wd = replica(&l, vec![hook("page", &["execution.dead"], &script)]).await;
    assert_eq!(
        wd.feed_hooks().await.unwrap(),
        0,
        "starts at the newest event"
    );
    make_dead(&l, &wd, "e").await;

    assert_eq!(wd.feed_hooks().await.unwrap(), 1);
    assert_eq!(wd.feed_hooks().await.unwrap(), 0, "read once");
    let report = wd.deliver_hooks().await.unwrap();
    assert_eq!(report.settled.len(), 1, "{report:?}");
    assert!(report.settled[0].1, "{report:?}");
    assert!(wd.deliver_hooks().await.unwrap().settled.is_empty());

    let body: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("call.page.json")).unwrap())
            .unwrap();
    assert_eq!(body["kind"], "execution.dead");
    assert_eq!(body["event"]["execution_id"], "e");
    assert_eq!(body["event"]["to"], "dead");
    let keys = std::fs::read_to_string(dir.path().join("keys")).unwrap();
    assert_eq!(keys.trim(), body["idempotency_key"].as_str().unwrap());
    let events = hook_events(&l).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "hook_succeeded");
    assert!(events[0].1.starts_with("page (key page:"), "{events:?}");
}

#[tokio::test]
async fn a_failing_hook_is_retried_with_backoff_then_recorded_failed() {
    let l = support::ledger("hooks_failure").await;
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        "echo try >> '{}'/tries; echo 'no pager configured' >&2; exit 3",
        dir.path().display()
    );
    let failing = HookConfig {
        retries: 2,
        ..hook("page", &["execution.dead"], &script)
    };
    let wd = replica(&l, vec![failing]).await;
    wd.feed_hooks().await.unwrap();
    make_dead(&l, &wd, "e").await;
    wd.feed_hooks().await.unwrap();
    let report = wd.deliver_hooks().await.unwrap();
    assert_eq!(report.settled.len(), 1);
    assert!(!report.settled[0].1, "{report:?}");
    let tries = std::fs::read_to_string(dir.path().join("tries")).unwrap();
    assert_eq!(tries.lines().count(), 3, "the first try and two retries");
    let events = hook_events(&l).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "hook_failed");
    assert!(events[0].1.contains("exit status: 3"), "{events:?}");
    assert!(events[0].1.contains("no pager configured"), "{events:?}");
    assert!(events[0].1.contains("after 3 tries"), "{events:?}");
}

#[tokio::test]
async fn a_hook_past_its_timeout_is_killed_and_recorded_failed() {
    let l = support::ledger("hooks_timeout").await;
    let dir = tempfile::tempdir().unwrap();
    // It starts a process of its own and waits for it: the timeout stops both.
    let script = format!(
        "cd '{}'; echo $$ > pid; sleep 30 & echo $! > child; wait",
        dir.path().display()
    );
    let slow = HookConfig {
        timeout: Duration::from_millis(200),
        ..hook("page", &["execution.dead"], &script)
    };
    let wd = replica(&l, vec![slow]).await;
    wd.feed_hooks().await.unwrap();
    make_dead(&l, &wd, "e").await;
    wd.feed_hooks().await.unwrap();
    let report = wd.deliver_hooks().await.unwrap();
    assert_eq!(report.settled.len(), 1);
    assert!(!report.settled[0].1, "{report:?}");
    let events = hook_events(&l).await;
    assert!(
        events[0].1.contains("killed after its timeout"),
        "{events:?}"
    );
    for file in ["pid", "child"] {
        let pid: u32 = std::fs::read_to_string(dir.path().join(file))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        support::wait_until(
            WAIT,
            &format!("the hook's {file} process is gone"),
            || async {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map_or(true, |s| s.contains(") Z "))
            },
        )
        .await;
    }
}

/// A one-request-at-a-time HTTP server answering `status`; hands back each request's
/// head and body.
async fn webhook_receiver(
    status: u16,
) -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head, body) = loop {
                let n = socket.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        break (head.to_owned(), body.to_owned());
                    }
                }
            };
            let _ = tx.send((head, body));
            let reply =
                format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = socket.write_all(reply.as_bytes()).await;
        }
    });
    (url, rx)
}

#[tokio::test]
async fn a_webhook_is_posted_signed_with_its_idempotency_key() {
    let l = support::ledger("hooks_webhook").await;
    let (url, mut requests) = webhook_receiver(204).await;
    let webhook = HookConfig {
        secret: Some("s3cret".into()),
        retries: 0,
        ..HookConfig::webhook("pager", &["execution.dead"], &url)
    };
    let wd = replica(&l, vec![webhook]).await;
    wd.feed_hooks().await.unwrap();
    make_dead(&l, &wd, "e").await;
    wd.feed_hooks().await.unwrap();
    let report = wd.deliver_hooks().await.unwrap();
    assert!(report.settled[0].1, "{report:?}");

    let (head, body) = requests.recv().await.unwrap();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
            .unwrap_or_default()
    };
    assert!(head.starts_with("POST /hook "), "{head}");
    assert_eq!(
        header("x-unstuck-signature"),
        signature("s3cret", body.as_bytes())
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        header("idempotency-key"),
        v["idempotency_key"].as_str().unwrap()
    );
    assert_eq!(v["event"]["execution_id"], "e");
}

#[tokio::test]
async fn a_failing_kill_hook_counts_toward_the_breaker_and_the_circuit_hook_is_called() {
    let l = support::ledger("hooks_breaker").await;
    let dir = tempfile::tempdir().unwrap();
    let log = |exit: u8| {
        format!(
            "cat > /dev/null; echo $UNSTUCK_HOOK >> '{}'/calls; exit {exit}",
            dir.path().display()
        )
    };
    let cool = Duration::from_millis(100);
    let config = WatchdogConfig {
        expected_worker_version: Some("v2".into()),
        tiers: TierConfig {
            enabled: true,
            cooldown_cooperative: cool,
            cooldown_terminate: cool,
            cooldown_kill: cool,
            breaker_failures: 2,
            ..TierConfig::default()
        },
        hooks: vec![
            hook("terminate", &["worker.tier_2"], &log(0)),
            hook("restart", &["worker.tier_3"], &log(1)),
            hook("alert", &["worker.circuit_opened"], &log(0)),
        ],
        ..config("r1")
    };
    let wd = sole_replica(&l, config).await;
    // Registered over HTTP, say: no pid; the hooks are what can act on it.
    let mut reg = WorkerRegistration::for_this_process("v1", vec!["q".into()]);
    reg.pid = 0;
    l.register_worker(&reg).await.unwrap();
    let w = reg.worker_id;

    // It keeps beating with the old version whatever is done to it.
    let mut tiers = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        l.worker_beat(&w, &[]).await.unwrap();
        let report = wd.judge_workers().await.unwrap();
        tiers.extend(report.escalated.iter().map(|(_, t)| *t));
        wd.deliver_hooks().await.unwrap();
        if l.worker(&w)
            .await
            .unwrap()
            .unwrap()
            .remediation
            .circuit_open
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the circuit opens: {tiers:?}"
        );
        pass(20).await;
    }
    wd.deliver_hooks().await.unwrap();
    assert_eq!(
        tiers,
        [1, 2, 3, 3],
        "one tier per judgement, then tier 3 again"
    );
    let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    assert_eq!(calls, ["terminate", "restart", "restart", "alert"]);
    let r = l.worker(&w).await.unwrap().unwrap().remediation;
    assert_eq!(r.tier3_failures, 2, "{r:?}");
    let reasons: Vec<String> = l
        .worker_events(None, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| !e.reason.starts_with("hook_"))
        .map(|e| e.reason)
        .collect();
    assert_eq!(
        reasons,
        [
            "tier_1",
            "tier_2",
            "action_succeeded",
            "tier_3",
            "action_failed",
            "tier_3",
            "action_failed",
            "circuit_opened"
        ]
    );
}

#[tokio::test]
async fn a_call_whose_replica_died_mid_delivery_is_delivered_again_under_the_same_key() {
    let l = support::ledger("hooks_outbox").await;
    let dir = tempfile::tempdir().unwrap();
    // The first delivery hangs (its replica dies meanwhile); the next one completes.
    let script = format!(
        "cd '{}'; echo $UNSTUCK_IDEMPOTENCY_KEY >> keys; n=$(wc -l < keys); \
         if [ $n -eq 1 ]; then exec sleep 30; fi; cat > body.$n",
        dir.path().display()
    );
    // The timeout bounds how long the dead replica's call holds the entry; it also has to
    // let the second call's shell start and finish on a loaded machine.
    let h = HookConfig {
        timeout: Duration::from_secs(2),
        ..hook("page", &["execution.dead"], &script)
    };
    let a = replica(&l, vec![h.clone()]).await;
    a.feed_hooks().await.unwrap();
    make_dead(&l, &a, "e").await;
    a.feed_hooks().await.unwrap();
    let delivering = {
        let a = a.clone();
        tokio::spawn(async move { a.deliver_hooks().await })
    };
    support::wait_until(WAIT, "the first delivery started", || async {
        dir.path().join("keys").exists()
    })
    .await;
    delivering.abort(); // the replica dies mid-call
    let _ = delivering.await;

    let b = Watchdog::new(
        l.clone(),
        WatchdogConfig {
            hooks: vec![h],
            ..config("r2")
        },
    )
    .unwrap();
    let mut settled = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while settled.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "another replica delivers it"
        );
        settled.extend(b.deliver_hooks().await.unwrap().settled);
        pass(50).await;
    }
    assert_eq!(settled.len(), 1, "{settled:?}");
    assert!(settled[0].1);
    let keys = std::fs::read_to_string(dir.path().join("keys")).unwrap();
    let keys: Vec<&str> = keys.lines().collect();
    assert_eq!(keys.len(), 2, "delivered twice: {keys:?}");
    assert_eq!(keys[0], keys[1], "under the same idempotency key");
    assert_eq!(files(dir.path(), "body."), ["body.2"]);
    let events = hook_events(&l).await;
    assert_eq!(events.len(), 1, "settled once: {events:?}");
    assert!(events[0].1.contains("delivery 2"), "{events:?}");
    // Enqueued again (events read again), the settled key is not called a third time.
    a.feed_hooks().await.unwrap();
    assert!(b.deliver_hooks().await.unwrap().settled.is_empty());
}

#[tokio::test]
async fn hooks_are_called_on_the_budget_events_of_an_execution_and_of_its_queue() {
    let l = support::ledger("hooks_budget").await;
    let dir = tempfile::tempdir().unwrap();
    let script = |name: &str| format!("cat > '{}'/{name}.$(date +%s%N).json", dir.path().display());
    let wd = replica(
        &l,
        vec![
            hook("warn", &["execution.budget_warning"], &script("warn")),
            hook("over", &["execution.budget_exceeded"], &script("over")),
            hook("paused", &["queue.budget_paused"], &script("paused")),
        ],
    )
    .await;
    assert_eq!(
        wd.feed_hooks().await.unwrap(),
        0,
        "starts at the newest event"
    );
    let settings = QueueSettings {
        window_budget: Some(WindowBudget {
            tokens: Some(1000),
            cost: None,
            window: Some(Duration::from_secs(3600)),
        }),
        ..QueueSettings::default()
    };
    l.set_queue("q", &settings).await.unwrap();
    let budget = Budget {
        tokens: Some(100),
        cost: None,
        warning_share: None,
    };
    let token = start(&l, "q", "e", EnqueueOptions::new().budget(budget)).await;
    let usage = |seq, n| Heartbeat::new().usage(Usage::new(seq).output_tokens(n));
    l.heartbeat(&token, usage(1, 85)).await.unwrap(); // the warning at 80 %
    l.heartbeat(&token, usage(2, 20)).await.unwrap(); // exceeded at 100
    let other = start(&l, "q", "f", EnqueueOptions::new()).await;
    l.heartbeat(&other, usage(1, 900)).await.unwrap(); // the window's 1000 spent
    // The round folds the journaled usage: the window budget is judged there.
    wd.round(l.partition_of("q")).await.unwrap();

    assert_eq!(wd.feed_hooks().await.unwrap(), 3, "one call per hook");
    let report = wd.deliver_hooks().await.unwrap();
    assert_eq!(report.settled.len(), 3, "{report:?}");
    assert!(report.settled.iter().all(|s| s.1), "{report:?}");
    for (name, kind) in [
        ("warn", "execution.budget_warning"),
        ("over", "execution.budget_exceeded"),
        ("paused", "queue.budget_paused"),
    ] {
        let called = files(dir.path(), name);
        assert_eq!(called.len(), 1, "{name}: {called:?}");
        let body: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join(&called[0])).unwrap())
                .unwrap();
        assert_eq!(body["kind"], kind, "{body}");
        assert_eq!(body["event"]["queue"], "q", "{body}");
    }
}
