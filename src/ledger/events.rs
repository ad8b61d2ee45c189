//! The event stream's reads: a partition's events, the newest of some partitions or of a
//! queue, one execution's surviving transitions, and live followers (the [`Event`] type,
//! its parsing and [`EventFollower`] are in `crate::events`).

use redis::AsyncCommands;
use redis::streams::StreamRangeReply;

use super::Ledger;
use crate::error::{Error, Result};
use crate::events::{CLUSTER_RESUME_MARGIN, Event, EventFollower, READ_BATCH, parse_event};

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
        super::check_page_limit(limit)?;
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
    pub(crate) async fn events_of(&self, execution: &super::Execution) -> Result<Vec<Event>> {
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
        Ok(self.follower(partitions, cursors))
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
        Ok(self.follower(partitions, cursors))
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

    fn follower(&self, partitions: Vec<u16>, cursors: Vec<String>) -> EventFollower {
        let keys = partitions.iter().map(|p| self.keys.events(*p)).collect();
        EventFollower::new(
            self.conn.clone(),
            self.blocking.clone(),
            partitions,
            keys,
            cursors,
        )
    }
}
