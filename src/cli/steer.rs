//! The operator's write commands: `enqueue`, `cancel`, `retry`, `pin`.

use clap::{Arg, ArgMatches, Args, FromArgMatches};
use serde_json::{Map, Value};
use unstuck::server::wire::TimingsIn;
use unstuck::timings::{NAMES, Timings};
use unstuck::{CancelOutcome, EnqueueOptions, Ledger};

/// One flag per timing (`--heartbeat-timeout 20s`, `--max-attempts 3`, ...), made from
/// the library's table of timings, so a new timing gets its flag without an edit here.
#[derive(Debug, Clone, Default)]
pub(crate) struct TimingFlags(Map<String, Value>);

impl TimingFlags {
    /// The timings the flags set.
    ///
    /// # Errors
    /// A value that is not a duration (or, for `--max-attempts`, a count), naming it.
    pub(crate) fn timings(&self) -> anyhow::Result<Timings> {
        // Each flag alone first, so the error names the flag that is wrong.
        for (name, value) in &self.0 {
            let one = Map::from_iter([(name.clone(), value.clone())]);
            if serde_json::from_value::<TimingsIn>(Value::Object(one)).is_err() {
                let expected = if name == "max_attempts" {
                    "a whole number of attempts (1 or more)"
                } else {
                    "a duration like 500ms, 30s, 5m or 1h"
                };
                anyhow::bail!("--{} {value}: expected {expected}", name.replace('_', "-"));
            }
        }
        let parsed: TimingsIn = serde_json::from_value(Value::Object(self.0.clone()))?;
        Ok(parsed.into())
    }
}

impl FromArgMatches for TimingFlags {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut map = Map::new();
        for name in NAMES {
            if let Some(v) = m.get_one::<String>(name) {
                // A count stays a number; durations parse as text ("30s") or milliseconds.
                let value = v
                    .parse::<u64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| Value::from(v.clone()));
                map.insert(name.to_owned(), value);
            }
        }
        Ok(TimingFlags(map))
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl Args for TimingFlags {
    fn augment_args(mut cmd: clap::Command) -> clap::Command {
        for name in NAMES {
            let flag: &'static str = Box::leak(name.replace('_', "-").into_boxed_str());
            let help = if name == "max_attempts" {
                "attempts in all, the first included".to_owned()
            } else {
                format!(
                    "the execution's {} (500ms, 30s, 5m, 1h)",
                    name.replace('_', " ")
                )
            };
            cmd = cmd.arg(
                Arg::new(name)
                    .long(flag)
                    .value_name(if name == "max_attempts" {
                        "N"
                    } else {
                        "DURATION"
                    })
                    .help(help),
            );
        }
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

/// `unstuck enqueue`.
pub(crate) async fn enqueue(
    ledger: &Ledger,
    queue: &str,
    payload: &str,
    id: Option<String>,
    delay: Option<std::time::Duration>,
    timings: &TimingFlags,
    json: bool,
) -> anyhow::Result<()> {
    let payload: Value = serde_json::from_str(payload).map_err(|e| {
        anyhow::anyhow!("--payload is not JSON ({e}); quote it: --payload '{{\"k\": 1}}'")
    })?;
    let opts = EnqueueOptions {
        id,
        timings: timings.timings()?,
        delay,
    };
    let out = ledger.enqueue(queue, &payload, opts).await?;
    if out.conflict {
        anyhow::bail!(
            "{}/{} exists with a different payload or timings: use another --id for other work",
            out.queue,
            out.id
        );
    }
    if json {
        out!("{}", serde_json::to_string_pretty(&out)?);
    } else if out.created {
        out!("enqueued {}/{} ({})", out.queue, out.id, out.state);
    } else {
        out!(
            "{}/{} already exists ({}, attempt {}): nothing written",
            out.queue,
            out.id,
            out.state,
            out.attempt
        );
    }
    Ok(())
}

/// `unstuck cancel`.
pub(crate) async fn cancel(
    ledger: &Ledger,
    queue: &str,
    id: &str,
    reason: &str,
    json: bool,
) -> anyhow::Result<()> {
    let outcome = ledger.cancel(queue, id, reason).await?;
    let (word, line) = match &outcome {
        CancelOutcome::Cancelled => ("cancelled", format!("cancelled {queue}/{id}")),
        CancelOutcome::Requested { already: false, .. } => (
            "requested",
            format!(
                "cancellation of {queue}/{id} requested: its worker stops at its next heartbeat"
            ),
        ),
        CancelOutcome::Requested { already: true, .. } => (
            "requested",
            format!("cancellation of {queue}/{id} was already requested"),
        ),
        CancelOutcome::AlreadyTerminal { state, stop_reason } => {
            anyhow::bail!("{queue}/{id} already ended {state} ({stop_reason}): nothing to cancel")
        }
    };
    if json {
        out!(
            "{}",
            serde_json::json!({"outcome": word, "queue": queue, "id": id})
        );
    } else {
        out!("{line}");
    }
    Ok(())
}

/// `unstuck retry`.
/// `unstuck pin` / `unstuck pin --off`.
pub(crate) async fn pin(
    ledger: &Ledger,
    queue: &str,
    id: &str,
    pin: bool,
    json: bool,
) -> anyhow::Result<()> {
    let state = if pin {
        ledger.pin(queue, id).await?
    } else {
        ledger.unpin(queue, id).await?
    };
    if json {
        out!(
            "{}",
            serde_json::json!({"queue": queue, "id": id, "pinned": pin, "state": state})
        );
    } else if pin {
        out!("pinned {queue}/{id} ({state}): retention never removes it");
    } else {
        out!("unpinned {queue}/{id} ({state}): retention applies again");
    }
    Ok(())
}

pub(crate) async fn retry(
    ledger: &Ledger,
    queue: &str,
    id: &str,
    new_id: Option<&str>,
    reason: &str,
    json: bool,
) -> anyhow::Result<()> {
    let out = ledger.retry(queue, id, new_id, reason).await?;
    if json {
        let mut v = serde_json::to_value(&out)?;
        v["retry_of"] = Value::from(format!("{queue}/{id}"));
        out!("{}", serde_json::to_string_pretty(&v)?);
    } else if out.created {
        out!(
            "{queue}/{id} runs again as {}/{} ({})",
            out.queue,
            out.id,
            out.state
        );
    } else {
        out!(
            "{}/{} was made before ({}): nothing written",
            out.queue,
            out.id,
            out.state
        );
    }
    Ok(())
}
