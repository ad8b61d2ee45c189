//! `find`: executions across queues, filtered by state, stop reason and worker, newest
//! first, paged — what an operator asks at 3 a.m. ("what failed, what does worker w
//! hold"), read through the indexes, never a scan of every execution.

use std::collections::HashMap;

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::{Execution, Ledger, Page, State};
use crate::error::{Error, Result};
use crate::names;

/// What [`Ledger::find`] looks for; every field narrows it, none set lists everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// One queue; all known queues (by name) when `None`.
    pub queue: Option<String>,
    /// One state; every state when `None` (only terminal ones with a `stop_reason`).
    pub state: Option<State>,
    /// Terminal executions that stopped for this reason (`dead`, `heartbeat_lost`, ...).
    pub stop_reason: Option<String>,
    /// Executions whose current (or last) attempt is this worker's.
    pub worker: Option<String>,
}

/// A page reads at most this many executions per item asked, so a rare match among many
/// finished executions costs a bounded read (the page comes back short, `next` set).
const READ_PER_ITEM: usize = 4;

impl Ledger {
    /// Executions matching `filter`, newest first within each queue and state — queues
    /// by name, states in lifecycle order — `limit` (1 to 1000) at most per page. Pass
    /// the page's `next` as `cursor` to continue. Reads go through the queue indexes (the
    /// pending set, the slots, the terminal lists); a filtered page reads at most four
    /// executions per item asked, so it may come back short while `next` is set.
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::InvalidArgument`] for a bad cursor or limit,
    /// [`Error::Redis`].
    pub async fn find(&self, filter: &Filter, cursor: Option<&str>, limit: usize) -> Result<Page> {
        super::check_page_limit(limit)?;
        if let Some(w) = &filter.worker {
            names::validate_worker_id(w)?;
        }
        let queues = match &filter.queue {
            Some(q) => {
                names::validate_queue(q)?;
                vec![q.clone()]
            }
            None => self.queues().await?,
        };
        let states: Vec<State> = State::ALL
            .into_iter()
            .filter(|s| filter.state.is_none_or(|f| f == *s))
            .filter(|s| filter.stop_reason.is_none() || s.is_terminal())
            .filter(|s| filter.worker.is_none() || !matches!(s, State::Queued | State::Awaiting))
            .collect();
        let sources: Vec<(&str, State)> = queues
            .iter()
            .flat_map(|q| states.iter().map(move |s| (q.as_str(), *s)))
            .collect();
        let (mut source, mut offset) = parse_cursor(cursor)?;
        let mut items = Vec::new();
        let mut budget = limit * READ_PER_ITEM;
        while source < sources.len() && items.len() < limit && budget > 0 {
            let (queue, state) = sources[source];
            let want = (limit - items.len()).min(budget);
            let (ids, exhausted) = self.source_ids(queue, state, filter, offset, want).await?;
            budget = budget.saturating_sub(ids.len().max(1));
            offset += ids.len();
            for e in self.load(queue, &ids).await? {
                if e.state == state && matches(filter, &e) {
                    items.push(e);
                }
            }
            if exhausted {
                source += 1;
                offset = 0;
            }
        }
        let next = (source < sources.len()).then(|| format!("{source}.{offset}"));
        Ok(Page { items, next })
    }

    /// Up to `count` ids of `queue` in `state`, newest first, after `offset`; and whether
    /// the source has nothing beyond them.
    async fn source_ids(
        &self,
        queue: &str,
        state: State,
        filter: &Filter,
        offset: usize,
        count: usize,
    ) -> Result<(Vec<String>, bool)> {
        let k = &self.keys;
        let mut conn = self.conn.clone();
        let (start, stop) = (offset as isize, (offset + count) as isize - 1);
        let ids: Vec<String> = if state.is_active() {
            // Slot holders, bounded by the queue's capacity; "<attempt>:<worker>" names
            // the worker without reading the execution.
            let slots: HashMap<String, String> = conn.hgetall(k.slots(queue)).await?;
            let mut ids: Vec<String> = slots
                .into_iter()
                .filter(|(_, holder)| {
                    filter
                        .worker
                        .as_ref()
                        .is_none_or(|w| holder.split_once(':').is_some_and(|(_, who)| who == w))
                })
                .map(|(id, _)| id)
                .collect();
            ids.sort_unstable_by(|a, b| b.cmp(a)); // generated ids are time-ordered
            let all = ids.len();
            let ids: Vec<String> = ids.into_iter().skip(offset).take(count).collect();
            return Ok((ids.clone(), offset + ids.len() >= all));
        } else if state == State::Awaiting {
            let ids = self.awaiting_ids(queue).await?;
            let all = ids.len();
            let ids: Vec<String> = ids.into_iter().skip(offset).take(count).collect();
            return Ok((ids.clone(), offset + ids.len() >= all));
        } else if state == State::Queued {
            conn.zrevrange(k.pending(queue), start, stop).await?
        } else {
            self.terminal_ids(queue, state, offset, count).await?
        };
        let exhausted = ids.len() < count;
        Ok((ids, exhausted))
    }

    /// The executions of `queue` named by `ids` (missing ones skipped), one round trip.
    async fn load(&self, queue: &str, ids: &[String]) -> Result<Vec<Execution>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hgetall(self.keys.execution(queue, id));
        }
        let hashes: Vec<HashMap<String, String>> = pipe.query_async(&mut self.conn.clone()).await?;
        hashes
            .iter()
            .filter(|h| !h.is_empty())
            .map(Execution::from_hash)
            .collect()
    }
}

fn matches(filter: &Filter, e: &Execution) -> bool {
    let reason = filter
        .stop_reason
        .as_ref()
        .is_none_or(|r| e.stop.as_ref().is_some_and(|s| s.reason.as_str() == r));
    let worker = filter
        .worker
        .as_ref()
        .is_none_or(|w| e.worker.as_deref() == Some(w));
    reason && worker
}

/// `<source>.<offset>`, or the start.
fn parse_cursor(cursor: Option<&str>) -> Result<(usize, usize)> {
    let Some(c) = cursor else { return Ok((0, 0)) };
    c.split_once('.')
        .and_then(|(s, o)| Some((s.parse().ok()?, o.parse().ok()?)))
        .ok_or_else(|| Error::InvalidArgument {
            name: "cursor".into(),
            value: c.chars().take(80).collect(),
            expected: "a cursor returned by an earlier page".into(),
        })
}
