//! The command's process: started in a process group of its own, stopped as a family.
//!
//! Every descendant that does not leave the group on purpose (`setsid`) shares the
//! child's process group, so one `killpg` reaches a shell, its pipeline and whatever it
//! put in the background. Those that left it are the attempt's strays (`reaper.rs`
//! finds them); the group and its strays are the attempt's [`Family`]. Stopping is
//! SIGTERM to the family, then SIGKILL after the grace, and it is over only when no
//! process of it runs any more: an attempt's outcome is recorded after its processes are
//! gone, so a retry never runs beside leftovers of the attempt before it.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::procfs;
use super::reaper::{self, Mark};

/// How often a stop looks whether the group is gone.
const POLL: Duration = Duration::from_millis(20);

/// How long to wait for a group to disappear after SIGKILL (a process in uninterruptible
/// sleep dies when its I/O returns).
const AFTER_KILL: Duration = Duration::from_secs(5);

/// Environment variables of the supervisor's own settings: the command gets an attempt
/// to run, never the Redis credentials behind it.
const PRIVATE_ENV: [&str; 3] = ["UNSTUCK_LEDGER__", "UNSTUCK_WATCHDOG__", "UNSTUCK_SERVER__"];

/// Starts `command` in a new process group with piped stdin, stdout and stderr, the
/// supervisor's environment minus its settings, plus `env`; `unset` names variables the
/// command must not inherit.
///
/// # Errors
/// What `spawn` reports: the program is missing, not executable, or the system is out
/// of processes.
pub(crate) fn spawn(
    command: &[OsString],
    env: &[(&str, String)],
    unset: &[&str],
) -> std::io::Result<Child> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| std::io::Error::other("no command given"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars_os() {
        let private = key
            .to_str()
            .is_some_and(|k| PRIVATE_ENV.iter().any(|p| k.starts_with(p)));
        if private {
            cmd.env_remove(key);
        }
    }
    for key in unset {
        cmd.env_remove(key);
    }
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.spawn()
}

/// A process group the supervisor started (its id is its leader's pid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcessGroup(pub(crate) i32);

impl ProcessGroup {
    /// Sends `signal` to every process of the group; false when the group is gone.
    pub(crate) fn signal(self, signal: Signal) -> bool {
        match killpg(Pid::from_raw(self.0), signal) {
            Ok(()) => true,
            Err(Errno::ESRCH) => false,
            Err(error) => {
                tracing::warn!(pgid = self.0, %signal, %error, "cannot signal a process group");
                false
            }
        }
    }

    /// True while a process of the group still runs.
    pub(crate) fn is_running(self) -> bool {
        procfs::group_running(self.0)
    }
}

/// An attempt's processes: its process group, and (with a mark) its strays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Family {
    pub(crate) group: ProcessGroup,
    /// `None`: the group alone (a previous supervisor's command, whose strays went to init).
    pub(crate) mark: Option<Mark>,
}

impl Family {
    /// Sends `signal` to the group and to every stray found now.
    fn signal(&self, signal: Signal) {
        self.group.signal(signal);
        if let Some(mark) = &self.mark {
            reaper::signal_each(&reaper::strays(self.group.0, mark), signal);
        }
    }

    /// True while a process of the group, or a stray, still runs.
    fn is_running(&self) -> bool {
        self.group.is_running()
            || self
                .mark
                .as_ref()
                .is_some_and(|mark| !reaper::strays(self.group.0, mark).is_empty())
    }

    /// Waits until no process of the family runs, or `until`; true when it is gone.
    async fn gone_by(&self, until: Instant) -> bool {
        loop {
            if !self.is_running() {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(POLL.min(until - Instant::now())).await;
        }
    }

    /// Stops the family while its leader is our child: SIGTERM, then SIGKILL once `grace`
    /// has passed with the leader or any other member still running. Reaps the leader and
    /// returns its exit status, and whether SIGKILL was needed.
    pub(crate) async fn stop(&self, leader: &mut Child, grace: Duration) -> (ExitStatus, bool) {
        let deadline = Instant::now() + grace;
        self.signal(Signal::SIGTERM);
        let exited = tokio::time::timeout_at(deadline, leader.wait()).await;
        let clean = matches!(exited, Ok(Ok(_))) && self.gone_by(deadline).await;
        if !clean {
            self.signal(Signal::SIGKILL);
        }
        let status = match exited {
            Ok(Ok(status)) => status,
            // Killed just now; `wait` also reaps.
            _ => match leader.wait().await {
                Ok(status) => status,
                Err(error) => {
                    tracing::error!(pgid = self.group.0, %error, "cannot reap a stopped command");
                    ExitStatus::from_raw(Signal::SIGKILL as i32)
                }
            },
        };
        if !clean && !self.gone_by(Instant::now() + AFTER_KILL).await {
            tracing::error!(
                pgid = self.group.0,
                "processes of a killed family still run"
            );
        }
        (status, !clean)
    }

    /// Stops what is left of the family once its leader has exited and been reaped, or when
    /// the leader is not our child (a previous supervisor's): SIGTERM, SIGKILL after
    /// `grace`. Returns whether anything was left, and whether SIGKILL was needed.
    pub(crate) async fn stop_rest(&self, grace: Duration) -> (bool, bool) {
        if !self.is_running() {
            return (false, false);
        }
        self.signal(Signal::SIGTERM);
        if self.gone_by(Instant::now() + grace).await {
            return (true, false);
        }
        self.signal(Signal::SIGKILL);
        if !self.gone_by(Instant::now() + AFTER_KILL).await {
            tracing::error!(
                pgid = self.group.0,
                "processes of a killed family still run"
            );
        }
        (true, true)
    }
}

/// Kills the group if the attempt that owns it is dropped before stopping it (a panic):
/// nothing it started outlives it unsupervised.
pub(crate) struct GroupGuard(Option<ProcessGroup>);

impl GroupGuard {
    pub(crate) fn new(group: ProcessGroup) -> Self {
        Self(Some(group))
    }

    /// The group was stopped and its processes are gone.
    pub(crate) fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(group) = self.0.take() {
            group.signal(Signal::SIGKILL);
        }
    }
}

/// How a command ended, for a failure message: `exited with code 3`, `killed by signal
/// SIGSEGV (core dumped)`.
pub(crate) fn describe(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with code {code}");
    }
    match status.signal() {
        Some(n) => {
            let name =
                Signal::try_from(n).map_or_else(|_| format!("signal {n}"), |s| s.to_string());
            let core = if status.core_dumped() {
                " (core dumped)"
            } else {
                ""
            };
            format!("killed by signal {name}{core}")
        }
        None => format!("ended with status {status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_codes_and_signals() {
        assert_eq!(describe(ExitStatus::from_raw(3 << 8)), "exited with code 3");
        assert_eq!(
            describe(ExitStatus::from_raw(9)),
            "killed by signal SIGKILL"
        );
        assert_eq!(
            describe(ExitStatus::from_raw(11 | 0x80)),
            "killed by signal SIGSEGV (core dumped)"
        );
    }
}
