//! `unstuck show QUEUE ID`: one execution and its timeline.

use chrono::Utc;
use unstuck::Ledger;
use unstuck::timeline::TimelineSource;

use crate::cli::ExecutionRef;
use crate::cli::output::print_json;
use crate::cli::table::{ago, clip, duration, opt, render};

/// One execution: state, timings, heartbeat and progress, checkpoint, stop metadata, and
/// its timeline with reasons, thresholds and lag.
#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    on: ExecutionRef,
}

impl Args {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let ledger = self.on.connect().await?;
        show(&ledger, &self.on.queue, &self.on.id, self.on.common.json).await
    }
}

/// `unstuck show QUEUE ID`.
async fn show(ledger: &Ledger, queue: &str, id: &str, json: bool) -> anyhow::Result<()> {
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
            "timings         heartbeat {} · stuck threshold {} · start grace {} · no progress {} · deadline {} · attempts {} · backoff {}..{} · cancel grace {} · snoozes {} · max repeats {}",
            ms(Some(t.heartbeat_timeout)),
            ms(Some(t.stuck_threshold)),
            ms(Some(t.start_grace)),
            ms(t.no_progress_timeout),
            ms(t.deadline),
            t.max_attempts,
            ms(Some(t.backoff_base)),
            ms(Some(t.backoff_max)),
            ms(Some(t.cancel_grace)),
            t.max_snoozes,
            t.max_repeats.map_or("off".to_owned(), |n| n.to_string()),
        ),
    ];
    if let Some(f) = &e.fingerprint {
        let of = t
            .max_repeats
            .map_or(String::new(), |max| format!(" of max_repeats {max}"));
        lines.push(format!(
            "fingerprint     {} ({} in a row{of})",
            f.last, f.repeats
        ));
    }
    if let Some(at) = e.available_at {
        lines.push(format!("available       {at} ({})", ago(Some(at), now)));
    }
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
    if let Some(tp) = &e.traceparent {
        lines.push(format!("traceparent     {tp}"));
    }
    if let Some(u) = &e.usage {
        let models: Vec<&str> = u.by_model.keys().map(String::as_str).collect();
        lines.push(format!(
            "usage           {} in ({} cached), {} out, cost {} micros{}",
            u.totals.input_tokens,
            u.totals.cached_input_tokens,
            u.totals.output_tokens,
            u.totals.cost,
            match models.iter().any(|m| !m.is_empty()) {
                true => format!("; models {}", models.join(", ")),
                false => String::new(),
            }
        ));
    }
    if let Some(b) = &e.budget {
        let limit = |v: Option<u64>| v.map_or("-".into(), |v| v.to_string());
        lines.push(format!(
            "budget          {} tokens, cost {} (warning at {:.0} %)",
            limit(b.tokens),
            limit(b.cost),
            b.warning_share.unwrap_or(unstuck::DEFAULT_WARNING_SHARE) * 100.0
        ));
    }
    if let Some(reason) = &e.cancel_reason {
        lines.push(format!("cancel reason   {reason}"));
    }
    if e.false_alarms > 0 {
        lines.push(format!("false alarms    {}", e.false_alarms));
    }
    if e.snoozes > 0 {
        lines.push(format!(
            "snoozes         {} of {} allowed",
            e.snoozes, e.timings.max_snoozes
        ));
    }
    if let Some(w) = &e.wait {
        lines.push(format!(
            "waiting for     {} (since {}, until {}; then {})",
            w.reason,
            w.since.format("%Y-%m-%d %H:%M:%S UTC"),
            w.deadline_at.format("%Y-%m-%d %H:%M:%S UTC"),
            w.on_expiry
        ));
    }
    if let Some(at) = e.resumed_at {
        lines.push(format!(
            "resumed at      {}",
            at.format("%Y-%m-%d %H:%M:%S%.3f UTC")
        ));
    }
    if e.continuations > 0 {
        lines.push(format!(
            "continuations   {} (attempts that awaited or snoozed; not counted: {} of {} used)",
            e.continuations,
            e.attempt - e.continuations,
            e.timings.max_attempts
        ));
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
