//! Trace context: the W3C `traceparent` an execution carries, and (feature `otel`) the
//! spans of its life exported over OTLP/HTTP (docs/tracing.md).
//!
//! The traceparent is stored and handed to every claim whatever the features; the spans
//! — `send {queue}` at enqueue, `receive {queue}` at claim, `settle {queue}` at
//! complete/fail/cancel, one per watchdog action — are made only with the feature and
//! once an exporter is installed ([`init_from_env`]). The ledger calls the functions
//! below, which compile to nothing without the feature.

mod traceparent;

#[cfg(feature = "otel")]
mod export;
#[cfg(feature = "otel")]
mod spans;

#[cfg(feature = "otel")]
pub use export::{OtlpConfig, Tracing, init, init_from_env};
pub use traceparent::TraceParent;

use std::future::Future;

use crate::error::Result;
use crate::ledger::{Claim, Enqueued, Ledger};

/// Makes unstuck's spans through the global tracer provider the program installed itself
/// (instead of [`init`]).
#[cfg(feature = "otel")]
pub fn use_global_provider() {
    spans::set_active(true);
}

/// True when spans are made (the watchdog then asks its scripts what they did).
pub(crate) fn tracing_on() -> bool {
    #[cfg(feature = "otel")]
    return spans::active();
    #[cfg(not(feature = "otel"))]
    false
}

/// The send spans of one enqueue call, one per item.
pub(crate) struct Sends {
    #[cfg(feature = "otel")]
    spans: Vec<spans::SendSpan>,
}

impl Sends {
    /// Starts a send span per `(id, traceparent)` item and replaces each traceparent with
    /// the context to store (the send span's, when one is recorded).
    pub(crate) fn start<'a>(
        queue: &str,
        items: impl Iterator<Item = (&'a str, &'a mut Option<TraceParent>)>,
    ) -> Self {
        #[cfg(feature = "otel")]
        if spans::active() {
            let spans = items
                .map(|(id, tp)| {
                    let (span, stored) = spans::send(queue, id, *tp);
                    *tp = stored;
                    span
                })
                .collect();
            return Self { spans };
        }
        let _ = (queue, items);
        Self {
            #[cfg(feature = "otel")]
            spans: Vec::new(),
        }
    }

    /// Ends them with what each item came to.
    pub(crate) fn end(self, result: &Result<Vec<Enqueued>>) {
        #[cfg(feature = "otel")]
        for (i, span) in self.spans.into_iter().enumerate() {
            span.end(match result {
                Ok(items) => Ok(match items.get(i) {
                    Some(e) if e.created => "created",
                    Some(e) if e.conflict => "conflict",
                    _ => "exists",
                }),
                Err(e) => Err(e),
            });
        }
        let _ = result;
    }
}

/// The receive spans of claims just made.
pub(crate) fn received(claims: &[Claim]) {
    #[cfg(feature = "otel")]
    if spans::active() && !claims.is_empty() {
        spans::received(claims);
    }
    let _ = claims;
}

/// Runs `work` (a settlement of `queue`/`id`) inside a `settle {queue}` span.
pub(crate) async fn settle<T>(
    ledger: &Ledger,
    (queue, id, attempt): (&str, &str, Option<u32>),
    operation: &'static str,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    #[cfg(feature = "otel")]
    if spans::active() {
        let span = spans::settle(queue, id, attempt, operation);
        let result = work.await;
        let stored = if span.is_recording() {
            stored_traceparent(ledger, queue, id).await
        } else {
            None
        };
        span.end(stored, result.as_ref().err());
        return result;
    }
    let _ = (ledger, queue, id, attempt, operation);
    work.await
}

/// The traceparent stored on an execution (one read, made only for a recorded span).
#[cfg(feature = "otel")]
async fn stored_traceparent(ledger: &Ledger, queue: &str, id: &str) -> Option<TraceParent> {
    let text: Option<String> = redis::cmd("HGET")
        .arg(ledger.keys.execution(queue, id))
        .arg(crate::fields::TRACEPARENT)
        .query_async(&mut ledger.conn.clone())
        .await
        .ok()?;
    TraceParent::parse(&text?)
}

/// What one watchdog action did, as the round script reports it when tracing:
/// `queue|id|attempt|from|to|reason|stop_reason|traceparent|detail`.
#[cfg_attr(not(feature = "otel"), allow(dead_code))]
pub(crate) struct Action {
    pub(crate) queue: String,
    pub(crate) id: String,
    pub(crate) attempt: u32,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) reason: String,
    pub(crate) stop_reason: Option<String>,
    pub(crate) traceparent: Option<TraceParent>,
    pub(crate) detail: String,
}

#[cfg_attr(not(feature = "otel"), allow(dead_code))]
impl Action {
    fn parse(text: &str) -> Option<Self> {
        let mut f = text.splitn(9, '|');
        let mut next = || f.next().map(str::to_owned);
        let (queue, id, attempt) = (next()?, next()?, next()?);
        let (from, to, reason, stop, tp) = (next()?, next()?, next()?, next()?, next()?);
        Some(Self {
            queue,
            id,
            attempt: attempt.parse().ok()?,
            from,
            to,
            reason,
            stop_reason: (!stop.is_empty()).then_some(stop),
            traceparent: TraceParent::parse(&tp),
            detail: next().unwrap_or_default(),
        })
    }

    /// The span's verb: what the watchdog did to the execution.
    pub(crate) fn verb(&self) -> &'static str {
        match (self.to.as_str(), self.reason.as_str()) {
            (_, "terminate_requested") => "terminate",
            ("stuck", _) => "stuck",
            ("queued", "wait_expired") => "requeue",
            ("queued", _) => "retry",
            ("dead", _) => "dead",
            ("timed_out", _) => "timed_out",
            ("cancelled", _) => "cancel",
            ("failed", _) => "fail",
            // An index entry whose execution hash is damaged (`unjudgeable`).
            _ => "judge",
        }
    }

    /// True when the action ends the attempt (the message is settled).
    pub(crate) fn settles(&self) -> bool {
        !matches!(self.verb(), "stuck" | "terminate" | "judge")
    }
}

/// One span per watchdog action of `reply` (the round's action list).
pub(crate) fn watchdog_actions<'a>(
    replica: &str,
    epoch: &str,
    partition: u16,
    reply: impl Iterator<Item = &'a str>,
) {
    #[cfg(feature = "otel")]
    if spans::active() {
        let actions: Vec<Action> = reply.filter_map(Action::parse).collect();
        spans::watchdog_actions(replica, epoch, partition, &actions);
        return;
    }
    let _ = (replica, epoch, partition, reply);
}

#[cfg(test)]
mod tests {
    use super::Action;

    #[test]
    fn an_action_line_parses_with_a_detail_that_holds_bars() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let line = format!("q|e1|2|stuck|dead|attempts_exhausted|heartbeat_lost|{tp}|a|b");
        let a = Action::parse(&line).expect("parses");
        assert_eq!((a.queue.as_str(), a.id.as_str(), a.attempt), ("q", "e1", 2));
        assert_eq!(a.stop_reason.as_deref(), Some("heartbeat_lost"));
        assert_eq!(a.traceparent.map(|t| t.to_string()).as_deref(), Some(tp));
        assert_eq!(a.detail, "a|b");
        assert_eq!((a.verb(), a.settles()), ("dead", true));
    }

    #[test]
    fn verbs_name_what_the_watchdog_did() {
        let verb = |to: &str, reason: &str| {
            let a = Action::parse(&format!("q|e|1|running|{to}|{reason}|||")).expect("parses");
            assert!(a.traceparent.is_none() && a.stop_reason.is_none());
            (a.verb(), a.settles())
        };
        assert_eq!(verb("stuck", "heartbeat_lost"), ("stuck", false));
        assert_eq!(verb("queued", "start_timeout"), ("retry", true));
        assert_eq!(verb("queued", "wait_expired"), ("requeue", true));
        assert_eq!(verb("running", "terminate_requested"), ("terminate", false));
        assert_eq!(verb("timed_out", "deadline_exceeded"), ("timed_out", true));
        assert_eq!(verb("cancelled", "cancel_forced"), ("cancel", true));
        assert!(Action::parse("q|e|not-a-number|a|b|c|||").is_none());
    }
}
