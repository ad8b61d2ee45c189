//! The terminate (tier 2) and kill (tier 3) actions of worker remediation when no hook
//! carries them out (hooks go through the outbox): a signal to an `unstuck exec`
//! supervisor on this host.
//! Each runs on a task of its own and reports its outcome to the worker's tier state
//! (`lua/worker_outcome.lua`), where only the action it names counts.

use std::time::Duration;

use super::Watchdog;
use crate::WorkerInfo;

impl Watchdog {
    /// An `unstuck exec` supervisor on this host, alive under the pid it registered (its
    /// command line says so: a reused pid is never signalled).
    pub(crate) fn local_supervisor(&self, w: &WorkerInfo) -> bool {
        if !self.config.tiers.signal_local || w.pid == 0 || w.host != crate::ledger::this_host() {
            return false;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{}/cmdline", w.pid)) else {
            return false;
        };
        let mut args = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned());
        let program = args.next().unwrap_or_default();
        let is_unstuck = std::path::Path::new(&program)
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("unstuck"));
        is_unstuck && args.any(|a| a == "exec")
    }

    /// A worker registered from this host whose process is gone (exited or reaped): a
    /// stale verdict on it needs no remediation — reconciliation already took its work.
    pub(crate) fn process_gone(&self, w: &WorkerInfo) -> bool {
        w.pid != 0 && w.host == crate::ledger::this_host() && !alive(w.pid)
    }

    /// Signals `w` for the action of `tier` (no hook carries it out); its outcome is
    /// recorded when it ends.
    pub(crate) fn signal_action(&self, w: &WorkerInfo, tier: u8, action_id: &str) {
        let (wd, pid, worker, action) = (
            self.clone(),
            w.pid,
            w.worker_id.clone(),
            action_id.to_owned(),
        );
        let signal = if tier >= 3 { "KILL" } else { "TERM" };
        tokio::spawn(async move {
            let (ok, text) = signal_and_wait(pid, signal, wd.config.tiers.signal_wait).await;
            match wd
                .ledger
                .record_worker_action(&worker, &action, ok, &text, &wd.replica_id)
                .await
            {
                Ok(_) => tracing::info!(%worker, ok, text, "worker action done"),
                Err(error) => {
                    tracing::warn!(%worker, %error, "the worker action's outcome was not recorded")
                }
            }
        });
    }
}

/// Sends SIG`signal` to `pid` and waits up to `wait` for it to go (a zombie counts as
/// gone). Returns whether it went, and what happened in words.
async fn signal_and_wait(pid: u32, signal: &str, wait: Duration) -> (bool, String) {
    let sent = tokio::process::Command::new("kill")
        .arg("-s")
        .arg(signal)
        .arg(pid.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await;
    match sent {
        Ok(status) if status.success() => {}
        Ok(status) => return (false, format!("kill -s {signal} {pid} failed: {status}")),
        Err(e) => return (false, format!("cannot run kill: {e}")),
    }
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if !alive(pid) {
            return (true, format!("SIG{signal} sent to pid {pid}; it exited"));
        }
        if tokio::time::Instant::now() >= deadline {
            return (
                false,
                format!("SIG{signal} sent to pid {pid}; still running after {wait:?}"),
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The process exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses, which may hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}
