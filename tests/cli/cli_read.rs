//! The operator's read commands of the `unstuck` binary — `queues`, `executions`, `show`,
//! `events` (with `--follow`), `workers`, `status` — run against real executions, their
//! tables and `--json` replies checked against what the library set up.

use crate::cli_common;
use crate::health_common;
use crate::ledger_common;
use crate::support;

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;
use unstuck::watchdog::{Watchdog, WatchdogConfig};
use unstuck::*;

use cli_common::{event_lines, finish, moves, page_ids, queue_counts, run, run_json};

#[tokio::test]
async fn queues_shows_depth_slots_and_capacity() {
    let l = support::ledger("cli_queues").await;
    let settings = QueueSettings {
        capacity: Some(3),
        ..QueueSettings::default()
    };
    l.set_queue("alpha", &settings).await.unwrap();
    for id in ["a1", "a2", "a3"] {
        l.enqueue("alpha", &json!({}), EnqueueOptions::new().id(id))
            .await
            .unwrap();
    }
    l.claim("alpha", "w1").await.unwrap().unwrap();
    let later = EnqueueOptions::new().delay(Duration::from_secs(600));
    l.enqueue("beta", &json!({}), later).await.unwrap();

    let reply = run_json(&l, &["queues"]).await;
    let want = [
        ("alpha".to_owned(), 2, 2, 1, 3),
        ("beta".to_owned(), 1, 0, 0, 100),
    ];
    assert_eq!(queue_counts(&reply), want);
    let queues = reply["queues"].as_array().unwrap();
    assert!(queues[0]["oldest_queued_age_ms"].is_u64(), "{reply}");
    assert_eq!(
        queues[1]["oldest_queued_age_ms"],
        Value::Null,
        "none claimable"
    );

    let table = run(&l, &["queues"]).await;
    assert_eq!(table.code, Some(0));
    let lines: Vec<Vec<&str>> = table
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0][..4], ["QUEUE", "DEPTH", "AVAILABLE", "SLOTS"]);
    assert_eq!(lines[1][..4], ["alpha", "2", "2", "1/3"]);
    assert_eq!(lines[2][..5], ["beta", "1", "0", "0/100", "-"]);

    // The same namespace named by a --config file instead of the environment.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("unstuck.toml");
    let toml = format!(
        "[ledger]\nredis_url = \"{}\"\nnamespace = \"{}\"\n",
        support::redis().url(),
        l.config().namespace
    );
    std::fs::write(&path, toml).unwrap();
    let mut cmd = cli_common::bare();
    cmd.args(["queues", "--json", "--config"]).arg(&path);
    let from_file = cli_common::output(cmd).await.json();
    assert_eq!(queue_counts(&from_file), want);
}

#[tokio::test]
async fn executions_filters_newest_first_and_pages_with_the_cursor() {
    let l = support::ledger("cli_executions").await;
    finish(&l, "alpha", "a1", "failed").await;
    finish(&l, "alpha", "a2", "failed").await;
    finish(&l, "alpha", "a3", "succeeded").await;
    finish(&l, "beta", "b1", "failed").await;
    finish(&l, "beta", "b2", "running").await;

    let failed = run_json(&l, &["executions", "--state", "failed"]).await;
    assert_eq!(page_ids(&failed), ["alpha/a2", "alpha/a1", "beta/b1"]);
    assert_eq!(failed["next_cursor"], Value::Null);
    assert_eq!(failed["items"][0]["stop"]["reason"], "failed");
    assert_eq!(failed["items"][0]["last_error"], "boom");

    let first = run_json(&l, &["executions", "--state", "failed", "--limit", "2"]).await;
    assert_eq!(page_ids(&first), ["alpha/a2", "alpha/a1"]);
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let args = [
        "executions",
        "--state",
        "failed",
        "--limit",
        "2",
        "--cursor",
    ];
    let rest = run_json(&l, &[&args[..], &[cursor.as_str()]].concat()).await;
    assert_eq!(page_ids(&rest), ["beta/b1"]);
    assert_eq!(rest["next_cursor"], Value::Null);

    let by_reason = run_json(&l, &["executions", "--stop-reason", "succeeded"]).await;
    assert_eq!(page_ids(&by_reason), ["alpha/a3"]);
    let by_worker = run_json(&l, &["executions", "--worker", "worker-beta"]).await;
    assert_eq!(page_ids(&by_worker), ["beta/b2", "beta/b1"]);
    let one_queue = run_json(&l, &["executions", "--queue", "beta", "--state", "running"]).await;
    assert_eq!(page_ids(&one_queue), ["beta/b2"]);
    assert_eq!(one_queue["items"][0]["worker"], "worker-beta");

    // The table: one row per execution, and the cursor to go on with on stderr.
    let table = run(&l, &["executions", "--state", "failed", "--limit", "2"]).await;
    assert_eq!(table.code, Some(0));
    let rows: Vec<Vec<&str>> = table
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{}", table.stdout);
    assert_eq!(rows[0][..4], ["alpha/a2", "failed", "1", "worker-alpha"]);
    assert_eq!(rows[1][0], "alpha/a1");
    assert_eq!(table.stderr.trim(), format!("more: --cursor {cursor}"));

    let none = run(&l, &["executions", "--queue", "gamma"]).await;
    assert_eq!(
        (none.code, none.stderr.trim()),
        (Some(0), "no executions match")
    );
    let bad = run(&l, &["executions", "--state", "sleeping"]).await;
    assert!(bad.one_line_failure().contains("sleeping"), "{bad:?}");
    let bad = run(&l, &["executions", "--cursor", "garbage"]).await;
    assert!(bad.one_line_failure().contains("cursor"), "{bad:?}");
}

#[tokio::test]
async fn show_prints_state_checkpoint_and_timeline() {
    let l = support::ledger("cli_show").await;
    finish(&l, "q", "s1", "failed").await;

    let text = run(&l, &["show", "q", "s1"]).await;
    assert_eq!(text.code, Some(0), "{text:?}");
    let out = &text.stdout;
    assert!(out.starts_with("q/s1  failed  attempt 1\n"), "{out}");
    assert!(out.contains("worker          worker-q\n"), "{out}");
    assert!(out.contains("checkpoint      {\"step\":3}\n"), "{out}");
    assert!(out.contains("progress        half way"), "{out}");
    assert!(out.contains("last error      boom\n"), "{out}");
    assert!(out.contains("stopped         failed"), "{out}");
    let timeline: Vec<Vec<&str>> = out
        .lines()
        .skip_while(|l| !l.starts_with("AT "))
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    let moves: Vec<&[&str]> = timeline.iter().map(|r| &r[1..6]).collect();
    assert_eq!(
        moves,
        [
            ["0", "-", "→", "queued", "enqueued"],
            ["1", "queued", "→", "dispatched", "claimed"],
            ["1", "dispatched", "→", "running", "started"],
            ["1", "running", "→", "failed", "failed"],
        ]
    );

    let reply = run_json(&l, &["show", "q", "s1"]).await;
    let e = &reply["execution"];
    assert_eq!((&e["state"], &e["attempt"]), (&json!("failed"), &json!(1)));
    assert_eq!(e["checkpoint"], json!({"step": 3}));
    assert_eq!(e["payload"], json!({"id": "s1"}));
    // The HTTP API's shape: the library's serde form, durations in milliseconds.
    let stored = l.get("q", "s1").await.unwrap();
    assert_eq!(e, &serde_json::to_value(&stored).unwrap());
    assert_eq!(e["timings"]["heartbeat_timeout"], json!(30_000));
    let events = l.execution_events("q", "s1").await.unwrap();
    assert_eq!(reply["events"], serde_json::to_value(&events).unwrap());
    let history: Vec<(&str, &str)> = e["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["state"].as_str().unwrap(), t["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        history,
        [
            ("queued", "enqueued"),
            ("dispatched", "claimed"),
            ("running", "started"),
            ("failed", "failed")
        ]
    );
    let reasons: Vec<&str> = reply["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["enqueued", "claimed", "started", "failed"]);

    let missing = run(&l, &["show", "q", "nobody"]).await;
    assert!(missing.one_line_failure().contains("nobody"), "{missing:?}");
}

#[tokio::test]
async fn events_prints_transitions_and_follows_new_ones() {
    let l = support::ledger("cli_events").await;
    finish(&l, "ev", "e1", "succeeded").await;
    // Partitions are merged by time: o1's events come a millisecond later than e1's.
    let mut conn = ledger_common::raw().await;
    let e1_done = ledger_common::server_ms(&mut conn).await;
    ledger_common::wait_for_server_after(&conn, e1_done).await;
    finish(&l, "other", "o1", "succeeded").await;

    let out = run(&l, &["events", "--queue", "ev", "--json"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let events = event_lines(&out.stdout);
    let want = |id: &str| {
        [
            ("queued", "enqueued"),
            ("dispatched", "claimed"),
            ("succeeded", "completed"),
        ]
        .map(|(to, reason)| (id.to_owned(), to.to_owned(), reason.to_owned()))
    };
    assert_eq!(moves(&events), want("e1"));
    assert!(events.iter().all(|e| e["queue"] == "ev"), "{events:?}");

    let all = event_lines(&run(&l, &["events", "--json"]).await.stdout);
    assert_eq!(moves(&all), [want("e1"), want("o1")].concat());
    let newest = event_lines(&run(&l, &["events", "--json", "--limit", "2"]).await.stdout);
    assert_eq!(moves(&newest), want("o1")[1..]);
    let text = run(&l, &["events", "--queue", "other", "--limit", "1"]).await;
    assert!(
        text.stdout
            .trim_end()
            .ends_with("other/o1 #1 dispatched → succeeded completed"),
        "{text:?}"
    );

    // --follow: once the newest event is printed, the follower is in place.
    let mut cmd = cli_common::unstuck(&l, &["events", "--queue", "ev", "--follow", "--json"]);
    cmd.args(["--limit", "1"])
        .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next_line = async || {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await;
        let line = line
            .expect("a line within 10s")
            .unwrap()
            .expect("not closed");
        serde_json::from_str::<Value>(&line).unwrap()
    };
    assert_eq!(moves(&[next_line().await]), want("e1")[2..]);
    finish(&l, "other", "o2", "succeeded").await;
    l.enqueue("ev", &json!({}), EnqueueOptions::new().id("e2"))
        .await
        .unwrap();
    let followed = next_line().await;
    assert_eq!(moves(std::slice::from_ref(&followed)), want("e2")[..1]);
    assert_eq!(followed["queue"], "ev");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn events_follow_ends_quietly_when_its_reader_goes_away() {
    let l = support::ledger("cli_events_gone").await;
    finish(&l, "ev", "e1", "succeeded").await;
    let mut cmd = cli_common::unstuck(&l, &["events", "--follow", "--limit", "1"]);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await;
    assert!(first.unwrap().unwrap().unwrap().ends_with("completed"));
    drop(lines); // like `| head -1`
    l.enqueue("ev", &json!({}), EnqueueOptions::new().id("e2"))
        .await
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output()).await;
    let out = out.expect("it stops within 10s").unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!((out.status.code(), stderr.as_ref()), (Some(0), ""));
}

#[tokio::test]
async fn workers_lists_the_registered_worker_and_what_it_holds() {
    let l = support::ledger("cli_workers").await;
    let reg = WorkerRegistration::for_this_process("9.9.9", vec!["wq".into()]);
    l.register_worker(&reg).await.unwrap();
    l.enqueue("wq", &json!({}), EnqueueOptions::new().id("held-1"))
        .await
        .unwrap();
    let claim = l.claim("wq", &reg.worker_id).await.unwrap().unwrap();
    l.heartbeat(&claim.token, Heartbeat::new()).await.unwrap();
    let running = [("wq".to_owned(), "held-1".to_owned())];
    l.worker_heartbeat(&reg.worker_id, &running).await.unwrap();

    let reply = run_json(&l, &["workers"]).await;
    let workers = reply["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 1, "{reply}");
    let w = &workers[0];
    assert_eq!(w["worker_id"], reg.worker_id.as_str());
    assert_eq!(w["pid"], std::process::id());
    assert_eq!(
        (&w["version"], &w["queues"]),
        (&json!("9.9.9"), &json!(["wq"]))
    );
    assert_eq!(w["held"], json!([{"queue": "wq", "id": "held-1"}]));
    assert_eq!(w["running"], json!([{"queue": "wq", "id": "held-1"}]));

    let table = run(&l, &["workers"]).await;
    let row: Vec<&str> = table
        .stdout
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        row[..5],
        [
            reg.worker_id.as_str(),
            &reg.host,
            &reg.pid.to_string(),
            "9.9.9",
            "wq"
        ]
    );
    assert_eq!(
        row[row.len() - 3..],
        ["1", "1", "-"],
        "held, reported, tier: {row:?}"
    );
}

#[tokio::test]
async fn status_is_degraded_without_a_replica_and_healthy_with_one() {
    let l = support::ledger("cli_status").await;
    let degraded = run(&l, &["status", "--json"]).await;
    assert_eq!(degraded.code, Some(1), "{degraded:?}");
    let v: Value = serde_json::from_str(&degraded.stdout).unwrap();
    assert_eq!(v["health"]["verdict"], "degraded");
    let verdict = v["health"]["summary"].as_str().unwrap();
    assert!(
        verdict.starts_with("degraded: no watchdog replica is alive"),
        "{verdict}"
    );
    assert!(
        verdict.contains("16 of 16 partition(s) unwatched"),
        "{verdict}"
    );
    assert_eq!(v["replicas"], json!([]));
    let text = run(&l, &["status"]).await;
    assert_eq!(text.code, Some(1));
    assert_eq!(text.stdout.lines().last(), Some(verdict));

    let config = WatchdogConfig {
        replica_id: Some("cli-r1".into()),
        ..WatchdogConfig::default()
    };
    let replica = Watchdog::new(l.clone(), config).unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { replica.run(shutdown).await }
    });
    support::wait_until(
        Duration::from_secs(10),
        "the replica holds every partition",
        || {
            let l = l.clone();
            async move {
                let s = watchdog::status(&l).await.unwrap();
                s.unwatched().is_empty() && !s.replicas.is_empty()
            }
        },
    )
    .await;

    let healthy = run(&l, &["status", "--json"]).await;
    let v = healthy.json();
    assert_eq!(v["health"]["verdict"], "healthy");
    assert_eq!(v["health"]["reasons"], json!([]));
    assert_eq!(
        v["health"]["summary"],
        "healthy: 1 replica(s) watch all 16 partitions"
    );
    assert_eq!(v["replicas"][0]["replica_id"], "cli-r1");
    let owners: Vec<&Value> = v["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["owner"])
        .collect();
    assert_eq!(owners, vec![&json!("cli-r1"); 16]);
    let text = run(&l, &["status"]).await;
    assert_eq!(text.code, Some(0), "{text:?}");
    assert_eq!(
        text.stdout.lines().last(),
        Some("healthy: 1 replica(s) watch all 16 partitions")
    );

    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn status_prints_the_library_health_verdict_in_every_case() {
    for case in health_common::CASES {
        let l = support::ledger(&format!("cli_health_{case}")).await;
        let _replica = health_common::set_up(&l, case).await;
        let library = watchdog::status(&l).await.unwrap().health;
        let exit = Some(if case == "healthy" { 0 } else { 1 });

        let reply = run(&l, &["status", "--json"]).await;
        assert_eq!(reply.code, exit, "{case}: {reply:?}");
        let v: Value = serde_json::from_str(&reply.stdout).unwrap();
        assert_eq!(v["health"], json!(library), "{case}");
        let text = run(&l, &["status"]).await;
        assert_eq!(text.code, exit, "{case}: {text:?}");
        assert_eq!(
            text.stdout.lines().last(),
            Some(library.summary.as_str()),
            "{case}"
        );
    }
}

#[tokio::test]
async fn status_says_redis_unreachable_and_exits_non_zero() {
    let mut redis = unstuck::testkit::RedisProcess::start(Default::default()).unwrap();
    let url = redis.url().to_owned();
    redis.kill_hard();
    let mut cmd = cli_common::bare();
    cmd.env("UNSTUCK_LEDGER__REDIS_URL", &url)
        .args(["status", "--json"]);
    let reply = cli_common::output(cmd).await;
    assert_eq!(reply.code, Some(1), "{reply:?}");
    let v: Value = serde_json::from_str(&reply.stdout).unwrap();
    assert_eq!(v["health"]["verdict"], "degraded");
    assert_eq!(v["health"]["reasons"][0]["code"], "redis_unreachable");
    let mut cmd = cli_common::bare();
    cmd.env("UNSTUCK_LEDGER__REDIS_URL", &url).arg("status");
    let text = cli_common::output(cmd).await;
    assert_eq!(text.code, Some(1), "{text:?}");
    assert!(
        text.stdout.starts_with("degraded: Redis unreachable ("),
        "{text:?}"
    );
}

#[tokio::test]
async fn show_keeps_transitions_whose_events_the_capped_stream_trimmed() {
    let l = support::ledger_with("cli_show_trimmed", |c| c.events_max_len = 100).await;
    let opts = || EnqueueOptions::new().max_attempts(1);
    l.enqueue("q", &json!({}), opts().id("s1")).await.unwrap();
    // Enough later events in the same partition to trim its stream past s1's enqueue.
    let filler = json!({ "filler": true });
    for _ in 0..4 {
        l.enqueue_many("q", (0..100).map(|_| (&filler, opts())))
            .await
            .unwrap();
    }
    let claim = l.claim("q", "worker-q").await.unwrap().unwrap();
    assert_eq!(claim.id(), "s1");
    l.heartbeat(&claim.token, Heartbeat::new()).await.unwrap();
    l.fail(&claim.token, "boom", false).await.unwrap();

    let reply = run_json(&l, &["show", "q", "s1"]).await;
    let events: Vec<&str> = reply["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["claimed", "started", "failed"],
        "the enqueue was trimmed"
    );
    let timeline: Vec<(&str, &str, &str)> = reply["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let s = |f: &str| t[f].as_str().unwrap_or("-");
            (s("to"), s("reason"), s("source"))
        })
        .collect();
    assert_eq!(
        timeline,
        [
            ("queued", "enqueued", "history"),
            ("dispatched", "claimed", "event"),
            ("running", "started", "event"),
            ("failed", "failed", "event"),
        ]
    );
    assert_eq!(reply["timeline"][3]["detail"], reply["events"][2]["detail"]);

    let text = run(&l, &["show", "q", "s1"]).await;
    assert_eq!(text.code, Some(0), "{text:?}");
    let rows: Vec<&str> = text
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("AT "))
        .skip(1)
        .collect();
    assert_eq!(rows.len(), 4, "{}", text.stdout);
    assert!(
        rows[0].contains("- → queued") && rows[0].contains("enqueued"),
        "{}",
        rows[0]
    );
    assert!(
        rows[0].ends_with("from history (event trimmed)"),
        "{}",
        rows[0]
    );
    assert!(!rows[1].contains("from history"), "{}", rows[1]);
    assert!(
        text.stderr
            .contains("1 of 4 transition(s) from the execution's history"),
        "{text:?}"
    );
}
