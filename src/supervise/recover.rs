//! Cleaning up after supervisors of this host and queue that died: their commands are
//! stopped and their attempts sent down the retry path, once.
//!
//! A state file whose lock can be taken belongs to a supervisor that is gone (the kernel
//! drops a dead process's locks). For each attempt it held:
//! - its command still runs (same pid, same start time, same boot): the process group is
//!   stopped (SIGTERM, SIGKILL after the grace) and the attempt fails retryably with
//!   `process_detached`;
//! - its command is gone (or never started): `process_lost` — nobody saw how it ended;
//!   anything left of its group is stopped;
//! - a pid that now names a later process is gone too: its group is not touched.
//!
//! The failure carries the old attempt's token, so the ledger's fencing makes it count
//! once: if the watchdog (or an earlier recovery) already moved the execution on, the
//! reply says stale or terminal and nothing changes. Such replies are expected and quiet.

use std::io::ErrorKind;
use std::path::Path;
use std::time::Duration;

use super::child::{Family, ProcessGroup};
use super::procfs;
use super::records::{self, ChildRecord, StateFile};
use crate::error::Error;
use crate::ledger::{FailOutcome, Ledger};
use crate::runner::retry;

/// What recovery found and did, counted per attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovered {
    /// Commands that outlived their supervisor and were stopped.
    pub detached: u64,
    /// Commands that had ended (or never started) with nobody to see how.
    pub lost: u64,
    /// Of those, attempts this recovery sent down the retry path (the others had moved
    /// on already, or had no attempts left).
    pub retried: u64,
}

/// Recovers every dead supervisor's state file in `dir` except `own`'s.
pub(crate) async fn previous(
    ledger: &Ledger,
    dir: &Path,
    own: &str,
    grace: Duration,
    note: &(dyn Fn(&str) + Send + Sync),
) -> Recovered {
    let mut recovered = Recovered::default();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return recovered;
    };
    let mut stems: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            Some(name.strip_suffix(".lock")?.to_owned())
        })
        .filter(|stem| stem != own)
        .collect();
    stems.sort();
    for stem in stems {
        let lock_path = dir.join(format!("{stem}.lock"));
        let Ok(lock) = std::fs::OpenOptions::new().write(true).open(&lock_path) else {
            continue;
        };
        if lock.try_lock().is_err() {
            continue; // its supervisor is alive
        }
        let path = dir.join(format!("{stem}.json"));
        let state = match records::read(&path) {
            Ok(state) => Some(state),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "unreadable state file set aside");
                let _ = std::fs::rename(&path, path.with_extension("json.unreadable"));
                None
            }
        };
        let unreported = match state {
            Some(state) => recover_file(ledger, state, grace, note, &mut recovered).await,
            None => Vec::new(),
        };
        if unreported.is_empty() {
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_dir_all(dir.join(format!("{stem}.d")));
            let _ = std::fs::remove_file(&lock_path);
        } else {
            // Redis did not answer: the next start tries these again.
            tracing::warn!(
                count = unreported.len(),
                "attempts of a previous supervisor not reported; kept for the next start"
            );
            if let Ok(mut state) = records::read(&path) {
                state.children = unreported;
                if let Ok(text) = serde_json::to_vec_pretty(&state) {
                    let _ = records::write_atomically(&path, &text);
                }
            }
        }
    }
    recovered
}

/// Recovers one dead supervisor's attempts; returns those that could not be reported.
async fn recover_file(
    ledger: &Ledger,
    state: StateFile,
    grace: Duration,
    note: &(dyn Fn(&str) + Send + Sync),
    recovered: &mut Recovered,
) -> Vec<ChildRecord> {
    let same_boot = state.boot_id.is_some() && state.boot_id == procfs::boot_id();
    let old = state.worker_id.as_str();
    // Every group is stopped at once: one grace in all, not one per command.
    let judged = futures_util::future::join_all(
        state
            .children
            .into_iter()
            .map(|record| async move { (judge(&record, old, same_boot, grace).await, record) }),
    )
    .await;
    let mut unreported = Vec::new();
    for ((detached, message), record) in judged {
        if detached {
            recovered.detached += 1;
        } else {
            recovered.lost += 1;
        }
        let label = format!("[{}] unstuck: ", record.token.execution_id());
        let token = &record.token;
        match retry(|| ledger.fail(token, &message, true)).await {
            Ok((FailOutcome::RetryScheduled { .. }, _)) => {
                recovered.retried += 1;
                note(&format!("{label}{message} — retry scheduled"));
            }
            Ok((FailOutcome::Failed { .. }, _)) => note(&format!("{label}{message} — failed")),
            Ok((FailOutcome::Cancelled { .. }, _)) => {
                note(&format!("{label}{message} — cancelled"))
            }
            // Moved on already (the watchdog, or an earlier recovery): nothing to do.
            Ok((FailOutcome::StaleAttempt { .. } | FailOutcome::AlreadyTerminal { .. }, _))
            | Err(Error::NotFound { .. } | Error::TokenMismatch { .. }) => {
                tracing::debug!(execution = %crate::runner::beat::label(token), "a previous supervisor's attempt had moved on");
            }
            Err(error) => {
                tracing::warn!(execution = %crate::runner::beat::label(token), %error, "cannot report a previous supervisor's attempt");
                unreported.push(record);
            }
        }
    }
    if unreported.is_empty() {
        // The registry forgets the dead supervisor now rather than after its timeout.
        match ledger.deregister_worker(old).await {
            Ok(()) | Err(Error::UnknownWorker { .. }) => {}
            Err(error) => tracing::debug!(worker = %old, %error, "old worker not deregistered"),
        }
    }
    unreported
}

/// Stops what is left of one attempt's command; whether it was still running (detached),
/// and the failure message that says so.
async fn judge(
    record: &ChildRecord,
    old: &str,
    same_boot: bool,
    grace: Duration,
) -> (bool, String) {
    let (Some(pid), Some(pgid)) = (record.pid, record.pgid) else {
        let message =
            format!("process_lost: its supervisor {old} stopped before starting the command");
        return (false, message);
    };
    let group = Family {
        group: ProcessGroup(pgid),
        mark: None,
    };
    let now = procfs::stat(pid);
    let same_process = same_boot && now.is_some_and(|s| Some(s.start_time) == record.start_time);
    if same_process && now.is_some_and(|s| s.is_running()) {
        group.stop_rest(grace).await;
        let message = format!(
            "process_detached: pid {pid} still ran after its supervisor {old} stopped; \
             its process group was killed"
        );
        return (true, message);
    }
    // The pid names no later process, so the group is still the command's.
    if same_boot && (now.is_none() || same_process) {
        group.stop_rest(grace).await;
    }
    let message = format!(
        "process_lost: pid {pid} ended while its supervisor {old} was down; how it ended is \
         unknown"
    );
    (false, message)
}
