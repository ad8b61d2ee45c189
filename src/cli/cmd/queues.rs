//! `unstuck queues`: depth, claimable now, slots in use / capacity, age of the oldest
//! queued, and whether it is paused; its subcommands `pause` and `resume` stop and start a
//! queue's claims.

use chrono::Utc;
use clap::Subcommand;
use unstuck::{Ledger, QueueOverview, QueuePauseChange};

use crate::cli::WithActions;
use crate::cli::connect::connect;
use crate::cli::output::print_json;
use crate::cli::table::{ago, duration, render};

/// `unstuck queues`: lists them, or does one of its [`Action`]s (its help line is on
/// its variant of `Command`).
pub(crate) type Args = WithActions<Action>;

#[derive(Subcommand)]
pub(crate) enum Action {
    /// Pause this queue: its claims take nothing (long polls keep waiting) until it is
    /// resumed; running work goes on and is still judged.
    Pause {
        #[arg(value_name = "QUEUE")]
        queue: String,
        /// Why (recorded in the event and shown with the queue).
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// Resume this paused queue: its waiting claims take its work at once.
    Resume {
        #[arg(value_name = "QUEUE")]
        queue: String,
        /// Why (recorded in the event).
        #[arg(long, value_name = "TEXT", default_value = "")]
        reason: String,
    },
    /// This queue's usage: tokens and cost since its first, by model, and over its
    /// rolling window (24 h, or its window budget's) against that budget.
    Usage {
        #[arg(value_name = "QUEUE")]
        queue: String,
    },
}

impl WithActions<Action> {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let json = self.common.json;
        if let Some(queue) = self.stray {
            anyhow::bail!(
                "say what to do with queue {queue}: `unstuck queues pause {queue} --reason \
                 TEXT`, `unstuck queues resume {queue}`, or `unstuck queues` to list them"
            );
        }
        let ledger = connect(&self.common).await?;
        match self.action {
            None => queues(&ledger, json).await,
            Some(Action::Pause { queue, reason }) => {
                let change = ledger.pause_queue(&queue, &operator(), &reason).await?;
                report(&change, json)
            }
            Some(Action::Resume { queue, reason }) => {
                let change = ledger.resume_queue(&queue, &operator(), &reason).await?;
                report(&change, json)
            }
            Some(Action::Usage { queue }) => super::usage::queue_usage(&ledger, &queue, json).await,
        }
    }
}

/// Who pauses from the command line: `cli:<OS user>`, or `cli` when the user is unknown.
fn operator() -> String {
    ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .map(|user| user.trim().to_owned())
        .find(|user| !user.is_empty() && !user.chars().any(char::is_control))
        .map_or_else(|| "cli".into(), |user| format!("cli:{user}"))
}

/// What a pause or resume did, in one sentence (or the HTTP API's JSON).
fn report(change: &QueuePauseChange, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(change);
    }
    let q = &change.queue;
    let who = |p: &unstuck::QueuePause| format!("by {} ({})", p.by, p.reason);
    match (&change.pause, change.paused, change.changed) {
        (Some(p), true, true) => out!("paused {q} {}: its claims take nothing", who(p)),
        (Some(p), true, false) => out!(
            "{q} was already paused {} {}: nothing changed",
            who(p),
            ago(Some(p.since), Utc::now())
        ),
        (Some(p), false, true) => out!(
            "resumed {q} (paused {} {}): its waiting claims take its work",
            who(p),
            ago(Some(p.since), Utc::now())
        ),
        _ => out!("{q} is not paused: nothing changed"),
    }
    Ok(())
}

/// `unstuck queues`.
async fn queues(ledger: &Ledger, json: bool) -> anyhow::Result<()> {
    let queues: Vec<QueueOverview> = ledger.queue_overviews().await?.into_iter().collect();
    if json {
        return print_json(&serde_json::json!({ "queues": queues }));
    }
    let now = Utc::now();
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
                q.pause.as_ref().map_or("-".into(), |p| {
                    format!("{} by {}: {}", ago(Some(p.since), now), p.by, p.reason)
                }),
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
                "PARTITION",
                "PAUSED"
            ],
            &rows
        )
    );
    Ok(())
}
