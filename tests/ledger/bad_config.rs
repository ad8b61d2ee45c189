//! A bad configuration is refused by `validate` (and so by `connect`, before it touches
//! Redis) with an error that names the key with its section, as the settings file does.

use crate::support;

use std::time::Duration;

use unstuck::error::Error;
use unstuck::*;

const YEAR_AND_A_DAY: Duration = Duration::from_secs(366 * 24 * 3600);

fn base() -> LedgerConfig {
    LedgerConfig::new(support::redis().url())
}

/// Global defaults that each break one rule, with the key the error must name.
fn bad_defaults() -> Vec<(&'static str, Timings)> {
    let d = Timings::global_defaults;
    vec![
        (
            "ledger.defaults.heartbeat_timeout",
            Timings {
                heartbeat_timeout: Some(Duration::ZERO),
                ..d()
            },
        ),
        (
            "ledger.defaults.start_grace",
            Timings {
                start_grace: Some(Duration::from_micros(999)),
                ..d()
            },
        ),
        (
            "ledger.defaults.deadline",
            Timings {
                deadline: Some(Duration::from_micros(1500)),
                ..d()
            },
        ),
        (
            "ledger.defaults.stuck_threshold",
            Timings {
                stuck_threshold: Some(YEAR_AND_A_DAY),
                ..d()
            },
        ),
        (
            "ledger.defaults.max_attempts",
            Timings {
                max_attempts: Some(0),
                ..d()
            },
        ),
        (
            "ledger.defaults.max_attempts",
            Timings {
                max_attempts: Some(1001),
                ..d()
            },
        ),
        (
            "ledger.defaults.backoff_max",
            Timings {
                backoff_max: None,
                ..d()
            },
        ),
    ]
}

#[tokio::test]
async fn invalid_configs_are_refused_before_connecting() {
    base().validate().unwrap();
    let mut cases: Vec<(&str, LedgerConfig)> = vec![
        (
            "ledger.partitions",
            LedgerConfig {
                partitions: 0,
                ..base()
            },
        ),
        (
            "ledger.partitions",
            LedgerConfig {
                partitions: 1025,
                ..base()
            },
        ),
        (
            "namespace",
            LedgerConfig {
                namespace: "a{b}".into(),
                ..base()
            },
        ),
        (
            "namespace",
            LedgerConfig {
                namespace: "{ns}".into(),
                ..base()
            },
        ),
        (
            "namespace",
            LedgerConfig {
                namespace: "has space".into(),
                ..base()
            },
        ),
        (
            "namespace",
            LedgerConfig {
                namespace: "a:b".into(),
                ..base()
            },
        ),
        (
            "namespace",
            LedgerConfig {
                namespace: String::new(),
                ..base()
            },
        ),
        (
            "namespace",
            LedgerConfig {
                namespace: "n".repeat(65),
                ..base()
            },
        ),
        (
            "ledger.response_timeout",
            LedgerConfig {
                response_timeout: Duration::ZERO,
                ..base()
            },
        ),
        (
            "ledger.connection_timeout",
            LedgerConfig {
                connection_timeout: Duration::from_secs(601),
                ..base()
            },
        ),
        (
            "ledger.max_payload_bytes",
            LedgerConfig {
                max_payload_bytes: 0,
                ..base()
            },
        ),
        (
            "ledger.events_max_len",
            LedgerConfig {
                events_max_len: 99,
                ..base()
            },
        ),
        (
            "ledger.history_len",
            LedgerConfig {
                history_len: 0,
                ..base()
            },
        ),
        (
            "ledger.history_len",
            LedgerConfig {
                history_len: 1001,
                ..base()
            },
        ),
        (
            "ledger.default_capacity",
            LedgerConfig {
                default_capacity: 0,
                ..base()
            },
        ),
        (
            "ledger.cluster_urls",
            LedgerConfig {
                cluster_urls: vec!["redis://10.0.0.1:7000/".into()],
                ..base()
            },
        ),
    ];
    for (key, defaults) in bad_defaults() {
        cases.push((key, LedgerConfig { defaults, ..base() }));
    }

    for (key, config) in cases {
        let error = config.validate().unwrap_err();
        let named = match &error {
            Error::InvalidConfig { key, .. } => key.clone(),
            Error::InvalidName { what, .. } => (*what).to_owned(),
            other => panic!("{key}: unexpected error {other:?}"),
        };
        assert_eq!(named, key, "{error}");
        assert!(!error.is_transient());
        // connect validates first, so the same error comes back.
        match Ledger::connect(config).await {
            Err(e) => assert_eq!(e.to_string(), error.to_string()),
            Ok(_) => panic!("{key}: connect accepted an invalid config"),
        }
    }
}

#[test]
fn the_limits_themselves_are_accepted() {
    let edge = LedgerConfig {
        namespace: "n".repeat(64),
        partitions: 1024,
        response_timeout: Duration::from_secs(600),
        max_payload_bytes: 64 * 1024 * 1024,
        events_max_len: 100,
        history_len: 1000,
        default_capacity: 1,
        defaults: Timings {
            deadline: Some(Duration::from_secs(365 * 24 * 3600)),
            max_attempts: Some(1000),
            heartbeat_timeout: Some(Duration::from_millis(1)),
            ..Timings::global_defaults()
        },
        ..base()
    };
    edge.validate().unwrap();
    let one = LedgerConfig {
        namespace: "a_b-C9".into(),
        partitions: 1,
        ..base()
    };
    one.validate().unwrap();
}
