//! Nothing a command starts outlives its attempt: the supervisor as the reaper of every
//! process its commands start, including those that left their process group.
//!
//! A process that calls `setsid` (or is started by one, or by a double fork) leaves the
//! command's process group, so `killpg` no longer reaches it, and once its parent exits
//! it is reparented away from the supervisor. On Linux the supervisor makes itself a
//! *child subreaper* (`PR_SET_CHILD_SUBREAPER`), so such orphans are reparented to it
//! rather than to init: everything a command starts stays a descendant of the
//! supervisor. Then:
//! - an attempt's processes are the members of its process group, the descendants of
//!   the supervisor that carry the attempt's [`Mark`] in their environment (every process
//!   inherits `UNSTUCK_QUEUE`, `UNSTUCK_EXECUTION_ID` and `UNSTUCK_ATTEMPT`), and every
//!   descendant of either; those outside the group are its *strays*, signalled with the
//!   group when the attempt is stopped, and after a normal exit;
//! - adopted orphans that exit become zombies of the supervisor: [`Reaper::run`] reaps
//!   them (on SIGCHLD, and every second), never touching the commands it spawned itself,
//!   whose exit statuses belong to their attempts;
//! - when the supervisor stops, [`Reaper::sweep`] stops whatever descends from it still
//!   (a stray that also cleared its environment cannot be told apart before that).
//!
//! Elsewhere (other Unix systems, or Linux with the subreaper turned off) orphans go to
//! init: strays are found only while their parent still descends from the supervisor,
//! and only where there is a `/proc`.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::procfs::{self, ProcStat};

/// How often reaping runs without a SIGCHLD (signals coalesce, and may be missed).
const REAP_EVERY: Duration = Duration::from_secs(1);

/// How often a sweep looks whether what it signalled is gone.
const POLL: Duration = Duration::from_millis(20);

/// How long a sweep waits after SIGKILL (a process in uninterruptible sleep dies when its
/// I/O returns).
const AFTER_KILL: Duration = Duration::from_secs(5);

/// The environment that marks one attempt's processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mark {
    pub(crate) queue: String,
    pub(crate) execution_id: String,
    pub(crate) attempt: String,
}

impl Mark {
    fn carried_by(&self, pid: u32) -> bool {
        procfs::environ_has(
            pid,
            &[
                ("UNSTUCK_EXECUTION_ID", &self.execution_id),
                ("UNSTUCK_ATTEMPT", &self.attempt),
                ("UNSTUCK_QUEUE", &self.queue),
            ],
        )
    }
}

/// The running processes that descend from this one, by parent.
struct Tree {
    children: HashMap<i32, Vec<(u32, ProcStat)>>,
}

impl Tree {
    fn now() -> Option<Self> {
        let mut children: HashMap<i32, Vec<(u32, ProcStat)>> = HashMap::new();
        for (pid, stat) in procfs::all()? {
            children.entry(stat.ppid).or_default().push((pid, stat));
        }
        Some(Self { children })
    }

    /// Every descendant of `root` (zombies included), parents before children.
    fn below(&self, root: u32) -> Vec<(u32, ProcStat)> {
        let mut found = Vec::new();
        let mut next = vec![root];
        while let Some(parent) = next.pop() {
            for &(pid, stat) in self.children.get(&(parent as i32)).into_iter().flatten() {
                found.push((pid, stat));
                next.push(pid);
            }
        }
        found
    }
}

/// The running processes of an attempt outside its process group `pgid`: see the
/// module docs. Empty where there is no `/proc`.
pub(crate) fn strays(pgid: i32, mark: &Mark) -> Vec<u32> {
    let Some(tree) = Tree::now() else {
        return Vec::new();
    };
    let mine = tree.below(std::process::id());
    let mut family: HashSet<u32> = HashSet::new();
    for &(pid, stat) in &mine {
        if family.contains(&pid) || !(stat.pgrp == pgid || mark.carried_by(pid)) {
            continue;
        }
        family.insert(pid);
        family.extend(tree.below(pid).into_iter().map(|(p, _)| p));
    }
    mine.into_iter()
        .filter(|(pid, stat)| family.contains(pid) && stat.pgrp != pgid && stat.is_running())
        .map(|(pid, _)| pid)
        .collect()
}

/// Sends `signal` to each of `pids`, quietly when one is gone already.
pub(crate) fn signal_each(pids: &[u32], signal: Signal) {
    for &pid in pids {
        if let Err(error) = kill(Pid::from_raw(pid as i32), signal)
            && error != nix::errno::Errno::ESRCH
        {
            tracing::warn!(pid, %signal, %error, "cannot signal a stray process");
        }
    }
}

/// Adopts and reaps what the commands leave behind. One per supervisor.
pub(crate) struct Reaper {
    /// This process is a child subreaper: orphans of its commands are its children.
    adopting: bool,
    /// The commands' own pids, while their attempts have not waited for them: their exit
    /// statuses are not the reaper's to take.
    leaders: Mutex<HashSet<u32>>,
}

impl Reaper {
    /// A reaper that adopts orphans when `adopt` is set and the system allows it (Linux).
    pub(crate) fn new(adopt: bool) -> Self {
        Self {
            adopting: adopt && become_subreaper(),
            leaders: Mutex::new(HashSet::new()),
        }
    }

    fn leaders(&self) -> MutexGuard<'_, HashSet<u32>> {
        self.leaders.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a command with `spawn` and remembers its pid until [`waited`](Self::waited):
    /// the reaper never takes a leader's exit status, even one that exits at once.
    pub(crate) fn spawn(
        &self,
        spawn: impl FnOnce() -> std::io::Result<tokio::process::Child>,
    ) -> std::io::Result<tokio::process::Child> {
        let mut leaders = self.leaders();
        let child = spawn()?;
        if let Some(pid) = child.id() {
            leaders.insert(pid);
        }
        Ok(child)
    }

    /// The attempt has the leader's exit status (or gave up on it).
    pub(crate) fn waited(&self, pid: u32) {
        self.leaders().remove(&pid);
    }

    /// Reaps every exited child of this process that is not a command's leader; how many.
    pub(crate) fn reap(&self) -> usize {
        if !self.adopting {
            return 0;
        }
        let me = std::process::id() as i32;
        let Some(all) = procfs::all() else {
            return 0;
        };
        // The leaders are read after the scan, under the lock `spawn` holds: a zombie seen
        // here was started before, so its pid is in the set if it is a leader.
        let leaders = self.leaders();
        let mut reaped = 0;
        for (pid, stat) in all {
            if stat.ppid != me || stat.is_running() || leaders.contains(&pid) {
                continue;
            }
            match waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG)) {
                Ok(nix::sys::wait::WaitStatus::StillAlive) => {}
                Ok(_) => reaped += 1,
                Err(error) => tracing::debug!(pid, %error, "cannot reap an adopted process"),
            }
        }
        reaped
    }

    /// Reaps adopted orphans as they exit, until `stop`.
    pub(crate) async fn run(&self, stop: CancellationToken) {
        if !self.adopting {
            return;
        }
        let mut sigchld = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())
        {
            Ok(signal) => Some(signal),
            Err(error) => {
                tracing::warn!(%error, "no SIGCHLD: adopted processes are reaped every second");
                None
            }
        };
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = async {
                    match sigchld.as_mut() {
                        Some(signal) => signal.recv().await,
                        None => std::future::pending().await,
                    }
                } => {}
                () = tokio::time::sleep(REAP_EVERY) => {}
            }
            self.reap();
        }
    }

    /// Stops every process still descending from this one (SIGTERM, SIGKILL after
    /// `grace`) and reaps them; how many there were. Only when adopting: then every
    /// descendant is a command's. Call it once the attempts are over.
    pub(crate) async fn sweep(&self, grace: Duration) -> usize {
        if !self.adopting {
            return 0;
        }
        let left = |tree: Option<Tree>| -> Vec<u32> {
            let Some(tree) = tree else { return Vec::new() };
            tree.below(std::process::id())
                .into_iter()
                .filter(|(_, stat)| stat.is_running())
                .map(|(pid, _)| pid)
                .collect()
        };
        let first = left(Tree::now());
        if first.is_empty() {
            self.reap();
            return 0;
        }
        signal_each(&first, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        loop {
            self.reap();
            let now = left(Tree::now());
            if now.is_empty() {
                break;
            }
            if Instant::now() >= deadline + AFTER_KILL {
                tracing::error!(pids = ?now, "processes still run after SIGKILL");
                break;
            }
            if Instant::now() >= deadline {
                signal_each(&now, Signal::SIGKILL);
            }
            tokio::time::sleep(POLL).await;
        }
        self.reap();
        first.len()
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn become_subreaper() -> bool {
    match nix::sys::prctl::set_child_subreaper(true) {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(%error, "cannot become a child subreaper: detached processes may escape");
            false
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn become_subreaper() -> bool {
    false
}
