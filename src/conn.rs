//! Connections to Redis, standalone or Cluster, behind one multiplexed handle.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::config::LedgerConfig;
use crate::error::{Error, Result};

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
            Connection::Cluster(c) => c.req_packed_command(cmd),
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
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
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
}

/// Opens the connection described by `config`.
pub(crate) async fn connect(config: &LedgerConfig) -> Result<Connected> {
    if config.cluster_urls.is_empty() {
        let client = redis::Client::open(config.server_url())?;
        let manager_config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(config.response_timeout))
            .set_connection_timeout(Some(config.connection_timeout))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(2));
        let conn = ConnectionManager::new_with_config(client, manager_config).await?;
        // Blocking reads wait up to FOLLOW_BLOCK; the response timeout must outlast it.
        let blocking_config = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(config.response_timeout + FOLLOW_BLOCK))
            .set_connection_timeout(Some(config.connection_timeout));
        let manager =
            deadpool_redis::Manager::new_with_config(config.server_url(), blocking_config)?;
        let pool = deadpool_redis::Pool::builder(manager)
            .max_size(16)
            .build()
            .map_err(|e| Error::Pool(e.to_string()))?;
        Ok(Connected {
            conn: Connection::Single(conn),
            blocking: BlockingPool::Single(pool),
            cluster: false,
        })
    } else {
        let client = ClusterClient::builder(config.cluster_urls.clone())
            .response_timeout(config.response_timeout)
            .connection_timeout(config.connection_timeout)
            .build()?;
        let conn = client.get_async_connection().await?;
        Ok(Connected {
            conn: Connection::Cluster(conn),
            blocking: BlockingPool::None,
            cluster: true,
        })
    }
}

/// How long one blocking stream read waits for new events.
pub(crate) const FOLLOW_BLOCK: Duration = Duration::from_millis(1000);

/// Refuses to run against a Redis that may evict keys; warns where `CONFIG` is disabled.
pub(crate) async fn check_eviction_policy(conn: &mut Connection) -> Result<()> {
    let reply: redis::RedisResult<Value> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query_async(conn)
        .await;
    let policies = match reply {
        Ok(value) => collect_policies(value),
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
