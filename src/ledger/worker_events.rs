//! The workers' event stream: tier changes, action and hook outcomes, circuits opened and
//! reset, requests — read back, or followed live.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use redis::streams::StreamRangeReply;
use redis::{AsyncCommands, Value};
use serde::{Deserialize, Serialize};

use super::{Ledger, ms_to_time};
use crate::error::{Error, Result};

/// One entry of the workers' event stream: a tier change, an action's outcome, a circuit
/// opened or reset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct WorkerEvent {
    /// Stream entry id; pass it back to read what follows.
    pub stream_id: String,
    /// When: the entry's Redis time.
    pub at: DateTime<Utc>,
    /// The worker.
    pub worker_id: String,
    /// The tier before (equal to `to_tier` for outcomes and a circuit opening).
    pub from_tier: u8,
    /// The tier after.
    pub to_tier: u8,
    /// `tier_1`, `tier_2`, `tier_3`, `action_succeeded`, `action_failed`,
    /// `circuit_opened`, `circuit_reset`, `recovered`, `hook_succeeded`, `hook_failed`,
    /// `asked_to_restart`, `asked_to_drain`.
    pub reason: String,
    /// Why, with the verdict and the thresholds used.
    pub detail: String,
    /// Who: `<replica>@<epoch>` for the watchdog, the operator or hook otherwise.
    pub actor: String,
}

impl Ledger {
    /// The newest `count` worker events, oldest first: one `XREVRANGE`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a `count` of 0 or above [`MAX_PAGE`](super::MAX_PAGE);
    /// [`Error::Redis`]; [`Error::Protocol`] for an entry that is not a worker event.
    pub async fn recent_worker_events(&self, count: usize) -> Result<Vec<WorkerEvent>> {
        super::check_page_limit(count)?;
        let reply: StreamRangeReply = self
            .conn
            .clone()
            .xrevrange_count(self.keys.worker_events(), "+", "-", count)
            .await?;
        let mut events = reply
            .ids
            .iter()
            .map(|e| parse_worker_event(&e.id, &e.map))
            .collect::<Result<Vec<_>>>()?;
        events.reverse();
        Ok(events)
    }

    /// Worker tier changes after `after` (a stream id; `None`: the oldest kept), oldest
    /// first, at most `count`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a `count` of 0 or above [`MAX_PAGE`](super::MAX_PAGE);
    /// [`Error::Redis`]; [`Error::Protocol`] for an entry that is not a worker event.
    pub async fn worker_events(
        &self,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<WorkerEvent>> {
        super::check_page_limit(count)?;
        let start = after.map(|a| format!("({a}")).unwrap_or_else(|| "-".into());
        let reply: StreamRangeReply = self
            .conn
            .clone()
            .xrange_count(self.keys.worker_events(), start, "+", count)
            .await?;
        reply
            .ids
            .iter()
            .map(|e| parse_worker_event(&e.id, &e.map))
            .collect()
    }
}

/// A live subscription to the workers' event stream; see
/// [`Ledger::follow_worker_events`].
pub struct WorkerEventFollower {
    ledger: Ledger,
    /// The last stream id seen.
    cursor: String,
}

impl Ledger {
    /// Follows the workers' event stream from after `after` (a stream id), or from now.
    ///
    /// # Errors
    /// [`Error::Redis`].
    pub async fn follow_worker_events(&self, after: Option<&str>) -> Result<WorkerEventFollower> {
        let cursor = match after {
            Some(id) => id.to_owned(),
            None => {
                let last: StreamRangeReply = self
                    .conn
                    .clone()
                    .xrevrange_count(self.keys.worker_events(), "+", "-", 1)
                    .await?;
                last.ids
                    .first()
                    .map_or_else(|| "0-0".to_owned(), |e| e.id.clone())
            }
        };
        Ok(WorkerEventFollower {
            ledger: self.clone(),
            cursor,
        })
    }
}

impl WorkerEventFollower {
    /// Waits for the next events (up to about a second) and returns them, oldest first;
    /// an empty batch means nothing happened meanwhile.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when Redis cannot be reached, [`Error::Redis`].
    pub async fn next_batch(&mut self) -> Result<Vec<WorkerEvent>> {
        let key = self.ledger.keys.worker_events();
        let opts = redis::streams::StreamReadOptions::default().count(500);
        let reply: Option<redis::streams::StreamReadReply> = match &self.ledger.blocking {
            crate::conn::BlockingPool::Single(pool) => {
                let mut conn = pool
                    .get()
                    .await
                    .map_err(|e| Error::pool("event stream read", e))?;
                let block = opts.block(crate::conn::FOLLOW_BLOCK.as_millis() as usize);
                conn.xread_options(&[&key], &[&self.cursor], &block).await?
            }
            crate::conn::BlockingPool::None => {
                // Cluster: no blocking pool; a short pause between reads instead.
                let reply: Option<redis::streams::StreamReadReply> = self
                    .ledger
                    .conn
                    .clone()
                    .xread_options(&[&key], &[&self.cursor], &opts)
                    .await?;
                if reply.as_ref().is_none_or(|r| r.keys.is_empty()) {
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
                reply
            }
        };
        let mut out = Vec::new();
        for stream in reply.map(|r| r.keys).unwrap_or_default() {
            for entry in &stream.ids {
                out.push(parse_worker_event(&entry.id, &entry.map)?);
                self.cursor = entry.id.clone();
            }
        }
        Ok(out)
    }
}

fn parse_worker_event(stream_id: &str, map: &HashMap<String, Value>) -> Result<WorkerEvent> {
    let bad = |detail: String| Error::Protocol {
        script: "worker event stream",
        detail,
    };
    let packed = match map.get("e") {
        Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        _ => return Err(bad(format!("entry {stream_id} is not a worker event"))),
    };
    // "<worker>|<from>|<to>|<reason>|<actor>|<detail>" (lua/_tiers.lua); the detail, last,
    // may hold '|' itself.
    let fields: Vec<&str> = packed.splitn(6, '|').collect();
    let [worker, from, to, reason, actor, detail] = fields[..] else {
        return Err(bad(format!("entry {stream_id} is malformed: {packed:?}")));
    };
    let tier = |t: &str| {
        t.parse::<u8>()
            .map_err(|_| bad(format!("entry {stream_id}: bad tier {t:?}")))
    };
    let ms: i64 = stream_id
        .split('-')
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad stream id {stream_id}")))?;
    Ok(WorkerEvent {
        stream_id: stream_id.to_owned(),
        at: ms_to_time(ms)?,
        worker_id: worker.to_owned(),
        from_tier: tier(from)?,
        to_tier: tier(to)?,
        reason: reason.to_owned(),
        detail: detail.to_owned(),
        actor: actor.to_owned(),
    })
}
