//! `unstuck executions`: executions across queues, newest first, filtered and paged.

use chrono::Utc;
use unstuck::{Execution, Filter, Ledger};

use super::page_limit;
use crate::cli::Common;
use crate::cli::connect::connect;
use crate::cli::output::print_json;
use crate::cli::table::{ago, opt, render};

/// Executions across queues, newest first, filtered and paged.
#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    common: Common,
    /// Only the executions of this queue.
    #[arg(long)]
    queue: Option<String>,
    /// Only this state: queued, dispatched, running, stuck, awaiting, succeeded, failed,
    /// cancelled, timed_out, dead.
    #[arg(long)]
    state: Option<String>,
    /// Only finished executions that stopped for this reason (heartbeat_lost,
    /// no_progress, looping, start_timeout, worker_lost, deadline_exceeded, failed, ...).
    #[arg(long)]
    stop_reason: Option<String>,
    /// Only executions whose current (or last) attempt is this worker's.
    #[arg(long)]
    worker: Option<String>,
    /// Most executions shown (1 to 1000).
    #[arg(long, default_value_t = 50, value_parser = page_limit)]
    limit: usize,
    /// Continue after an earlier page (its "more: --cursor ...").
    #[arg(long)]
    cursor: Option<String>,
}

impl Args {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let filter = Filter {
            queue: self.queue,
            state: self.state.map(|s| s.parse()).transpose()?,
            stop_reason: self.stop_reason,
            worker: self.worker,
        };
        let ledger = connect(&self.common).await?;
        let json = self.common.json;
        executions(&ledger, filter, self.cursor.as_deref(), self.limit, json).await
    }
}

/// `unstuck executions`.
async fn executions(
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
