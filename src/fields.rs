//! The glossary of an execution hash's fields: short names, because every transition
//! writes some of them and a running execution must stay in Redis's compact encoding.
//!
//! [`EXECUTION`] is the one table; the constants name its entries for the Rust side, and
//! the comment block at the top of `lua/_lib.lua` mirrors it for the scripts (a test
//! checks the two agree, and that the field lists the scripts read are in it). The
//! timings' fields come from the timings table (`STORED_FIELDS` in `src/timings.rs`),
//! mirrored by `TIMING_FIELDS` in `lua/_lib.lua`.

/// Declares the glossary: a constant per field (documented), and [`EXECUTION`], the table
/// of them all with the short meaning the Lua mirror repeats.
macro_rules! glossary {
    ($($(#[doc = $doc:expr])* $name:ident = $field:literal, $meaning:literal;)*) => {
        $(
            $(#[doc = $doc])*
            #[allow(dead_code)] // some are written and read by the scripts only
            pub(crate) const $name: &str = $field;
        )*

        /// Every field of an execution hash but the timings, with what it holds.
        #[cfg_attr(not(test), allow(dead_code))] // the table the Lua mirror is checked against
        pub(crate) const EXECUTION: &[(&str, &str)] = &[$(($field, $meaning)),*];
    };
}

glossary! {
    /// The queue the execution belongs to.
    QUEUE = "q", "queue";
    /// The execution id.
    ID = "id", "execution id";
    /// The state name.
    STATE = "st", "state";
    /// Attempts started so far (0 while never claimed).
    ATTEMPT = "att", "attempts started";
    /// The payload, JSON text.
    PAYLOAD = "pl", "payload (JSON)";
    /// Created at, Redis ms.
    CREATED = "cr", "created at (ms)";
    /// The deadline instant, Redis ms (0: none).
    DEADLINE_AT = "dla", "deadline instant (ms, 0: none)";
    /// The current attempt's nonce.
    NONCE = "tok", "current attempt's nonce";
    /// The worker holding the current attempt.
    WORKER = "wk", "worker of the current attempt";
    /// Dispatched at (claimed), Redis ms.
    DISPATCHED = "dsp", "dispatched at (ms)";
    /// Started at (first heartbeat of the attempt), Redis ms.
    STARTED = "sta", "started at (ms)";
    /// Last heartbeat, Redis ms.
    HEARTBEAT = "hb", "last heartbeat (ms)";
    /// The last progress text.
    PROGRESS = "pr", "progress text";
    /// When the progress last changed, Redis ms.
    PROGRESS_CHANGED = "prc", "progress changed at (ms)";
    /// The last checkpoint, JSON text, handed to the next attempt.
    CHECKPOINT = "cp", "checkpoint (JSON)";
    /// Stuck since, Redis ms.
    STUCK_SINCE = "ss", "stuck since (ms)";
    /// The kind of stuck verdict (`heartbeat`, `no_progress` or `looping`).
    STUCK_KIND = "sk", "stuck kind: heartbeat | no_progress | looping";
    /// The stuck verdict's detail, quoted when it is remediated.
    STUCK_DETAIL = "sd", "stuck verdict's detail";
    /// Cancellation requested at, Redis ms.
    CANCEL_REQUESTED = "cx", "cancel requested at (ms)";
    /// A deadline verdict waits for the terminate hook (`lua/round.lua`), Redis ms.
    TERMINATING = "tm", "terminate requested at (ms)";
    /// The latest failure message or cancellation reason.
    ERROR = "err", "latest failure or cancel reason";
    /// The stop reason, once terminal.
    STOP_REASON = "sr", "stop reason";
    /// Finished at, Redis ms, once terminal.
    FINISHED = "fin", "finished at (ms)";
    /// The result `complete` recorded, JSON text.
    RESULT = "res", "result (JSON)";
    /// False alarms, stuck verdicts withdrawn by a late heartbeat.
    FALSE_ALARMS = "fa", "false alarms";
    /// Continuations: attempts that ended by an await or a snooze and so do not count
    /// toward `max_attempts` (absent: 0). Attempts counted = `att` − `fr`.
    CONTINUATIONS = "fr", "continuations: attempts not counted (absent: 0)";
    /// Snoozes so far (`lua/snooze.lua`), held to `max_snoozes` (absent: 0).
    SNOOZES = "sn", "snoozes so far (absent: 0)";
    /// History entries written so far (absent: 1, the enqueue's); entry n is the field
    /// `h<n % history_len>`.
    HISTORY_COUNT = "hn", "history entries written (absent: 1)";
    /// One history entry (the ring's fields `h0`, `h1`, ...):
    /// `<n>|<ms>|<state>|<reason>|<attempt>`.
    HISTORY_ENTRY = "h<i>", "history entry i % cap: <n>|<ms>|<state>|<reason>|<attempt>";
    /// The history as one text field of `<ms>|<state>|<reason>|<attempt>` lines, as an
    /// earlier version wrote it: read, never written.
    HISTORY_LEGACY = "hist", "history lines of an earlier version (read only)";
    /// The execution this one runs again, `<queue>/<id>` (`Ledger::retry`).
    RETRY_OF = "rof", "retry of (queue/id)";
    /// "1" while pinned: retention never removes it (`Ledger::pin`).
    PINNED = "pin", "pinned: kept whatever the retention";
    /// "1" once pruning moved it, pinned and past its retention, to its ":kept" list.
    KEPT = "kept", "in its terminal list's kept list";
    /// Why it waits (`await`), while awaiting.
    WAIT_REASON = "wr", "wait reason (while awaiting)";
    /// When the wait began, Redis ms.
    WAITING_SINCE = "wst", "waiting since (ms)";
    /// The wait deadline instant, Redis ms.
    WAIT_DEADLINE = "wdl", "wait deadline instant (ms)";
    /// What the watchdog does at the wait deadline, from the queue at `await` time.
    WAIT_EXPIRY = "wx", "at the wait deadline: fail | requeue";
    /// SHA-1 of the current wait's resume token secret (the secret itself is never kept).
    RESUME_TOKEN_HASH = "rth", "hash of the current wait's resume token";
    /// SHA-1 of the resume token that resumed the last wait: a reuse is told apart from a
    /// forgery.
    RESUME_TOKEN_USED = "rtu", "hash of the last used resume token";
    /// When the last wait was resumed, Redis ms (cleared by the next `await`).
    RESUMED_AT = "rsa", "resumed at (ms), for the last wait";
    /// The resume input, JSON text, handed to the claims that continue the wait.
    RESUME_INPUT = "ri", "resume input (JSON) for the continuation";
    /// The last fingerprint a heartbeat of the current attempt carried (loop detection,
    /// `lua/_fingerprint.lua`); cleared when a new attempt is claimed.
    FINGERPRINT = "fp", "last heartbeat fingerprint (this attempt)";
    /// How many heartbeats in a row carried that fingerprint.
    FINGERPRINT_REPEATS = "fpn", "times in a row fp arrived (this attempt)";
    /// The W3C trace context of the enqueue (`00-<trace>-<span>-<flags>`), handed to every
    /// claim so workers and the watchdog's spans link to it (docs/tracing.md).
    TRACEPARENT = "tp", "W3C traceparent of the enqueue";
    /// Why cancellation was requested, when not an operator's cancel: `budget_exceeded`
    /// (its stop reason once cancelled).
    CANCEL_CAUSE = "cxr", "cancel cause: budget_exceeded (absent: a cancel)";
    /// Usage summed over every attempt: `input|output|cached|cost` (`lua/_usage.lua`).
    USAGE = "us", "usage totals: input|output|cached|cost";
    /// Usage of one model, field `um:<model>` (`um:` for deltas naming none).
    USAGE_MODEL = "um:<model>", "usage of one model: input|output|cached|cost";
    /// The last usage delta applied, `<attempt>:<seq>`: a replay is not applied again.
    USAGE_SEQ = "usq", "last usage delta applied: <attempt>:<seq>";
    /// The execution's own budget `tokens|cost|warning per mille` (absent: the queue's).
    BUDGET = "bg", "budget: tokens|cost|warning per mille (0: none)";
    /// When the budget warning was sent, Redis ms (once per execution).
    BUDGET_WARNED = "bgw", "budget warning sent at (ms)";
}

/// Every field name an execution hash may hold: [`EXECUTION`] and the timings.
#[cfg(test)]
pub(crate) fn all_names() -> Vec<&'static str> {
    EXECUTION
        .iter()
        .map(|(name, _)| *name)
        .chain(crate::timings::STORED_FIELDS)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    const LIB: &str = include_str!("../lua/_lib.lua");

    /// The glossary block of `lua/_lib.lua`: `--   <name>  <meaning>` lines between its
    /// two markers.
    fn lua_glossary() -> Vec<(String, String)> {
        let block = LIB
            .split("-- Execution hash fields")
            .nth(1)
            .and_then(|rest| rest.split("-- (end of glossary)").next())
            .expect("lua/_lib.lua has the glossary block");
        block
            .lines()
            .filter_map(|line| line.strip_prefix("--   "))
            .map(|entry| {
                let (name, meaning) = entry.split_once(' ').expect("name and meaning");
                (name.to_owned(), meaning.trim().to_owned())
            })
            .collect()
    }

    #[test]
    fn the_lua_glossary_mirrors_this_one() {
        let lua: Vec<(String, String)> = lua_glossary();
        let rust: Vec<(String, String)> = EXECUTION
            .iter()
            .map(|(n, m)| ((*n).to_owned(), (*m).to_owned()))
            .collect();
        assert_eq!(
            lua, rust,
            "lua/_lib.lua's glossary differs from src/fields.rs"
        );
        let timing_fields = LIB
            .lines()
            .find(|l| l.starts_with("local TIMING_FIELDS"))
            .expect("TIMING_FIELDS in lua/_lib.lua");
        let quoted: Vec<&str> = timing_fields.split('\'').skip(1).step_by(2).collect();
        assert_eq!(quoted, crate::timings::STORED_FIELDS);
    }

    #[test]
    fn names_are_unique() {
        let names = all_names();
        let unique: BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
    }
}
