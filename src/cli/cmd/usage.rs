//! `unstuck queues usage <queue>`: a queue's tokens and cost, by model and over its
//! rolling window with its window budget.

use unstuck::{Ledger, UsageTotals};

use crate::cli::output::print_json;
use crate::cli::table::{duration, render};

fn row(name: &str, t: &UsageTotals) -> Vec<String> {
    vec![
        name.to_owned(),
        t.input_tokens.to_string(),
        t.output_tokens.to_string(),
        t.cached_input_tokens.to_string(),
        t.cost.to_string(),
    ]
}

/// `unstuck queues usage <queue>`.
pub(crate) async fn queue_usage(ledger: &Ledger, queue: &str, json: bool) -> anyhow::Result<()> {
    let usage = ledger.queue_usage(queue).await?;
    if json {
        return print_json(&usage);
    }
    let window = duration(std::time::Duration::from_millis(usage.window_ms));
    let mut rows = vec![
        row("total", &usage.totals),
        row(&format!("last {window}"), &usage.window),
    ];
    rows.extend(
        usage
            .by_model
            .iter()
            .map(|(m, t)| row(&format!("model {}", if m.is_empty() { "-" } else { m }), t)),
    );
    let cost = format!("COST (micro-{})", usage.currency);
    out!(
        "{}",
        render(
            &["USAGE", "INPUT", "OUTPUT", "CACHED", cost.as_str()],
            &rows
        )
    );
    match usage.window_budget {
        Some(b) => {
            let limit = |v: Option<u64>| v.map_or("-".into(), |v| v.to_string());
            out!(
                "window budget: {} tokens, cost {} per {window}; spent {} tokens, cost {}",
                limit(b.tokens),
                limit(b.cost),
                usage.window.tokens(),
                usage.window.cost
            );
        }
        None => out!("no window budget"),
    }
    Ok(())
}
