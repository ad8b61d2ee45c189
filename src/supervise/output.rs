//! The command's output as progress: lines counted, directives read, tails kept; every
//! line is also handed to the attempt's log (`logs.rs`) as it was written, directives
//! included.
//!
//! Progress moves with output, so a silent command looks stalled to the watchdog's
//! no-progress rule and to the no-output timeout alike:
//! - without directives the progress text is `output: N lines` (stdout and stderr
//!   together), which changes with every line;
//! - a stderr line `::progress TEXT` makes the text `TEXT`; plain lines after it show as
//!   `TEXT (+N lines)`, so they still move it;
//! - a stderr line `::checkpoint JSON` is where a retry resumes (sent with the next
//!   heartbeat);
//! - a stderr line `::fingerprint TEXT` (1 to 128 bytes) names the action just taken and
//!   its result, for loop detection: each one goes out with a heartbeat of its own, at
//!   once, never merged with the next (one that is too long is output, with a note).
//! - a line `::usage JSON` (stderr or stdout), JSON `{"input_tokens", "output_tokens",
//!   "cached_input_tokens", "cost", "model"}` (each optional), is a usage delta, numbered
//!   by exec and sent with the next heartbeat (the rest before the outcome).
//!
//! Directive lines are control, not output: they are not counted.
//!
//! Lines end at `\n` or `\r` (a progress bar that redraws one line counts each redraw);
//! a line longer than the ledger's payload limit is cut there.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use super::LineSink;
use super::logs::AttemptLog;
use crate::ledger::Heartbeat;

/// Lines of stderr kept for a failure message, and their total size at most.
const TAIL_LINES: usize = 20;
const TAIL_BYTES: usize = 2000;

/// Which of the command's streams a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// What one attempt's command has written so far, shared by its two readers, its
/// heartbeats and its outcome.
pub(crate) struct Output {
    seen: Mutex<Seen>,
    /// `[<queue>/<execution id>#<attempt>] `, before every note.
    label: String,
    notes: Option<LineSink>,
    /// Where the lines themselves are kept.
    log: AttemptLog,
    /// Wakes the heartbeat task when a fingerprint arrives, so it goes out at once.
    pub(crate) nudge: tokio::sync::Notify,
}

struct Seen {
    /// When the command last wrote anything (a byte is enough).
    last_output: Instant,
    /// Plain lines so far, stdout and stderr.
    lines: u64,
    /// The last `::progress` text, and `lines` when it came.
    explicit: Option<(String, u64)>,
    /// The progress text the last successful heartbeat carried.
    sent: Option<String>,
    /// A checkpoint not yet sent.
    checkpoint: Option<serde_json::Value>,
    /// `::fingerprint` texts not yet sent, oldest first: one per heartbeat.
    fingerprints: VecDeque<String>,
    /// `::usage` deltas not yet delivered.
    usage: crate::ledger::UsageQueue,
    stderr_tail: VecDeque<String>,
    last_stdout: Option<String>,
}

impl Output {
    pub(crate) fn new(label: String, notes: Option<LineSink>, log: AttemptLog) -> Self {
        Self {
            seen: Mutex::new(Seen {
                last_output: Instant::now(),
                lines: 0,
                explicit: None,
                sent: None,
                checkpoint: None,
                fingerprints: VecDeque::new(),
                usage: Default::default(),
                stderr_tail: VecDeque::new(),
                last_stdout: None,
            }),
            label,
            notes,
            log,
            nudge: tokio::sync::Notify::new(),
        }
    }

    fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Passes a note of the supervisor's about this attempt to the sink and the log.
    pub(crate) fn note(&self, text: &str) {
        if let Some(notes) = &self.notes {
            notes(&format!("{}unstuck: {text}", self.label));
        }
        self.log.note(text);
    }

    /// Writes out what the log has queued, and closes a log file.
    pub(crate) async fn close_log(&self) {
        self.log.close().await;
    }

    /// When the command last wrote anything.
    pub(crate) fn last_output(&self) -> Instant {
        self.seen().last_output
    }

    fn touched(&self) {
        self.seen().last_output = Instant::now();
    }

    /// Takes one line the command wrote: keeps it, then reads it.
    pub(crate) fn line(&self, stream: Stream, bytes: &[u8]) {
        self.log.line(stream, bytes);
        let line = String::from_utf8_lossy(bytes);
        let line = line.as_ref();
        let directive = match stream {
            Stream::Stderr => self.directive(line),
            // `::usage` is read on stdout too (an agent's own output often goes there).
            Stream::Stdout => line.starts_with("::usage ") && self.directive(line),
        };
        if directive {
            return;
        }
        let mut seen = self.seen();
        seen.lines += 1;
        match stream {
            Stream::Stdout => seen.last_stdout = Some(line.to_owned()),
            Stream::Stderr => {
                seen.stderr_tail
                    .push_back(cut(line, TAIL_BYTES / 4).into_owned());
                let mut bytes: usize = seen.stderr_tail.iter().map(String::len).sum();
                while seen.stderr_tail.len() > TAIL_LINES || bytes > TAIL_BYTES {
                    bytes -= seen.stderr_tail.pop_front().map_or(0, |l| l.len());
                }
            }
        }
    }

    /// Reads a `::progress` or `::checkpoint` line; false when `line` is not one (a
    /// checkpoint that is not JSON is output like any other line, with a note).
    fn directive(&self, line: &str) -> bool {
        if let Some(text) = line.strip_prefix("::progress ") {
            let text = text.trim();
            if text.is_empty() {
                return false;
            }
            let mut seen = self.seen();
            let at = seen.lines;
            seen.explicit = Some((text.to_owned(), at));
            return true;
        }
        if let Some(text) = line.strip_prefix("::fingerprint ") {
            let text = text.trim();
            match crate::ledger::check_fingerprint(text) {
                Ok(()) => {
                    self.seen().fingerprints.push_back(text.to_owned());
                    self.nudge.notify_one();
                    return true;
                }
                Err(e) => self.note(&format!("::fingerprint ignored: {e}")),
            }
        }
        if let Some(json) = line.strip_prefix("::usage ") {
            match usage_line(json) {
                Ok(usage) => {
                    self.seen().usage.add(usage);
                    return true;
                }
                Err(e) => self.note(&format!("::usage ignored: {e}")),
            }
        }
        if let Some(json) = line.strip_prefix("::checkpoint ") {
            match serde_json::from_str(json) {
                Ok(checkpoint) => {
                    self.seen().checkpoint = Some(checkpoint);
                    return true;
                }
                Err(e) => self.note(&format!("::checkpoint ignored, not JSON: {e}")),
            }
        }
        false
    }

    /// What the next heartbeat carries: the progress text when it changed since the last
    /// one, and a checkpoint not yet sent.
    pub(crate) fn take_beat(&self) -> Heartbeat {
        let mut seen = self.seen();
        let text = progress_text(&seen);
        let mut beat = Heartbeat::new();
        if seen.sent.as_deref() != Some(&text) {
            seen.sent = Some(text.clone());
            beat.progress = Some(text);
        }
        beat.checkpoint = seen.checkpoint.take();
        beat.fingerprint = seen.fingerprints.pop_front();
        beat.usage = seen.usage.next();
        beat
    }

    /// True while `::fingerprint` lines wait for their heartbeat.
    pub(crate) fn has_fingerprints(&self) -> bool {
        !self.seen().fingerprints.is_empty()
    }

    /// A beat got through: the usage delta it carried is delivered.
    pub(crate) fn usage_delivered(&self, beat: &Heartbeat) {
        if let Some(u) = &beat.usage {
            self.seen().usage.delivered(u.seq);
        }
    }

    /// A heartbeat did not get through: send its progress and checkpoint again next time
    /// (unless a newer checkpoint came meanwhile).
    pub(crate) fn restore(&self, beat: Heartbeat) {
        let mut seen = self.seen();
        if beat.progress.is_some() {
            seen.sent = None;
        }
        if seen.checkpoint.is_none() {
            seen.checkpoint = beat.checkpoint;
        }
        if let Some(fingerprint) = beat.fingerprint {
            seen.fingerprints.push_front(fingerprint);
        }
    }

    /// The last lines of stderr, for a failure message.
    pub(crate) fn stderr_tail(&self) -> String {
        let seen = self.seen();
        seen.stderr_tail
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The result of a successful run: the last stdout line, when it is JSON.
    pub(crate) fn result(&self) -> Option<serde_json::Value> {
        let seen = self.seen();
        serde_json::from_str(seen.last_stdout.as_deref()?.trim()).ok()
    }
}

/// Reads a `::usage` line's JSON: `{"input_tokens", "output_tokens",
/// "cached_input_tokens", "cost", "model"}`, every member optional (the seq is exec's).
fn usage_line(json: &str) -> Result<crate::ledger::Usage, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Line {
        #[serde(default)]
        input_tokens: u64,
        #[serde(default)]
        output_tokens: u64,
        #[serde(default)]
        cached_input_tokens: u64,
        #[serde(default)]
        cost: u64,
        #[serde(default)]
        model: Option<String>,
    }
    let l: Line = serde_json::from_str(json).map_err(|e| format!("not a usage object: {e}"))?;
    let usage = crate::ledger::Usage {
        input_tokens: l.input_tokens,
        output_tokens: l.output_tokens,
        cached_input_tokens: l.cached_input_tokens,
        cost: l.cost,
        model: l.model,
        seq: 1,
    };
    usage.validate().map_err(|e| e.to_string())?;
    Ok(usage)
}

fn progress_text(seen: &Seen) -> String {
    let lines = |n: u64| {
        if n == 1 {
            "1 line".to_owned()
        } else {
            format!("{n} lines")
        }
    };
    match &seen.explicit {
        None => format!("output: {}", lines(seen.lines)),
        Some((text, at)) if *at == seen.lines => text.clone(),
        Some((text, at)) => format!("{text} (+{})", lines(seen.lines - at)),
    }
}

/// `line` cut to at most `max` bytes at a character boundary, with a marker when cut.
fn cut(line: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if line.len() <= max {
        return line.into();
    }
    let mut end = max;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [cut]", &line[..end]).into()
}

/// Reads one of the command's streams to its end, line by line, into `output`.
pub(crate) async fn read(
    mut stream: impl AsyncRead + Unpin,
    which: Stream,
    output: Arc<Output>,
    max_line: usize,
) {
    let mut buf = vec![0u8; 8192];
    let mut lines = LineBuffer::new(max_line);
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                output.touched();
                for line in lines.push(&buf[..n]) {
                    output.line(which, &line);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if let Some(line) = lines.finish() {
        output.line(which, &line);
    }
}

/// Splits a byte stream into lines at `\n` and `\r`; empty lines are dropped.
struct LineBuffer {
    pending: Vec<u8>,
    max: usize,
}

impl LineBuffer {
    fn new(max: usize) -> Self {
        Self {
            pending: Vec::new(),
            max: max.max(1),
        }
    }

    fn push(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        for &b in bytes {
            if b == b'\n' || b == b'\r' {
                if !self.pending.is_empty() {
                    lines.push(std::mem::take(&mut self.pending));
                }
            } else if self.pending.len() < self.max {
                self.pending.push(b);
            }
        }
        lines
    }

    fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_at_newlines_and_carriage_returns() {
        let mut b = LineBuffer::new(5);
        assert_eq!(b.push(b"ab\r\ncd"), vec![b"ab".to_vec()]);
        assert_eq!(
            b.push(b"e\r10%\r20%\n\n"),
            vec![b"cde".to_vec(), b"10%".to_vec(), b"20%".to_vec()]
        );
        assert_eq!(b.push(b"toolongline"), Vec::<Vec<u8>>::new());
        assert_eq!(b.finish().as_deref(), Some(&b"toolo"[..]));
    }

    #[test]
    fn progress_moves_with_lines_and_directives_name_it() {
        let out = Output::new("[q/e1#1] ".into(), None, AttemptLog::Discard);
        assert_eq!(out.take_beat().progress.as_deref(), Some("output: 0 lines"));
        assert_eq!(
            out.take_beat(),
            Heartbeat::new(),
            "nothing new: nothing sent"
        );
        out.line(Stream::Stdout, b"hello");
        assert_eq!(out.take_beat().progress.as_deref(), Some("output: 1 line"));
        out.line(Stream::Stderr, b"::progress step 2/5");
        out.line(Stream::Stderr, b"::checkpoint {\"step\": 2}");
        let beat = out.take_beat();
        assert_eq!(beat.progress.as_deref(), Some("step 2/5"));
        assert_eq!(beat.checkpoint, Some(serde_json::json!({"step": 2})));
        out.line(Stream::Stderr, b"working");
        out.line(Stream::Stderr, b"::checkpoint not json");
        assert_eq!(progress_text(&out.seen()), "step 2/5 (+2 lines)");
        assert_eq!(out.stderr_tail(), "working\n::checkpoint not json");
        // Directives on stdout are output; the last stdout line is the result if JSON.
        out.line(Stream::Stdout, b"::progress no");
        assert_eq!(out.result(), None);
        out.line(Stream::Stdout, b"{\"ok\": true}");
        assert_eq!(out.result(), Some(serde_json::json!({"ok": true})));
    }

    #[test]
    fn a_failed_beat_is_sent_again() {
        let out = Output::new("[q/e1#1] ".into(), None, AttemptLog::Discard);
        out.line(Stream::Stderr, b"::checkpoint 1");
        let beat = out.take_beat();
        out.restore(beat.clone());
        assert_eq!(out.take_beat(), beat);
    }

    #[test]
    fn the_stderr_tail_is_bounded() {
        let out = Output::new("[q/e1#1] ".into(), None, AttemptLog::Discard);
        for i in 0..100 {
            out.line(
                Stream::Stderr,
                format!("line {i} {}", "x".repeat(300)).as_bytes(),
            );
        }
        let tail = out.stderr_tail();
        assert!(tail.len() <= TAIL_BYTES + TAIL_LINES, "{}", tail.len());
        assert!(tail.ends_with(&format!("line 99 {}", "x".repeat(300))));
    }
}
