//! How a supervisor works: its queue, its command, its concurrency and its timings.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result, format_duration};
use crate::ledger::MAX_CLAIM_WAIT;
use crate::names;
use crate::runner::MAX_CONCURRENCY;

/// Where the supervisor's notes about each attempt go (the binary writes them to its
/// stderr, through [`stderr_lines`](super::stderr_lines)).
pub type LineSink = Arc<dyn Fn(&str) + Send + Sync>;

/// Where the commands' own output goes. Either way it is also read for the progress,
/// the directives, the result and the stderr tail; directive lines (`::progress`,
/// `::checkpoint`) are kept like any other line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandOutput {
    /// Kept nowhere.
    Discard,
    /// Passed on to this process's stdout and stderr, stream for stream, a line at a
    /// time; with `prefix`, each line after `[<queue>/<execution id>#<attempt>] `.
    Passthrough {
        /// Put the attempt's label before each line.
        prefix: bool,
    },
    /// One file per attempt, `<dir>/<queue>/<execution id>.<attempt>.log`: both streams
    /// as they come, and the supervisor's notes about the attempt as `unstuck: …` lines.
    LogDir(PathBuf),
}

/// Longest stop grace: a stop that waits longer than this is not a stop.
const MAX_STOP_GRACE: Duration = Duration::from_secs(3600);

/// How a [`Supervisor`](super::Supervisor) works. Start from [`ExecConfig::new`] and
/// override fields.
#[derive(Clone)]
pub struct ExecConfig {
    /// The queue it claims from.
    pub queue: String,
    /// The program and its arguments, run once per attempt.
    pub command: Vec<OsString>,
    /// Commands run at once.
    pub concurrency: usize,
    /// A command that writes nothing (stdout or stderr) for this long is killed and its
    /// attempt failed as retryable. `None`: only the watchdog's no-progress rule watches
    /// for silence (progress moves only with output).
    pub no_output_timeout: Option<Duration>,
    /// Between SIGTERM and SIGKILL to a command's process group, when it is stopped.
    pub stop_grace: Duration,
    /// Where the state files live (one directory per namespace and queue is made in it).
    pub state_dir: PathBuf,
    /// Heartbeat each attempt every this fraction of its heartbeat timeout.
    pub heartbeat_fraction: f64,
    /// How often the worker registry hears from the supervisor; declared at registration.
    pub worker_heartbeat_interval: Duration,
    /// How long one claim waits for work before it asks again (a long poll, woken by
    /// events; at most 30 s).
    pub claim_wait: Duration,
    /// Where the commands' own output goes.
    pub output: CommandOutput,
    /// Receives the supervisor's notes about each attempt (started, stopped, how it
    /// ended), each after `[<queue>/<execution id>#<attempt>] unstuck: `, and about
    /// itself. `None`: they are not passed on.
    pub notes: Option<LineSink>,
    /// Makes the process a child subreaper (Linux), so that what a command detaches
    /// (`setsid`, a double fork) stays the supervisor's to stop and reap. The supervisor
    /// then owns every child of the process: it reaps exited ones it did not start and,
    /// when it stops, stops every process still descending from it. Turn it off to run a
    /// supervisor in a process that starts children of its own.
    pub subreaper: bool,
}

impl std::fmt::Debug for ExecConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecConfig")
            .field("queue", &self.queue)
            .field("command", &self.command)
            .field("concurrency", &self.concurrency)
            .field("no_output_timeout", &self.no_output_timeout)
            .field("stop_grace", &self.stop_grace)
            .field("state_dir", &self.state_dir)
            .field("heartbeat_fraction", &self.heartbeat_fraction)
            .field("worker_heartbeat_interval", &self.worker_heartbeat_interval)
            .field("claim_wait", &self.claim_wait)
            .field("output", &self.output)
            .field("notes", &self.notes.is_some())
            .field("subreaper", &self.subreaper)
            .finish()
    }
}

impl ExecConfig {
    /// The defaults for running `command` on `queue`: one at a time, no no-output
    /// timeout, 10 s stop grace, heartbeats at a third of the heartbeat timeout, a worker
    /// heartbeat every 5 s, the state under [`default_state_dir`] (or `./unstuck-state`
    /// when there is no home directory), output and notes kept nowhere, a subreaper.
    pub fn new(queue: impl Into<String>, command: Vec<OsString>) -> Self {
        Self {
            queue: queue.into(),
            command,
            concurrency: 1,
            no_output_timeout: None,
            stop_grace: Duration::from_secs(10),
            state_dir: default_state_dir().unwrap_or_else(|| PathBuf::from("unstuck-state")),
            heartbeat_fraction: 1.0 / 3.0,
            worker_heartbeat_interval: Duration::from_secs(5),
            claim_wait: Duration::from_secs(5),
            output: CommandOutput::Discard,
            notes: None,
            subreaper: true,
        }
    }

    /// Checks every value.
    ///
    /// # Errors
    /// [`Error::InvalidName`] for a bad queue name, [`Error::InvalidConfig`] naming the
    /// field (`exec.<field>`).
    pub fn validate(&self) -> Result<()> {
        names::validate_queue(&self.queue)?;
        let bad = |key: &str, value: String, expected: &str| {
            Err(Error::InvalidConfig {
                key: format!("exec.{key}"),
                value,
                expected: expected.into(),
            })
        };
        if self.command.first().is_none_or(|p| p.is_empty()) {
            return bad(
                "command",
                String::new(),
                "a program to run, and its arguments",
            );
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return bad(
                "concurrency",
                self.concurrency.to_string(),
                &format!("1 to {MAX_CONCURRENCY}"),
            );
        }
        if let Some(d) = self.no_output_timeout.filter(|d| d.is_zero()) {
            return bad("no_output_timeout", format_duration(d), "more than zero");
        }
        if self.stop_grace > MAX_STOP_GRACE {
            return bad("stop_grace", format_duration(self.stop_grace), "at most 1h");
        }
        let fraction = self.heartbeat_fraction;
        if !(fraction.is_finite() && fraction > 0.0 && fraction < 1.0) {
            return bad(
                "heartbeat_fraction",
                fraction.to_string(),
                "a number above 0 and below 1",
            );
        }
        if self.worker_heartbeat_interval.is_zero() {
            return bad("worker_heartbeat_interval", "0s".into(), "more than zero");
        }
        if self.claim_wait.is_zero() || self.claim_wait > MAX_CLAIM_WAIT {
            return bad(
                "claim_wait",
                format_duration(self.claim_wait),
                "more than zero and at most 30s",
            );
        }
        Ok(())
    }
}

/// `$XDG_STATE_HOME/unstuck/exec`, else `~/.local/state/unstuck/exec`; `None` when
/// neither variable is set.
pub fn default_state_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| Path::new(&h).join(".local").join("state"))
        })?;
    Some(base.join("unstuck").join("exec"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_values_that_cannot_work() {
        let base = || ExecConfig::new("q", vec!["true".into()]);
        assert!(base().validate().is_ok());
        let bad = [
            ExecConfig::new("bad queue", vec!["true".into()]),
            ExecConfig::new("q", vec![]),
            ExecConfig::new("q", vec!["".into()]),
            ExecConfig {
                concurrency: 0,
                ..base()
            },
            ExecConfig {
                no_output_timeout: Some(Duration::ZERO),
                ..base()
            },
            ExecConfig {
                stop_grace: Duration::from_secs(7200),
                ..base()
            },
            ExecConfig {
                heartbeat_fraction: 1.0,
                ..base()
            },
            ExecConfig {
                claim_wait: Duration::from_secs(31),
                ..base()
            },
        ];
        for config in bad {
            assert!(config.validate().is_err(), "accepted {config:?}");
        }
    }
}
