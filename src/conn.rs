//! Connections to Redis, standalone or Cluster, behind one multiplexed handle.
//!
//! Credentials come from the URL, TLS from a `rediss://` URL and the `tls_*` files; once
//! connected, `access` checks that the Redis user may do what unstuck needs.

mod access;

use std::path::Path;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{
    ClientTlsConfig, Cmd, IntoConnectionInfo, Pipeline, RedisFuture, TlsCertificates, Value,
};

use crate::config::{LedgerConfig, is_tls_url, redact_url};
use crate::error::{Error, Result};
use crate::keys::Keyspace;

/// A cheap-to-clone multiplexed connection: concurrent requests from many tasks share it
/// and are pipelined on the wire, which is what makes the hot path fast.
#[derive(Clone)]
pub(crate) enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => {
                Box::pin(async move { c.req_packed_command(cmd).await.map_err(after_retries) })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => Box::pin(async move {
                c.req_packed_commands(pipeline, offset, count)
                    .await
                    .map_err(after_retries)
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

/// A Cluster request's final error, as proof of nothing. The Cluster client re-sends a
/// request after a dropped connection or a timeout, so a refused connect (or no node to
/// connect to) at the end does not show that an earlier try was not written: reported as
/// a dropped connection, which leaves a write's outcome unknown. (The single-node
/// `ConnectionManager` never re-sends: its refusal is proof.)
fn after_retries(e: redis::RedisError) -> redis::RedisError {
    if crate::error::not_sent(&e) || e.kind() == redis::ErrorKind::ClusterConnectionNotFound {
        redis::RedisError::from((
            redis::ErrorKind::Io,
            "Redis Cluster unreachable after the client's retries",
            e.to_string(),
        ))
    } else {
        e
    }
}

/// Where blocking reads (following the event stream) get a connection of their own, so
/// they never stall the shared multiplexed one.
#[derive(Clone)]
pub(crate) enum BlockingPool {
    Single(deadpool_redis::Pool),
    /// Cluster mode follows events by polling on the shared connection instead.
    None,
}

pub(crate) struct Connected {
    pub conn: Connection,
    pub blocking: BlockingPool,
    pub cluster: bool,
    /// The ACL user the connection authenticated as (`default` when the URL names none).
    pub user: String,
}

/// Opens the connection described by `config`, then checks the user's permissions.
///
/// # Errors
/// [`Error::InvalidConfig`] for a URL that does not parse or an unreadable TLS file,
/// [`Error::Authentication`] when Redis refuses the credentials (or wants some),
/// [`Error::Permission`] when the user may not run what unstuck needs,
/// [`Error::Unavailable`] when Redis cannot be reached.
pub(crate) async fn connect(config: &LedgerConfig) -> Result<Connected> {
    let keys = Keyspace::new(&config.namespace, config.partitions)?;
    let certificates = tls_certificates(config)?;
    let connected = if config.cluster_urls.is_empty() {
        connect_single(config, certificates).await?
    } else {
        connect_cluster(config, certificates).await?
    };
    let mut probe = connected.conn.clone();
    access::check(&mut probe, &keys, &connected.user, connected.cluster).await?;
    Ok(connected)
}

async fn connect_single(
    config: &LedgerConfig,
    certificates: Option<TlsCertificates>,
) -> Result<Connected> {
    let url = config.server_url();
    let client = match certificates {
        Some(certificates) => redis::Client::build_with_tls(url, certificates),
        None => redis::Client::open(url),
    }
    .map_err(|e| bad_url("redis_url", url, &e))?;
    let info = client.get_connection_info().clone();
    let user = user_of(&info);
    let manager_config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(config.response_timeout))
        .set_connection_timeout(Some(config.connection_timeout))
        .set_number_of_retries(3)
        .set_max_delay(Duration::from_secs(2));
    let conn = ConnectionManager::new_with_config(client, manager_config)
        .await
        .map_err(|e| refused(e, &user))?;
    // Blocking reads wait up to FOLLOW_BLOCK; the response timeout must outlast it.
    let blocking_config = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(config.response_timeout + FOLLOW_BLOCK))
        .set_connection_timeout(Some(config.connection_timeout));
    // The parsed info, not the URL: it carries the TLS certificates too.
    let manager = deadpool_redis::Manager::new_with_config(info, blocking_config)?;
    let pool = deadpool_redis::Pool::builder(manager)
        .max_size(16)
        .build()
        .map_err(|e| Error::Pool(e.to_string()))?;
    Ok(Connected {
        conn: Connection::Single(conn),
        blocking: BlockingPool::Single(pool),
        cluster: false,
        user,
    })
}

async fn connect_cluster(
    config: &LedgerConfig,
    certificates: Option<TlsCertificates>,
) -> Result<Connected> {
    let first = config.cluster_urls[0].as_str();
    let info = first
        .into_connection_info()
        .map_err(|e| bad_url("cluster_urls", first, &e))?;
    let user = user_of(&info);
    let mut builder = ClusterClient::builder(config.cluster_urls.clone())
        .response_timeout(config.response_timeout)
        .connection_timeout(config.connection_timeout);
    if let Some(certificates) = certificates {
        builder = builder.certs(certificates);
    }
    let client = builder
        .build()
        .map_err(|e| bad_url("cluster_urls", &config.redacted_urls(), &e))?;
    let conn = client
        .get_async_connection()
        .await
        .map_err(|e| refused(e, &user))?;
    Ok(Connected {
        conn: Connection::Cluster(conn),
        blocking: BlockingPool::None,
        cluster: true,
        user,
    })
}

/// The ACL user the URL names; Redis calls a connection without one `default`.
fn user_of(info: &redis::ConnectionInfo) -> String {
    info.redis_settings()
        .username()
        .unwrap_or("default")
        .to_owned()
}

/// A URL the redis crate will not take, as a config error; the value is redacted (the
/// redis crate's own message never repeats the URL).
fn bad_url(key: &str, url: &str, e: &redis::RedisError) -> Error {
    if e.kind() != redis::ErrorKind::InvalidClientConfig {
        return e.clone().into();
    }
    Error::InvalidConfig {
        key: format!("ledger.{key}"),
        value: redact_url(url),
        expected: format!(
            "a redis://, rediss:// (TLS) or unix:// URL, credentials as \
             redis://user:password@host:port/ ({e})"
        ),
    }
}

/// Turns Redis refusing the credentials into [`Error::Authentication`]; other errors pass.
pub(crate) fn refused(e: redis::RedisError, user: &str) -> Error {
    let detail = match (e.kind(), e.code()) {
        (redis::ErrorKind::AuthenticationFailed, _) => {
            "wrong password, unknown user, or the user is disabled"
        }
        (_, Some("NOAUTH")) => "Redis requires a password and the URL has none",
        (_, Some("WRONGPASS")) => "wrong password, unknown user, or the user is disabled",
        _ => return e.into(),
    };
    Error::Authentication {
        user: user.to_owned(),
        detail: detail.to_owned(),
    }
}

/// The `tls_*` files as the redis crate takes them; `None` when none is set. The files are
/// read (and their PEM checked) here, so a bad one is named before anything connects.
fn tls_certificates(config: &LedgerConfig) -> Result<Option<TlsCertificates>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    if config.urls().into_iter().any(is_tls_url) {
        install_crypto_provider();
    }
    let root_cert = match &config.tls_ca_file {
        Some(path) => {
            let pem = read_pem("tls_ca_file", path)?;
            let certs = CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>();
            match certs {
                Ok(certs) if !certs.is_empty() => Some(pem),
                _ => return Err(bad_pem("tls_ca_file", path, "PEM CA certificates")),
            }
        }
        None => None,
    };
    let client_tls = match (&config.tls_client_cert_file, &config.tls_client_key_file) {
        (Some(cert_path), Some(key_path)) => {
            let client_cert = read_pem("tls_client_cert_file", cert_path)?;
            match CertificateDer::pem_slice_iter(&client_cert).next() {
                Some(Ok(_)) => {}
                _ => {
                    return Err(bad_pem(
                        "tls_client_cert_file",
                        cert_path,
                        "a PEM certificate",
                    ));
                }
            }
            let client_key = read_pem("tls_client_key_file", key_path)?;
            if PrivateKeyDer::from_pem_slice(&client_key).is_err() {
                return Err(bad_pem(
                    "tls_client_key_file",
                    key_path,
                    "a PEM private key",
                ));
            }
            Some(ClientTlsConfig {
                client_cert,
                client_key,
            })
        }
        // `LedgerConfig::validate` refuses one without the other.
        _ => None,
    };
    if root_cert.is_none() && client_tls.is_none() {
        return Ok(None);
    }
    Ok(Some(TlsCertificates {
        client_tls,
        root_cert,
    }))
}

/// rustls needs a process-wide crypto provider. This build enables only `ring`, which
/// rustls would pick by itself; installing it explicitly keeps TLS working when another
/// crate of the application enables a second provider (rustls then picks none). A
/// provider the application installed first is kept.
///
/// rustls 0.23.48 deprecates `ring::default_provider` ("no support for post-quantum
/// algorithms") and offers no other constructor of the ring provider (its random source and
/// key loader are private); the replacement it points to is aws-lc-rs, which this build
/// rules out (aws-lc-sys: cmake and a C toolchain). rustls itself still builds the ring
/// provider this way when it picks one from its crate features, so the deprecation is
/// allowed here, at this one call (rustls 0.24 moves the ring provider to a crate of its
/// own).
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        #[allow(deprecated)]
        let ring = rustls::crypto::ring::default_provider();
        // Losing a race with another installer is fine: a provider is installed.
        let _ = ring.install_default();
    }
}

fn read_pem(key: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::InvalidConfig {
        key: format!("ledger.{key}"),
        value: path.display().to_string(),
        expected: format!("a readable PEM file ({e})"),
    })
}

fn bad_pem(key: &str, path: &Path, what: &str) -> Error {
    Error::InvalidConfig {
        key: format!("ledger.{key}"),
        value: path.display().to_string(),
        expected: format!("a file holding {what}"),
    }
}

/// How long one blocking stream read waits for new events.
pub(crate) const FOLLOW_BLOCK: Duration = Duration::from_millis(1000);

/// Refuses to run against a Redis that may evict keys; warns where `CONFIG` is disabled.
///
/// A user whose ACL refuses `CONFIG GET` (it would show `requirepass`) is answered from
/// `INFO memory` instead, which the README's ACL line grants.
pub(crate) async fn check_eviction_policy(conn: &mut Connection) -> Result<()> {
    let reply: redis::RedisResult<Value> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query_async(conn)
        .await;
    let reply = match reply {
        Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm) => {
            redis::cmd("INFO")
                .arg("memory")
                .query_async(conn)
                .await
                .map(|info| info_policies(&info))
        }
        other => other.map(collect_policies),
    };
    let policies = match reply {
        Ok(policies) => policies,
        Err(e) if e.kind() == redis::ErrorKind::Io || e.is_timeout() => return Err(e.into()),
        Err(e) => {
            tracing::warn!(
                error = %e,
                "cannot read maxmemory-policy (CONFIG disabled?); make sure it is noeviction"
            );
            return Ok(());
        }
    };
    if policies.is_empty() {
        tracing::warn!("Redis did not report maxmemory-policy; make sure it is noeviction");
    }
    match policies.into_iter().find(|p| p != "noeviction") {
        Some(policy) => Err(Error::EvictionPolicy { policy }),
        None => Ok(()),
    }
}

/// The `maxmemory_policy:` lines of an `INFO memory` reply: one text, or (Cluster) one
/// per node.
fn info_policies(value: &Value) -> Vec<String> {
    let texts: Vec<String> = match value {
        Value::BulkString(b) => vec![String::from_utf8_lossy(b).into_owned()],
        Value::VerbatimString { text, .. } | Value::SimpleString(text) => vec![text.clone()],
        Value::Map(pairs) => return pairs.iter().flat_map(|(_, v)| info_policies(v)).collect(),
        Value::Array(items) => return items.iter().flat_map(info_policies).collect(),
        _ => Vec::new(),
    };
    texts
        .iter()
        .flat_map(|text| text.lines())
        .filter_map(|line| line.trim().strip_prefix("maxmemory_policy:"))
        .map(str::to_owned)
        .collect()
}

/// `CONFIG GET` answers a flat [name, value] array (RESP2) or a map (RESP3); in Cluster
/// mode the client may merge the answers of several nodes.
fn collect_policies(value: Value) -> Vec<String> {
    let text = |v: &Value| match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    match value {
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|pair| match pair {
                [_, v] => text(v),
                _ => None,
            })
            .collect(),
        Value::Map(pairs) => pairs.iter().filter_map(|(_, v)| text(v)).collect(),
        _ => Vec::new(),
    }
}
