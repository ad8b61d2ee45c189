//! Helpers of the `unstuck exec` tests: the supervisor binary run against a test
//! ledger's namespace with a state directory of its own, its stdout and stderr kept in
//! files, and the processes it starts looked up in `/proc`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use unstuck::{EnqueueOptions, Execution, Ledger, State};

use crate::support;

pub const WAIT: Duration = Duration::from_secs(15);

/// One `unstuck exec` process.
pub struct Exec {
    pub child: Child,
    pub pid: u32,
    stdout: PathBuf,
    stderr: PathBuf,
}

/// A test's scratch space: the supervisor's state directory and files its commands
/// write (pid lists, go signals).
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path("state")
    }

    /// The state files of `ledger`'s namespace and queue "q", by name.
    pub fn state_files(&self, ledger: &Ledger) -> Vec<PathBuf> {
        let dir = self
            .state_dir()
            .join(format!("{}+q", ledger.config().namespace));
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        files
    }

    /// The pids a command wrote, one per line, to `name`.
    pub fn pids(&self, name: &str) -> Vec<u32> {
        std::fs::read_to_string(self.path(name))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    pub async fn wait_for_pids(&self, name: &str, count: usize) -> Vec<u32> {
        support::wait_until(WAIT, &format!("{count} pids in {name}"), || async {
            self.pids(name).len() >= count
        })
        .await;
        self.pids(name)
    }
}

/// Starts `unstuck exec --queue q ARGS -- sh -c SCRIPT` against `ledger`, with `scratch`'s
/// state directory; the script runs in the scratch directory.
pub fn start(ledger: &Ledger, scratch: &Scratch, args: &[&str], script: &str) -> Exec {
    start_with_stdout(ledger, scratch, args, script, None)
}

/// As [`start`], with the supervisor's stdout given (`None`: a file, [`Exec::stdout`]).
pub fn start_with_stdout(
    ledger: &Ledger,
    scratch: &Scratch,
    args: &[&str],
    script: &str,
    stdout: Option<Stdio>,
) -> Exec {
    let name = format!("exec-{}", uuid::Uuid::new_v4().simple());
    let stderr = scratch.path(&format!("{name}.stderr"));
    let stdout_file = scratch.path(&format!("{name}.stdout"));
    let stdout = stdout.unwrap_or_else(|| {
        std::fs::File::create(&stdout_file)
            .expect("a stdout file")
            .into()
    });
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_unstuck"));
    for (key, _) in std::env::vars() {
        if key.starts_with("UNSTUCK_") || key.starts_with("RUST_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("UNSTUCK_LEDGER__REDIS_URL", support::redis().url())
        .env("UNSTUCK_LEDGER__NAMESPACE", &ledger.config().namespace)
        .current_dir(scratch.dir.path())
        .arg("exec")
        .args(["--queue", "q", "--state-dir"])
        .arg(scratch.state_dir())
        .args(args)
        .args(["--", "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(std::fs::File::create(&stderr).expect("a stderr file"))
        .kill_on_drop(true);
    let child = cmd.spawn().expect("the unstuck binary starts");
    let pid = child.id().expect("a pid");
    Exec {
        child,
        pid,
        stdout: stdout_file,
        stderr,
    }
}

impl Exec {
    /// What the supervisor wrote to stdout so far (when it went to a file).
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// What the supervisor wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid as i32), signal).expect("signal the supervisor");
    }

    /// Waits for the supervisor to exit; its exit code (`None`: killed by a signal).
    pub async fn exited(&mut self) -> Option<i32> {
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the supervisor exits; stderr:\n{}", self.stderr()))
            .expect("wait for the supervisor");
        status.code()
    }

    /// SIGTERM, then its exit code.
    pub async fn stop(&mut self) -> Option<i32> {
        self.signal(Signal::SIGTERM);
        self.exited().await
    }

    /// Waits until the supervisor has registered (it recovers what a predecessor left
    /// first, so this also says recovery is over).
    pub async fn registered(&self, ledger: &Ledger) {
        support::wait_until(WAIT, "the supervisor is registered", || async {
            let workers = ledger.workers().await.unwrap();
            workers.iter().any(|w| w.pid == self.pid)
        })
        .await;
    }
}

/// True while `pid` runs (a zombie has exited: it does not count).
pub fn running(pid: u32) -> bool {
    stat(pid).is_some_and(|s| s.state != 'Z' && s.state != 'X')
}

/// True while `/proc` knows `pid` at all: running, or a zombie nobody reaped yet.
pub fn exists(pid: u32) -> bool {
    stat(pid).is_some()
}

/// The parent of `pid`.
pub fn parent(pid: u32) -> Option<u32> {
    stat(pid).map(|s| s.ppid)
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .collect()
}

/// The children of `pid` that exited and were not reaped.
pub fn zombies_of(pid: u32) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|&p| stat(p).is_some_and(|s| s.ppid == pid && s.state == 'Z'))
        .collect()
}

/// The running processes whose command line contains `marker`.
pub fn with_marker(marker: &str) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|&p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c.windows(marker.len()).any(|w| w == marker.as_bytes()))
                && running(p)
        })
        .collect()
}

/// A shell fragment that leaves the command's process group and its process tree: a
/// double fork of `setsid sh -c '…' MARKER` (the marker is its `$0`, written in two
/// halves so that the script itself, and the supervisor's arguments, never contain it),
/// which starts a sleeper; both write their pid to `$UNSTUCK_EXECUTION_ID.daemons`. Waits until they
/// have. With `clear_env`, the daemon starts with an empty environment (and writes to
/// `daemons`).
pub fn daemonise(marker: &str, clear_env: bool) -> String {
    let (env, file) = if clear_env {
        ("env -i ", "daemons".to_owned())
    } else {
        ("", "$UNSTUCK_EXECUTION_ID.daemons".to_owned())
    };
    let (head, tail) = marker.split_at(marker.len() / 2);
    format!(
        r#"touch "{file}"
( {env}setsid /bin/sh -c 'echo $$ >> "{file}"; sleep 300 & echo $! >> "{file}"; wait' {head}""{tail} & )
until [ "$(wc -l < "{file}")" -ge 2 ]; do sleep 0.02; done
"#
    )
}

/// The pids of every running process of group `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let mut members: Vec<u32> = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| running(pid) && stat(pid).is_some_and(|s| s.pgrp == pgid))
        .collect();
    members.sort();
    members
}

struct Stat {
    state: char,
    ppid: u32,
    pgrp: u32,
}

/// State, parent and process group from `/proc/<pid>/stat`.
fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
    })
}

pub async fn wait_gone(pids: &[u32]) {
    support::wait_until(WAIT, &format!("none of {pids:?} runs"), || async {
        !pids.iter().any(|&p| running(p))
    })
    .await;
}

/// Enqueues `id` in queue "q" with a short heartbeat timeout and retry backoff, so the
/// supervisor beats (and sees cancellations) every 100 ms and retries come quickly.
pub async fn enqueue(ledger: &Ledger, id: &str, max_attempts: u32) {
    let options = EnqueueOptions::new()
        .id(id)
        .heartbeat_timeout(Duration::from_millis(300))
        .backoff_base(Duration::from_millis(50))
        .max_attempts(max_attempts);
    ledger
        .enqueue("q", &json!({ "id": id }), options)
        .await
        .expect("enqueue");
}

pub async fn wait_state(ledger: &Ledger, id: &str, state: State) -> Execution {
    support::wait_until(WAIT, &format!("{id} is {state}"), || async {
        ledger.get("q", id).await.unwrap().state == state
    })
    .await;
    ledger.get("q", id).await.unwrap()
}

/// The details of `id`'s events with `reason`, oldest first.
pub async fn details(ledger: &Ledger, id: &str, reason: &str) -> Vec<String> {
    ledger
        .execution_events("q", id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.reason == reason)
        .map(|e| e.detail)
        .collect()
}

/// The result a command reported, as JSON.
pub fn result(execution: &Execution) -> Value {
    execution.result.clone().unwrap_or(Value::Null)
}

/// Every file in `dir`, recursively (nothing left behind means an empty list).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.filter_map(|e| e.ok()) {
            let path = e.path();
            if path.is_dir() {
                out.extend(files_under(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}
