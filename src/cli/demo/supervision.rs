//! The demo's worker-supervision rows, run after the fault kinds in a namespace of their
//! own with a watchdog that judges workers: a command under `unstuck exec` that goes
//! silent, a worker running an outdated version, and a wedged worker escalated to the
//! breaker — with the tiers each reached and the hooks called.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use unstuck::hooks::HookConfig;
use unstuck::watchdog::{TierConfig, Watchdog, WatchdogConfig};
use unstuck::{
    EnqueueOptions, Heartbeat, Job, JobError, Ledger, LedgerConfig, Result, Runner, RunnerConfig,
    State, WorkerRegistration, WorkerRequest,
};

/// Longest wait for one case.
const WAIT: Duration = Duration::from_secs(20);
const COOLDOWN: Duration = Duration::from_millis(300);

/// One supervision case, as the table shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SupervisionRow {
    pub case: String,
    pub expected: String,
    pub observed: String,
    /// Tiers the worker went through, in order.
    pub tiers: Vec<u8>,
    /// Hook calls, by hook name.
    pub hooks: BTreeMap<String, usize>,
    pub correct: bool,
}

/// Runs the three cases against `redis_url` in namespace `namespace`.
///
/// # Errors
/// Redis errors; the exec supervisor that cannot start.
pub async fn run(redis_url: &str, namespace: &str) -> Result<Vec<SupervisionRow>> {
    let mut config = LedgerConfig::new(redis_url.to_owned());
    config.namespace = namespace.to_owned();
    config.partitions = 2;
    let ledger = Ledger::connect(config).await?;
    let dir = std::env::temp_dir().join(format!("unstuck-{namespace}"));
    std::fs::create_dir_all(&dir).map_err(|e| unstuck::Error::InvalidConfig {
        key: "demo scratch directory".into(),
        value: dir.display().to_string(),
        expected: format!("a writable directory ({e})"),
    })?;
    let stop = CancellationToken::new();
    let watchdog = Watchdog::new(ledger.clone(), watchdog_config(&dir))?;
    let replica = {
        let (wd, stop) = (watchdog.clone(), stop.clone());
        tokio::spawn(async move { wd.run(stop).await })
    };
    let rows = vec![
        silent_command(&ledger, &dir, redis_url, namespace).await?,
        outdated_worker(&ledger).await?,
        wedged_worker(&ledger, &dir).await?,
    ];
    stop.cancel();
    let _ = replica.await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(rows)
}

/// A replica that judges workers every 100 ms with short cooldowns, expects version 2.0.0
/// of the `tools` workers, and has a terminate hook that works, a kill-and-restart hook
/// that fails and a pager for opened circuits (each logs its call to `calls`).
fn watchdog_config(dir: &Path) -> WatchdogConfig {
    let log = |exit: u8| {
        let script = format!(
            "cat > /dev/null; echo $UNSTUCK_HOOK >> '{}'; exit {exit}",
            dir.join("calls").display()
        );
        vec!["sh".to_owned(), "-c".to_owned(), script]
    };
    let hook = |name: &str, on: &str, exit: u8| HookConfig {
        command: log(exit),
        retries: 0,
        ..HookConfig::command(name, &[on], &[])
    };
    WatchdogConfig {
        replica_id: Some("supervision".into()),
        lease_ttl: Duration::from_secs(1),
        max_poll_interval: Duration::from_millis(100),
        worker_timeout: Duration::from_secs(2),
        tiers: TierConfig {
            enabled: true,
            interval: Duration::from_millis(100),
            cooldown_cooperative: COOLDOWN,
            cooldown_terminate: COOLDOWN,
            cooldown_kill: COOLDOWN,
            breaker_failures: 2,
            expected_versions: [("tools".to_owned(), "2.0.0".to_owned())].into(),
            ..TierConfig::default()
        },
        hooks: vec![
            hook("terminate", "worker.tier_2", 0),
            hook("restart", "worker.tier_3", 1),
            hook("page", "worker.circuit_opened", 0),
        ],
        ..WatchdogConfig::default()
    }
}

async fn wait_for<F, Fut>(mut done: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if done().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// `unstuck exec` runs a command that prints one line and goes silent: killed by the
/// no-output timeout with its whole group, retried, and the retry succeeds.
async fn silent_command(
    ledger: &Ledger,
    dir: &Path,
    redis_url: &str,
    namespace: &str,
) -> Result<SupervisionRow> {
    let pid_file = dir.join("silent.pid");
    let script = format!(
        "if [ \"$UNSTUCK_ATTEMPT\" -eq 1 ]; then echo thinking; sleep 60 & echo $! > '{}'; \
         wait; fi; echo '{{\"answer\": 42}}'",
        pid_file.display()
    );
    let opts = EnqueueOptions::new()
        .id("silent-1")
        .max_attempts(2)
        .backoff_base(Duration::from_millis(100));
    ledger.enqueue("agent", &json!({"ask": "?"}), opts).await?;
    let mut child = exec_supervisor(dir, redis_url, namespace, &script)?;
    let finished = wait_for(|| async {
        ledger
            .get("agent", "silent-1")
            .await
            .is_ok_and(|e| e.state.is_terminal())
    })
    .await;
    let grandchild = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok());
    let gone = grandchild.is_some_and(|pid| !running(pid));
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    let e = ledger.get("agent", "silent-1").await?;
    let silenced = ledger
        .execution_events("agent", "silent-1")
        .await?
        .iter()
        .any(|ev| ev.detail.contains("no output for 1s"));
    let correct = finished && e.state == State::Succeeded && e.attempt == 2 && silenced && gone;
    Ok(SupervisionRow {
        case: "exec: command goes silent".into(),
        expected: "no-output kill, group gone, retried, succeeds on attempt 2".into(),
        observed: format!(
            "{} on attempt {}; no-output kill {}; its sleep {}",
            e.state,
            e.attempt,
            if silenced { "recorded" } else { "missing" },
            if gone { "gone" } else { "still running" }
        ),
        tiers: Vec::new(),
        hooks: BTreeMap::new(),
        correct,
    })
}

fn exec_supervisor(
    dir: &Path,
    redis_url: &str,
    namespace: &str,
    script: &str,
) -> Result<tokio::process::Child> {
    let program: PathBuf = std::env::current_exe().map_err(|e| unstuck::Error::InvalidConfig {
        key: "unstuck binary".into(),
        value: "current_exe".into(),
        expected: e.to_string(),
    })?;
    tokio::process::Command::new(program)
        .env("UNSTUCK_LEDGER__REDIS_URL", redis_url)
        .env("UNSTUCK_LEDGER__NAMESPACE", namespace)
        .env("UNSTUCK_LEDGER__PARTITIONS", "2")
        .args(["exec", "--queue", "agent", "--no-output-timeout", "1s"])
        .args([
            "--stop-grace",
            "300ms",
            "--worker-heartbeat-interval",
            "200ms",
        ])
        .arg("--state-dir")
        .arg(dir.join("exec-state"))
        .args(["--", "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| unstuck::Error::InvalidConfig {
            key: "unstuck exec".into(),
            value: "spawn".into(),
            expected: e.to_string(),
        })
}

/// A Rust worker of version 1.0.0 on `tools`, where 2.0.0 is expected: asked to restart
/// at tier 1, it hands its job back and stops; its successor (2.0.0) finishes the job.
async fn outdated_worker(ledger: &Ledger) -> Result<SupervisionRow> {
    let opts = EnqueueOptions::new()
        .id("tool-1")
        .backoff_base(Duration::from_millis(50));
    ledger.enqueue("tools", &json!({}), opts).await?;
    let runner = |version: &str| {
        let mut config = RunnerConfig::new("tools");
        config.worker_heartbeat_interval = Duration::from_millis(100);
        config.poll_interval = Duration::from_millis(50);
        config.registration = Some(WorkerRegistration::for_this_process(
            version,
            vec!["tools".into()],
        ));
        Runner::new(ledger.clone(), config)
    };
    let old_id_probe = ledger.clone();
    let old = runner("1.0.0")?.run(
        |job: Job| async move {
            job.cancelled().await;
            Err(JobError::retryable("asked to restart"))
        },
        CancellationToken::new(),
    );
    let report = tokio::time::timeout(WAIT, old).await.ok().transpose()?;
    let stopped_by = report.and_then(|r| r.stopped_by);
    let events = old_id_probe.worker_events(None, 1000).await?;
    let tiers: Vec<u8> = events
        .iter()
        .filter(|e| e.reason.starts_with("tier_") && e.detail.starts_with("outdated"))
        .map(|e| e.to_tier)
        .collect();
    let stop = CancellationToken::new();
    let successor = tokio::spawn(runner("2.0.0")?.run(
        |_job: Job| async move { Ok(Some(json!({"done": true}))) },
        stop.clone(),
    ));
    let finished = wait_for(|| async {
        ledger
            .get("tools", "tool-1")
            .await
            .is_ok_and(|e| e.state == State::Succeeded)
    })
    .await;
    stop.cancel();
    let _ = successor.await;
    let e = ledger.get("tools", "tool-1").await?;
    Ok(SupervisionRow {
        case: "worker on an outdated version".into(),
        expected: "asked to restart at tier 1; its successor finishes the job".into(),
        observed: format!(
            "stopped by {}; job {} on attempt {}",
            stopped_by.map_or("nothing".into(), |r| r.to_string()),
            e.state,
            e.attempt
        ),
        correct: stopped_by == Some(WorkerRequest::Restart)
            && tiers == [1]
            && finished
            && e.attempt == 2,
        tiers,
        hooks: BTreeMap::new(),
    })
}

/// A worker that keeps beating the registry while its only execution is stuck: tier 1,
/// 2 (the terminate hook works, but it keeps beating), 3 (the restart hook fails), 3 again,
/// then the circuit opens and the pager is called.
async fn wedged_worker(ledger: &Ledger, dir: &Path) -> Result<SupervisionRow> {
    let mut reg = WorkerRegistration::for_this_process("2.0.0", vec!["bridge".into()]);
    reg.pid = 0; // a remote process: only the hooks can act on it
    ledger.register_worker(&reg).await?;
    let worker = reg.worker_id;
    let opts = EnqueueOptions::new()
        .id("bridge-1")
        .heartbeat_timeout(Duration::from_millis(500))
        .stuck_threshold(Duration::from_secs(600));
    ledger.enqueue("bridge", &json!({}), opts).await?;
    let claim = ledger.claim("bridge", &worker).await?;
    let running = vec![("bridge".to_owned(), "bridge-1".to_owned())];
    if let Some(claim) = &claim {
        ledger.heartbeat(&claim.token, Heartbeat::new()).await?;
    }
    let opened = wait_for(|| async {
        let _ = ledger.worker_beat(&worker, &running).await;
        ledger
            .worker(&worker)
            .await
            .ok()
            .flatten()
            .is_some_and(|w| w.remediation.circuit_open)
    })
    .await;
    // The pager is called right after the circuit opens.
    let paged = wait_for(|| async { hook_calls(dir).contains_key("page") }).await;
    if let Some(claim) = &claim {
        let _ = ledger.cancel("bridge", claim.id(), "demo over").await;
    }
    let _ = ledger.deregister_worker(&worker).await;
    let tiers: Vec<u8> = ledger
        .worker_events(None, 1000)
        .await?
        .iter()
        .filter(|e| e.worker_id == worker && e.reason.starts_with("tier_"))
        .map(|e| e.to_tier)
        .collect();
    let hooks = hook_calls(dir);
    let expected_hooks: BTreeMap<String, usize> = [("page", 1), ("restart", 2), ("terminate", 1)]
        .iter()
        .map(|(h, n)| ((*h).to_owned(), *n))
        .collect();
    Ok(SupervisionRow {
        case: "wedged worker".into(),
        expected: "tiers 1, 2, 3, 3, then the circuit opens and pages".into(),
        observed: format!("circuit {}", if opened { "open" } else { "still closed" }),
        correct: opened && paged && tiers == [1, 2, 3, 3] && hooks == expected_hooks,
        tiers,
        hooks,
    })
}

/// Hook calls so far, by hook name (each hook appends its name to `calls`).
fn hook_calls(dir: &Path) -> BTreeMap<String, usize> {
    let mut calls = BTreeMap::new();
    for name in std::fs::read_to_string(dir.join("calls"))
        .unwrap_or_default()
        .lines()
    {
        *calls.entry(name.to_owned()).or_insert(0) += 1;
    }
    calls
}

/// The process exists and is not a zombie (an orphan's zombie waits for init to reap it).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}
