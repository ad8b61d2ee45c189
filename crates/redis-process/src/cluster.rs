//! A local 3-master Redis Cluster built from [`RedisProcess`]es, for cluster-mode tests.

use std::fs::{self, File};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{RedisProcess, RedisProcessError, RedisProcessOptions, spawn, spawn_error};

/// Covers `redis-cli --cluster create` and, separately, every node reporting `ok`.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(20);

/// A local Redis Cluster of three masters, with or without a replica each, every node a
/// [`RedisProcess`].
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisProcess>,
    replicas: usize,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers, joins them with `redis-cli --cluster create` and
    /// waits until every node reports `cluster_state:ok`. `options` apply to every node.
    ///
    /// # Errors
    ///
    /// As [`RedisProcess::start`], plus [`RedisProcessError::ClusterCreate`] when `redis-cli`
    /// fails and [`RedisProcessError::ClusterNotReady`] when a node never reports `ok`.
    pub fn start(options: RedisProcessOptions) -> Result<Self, RedisProcessError> {
        Self::start_with(options, 0)
    }

    /// Three masters and one replica of each (six nodes), as `redis-cli --cluster create
    /// --cluster-replicas 1` pairs them; returns once every node reports `ok` and every
    /// replica's link to its master is up.
    ///
    /// # Errors
    /// As [`start`](Self::start); [`RedisProcessError::ClusterNotReady`] also when a
    /// replica never links up.
    pub fn start_with_replicas(options: RedisProcessOptions) -> Result<Self, RedisProcessError> {
        Self::start_with(options, 1)
    }

    fn start_with(
        options: RedisProcessOptions,
        replicas: usize,
    ) -> Result<Self, RedisProcessError> {
        let nodes = (0..3 * (1 + replicas))
            .map(|_| RedisProcess::start_node(&options, true))
            .collect::<Result<Vec<_>, _>>()?;
        let cluster = RedisCluster { nodes, replicas };
        cluster.create()?;
        cluster.wait_until_ok()?;
        if replicas > 0 {
            cluster.wait_until_linked()?;
        }
        Ok(cluster)
    }

    /// Each node, to kill or restart one ([`RedisProcess::kill_hard`]).
    pub fn nodes_mut(&mut self) -> &mut [RedisProcess] {
        &mut self.nodes
    }

    /// Which nodes are masters now (`ROLE`), as indexes into [`nodes`](Self::nodes); a
    /// node that does not answer is neither.
    pub fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| node_role(self.nodes[i].url()).as_deref() == Ok("master"))
            .collect()
    }

    /// The index of the replica of master `master` (by port, from `ROLE` of the master).
    pub fn replica_of(&self, master: usize) -> Option<usize> {
        let port = replica_ports(self.nodes[master].url())
            .ok()?
            .into_iter()
            .next()?;
        self.nodes.iter().position(|n| n.port == port)
    }

    fn wait_until_linked(&self) -> Result<(), RedisProcessError> {
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        for node in &self.nodes {
            loop {
                let info = info_replication(node.url());
                let linked = match info.as_deref() {
                    Ok(info) if info.contains("role:slave") => {
                        info.contains("master_link_status:up")
                    }
                    Ok(_) => true,
                    Err(_) => false,
                };
                if linked {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(RedisProcessError::ClusterNotReady {
                        url: node.url().to_owned(),
                        timeout: CLUSTER_TIMEOUT,
                        last_state: info.unwrap_or_else(|error| error),
                    });
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// One `redis://127.0.0.1:PORT/` per node; any of them is a valid cluster seed.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| node.url().to_owned())
            .collect()
    }

    /// Every node (masters first as created; roles change with failovers, see
    /// [`masters`](Self::masters)), for per-node checks such as `DBSIZE` or `CLUSTER INFO`.
    pub fn nodes(&self) -> &[RedisProcess] {
        &self.nodes
    }

    fn create(&self) -> Result<(), RedisProcessError> {
        let cli = std::env::var_os("UNSTUCK_REDIS_CLI")
            .map_or_else(|| PathBuf::from("redis-cli"), PathBuf::from);
        // Output goes to a file, not a pipe, so a chatty redis-cli can never block on a full pipe.
        let output_path = self.nodes[0].dir.join("cluster-create.log");
        let output = File::create(&output_path).and_then(|file| Ok((file.try_clone()?, file)));
        let (stdout, stderr) = output.map_err(|source| RedisProcessError::TempDir {
            path: output_path.clone(),
            source,
        })?;
        let mut command = Command::new(&cli);
        command.args(["--cluster", "create"]);
        command.args(
            self.nodes
                .iter()
                .map(|node| format!("127.0.0.1:{}", node.port)),
        );
        let replicas = self.replicas.to_string();
        command.args(["--cluster-replicas", replicas.as_str(), "--cluster-yes"]);
        command.stdin(Stdio::null()).stdout(stdout).stderr(stderr);

        let mut child =
            spawn::spawn_tied_to_process(command).map_err(|source| spawn_error(&cli, source))?;
        let status = wait_with_deadline(&mut child, Instant::now() + CLUSTER_TIMEOUT);
        let output = || fs::read_to_string(&output_path).unwrap_or_default();
        match status {
            Some(status) if status.success() => Ok(()),
            Some(status) => Err(RedisProcessError::ClusterCreate {
                status: status.to_string(),
                output: output(),
            }),
            None => Err(RedisProcessError::ClusterCreate {
                status: format!("no exit within {CLUSTER_TIMEOUT:?}"),
                output: output(),
            }),
        }
    }

    fn wait_until_ok(&self) -> Result<(), RedisProcessError> {
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        for node in &self.nodes {
            loop {
                let state = cluster_state(node.url());
                if state.as_deref() == Ok("ok") {
                    break;
                }
                if Instant::now() >= deadline {
                    let last_state = state.unwrap_or_else(|error| error);
                    let url = node.url().to_owned();
                    return Err(RedisProcessError::ClusterNotReady {
                        url,
                        timeout: CLUSTER_TIMEOUT,
                        last_state,
                    });
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }
}

/// The `cluster_state` field of `CLUSTER INFO` (`ok` or `fail`), or why it could not be read.
pub(super) fn cluster_state(url: &str) -> Result<String, String> {
    let mut connection = redis::Client::open(url)
        .and_then(|client| client.get_connection_with_timeout(Duration::from_millis(500)))
        .map_err(|error| error.to_string())?;
    let info: String = redis::cmd("CLUSTER")
        .arg("INFO")
        .query(&mut connection)
        .map_err(|error| error.to_string())?;
    info.lines()
        .find_map(|line| line.trim().strip_prefix("cluster_state:"))
        .map(str::to_owned)
        .ok_or_else(|| "CLUSTER INFO has no cluster_state".to_owned())
}

fn connection(url: &str) -> Result<redis::Connection, String> {
    redis::Client::open(url)
        .and_then(|client| client.get_connection_with_timeout(Duration::from_millis(500)))
        .map_err(|error| error.to_string())
}

/// `INFO replication` of the node at `url`.
fn info_replication(url: &str) -> Result<String, String> {
    redis::cmd("INFO")
        .arg("replication")
        .query(&mut connection(url)?)
        .map_err(|error| error.to_string())
}

/// The first element of `ROLE`: `master` or `slave`.
fn node_role(url: &str) -> Result<String, String> {
    let role: Vec<redis::Value> = redis::cmd("ROLE")
        .query(&mut connection(url)?)
        .map_err(|error| error.to_string())?;
    match role.first() {
        Some(redis::Value::BulkString(b)) => Ok(String::from_utf8_lossy(b).into_owned()),
        Some(redis::Value::SimpleString(s)) => Ok(s.clone()),
        other => Err(format!("unexpected ROLE reply {other:?}")),
    }
}

/// The ports of a master's replicas, from `ROLE` (`master`, offset, [[ip, port, offset]…]).
fn replica_ports(url: &str) -> Result<Vec<u16>, String> {
    let role: Vec<redis::Value> = redis::cmd("ROLE")
        .query(&mut connection(url)?)
        .map_err(|error| error.to_string())?;
    let Some(redis::Value::Array(replicas)) = role.get(2) else {
        return Ok(Vec::new());
    };
    Ok(replicas
        .iter()
        .filter_map(|r| match r {
            redis::Value::Array(fields) => match fields.get(1) {
                Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).parse().ok(),
                _ => None,
            },
            _ => None,
        })
        .collect())
}

/// Polls `child` until it exits or `deadline` passes; on timeout it is killed and `None` returned.
fn wait_with_deadline(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}
