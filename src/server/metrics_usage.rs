//! The usage metrics: tokens and cost by queue and model, counters that follow the
//! queues' running totals in Redis (`lua/_usage.lua`), sampled with the queue counts.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::metrics::Labels;
use crate::ledger::{Ledger, UsageTotals};

/// `unstuck_usage_*_total{queue, model}`.
pub(super) struct UsageMetrics {
    input: Family<Labels, Counter>,
    output: Family<Labels, Counter>,
    cached: Family<Labels, Counter>,
    cost: Family<Labels, Counter>,
}

impl UsageMetrics {
    pub(super) fn new(registry: &mut Registry) -> Self {
        let m = Self {
            input: Family::default(),
            output: Family::default(),
            cached: Family::default(),
            cost: Family::default(),
        };
        for (name, help, family) in [
            (
                "usage_input_tokens",
                "Input tokens reported, by queue and model",
                &m.input,
            ),
            (
                "usage_output_tokens",
                "Output tokens reported, by queue and model",
                &m.output,
            ),
            (
                "usage_cached_input_tokens",
                "Cached input tokens reported (a part of the input tokens), by queue and model",
                &m.cached,
            ),
            (
                "usage_cost_micros",
                "Cost reported in micro-units of the namespace's currency, by queue and model",
                &m.cost,
            ),
        ] {
            registry.register(name, help, family.clone());
        }
        m
    }

    /// Brings the counters up to the queues' totals in Redis (they only grow: a counter
    /// moves by the difference).
    pub(super) async fn sample(&self, ledger: &Ledger, queues: &[String]) {
        for queue in queues {
            let Ok(usage) = ledger.queue_usage(queue).await else {
                continue;
            };
            for (model, totals) in &usage.by_model {
                let labels = vec![("queue", queue.clone()), ("model", model.clone())];
                self.follow(&labels, totals);
            }
        }
    }

    fn follow(&self, labels: &Labels, t: &UsageTotals) {
        for (family, total) in [
            (&self.input, t.input_tokens),
            (&self.output, t.output_tokens),
            (&self.cached, t.cached_input_tokens),
            (&self.cost, t.cost),
        ] {
            let counter = family.get_or_create(labels);
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }
}
