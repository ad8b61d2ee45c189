//! The spans (feature `otel`): `send`, `receive`, `settle` and the watchdog's actions,
//! named and attributed by the OpenTelemetry messaging conventions.
//!
//! Nothing is made until an exporter is installed ([`super::init`]) or the embedding
//! program says its own global provider should be used ([`super::use_global_provider`]):
//! a single relaxed load decides, so the ledger pays nothing when tracing is off.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use opentelemetry::global::{self, BoxedSpan};
use opentelemetry::trace::{
    Link, Span, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer,
};
use opentelemetry::{Context, KeyValue};

use super::{Action, TraceParent};
use crate::error::Error;
use crate::ledger::Claim;

static ACTIVE: AtomicBool = AtomicBool::new(false);

pub(crate) fn set_active(on: bool) {
    ACTIVE.store(on, Ordering::Relaxed);
}

pub(crate) fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

const SYSTEM: &str = "unstuck";

fn context_of(tp: &TraceParent) -> SpanContext {
    SpanContext::new(
        TraceId::from_bytes(tp.trace_id()),
        SpanId::from_bytes(tp.span_id()),
        TraceFlags::new(tp.flags()),
        true,
        TraceState::default(),
    )
}

fn traceparent_of(cx: &SpanContext) -> Option<TraceParent> {
    if !cx.is_valid() {
        return None;
    }
    TraceParent::new(
        cx.trace_id().to_bytes(),
        cx.span_id().to_bytes(),
        cx.trace_flags().to_u8(),
    )
}

/// The attributes every span about one execution carries.
fn message(operation: &str, queue: &str, id: &str) -> Vec<KeyValue> {
    vec![
        KeyValue::new("messaging.system", SYSTEM),
        KeyValue::new("messaging.destination.name", queue.to_owned()),
        KeyValue::new("messaging.message.id", id.to_owned()),
        KeyValue::new("messaging.operation.type", operation.to_owned()),
    ]
}

fn links(tp: Option<&TraceParent>) -> Vec<Link> {
    tp.map(|tp| vec![Link::with_context(context_of(tp))])
        .unwrap_or_default()
}

fn fail_span(span: &mut BoxedSpan, error: &Error) {
    // `error.type`: the variant's name (`TokenMismatch`), low in cardinality.
    let debug = format!("{error:?}");
    let kind = debug
        .split(|c: char| !c.is_alphanumeric() && c != '_')
        .next()
        .unwrap_or_default()
        .to_owned();
    span.set_attribute(KeyValue::new("error.type", kind));
    span.set_status(Status::error(error.to_string()));
}

/// A `send {queue}` span (PRODUCER), a child of the enqueue's traceparent.
pub(crate) struct SendSpan(BoxedSpan);

/// Starts the send span of one item; returns it and the context to store on the
/// execution: the span's own (so what follows links to the send), or the caller's when
/// no span is recorded.
pub(crate) fn send(
    queue: &str,
    id: &str,
    parent: Option<TraceParent>,
) -> (SendSpan, Option<TraceParent>) {
    let cx = match parent {
        Some(tp) => Context::new().with_remote_span_context(context_of(&tp)),
        None => Context::new(),
    };
    let tracer = global::tracer(SYSTEM);
    let span = tracer
        .span_builder(format!("send {queue}"))
        .with_kind(SpanKind::Producer)
        .with_attributes(message("send", queue, id))
        .start_with_context(&tracer, &cx);
    let stored = if span.is_recording() {
        traceparent_of(span.span_context()).or(parent)
    } else {
        parent
    };
    (SendSpan(span), stored)
}

impl SendSpan {
    /// Ends it with what the enqueue did (`created`, `exists`, `conflict`) or its error.
    pub(crate) fn end(mut self, outcome: Result<&str, &Error>) {
        match outcome {
            Ok(what) => self
                .0
                .set_attribute(KeyValue::new("unstuck.enqueue.outcome", what.to_owned())),
            Err(e) => fail_span(&mut self.0, e),
        }
        self.0.end();
    }
}

/// One `receive {queue}` span (CLIENT) per claimed execution, linked to its stored context.
pub(crate) fn received(claims: &[Claim]) {
    let started = SystemTime::now();
    let tracer = global::tracer(SYSTEM);
    for claim in claims {
        let mut attributes = message("receive", claim.queue(), claim.id());
        attributes.push(KeyValue::new("unstuck.attempt", i64::from(claim.attempt())));
        tracer
            .span_builder(format!("receive {}", claim.queue()))
            .with_kind(SpanKind::Client)
            .with_start_time(started)
            .with_attributes(attributes)
            .with_links(links(claim.traceparent.as_ref()))
            .start_with_context(&tracer, &Context::new())
            .end();
    }
}

/// A `settle {queue}` span (CLIENT): `operation` is `complete`, `fail`, `cancel` or
/// `acknowledge_cancel`; `stored` the execution's traceparent, read by the caller only
/// when the span is recorded.
pub(crate) struct SettleSpan(BoxedSpan);

pub(crate) fn settle(queue: &str, id: &str, attempt: Option<u32>, operation: &str) -> SettleSpan {
    let mut attributes = message("settle", queue, id);
    attributes.push(KeyValue::new(
        "messaging.operation.name",
        operation.to_owned(),
    ));
    if let Some(attempt) = attempt {
        attributes.push(KeyValue::new("unstuck.attempt", i64::from(attempt)));
    }
    let tracer = global::tracer(SYSTEM);
    SettleSpan(
        tracer
            .span_builder(format!("settle {queue}"))
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(&tracer, &Context::new()),
    )
}

impl SettleSpan {
    pub(crate) fn is_recording(&self) -> bool {
        self.0.is_recording()
    }

    pub(crate) fn end(mut self, stored: Option<TraceParent>, error: Option<&Error>) {
        if let Some(tp) = stored {
            self.0.add_link(context_of(&tp), Vec::new());
        }
        if let Some(e) = error {
            fail_span(&mut self.0, e);
        }
        self.0.end();
    }
}

/// One span (INTERNAL) per watchdog action, linked to the execution's stored context.
pub(crate) fn watchdog_actions(replica: &str, epoch: &str, partition: u16, actions: &[Action]) {
    let tracer = global::tracer(SYSTEM);
    for a in actions {
        let mut attributes = message("settle", &a.queue, &a.id);
        attributes.truncate(3);
        if a.settles() {
            attributes.push(KeyValue::new("messaging.operation.type", "settle"));
        }
        attributes.extend([
            KeyValue::new("messaging.operation.name", a.verb()),
            KeyValue::new("unstuck.attempt", i64::from(a.attempt)),
            KeyValue::new("unstuck.state.from", a.from.clone()),
            KeyValue::new("unstuck.state.to", a.to.clone()),
            KeyValue::new("unstuck.reason", a.reason.clone()),
            KeyValue::new("unstuck.watchdog.replica", replica.to_owned()),
            KeyValue::new("unstuck.watchdog.epoch", epoch.to_owned()),
            KeyValue::new("unstuck.partition", i64::from(partition)),
        ]);
        if let Some(stop) = &a.stop_reason {
            attributes.push(KeyValue::new("unstuck.stop_reason", stop.clone()));
        }
        if !a.detail.is_empty() {
            attributes.push(KeyValue::new("unstuck.detail", a.detail.clone()));
        }
        tracer
            .span_builder(format!("{} {}", a.verb(), a.queue))
            .with_kind(SpanKind::Internal)
            .with_attributes(attributes)
            .with_links(links(a.traceparent.as_ref()))
            .start_with_context(&tracer, &Context::new())
            .end();
    }
}
