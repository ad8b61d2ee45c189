//! The hook outbox when the replica delivering a call is killed: an `unstuck watchdog`
//! process is SIGKILLed while its hook runs, and another replica delivers the call again
//! under the same idempotency key, once, and records its outcome once.

use crate::support;
use crate::watchdog_common;

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use unstuck::hooks::HookConfig;
use unstuck::watchdog::{Watchdog, WatchdogConfig};
use unstuck::*;
use watchdog_common::*;

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn a_call_whose_watchdog_process_was_killed_mid_call_is_delivered_again_once() {
    let l = support::ledger("hooks_outbox_kill").await;
    let dir = tempfile::tempdir().unwrap();
    // The first delivery hangs (and records its pid); the next one completes.
    let script = format!(
        "cd '{}'; echo $UNSTUCK_IDEMPOTENCY_KEY >> keys; n=$(wc -l < keys); \
         if [ $n -eq 1 ]; then echo $$ > hung.pid; exec sleep 30; fi; cat > body.$n",
        dir.path().display()
    );
    let settings = dir.path().join("unstuck.toml");
    std::fs::write(
        &settings,
        format!(
            "[watchdog]\nlease_ttl = \"1s\"\nmax_poll_interval = \"20ms\"\n\
             [[watchdog.hooks]]\nname = \"page\"\non = [\"execution.dead\"]\n\
             command = [\"sh\", \"-c\", {script:?}]\ntimeout = \"1s\"\nretries = 0\n"
        ),
    )
    .unwrap();
    let mut replica = tokio::process::Command::new(env!("CARGO_BIN_EXE_unstuck"))
        .env("UNSTUCK_LEDGER__REDIS_URL", support::redis().url())
        .env("UNSTUCK_LEDGER__NAMESPACE", &l.config().namespace)
        .arg("watchdog")
        .arg("--config")
        .arg(&settings)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("unstuck watchdog starts");
    // Its hook feed has set where it starts reading the queue's partition.
    let cursor = keyspace(&l).hooks_cursor();
    let field = format!("p:{}", l.partition_of("q"));
    let conn = raw(&l).await;
    support::wait_until(WAIT, "the replica feeds the hooks", || async {
        redis::AsyncCommands::hexists::<_, _, bool>(&mut conn.clone(), &cursor, &field)
            .await
            .unwrap_or(false)
    })
    .await;
    let opts = EnqueueOptions::new()
        .max_attempts(1)
        .start_grace(Duration::from_millis(50));
    dispatch(&l, "q", "e", opts, "w1").await;
    support::wait_until(WAIT, "the hook runs", || async {
        dir.path().join("hung.pid").exists()
    })
    .await;
    kill(Pid::from_raw(replica.id().unwrap() as i32), Signal::SIGKILL).unwrap();
    replica.wait().await.unwrap();
    assert_eq!(state(&l, "q", "e").await, State::Dead);

    let hook = HookConfig {
        command: vec!["sh".into(), "-c".into(), script],
        timeout: Duration::from_secs(1),
        retries: 0,
        ..HookConfig::command("page", &["execution.dead"], &[])
    };
    let b = Watchdog::new(
        l.clone(),
        WatchdogConfig {
            hooks: vec![hook],
            ..config("rb")
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
    assert_eq!(settled.len(), 1);
    assert!(settled[0].1, "{settled:?}");
    let keys = std::fs::read_to_string(dir.path().join("keys")).unwrap();
    let keys: Vec<&str> = keys.lines().collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(keys[0], keys[1], "the same idempotency key");
    let outcomes: Vec<String> = l
        .worker_events(None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.reason)
        .collect();
    assert_eq!(outcomes, ["hook_succeeded"], "recorded once");
    assert!(b.deliver_hooks().await.unwrap().settled.is_empty());
    // The hung first call outlived its killed replica: stop it.
    let pid: i32 = std::fs::read_to_string(dir.path().join("hung.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
}
