//! The traces (docs/tracing.md), one binary: a local OTLP/HTTP receiver the tests start,
//! `unstuck serve` and `unstuck watchdog` as processes exporting to it, and the library
//! exporting from this process. Spans are parsed from the OTLP JSON and checked: names,
//! kinds, parents, links and attributes.
//!
//! Needs the `otel` feature (a default one); without it the binary holds no test.

#[path = "../support/mod.rs"]
mod support;

#[cfg(feature = "otel")]
mod daemon;
#[cfg(feature = "otel")]
mod otlp;
#[cfg(feature = "otel")]
mod tracing_daemons;
#[cfg(feature = "otel")]
mod tracing_library;
