//! The event stream: every transition, with its reason, read back or followed live.
//!
//! This module holds the [`Event`] type, its parsing and the live [`EventFollower`]; the
//! [`Ledger`](crate::Ledger)'s calls that read and follow the streams
//! ([`read_events`](crate::Ledger::read_events),
//! [`follow_events`](crate::Ledger::follow_events), ...) are in `ledger/events.rs`.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, Value};
use serde::{Deserialize, Serialize};

use crate::conn::{BlockingPool, Connection, FOLLOW_BLOCK};
use crate::error::{Error, Result};
use crate::state::{State, ms_to_time};

/// One transition of one execution, as recorded in its partition's stream: what the
/// HTTP API's event routes and SSE stream send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Event {
    /// `<partition>-<stream id>`, unique across partitions: the HTTP API's `Last-Event-ID`
    /// to resume from.
    pub id: String,
    /// Stream entry id; pass it back to read what follows in its partition.
    pub stream_id: String,
    /// The partition whose stream holds the event.
    pub partition: u16,
    /// When it happened: the stream entry's Redis time.
    pub at: DateTime<Utc>,
    /// The queue of the execution, or of a queue event (`queue_paused`,
    /// `queue_resumed`); empty for partition-wide events.
    pub queue: String,
    /// The execution (empty for queue and partition-wide events).
    pub execution_id: String,
    /// The attempt the transition belongs to (0 before the first claim).
    pub attempt: u32,
    /// `None` for the first event of an execution and for queue and partition-wide events.
    pub from: Option<State>,
    /// `None` for queue events (a pause, a resume) and partition-wide events (such as
    /// `systemic_hold`), which name no execution.
    pub to: Option<State>,
    /// Why: `enqueued`, `claimed`, `started`, `completed`, `retry_scheduled`, ...
    pub reason: String,
    /// Free text: the worker, the failure message, the thresholds used.
    pub detail: String,
    /// For watchdog actions: the instant the timer that triggered it fired. Detection lag
    /// is `at - timer_due_at`.
    pub timer_due_at: Option<DateTime<Utc>>,
    /// For watchdog actions: how long after its timer fired it acted (`at -
    /// timer_due_at`), in milliseconds.
    pub lag_ms: Option<i64>,
    /// For watchdog actions: the replica that acted. `None` for events written by
    /// workers and orchestrators.
    pub replica: Option<String>,
    /// For watchdog actions: the epoch of the partition lease the replica acted under
    /// (the script checked it was current at that instant).
    pub epoch: Option<u64>,
}

/// Entries read per `XRANGE`/`XREAD` call.
pub(crate) const READ_BATCH: usize = 500;

/// How much earlier a resumed follower reads the other partitions on a Redis Cluster, whose
/// nodes stamp stream ids with clocks of their own.
pub const CLUSTER_RESUME_MARGIN: Duration = Duration::from_secs(2);

/// A live subscription to partition event streams; see
/// [`Ledger::follow_events`](crate::Ledger::follow_events).
pub struct EventFollower {
    conn: Connection,
    blocking: BlockingPool,
    partitions: Vec<u16>,
    /// The stream key of each partition.
    keys: Vec<String>,
    /// Last stream id seen per partition.
    cursors: Vec<String>,
}

impl EventFollower {
    /// Follows the streams `keys` of `partitions` from just after `cursors` (one each).
    pub(crate) fn new(
        conn: Connection,
        blocking: BlockingPool,
        partitions: Vec<u16>,
        keys: Vec<String>,
        cursors: Vec<String>,
    ) -> Self {
        EventFollower {
            conn,
            blocking,
            partitions,
            keys,
            cursors,
        }
    }

    /// Waits for the next events (up to about a second) and returns them, oldest first
    /// per partition; an empty batch means nothing happened meanwhile.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when Redis cannot be reached, [`Error::Redis`].
    pub async fn next_batch(&mut self) -> Result<Vec<Event>> {
        let keys = &self.keys;
        let opts = StreamReadOptions::default().count(READ_BATCH);
        let reply: StreamReadReply = match &self.blocking {
            BlockingPool::Single(pool) => {
                let mut conn = pool
                    .get()
                    .await
                    .map_err(|e| Error::pool("event stream read", e))?;
                let block = opts.block(FOLLOW_BLOCK.as_millis() as usize);
                conn.xread_options(keys, &self.cursors, &block).await?
            }
            BlockingPool::None => {
                // Cluster: streams live on different nodes, so read them one by one.
                let mut merged = StreamReadReply { keys: Vec::new() };
                let mut conn = self.conn.clone();
                for (key, cursor) in keys.iter().zip(&self.cursors) {
                    let part: Option<StreamReadReply> =
                        conn.xread_options(&[key], &[cursor], &opts).await?;
                    if let Some(mut part) = part {
                        merged.keys.append(&mut part.keys);
                    }
                }
                if merged.keys.is_empty() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                merged
            }
        };
        let mut events = Vec::new();
        for stream in reply.keys {
            let Some(i) = keys.iter().position(|k| *k == stream.key) else {
                continue;
            };
            for entry in &stream.ids {
                events.push(parse_event(self.partitions[i], &entry.id, &entry.map)?);
                self.cursors[i] = entry.id.clone();
            }
        }
        Ok(events)
    }
}

pub(crate) fn parse_event(
    partition: u16,
    stream_id: &str,
    map: &HashMap<String, Value>,
) -> Result<Event> {
    let bad = |detail: String| Error::Protocol {
        script: "event stream",
        detail,
    };
    // One field, "<queue>|<id>|<attempt>|<from>|<to>|<reason>|<due>|<actor>|<detail>" (see
    // `emit` in lua/_lib.lua); the detail, last, may hold '|' itself.
    let packed = match map.get("e") {
        Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        _ => {
            return Err(bad(format!(
                "event {stream_id} is not an unstuck event: {map:?}"
            )));
        }
    };
    let fields: Vec<&str> = packed.splitn(9, '|').collect();
    let [queue, id, attempt, from, to, reason, due, actor, detail] = fields[..] else {
        return Err(bad(format!("event {stream_id} is malformed: {packed:?}")));
    };
    // "<replica>@<epoch>" for watchdog actions; replica ids never hold '@'.
    let (replica, epoch) = match actor.rsplit_once('@') {
        Some((replica, epoch)) => (
            Some(replica.to_owned()),
            Some(
                epoch
                    .parse::<u64>()
                    .map_err(|_| bad(format!("event {stream_id}: bad epoch in {actor:?}")))?,
            ),
        ),
        None => (None, None),
    };
    let ms: i64 = stream_id
        .split('-')
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad stream id {stream_id}")))?;
    let state = |s: &str| -> Result<Option<State>> {
        if s.is_empty() {
            Ok(None)
        } else {
            s.parse()
                .map(Some)
                .map_err(|_| bad(format!("event {stream_id}: unknown state {s:?}")))
        }
    };
    let timer_due_at = match due.parse::<i64>() {
        Ok(ms) => Some(ms_to_time(ms)?),
        Err(_) => None,
    };
    let at = ms_to_time(ms)?;
    Ok(Event {
        id: format!("{partition}-{stream_id}"),
        stream_id: stream_id.to_owned(),
        partition,
        at,
        queue: queue.to_owned(),
        execution_id: id.to_owned(),
        attempt: attempt.parse().unwrap_or(0),
        from: state(from)?,
        to: state(to)?,
        reason: reason.to_owned(),
        detail: detail.to_owned(),
        timer_due_at,
        lag_ms: timer_due_at.map(|due| (at - due).num_milliseconds()),
        replica,
        epoch,
    })
}
