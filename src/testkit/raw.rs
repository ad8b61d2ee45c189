//! Raw reads of a ledger's keys beside its own connection (standalone or cluster), for the
//! invariant checker and for audits that read many executions at once: pipelined, one
//! hash tag per pipeline.

use crate::keys::Keyspace;
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, FromRedisValue, RedisResult};

/// A raw connection beside the ledger's own, standalone or cluster.
pub(super) enum Raw {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Raw {
    /// The checker reads every key of a namespace, 100,000 executions in the fault suite,
    /// on a machine that may be busy: a reply may take far longer than redis-rs's default
    /// 500 ms response timeout without anything being wrong.
    const RESPONSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

    pub(super) async fn open(config: &crate::LedgerConfig) -> RedisResult<Self> {
        if config.cluster_urls.is_empty() {
            let client = redis::Client::open(config.server_url())?;
            let patient = redis::AsyncConnectionConfig::new()
                .set_response_timeout(Some(Self::RESPONSE_TIMEOUT));
            Ok(Raw::Single(
                client
                    .get_multiplexed_async_connection_with_config(&patient)
                    .await?,
            ))
        } else {
            let client = redis::cluster::ClusterClientBuilder::new(config.cluster_urls.clone())
                .response_timeout(Self::RESPONSE_TIMEOUT)
                .build()?;
            Ok(Raw::Cluster(client.get_async_connection().await?))
        }
    }

    pub(super) async fn query<T: FromRedisValue>(&mut self, cmd: &Cmd) -> RedisResult<T> {
        match self {
            Raw::Single(c) => cmd.query_async(c).await,
            Raw::Cluster(c) => cmd.query_async(c).await,
        }
    }

    /// One pipeline; its keys share one hash tag (a cluster routes it by the first).
    pub(super) async fn query_pipe<T: FromRedisValue>(
        &mut self,
        pipe: &redis::Pipeline,
    ) -> RedisResult<T> {
        match self {
            Raw::Single(c) => pipe.query_async(c).await,
            Raw::Cluster(c) => pipe.query_async(c).await,
        }
    }

    /// Every key starting with `prefix`, whose keys all share one hash tag.
    pub(super) async fn keys_with_prefix(&mut self, prefix: &str) -> RedisResult<Vec<String>> {
        let pattern = format!("{}*", glob_escape(prefix));
        let mut cursor = 0u64;
        let mut found = Vec::new();
        loop {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000);
            let (next, mut keys): (u64, Vec<String>) = match self {
                Raw::Single(c) => cmd.query_async(c).await?,
                Raw::Cluster(c) => {
                    let route = Route::with_key(prefix, SlotAddr::Master);
                    let routing =
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                    redis::from_redis_value(c.route_command(cmd, routing).await?)?
                }
            };
            found.append(&mut keys);
            if next == 0 {
                return Ok(found);
            }
            cursor = next;
        }
    }
}

fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Executions read per pipeline.
pub(super) const READ_BATCH: usize = 500;

/// The state and attempt of each of `ids` (`(queue, id)`), in order, read raw in pipelines
/// (`None`: no such execution): what an audit of a hundred thousand executions needs,
/// without parsing each whole execution.
pub async fn states(
    ledger: &crate::Ledger,
    ids: &[(String, String)],
) -> RedisResult<Vec<Option<(crate::State, u32)>>> {
    let config = ledger.config();
    let keys = Keyspace::new(&config.namespace, config.partitions)
        .map_err(|e| redis::RedisError::from(std::io::Error::other(e.to_string())))?;
    let mut raw = Raw::open(config).await?;
    let mut out = Vec::with_capacity(ids.len());
    // A pipeline holds keys of one queue only (one hash tag on a cluster).
    for run in ids.chunk_by(|a, b| a.0 == b.0) {
        for chunk in run.chunks(READ_BATCH) {
            let mut pipe = redis::pipe();
            for (queue, id) in chunk {
                pipe.cmd("HMGET")
                    .arg(keys.execution(queue, id))
                    .arg("st")
                    .arg("att");
            }
            let read: Vec<(Option<String>, Option<u32>)> = raw.query_pipe(&pipe).await?;
            for (state, attempt) in read {
                out.push(match state {
                    Some(state) => Some((
                        state.parse().map_err(|e: crate::Error| {
                            redis::RedisError::from(std::io::Error::other(e.to_string()))
                        })?,
                        attempt.unwrap_or(0),
                    )),
                    None => None,
                });
            }
        }
    }
    Ok(out)
}
