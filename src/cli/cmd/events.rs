//! `unstuck events`: transitions, one line each, the newest then (with `--follow`) live.

use std::io::Write;

use unstuck::{Event, Ledger};

use super::page_limit;
use crate::cli::Common;
use crate::cli::connect::connect;

/// Transitions, one line each: the newest ones, then (with --follow) as they happen.
#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    common: Common,
    /// Only the events of this queue.
    #[arg(long)]
    queue: Option<String>,
    /// Keep printing new events until Ctrl-C.
    #[arg(long)]
    follow: bool,
    /// How many of the newest to print first (1 to 1000).
    #[arg(long, default_value_t = 20, value_parser = page_limit)]
    limit: usize,
}

impl Args {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let ledger = connect(&self.common).await?;
        let queue = self.queue.as_deref();
        events(&ledger, queue, self.follow, self.limit, self.common.json).await
    }
}

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
    let what = if e.execution_id.is_empty() && e.queue.is_empty() {
        format!("partition {}", e.partition)
    } else if e.execution_id.is_empty() {
        format!("queue {}", e.queue)
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
async fn events(
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
    let stop = crate::cli::signal::shutdown_on_signal(|| {});
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
