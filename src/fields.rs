//! The glossary of an execution hash's fields: short names, because every transition
//! writes some of them and a running execution must stay in Redis's compact encoding.
//!
//! [`EXECUTION`] is the one table; the constants name its entries for the Rust side, and
//! the comment block at the top of `lua/_lib.lua` mirrors it for the scripts (a test
//! checks the two agree, and that the field lists the scripts read are in it). The
//! timings' fields come from the timings table (`STORED_FIELDS` in `src/timings.rs`),
//! mirrored by `TIMING_FIELDS` in `lua/_lib.lua`.

/// `queue`: the queue the execution belongs to.
pub(crate) const QUEUE: &str = "q";
/// `id`: the execution id.
pub(crate) const ID: &str = "id";
/// `st`: the state name.
pub(crate) const STATE: &str = "st";
/// `att`: attempts started so far (0 while never claimed).
pub(crate) const ATTEMPT: &str = "att";
/// `pl`: the payload, JSON text.
pub(crate) const PAYLOAD: &str = "pl";
/// `cr`: created at, Redis ms.
pub(crate) const CREATED: &str = "cr";
/// `dla`: the deadline instant, Redis ms (0: none).
pub(crate) const DEADLINE_AT: &str = "dla";
/// `tok`: the current attempt's nonce.
#[allow(dead_code)] // written and read by the scripts only
pub(crate) const NONCE: &str = "tok";
/// `wk`: the worker holding the current attempt.
pub(crate) const WORKER: &str = "wk";
/// `dsp`: dispatched at (claimed), Redis ms.
pub(crate) const DISPATCHED: &str = "dsp";
/// `sta`: started at (first heartbeat of the attempt), Redis ms.
pub(crate) const STARTED: &str = "sta";
/// `hb`: last heartbeat, Redis ms.
pub(crate) const HEARTBEAT: &str = "hb";
/// `pr`: the last progress text.
pub(crate) const PROGRESS: &str = "pr";
/// `prc`: when the progress last changed, Redis ms.
pub(crate) const PROGRESS_CHANGED: &str = "prc";
/// `cp`: the last checkpoint, JSON text, handed to the next attempt.
pub(crate) const CHECKPOINT: &str = "cp";
/// `ss`: stuck since, Redis ms.
pub(crate) const STUCK_SINCE: &str = "ss";
/// `sk`: the kind of stuck verdict (`heartbeat` or `no_progress`).
#[allow(dead_code)] // written and read by the scripts only
pub(crate) const STUCK_KIND: &str = "sk";
/// `sd`: the stuck verdict's detail, quoted when it is remediated.
#[allow(dead_code)] // written and read by the scripts only
pub(crate) const STUCK_DETAIL: &str = "sd";
/// `cx`: cancellation requested at, Redis ms.
pub(crate) const CANCEL_REQUESTED: &str = "cx";
/// `err`: the latest failure message or cancellation reason.
pub(crate) const ERROR: &str = "err";
/// `sr`: the stop reason, once terminal.
pub(crate) const STOP_REASON: &str = "sr";
/// `fin`: finished at, Redis ms, once terminal.
pub(crate) const FINISHED: &str = "fin";
/// `res`: the result `complete` recorded, JSON text.
pub(crate) const RESULT: &str = "res";
/// `fa`: false alarms, stuck verdicts withdrawn by a late heartbeat.
pub(crate) const FALSE_ALARMS: &str = "fa";
/// `hist`: the bounded history, `<ms>|<state>|<reason>|<attempt>` lines.
pub(crate) const HISTORY: &str = "hist";

/// Every field of an execution hash but the timings, with what it holds.
#[cfg_attr(not(test), allow(dead_code))] // the table the Lua mirror is checked against
pub(crate) const EXECUTION: [(&str, &str); 25] = [
    (QUEUE, "queue"),
    (ID, "execution id"),
    (STATE, "state"),
    (ATTEMPT, "attempts started"),
    (PAYLOAD, "payload (JSON)"),
    (CREATED, "created at (ms)"),
    (DEADLINE_AT, "deadline instant (ms, 0: none)"),
    (NONCE, "current attempt's nonce"),
    (WORKER, "worker of the current attempt"),
    (DISPATCHED, "dispatched at (ms)"),
    (STARTED, "started at (ms)"),
    (HEARTBEAT, "last heartbeat (ms)"),
    (PROGRESS, "progress text"),
    (PROGRESS_CHANGED, "progress changed at (ms)"),
    (CHECKPOINT, "checkpoint (JSON)"),
    (STUCK_SINCE, "stuck since (ms)"),
    (STUCK_KIND, "stuck kind: heartbeat | no_progress"),
    (STUCK_DETAIL, "stuck verdict's detail"),
    (CANCEL_REQUESTED, "cancel requested at (ms)"),
    (ERROR, "latest failure or cancel reason"),
    (STOP_REASON, "stop reason"),
    (FINISHED, "finished at (ms)"),
    (RESULT, "result (JSON)"),
    (FALSE_ALARMS, "false alarms"),
    (HISTORY, "history lines"),
];

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
