//! Reads a ledger's raw keys and checks them against DESIGN.md invariants 1, 2 and 7.
//!
//! Executions are enumerated two ways and the union is checked: a `SCAN MATCH` over each
//! queue's execution-key prefix (on a cluster the SCAN is routed to the master owning the
//! prefix's hash tag, since every key of a queue shares that tag), plus every id any index
//! of the queue names — so an index entry whose hash is gone is found as well.
//!
//! Checked, per queue:
//! - every execution hash has a valid state, names its own queue and id; terminal ones carry
//!   `sr` and `fin`, others carry no `sr`; active ones hold an attempt ≥ 1;
//! - pending ⇔ queued; slot entry ⇔ active, holding the execution's current attempt;
//!   start timer ⇔ dispatched; heartbeat timer ⇔ running; progress timer ⇔ running with
//!   `npt > 0` or with a run of identical fingerprints at `max_repeats` (then due at
//!   once, whatever its score); stuck timer ⇔ stuck; cancel timer ⇔ active with `cx`; wait timer ⇔
//!   awaiting (scored by `wdl`; an awaiting one holds no nonce); deadline timer ⇔
//!   non-terminal with `dla > 0`; terminal list `s:<state>` ⇔ that terminal state, listed
//!   once; each timer is scored by the instant documented in `Timer` (crate-private `keys`);
//! - no index entry without its hash;
//! - slots in use ≤ capacity, every holder a positive attempt number.

use std::collections::{BTreeSet, HashMap};

use super::raw::{READ_BATCH, Raw};
use crate::keys::{Keyspace, Timer};
use redis::RedisResult;

const TERMINAL: [&str; 5] = ["succeeded", "failed", "cancelled", "timed_out", "dead"];
const ACTIVE: [&str; 3] = ["dispatched", "running", "stuck"];

/// Each timer, its name in messages, and the hash fields `(since, timeout)` whose sum is
/// its score (`None`: the score is the single field `dla`).
const TIMERS: [(Timer, &str, &str, Option<&str>); 7] = [
    (Timer::Start, "start", "dsp", Some("sg")),
    (Timer::Heartbeat, "heartbeat", "hb", Some("ht")),
    (Timer::Progress, "progress", "prc", Some("npt")),
    (Timer::Stuck, "stuck", "ss", Some("stt")),
    (Timer::Cancel, "cancel", "cx", Some("cg")),
    (Timer::Deadline, "deadline", "dla", None),
    (Timer::Wait, "wait", "wdl", None),
];

/// Every invariant violation found in `queues` of `ledger`; empty when all hold.
pub async fn check(ledger: &crate::Ledger, queues: &[&str]) -> Vec<String> {
    match check_queues(ledger, queues).await {
        Ok(violations) => violations,
        Err(error) => vec![format!("could not read the ledger's keys: {error}")],
    }
}

/// Panics listing every violation found.
pub async fn assert_ok(ledger: &crate::Ledger, queues: &[&str]) {
    let violations = check(ledger, queues).await;
    assert!(
        violations.is_empty(),
        "{} invariant violation(s):\n  {}",
        violations.len(),
        violations.join("\n  ")
    );
}

async fn check_queues(ledger: &crate::Ledger, queues: &[&str]) -> RedisResult<Vec<String>> {
    let config = ledger.config();
    let keys = Keyspace::new(&config.namespace, config.partitions)
        .map_err(|e| redis::RedisError::from(std::io::Error::other(e.to_string())))?;
    let mut raw = Raw::open(config).await?;
    let mut violations = Vec::new();
    for queue in queues {
        let indexes = QueueIndexes::read(&mut raw, &keys, queue).await?;
        let default_capacity = u64::from(config.default_capacity);
        indexes.check_slots(queue, default_capacity, &mut violations);
        violations.extend(indexes.twice.iter().map(|v| format!("{queue}: {v}")));

        let prefix = keys.execution_prefix(queue);
        let mut ids: BTreeSet<String> = raw
            .keys_with_prefix(&prefix)
            .await?
            .into_iter()
            .filter_map(|key| key.strip_prefix(&prefix).map(str::to_owned))
            .collect();
        ids.extend(indexes.named_ids());
        let ids: Vec<String> = ids.into_iter().collect();
        // Pipelined: a round trip per execution made the checker of the fault suite's
        // 100,000 executions take minutes.
        for chunk in ids.chunks(READ_BATCH) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.hgetall(keys.execution(queue, id));
            }
            let hashes: Vec<HashMap<String, String>> = raw.query_pipe(&pipe).await?;
            for (id, hash) in chunk.iter().zip(hashes) {
                let mut found = Vec::new();
                if hash.is_empty() {
                    for index in indexes.indexes_naming(id) {
                        found.push(format!("{index} names {id} but its hash is missing"));
                    }
                } else {
                    check_execution(&hash, queue, id, &indexes, &mut found);
                }
                violations.extend(found.into_iter().map(|v| format!("{queue}/{id}: {v}")));
            }
        }
    }
    Ok(violations)
}

/// Everything a queue's indexes hold, read once.
struct QueueIndexes {
    pending: HashMap<String, f64>,
    slots: HashMap<String, String>,
    capacity: Option<String>,
    /// Terminal state → ids in its index.
    finished: HashMap<&'static str, BTreeSet<String>>,
    /// Terminal indexes that list an id more than once (each finish lists it once).
    twice: Vec<String>,
    /// Timer name → this queue's ids in it, with scores.
    timers: HashMap<&'static str, HashMap<String, f64>>,
}

impl QueueIndexes {
    async fn read(raw: &mut Raw, keys: &Keyspace, queue: &str) -> RedisResult<Self> {
        let zset = |key: String| {
            let mut cmd = redis::cmd("ZRANGE");
            cmd.arg(key).arg(0).arg(-1).arg("WITHSCORES");
            cmd
        };
        let pending: Vec<(String, f64)> = raw.query(&zset(keys.pending(queue))).await?;
        let slots = raw
            .query(redis::cmd("HGETALL").arg(keys.slots(queue)))
            .await?;
        let capacity = raw
            .query(
                redis::cmd("HGET")
                    .arg(keys.queue_settings(queue))
                    .arg("cap"),
            )
            .await?;
        let mut finished = HashMap::new();
        let mut twice = Vec::new();
        for state in TERMINAL {
            // The state's list, then its pinned executions set aside past retention.
            let mut members: Vec<String> = raw
                .query(
                    redis::cmd("LRANGE")
                        .arg(keys.finished(queue, state))
                        .arg(0)
                        .arg(-1),
                )
                .await?;
            let kept: Vec<String> = raw
                .query(
                    redis::cmd("LRANGE")
                        .arg(keys.kept(queue, state))
                        .arg(0)
                        .arg(-1),
                )
                .await?;
            members.extend(kept);
            let unique: BTreeSet<String> = members.iter().cloned().collect();
            if unique.len() != members.len() {
                twice.push(format!("s:{state} lists an id more than once: {members:?}"));
            }
            finished.insert(state, unique);
        }
        let member_prefix = Keyspace::member(queue, "");
        let mut timers = HashMap::new();
        for (timer, name, _, _) in TIMERS {
            let members: Vec<(String, f64)> =
                raw.query(&zset(keys.queue_timer(queue, timer))).await?;
            let ours = members
                .into_iter()
                .filter_map(|(m, s)| m.strip_prefix(&member_prefix).map(|id| (id.to_owned(), s)))
                .collect();
            timers.insert(name, ours);
        }
        Ok(Self {
            pending: pending.into_iter().collect(),
            slots,
            capacity,
            finished,
            twice,
            timers,
        })
    }

    fn named_ids(&self) -> BTreeSet<String> {
        let mut ids: BTreeSet<String> = self.pending.keys().cloned().collect();
        ids.extend(self.slots.keys().cloned());
        for members in self.finished.values() {
            ids.extend(members.iter().cloned());
        }
        for members in self.timers.values() {
            ids.extend(members.keys().cloned());
        }
        ids
    }

    fn indexes_naming(&self, id: &str) -> Vec<String> {
        let mut names = Vec::new();
        if self.pending.contains_key(id) {
            names.push("pending".to_owned());
        }
        if self.slots.contains_key(id) {
            names.push("slots".to_owned());
        }
        for (state, members) in &self.finished {
            if members.contains(id) {
                names.push(format!("s:{state}"));
            }
        }
        for (timer, members) in &self.timers {
            if members.contains_key(id) {
                names.push(format!("timer:{timer}"));
            }
        }
        names
    }

    fn check_slots(&self, queue: &str, default_capacity: u64, out: &mut Vec<String>) {
        let capacity = match &self.capacity {
            None => default_capacity,
            Some(text) => match text.parse() {
                Ok(cap) => cap,
                Err(_) => {
                    out.push(format!(
                        "{queue}: capacity setting {text:?} is not a number"
                    ));
                    default_capacity
                }
            },
        };
        if self.slots.len() as u64 > capacity {
            out.push(format!(
                "{queue}: {} slots in use, above capacity {capacity}",
                self.slots.len()
            ));
        }
        for (id, holder) in &self.slots {
            if holder_attempt(holder).is_none_or(|a| a < 1) {
                out.push(format!(
                    "{queue}: slot of {id} held by attempt {holder:?}, not a positive number"
                ));
            }
        }
    }
}

fn check_execution(
    hash: &HashMap<String, String>,
    queue: &str,
    id: &str,
    indexes: &QueueIndexes,
    out: &mut Vec<String>,
) {
    let field = |name: &str| hash.get(name).map(String::as_str).unwrap_or("");
    let num = |name: &str| field(name).parse::<i64>().ok();
    let state = field("st");
    let terminal = TERMINAL.contains(&state);
    let active = ACTIVE.contains(&state);
    // A run of identical fingerprints at max_repeats (lua/_fingerprint.lua).
    let looping = num("mr").is_some_and(|m| m > 0) && num("fpn") >= num("mr");
    if !terminal && !active && state != "queued" && state != "awaiting" {
        out.push(format!("invalid state {state:?}"));
        return;
    }
    if field("q") != queue || field("id") != id {
        out.push(format!("hash names {}/{} instead", field("q"), field("id")));
    }
    let Some(attempt) = num("att").filter(|a| *a >= 0) else {
        out.push(format!("attempt {:?} is not a number", field("att")));
        return;
    };
    if active && attempt < 1 {
        out.push(format!("{state} with attempt {attempt}"));
    }
    if terminal && (field("sr").is_empty() || num("fin").is_none_or(|f| f <= 0)) {
        out.push(format!(
            "terminal {state} without stop reason or finish time (sr {:?}, fin {:?})",
            field("sr"),
            field("fin")
        ));
    }
    if state == "awaiting" && (!field("tok").is_empty() || field("rth").is_empty()) {
        out.push(format!(
            "awaiting with an attempt nonce {:?} or no resume token hash",
            field("tok")
        ));
    }
    if !terminal && !field("sr").is_empty() {
        out.push(format!("{state} carries stop reason {:?}", field("sr")));
    }

    let mut expect = |index: &str, present: bool, wanted: bool| {
        if present != wanted {
            let verb = if present { "is in" } else { "is missing from" };
            out.push(format!("{state} (attempt {attempt}) {verb} {index}"));
        }
    };
    expect(
        "pending",
        indexes.pending.contains_key(id),
        state == "queued",
    );
    let slot = indexes.slots.get(id);
    expect("slots", slot.is_some(), active);
    for (name, members) in &indexes.finished {
        expect(&format!("s:{name}"), members.contains(id), state == *name);
    }
    let wanted = |timer: &str| match timer {
        "start" => state == "dispatched",
        "heartbeat" => state == "running",
        "progress" => state == "running" && (num("npt").unwrap_or(0) > 0 || looping),
        "stuck" => state == "stuck",
        "cancel" => active && !field("cx").is_empty(),
        "wait" => state == "awaiting",
        _ => !terminal && num("dla").unwrap_or(0) > 0,
    };
    for (_, name, _, _) in TIMERS {
        let present = indexes.timers[name].contains_key(id);
        expect(&format!("timer:{name}"), present, wanted(name));
    }

    if let Some(holder) = slot
        && active
        && holder_attempt(holder) != Some(attempt)
    {
        out.push(format!(
            "slot held by attempt {holder}, current is {attempt}"
        ));
    }
    for (_, name, since, timeout) in TIMERS {
        let Some(score) = indexes.timers[name].get(id) else {
            continue;
        };
        if name == "progress" && looping {
            continue; // made due at once by the beat that reached max_repeats
        }
        let due = match timeout {
            Some(timeout) => num(since).zip(num(timeout)).map(|(s, t)| s + t),
            None => num(since),
        };
        if due != Some(*score as i64) {
            out.push(format!(
                "timer:{name} scored {score}, expected {since} + {} = {due:?}",
                timeout.unwrap_or("0")
            ));
        }
    }
}

/// The attempt of a slot holder stored as `<attempt>:<worker>`.
fn holder_attempt(holder: &str) -> Option<i64> {
    holder.split(':').next()?.parse().ok()
}
