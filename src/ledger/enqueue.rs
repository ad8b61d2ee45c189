//! `enqueue`: put an execution into a queue, idempotently on its id.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{EnqueueOptions, Ledger, State, ms_to_time};
use crate::error::{Error, Result};
use crate::keys::{self, Keyspace, Timer};
use crate::scripts::{ENQUEUE, Reply};

/// What `enqueue` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enqueued {
    pub queue: String,
    pub id: String,
    /// False when an execution with this id already existed: nothing was written and the
    /// fields describe the existing execution.
    pub created: bool,
    pub state: State,
    pub attempt: u32,
    pub created_at: DateTime<Utc>,
}

impl Ledger {
    /// Enqueues an execution with a JSON payload. One round trip.
    ///
    /// ```no_run
    /// # async fn demo(ledger: unstuck::Ledger) -> unstuck::Result<()> {
    /// use std::time::Duration;
    /// use unstuck::EnqueueOptions;
    /// let opts = EnqueueOptions::new()
    ///     .id("report-2026-11")
    ///     .heartbeat_timeout(Duration::from_secs(10))
    ///     .deadline(Duration::from_secs(3600));
    /// let e = ledger.enqueue("reports", &serde_json::json!({"month": 11}), opts).await?;
    /// assert_eq!(e.id, "report-2026-11");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidName`] for a bad queue name or id, [`Error::TooLarge`] above
    /// `max_payload_bytes`, [`Error::InvalidDuration`]/[`Error::InvalidConfig`] for bad
    /// timings; nothing is written in those cases.
    pub async fn enqueue(
        &self,
        queue: &str,
        payload: &serde_json::Value,
        opts: EnqueueOptions,
    ) -> Result<Enqueued> {
        let text = self.json_text("payload", payload)?;
        self.enqueue_text(queue, &text, opts).await
    }

    /// Like [`enqueue`](Self::enqueue) for a payload that arrives as JSON text (from
    /// another language, a file, an HTTP body).
    ///
    /// # Errors
    /// As `enqueue`, plus [`Error::NotJson`] when the text is not one JSON document.
    pub async fn enqueue_json(
        &self,
        queue: &str,
        payload: &str,
        opts: EnqueueOptions,
    ) -> Result<Enqueued> {
        self.check_size("payload", payload.len())?;
        serde_json::from_str::<serde::de::IgnoredAny>(payload).map_err(|e| Error::NotJson {
            what: "payload",
            reason: e.to_string(),
        })?;
        self.enqueue_text(queue, payload, opts).await
    }

    async fn enqueue_text(
        &self,
        queue: &str,
        payload: &str,
        opts: EnqueueOptions,
    ) -> Result<Enqueued> {
        keys::validate_queue(queue)?;
        let id = match opts.id {
            Some(id) => {
                keys::validate_execution_id(&id)?;
                id
            }
            None => uuid::Uuid::now_v7().to_string(),
        };
        opts.timings.validate()?;
        let delay = match opts.delay {
            Some(d) if d > crate::config::MAX_DURATION => {
                return Err(Error::InvalidDuration {
                    key: "delay",
                    value: d,
                    expected: "at most 365 days",
                });
            }
            Some(d) => d.as_millis().to_string(),
            None => "0".into(),
        };
        let k = &self.keys;
        let partition = k.partition_of(queue);
        let (maxlen, hist) = self.limits();
        let mut call = ENQUEUE.prepare_invoke();
        call.key(k.execution(queue, &id))
            .key(k.pending(queue))
            .key(k.timer(partition, Timer::Deadline))
            .key(k.events(partition))
            .key(k.queue_settings(queue))
            .key(k.queues(partition))
            .arg(queue)
            .arg(&id)
            .arg(payload)
            .arg(Keyspace::member(queue, &id));
        for value in opts.timings.to_args() {
            call.arg(value);
        }
        for value in self.default_args.iter() {
            call.arg(value);
        }
        call.arg(maxlen).arg(hist).arg(delay);
        let reply = Reply::parse("enqueue", call.invoke_async(&mut self.conn.clone()).await?)?;
        match reply.status() {
            "created" | "exists" => Ok(Enqueued {
                queue: queue.to_owned(),
                id,
                created: reply.status() == "created",
                state: reply.str(1)?.parse()?,
                attempt: reply.int(2)? as u32,
                created_at: ms_to_time(reply.int(3)?)?,
            }),
            "bad_arg" => Err(Error::InvalidConfig {
                key: reply.str(1)?.to_owned(),
                value: "(stored queue settings or argument)".into(),
                expected: "a whole number of milliseconds".into(),
            }),
            _ => Err(reply.unexpected()),
        }
    }
}
