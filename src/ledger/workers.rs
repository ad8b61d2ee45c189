//! The worker registry: which worker processes exist, what they serve and run.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::tiers::WorkerRemediation;
use super::{Ledger, ms_to_time};
use crate::error::{Error, Result};
use crate::names;
use crate::scripts::{Reply, WORKER_DEREGISTER, WORKER_PRUNE, WORKER_REGISTER};

/// How a worker process introduces itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRegistration {
    /// Unique per process start: never reuse an id across restarts, so executions held by
    /// a dead process can never be mistaken for the new one's.
    pub worker_id: String,
    /// The host it runs on.
    pub host: String,
    /// Its process id on that host.
    pub pid: u32,
    /// Build stamp; the watchdog asks workers of an outdated version to restart.
    pub version: String,
    /// The queues it serves.
    pub queues: Vec<String>,
    /// How often this worker beats the registry ([`Ledger::worker_heartbeat`]). The
    /// watchdog never judges it gone before [`MISSED_WORKER_BEATS`] of these intervals
    /// have passed without a beat, whatever its own `worker_timeout` says. `None`: only
    /// `worker_timeout` applies.
    #[serde(default, with = "crate::timings::millis")]
    pub heartbeat_interval: Option<Duration>,
}

/// The name of the host this process runs on, as workers register it.
pub(crate) fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into())
}

/// Registry heartbeats a worker may miss before the watchdog judges it gone.
pub const MISSED_WORKER_BEATS: u32 = 3;

impl WorkerRegistration {
    /// A registration for the current process with a fresh id `<host>-<pid>-<uuidv7>`.
    pub fn for_this_process(version: impl Into<String>, queues: Vec<String>) -> Self {
        Self::for_process(this_host(), std::process::id(), version, queues)
    }

    /// A registration for a worker process elsewhere (one that registers through
    /// `unstuck serve`, say) with a fresh id `<host>-<pid>-<uuidv7>`: unique per call, so
    /// per process start, and always a valid worker id whatever `host` holds.
    pub fn for_process(
        host: impl Into<String>,
        pid: u32,
        version: impl Into<String>,
        queues: Vec<String>,
    ) -> Self {
        let host = host.into();
        Self {
            worker_id: mint_worker_id(&host, pid),
            host,
            pid,
            version: version.into(),
            queues,
            heartbeat_interval: None,
        }
    }

    /// Declares how often the worker will beat the registry.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = Some(interval);
        self
    }
}

/// A fresh worker id, `<host>-<pid>-<uuidv7>`: the host's first 40 characters with
/// anything but ASCII letters and digits made `-`, so the id keeps the naming rules.
fn mint_worker_id(host: &str, pid: u32) -> String {
    let safe_host: String = host
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    format!("{safe_host}-{pid}-{}", uuid::Uuid::now_v7().simple())
}

/// A registered worker as the registry sees it: what `GET /v1/workers` lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct WorkerInfo {
    /// The id it registered under (unique per process start).
    pub worker_id: String,
    /// The host it runs on.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// Its build stamp.
    pub version: String,
    /// The queues it serves.
    pub queues: Vec<String>,
    /// When it registered.
    pub registered_at: DateTime<Utc>,
    /// Its last registry heartbeat.
    pub last_seen_at: DateTime<Utc>,
    /// The registry heartbeat interval it declared, if any (milliseconds when serialized).
    #[serde(default, with = "crate::timings::millis")]
    #[cfg_attr(feature = "server", schema(value_type = Option<u64>))]
    pub heartbeat_interval: Option<Duration>,
    /// Executions the worker said it runs, as `(queue, id)`, at its last heartbeat.
    #[serde(with = "pairs")]
    #[cfg_attr(feature = "server", schema(value_type = Vec<crate::server::wire::RunningOut>))]
    pub running: Vec<(String, String)>,
    /// What the ledger says it holds: the capacity slots in its name, as `(queue, id)`.
    /// Empty until [`with_held`](Self::with_held) fills it.
    #[serde(default, with = "pairs")]
    #[cfg_attr(feature = "server", schema(value_type = Vec<crate::server::wire::RunningOut>))]
    pub held: Vec<(String, String)>,
    /// Its remediation tier and circuit (see docs/worker-tiers.md).
    #[serde(default)]
    pub remediation: WorkerRemediation,
}

impl WorkerInfo {
    /// Fills `held` from [`Ledger::slot_holders`]'s answer.
    pub fn with_held(mut self, holders: &HashMap<String, Vec<(String, String)>>) -> Self {
        self.held = holders.get(&self.worker_id).cloned().unwrap_or_default();
        self
    }

    /// How long after its last registry heartbeat the worker counts as gone: the
    /// watchdog's `worker_timeout`, or [`MISSED_WORKER_BEATS`] of its declared intervals
    /// when that is longer.
    pub fn gone_after(&self, worker_timeout: Duration) -> Duration {
        self.heartbeat_interval.map_or(worker_timeout, |i| {
            worker_timeout.max(i * MISSED_WORKER_BEATS)
        })
    }
}

impl Ledger {
    /// Adds a worker process to the registry. One round trip.
    ///
    /// # Errors
    /// [`Error::WorkerExists`] when the id was registered before; [`Error::InvalidName`].
    pub async fn register_worker(&self, reg: &WorkerRegistration) -> Result<DateTime<Utc>> {
        names::validate_worker_id(&reg.worker_id)?;
        for q in &reg.queues {
            names::validate_queue(q)?;
        }
        self.check_size("worker host", reg.host.len())?;
        self.check_size("worker version", reg.version.len())?;
        let interval = match reg.heartbeat_interval {
            None => 0,
            Some(i) if !i.is_zero() && i <= crate::timings::MAX_DURATION => i.as_millis() as u64,
            Some(i) => {
                return Err(Error::InvalidArgument {
                    name: "heartbeat_interval".into(),
                    value: crate::error::format_duration(i),
                    expected: "more than zero and at most 365 days".into(),
                });
            }
        };
        let reply = WORKER_REGISTER
            .key(self.keys.worker(&reg.worker_id))
            .key(self.keys.worker_index())
            .arg(&reg.worker_id)
            .arg(&reg.host)
            .arg(reg.pid)
            .arg(&reg.version)
            .arg(reg.queues.join(","))
            .arg(interval)
            .run(&mut self.conn.clone())
            .await?;
        match reply.status() {
            "ok" => reply.time(1),
            "exists" => Err(Error::WorkerExists {
                worker_id: reg.worker_id.clone(),
            }),
            _ => Err(reply.unexpected()),
        }
    }

    /// A worker reports it is alive and which executions (`(queue, id)`) it runs. One
    /// round trip. [`worker_beat`](Self::worker_beat) also returns what the watchdog asks
    /// of the worker (restart, drain): workers should use that.
    ///
    /// # Errors
    /// [`Error::UnknownWorker`] when the worker is not registered (it was deregistered, or
    /// judged gone): register again under a fresh id.
    pub async fn worker_heartbeat(
        &self,
        worker_id: &str,
        running: &[(String, String)],
    ) -> Result<DateTime<Utc>> {
        self.worker_beat(worker_id, running)
            .await
            .map(|beat| beat.last_seen_at)
    }

    /// Removes a worker from the registry (graceful shutdown).
    ///
    /// # Errors
    /// [`Error::UnknownWorker`] when it was not registered.
    pub async fn deregister_worker(&self, worker_id: &str) -> Result<()> {
        names::validate_worker_id(worker_id)?;
        let reply = WORKER_DEREGISTER
            .key(self.keys.worker(worker_id))
            .key(self.keys.worker_index())
            .arg(worker_id)
            .run(&mut self.conn.clone())
            .await?;
        known_worker(&reply, worker_id)
    }

    /// Forgets up to `limit` workers whose last registry heartbeat is older than
    /// `retention` (crashed workers never deregister). Returns how many were removed.
    ///
    /// # Errors
    /// [`Error::Redis`].
    pub async fn prune_workers(
        &self,
        retention: std::time::Duration,
        limit: usize,
    ) -> Result<usize> {
        let reply = WORKER_PRUNE
            .key(self.keys.worker_index())
            .arg(retention.as_millis() as u64)
            .arg(limit)
            .arg(self.keys.worker_prefix())
            .run(&mut self.conn.clone())
            .await?;
        match reply.status() {
            "ok" => Ok(reply.usize(1)?),
            _ => Err(reply.unexpected()),
        }
    }

    /// One registered worker, or `None`.
    ///
    /// # Errors
    /// [`Error::Redis`]; [`Error::Protocol`] for a damaged entry.
    pub async fn worker(&self, worker_id: &str) -> Result<Option<WorkerInfo>> {
        names::validate_worker_id(worker_id)?;
        let fields: HashMap<String, String> = self
            .conn
            .clone()
            .hgetall(self.keys.worker(worker_id))
            .await?;
        if fields.is_empty() {
            return Ok(None);
        }
        parse_worker(&fields).map(Some)
    }

    /// Every registered worker, by id.
    ///
    /// # Errors
    /// [`Error::Redis`]; [`Error::Protocol`] for a damaged entry.
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>> {
        let mut conn = self.conn.clone();
        let ids: Vec<String> = conn.zrange(self.keys.worker_index(), 0, -1).await?;
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(200) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.hgetall(self.keys.worker(id));
            }
            let hashes: Vec<HashMap<String, String>> = pipe.query_async(&mut conn).await?;
            for fields in hashes.iter().filter(|f| !f.is_empty()) {
                out.push(parse_worker(fields)?);
            }
        }
        out.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
        Ok(out)
    }
}

impl Ledger {
    /// The executions holding a capacity slot, by the worker holding them: what each
    /// worker holds according to the ledger (its registry entry says what it believes it
    /// runs). One `HGETALL` of each queue's slots.
    ///
    /// # Errors
    /// [`Error::Redis`].
    pub async fn slot_holders(&self) -> Result<HashMap<String, Vec<(String, String)>>> {
        let mut held: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for queue in self.queues().await? {
            let slots: HashMap<String, String> =
                self.conn.clone().hgetall(self.keys.slots(&queue)).await?;
            for (id, holder) in slots {
                if let Some((_, worker)) = holder.split_once(':') {
                    held.entry(worker.to_owned())
                        .or_default()
                        .push((queue.clone(), id));
                }
            }
        }
        for list in held.values_mut() {
            list.sort();
        }
        Ok(held)
    }
}

/// `Ok` for an `ok` reply, [`Error::UnknownWorker`] for `unknown`.
fn known_worker(reply: &Reply, worker_id: &str) -> Result<()> {
    match reply.status() {
        "ok" => Ok(()),
        "unknown" => Err(Error::UnknownWorker {
            worker_id: worker_id.into(),
        }),
        _ => Err(reply.unexpected()),
    }
}

fn parse_worker(f: &HashMap<String, String>) -> Result<WorkerInfo> {
    let bad = |detail: String| Error::Protocol {
        script: "worker hash",
        detail,
    };
    let get = |k: &str| f.get(k).cloned().ok_or_else(|| bad(format!("{k} missing")));
    let num = |k: &str| -> Result<i64> {
        get(k)?
            .parse()
            .map_err(|_| bad(format!("{k} is not a number")))
    };
    let members: Vec<String> =
        serde_json::from_str(&get("running")?).map_err(|e| bad(format!("running: {e}")))?;
    let running = members
        .iter()
        .filter_map(|m| m.split_once('/'))
        .map(|(q, id)| (q.to_owned(), id.to_owned()))
        .collect();
    let queues = get("queues")?;
    Ok(WorkerInfo {
        worker_id: get("id")?,
        host: get("host")?,
        pid: num("pid")? as u32,
        version: get("ver")?,
        queues: queues
            .split(',')
            .filter(|q| !q.is_empty())
            .map(str::to_owned)
            .collect(),
        registered_at: ms_to_time(num("reg")?)?,
        last_seen_at: ms_to_time(num("seen")?)?,
        running,
        held: Vec::new(),
        // Absent in entries written before the field existed.
        heartbeat_interval: match f.get("ivl").map(|v| v.parse::<u64>()) {
            None | Some(Ok(0)) => None,
            Some(Ok(ms)) => Some(Duration::from_millis(ms)),
            Some(Err(_)) => return Err(bad("ivl is not a number".into())),
        },
        remediation: WorkerRemediation::from_fields(f)?,
    })
}

/// `(queue, id)` pairs as `{"queue": .., "id": ..}` objects.
mod pairs {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Pair<T> {
        queue: T,
        id: T,
    }

    pub(super) fn serialize<S: Serializer>(
        v: &[(String, String)],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|(queue, id)| Pair { queue, id }))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<(String, String)>, D::Error> {
        Ok(Vec::<Pair<String>>::deserialize(d)?
            .into_iter()
            .map(|p| (p.queue, p.id))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::WorkerRegistration;

    #[test]
    fn a_minted_id_keeps_the_naming_rules_and_is_fresh_per_call() {
        for host in ["web-1", "web 1.example.com/é:x", "", &"h".repeat(300)] {
            let a = WorkerRegistration::for_process(host, 42, "1.0", Vec::new());
            let b = WorkerRegistration::for_process(host, 42, "1.0", Vec::new());
            crate::names::validate_worker_id(&a.worker_id)
                .unwrap_or_else(|e| panic!("{host:?} gave {}: {e}", a.worker_id));
            assert_ne!(a.worker_id, b.worker_id, "one id per process start");
            assert!(a.worker_id.contains("-42-"), "{}", a.worker_id);
            assert_eq!(a.host, host, "the host is kept as given");
        }
    }
}
