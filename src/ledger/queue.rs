//! Queue settings (capacity, default timings), shared through Redis.

use std::collections::HashMap;

use redis::AsyncCommands;

use super::{Ledger, QueueSettings};
use crate::error::{Error, Result};
use crate::names;
use crate::scripts::SET_QUEUE;
use crate::timings::{self, Timings};

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
        Ok(QueueSettings {
            capacity,
            timings: Timings::from_stored(&stored)?,
        })
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
