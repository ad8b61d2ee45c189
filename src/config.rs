//! Library configuration: where Redis is, how keys are split, limits and default timings.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
pub use crate::timings::MAX_DURATION;

/// Where the ledger connects when neither `redis_url` nor `cluster_urls` is set.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/";
use crate::retention::Retention;
use crate::timings::Timings;

/// Configuration of a [`Ledger`](crate::Ledger). Every field has a default, so an empty
/// config file is valid; durations are written as `30s`, `5m`, `1h 30m`.
///
/// Its `Debug` output shows URLs with their password replaced by `***` ([`redact_url`]).
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerConfig {
    /// Redis URL of a standalone server. `None` with no `cluster_urls`: the local default,
    /// [`DEFAULT_REDIS_URL`]. Setting both this and `cluster_urls` is refused. Credentials
    /// go in the URL (`redis://:password@host/`, `redis://user:password@host/`); TLS is a
    /// `rediss://` URL.
    pub redis_url: Option<String>,
    /// Seed nodes of a Redis Cluster; when non-empty, unstuck runs in cluster mode.
    pub cluster_urls: Vec<String>,
    /// PEM file of the certificate authorities that may sign the server's certificate, for
    /// a `rediss://` Redis whose certificate the system's trusted roots do not cover (a
    /// private CA). Unset: the system's roots. Certificates are always checked: there is
    /// no setting that turns the check off.
    pub tls_ca_file: Option<PathBuf>,
    /// PEM file of the client certificate to present, for a Redis that asks clients for
    /// one (`tls-auth-clients yes`). Set together with `tls_client_key_file`.
    pub tls_client_cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    pub tls_client_key_file: Option<PathBuf>,
    /// Prefix of every key: separate tenants or environments sharing one Redis.
    pub namespace: String,
    /// Partitions the keyspace is split into. Queues map to one partition each; watchdog
    /// replicas share partitions. Changing it remaps queues, so pick it once.
    pub partitions: u16,
    /// How long to wait for a Redis reply. The redis crate's 500 ms default is too short for
    /// a server that is forking for a snapshot; every script here is bounded, so a long
    /// wait means trouble, not work.
    #[serde(with = "humantime_serde")]
    pub response_timeout: Duration,
    #[serde(with = "humantime_serde")]
    /// How long to wait for a connection to Redis to open.
    pub connection_timeout: Duration,
    /// Largest accepted payload, result or checkpoint, in bytes.
    pub max_payload_bytes: usize,
    /// Approximate length the partition event streams are capped at.
    pub events_max_len: usize,
    /// Transitions kept in each execution's history.
    pub history_len: usize,
    /// Capacity of a queue that has no settings of its own.
    pub default_capacity: u32,
    /// Timings of executions whose queue and enqueue call leave them unset. A config that
    /// sets some of them keeps the built-in values for the rest.
    #[serde(deserialize_with = "filled_defaults")]
    pub defaults: Timings,
    /// Refuse to start unless Redis `maxmemory-policy` is `noeviction`.
    pub require_noeviction: bool,
    /// How long finished executions are kept (and how many per queue); queues may set
    /// their own. A config that sets some keeps the built-in values for the rest.
    #[serde(deserialize_with = "filled_retention")]
    pub retention: Retention,
    /// The currency usage costs are counted in (an ISO 4217 code, three capital letters;
    /// costs are integer micro-units of it).
    pub currency: String,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            redis_url: None,
            cluster_urls: Vec::new(),
            tls_ca_file: None,
            tls_client_cert_file: None,
            tls_client_key_file: None,
            namespace: "unstuck".into(),
            partitions: 16,
            response_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(5),
            max_payload_bytes: 1024 * 1024,
            events_max_len: 10_000,
            history_len: 32,
            default_capacity: 100,
            defaults: Timings::global_defaults(),
            require_noeviction: true,
            retention: Retention::defaults(),
            currency: "USD".into(),
        }
    }
}

impl std::fmt::Debug for LedgerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured so that a new field cannot be left out (or print a secret unseen).
        let Self {
            redis_url,
            cluster_urls,
            tls_ca_file,
            tls_client_cert_file,
            tls_client_key_file,
            namespace,
            partitions,
            response_timeout,
            connection_timeout,
            max_payload_bytes,
            events_max_len,
            history_len,
            default_capacity,
            defaults,
            require_noeviction,
            retention,
            currency,
        } = self;
        let cluster_urls: Vec<String> = cluster_urls.iter().map(|u| redact_url(u)).collect();
        f.debug_struct("LedgerConfig")
            .field("redis_url", &redis_url.as_deref().map(redact_url))
            .field("cluster_urls", &cluster_urls)
            .field("tls_ca_file", tls_ca_file)
            .field("tls_client_cert_file", tls_client_cert_file)
            .field("tls_client_key_file", tls_client_key_file)
            .field("namespace", namespace)
            .field("partitions", partitions)
            .field("response_timeout", response_timeout)
            .field("connection_timeout", connection_timeout)
            .field("max_payload_bytes", max_payload_bytes)
            .field("events_max_len", events_max_len)
            .field("history_len", history_len)
            .field("currency", currency)
            .field("default_capacity", default_capacity)
            .field("defaults", defaults)
            .field("require_noeviction", require_noeviction)
            .field("retention", retention)
            .finish()
    }
}

/// `url` as it may be printed: the password, if any, replaced by `***`
/// (`redis://user:***@host:6379/`). Anything that does not look like a URL with
/// credentials comes back unchanged.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    // The last `@` of the authority ends the credentials (a password may contain `@`).
    let Some(at) = rest[..authority_len].rfind('@') else {
        return url.to_owned();
    };
    let user = match rest[..at].split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        // Only a user name (`redis://name@host`), which is no secret.
        None => return url.to_owned(),
    };
    format!("{}{user}{}", &url[..scheme_end], &rest[at..])
}

/// Whether `url` asks for TLS (`rediss://`, or `valkeys://` as the redis crate also takes).
pub(crate) fn is_tls_url(url: &str) -> bool {
    let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
    scheme.eq_ignore_ascii_case("rediss") || scheme.eq_ignore_ascii_case("valkeys")
}

fn filled_retention<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Retention, D::Error> {
    Ok(Retention::deserialize(d)?.or(&Retention::defaults()))
}

fn filled_defaults<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Timings, D::Error> {
    Ok(Timings::deserialize(d)?.or(&Timings::global_defaults()))
}

impl LedgerConfig {
    /// A default configuration pointing at `redis_url`.
    pub fn new(redis_url: impl Into<String>) -> Self {
        Self {
            redis_url: Some(redis_url.into()),
            ..Self::default()
        }
    }

    /// The standalone server's URL: `redis_url`, or [`DEFAULT_REDIS_URL`].
    pub fn server_url(&self) -> &str {
        self.redis_url.as_deref().unwrap_or(DEFAULT_REDIS_URL)
    }

    /// Where the ledger connects, as it may be printed: the server's URL or the cluster's
    /// seed URLs (comma-separated), passwords replaced by `***`.
    pub fn redacted_urls(&self) -> String {
        if self.cluster_urls.is_empty() {
            redact_url(self.server_url())
        } else {
            let urls: Vec<String> = self.cluster_urls.iter().map(|u| redact_url(u)).collect();
            urls.join(",")
        }
    }

    /// The URLs the ledger connects to.
    pub(crate) fn urls(&self) -> Vec<&str> {
        if self.cluster_urls.is_empty() {
            vec![self.server_url()]
        } else {
            self.cluster_urls.iter().map(String::as_str).collect()
        }
    }

    /// TLS files only with `rediss://` URLs (with a plain URL they would be ignored and the
    /// connection would go in the clear), and a client certificate only with its key.
    fn validate_tls(&self) -> Result<()> {
        let (key, urls) = match self.cluster_urls.is_empty() {
            true => ("redis_url", vec![self.server_url()]),
            false => ("cluster_urls", self.urls()),
        };
        // The redis crate's `#insecure` skips certificate checks; this build refuses it.
        if let Some(url) = urls.iter().find(|url| url.ends_with("#insecure")) {
            return Err(Error::InvalidConfig {
                key: format!("ledger.{key}"),
                value: redact_url(url),
                expected: "a URL without #insecure: certificates are always checked (a \
                           private CA goes in ledger.tls_ca_file)"
                    .into(),
            });
        }
        let plain = urls.into_iter().find(|url| !is_tls_url(url));
        let files = [
            ("tls_ca_file", &self.tls_ca_file),
            ("tls_client_cert_file", &self.tls_client_cert_file),
            ("tls_client_key_file", &self.tls_client_key_file),
        ];
        for (key, file) in files {
            if let (Some(path), Some(url)) = (file, plain) {
                return Err(Error::InvalidConfig {
                    key: format!("ledger.{key}"),
                    value: path.display().to_string(),
                    expected: format!(
                        "no TLS files with a plain URL ({}): use a rediss:// URL for TLS",
                        redact_url(url)
                    ),
                });
            }
        }
        let alone = match (&self.tls_client_cert_file, &self.tls_client_key_file) {
            (Some(cert), None) => Some(("tls_client_cert_file", cert)),
            (None, Some(key)) => Some(("tls_client_key_file", key)),
            _ => None,
        };
        match alone {
            Some((key, path)) => Err(Error::InvalidConfig {
                key: format!("ledger.{key}"),
                value: path.display().to_string(),
                expected: "tls_client_cert_file and tls_client_key_file set together".into(),
            }),
            None => Ok(()),
        }
    }

    /// Checks every value and combination.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the key (`ledger.<key>`) and the accepted form,
    /// or a contradiction (`redis_url` and `cluster_urls` both set).
    pub fn validate(&self) -> Result<()> {
        crate::keys::Keyspace::new(&self.namespace, self.partitions)?;
        let bad = |key: &str, value: String, expected: &str| {
            Err(Error::InvalidConfig {
                key: format!("ledger.{key}"),
                value,
                expected: expected.into(),
            })
        };
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return bad(
                "currency",
                self.currency.clone(),
                "an ISO 4217 code: three capital letters (USD, EUR)",
            );
        }
        if !self.cluster_urls.is_empty() && self.redis_url.is_some() {
            return bad(
                "cluster_urls",
                self.redacted_urls(),
                "either redis_url (one server) or cluster_urls (a Redis Cluster), not both",
            );
        }
        self.validate_tls()?;
        if self.response_timeout.is_zero() || self.response_timeout > Duration::from_secs(600) {
            return bad(
                "response_timeout",
                crate::error::format_duration(self.response_timeout),
                "a duration from 1ms to 10m",
            );
        }
        if self.connection_timeout.is_zero() || self.connection_timeout > Duration::from_secs(600) {
            return bad(
                "connection_timeout",
                crate::error::format_duration(self.connection_timeout),
                "a duration from 1ms to 10m",
            );
        }
        if self.max_payload_bytes == 0 || self.max_payload_bytes > 64 * 1024 * 1024 {
            return bad(
                "max_payload_bytes",
                self.max_payload_bytes.to_string(),
                "1 to 67108864 bytes",
            );
        }
        if self.events_max_len < 100 {
            return bad(
                "events_max_len",
                self.events_max_len.to_string(),
                "at least 100",
            );
        }
        if self.history_len == 0 || self.history_len > 1000 {
            return bad("history_len", self.history_len.to_string(), "1 to 1000");
        }
        if self.default_capacity == 0 {
            return bad(
                "default_capacity",
                self.default_capacity.to_string(),
                "at least 1",
            );
        }
        self.retention.validate().map_err(|e| match e {
            Error::InvalidArgument {
                name,
                value,
                expected,
            } => Error::InvalidConfig {
                key: format!("ledger.{name}"),
                value,
                expected,
            },
            other => other,
        })?;
        self.defaults.validate_as_defaults()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_and_nothing_else_changes() {
        for (url, shown) in [
            (
                "redis://:s3cret@10.0.0.1:6379/",
                "redis://:***@10.0.0.1:6379/",
            ),
            ("rediss://app:p@ss:w@rd@host/0", "rediss://app:***@host/0"),
            ("redis://app:s3cret@host", "redis://app:***@host"),
            (
                "redis://host:6379/?protocol=resp3",
                "redis://host:6379/?protocol=resp3",
            ),
            ("redis://app@host/", "redis://app@host/"),
            ("redis://host/a@b", "redis://host/a@b"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn debug_output_never_shows_a_password() {
        let config = LedgerConfig {
            cluster_urls: vec!["redis://u:clusterpw@h:7000/".into()],
            ..LedgerConfig::new("redis://:serverpw@h:6379/")
        };
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("clusterpw") && !shown.contains("serverpw"),
            "{shown}"
        );
        assert!(shown.contains("redis://:***@h:6379/"), "{shown}");
        let error = config.validate().unwrap_err().to_string();
        assert!(!error.contains("clusterpw"), "{error}");
    }

    #[test]
    fn tls_files_need_a_tls_url_and_come_in_pairs() {
        let key = |config: LedgerConfig| match config.validate() {
            Err(Error::InvalidConfig { key, .. }) => key,
            other => panic!("expected InvalidConfig, got {other:?}"),
        };
        let plain = LedgerConfig {
            tls_ca_file: Some("/ca.pem".into()),
            ..LedgerConfig::new("redis://:pw@h/")
        };
        assert_eq!(key(plain), "ledger.tls_ca_file");
        let lone_cert = LedgerConfig {
            tls_client_cert_file: Some("/client.pem".into()),
            ..LedgerConfig::new("rediss://h/")
        };
        assert_eq!(key(lone_cert), "ledger.tls_client_cert_file");
        let complete = LedgerConfig {
            tls_ca_file: Some("/ca.pem".into()),
            tls_client_cert_file: Some("/client.pem".into()),
            tls_client_key_file: Some("/client.key".into()),
            ..LedgerConfig::new("rediss://h/")
        };
        assert!(complete.validate().is_ok());
    }
}
