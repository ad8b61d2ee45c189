//! Durations in every serde form of the library's types: integer milliseconds out (the
//! HTTP API's public contract, so the library, the CLI's `--json` and HTTP write one
//! shape), integer milliseconds or text such as `"500ms"`, `"30s"`, `"5m"` in (config
//! files keep their `30s`).
//!
//! Use as `#[serde(with = "crate::timings::millis")]` on a `Duration` or an
//! `Option<Duration>` (`null` for `None`).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Whole milliseconds of a duration; longer than `u64::MAX` ms saturates.
pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A duration as written: milliseconds, or text.
#[derive(Deserialize)]
#[serde(untagged)]
enum Written {
    Millis(u64),
    Text(String),
}

impl Written {
    fn duration<E: serde::de::Error>(self) -> Result<Duration, E> {
        match self {
            Written::Millis(ms) => Ok(Duration::from_millis(ms)),
            Written::Text(text) => humantime::parse_duration(text.trim()).map_err(|e| {
                E::custom(format!(
                    "{text:?} is not a duration ({e}); write integer milliseconds or text \
                     like \"500ms\", \"30s\", \"5m\""
                ))
            }),
        }
    }
}

/// What can be written as milliseconds.
pub(crate) trait Millis: Sized {
    fn write<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error>;
    fn read<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error>;
}

impl Millis for Duration {
    fn write<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(ms(*self))
    }
    fn read<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Written::deserialize(d)?.duration()
    }
}

impl Millis for Option<Duration> {
    fn write<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Some(d) => s.serialize_some(&ms(*d)),
            None => s.serialize_none(),
        }
    }
    fn read<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Option::<Written>::deserialize(d)?
            .map(Written::duration)
            .transpose()
    }
}

/// `serialize_with` half.
pub(crate) fn serialize<T: Millis, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    value.write(s)
}

/// `deserialize_with` half.
pub(crate) fn deserialize<'de, T: Millis, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    T::read(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Both {
        #[serde(with = "super")]
        one: Duration,
        #[serde(default, with = "super")]
        maybe: Option<Duration>,
    }

    #[test]
    fn writes_integer_milliseconds_and_reads_them_or_text() {
        let both = Both {
            one: Duration::from_millis(1500),
            maybe: None,
        };
        let text = serde_json::to_string(&both).unwrap();
        assert_eq!(text, r#"{"one":1500,"maybe":null}"#);
        assert_eq!(serde_json::from_str::<Both>(&text).unwrap(), both);
        let written: Both = serde_json::from_str(r#"{"one":"30s","maybe":"5m"}"#).unwrap();
        assert_eq!(written.one, Duration::from_secs(30));
        assert_eq!(written.maybe, Some(Duration::from_secs(300)));
        let omitted: Both = serde_json::from_str(r#"{"one":0}"#).unwrap();
        assert_eq!(omitted.maybe, None);
        let bad = serde_json::from_str::<Both>(r#"{"one":"soon"}"#).unwrap_err();
        assert!(bad.to_string().contains("integer milliseconds"), "{bad}");
    }
}
