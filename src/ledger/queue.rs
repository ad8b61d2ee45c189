//! Queue settings (capacity, default timings), shared through Redis.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::options::{MAX_WAIT_FIELD, WAIT_EXPIRY_FIELD};
use super::pause::pause_in;
use super::{Ledger, QueuePause, QueueSettings, State, WaitExpiry};
use crate::error::{Error, Result};
use crate::names;
use crate::retention::Retention;
use crate::scripts::{QUEUE_OVERVIEW, SET_QUEUE};
use crate::timings::{self, Timings};

/// A queue at one instant: what waits, what runs, its capacity, settings and pause; what
/// `GET /v1/queues/{queue}` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct QueueOverview {
    /// The queue's name.
    pub name: String,
    /// The partition its keys live in.
    pub partition: u16,
    /// Executions waiting, retries still backing off included.
    pub depth: u64,
    /// Of those, the ones claimable now.
    pub available: u64,
    /// Executions holding a slot (dispatched, running or stuck).
    pub active: u64,
    /// Most slots in use at once (its own capacity, or the ledger's default).
    pub capacity: u64,
    /// When the first waiting execution became (or becomes) claimable.
    pub oldest_queued_at: Option<DateTime<Utc>>,
    /// How long the oldest claimable execution has waited (`None` when none is
    /// claimable yet).
    #[serde(
        default,
        rename = "oldest_queued_age_ms",
        with = "crate::timings::millis"
    )]
    #[cfg_attr(feature = "server", schema(value_type = Option<u64>))]
    pub oldest_queued_age: Option<Duration>,
    /// Finished executions still kept, by terminal state (not serialized: `/metrics`
    /// counts them).
    #[serde(skip)]
    pub finished: Vec<(State, u64)>,
    /// The capacity it sets itself (`None`: the ledger's default applies).
    #[serde(default)]
    pub own_capacity: Option<u32>,
    /// Its own timings (unset ones: the global defaults apply).
    pub timings: Timings,
    /// Its own retention (unset fields: the ledger's applies).
    pub retention: Retention,
    /// Whether it is paused ([`Ledger::pause_queue`]): its claims take nothing.
    #[serde(default)]
    pub paused: bool,
    /// Its pause, while paused: since when, by whom, why.
    #[serde(default)]
    pub pause: Option<QueuePause>,
    /// Longest wait an `await` may ask for (`None`: 7 days).
    #[serde(default, rename = "max_wait_ms", with = "crate::timings::millis")]
    #[cfg_attr(feature = "server", schema(value_type = Option<u64>))]
    pub max_wait: Option<Duration>,
    /// What happens at a wait deadline nobody resumed by (`None`: `fail`).
    #[serde(default)]
    pub on_wait_expiry: Option<WaitExpiry>,
    /// The default budget of its executions.
    #[serde(default)]
    pub budget: Option<super::Budget>,
    /// Its budget per rolling window (spent: the queue is paused by `budget`).
    #[serde(default)]
    pub window_budget: Option<super::WindowBudget>,
}

impl QueueOverview {
    /// Its stored settings, as [`Ledger::set_queue`] took them.
    pub fn settings(&self) -> QueueSettings {
        QueueSettings {
            capacity: self.own_capacity,
            timings: self.timings.clone(),
            retention: self.retention.clone(),
            max_wait: self.max_wait,
            on_wait_expiry: self.on_wait_expiry,
            budget: self.budget,
            window_budget: self.window_budget,
        }
    }
}

impl Ledger {
    /// Replaces a queue's settings. Executions already enqueued keep the timings they were
    /// enqueued with; capacity applies to the next claim.
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::InvalidArgument`].
    pub async fn set_queue(&self, queue: &str, settings: &QueueSettings) -> Result<()> {
        names::validate_queue(queue)?;
        settings.validate()?;
        let k = &self.keys;
        let mut call = SET_QUEUE.call();
        call.key(k.queue_settings(queue))
            .key(k.queues(k.partition_of(queue)))
            .arg(queue);
        if let Some(cap) = settings.capacity {
            call.arg("cap").arg(cap);
        }
        for (field, value) in timings::STORED_FIELDS
            .iter()
            .zip(settings.timings.to_args())
        {
            if !value.is_empty() {
                call.arg(*field).arg(value);
            }
        }
        for (field, value) in settings.retention.to_pairs() {
            call.arg(field).arg(value);
        }
        if let Some(max) = settings.max_wait {
            call.arg(MAX_WAIT_FIELD).arg(max.as_millis() as u64);
        }
        if let Some(expiry) = settings.on_wait_expiry {
            call.arg(WAIT_EXPIRY_FIELD)
                .arg(u8::from(expiry == WaitExpiry::Requeue));
        }
        for (field, value) in
            super::usage::budget_pairs(settings.budget.as_ref(), settings.window_budget.as_ref())
        {
            call.arg(field).arg(value);
        }
        let reply = call.run(&mut self.conn.clone()).await?;
        match reply.status() {
            "ok" => Ok(()),
            _ => Err(reply.unexpected()),
        }
    }

    /// A queue's stored settings (all `None` when it has none).
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::Redis`].
    pub async fn queue_settings(&self, queue: &str) -> Result<QueueSettings> {
        names::validate_queue(queue)?;
        let stored: HashMap<String, String> = self
            .conn
            .clone()
            .hgetall(self.keys.queue_settings(queue))
            .await?;
        let capacity = match stored.get("cap") {
            None => None,
            Some(v) => Some(v.parse::<u32>().map_err(|_| Error::Protocol {
                script: "queue settings",
                detail: format!("capacity {v:?} is not a whole number"),
            })?),
        };
        let damaged = |field: &str, v: &str| Error::Protocol {
            script: "queue settings",
            detail: format!("{field} {v:?} is not a whole number"),
        };
        let max_wait = match stored.get(MAX_WAIT_FIELD) {
            None => None,
            Some(v) => Some(Duration::from_millis(
                v.parse().map_err(|_| damaged("max_wait", v))?,
            )),
        };
        let on_wait_expiry = match stored.get(WAIT_EXPIRY_FIELD).map(String::as_str) {
            None => None,
            Some("1") => Some(WaitExpiry::Requeue),
            Some(_) => Some(WaitExpiry::Fail),
        };
        let (budget, window_budget) = super::usage::budgets_from(&stored);
        Ok(QueueSettings {
            budget,
            window_budget,
            capacity,
            timings: Timings::from_stored(&stored)?,
            retention: Retention::from_stored(&stored)?,
            max_wait,
            on_wait_expiry,
        })
    }

    /// A queue's counts at one instant (one read-only script), and its settings (one more
    /// read), after its usage journal is folded (a window budget it spent has paused it).
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::Redis`].
    pub async fn queue_overview(&self, queue: &str) -> Result<QueueOverview> {
        names::validate_queue(queue)?;
        self.fold_usage(queue).await?;
        let k = &self.keys;
        let terminal: Vec<State> = State::ALL.into_iter().filter(|s| s.is_terminal()).collect();
        let mut call = QUEUE_OVERVIEW.key(k.pending(queue));
        call.key(k.slots(queue)).key(k.queue_settings(queue));
        for state in &terminal {
            call.key(k.finished(queue, state.as_str()));
        }
        let reply = call
            .arg(self.config.default_capacity)
            .run(&mut self.conn.clone())
            .await?;
        if reply.status() != "ok" {
            return Err(reply.unexpected());
        }
        let now = reply.time(6)?;
        let pause = pause_in(&reply, 7)?;
        let settings = self.queue_settings(queue).await?;
        let oldest = match reply.str(5)? {
            "" => None,
            _ => Some(reply.time(5)?),
        };
        Ok(QueueOverview {
            name: queue.to_owned(),
            partition: k.partition_of(queue),
            depth: reply.u64(1)?,
            available: reply.u64(2)?,
            active: reply.u64(3)?,
            capacity: reply.u64(4)?,
            oldest_queued_at: oldest,
            oldest_queued_age: oldest.and_then(|at| (now - at).to_std().ok()),
            finished: terminal
                .iter()
                .enumerate()
                .map(|(i, s)| Ok((*s, reply.u64(10 + i)?)))
                .collect::<Result<_>>()?,
            own_capacity: settings.capacity,
            timings: settings.timings,
            retention: settings.retention,
            paused: pause.is_some(),
            pause,
            max_wait: settings.max_wait,
            on_wait_expiry: settings.on_wait_expiry,
            budget: settings.budget,
            window_budget: settings.window_budget,
        })
    }

    /// [`queue_overview`](Self::queue_overview) of every known queue, by name.
    ///
    /// # Errors
    /// [`Error::Redis`].
    pub async fn queue_overviews(&self) -> Result<Vec<QueueOverview>> {
        let mut out = Vec::new();
        for queue in self.queues().await? {
            out.push(self.queue_overview(&queue).await?);
        }
        Ok(out)
    }

    /// Names of the queues that have ever been used or configured, sorted.
    ///
    /// # Errors
    /// [`Error::Redis`].
    pub async fn queues(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for p in 0..self.keys.partitions() {
            let mut part: Vec<String> = self.conn.clone().smembers(self.keys.queues(p)).await?;
            names.append(&mut part);
        }
        names.sort();
        Ok(names)
    }

    /// Executions of a queue that hold a capacity slot right now.
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::Redis`].
    pub async fn slots_in_use(&self, queue: &str) -> Result<usize> {
        names::validate_queue(queue)?;
        let n: usize = self.conn.clone().hlen(self.keys.slots(queue)).await?;
        Ok(n)
    }

    /// Executions waiting in the queue (including retries still backing off).
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::Redis`].
    pub async fn pending_count(&self, queue: &str) -> Result<usize> {
        names::validate_queue(queue)?;
        let n: usize = self.conn.clone().zcard(self.keys.pending(queue)).await?;
        Ok(n)
    }
}
