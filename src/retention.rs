//! How long finished executions are kept: a time to live per terminal state and an
//! optional cap per queue, set for the whole ledger (`[ledger.retention]`) and per queue.
//! The watchdog removes what has expired, in small fenced batches (`lua/prune.lua`); a
//! pinned execution stays.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, format_duration};
use crate::state::State;
use crate::timings::MAX_DURATION;

/// Retention of finished executions. Unset fields: for the ledger, the built-in values of
/// [`Retention::defaults`]; for a queue, the ledger's. A duration of zero keeps that
/// state's executions for ever. Serialized in milliseconds (`null`: unset).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// How long succeeded executions are kept after they finished (default 24 h).
    #[serde(with = "crate::timings::millis")]
    #[cfg_attr(feature = "server", schema(value_type = Option<u64>))]
    pub succeeded: Option<Duration>,
    /// Cancelled ones (default 24 h).
    #[serde(with = "crate::timings::millis")]
    #[cfg_attr(feature = "server", schema(value_type = Option<u64>))]
    pub cancelled: Option<Duration>,
    /// Failed ones (default 7 days).
    #[serde(with = "crate::timings::millis")]
    #[cfg_attr(feature = "server", schema(value_type = Option<u64>))]
    pub failed: Option<Duration>,
    /// Dead ones: attempts used up (default 7 days).
    #[serde(with = "crate::timings::millis")]
    #[cfg_attr(feature = "server", schema(value_type = Option<u64>))]
    pub dead: Option<Duration>,
    /// Timed-out ones: deadline passed (default 7 days).
    #[serde(with = "crate::timings::millis")]
    #[cfg_attr(feature = "server", schema(value_type = Option<u64>))]
    pub timed_out: Option<Duration>,
    /// Most finished executions a queue keeps (pinned ones not counted): past it, the
    /// oldest go first, expired or not. `None` (or 0): no cap.
    pub max_finished: Option<u64>,
}

const DAY: Duration = Duration::from_secs(24 * 3600);

/// The field of a queue's settings hash, and of the prune script's arguments, each
/// terminal state's time to live is stored under; `keep_max` holds the cap.
pub(crate) const STORED: [(State, &str); 5] = [
    (State::Succeeded, "keep_succeeded"),
    (State::Cancelled, "keep_cancelled"),
    (State::Failed, "keep_failed"),
    (State::Dead, "keep_dead"),
    (State::TimedOut, "keep_timed_out"),
];

/// The field of the cap.
pub(crate) const STORED_MAX: &str = "keep_max";

impl Retention {
    /// The built-in retention: succeeded and cancelled 24 h; failed, dead and timed_out
    /// 7 days; no cap.
    pub fn defaults() -> Self {
        Self {
            succeeded: Some(DAY),
            cancelled: Some(DAY),
            failed: Some(7 * DAY),
            dead: Some(7 * DAY),
            timed_out: Some(7 * DAY),
            max_finished: None,
        }
    }

    /// The time to live of `state`'s executions as set here (`None`: unset).
    pub fn of(&self, state: State) -> Option<Duration> {
        match state {
            State::Succeeded => self.succeeded,
            State::Cancelled => self.cancelled,
            State::Failed => self.failed,
            State::Dead => self.dead,
            State::TimedOut => self.timed_out,
            _ => None,
        }
    }

    /// Each field set here, else `fallback`'s.
    pub fn or(&self, fallback: &Retention) -> Retention {
        Retention {
            succeeded: self.succeeded.or(fallback.succeeded),
            cancelled: self.cancelled.or(fallback.cancelled),
            failed: self.failed.or(fallback.failed),
            dead: self.dead.or(fallback.dead),
            timed_out: self.timed_out.or(fallback.timed_out),
            max_finished: self.max_finished.or(fallback.max_finished),
        }
    }

    /// # Errors
    /// [`Error::InvalidArgument`] for a duration over [`MAX_DURATION`], naming
    /// `retention.<state>`.
    pub fn validate(&self) -> Result<()> {
        for (state, _) in STORED {
            if let Some(d) = self.of(state)
                && d > MAX_DURATION
            {
                return Err(Error::InvalidArgument {
                    name: format!("retention.{}", state.as_str()),
                    value: format_duration(d),
                    expected: "a duration of at most 365 days (0s keeps for ever)".into(),
                });
            }
        }
        Ok(())
    }

    /// The stored form: field/value pairs of what is set, durations in milliseconds.
    pub(crate) fn to_pairs(&self) -> Vec<(&'static str, u64)> {
        let mut pairs: Vec<(&'static str, u64)> = STORED
            .iter()
            .filter_map(|(state, field)| {
                self.of(*state)
                    .map(|d| (*field, u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
            })
            .collect();
        if let Some(max) = self.max_finished {
            pairs.push((STORED_MAX, max));
        }
        pairs
    }

    /// Reads the stored form back; unknown fields are ignored.
    ///
    /// # Errors
    /// [`Error::Protocol`] for a value that is not a whole number.
    pub(crate) fn from_stored(stored: &std::collections::HashMap<String, String>) -> Result<Self> {
        let num = |field: &str| -> Result<Option<u64>> {
            stored
                .get(field)
                .map(|v| {
                    v.parse::<u64>().map_err(|_| Error::Protocol {
                        script: "queue settings",
                        detail: format!("{field} {v:?} is not a whole number"),
                    })
                })
                .transpose()
        };
        let ms = |field: &str| -> Result<Option<Duration>> {
            Ok(num(field)?.map(Duration::from_millis))
        };
        Ok(Retention {
            succeeded: ms("keep_succeeded")?,
            cancelled: ms("keep_cancelled")?,
            failed: ms("keep_failed")?,
            dead: ms("keep_dead")?,
            timed_out: ms("keep_timed_out")?,
            max_finished: num(STORED_MAX)?,
        })
    }

    /// The script arguments of a resolved retention, in [`STORED`] order then the cap:
    /// milliseconds, 0 for kept for ever (or no cap).
    pub(crate) fn to_args(&self) -> [u64; 6] {
        let ms = |d: Option<Duration>| d.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
        [
            ms(self.succeeded),
            ms(self.cancelled),
            ms(self.failed),
            ms(self.dead),
            ms(self.timed_out),
            self.max_finished.unwrap_or(0),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_form_round_trips_and_falls_back() {
        let queue = Retention {
            failed: Some(Duration::from_secs(60)),
            max_finished: Some(10),
            ..Retention::default()
        };
        let stored = queue
            .to_pairs()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_string()))
            .collect();
        assert_eq!(Retention::from_stored(&stored).unwrap(), queue);
        let resolved = queue.or(&Retention::defaults());
        assert_eq!(resolved.failed, Some(Duration::from_secs(60)));
        assert_eq!(resolved.succeeded, Some(DAY));
        assert_eq!(
            resolved.to_args(),
            [86_400_000, 86_400_000, 60_000, 604_800_000, 604_800_000, 10]
        );
        let too_long = Retention {
            dead: Some(MAX_DURATION + Duration::from_secs(1)),
            ..Retention::default()
        };
        assert!(too_long.validate().is_err());
    }
}
