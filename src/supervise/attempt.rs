//! One attempt from claim to recorded outcome: start the command, heartbeat while it
//! lives, stop its group when told to, record how it ended.
//!
//! Heartbeats run on a task of their own beside the one that watches the command, so a
//! slow Redis never delays noticing an exit and a busy command never delays a beat (the
//! command is another process: unlike the Rust runner's jobs it cannot hog this one's
//! threads, so no thread of its own is needed). Order of the end, and why:
//! 1. the command exits, or is stopped (cancel, attempt lost, silent too long, shutdown):
//!    SIGTERM to its group and its strays (`reaper.rs`), SIGKILL after the grace;
//! 2. whatever else of its family still runs is stopped the same way, and what exited
//!    of it is reaped;
//! 3. heartbeats stop, then the progress and checkpoint not yet sent go in one last beat
//!    (a checkpoint printed just before a crash must reach the retry);
//! 4. the outcome is recorded — only now, so no retry runs beside what is left of this
//!    attempt — and then the state file forgets the attempt, and its log file (with the
//!    outcome in it) is written out and closed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ExecConfig;
use super::beat::{Beats, Cause, MIN_INTERVAL, beat, describe_reply};
use super::child::{self, Family, GroupGuard, ProcessGroup};
use super::logs::AttemptLog;
use super::output::{self, Output, Stream};
use super::reaper::{Mark, Reaper};
use super::records::Records;
use super::report::Report;
use crate::error::format_duration;
use crate::ledger::{Claim, HeartbeatReply, Ledger};
use crate::runner::Outcome;
use crate::runner::coalesce::Coalescer;

/// Checkpoints up to this size are also passed in `UNSTUCK_CHECKPOINT` (the kernel caps
/// one environment string at 128 KiB); the file always has it.
const MAX_CHECKPOINT_ENV: usize = 64 * 1024;

/// How long the output readers may run on once the group is gone: a process that left
/// the group (`setsid`) can hold the pipes open for ever.
const DRAIN: Duration = Duration::from_secs(1);

/// What every attempt of one supervisor shares.
pub(crate) struct Context {
    pub(crate) ledger: Ledger,
    pub(crate) config: Arc<ExecConfig>,
    pub(crate) records: Arc<Records>,
    pub(crate) reaper: Arc<Reaper>,
    pub(crate) shutdown: CancellationToken,
}

/// Runs one claimed attempt to its recorded outcome.
pub(crate) async fn run(ctx: Arc<Context>, beats: Coalescer, claim: Claim) -> Outcome {
    let token = claim.token.clone();
    ctx.records.claimed(&token);
    let label = format!("[{}/{}#{}] ", claim.queue(), claim.id(), claim.attempt());
    let (log, unlogged) = AttemptLog::open(
        &ctx.config.output,
        claim.queue(),
        claim.id(),
        claim.attempt(),
        &label,
    );
    let output = Arc::new(Output::new(label, ctx.config.notes.clone(), log));
    if let Some(why) = unlogged {
        output.note(&why);
    }
    let report = Report::new(&ctx.ledger, &beats, &token, &output);
    let outcome = if ctx.shutdown.is_cancelled() {
        report
            .fail("supervisor stopped before starting the command", true)
            .await
    } else {
        attempt(&ctx, &beats, claim, &output, &report).await
    };
    ctx.records.finished(&token);
    output.close_log().await;
    outcome
}

async fn attempt(
    ctx: &Context,
    beats_via: &Coalescer,
    claim: Claim,
    output: &Arc<Output>,
    report: &Report<'_>,
) -> Outcome {
    let config = &ctx.config;
    let token = &claim.token;
    let checkpoint = CheckpointFile::write(&ctx.records, &claim);
    let (env, unset) = environment(&claim, checkpoint.as_ref());
    let mut child = match ctx
        .reaper
        .spawn(|| child::spawn(&config.command, &env, &unset))
    {
        Ok(child) => child,
        Err(e) => {
            let program = config.command[0].to_string_lossy();
            return report
                .fail(&format!("cannot start {program}: {e}"), true)
                .await;
        }
    };
    // A child not yet waited for always has its id.
    let pid = child.id().unwrap_or_default();
    ctx.records.started(token, pid);
    let group = ProcessGroup(pid as i32);
    let mut guard = GroupGuard::new(group);
    let family = Family {
        group,
        mark: Some(Mark {
            queue: claim.queue().to_owned(),
            execution_id: claim.id().to_owned(),
            attempt: claim.attempt().to_string(),
        }),
    };
    output.note(&format!("attempt {} started as pid {pid}", token.attempt()));

    let payload = format!("{}\n", claim.payload).into_bytes();
    let stdin = child.stdin.take().map(|mut stdin| {
        tokio::spawn(async move {
            // A command that never reads its input is fine.
            let _ = stdin.write_all(&payload).await;
            let _ = stdin.shutdown().await;
        })
    });
    let max_line = ctx.ledger.config().max_payload_bytes;
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(output::read(
            out,
            Stream::Stdout,
            output.clone(),
            max_line,
        )));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(output::read(
            err,
            Stream::Stderr,
            output.clone(),
            max_line,
        )));
    }
    let beats = Arc::new(Beats::default());
    let finished = CancellationToken::new();
    let interval = claim
        .heartbeat_timeout
        .mul_f64(config.heartbeat_fraction)
        .max(MIN_INTERVAL);
    let beat_task = tokio::spawn(beat(
        beats_via.clone(),
        token.clone(),
        output.clone(),
        interval,
        beats.clone(),
        finished.clone(),
    ));

    let exited = tokio::select! {
        status = child.wait() => Ok(status),
        () = beats.stopped.cancelled() => Err(beats.cause()),
        () = silence(output, config.no_output_timeout) => {
            Err(Cause::Silent(config.no_output_timeout.unwrap_or_default()))
        }
        () = ctx.shutdown.cancelled() => Err(Cause::Shutdown),
    };
    let grace = config.stop_grace;
    let (status, cause) = match exited {
        Ok(status) => {
            ctx.reaper.waited(pid);
            let (left, _) = family.stop_rest(grace).await;
            if left {
                output.note("the command exited; what it left running was stopped");
            }
            (status, None)
        }
        Err(cause) => {
            output.note(&format!(
                "{}: SIGTERM to its processes",
                describe_cause(&cause)
            ));
            let (status, killed) = family.stop(&mut child, grace).await;
            ctx.reaper.waited(pid);
            if killed {
                output.note(&format!(
                    "still running {} after SIGTERM: SIGKILL",
                    format_duration(grace)
                ));
            }
            (Ok(status), Some(cause))
        }
    };
    guard.disarm();
    ctx.reaper.reap();
    drain(readers, stdin).await;
    finished.cancel();
    if beat_task.await.is_err() {
        tracing::error!(execution = %crate::runner::beat::label(token), "an attempt's heartbeat task failed");
    }
    drop(checkpoint);

    if let Some(why) = beats.lost() {
        output.note(&format!("attempt lost ({why}); nothing recorded"));
        return Outcome::Lost;
    }
    if beats.cancel.load(Ordering::SeqCst) {
        return report.acknowledge_cancel().await;
    }
    match report.flush().await {
        Some(HeartbeatReply::Ok {
            cancel_requested: true,
            ..
        }) => return report.acknowledge_cancel().await,
        Some(HeartbeatReply::Ok { .. }) | None => {}
        Some(lost) => {
            output.note(&format!(
                "attempt lost ({}); nothing recorded",
                describe_reply(&lost)
            ));
            return Outcome::Lost;
        }
    }
    let tail = |message: String| with_tail(message, &output.stderr_tail());
    let status = match status {
        Ok(status) => status,
        Err(e) => {
            let message = tail(format!("cannot wait for the command: {e}"));
            return report.fail(&message, true).await;
        }
    };
    match cause {
        Some(Cause::Silent(timeout)) => {
            let message = format!(
                "no output for {} (no-output timeout): its processes were killed",
                format_duration(timeout)
            );
            report.fail(&tail(message), true).await
        }
        Some(_) => {
            let message = "supervisor stopped: the command was stopped before it finished";
            report.fail(&tail(message.to_owned()), true).await
        }
        None if status.success() => report.complete(output.result()).await,
        None => report.fail(&tail(child::describe(status)), true).await,
    }
}

/// The attempt's environment: who it is, and where to resume from.
fn environment(
    claim: &Claim,
    checkpoint: Option<&CheckpointFile>,
) -> (Vec<(&'static str, String)>, Vec<&'static str>) {
    let mut env = vec![
        ("UNSTUCK_EXECUTION_ID", claim.id().to_owned()),
        ("UNSTUCK_QUEUE", claim.queue().to_owned()),
        ("UNSTUCK_ATTEMPT", claim.attempt().to_string()),
    ];
    let mut unset = vec![];
    match claim.checkpoint.as_ref().map(|c| c.to_string()) {
        Some(text) if text.len() <= MAX_CHECKPOINT_ENV => env.push(("UNSTUCK_CHECKPOINT", text)),
        _ => unset.push("UNSTUCK_CHECKPOINT"),
    }
    match checkpoint {
        Some(file) => env.push((
            "UNSTUCK_CHECKPOINT_FILE",
            file.path.to_string_lossy().into_owned(),
        )),
        None => unset.push("UNSTUCK_CHECKPOINT_FILE"),
    }
    (env, unset)
}

/// The previous attempt's checkpoint as a file the command may read; removed with the
/// attempt.
struct CheckpointFile {
    path: std::path::PathBuf,
}

impl CheckpointFile {
    fn write(records: &Records, claim: &Claim) -> Option<Self> {
        let checkpoint = claim.checkpoint.as_ref()?;
        let dir = records.checkpoint_dir();
        let path = dir.join(format!("{}.{}.json", claim.id(), claim.attempt()));
        let written = super::records::create_dir(&dir).and_then(|()| {
            super::records::write_atomically(&path, checkpoint.to_string().as_bytes())
        });
        match written {
            Ok(()) => Some(Self { path }),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot write the checkpoint file");
                None
            }
        }
    }
}

impl Drop for CheckpointFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Resolves once `timeout` has passed without output; never without a timeout.
async fn silence(output: &Output, timeout: Option<Duration>) {
    let Some(timeout) = timeout else {
        return std::future::pending().await;
    };
    loop {
        let due = output.last_output() + timeout;
        if Instant::now() >= due {
            return;
        }
        tokio::time::sleep_until(due).await;
    }
}

/// Lets the readers take the last of the output, and ends the stdin writer.
async fn drain(readers: Vec<JoinHandle<()>>, stdin: Option<JoinHandle<()>>) {
    let deadline = Instant::now() + DRAIN;
    for mut reader in readers {
        if tokio::time::timeout_at(deadline, &mut reader)
            .await
            .is_err()
        {
            reader.abort();
        }
    }
    if let Some(stdin) = stdin {
        stdin.abort();
    }
}

fn describe_cause(cause: &Cause) -> String {
    match cause {
        Cause::CancelRequested => "cancellation requested".into(),
        Cause::Lost(why) => format!("attempt lost ({why})"),
        Cause::Silent(d) => format!("no output for {}", format_duration(*d)),
        Cause::Shutdown => "supervisor stopping".into(),
    }
}

/// `message`, then the tail of stderr when there is one.
fn with_tail(message: String, tail: &str) -> String {
    if tail.is_empty() {
        message
    } else {
        format!("{message}; stderr: {tail}")
    }
}
