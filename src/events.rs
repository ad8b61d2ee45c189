//! The event stream: every transition, with its reason, read back or followed live.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::streams::{StreamRangeReply, StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, Value};
use serde::{Deserialize, Serialize};

use crate::conn::{BlockingPool, FOLLOW_BLOCK};
use crate::error::{Error, Result};
use crate::ledger::{Ledger, State, ms_to_time};

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
    /// The queue of the execution (empty for partition-wide events).
    pub queue: String,
    /// The execution (empty for partition-wide events).
    pub execution_id: String,
    /// The attempt the transition belongs to (0 before the first claim).
    pub attempt: u32,
    /// `None` for the first event of an execution and for partition-wide events.
    pub from: Option<State>,
    /// `None` for partition-wide events (such as `systemic_hold`), which name no execution.
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

const READ_BATCH: usize = 500;

/// How much earlier a resumed follower reads the other partitions on a Redis Cluster, whose
/// nodes stamp stream ids with clocks of their own.
pub const CLUSTER_RESUME_MARGIN: Duration = Duration::from_secs(2);

impl Ledger {
    /// Events of a partition after `after` (a stream id; `None` for the oldest kept),
    /// oldest first, at most `count`.
    ///
    /// # Errors
    /// [`Error::Redis`]; [`Error::InvalidArgument`] for a partition out of range.
    pub async fn read_events(
        &self,
        partition: u16,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<Event>> {
        self.check_partition(partition)?;
        let start = after.map(|a| format!("({a}")).unwrap_or_else(|| "-".into());
        let reply: StreamRangeReply = self
            .conn
            .clone()
            .xrange_count(self.keys.events(partition), start, "+", count)
            .await?;
        reply
            .ids
            .iter()
            .map(|e| parse_event(partition, &e.id, &e.map))
            .collect()
    }

    /// The newest `count` events of `partitions` (every partition when empty), oldest
    /// first: one `XREVRANGE` per partition, merged by time.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a partition out of range, [`Error::Redis`].
    pub async fn recent_events(&self, partitions: Vec<u16>, count: usize) -> Result<Vec<Event>> {
        let partitions: Vec<u16> = if partitions.is_empty() {
            (0..self.keys.partitions()).collect()
        } else {
            partitions
        };
        let mut all = Vec::new();
        let mut conn = self.conn.clone();
        for p in partitions {
            self.check_partition(p)?;
            let reply: StreamRangeReply = conn
                .xrevrange_count(self.keys.events(p), "+", "-", count)
                .await?;
            for e in &reply.ids {
                all.push(parse_event(p, &e.id, &e.map)?);
            }
        }
        all.sort_by(|a, b| {
            (a.at, a.partition, &a.stream_id).cmp(&(b.at, b.partition, &b.stream_id))
        });
        let skip = all.len().saturating_sub(count);
        Ok(all.split_off(skip))
    }

    /// The newest `limit` events (1 to [`MAX_PAGE`](crate::ledger::MAX_PAGE)) of `queue`,
    /// or of every queue when `None`, oldest first: what a live view shows before it
    /// follows the streams from the last one's id.
    ///
    /// A queue shares its partition's stream with the partition's other queues: four
    /// times `limit` are read and the queue's own kept, so a busy neighbour can make the
    /// answer shorter than `limit`, never slower.
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::InvalidArgument`] for a `limit` out of range,
    /// [`Error::Redis`].
    pub async fn recent_queue_events(
        &self,
        queue: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Event>> {
        crate::ledger::check_page_limit(limit)?;
        let Some(queue) = queue else {
            return self.recent_events(Vec::new(), limit).await;
        };
        crate::names::validate_queue(queue)?;
        let mut events = self
            .recent_events(vec![self.partition_of(queue)], limit * 4)
            .await?;
        events.retain(|e| e.queue == queue);
        let skip = events.len().saturating_sub(limit);
        Ok(events.split_off(skip))
    }

    /// The transitions of one execution still in its partition's (capped) stream, oldest
    /// first: the stream is read from the instant the execution was created, in pages,
    /// and filtered — bounded by the stream's cap, never a scan of executions.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::InvalidName`], [`Error::Redis`].
    pub async fn execution_events(&self, queue: &str, id: &str) -> Result<Vec<Event>> {
        self.events_of(&self.get(queue, id).await?).await
    }

    /// [`execution_events`](Self::execution_events) of an execution already read.
    pub(crate) async fn events_of(
        &self,
        execution: &crate::ledger::Execution,
    ) -> Result<Vec<Event>> {
        let (queue, id) = (execution.queue.as_str(), execution.id.as_str());
        let created = execution.created_at.timestamp_millis();
        let partition = self.partition_of(queue);
        let mut after = format!("{}-0", created.saturating_sub(1));
        let mut out = Vec::new();
        loop {
            let page = self
                .read_events(partition, Some(&after), READ_BATCH)
                .await?;
            let Some(last) = page.last() else {
                return Ok(out);
            };
            after = last.stream_id.clone();
            let done = page.len() < READ_BATCH;
            out.extend(
                page.into_iter()
                    .filter(|e| e.queue == queue && e.execution_id == id),
            );
            if done {
                return Ok(out);
            }
        }
    }

    /// Follows the event streams of `partitions` (every partition when empty): the
    /// follower sees every event appended after this call returns.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a partition out of range, [`Error::Redis`].
    pub async fn follow_events(&self, partitions: Vec<u16>) -> Result<EventFollower> {
        let partitions: Vec<u16> = if partitions.is_empty() {
            (0..self.keys.partitions()).collect()
        } else {
            for p in &partitions {
                self.check_partition(*p)?;
            }
            partitions
        };
        // Pin each cursor to the stream's current last entry now: a `$` cursor would mean
        // "new since this read" at every read, losing what arrives between two reads.
        let mut conn = self.conn.clone();
        let mut cursors = Vec::with_capacity(partitions.len());
        for p in &partitions {
            let last: StreamRangeReply = conn
                .xrevrange_count(self.keys.events(*p), "+", "-", 1)
                .await?;
            cursors.push(
                last.ids
                    .first()
                    .map(|e| e.id.clone())
                    .unwrap_or_else(|| "0-0".to_owned()),
            );
        }
        Ok(EventFollower {
            ledger: self.clone(),
            partitions,
            cursors,
        })
    }

    /// Follows `partitions` (every partition when empty) from just after `resume`, the
    /// last event a reader saw before it lost its connection: in that event's partition
    /// from right after it, in the others from the start of its millisecond (their
    /// events of that very millisecond may have been seen already; on a Redis Cluster,
    /// whose nodes' clocks differ, from [`CLUSTER_RESUME_MARGIN`] earlier). Nothing is
    /// missed; a reader deduplicates by event id.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a partition out of range or a malformed `resume`,
    /// [`Error::Redis`].
    pub async fn follow_events_after(
        &self,
        partitions: Vec<u16>,
        resume: (u16, &str),
    ) -> Result<EventFollower> {
        let (last_partition, last_id) = resume;
        self.check_partition(last_partition)?;
        let ms: u64 = last_id
            .split_once('-')
            .and_then(|(ms, seq)| seq.parse::<u64>().ok().and(ms.parse().ok()))
            .ok_or_else(|| Error::InvalidArgument {
                name: "last event id".into(),
                value: last_id.chars().take(80).collect(),
                expected: "a stream id <ms>-<seq> from an earlier event".into(),
            })?;
        let margin = if self.cluster {
            CLUSTER_RESUME_MARGIN.as_millis() as u64
        } else {
            0
        };
        let others = format!("{}-{}", ms.saturating_sub(margin + 1), u64::MAX);
        let partitions: Vec<u16> = if partitions.is_empty() {
            (0..self.keys.partitions()).collect()
        } else {
            partitions
        };
        let mut cursors = Vec::with_capacity(partitions.len());
        for p in &partitions {
            self.check_partition(*p)?;
            cursors.push(if *p == last_partition {
                last_id.to_owned()
            } else {
                others.clone()
            });
        }
        Ok(EventFollower {
            ledger: self.clone(),
            partitions,
            cursors,
        })
    }

    pub(crate) fn check_partition(&self, partition: u16) -> Result<()> {
        if partition >= self.keys.partitions() {
            return Err(Error::InvalidArgument {
                name: "partition".into(),
                value: partition.to_string(),
                expected: format!("0 to {}", self.keys.partitions() - 1),
            });
        }
        Ok(())
    }
}

/// A live subscription to partition event streams; see [`Ledger::follow_events`].
pub struct EventFollower {
    ledger: Ledger,
    partitions: Vec<u16>,
    /// Last stream id seen per partition.
    cursors: Vec<String>,
}

impl EventFollower {
    /// Waits for the next events (up to about a second) and returns them, oldest first
    /// per partition; an empty batch means nothing happened meanwhile.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when Redis cannot be reached, [`Error::Redis`].
    pub async fn next_batch(&mut self) -> Result<Vec<Event>> {
        let keys: Vec<String> = self
            .partitions
            .iter()
            .map(|p| self.ledger.keys.events(*p))
            .collect();
        let opts = StreamReadOptions::default().count(READ_BATCH);
        let reply: StreamReadReply = match &self.ledger.blocking {
            BlockingPool::Single(pool) => {
                let mut conn = pool
                    .get()
                    .await
                    .map_err(|e| Error::pool("event stream read", e))?;
                let block = opts.block(FOLLOW_BLOCK.as_millis() as usize);
                conn.xread_options(&keys, &self.cursors, &block).await?
            }
            BlockingPool::None => {
                // Cluster: streams live on different nodes, so read them one by one.
                let mut merged = StreamReadReply { keys: Vec::new() };
                let mut conn = self.ledger.conn.clone();
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
