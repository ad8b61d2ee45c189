//! TLS: a `rediss://` URL and `tls_ca_file` (a private CA made at test time) work for
//! every connection the library opens, against a redis-server that listens only on TLS;
//! with `tls_client_cert_file`/`tls_client_key_file` too, against one that asks clients
//! for a certificate (and a password). Certificates are always checked: an unknown CA,
//! `#insecure` or a plain URL is refused; a bad TLS file is named.

use crate::security_common;

use std::time::Duration;

use security_common::tls::TlsRedis;
use security_common::*;
use unstuck::error::Error;
use unstuck::*;

const PASSWORD: &str = "tls-pw-5e0b";

fn tls_config(redis: &TlsRedis, url: &str, namespace: &str) -> LedgerConfig {
    LedgerConfig {
        tls_ca_file: Some(redis.certs.ca.clone()),
        connection_timeout: Duration::from_secs(2),
        ..config(url, namespace)
    }
}

#[tokio::test]
async fn a_tls_redis_runs_every_library_call() {
    let redis = TlsRedis::start("no", None).await;
    let plain = Ledger::connect(config(
        &format!("redis://127.0.0.1:{}/", redis.process.port()),
        "x",
    ))
    .await;
    assert!(
        plain.is_err(),
        "the plain port is closed: only TLS is served"
    );
    let config = tls_config(&redis, &redis.url(None), "tls-ok");
    let ledger = Ledger::connect(config).await.expect("connects over TLS");
    workout(&ledger).await;
}

#[tokio::test]
async fn mutual_tls_with_a_password_runs_every_library_call() {
    let redis = TlsRedis::start("yes", Some(PASSWORD)).await;
    let url = redis.url(Some(&format!(":{PASSWORD}")));
    let anonymous = Ledger::connect(tls_config(&redis, &url, "mtls")).await;
    let error = anonymous.expect_err("no client certificate: refused");
    assert!(!format!("{error:?}").contains(PASSWORD), "{error:?}");

    let config = LedgerConfig {
        tls_client_cert_file: Some(redis.certs.client_cert.clone()),
        tls_client_key_file: Some(redis.certs.client_key.clone()),
        ..tls_config(&redis, &url, "mtls")
    };
    assert!(!format!("{config:?}").contains(PASSWORD));
    let ledger = Ledger::connect(config)
        .await
        .expect("connects with a client certificate");
    workout(&ledger).await;
}

#[tokio::test]
async fn certificates_are_always_checked() {
    let redis = TlsRedis::start("no", None).await;
    // The system's roots do not include our CA; nor does another CA.
    let system_roots = LedgerConfig {
        tls_ca_file: None,
        ..tls_config(&redis, &redis.url(None), "tls-check")
    };
    let error = Ledger::connect(system_roots)
        .await
        .expect_err("an unknown issuer");
    assert!(error.to_string().contains("certificate"), "{error}");
    let other_ca = LedgerConfig {
        tls_ca_file: Some(redis.certs.other_ca.clone()),
        ..tls_config(&redis, &redis.url(None), "tls-check")
    };
    let error = Ledger::connect(other_ca)
        .await
        .expect_err("another CA's trust");
    assert!(error.to_string().contains("certificate"), "{error}");

    // A URL cannot turn the check off.
    let insecure = format!("rediss://127.0.0.1:{}/#insecure", redis.port);
    match Ledger::connect(tls_config(&redis, &insecure, "tls-check")).await {
        Err(Error::InvalidConfig { key, .. }) => assert_eq!(key, "ledger.redis_url"),
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
    // A plain URL against the TLS port does not fall back to the clear.
    let plain = LedgerConfig {
        tls_ca_file: None,
        ..config(&format!("redis://127.0.0.1:{}/", redis.port), "tls-check")
    };
    assert!(Ledger::connect(plain).await.is_err());
}

#[tokio::test]
async fn bad_tls_files_are_named_before_connecting() {
    let redis = TlsRedis::start("no", None).await;
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let key_of = |error: Error| match error {
        Error::InvalidConfig { key, value, .. } => (key, value),
        other => panic!("expected InvalidConfig, got {other:?}"),
    };
    let url = redis.url(None);
    let cases = [
        (
            Some(dir.path().join("missing.pem")),
            None,
            "ledger.tls_ca_file",
        ),
        (Some(garbage.clone()), None, "ledger.tls_ca_file"),
        (None, Some(garbage.clone()), "ledger.tls_client_key_file"),
    ];
    for (ca, key, expected) in cases {
        let config = LedgerConfig {
            tls_ca_file: ca.or_else(|| Some(redis.certs.ca.clone())),
            tls_client_cert_file: Some(redis.certs.client_cert.clone()),
            tls_client_key_file: Some(key.unwrap_or_else(|| redis.certs.client_key.clone())),
            ..config(&url, "tls-files")
        };
        let (key, value) = key_of(Ledger::connect(config).await.unwrap_err());
        assert_eq!(key, expected, "{value}");
    }
    // TLS files with a plain URL: the connection would silently go in the clear.
    let plain = LedgerConfig {
        tls_ca_file: Some(redis.certs.ca.clone()),
        ..config(&format!("redis://127.0.0.1:{}/", redis.port), "tls-files")
    };
    assert_eq!(
        key_of(plain.validate().unwrap_err()).0,
        "ledger.tls_ca_file"
    );
}
