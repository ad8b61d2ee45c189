//! Where the commands' own output is kept: passed on to the supervisor's stdout and
//! stderr, or written to one file per attempt.
//!
//! Every destination is a [`Pipe`]: a queue in memory and a thread of its own that
//! writes it out. A reader of the command's output only ever queues a line, so a
//! destination that stalls (a terminal paused with Ctrl-S, a pipe nobody reads, a hung
//! file system) never stops the readers: the command is never blocked, its progress
//! still moves and its directives are still read. What does not fit in the queue
//! (4 MiB for stdout and stderr, shared by every attempt; 1 MiB per log file) is dropped
//! and counted, and a line `unstuck: N lines dropped: … did not keep up` says so where
//! they would have been. What was queued is written out before an attempt's log file is
//! closed and before the supervisor returns (waiting up to [`FLUSH_WAIT`] for a stalled
//! destination): the last lines a command wrote before it exited are not lost.

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use super::config::{CommandOutput, LineSink};
use super::output::Stream;

/// Queued bytes at most, for the supervisor's stdout and for its stderr.
const SHARED_QUEUE: usize = 4 * 1024 * 1024;
/// Queued bytes at most, for one attempt's log file.
const FILE_QUEUE: usize = 1024 * 1024;

/// How long closing a log file, or the supervisor's end, waits for queued lines to be
/// written.
pub(crate) const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// A queue of lines and the thread that writes them to one destination.
#[derive(Clone)]
pub(crate) struct Pipe {
    shared: Arc<Shared>,
}

struct Shared {
    /// What the destination is, for the dropped-lines line.
    name: String,
    limit: usize,
    queue: Mutex<Queue>,
    /// Wakes the writer: lines queued, or closed.
    queued: Condvar,
    /// Wakes those waiting for a flush.
    written: Condvar,
}

#[derive(Default)]
struct Queue {
    lines: VecDeque<Vec<u8>>,
    bytes: usize,
    dropped: u64,
    /// Lines queued and lines written (or given up on) so far.
    pushed: u64,
    done: u64,
    closed: bool,
}

impl Pipe {
    /// Starts the thread that writes to `out`.
    fn start(name: String, limit: usize, out: Box<dyn Write + Send>) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            name,
            limit,
            queue: Mutex::new(Queue::default()),
            queued: Condvar::new(),
            written: Condvar::new(),
        });
        let writer = shared.clone();
        std::thread::Builder::new()
            .name("unstuck-output".into())
            .spawn(move || writer.write_out(out))?;
        Ok(Self { shared })
    }

    /// Queues `line` (a newline is added), or drops it when the queue is full.
    pub(crate) fn push(&self, line: &[u8]) {
        let mut queue = self.shared.lock();
        if queue.closed {
            return;
        }
        if queue.bytes + line.len() + 1 > self.shared.limit && !queue.lines.is_empty() {
            queue.dropped += 1;
            return;
        }
        if queue.dropped > 0 {
            let note = self.shared.dropped_line(queue.dropped);
            queue.dropped = 0;
            queue.add(note);
        }
        let mut owned = Vec::with_capacity(line.len() + 1);
        owned.extend_from_slice(line);
        owned.push(b'\n');
        queue.add(owned);
        self.shared.queued.notify_one();
    }

    /// Waits until every line queued so far is written, at most `wait`; false when the
    /// destination did not keep up. Blocks: call it from a blocking context.
    fn flush_blocking(&self, wait: Duration) -> bool {
        let mut queue = self.shared.lock();
        if queue.dropped > 0 {
            let note = self.shared.dropped_line(queue.dropped);
            queue.dropped = 0;
            queue.add(note);
            self.shared.queued.notify_one();
        }
        let target = queue.pushed;
        let (queue, timeout) = self
            .shared
            .written
            .wait_timeout_while(queue, wait, |q| q.done < target)
            .unwrap_or_else(PoisonError::into_inner);
        drop(queue);
        !timeout.timed_out()
    }

    /// Waits until every line queued so far is written, at most `wait`.
    pub(crate) async fn flush(&self, wait: Duration) -> bool {
        let pipe = self.clone();
        tokio::task::spawn_blocking(move || pipe.flush_blocking(wait))
            .await
            .unwrap_or(false)
    }

    /// Flushes, then ends the writer thread; later lines are ignored.
    async fn close(&self, wait: Duration) -> bool {
        let flushed = self.flush(wait).await;
        self.shared.lock().closed = true;
        self.shared.queued.notify_one();
        flushed
    }
}

impl Queue {
    fn add(&mut self, line: Vec<u8>) {
        self.bytes += line.len();
        self.pushed += 1;
        self.lines.push_back(line);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn dropped_line(&self, dropped: u64) -> Vec<u8> {
        let lines = if dropped == 1 { "line" } else { "lines" };
        format!(
            "unstuck: {dropped} {lines} dropped: {} did not keep up\n",
            self.name
        )
        .into_bytes()
    }

    /// The writer thread: takes everything queued, writes it in one go, repeats. A
    /// destination that fails (a closed stdout, a full disk) is written to no more; its
    /// lines still count as done, so no flush waits for them.
    fn write_out(&self, mut out: Box<dyn Write + Send>) {
        let mut failed = false;
        loop {
            let batch: Vec<Vec<u8>> = {
                let mut queue = self.lock();
                while queue.lines.is_empty() && !queue.closed {
                    queue = self
                        .queued
                        .wait(queue)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                if queue.lines.is_empty() {
                    return;
                }
                queue.bytes = 0;
                queue.lines.drain(..).collect()
            };
            if !failed {
                let bytes = batch.concat();
                if let Err(error) = out.write_all(&bytes).and_then(|()| out.flush()) {
                    tracing::warn!(destination = %self.name, %error, "cannot write the commands' output; dropping it from now on");
                    failed = true;
                }
            }
            self.lock().done += batch.len() as u64;
            self.written.notify_all();
        }
    }
}

/// The supervisor's stdout or stderr, one writer for the whole process (started when
/// first used).
fn shared(stream: Stream) -> Option<&'static Pipe> {
    static STDOUT: OnceLock<Option<Pipe>> = OnceLock::new();
    static STDERR: OnceLock<Option<Pipe>> = OnceLock::new();
    let (cell, name) = match stream {
        Stream::Stdout => (&STDOUT, "stdout"),
        Stream::Stderr => (&STDERR, "stderr"),
    };
    cell.get_or_init(|| {
        let out: Box<dyn Write + Send> = match stream {
            Stream::Stdout => Box::new(std::io::stdout()),
            Stream::Stderr => Box::new(std::io::stderr()),
        };
        Pipe::start(name.into(), SHARED_QUEUE, out)
            .map_err(|error| tracing::error!(%error, "cannot start the {name} writer"))
            .ok()
    })
    .as_ref()
}

/// A [`LineSink`] that writes to this process's stderr through the same queue as the
/// commands' stderr, so that the supervisor's notes and the commands' lines keep their
/// order and a stalled stderr blocks neither.
pub fn stderr_lines() -> LineSink {
    Arc::new(|line: &str| {
        if let Some(pipe) = shared(Stream::Stderr) {
            pipe.push(line.as_bytes());
        }
    })
}

/// Writes out what is queued for this process's stdout and stderr, waiting at most
/// [`FLUSH_WAIT`] for each.
pub(crate) async fn flush_shared() {
    for stream in [Stream::Stdout, Stream::Stderr] {
        if let Some(pipe) = shared(stream) {
            pipe.flush(FLUSH_WAIT).await;
        }
    }
}

/// Where one attempt's output lines go.
pub(crate) enum AttemptLog {
    Discard,
    /// To the supervisor's stdout and stderr, each line after `prefix`.
    Passthrough {
        prefix: String,
    },
    /// To the attempt's own file, notes included.
    File(Pipe),
}

impl AttemptLog {
    /// Opens the destination `output` names for attempt `attempt` of `execution_id`
    /// (`label` is its `[queue/id#attempt] `); a log file that cannot be opened is
    /// `Discard`, and the reason.
    pub(crate) fn open(
        output: &CommandOutput,
        queue: &str,
        execution_id: &str,
        attempt: u32,
        label: &str,
    ) -> (Self, Option<String>) {
        match output {
            CommandOutput::Discard => (Self::Discard, None),
            CommandOutput::Passthrough { prefix } => {
                let prefix = if *prefix {
                    label.to_owned()
                } else {
                    String::new()
                };
                (Self::Passthrough { prefix }, None)
            }
            CommandOutput::LogDir(dir) => {
                let path = log_path(dir, queue, execution_id, attempt);
                match open_log(&path) {
                    Ok(pipe) => (Self::File(pipe), None),
                    Err(e) => {
                        let why = format!("cannot write {}: {e}; output not kept", path.display());
                        (Self::Discard, Some(why))
                    }
                }
            }
        }
    }

    pub(crate) fn line(&self, stream: Stream, line: &[u8]) {
        match self {
            Self::Discard => {}
            Self::Passthrough { prefix } => {
                if let Some(pipe) = shared(stream) {
                    if prefix.is_empty() {
                        pipe.push(line);
                    } else {
                        pipe.push(&[prefix.as_bytes(), line].concat());
                    }
                }
            }
            Self::File(pipe) => pipe.push(line),
        }
    }

    /// A note of the supervisor's: kept in a log file (the sink has it anyway).
    pub(crate) fn note(&self, text: &str) {
        if let Self::File(pipe) = self {
            pipe.push(format!("unstuck: {text}").as_bytes());
        }
    }

    /// Writes out what is queued and closes a log file.
    pub(crate) async fn close(&self) {
        if let Self::File(pipe) = self {
            pipe.close(FLUSH_WAIT).await;
        }
    }
}

/// `DIR/<queue>/<execution id>.<attempt>.log`.
pub(crate) fn log_path(dir: &Path, queue: &str, execution_id: &str, attempt: u32) -> PathBuf {
    dir.join(queue)
        .join(format!("{execution_id}.{attempt}.log"))
}

/// Opens (appends to: an id used again after the first expired adds to its file) a log
/// file, making its directory.
fn open_log(path: &Path) -> std::io::Result<Pipe> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    Pipe::start(path.display().to_string(), FILE_QUEUE, Box::new(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A destination that takes nothing until it is let go.
    struct Stalled {
        go: Arc<(Mutex<bool>, Condvar)>,
        got: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (lock, cvar) = &*self.go;
            let mut go = lock.lock().unwrap();
            while !*go {
                go = cvar.wait(go).unwrap();
            }
            self.got.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_destination_drops_lines_never_blocks_and_says_how_many() {
        let go = Arc::new((Mutex::new(false), Condvar::new()));
        let got = Arc::new(Mutex::new(Vec::new()));
        let out = Stalled {
            go: go.clone(),
            got: got.clone(),
        };
        let pipe = Pipe::start("test".into(), 10, Box::new(out)).unwrap();
        // The first line is taken by the writer (which then stalls), the next fill the
        // queue, the rest are dropped: none of it waits.
        pipe.push(b"first");
        while pipe.shared.lock().bytes > 0 {
            std::thread::yield_now();
        }
        for line in ["abcd", "efgh", "dropped", "dropped too"] {
            pipe.push(line.as_bytes());
        }
        assert!(!pipe.flush_blocking(Duration::from_millis(10)), "stalled");
        *go.0.lock().unwrap() = true;
        go.1.notify_all();
        assert!(pipe.flush_blocking(Duration::from_secs(10)));
        pipe.push(b"last");
        assert!(pipe.flush_blocking(Duration::from_secs(10)));
        let text = String::from_utf8(got.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "first\nabcd\nefgh\nunstuck: 2 lines dropped: test did not keep up\nlast\n"
        );
    }

    #[test]
    fn log_files_are_named_by_queue_id_and_attempt() {
        let path = log_path(Path::new("/var/log/unstuck"), "q", "run-1", 3);
        assert_eq!(path, Path::new("/var/log/unstuck/q/run-1.3.log"));
    }
}
