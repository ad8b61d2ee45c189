//! The JSON Schemas of values whose rules the library states as constants (name rules,
//! batch sizes, claim limits, page sizes, duration bounds, states), built from those
//! constants so the OpenAPI document cannot drift from what the server enforces.

use utoipa::IntoParams;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{
    ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::{KnownFormat, Ref, RefOr, Required};

use super::ms;
use crate::ledger::MAX_FINGERPRINT_BYTES;
use crate::ledger::{MAX_CLAIM_BATCH, MAX_ENQUEUE_BATCH, StopReason};
use crate::names::{MAX_NAME_LEN, NAME_PUNCTUATION};
use crate::timings::{MAX_ATTEMPTS, MAX_DURATION, MAX_REPEATS, MAX_SNOOZES, Rule};

/// The regular expression of a queue name, execution id or worker id, from the library's
/// character set (`-` last in the class, where it needs no escape).
pub(crate) fn name_pattern() -> String {
    let mut class: String = NAME_PUNCTUATION.chars().filter(|c| *c != '-').collect();
    if NAME_PUNCTUATION.contains('-') {
        class.push('-');
    }
    format!("^[A-Za-z0-9{class}]+$")
}

/// `what` starts with its article: "A queue name".
fn name(what: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_NAME_LEN))
        .pattern(Some(name_pattern()))
        .description(Some(format!(
            "{what}: 1 to {MAX_NAME_LEN} ASCII letters, digits and `{NAME_PUNCTUATION}`."
        )))
}

/// A queue name.
pub(crate) fn queue_name() -> Schema {
    name("A queue name").into()
}

/// An execution id.
pub(crate) fn execution_id() -> Schema {
    name("An execution id").into()
}

/// A resource name (resource leases).
pub(crate) fn resource_name() -> Schema {
    name("A resource name").into()
}

/// A worker id.
pub(crate) fn worker_id() -> Schema {
    name("A worker id").into()
}

/// A list of queue names.
pub(crate) fn queue_names() -> Schema {
    ArrayBuilder::new().items(name("A queue name")).into()
}

/// A heartbeat's fingerprint: 1 to [`MAX_FINGERPRINT_BYTES`] bytes.
pub(crate) fn fingerprint() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_FINGERPRINT_BYTES))
        .description(Some(format!(
            "A short text naming the last action and its result (a hash of them), 1 to \
             {MAX_FINGERPRINT_BYTES} bytes. The same one max_repeats times in a row: stuck \
             `looping`. A different one starts the count again; none leaves it alone."
        )))
        .into()
}

/// Any JSON value (a payload, a checkpoint, a result).
pub(crate) fn any_json() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::AnyValue)
        .description(Some("Any JSON value."))
        .into()
}

fn integer(min: u64, max: Option<u64>, description: String) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(min as f64))
        .maximum(max.map(|m| m as f64))
        .description(Some(description))
        .into()
}

/// A duration on input: integer milliseconds in `min_ms..=max_ms`, or text such as
/// `"500ms"`, `"30s"`, `"5m"` (whose bounds only the server checks).
fn duration_between(min_ms: u64, max_ms: u64, description: &str) -> Schema {
    let text = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .examples(["30s"])
        .description(Some("Text such as \"500ms\", \"30s\", \"5m\", \"7d\"."));
    OneOfBuilder::new()
        .item(integer(
            min_ms,
            Some(max_ms),
            "Integer milliseconds.".to_owned(),
        ))
        .item(text)
        .description(Some(description))
        .into()
}

/// Any duration the library accepts: 0 to 365 days.
pub(crate) fn duration() -> Schema {
    duration_between(0, ms(MAX_DURATION), "A duration (at most 365 days).")
}

/// A duration of more than zero: 1 ms to 365 days.
pub(crate) fn positive_duration() -> Schema {
    duration_between(
        1,
        ms(MAX_DURATION),
        "A duration of at least 1 ms (at most 365 days).",
    )
}

/// A timing's input schema, from the rule the library checks it by.
pub(crate) fn timing(rule: Rule) -> Schema {
    match rule {
        Rule::Count => integer(
            1,
            Some(u64::from(MAX_ATTEMPTS)),
            format!("A count from 1 to {MAX_ATTEMPTS}."),
        ),
        Rule::Limit => integer(
            0,
            Some(u64::from(MAX_SNOOZES)),
            format!("A count from 0 (none allowed) to {MAX_SNOOZES}."),
        ),
        Rule::Repeats => integer(
            0,
            Some(u64::from(MAX_REPEATS)),
            format!("0 (off, the default) or a run length from 2 to {MAX_REPEATS}."),
        ),
        Rule::Positive => positive_duration(),
        Rule::AnyDuration => duration(),
        Rule::ZeroIsOff => {
            duration_between(0, ms(MAX_DURATION), "A duration; 0 switches the rule off.")
        }
    }
}

/// `max` of a claim: 1 to [`MAX_CLAIM_BATCH`], default 1.
pub(crate) fn claim_max() -> Schema {
    integer(
        1,
        Some(MAX_CLAIM_BATCH as u64),
        format!("Most executions to claim: 1 to {MAX_CLAIM_BATCH} (default 1)."),
    )
}

/// `wait_ms` of a claim: 0 to [`crate::ledger::MAX_CLAIM_WAIT`], default 0.
pub(crate) fn claim_wait() -> Schema {
    let max = ms(crate::ledger::MAX_CLAIM_WAIT);
    duration_between(
        0,
        max,
        &format!("How long to wait for work when none is claimable: 0 to {max} ms (default 0)."),
    )
}

/// A snooze's `after_ms` or a failure's `retry_after_ms`: 1 ms to
/// [`crate::ledger::MAX_SNOOZE`].
pub(crate) fn snooze_delay() -> Schema {
    let max = ms(crate::ledger::MAX_SNOOZE);
    duration_between(
        1,
        max,
        &format!("A delay from now: 1 to {max} ms (7 days)."),
    )
}

/// The items of a batch enqueue: 1 to [`MAX_ENQUEUE_BATCH`].
pub(crate) fn enqueue_batch() -> Schema {
    ArrayBuilder::new()
        .items(Ref::from_schema_name("EnqueueIn"))
        .min_items(Some(1))
        .max_items(Some(MAX_ENQUEUE_BATCH))
        .description(Some(format!(
            "1 to {MAX_ENQUEUE_BATCH} executions; one bad item and nothing is written."
        )))
        .into()
}

/// The beats of a batched heartbeat: 1 to [`crate::ledger::MAX_HEARTBEAT_BATCH`].
pub(crate) fn heartbeat_batch() -> Schema {
    let max = crate::ledger::MAX_HEARTBEAT_BATCH;
    ArrayBuilder::new()
        .items(Ref::from_schema_name("HeartbeatIn"))
        .min_items(Some(1))
        .max_items(Some(max))
        .description(Some(format!(
            "1 to {max} beats, each what POST /v1/attempts/heartbeat takes; each is \
             answered in its place, a bad one failing only itself."
        )))
        .into()
}

/// A page size: 1 to [`crate::ledger::MAX_PAGE`].
fn page_limit(default: usize) -> Schema {
    let max = crate::ledger::MAX_PAGE;
    integer(
        1,
        Some(max as u64),
        format!("1 to {max} (default {default})."),
    )
}

/// The longest watchdog activity window, in minutes (24 hours).
pub(crate) fn max_activity_minutes() -> u64 {
    crate::watchdog::MAX_ACTIVITY_WINDOW.as_secs() / 60
}

/// `minutes` of the watchdog activity: 1 to [`max_activity_minutes`], default 30.
pub(crate) fn activity_minutes() -> Schema {
    let most = max_activity_minutes();
    integer(1, Some(most), format!("1 to {most} (default 30)."))
}

/// A stop reason's name (the ones this version writes).
pub(crate) fn stop_reason() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(
            StopReason::KNOWN.iter().map(|r| r.as_str().to_owned()),
        ))
        .into()
}

/// Types that stand for a schema of this module in `value_type = ..., inline`, so a field
/// keeps its own description and whether it is required (`schema_with` drops both).
macro_rules! schema_types {
    ($($(#[doc = $doc:expr])* $name:ident => $schema:expr;)*) => {$(
        $(#[doc = $doc])*
        pub(crate) struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                RefOr::T($schema)
            }
        }

        impl utoipa::ToSchema for $name {}
    )*};
}

schema_types! {
    /// A queue name.
    QueueName => queue_name();
    /// An execution id.
    ExecutionId => execution_id();
    /// A worker id.
    WorkerId => worker_id();
    /// Queue names.
    QueueNames => queue_names();
    /// Any JSON value.
    AnyJson => any_json();
    /// A heartbeat's fingerprint.
    FingerprintText => fingerprint();
    /// A stop reason's name.
    StopReasonName => stop_reason();
    /// `limit` of an execution list.
    ListLimit => page_limit(50);
    /// `limit` of the newest events.
    RecentLimit => page_limit(100);
    /// `minutes` of the watchdog activity.
    ActivityMinutes => activity_minutes();
    /// `max` of a claim.
    ClaimMax => claim_max();
    /// `wait_ms` of a claim.
    ClaimWait => claim_wait();
    /// The items of a batch enqueue.
    EnqueueBatch => enqueue_batch();
    /// A snooze's or a retry's delay from now.
    SnoozeDelay => snooze_delay();
    /// The beats of a batched heartbeat.
    HeartbeatBatch => heartbeat_batch();
}

/// A problem document in a reply's body (the `Problem` schema), as a batch answers a
/// refused item in its place.
pub(crate) struct ProblemDocument;

impl utoipa::PartialSchema for ProblemDocument {
    fn schema() -> RefOr<Schema> {
        RefOr::Ref(Ref::from_schema_name(super::problem::PROBLEM))
    }
}

impl utoipa::ToSchema for ProblemDocument {}

pub(crate) fn path_parameter(name: &str, schema: Schema, description: &str) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(RefOr::T(schema)))
        .build()
}

/// `{queue}` in a path.
pub(crate) struct QueuePath;

impl IntoParams for QueuePath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![path_parameter("queue", queue_name(), "The queue.")]
    }
}

/// `{queue}` and `{id}` in a path: one execution.
pub(crate) struct ExecutionPath;

impl IntoParams for ExecutionPath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            path_parameter("queue", queue_name(), "The execution's queue."),
            path_parameter("id", execution_id(), "The execution's id."),
        ]
    }
}

/// The W3C `traceparent` header of an enqueue (docs/tracing.md).
pub(crate) struct TraceParentHeader;

impl IntoParams for TraceParentHeader {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            ParameterBuilder::new()
                .name("traceparent")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "W3C Trace Context of the caller, stored on the execution and returned with \
                     its claims; a malformed one is ignored (with a warning in the log).",
                ))
                .schema(Some(RefOr::T(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some("^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}"))
                        .into(),
                )))
                .build(),
        ]
    }
}

/// The `Idempotency-Key` header of an enqueue: the execution id.
pub(crate) struct IdempotencyKey;

impl IntoParams for IdempotencyKey {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            ParameterBuilder::new()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "The execution id, when the body has none (both given: they must agree).",
                ))
                .schema(Some(RefOr::T(execution_id())))
                .build(),
        ]
    }
}

/// `{worker}` in a path.
pub(crate) struct WorkerPath;

impl IntoParams for WorkerPath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![path_parameter(
            "worker",
            worker_id(),
            "The worker id it registered under.",
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names;

    /// The pattern's character class holds exactly the characters the library accepts.
    #[test]
    fn name_pattern_matches_the_naming_rules() {
        let pattern = name_pattern();
        let class = pattern
            .strip_prefix("^[A-Za-z0-9")
            .and_then(|p| p.strip_suffix("]+$"))
            .expect("a single character class");
        for c in (0u8..128).map(char::from) {
            let in_pattern = c.is_ascii_alphanumeric() || class.contains(c);
            let accepted = names::validate_queue(&c.to_string()).is_ok();
            assert_eq!(in_pattern, accepted, "{c:?}");
        }
    }
}
