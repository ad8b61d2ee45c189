//! The timings and limits that judge an execution: one table, everything else derived from it.
//!
//! `for_each_timing!` lists each timing once — its name, the field it is stored under in
//! Redis, its rule, its built-in default and its documentation. The structs
//! ([`Timings`], [`ResolvedTimings`]), their defaults, merge, validation, script arguments
//! and hash reads, and the enqueue setters are all generated from it; `lua/_lib.lua`
//! mirrors the stored field names in `TIMING_FIELDS` (a test checks they agree). Adding a
//! timing means adding one row here and using it where it is judged.
//!
//! A leaf module: it depends on nothing else of the crate but the error type.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub(crate) mod millis;

/// Longest duration accepted anywhere: anything longer is a mistake, not a plan.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Most attempts an execution may be given.
pub const MAX_ATTEMPTS: u32 = 1000;

/// Most snoozes an execution may be allowed (`max_snoozes`).
pub const MAX_SNOOZES: u32 = 10_000;

/// Longest run of identical fingerprints `max_repeats` may allow (at least 2).
pub const MAX_REPEATS: u32 = 10_000;

/// What a timing's value may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    /// A duration of at least 1 ms.
    Positive,
    /// A duration, zero allowed.
    AnyDuration,
    /// A duration where zero switches the rule off (resolved to `None`).
    ZeroIsOff,
    /// A count from 1 to [`MAX_ATTEMPTS`].
    Count,
    /// A limit from 0 (none allowed) to [`MAX_SNOOZES`].
    Limit,
    /// A run length from 2 to [`MAX_REPEATS`], or 0: the rule is off (resolved to `None`).
    Repeats,
}

/// The table: `name: given type => resolved type, "stored field", rule, default, serde
/// attribute;` with the timing's documentation before it. Rows are in the order the
/// scripts take the timings in ARGV.
macro_rules! for_each_timing {
    ($then:ident) => {
        $then! {
            /// Dispatched but not started (no first heartbeat) within this: the dispatch was
            /// lost.
            start_grace: Duration => Duration, "sg", Rule::Positive, 30_000, serde(with = "crate::timings::millis");
            /// Running with no heartbeat for this long: the execution goes stale.
            heartbeat_timeout: Duration => Duration, "ht", Rule::Positive, 30_000, serde(with = "crate::timings::millis");
            /// Heartbeats arrive but progress has not changed for this long: a wedged loop.
            /// Zero (the default) switches the rule off.
            no_progress_timeout: Duration => Option<Duration>, "npt", Rule::ZeroIsOff, 0, serde(with = "crate::timings::millis");
            /// Hard ceiling from enqueue to a terminal state, across attempts. Zero (the
            /// default): no deadline.
            deadline: Duration => Option<Duration>, "dl", Rule::ZeroIsOff, 0, serde(with = "crate::timings::millis");
            /// How long an execution stays stuck, counted from the moment it became stuck,
            /// before it is remediated.
            stuck_threshold: Duration => Duration, "stt", Rule::AnyDuration, 30_000, serde(with = "crate::timings::millis");
            /// Attempts in all, the first included (1 = never retry).
            max_attempts: u32 => u32, "ma", Rule::Count, 2;
            /// First retry delay; each further retry doubles it, up to `backoff_max`.
            backoff_base: Duration => Duration, "bb", Rule::AnyDuration, 1_000, serde(with = "crate::timings::millis");
            /// Longest retry delay.
            backoff_max: Duration => Duration, "bm", Rule::AnyDuration, 300_000, serde(with = "crate::timings::millis");
            /// How long a worker has to acknowledge a cancellation before it is forced.
            cancel_grace: Duration => Duration, "cg", Rule::AnyDuration, 30_000, serde(with = "crate::timings::millis");
            /// Snoozes allowed in all (`Ledger::snooze`: back to the queue until a given
            /// time, no attempt counted); past it a snooze is a retryable failure. 0: none.
            max_snoozes: u32 => u32, "msz", Rule::Limit, 50;
            /// Loop detection: the same heartbeat fingerprint this many times in a row and
            /// the execution is stuck `looping`, remediated like no progress. 2 to 10000;
            /// zero (the default) switches the rule off.
            max_repeats: u32 => Option<u32>, "mr", Rule::Repeats, 0;
        }
    };
}

#[cfg_attr(not(feature = "server"), allow(unused_imports))]
pub(crate) use for_each_timing;

/// A timing's value as given (a duration, or the attempt count), to and from its
/// stored form: whole milliseconds, or the count.
pub(crate) trait Given: Copy {
    fn stored(self) -> u64;
    fn from_stored(v: u64) -> Self;
    fn describe(self) -> String;
}

impl Given for Duration {
    fn stored(self) -> u64 {
        u64::try_from(self.as_millis()).unwrap_or(u64::MAX)
    }
    fn from_stored(v: u64) -> Self {
        Duration::from_millis(v)
    }
    fn describe(self) -> String {
        crate::error::format_duration(self)
    }
}

impl Given for u32 {
    fn stored(self) -> u64 {
        u64::from(self)
    }
    fn from_stored(v: u64) -> Self {
        u32::try_from(v).unwrap_or(u32::MAX)
    }
    fn describe(self) -> String {
        self.to_string()
    }
}

/// A resolved timing built from its stored value.
pub(crate) trait Resolved: Sized {
    fn resolve(stored: u64) -> Self;
}

impl Resolved for Duration {
    fn resolve(stored: u64) -> Self {
        Duration::from_millis(stored)
    }
}

impl Resolved for Option<Duration> {
    fn resolve(stored: u64) -> Self {
        (stored > 0).then(|| Duration::from_millis(stored))
    }
}

impl Resolved for Option<u32> {
    fn resolve(stored: u64) -> Self {
        (stored > 0).then(|| u32::try_from(stored).unwrap_or(u32::MAX))
    }
}

impl Resolved for u32 {
    fn resolve(stored: u64) -> Self {
        u32::try_from(stored).unwrap_or(u32::MAX)
    }
}

/// Checks one value against its rule.
fn check(name: &'static str, rule: Rule, value: impl Given) -> Result<()> {
    let stored = value.stored();
    let refuse = |expected: &str| {
        Err(Error::InvalidArgument {
            name: name.into(),
            value: value.describe(),
            expected: expected.into(),
        })
    };
    match rule {
        Rule::Count if !(1..=u64::from(MAX_ATTEMPTS)).contains(&stored) => {
            refuse("an integer from 1 to 1000")
        }
        Rule::Count => Ok(()),
        Rule::Limit if stored > u64::from(MAX_SNOOZES) => refuse("an integer from 0 to 10000"),
        Rule::Limit => Ok(()),
        Rule::Repeats if stored == 1 || stored > u64::from(MAX_REPEATS) => {
            refuse("0 (off) or an integer from 2 to 10000")
        }
        Rule::Repeats => Ok(()),
        _ if stored > MAX_DURATION.stored() => refuse("a duration of at most 365 days"),
        Rule::Positive if stored == 0 => refuse("a duration of at least 1ms"),
        _ => Ok(()),
    }
}

/// Whole milliseconds only: a sub-millisecond part would be silently dropped in Redis.
fn check_whole_ms(name: &'static str, d: Duration) -> Result<()> {
    if d.subsec_nanos().is_multiple_of(1_000_000) {
        return Ok(());
    }
    Err(Error::InvalidArgument {
        name: name.into(),
        value: crate::error::format_duration(d),
        expected: "a whole number of milliseconds".into(),
    })
}

/// Sub-millisecond checks apply to durations only.
trait WholeMs {
    fn whole_ms(self, name: &'static str) -> Result<()>;
}

impl WholeMs for Duration {
    fn whole_ms(self, name: &'static str) -> Result<()> {
        check_whole_ms(name, self)
    }
}

impl WholeMs for u32 {
    fn whole_ms(self, _name: &'static str) -> Result<()> {
        Ok(())
    }
}

macro_rules! define_timings {
    ($(
        $(#[doc = $doc:expr])*
        $name:ident: $given:ty => $resolved:ty, $field:literal, $rule:expr, $default:literal
        $(, $serde:meta)?;
    )*) => {
        /// The timings that judge an execution. Each is resolved execution → queue →
        /// global default when the execution is enqueued, and stored with it, so later
        /// changes to a queue's defaults never change work already in flight. `None`
        /// means "not set here".
        ///
        /// Serialized in milliseconds (`max_attempts` a count), `null` when unset.
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
        #[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
        #[serde(default, deny_unknown_fields)]
        pub struct Timings {
            $( $(#[doc = $doc])* $(#[$serde])?
               #[cfg_attr(feature = "server", schema(value_type = Option<u64>))]
               pub $name: Option<$given>, )*
        }

        /// The resolved timings an execution is judged by: milliseconds (`max_attempts` a
        /// count) when serialized, `null` for a rule that is off.
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
        pub struct ResolvedTimings {
            $( $(#[doc = $doc])* $(#[$serde])?
               #[cfg_attr(feature = "server", schema(value_type = Option<u64>))]
               pub $name: $resolved, )*
        }

        /// Names of the timings, in the order scripts take them.
        pub const NAMES: [&str; COUNT] = [$( stringify!($name), )*];

        /// Fields the timings are stored under (execution and queue-settings hashes), in
        /// [`NAMES`] order; `TIMING_FIELDS` in `lua/_lib.lua` mirrors it.
        pub(crate) const STORED_FIELDS: [&str; COUNT] = [$( $field, )*];

        /// The field each timing is stored under, by the timing's name.
        #[allow(non_upper_case_globals, dead_code)]
        pub(crate) mod stored_field {
            $( pub(crate) const $name: &str = $field; )*
        }

        impl Timings {
            /// The built-in global defaults.
            pub fn global_defaults() -> Self {
                Self { $( $name: Some(<$given as Given>::from_stored($default)), )* }
            }

            /// These timings, with the unset ones taken from `fallback`.
            pub fn or(&self, fallback: &Timings) -> Timings {
                Timings { $( $name: self.$name.or(fallback.$name), )* }
            }

            /// Checks the values that are set.
            ///
            /// # Errors
            /// [`Error::InvalidArgument`] naming the timing, its value and the accepted
            /// form.
            pub fn validate(&self) -> Result<()> {
                $(
                    if let Some(v) = self.$name {
                        v.whole_ms(stringify!($name))?;
                        check(stringify!($name), $rule, v)?;
                    }
                )*
                Ok(())
            }

            /// The values as script arguments, in [`NAMES`] order: milliseconds (or the
            /// count), `""` when unset.
            pub(crate) fn to_args(&self) -> [String; COUNT] {
                [$( self.$name.map(|v| v.stored().to_string()).unwrap_or_default(), )*]
            }

            /// The timings stored in a hash (a queue's settings); unset when absent.
            pub(crate) fn from_stored(fields: &HashMap<String, String>) -> Result<Self> {
                Ok(Timings {
                    $( $name: stored_value(fields, $field)?.map(<$given as Given>::from_stored), )*
                })
            }
        }

        impl ResolvedTimings {
            /// The timings stored in an execution hash; every one must be there, but for
            /// those added after executions were first stored ([`ADDED_LATER`]), which
            /// take their built-in default when absent.
            pub(crate) fn from_stored(fields: &HashMap<String, String>) -> Result<Self> {
                Ok(ResolvedTimings {
                    $( $name: <$resolved as Resolved>::resolve(
                        stored_value(fields, $field)?
                            .or_else(|| ADDED_LATER.contains(&$field).then_some($default))
                            .ok_or_else(|| missing($field))?,
                    ), )*
                })
            }
        }

        /// Chained setters for every timing, for an options type with a `timings` field.
        macro_rules! timing_setters {
            () => {
                $(
                    $(#[doc = $doc])*
                    pub fn $name(mut self, value: $given) -> Self {
                        self.timings.$name = Some(value);
                        self
                    }
                )*
            };
        }
        pub(crate) use timing_setters;
    };
}

/// Stored fields of timings added after executions were first stored: an execution
/// enqueued before has none (the watchdog's judgement does not read them either).
pub(crate) const ADDED_LATER: [&str; 2] = ["msz", "mr"];

/// How many timings there are.
pub const COUNT: usize = 11;

for_each_timing!(define_timings);

impl Timings {
    /// Checks that every value is set and valid, as global defaults must be.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first missing field (`ledger.defaults.<name>`).
    pub fn validate_as_defaults(&self) -> Result<()> {
        self.validate()
            .map_err(|e| e.in_section("ledger.defaults"))?;
        for (name, value) in NAMES.iter().zip(self.to_args()) {
            if value.is_empty() {
                return Err(Error::InvalidConfig {
                    key: format!("ledger.defaults.{name}"),
                    value: "unset".into(),
                    expected: "a value (global defaults must all be set)".into(),
                });
            }
        }
        Ok(())
    }
}

fn stored_value(fields: &HashMap<String, String>, field: &'static str) -> Result<Option<u64>> {
    match fields.get(field).map(String::as_str) {
        None | Some("") => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| Error::Protocol {
            script: "stored timings",
            detail: format!("field {field:?} is not a whole number: {v:?}"),
        }),
    }
}

fn missing(field: &'static str) -> Error {
    Error::Protocol {
        script: "execution hash",
        detail: format!("timing field {field:?} missing"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_every_timing_once() {
        let mut names = NAMES.to_vec();
        names.dedup();
        assert_eq!(names.len(), COUNT);
        let mut fields = STORED_FIELDS.to_vec();
        fields.sort_unstable();
        fields.dedup();
        assert_eq!(fields.len(), COUNT);
        assert!(Timings::global_defaults().validate_as_defaults().is_ok());
    }

    #[test]
    fn stored_values_round_trip() {
        let t = Timings::global_defaults();
        let stored: HashMap<String, String> = STORED_FIELDS
            .iter()
            .zip(t.to_args())
            .map(|(f, v)| ((*f).to_owned(), v))
            .collect();
        assert_eq!(Timings::from_stored(&stored).unwrap(), t);
        let resolved = ResolvedTimings::from_stored(&stored).unwrap();
        assert_eq!(resolved.deadline, None);
        assert_eq!(resolved.max_attempts, 2);
        assert_eq!(resolved.heartbeat_timeout, Duration::from_secs(30));
    }

    #[test]
    fn values_out_of_their_rule_are_refused() {
        let bad = [
            Timings {
                heartbeat_timeout: Some(Duration::ZERO),
                ..Timings::default()
            },
            Timings {
                max_attempts: Some(0),
                ..Timings::default()
            },
            Timings {
                deadline: Some(MAX_DURATION + Duration::from_secs(1)),
                ..Timings::default()
            },
            Timings {
                stuck_threshold: Some(Duration::from_micros(1500)),
                ..Timings::default()
            },
            Timings {
                max_repeats: Some(1),
                ..Timings::default()
            },
            Timings {
                max_repeats: Some(MAX_REPEATS + 1),
                ..Timings::default()
            },
        ];
        for t in bad {
            assert!(
                matches!(t.validate(), Err(Error::InvalidArgument { .. })),
                "{t:?}"
            );
        }
    }
}
