//! Reading executions: `get` one, `list` a queue by state with a cursor.

use std::collections::HashMap;

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::{Execution, Ledger, State};
use crate::error::{Error, Result};
use crate::names;

/// One page of a listing; pass `next` back as the cursor for the following page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page {
    /// The executions of this page.
    pub items: Vec<Execution>,
    /// `None` when the listing is complete.
    pub next: Option<String>,
}

/// Largest page `list` returns.
pub const MAX_PAGE: usize = 1000;

/// The one rule of every page size (executions, events, worker events): 1 to [`MAX_PAGE`].
///
/// # Errors
/// [`Error::InvalidArgument`] naming `limit`.
pub(crate) fn check_page_limit(limit: usize) -> Result<()> {
    if limit == 0 || limit > MAX_PAGE {
        return Err(Error::InvalidArgument {
            name: "limit".into(),
            value: limit.to_string(),
            expected: format!("1 to {MAX_PAGE}"),
        });
    }
    Ok(())
}

impl Ledger {
    /// A snapshot of one execution: state, attempt, timings, checkpoint, stop metadata, its
    /// recent history, the retries made of it and, when queued, when it becomes claimable.
    /// Two round trips: the fold of its queue's usage journal (so its usage sums are
    /// whole), then a pipelined `HGETALL`, `ZRANGE` and `ZSCORE`.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::InvalidName`].
    pub async fn get(&self, queue: &str, id: &str) -> Result<Execution> {
        names::validate_queue(queue)?;
        names::validate_execution_id(id)?;
        self.fold_usage(queue).await?;
        let (fields, retries, available): (HashMap<String, String>, Vec<String>, Option<f64>) =
            redis::pipe()
                .hgetall(self.keys.execution(queue, id))
                .zrange(self.keys.retries(queue, id), 0, -1)
                .zscore(self.keys.pending(queue), id)
                .query_async(&mut self.conn.clone())
                .await?;
        if fields.is_empty() {
            return Err(Error::NotFound {
                queue: queue.into(),
                id: id.into(),
            });
        }
        let mut execution = Execution::from_hash(&fields)?;
        execution.retries = retries;
        if execution.state == State::Queued {
            // Scores of a batch enqueue carry fractions of a ms (lua/enqueue.lua).
            execution.available_at = available
                .map(|score| super::ms_to_time(score.ceil() as i64))
                .transpose()?;
        }
        Ok(execution)
    }

    /// Lists a queue's executions in `state`: queued ones in the order they will be
    /// claimed, active ones (dispatched, running, stuck) by id, terminal ones newest first.
    /// Two round trips per page. A page of active executions holds at most `limit` items,
    /// fewer when some slot holders are in another active state, while `next` is still set.
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::InvalidArgument`] for a bad cursor or a `limit` of 0
    /// or above [`MAX_PAGE`].
    pub async fn list(
        &self,
        queue: &str,
        state: State,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page> {
        names::validate_queue(queue)?;
        check_page_limit(limit)?;
        self.fold_usage(queue).await?;
        let position: u64 = match cursor {
            None => 0,
            Some(c) => c.parse().map_err(|_| Error::InvalidArgument {
                name: "cursor".into(),
                value: c.chars().take(80).collect(),
                expected: "a cursor returned by an earlier page".into(),
            })?,
        };
        let mut conn = self.conn.clone();
        let (ids, next): (Vec<String>, Option<String>) = if state == State::Awaiting {
            let ids = self.awaiting_ids(queue).await?;
            let start = (position as usize).min(ids.len());
            let end = (start + limit).min(ids.len());
            let more = end < ids.len();
            (ids[start..end].to_vec(), more.then(|| end.to_string()))
        } else if state.is_active() {
            // Slot holders are bounded by the queue's capacity: read them all, page by
            // offset over a stable (sorted) order.
            let mut ids: Vec<String> = conn.hkeys(self.keys.slots(queue)).await?;
            ids.sort();
            let start = (position as usize).min(ids.len());
            let end = (start + limit).min(ids.len());
            let more = end < ids.len();
            (ids[start..end].to_vec(), more.then(|| end.to_string()))
        } else {
            let key = if state == State::Queued {
                self.keys.pending(queue)
            } else {
                self.keys.finished(queue, state.as_str())
            };
            let start = position as isize;
            let stop = start + limit as isize; // one extra to learn whether more follow
            let mut ids: Vec<String> = if state == State::Queued {
                conn.zrange(&key, start, stop).await?
            } else {
                self.terminal_ids(queue, state, position as usize, limit + 1)
                    .await?
            };
            let more = ids.len() > limit;
            ids.truncate(limit);
            (ids, more.then(|| (position + limit as u64).to_string()))
        };
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hgetall(self.keys.execution(queue, id));
        }
        let hashes: Vec<HashMap<String, String>> = if ids.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut conn).await?
        };
        let mut items = Vec::with_capacity(hashes.len());
        for fields in hashes.iter().filter(|f| !f.is_empty()) {
            let execution = Execution::from_hash(fields)?;
            if execution.state == state {
                items.push(execution);
            }
        }
        Ok(Page { items, next })
    }

    /// Up to `count` ids of `queue`'s executions in terminal `state`, newest first, from
    /// position `start`: its terminal list (which grows at the tail), then the pinned ones
    /// set aside past their retention (its ":kept" list, older than all of the list).
    /// The awaiting executions of `queue`, soonest wait deadline first (people resume
    /// what expires first): the members of the partition's wait timer that are this
    /// queue's.
    pub(super) async fn awaiting_ids(&self, queue: &str) -> Result<Vec<String>> {
        let member_prefix = crate::keys::Keyspace::member(queue, "");
        let all: Vec<String> = self
            .conn
            .clone()
            .zrange(
                self.keys.queue_timer(queue, crate::keys::Timer::Wait),
                0,
                -1,
            )
            .await?;
        Ok(all
            .iter()
            .filter_map(|m| m.strip_prefix(&member_prefix).map(str::to_owned))
            .collect())
    }

    /// Awaiting executions per queue, over every partition (what `/metrics` samples): one
    /// read of each partition's wait timer, so it costs what the awaiting population is.
    ///
    /// # Errors
    /// [`Error::Redis`].
    pub async fn awaiting_counts(&self) -> Result<HashMap<String, u64>> {
        let mut counts = HashMap::new();
        for p in 0..self.keys.partitions() {
            let members: Vec<String> = self
                .conn
                .clone()
                .zrange(self.keys.timer(p, crate::keys::Timer::Wait), 0, -1)
                .await?;
            for member in members {
                if let Some((queue, _)) = member.split_once('/') {
                    *counts.entry(queue.to_owned()).or_insert(0) += 1;
                }
            }
        }
        Ok(counts)
    }

    pub(super) async fn terminal_ids(
        &self,
        queue: &str,
        state: State,
        start: usize,
        count: usize,
    ) -> Result<Vec<String>> {
        let mut conn = self.conn.clone();
        let main = self.keys.finished(queue, state.as_str());
        let (first, last) = (start as isize, (start + count) as isize - 1);
        let mut ids: Vec<String> = conn.lrange(&main, -1 - last, -1 - first).await?;
        ids.reverse();
        if ids.len() < count {
            let main_len: usize = conn.llen(&main).await?;
            let from = (start + ids.len()).saturating_sub(main_len) as isize;
            let want = (count - ids.len()) as isize;
            let kept = self.keys.kept(queue, state.as_str());
            let mut more: Vec<String> = conn.lrange(&kept, -from - want, -1 - from).await?;
            more.reverse();
            ids.extend(more);
        }
        Ok(ids)
    }
}
