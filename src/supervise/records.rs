//! The state file: which attempts this supervisor holds and which processes run them, so
//! that the next supervisor on this host can clean up after this one if it dies.
//!
//! Layout, under the state directory:
//! ```text
//! <namespace>+<queue>/            one directory per namespace and queue ('+' is in no name)
//!     <worker id>.lock            held (flock) for as long as that supervisor lives
//!     <worker id>.json            its records, replaced atomically (write, then rename)
//!     <worker id>.d/              checkpoint files handed to its commands
//! ```
//! One file per supervisor process rather than one per queue: two supervisors of the
//! same queue on one host never write each other's records, and the lock tells a live
//! one from a dead one without guessing from pids. A record is written when an attempt
//! is claimed (token only), again when its command has started (pid, process group,
//! start time), and dropped once its outcome is recorded. The token is a secret, so the
//! files are readable by their owner only.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

use super::procfs;
use crate::ledger::AttemptToken;

/// The state file's format version.
const VERSION: u32 = 1;

/// One state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StateFile {
    pub(crate) version: u32,
    /// The supervisor's worker id (the file's name).
    pub(crate) worker_id: String,
    pub(crate) supervisor_pid: u32,
    /// The boot the pids belong to.
    pub(crate) boot_id: Option<String>,
    pub(crate) children: Vec<ChildRecord>,
}

/// One attempt the supervisor holds, and the process running it once there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChildRecord {
    pub(crate) token: AttemptToken,
    /// `None` until the command has started.
    pub(crate) pid: Option<u32>,
    /// The command's process group (its pid: it leads its own group).
    pub(crate) pgid: Option<i32>,
    /// From `/proc/<pid>/stat`: tells the process from a later one given the same pid.
    pub(crate) start_time: Option<u64>,
}

/// The live supervisor's records: kept in memory, written through to its file.
pub(crate) struct Records {
    dir: PathBuf,
    path: PathBuf,
    lock_path: PathBuf,
    /// Held for the supervisor's life; the kernel drops the lock when the process dies.
    _lock: File,
    state: Mutex<StateFile>,
}

/// The directory of one namespace and queue's state files.
pub(crate) fn queue_dir(state_dir: &Path, namespace: &str, queue: &str) -> PathBuf {
    state_dir.join(format!("{namespace}+{queue}"))
}

/// Creates `dir` (and its parents) readable by its owner only.
pub(crate) fn create_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

impl Records {
    /// Creates and locks the state file of `worker_id` in `dir`.
    ///
    /// # Errors
    /// The directory or files cannot be created or written.
    pub(crate) fn create(dir: &Path, worker_id: &str) -> std::io::Result<Self> {
        create_dir(dir)?;
        let lock_path = dir.join(format!("{worker_id}.lock"));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)?;
        lock.try_lock().map_err(std::io::Error::other)?;
        let records = Self {
            dir: dir.to_owned(),
            path: dir.join(format!("{worker_id}.json")),
            lock_path,
            _lock: lock,
            state: Mutex::new(StateFile {
                version: VERSION,
                worker_id: worker_id.to_owned(),
                supervisor_pid: std::process::id(),
                boot_id: procfs::boot_id(),
                children: Vec::new(),
            }),
        };
        records.write(&records.state())?;
        Ok(records)
    }

    fn state(&self) -> MutexGuard<'_, StateFile> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where this supervisor's checkpoint files go.
    pub(crate) fn checkpoint_dir(&self) -> PathBuf {
        self.dir.join(format!("{}.d", self.state().worker_id))
    }

    /// An attempt was claimed: recorded before its command starts, so a supervisor that
    /// dies in between still leaves a trace of it.
    pub(crate) fn claimed(&self, token: &AttemptToken) {
        self.change(|children| {
            children.push(ChildRecord {
                token: token.clone(),
                pid: None,
                pgid: None,
                start_time: None,
            })
        });
    }

    /// The attempt's command started as `pid`, leading its own process group.
    pub(crate) fn started(&self, token: &AttemptToken, pid: u32) {
        let start_time = procfs::stat(pid).map(|s| s.start_time);
        self.change(|children| {
            if let Some(record) = children.iter_mut().find(|c| &c.token == token) {
                record.pid = Some(pid);
                record.pgid = Some(pid as i32);
                record.start_time = start_time;
            }
        });
    }

    /// The attempt's processes are gone and its outcome is recorded (or not ours to record).
    pub(crate) fn finished(&self, token: &AttemptToken) {
        self.change(|children| children.retain(|c| &c.token != token));
    }

    /// `(queue, id)` of every attempt held, for the worker registry.
    pub(crate) fn running(&self) -> Vec<(String, String)> {
        let mut running: Vec<(String, String)> = self
            .state()
            .children
            .iter()
            .map(|c| {
                (
                    c.token.queue().to_owned(),
                    c.token.execution_id().to_owned(),
                )
            })
            .collect();
        running.sort();
        running.dedup();
        running
    }

    fn change(&self, edit: impl FnOnce(&mut Vec<ChildRecord>)) {
        let mut state = self.state();
        edit(&mut state.children);
        // Written under the lock, so the file never goes back to an older state.
        if let Err(error) = self.write(&state) {
            tracing::warn!(path = %self.path.display(), %error, "cannot write the state file; a restart will not find this change");
        }
    }

    fn write(&self, state: &StateFile) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
        write_atomically(&self.path, &text)
    }

    /// A clean stop: every attempt is finished, so the files go.
    pub(crate) fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir_all(self.checkpoint_dir());
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

/// Replaces `path` with `bytes` so that a reader sees the old file or the new one, never
/// a part: write a sibling, then rename it over.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    drop(file);
    std::fs::rename(&tmp, path)
}

/// Reads a state file.
///
/// # Errors
/// The file cannot be read, or is not a state file this version understands.
pub(crate) fn read(path: &Path) -> std::io::Result<StateFile> {
    let text = std::fs::read(path)?;
    let state: StateFile = serde_json::from_slice(&text).map_err(std::io::Error::other)?;
    if state.version != VERSION {
        return Err(std::io::Error::other(format!(
            "state file version {} (this version reads {VERSION})",
            state.version
        )));
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(id: &str) -> AttemptToken {
        format!("q/{id}/1/ab12").parse().unwrap()
    }

    #[test]
    fn records_follow_attempts_and_a_second_owner_is_refused() {
        let dir = std::env::temp_dir().join(format!("unstuck-records-{}", uuid::Uuid::new_v4()));
        let records = Records::create(&dir, "w1").unwrap();
        records.claimed(&token("a"));
        records.claimed(&token("b"));
        records.started(&token("a"), std::process::id());
        let on_disk = read(&dir.join("w1.json")).unwrap();
        assert_eq!(on_disk.worker_id, "w1");
        assert_eq!(on_disk.children.len(), 2);
        let a = &on_disk.children[0];
        assert_eq!(a.pid, Some(std::process::id()));
        assert_eq!(a.pgid, Some(std::process::id() as i32));
        assert_eq!(on_disk.children[1].pid, None);
        assert_eq!(
            records.running(),
            vec![("q".into(), "a".into()), ("q".into(), "b".into())]
        );

        // The lock is held: the same file cannot be taken twice.
        assert!(Records::create(&dir, "w1").is_err());

        records.finished(&token("a"));
        assert_eq!(read(&dir.join("w1.json")).unwrap().children.len(), 1);
        records.remove();
        assert!(!dir.join("w1.json").exists());
        assert!(!dir.join("w1.lock").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
