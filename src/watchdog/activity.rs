//! What the watchdog did lately, for charts: its actions per minute by reason and the
//! distribution of its detection lag, read back from the partitions' event streams.
//!
//! Cost: one pipelined `XREVRANGE ... COUNT cap` per partition, bounded by the window and
//! the cap (the streams are capped too); nothing scans executions. When a partition had
//! more events in the window than the cap, the answer says `truncated` and covers the
//! newest ones.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::streams::StreamRangeReply;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::events::{Event, parse_event};
use crate::ledger::{Ledger, ms_to_time};

/// Longest window [`activity`] reads.
pub const MAX_ACTIVITY_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Upper bounds of the lag histogram's buckets, in milliseconds (the last is open).
pub const LAG_BUCKETS_MS: [u64; 9] = [10, 25, 50, 100, 250, 500, 1000, 5000, 30000];

/// The watchdog's actions in one minute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct MinuteActivity {
    /// The minute's start.
    pub minute: DateTime<Utc>,
    /// Actions by reason (`heartbeat_lost`, `retry_scheduled`, `deadline_exceeded`, ...).
    pub actions: BTreeMap<String, u64>,
}

/// One bucket of the lag histogram.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct LagBucket {
    /// Lags up to this many milliseconds (above the previous bucket's bound); `None` for
    /// the open last bucket.
    pub le_ms: Option<u64>,
    /// How many actions had such a lag.
    pub count: u64,
}

/// How late the watchdog acted after the timers that triggered it fired.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct LagSummary {
    /// Actions with a timer (every watchdog action but partition-wide ones).
    pub count: u64,
    /// Percentiles and maximum in milliseconds; `None` when `count` is 0.
    pub p50_ms: Option<u64>,
    /// 90th percentile.
    pub p90_ms: Option<u64>,
    /// 99th percentile.
    pub p99_ms: Option<u64>,
    /// Largest lag.
    pub max_ms: Option<u64>,
    /// The histogram, bucket bounds as in [`LAG_BUCKETS_MS`].
    pub buckets: Vec<LagBucket>,
}

/// The watchdog's recent activity; see [`activity`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct WatchdogActivity {
    /// Redis time of the reading; the window ends here.
    pub at: DateTime<Utc>,
    /// The window's start.
    pub since: DateTime<Utc>,
    /// Every minute of the window, oldest first (empty minutes included).
    pub minutes: Vec<MinuteActivity>,
    /// Actions in the window, by reason.
    pub totals: BTreeMap<String, u64>,
    /// The detection lag of those actions.
    pub lag: LagSummary,
    /// Some partition had more events in the window than `cap`: only its newest were read.
    pub truncated: bool,
}

/// The watchdog's actions in the last `window` (whole minutes, at least one) and their
/// detection lag, reading at most `cap` events per partition.
///
/// # Errors
/// [`Error::InvalidArgument`] for a window over [`MAX_ACTIVITY_WINDOW`] or a cap of 0;
/// [`Error::Redis`]; [`Error::Protocol`] for a damaged event.
pub async fn activity(ledger: &Ledger, window: Duration, cap: usize) -> Result<WatchdogActivity> {
    if window > MAX_ACTIVITY_WINDOW || cap == 0 {
        return Err(Error::InvalidArgument {
            name: if cap == 0 { "cap" } else { "window" }.into(),
            value: if cap == 0 {
                "0".into()
            } else {
                crate::error::format_duration(window)
            },
            expected: "a window of 1 minute to 24 hours and a cap of at least 1".into(),
        });
    }
    let k = &ledger.keys;
    let mut conn = ledger.conn.clone();
    let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut conn).await?;
    let now_ms = secs * 1000 + micros / 1000;
    let minutes = (window.as_secs() / 60).max(1) as i64;
    let first_minute = (now_ms / 60_000 - minutes + 1) * 60_000;
    // One read per partition, all in flight at once (a Redis Cluster refuses one pipeline
    // across hash tags; the multiplexed connection pipelines them on one server).
    let reads = (0..k.partitions()).map(|p| {
        let mut cmd = redis::cmd("XREVRANGE");
        cmd.arg(k.events(p))
            .arg("+")
            .arg(first_minute)
            .arg("COUNT")
            .arg(cap);
        let mut conn = conn.clone();
        async move { cmd.query_async::<StreamRangeReply>(&mut conn).await }
    });
    let replies: Vec<StreamRangeReply> = futures_util::future::try_join_all(reads).await?;
    let mut actions = Vec::new();
    let mut truncated = false;
    for (p, reply) in (0..k.partitions()).zip(replies) {
        truncated |= reply.ids.len() >= cap;
        for entry in &reply.ids {
            let event = parse_event(p, &entry.id, &entry.map)?;
            if event.replica.is_some() {
                actions.push(event);
            }
        }
    }
    summarize(&actions, now_ms, first_minute, minutes, truncated)
}

fn summarize(
    actions: &[Event],
    now_ms: i64,
    first_minute: i64,
    minutes: i64,
    truncated: bool,
) -> Result<WatchdogActivity> {
    let mut per_minute = (0..minutes)
        .map(|i| {
            Ok(MinuteActivity {
                minute: ms_to_time(first_minute + i * 60_000)?,
                actions: BTreeMap::new(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut totals = BTreeMap::new();
    let mut lags = Vec::new();
    for e in actions {
        let slot = (e.at.timestamp_millis() - first_minute) / 60_000;
        if let Some(m) = usize::try_from(slot)
            .ok()
            .and_then(|i| per_minute.get_mut(i))
        {
            *m.actions.entry(e.reason.clone()).or_default() += 1;
        }
        *totals.entry(e.reason.clone()).or_default() += 1;
        if let Some(due) = e.timer_due_at {
            lags.push((e.at - due).num_milliseconds().max(0) as u64);
        }
    }
    Ok(WatchdogActivity {
        at: ms_to_time(now_ms)?,
        since: ms_to_time(first_minute)?,
        minutes: per_minute,
        totals,
        lag: lag_summary(lags),
        truncated,
    })
}

fn lag_summary(mut lags: Vec<u64>) -> LagSummary {
    lags.sort_unstable();
    let pick = |q: f64| -> Option<u64> {
        let last = lags.len().checked_sub(1)?;
        lags.get(((last as f64) * q).round() as usize).copied()
    };
    let mut buckets: Vec<LagBucket> = LAG_BUCKETS_MS
        .iter()
        .map(|le| LagBucket {
            le_ms: Some(*le),
            count: 0,
        })
        .chain(std::iter::once(LagBucket {
            le_ms: None,
            count: 0,
        }))
        .collect();
    for lag in &lags {
        let i = LAG_BUCKETS_MS
            .iter()
            .position(|le| lag <= le)
            .unwrap_or(LAG_BUCKETS_MS.len());
        buckets[i].count += 1;
    }
    LagSummary {
        count: lags.len() as u64,
        p50_ms: pick(0.5),
        p90_ms: pick(0.9),
        p99_ms: pick(0.99),
        max_ms: lags.last().copied(),
        buckets,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_buckets_and_percentiles() {
        let s = lag_summary(vec![5, 10, 11, 400, 60_000]);
        assert_eq!(s.count, 5);
        assert_eq!(s.p50_ms, Some(11));
        assert_eq!(s.max_ms, Some(60_000));
        let counts: Vec<u64> = s.buckets.iter().map(|b| b.count).collect();
        assert_eq!(counts, [2, 1, 0, 0, 0, 1, 0, 0, 0, 1]);
        assert_eq!(lag_summary(Vec::new()).p50_ms, None);
    }
}
