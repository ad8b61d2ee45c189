//! The operator's read commands: `queues`, `executions`, `show`, `events`
//! (`status` is in `status.rs`, `workers` in `workers.rs`). Tables for people; `--json` prints what the HTTP API would answer, with the
//! same field names.

use std::io::Write;

use chrono::Utc;
use serde::Serialize;
use unstuck::timeline::TimelineSource;
use unstuck::{Event, Execution, Filter, Ledger, QueueOverview};

use super::table::{ago, clip, duration, opt, render};

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    out!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `unstuck queues`.
pub(crate) async fn queues(ledger: &Ledger, json: bool) -> anyhow::Result<()> {
    let queues: Vec<QueueOverview> = ledger.queue_overviews().await?.into_iter().collect();
    if json {
        return print_json(&serde_json::json!({ "queues": queues }));
    }
    let rows: Vec<Vec<String>> = queues
        .iter()
        .map(|q| {
            vec![
                q.name.clone(),
                q.depth.to_string(),
                q.available.to_string(),
                format!("{}/{}", q.active, q.capacity),
                q.oldest_queued_age.map_or("-".into(), duration),
                q.partition.to_string(),
            ]
        })
        .collect();
    out!(
        "{}",
        render(
            &[
                "QUEUE",
                "DEPTH",
                "AVAILABLE",
                "SLOTS",
                "OLDEST",
                "PARTITION"
            ],
            &rows
        )
    );
    Ok(())
}

/// `unstuck executions`.
pub(crate) async fn executions(
    ledger: &Ledger,
    filter: Filter,
    cursor: Option<&str>,
    limit: usize,
    json: bool,
) -> anyhow::Result<()> {
    let page = ledger.find(&filter, cursor, limit).await?;
    let items: Vec<Execution> = page.items.into_iter().collect();
    if json {
        return print_json(&serde_json::json!({ "items": items, "next_cursor": page.next }));
    }
    let now = Utc::now();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|e| {
            let changed = e
                .finished_at
                .or(e.stuck_since)
                .or(e.last_heartbeat_at)
                .or(e.dispatched_at)
                .or(Some(e.created_at));
            vec![
                format!("{}/{}", e.queue, e.id),
                e.state.to_string(),
                e.attempt.to_string(),
                opt(e.worker.clone()),
                ago(changed, now),
                opt(e.stop.as_ref().map(|s| s.reason.clone())),
                opt(e.last_error.clone()),
            ]
        })
        .collect();
    out!(
        "{}",
        render(
            &[
                "EXECUTION",
                "STATE",
                "ATTEMPT",
                "WORKER",
                "CHANGED",
                "STOP",
                "LAST ERROR"
            ],
            &rows
        )
    );
    match page.next {
        Some(next) => eprintln!("more: --cursor {next}"),
        None if items.is_empty() => eprintln!("no executions match"),
        None => {}
    }
    Ok(())
}

/// `unstuck show QUEUE ID`.
pub(crate) async fn show(ledger: &Ledger, queue: &str, id: &str, json: bool) -> anyhow::Result<()> {
    let (execution, events, timeline) = ledger.timeline(queue, id).await?;
    if json {
        return print_json(&serde_json::json!({
            "execution": execution,
            "events": events,
            "timeline": timeline,
        }));
    }
    let now = Utc::now();
    let e = &execution;
    let t = &e.timings;
    let ms = |v: Option<std::time::Duration>| v.map_or("off".into(), duration);
    let mut lines = vec![
        format!("{}/{}  {}  attempt {}", e.queue, e.id, e.state, e.attempt),
        format!("worker          {}", opt(e.worker.clone())),
        format!(
            "created         {} ({})",
            e.created_at,
            ago(Some(e.created_at), now)
        ),
        format!("last heartbeat  {}", ago(e.last_heartbeat_at, now)),
        format!(
            "progress        {} (changed {})",
            opt(e.progress.clone()),
            ago(e.progress_changed_at, now)
        ),
        format!(
            "checkpoint      {}",
            e.checkpoint.as_ref().map_or("-".into(), |c| c.to_string())
        ),
        format!(
            "timings         heartbeat {} · stuck threshold {} · start grace {} · no progress {} · deadline {} · attempts {} · backoff {}..{} · cancel grace {}",
            ms(Some(t.heartbeat_timeout)),
            ms(Some(t.stuck_threshold)),
            ms(Some(t.start_grace)),
            ms(t.no_progress_timeout),
            ms(t.deadline),
            t.max_attempts,
            ms(Some(t.backoff_base)),
            ms(Some(t.backoff_max)),
            ms(Some(t.cancel_grace)),
        ),
    ];
    if e.pinned {
        lines.push("pinned          yes: retention never removes it".to_owned());
    }
    if let Some(s) = &e.stop {
        lines.push(format!(
            "stopped         {} (timeout {}, configured {}, fired {})",
            s.reason,
            ms(s.timeout),
            s.timeout_configured,
            s.timeout_fired
        ));
    }
    if let Some(err) = &e.last_error {
        lines.push(format!("last error      {err}"));
    }
    if let Some(of) = &e.retry_of {
        lines.push(format!("retry of        {}/{}", of.0, of.1));
    }
    if !e.retries.is_empty() {
        lines.push(format!("retried as      {}", e.retries.join(", ")));
    }
    if e.false_alarms > 0 {
        lines.push(format!("false alarms    {}", e.false_alarms));
    }
    out!("{}\n", lines.join("\n"));
    let rows: Vec<Vec<String>> = timeline
        .iter()
        .map(|ev| {
            vec![
                ev.at.format("%H:%M:%S%.3f").to_string(),
                ev.attempt.to_string(),
                format!(
                    "{} → {}",
                    ev.from.map_or("-".into(), |s| s.to_string()),
                    ev.to.map_or("-".into(), |s| s.to_string())
                ),
                ev.reason.clone(),
                ev.lag_ms.map_or("-".into(), |l| format!("{l}ms")),
                // Replica ids are long; `--json` and `unstuck status` have them whole.
                opt(ev.replica.as_deref().map(|r| clip(r, 18))),
                match ev.source {
                    TimelineSource::Event => ev.detail.clone(),
                    TimelineSource::History => HISTORY_MARK.to_owned(),
                },
            ]
        })
        .collect();
    out!(
        "{}",
        render(
            &[
                "AT",
                "ATTEMPT",
                "TRANSITION",
                "REASON",
                "LAG",
                "BY",
                "DETAIL"
            ],
            &rows
        )
    );
    let from_history = timeline
        .iter()
        .filter(|t| t.source == TimelineSource::History)
        .count();
    if from_history > 0 {
        eprintln!(
            "{from_history} of {} transition(s) from the execution's history: the capped event \
             stream no longer holds their events (no detail, lag or replica)",
            timeline.len()
        );
    }
    Ok(())
}

/// The detail shown for a transition whose event the capped stream trimmed.
const HISTORY_MARK: &str = "from history (event trimmed)";

fn event_line(e: &Event) -> String {
    let by = e
        .replica
        .as_ref()
        .map(|r| format!(" by {r}@{}", e.epoch.unwrap_or(0)))
        .unwrap_or_default();
    let lag = e
        .timer_due_at
        .map(|due| format!(" lag {}ms", (e.at - due).num_milliseconds()))
        .unwrap_or_default();
    let what = if e.execution_id.is_empty() {
        format!("partition {}", e.partition)
    } else {
        format!("{}/{} #{}", e.queue, e.execution_id, e.attempt)
    };
    format!(
        "{} {what} {} → {} {}{lag}{by}{}",
        e.at.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
        e.from.map_or("-".into(), |s| s.to_string()),
        e.to.map_or("-".into(), |s| s.to_string()),
        e.reason,
        if e.detail.is_empty() {
            String::new()
        } else {
            format!(": {}", e.detail)
        }
    )
}

/// `unstuck events`: the newest `limit`, then, with `follow`, every new one as it happens.
pub(crate) async fn events(
    ledger: &Ledger,
    queue: Option<&str>,
    follow: bool,
    limit: usize,
    json: bool,
) -> anyhow::Result<()> {
    let partitions = match queue {
        Some(q) => {
            unstuck::names::validate_queue(q)?;
            vec![ledger.partition_of(q)]
        }
        None => Vec::new(),
    };
    let wanted = |e: &Event| queue.is_none_or(|q| e.queue == q);
    // `false` once stdout is closed: its reader (`head`, `grep -m1`) has gone, so there is
    // nothing left to do; `println!` would panic there.
    let print = |e: Event| -> anyhow::Result<bool> {
        let line = if json {
            serde_json::to_string(&e)?
        } else {
            event_line(&e)
        };
        match writeln!(std::io::stdout(), "{line}") {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
            Err(err) => Err(err.into()),
        }
    };
    let mut follower = if follow {
        Some(ledger.follow_events(partitions.clone()).await?)
    } else {
        None
    };
    for e in ledger.recent_queue_events(queue, limit).await? {
        if !print(e)? {
            return Ok(());
        }
    }
    let Some(follower) = follower.as_mut() else {
        return Ok(());
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let signal = stop.clone();
    tokio::spawn(async move {
        super::wait_for_signal().await;
        signal.cancel();
    });
    loop {
        let batch = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            batch = follower.next_batch() => batch?,
        };
        for e in batch.into_iter().filter(|e| wanted(e)) {
            if !print(e)? {
                return Ok(());
            }
        }
    }
}
