//! The one place that builds Redis keys; every key of a partition shares one hash tag.
//!
//! Layout (`T` is the partition tag `{<namespace>:<partition>}`, placed before any
//! user-supplied part so Redis Cluster hashes only the tag):
//!
//! | key                         | type   | holds                                          |
//! |-----------------------------|--------|------------------------------------------------|
//! | `T:x:<queue>/<id>`          | hash   | one execution                                  |
//! | `T:r:<queue>/<id>`          | zset   | retries made of a finished one, by creation    |
//! | `T:q:<queue>:pending`       | zset   | queued ids by the instant they become available|
//! | `T:q:<queue>:slots`         | hash   | capacity slots: id → `<attempt>:<worker>`      |
//! | `T:q:<queue>:conf`          | hash   | queue settings (capacity, timings) and pause   |
//! | `T:q:<queue>:s:<state>`     | list   | terminal ids in finish order, per state        |
//! | `T:q:<queue>:usage`         | hash   | usage totals, by model, rolling window buckets |
//! | `T:q:<queue>:uj`            | list   | usage deltas not yet added to the sums         |
//! | `T:usage:journals`          | set    | queues of the partition with a usage journal   |
//! | `T:timer:<kind>`            | zset   | `<queue>/<id>` by the instant the timer fires  |
//! | `T:queues`                  | set    | queue names of the partition                   |
//! | `T:events`                  | stream | capped log of every transition                 |
//! | `T:lease`                   | hash   | watchdog lease: owner, epoch, expiry           |
//! | `T:epoch`                   | string | INCR counter handing out lease epochs          |
//! | `T:watch`                   | hash   | last judgement instant, systemic hold state    |
//! | `T:watch:stale`             | zset   | recent heartbeat verdicts, by when they expire |
//! | `T:watch:stale:ns`          | zset   | the same, for the namespace-wide count         |
//! | `{<namespace>:watchdogs}:index`    | zset | watchdog replica ids by last beat      |
//! | `{<namespace>:watchdogs}:systemic` | hash | namespace-wide stale counts and hold   |
//! | `{<namespace>:workers}:w:<worker>` | hash | one registered worker process          |
//! | `{<namespace>:workers}:index`      | zset | worker ids by last heartbeat instant   |
//! | `{<namespace>:workers}:lease`      | hash | the lease fencing worker tier changes  |
//! | `{<namespace>:workers}:epoch`      | string | INCR counter of that lease's epochs  |
//! | `{<namespace>:workers}:events`     | stream | capped log of worker tier changes    |
//! | `{<namespace>:workers}:hooks:c:<key>` | hash | one hook call, by idempotency key   |
//! | `{<namespace>:workers}:hooks:pending` | list | call keys waiting for delivery      |
//! | `{<namespace>:workers}:hooks:running` | zset | claimed call keys, by claim expiry  |
//! | `{<namespace>:workers}:hooks:settled` | zset | settled call keys, by settling time |
//! | `{<namespace>:workers}:hooks:cursor`  | hash | how far each event stream was read  |
//! | `{<namespace>:workers}:hooks:term:<p>` | zset | terminate outcomes for partition p  |
//! | `{<namespace>:resources}:r:<resource>` | hash | capacity (`cap`) and holders `<queue>/<id>` → `<attempt>\|<since>\|<expires>\|<partition>` |
//! | `{<namespace>:resources}:names`        | set  | resources with at least one holder  |
//! | `{<namespace>:resources}:x:<queue>/<id>` | set | resources an execution holds       |
//! | `{<namespace>:resources}:held:<p>`     | zset | `<resource>\|<queue>/<id>\|<attempt>` of partition p's executions, by expiry (`inf`: none) |
//!
//! Scripts receive these keys in `KEYS`. Keys a script can only know once it reads an index
//! (an execution popped from a queue, the queues of due timers) it derives from a prefix
//! built here: `execution_prefix(queue) .. id`, or, in the watchdog scripts, from the
//! partition's [`Keyspace::script_layout`].

// Public only to the test support (feature `testkit`), which reads and damages raw keys.
#![cfg_attr(not(feature = "testkit"), allow(unreachable_pub))]
#![cfg_attr(feature = "testkit", allow(missing_docs))]

use crate::error::{Error, Result};

/// Suffixes of a queue's keys after `T:q:<queue>`.
const SLOTS: &str = ":slots";
const PENDING: &str = ":pending";
const FINISHED: &str = ":s:";
const CONF: &str = ":conf";
const USAGE: &str = ":usage";
const USAGE_JOURNAL: &str = ":uj";

/// Timer indexes of a partition; each is scored by the instant its timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// Dispatched but not started: dispatch + `start_grace`.
    Start,
    /// Running: last heartbeat + `heartbeat_timeout`.
    Heartbeat,
    /// Running with `no_progress_timeout`: last progress change + that timeout.
    Progress,
    /// Any non-terminal state with a deadline: enqueue + `deadline`.
    Deadline,
    /// Stuck: stuck since + `stuck_threshold`.
    Stuck,
    /// Cancel requested on active work: request + `cancel_grace`.
    Cancel,
    /// Awaiting: the wait deadline `await` set. Not in [`Timer::ALL`]: only the round and
    /// the await, resume and cancel scripts take it (as their last timer key).
    Wait,
}

impl Timer {
    /// Every timer kind, in the order the watchdog judges them and its scripts take them
    /// in KEYS (deadline, start, heartbeat, progress, stuck, cancel).
    pub const ALL: [Timer; 6] = [
        Timer::Deadline,
        Timer::Start,
        Timer::Heartbeat,
        Timer::Progress,
        Timer::Stuck,
        Timer::Cancel,
    ];

    fn name(self) -> &'static str {
        match self {
            Timer::Start => "start",
            Timer::Heartbeat => "heartbeat",
            Timer::Progress => "progress",
            Timer::Deadline => "deadline",
            Timer::Stuck => "stuck",
            Timer::Cancel => "cancel",
            Timer::Wait => "wait",
        }
    }
}

/// Builds every key of one namespace. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Keyspace {
    /// Shared: a ledger handle is cloned per call in many places, and its keyspace with it.
    namespace: std::sync::Arc<str>,
    partitions: u16,
}

impl Keyspace {
    /// # Errors
    /// [`Error::InvalidName`] for a bad namespace, [`Error::InvalidConfig`] when
    /// `partitions` is 0 or above 1024.
    pub fn new(namespace: &str, partitions: u16) -> Result<Self> {
        crate::names::validate_namespace(namespace)?;
        if partitions == 0 || partitions > 1024 {
            return Err(Error::InvalidConfig {
                key: "ledger.partitions".into(),
                value: partitions.to_string(),
                expected: "an integer from 1 to 1024".into(),
            });
        }
        Ok(Self {
            namespace: namespace.into(),
            partitions,
        })
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn partitions(&self) -> u16 {
        self.partitions
    }

    /// The partition a queue belongs to: FNV-1a of the name, stable across versions and
    /// processes (never `std`'s randomly seeded hasher).
    pub fn partition_of(&self, queue: &str) -> u16 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in queue.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        (hash % u64::from(self.partitions)) as u16
    }

    /// The hash tag shared by every key of a partition.
    pub fn tag(&self, partition: u16) -> String {
        format!("{{{}:{}}}", self.namespace, partition)
    }

    fn queue_tag(&self, queue: &str) -> String {
        self.tag(self.partition_of(queue))
    }

    pub fn execution(&self, queue: &str, id: &str) -> String {
        format!("{}:x:{}/{}", self.queue_tag(queue), queue, id)
    }

    /// The ids of the executions made to run `id` again (`Ledger::retry`).
    pub fn retries(&self, queue: &str, id: &str) -> String {
        format!("{}:r:{}/{}", self.queue_tag(queue), queue, id)
    }

    /// Prefix that, followed by an id, names an execution hash of `queue`.
    pub fn execution_prefix(&self, queue: &str) -> String {
        format!("{}:x:{}/", self.queue_tag(queue), queue)
    }

    /// The member that stands for an execution in the partition's timer indexes.
    pub fn member(queue: &str, id: &str) -> String {
        format!("{queue}/{id}")
    }

    pub fn pending(&self, queue: &str) -> String {
        format!("{}:q:{}{PENDING}", self.queue_tag(queue), queue)
    }

    pub fn slots(&self, queue: &str) -> String {
        format!("{}:q:{}{SLOTS}", self.queue_tag(queue), queue)
    }

    pub fn queue_settings(&self, queue: &str) -> String {
        format!("{}:q:{}{CONF}", self.queue_tag(queue), queue)
    }

    /// A queue's usage: totals, by model and the rolling window (`lua/_usage.lua`).
    pub fn queue_usage(&self, queue: &str) -> String {
        format!("{}:q:{}{USAGE}", self.queue_tag(queue), queue)
    }

    /// A queue's usage deltas not yet added to its sums (`lua/_usage.lua`).
    pub fn queue_usage_journal(&self, queue: &str) -> String {
        format!("{}:q:{}{USAGE_JOURNAL}", self.queue_tag(queue), queue)
    }

    /// The queues of `partition` whose usage journal holds deltas.
    pub fn usage_journals(&self, partition: u16) -> String {
        format!("{}:usage:journals", self.tag(partition))
    }

    /// What the fold script appends to `<queue prefix><queue>` for a queue's journal,
    /// usage and settings keys, in that order.
    pub fn usage_suffixes() -> [&'static str; 3] {
        [USAGE_JOURNAL, USAGE, CONF]
    }

    /// What follows `<queue prefix><queue>` in a queue settings key (for the prune script).
    pub fn queue_settings_suffix() -> &'static str {
        CONF
    }

    /// Prefix that, followed by `<queue>/<id>`, names a retries zset of `partition`.
    pub fn retries_prefix(&self, partition: u16) -> String {
        format!("{}:r:", self.tag(partition))
    }

    /// Where a terminal list's pinned executions go once past their retention.
    pub fn kept(&self, queue: &str, state: &str) -> String {
        format!("{}:kept", self.finished(queue, state))
    }

    /// Terminal-state index of a queue (`state` is a terminal state's name).
    pub fn finished(&self, queue: &str, state: &str) -> String {
        format!("{}:q:{}{FINISHED}{}", self.queue_tag(queue), queue, state)
    }

    /// How the watchdog scripts find the keys of any execution and queue of `partition`
    /// (they act on many queues at once): the execution prefix, the queue prefix, and the
    /// slots, pending and terminal-list suffixes, in that order (`lua/_watchdog.lua`).
    pub fn script_layout(&self, partition: u16) -> [String; 5] {
        let tag = self.tag(partition);
        [
            format!("{tag}:x:"),
            format!("{tag}:q:"),
            SLOTS.to_owned(),
            PENDING.to_owned(),
            FINISHED.to_owned(),
        ]
    }

    pub fn timer(&self, partition: u16, timer: Timer) -> String {
        format!("{}:timer:{}", self.tag(partition), timer.name())
    }

    pub fn queue_timer(&self, queue: &str, timer: Timer) -> String {
        self.timer(self.partition_of(queue), timer)
    }

    pub fn queues(&self, partition: u16) -> String {
        format!("{}:queues", self.tag(partition))
    }

    pub fn events(&self, partition: u16) -> String {
        format!("{}:events", self.tag(partition))
    }

    pub fn queue_events(&self, queue: &str) -> String {
        self.events(self.partition_of(queue))
    }

    pub fn lease(&self, partition: u16) -> String {
        format!("{}:lease", self.tag(partition))
    }

    pub fn epoch(&self, partition: u16) -> String {
        format!("{}:epoch", self.tag(partition))
    }

    pub fn watch_state(&self, partition: u16) -> String {
        format!("{}:watch", self.tag(partition))
    }

    /// Heartbeat verdicts of the systemic window (see `lua/round.lua`).
    pub fn stale_window(&self, partition: u16) -> String {
        format!("{}:watch:stale", self.tag(partition))
    }

    /// Heartbeat verdicts of the namespace-wide systemic count (see `lua/round.lua`).
    pub fn namespace_stale_window(&self, partition: u16) -> String {
        format!("{}:watch:stale:ns", self.tag(partition))
    }

    /// The namespace-wide half of the systemic rule (see `lua/systemic_sync.lua`).
    pub fn systemic(&self) -> String {
        format!("{{{}:watchdogs}}:systemic", self.namespace)
    }

    /// The namespace's marker: a random value the first replica sets and every replica
    /// remembers; gone or changed means Redis lost the namespace's data.
    pub fn incarnation(&self) -> String {
        format!("{{{}:watchdogs}}:incarnation", self.namespace)
    }

    /// Replicas that found the namespace's marker gone or changed and refuse to act,
    /// scored by when they last said so (read by the health verdict).
    pub fn data_lost_index(&self) -> String {
        format!("{{{}:watchdogs}}:data_lost", self.namespace)
    }

    pub fn replica_index(&self) -> String {
        format!("{{{}:watchdogs}}:index", self.namespace)
    }

    fn workers_tag(&self) -> String {
        format!("{{{}:workers}}", self.namespace)
    }

    pub fn worker(&self, worker_id: &str) -> String {
        format!("{}{}", self.worker_prefix(), worker_id)
    }

    /// Prefix that, followed by a worker id, names a worker hash.
    pub fn worker_prefix(&self) -> String {
        format!("{}:w:", self.workers_tag())
    }

    pub fn worker_index(&self) -> String {
        format!("{}:index", self.workers_tag())
    }

    /// The lease whose holder judges workers (tiers live in the workers' hash tag, so
    /// their writes are fenced by a lease of that tag, not by a partition's).
    pub fn workers_lease(&self) -> String {
        format!("{}:lease", self.workers_tag())
    }

    pub fn workers_epoch(&self) -> String {
        format!("{}:epoch", self.workers_tag())
    }

    /// Prefix that, followed by an idempotency key, names a hook call hash.
    pub fn hook_call_prefix(&self) -> String {
        format!("{}:hooks:c:", self.workers_tag())
    }

    pub fn hooks_pending(&self) -> String {
        format!("{}:hooks:pending", self.workers_tag())
    }

    pub fn hooks_running(&self) -> String {
        format!("{}:hooks:running", self.workers_tag())
    }

    pub fn hooks_settled(&self) -> String {
        format!("{}:hooks:settled", self.workers_tag())
    }

    /// Prefix that, followed by a partition number, names the zset of that partition's
    /// terminate hook outcomes.
    pub fn hooks_terminated_prefix(&self) -> String {
        format!("{}:hooks:term:", self.workers_tag())
    }

    /// Partition → the last event stream id whose hook calls were enqueued.
    pub fn hooks_cursor(&self) -> String {
        format!("{}:hooks:cursor", self.workers_tag())
    }

    /// The hash tag of every resource lease key: apart from the partitions', so a resource
    /// shared by executions of many queues lives in one place.
    fn resources_tag(&self) -> String {
        format!("{{{}:resources}}", self.namespace)
    }

    /// One resource: its capacity and holders.
    pub fn resource(&self, resource: &str) -> String {
        format!("{}{resource}", self.resource_prefix())
    }

    /// Prefix that, followed by a resource name, names a resource hash.
    pub fn resource_prefix(&self) -> String {
        format!("{}:r:", self.resources_tag())
    }

    /// The names of the resources held now.
    pub fn resource_names(&self) -> String {
        format!("{}:names", self.resources_tag())
    }

    /// The resources one execution holds (released together when its attempt ends).
    pub fn resources_of(&self, queue: &str, id: &str) -> String {
        format!("{}{queue}/{id}", self.resources_of_prefix())
    }

    /// Prefix that, followed by `<queue>/<id>`, names an execution's resource set.
    pub fn resources_of_prefix(&self) -> String {
        format!("{}:x:", self.resources_tag())
    }

    /// The units held by executions of `partition`, swept by that partition's watchdog.
    pub fn resource_holders(&self, partition: u16) -> String {
        format!("{}{partition}", self.resource_holders_prefix())
    }

    /// Prefix that, followed by a partition number, names its holders zset.
    pub fn resource_holders_prefix(&self) -> String {
        format!("{}:held:", self.resources_tag())
    }

    /// Worker tier changes, circuit openings and resets, and their actions' outcomes.
    pub fn worker_events(&self) -> String {
        format!("{}:events", self.workers_tag())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_queue_key_carries_its_partition_tag_first() {
        let ks = Keyspace::new("prod", 16).unwrap();
        let tag = ks.tag(ks.partition_of("emails"));
        for key in [
            ks.execution("emails", "e1"),
            ks.pending("emails"),
            ks.slots("emails"),
            ks.queue_settings("emails"),
            ks.finished("emails", "failed"),
            ks.queue_timer("emails", Timer::Heartbeat),
            ks.queue_events("emails"),
        ] {
            assert!(key.starts_with(&tag), "{key} does not start with {tag}");
        }
    }

    #[test]
    fn partition_is_stable_and_in_range() {
        let ks = Keyspace::new("prod", 16).unwrap();
        assert_eq!(ks.partition_of("emails"), ks.partition_of("emails"));
        let spread: std::collections::HashSet<u16> = (0..200)
            .map(|i| ks.partition_of(&format!("q{i}")))
            .collect();
        assert!(spread.iter().all(|p| *p < 16));
        assert!(spread.len() > 8, "queues should spread over partitions");
        // FNV-1a 64 of "emails" mod 1000 (computed independently): must never change, or
        // queues would move to other partitions on upgrade.
        assert_eq!(
            Keyspace::new("x", 1000).unwrap().partition_of("emails"),
            980
        );
    }

    #[test]
    fn bad_namespaces_and_partition_counts_are_rejected() {
        assert!(Keyspace::new("bad ns", 16).is_err());
        assert!(Keyspace::new("ok", 0).is_err());
        assert!(Keyspace::new("ok", 1025).is_err());
    }
}
