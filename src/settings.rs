//! The daemon's settings: a TOML file plus `UNSTUCK_*` environment overrides.
//!
//! ```toml
//! [ledger]
//! redis_url = "redis://127.0.0.1:6379/"
//! namespace = "prod"
//! [ledger.defaults]
//! heartbeat_timeout = "30s"
//! [watchdog]
//! lease_ttl = "3s"
//! ```
//! Environment variables override the file with `__` between levels:
//! `UNSTUCK_LEDGER__NAMESPACE=prod`, `UNSTUCK_WATCHDOG__LEASE_TTL=5s`,
//! `UNSTUCK_LEDGER__DEFAULTS__HEARTBEAT_TIMEOUT=10s`.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::LedgerConfig;
use crate::error::{Error, Result};
use crate::watchdog::WatchdogConfig;

/// Everything `unstuck watchdog` and `unstuck serve` read at start-up.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The `[ledger]` section.
    pub ledger: LedgerConfig,
    /// The `[watchdog]` section.
    pub watchdog: WatchdogConfig,
    /// The `[server]` section (`unstuck serve`).
    #[cfg(feature = "server")]
    pub server: crate::server::ServerConfig,
}

/// Sections that environment variables may override.
const ENV_SECTIONS: [&str; 3] = ["UNSTUCK_LEDGER__", "UNSTUCK_WATCHDOG__", "UNSTUCK_SERVER__"];

impl Settings {
    /// Loads `file` (when given; it must exist) and the process environment, then
    /// validates the result.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the key, the value and the accepted form.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        Self::load_from(file, std::env::vars())
    }

    /// Like [`load`](Self::load) with the environment given explicitly (for tests).
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            if !path.exists() {
                return Err(Error::InvalidConfig {
                    key: "--config".into(),
                    value: path.display().to_string(),
                    expected: "the path of an existing TOML file".into(),
                });
            }
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
        }
        // Only our two sections: other UNSTUCK_* variables (UNSTUCK_REDIS_SERVER, ...) are
        // not settings and must not trip the unknown-key check.
        let overrides: HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| ENV_SECTIONS.iter().any(|s| k.starts_with(s)))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("UNSTUCK")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("ledger.cluster_urls")
                .with_list_parse_key("server.tokens")
                .source(Some(overrides)),
        );
        let settings: Settings = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| Error::Settings(e.to_string()))?;
        settings.ledger.validate()?;
        settings.watchdog.validate()?;
        #[cfg(feature = "server")]
        settings.server.validate()?;
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_without_file_or_env() {
        let s = Settings::load_from(None, env(&[("UNSTUCK_REDIS_SERVER", "/x")])).unwrap();
        assert_eq!(s.ledger.partitions, 16);
        assert_eq!(s.watchdog.lease_ttl, std::time::Duration::from_secs(3));
    }

    #[test]
    fn environment_overrides_nested_keys() {
        let s = Settings::load_from(
            None,
            env(&[
                ("UNSTUCK_LEDGER__NAMESPACE", "prod"),
                ("UNSTUCK_LEDGER__PARTITIONS", "32"),
                ("UNSTUCK_LEDGER__DEFAULTS__HEARTBEAT_TIMEOUT", "10s"),
                ("UNSTUCK_WATCHDOG__LEASE_TTL", "5s"),
            ]),
        )
        .unwrap();
        assert_eq!(s.ledger.namespace, "prod");
        assert_eq!(s.ledger.partitions, 32);
        assert_eq!(
            s.ledger.defaults.heartbeat_timeout,
            Some(std::time::Duration::from_secs(10))
        );
        assert_eq!(s.watchdog.lease_ttl, std::time::Duration::from_secs(5));
    }

    #[test]
    fn retention_is_set_per_state_and_keeps_the_other_defaults() {
        let s = Settings::load_from(
            None,
            env(&[
                ("UNSTUCK_LEDGER__RETENTION__SUCCEEDED", "1m"),
                ("UNSTUCK_LEDGER__RETENTION__MAX_FINISHED", "1000"),
            ]),
        )
        .unwrap();
        let r = &s.ledger.retention;
        assert_eq!(r.succeeded, Some(std::time::Duration::from_secs(60)));
        assert_eq!(r.max_finished, Some(1000));
        assert_eq!(
            r.failed,
            Some(std::time::Duration::from_secs(7 * 24 * 3600))
        );
        let err = Settings::load_from(None, env(&[("UNSTUCK_LEDGER__RETENTION__DEAD", "400days")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("ledger.retention.dead"), "{err}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = Settings::load_from(None, env(&[("UNSTUCK_WATCHDOG__LEASE_TTL", "soon")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("lease_ttl"), "{err}");
        let err = Settings::load_from(None, env(&[("UNSTUCK_WATCHDOG__LEASE_TTL", "1ms")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("watchdog.lease_ttl") && err.contains("300ms"),
            "{err}"
        );
        let err = Settings::load_from(None, env(&[("UNSTUCK_LEDGER__PARTITIONS", "0")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("partitions"), "{err}");
        let err = Settings::load_from(None, env(&[("UNSTUCK_WATCHDOG__LEASE_TTLL", "3s")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("lease_ttll"), "{err}");
    }

    #[test]
    fn file_is_read_and_must_exist() {
        let dir = std::env::temp_dir().join(format!("unstuck-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("unstuck.toml");
        std::fs::write(
            &path,
            "[ledger]\nnamespace = \"filens\"\n[watchdog]\nbatch = 50\n",
        )
        .unwrap();
        let s = Settings::load_from(Some(&path), env(&[])).unwrap();
        assert_eq!(s.ledger.namespace, "filens");
        assert_eq!(s.watchdog.batch, 50);
        assert!(Settings::load_from(Some(&dir.join("missing.toml")), env(&[])).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tiers_and_hooks_are_read_and_checked() {
        let dir = std::env::temp_dir().join(format!("unstuck-hooks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("unstuck.toml");
        let file = |hooks: &str| {
            format!(
                "[watchdog]\nexpected_worker_version = \"2.0\"\n[watchdog.tiers]\nenabled = true\n\
                 cooldown_kill = \"2m\"\n[watchdog.tiers.expected_versions]\nagents = \"2.1\"\n{hooks}"
            )
        };
        let hooks = "[[watchdog.hooks]]\nname = \"page\"\non = [\"execution.dead\"]\n\
                     url = \"https://example.com/h\"\nsecret = \"s\"\n\
                     [[watchdog.hooks]]\nname = \"stop\"\non = [\"worker.tier_2\"]\n\
                     command = [\"./stop.sh\"]\ntimeout = \"3s\"\nretries = 0\n";
        std::fs::write(&path, file(hooks)).unwrap();
        let s = Settings::load_from(Some(&path), env(&[])).unwrap();
        let w = &s.watchdog;
        assert_eq!(w.expected_worker_version.as_deref(), Some("2.0"));
        assert!(w.tiers.enabled);
        assert_eq!(w.tiers.cooldown_kill, std::time::Duration::from_secs(120));
        assert_eq!(w.tiers.expected_versions["agents"], "2.1");
        assert_eq!(w.hooks.len(), 2);
        assert_eq!(w.hooks[0].retries, 3, "the default");
        assert_eq!(w.hooks[1].timeout, std::time::Duration::from_secs(3));
        assert_eq!(w.hooks[1].command, ["./stop.sh"]);
        for (bad, key) in [
            (
                "[[watchdog.hooks]]\nname = \"x\"\non = [\"execution.lost\"]\ncommand = [\"a\"]\n",
                "watchdog.hooks[0].on",
            ),
            (
                "[[watchdog.hooks]]\nname = \"x\"\non = [\"execution.dead\"]\n",
                "watchdog.hooks[0].command",
            ),
            (
                "[[watchdog.hooks]]\nname = \"x\"\non = [\"execution.dead\"]\ncommand = [\"a\"]\n\
              [[watchdog.hooks]]\nname = \"x\"\non = [\"execution.dead\"]\ncommand = [\"b\"]\n",
                "watchdog.hooks[1].name",
            ),
        ] {
            std::fs::write(&path, file(bad)).unwrap();
            let err = Settings::load_from(Some(&path), env(&[]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
