//! `enqueue`: put an execution into a queue, idempotently on its id.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{EnqueueOptions, Ledger, State};
use crate::error::{Error, Result};
use crate::keys::{Keyspace, Timer};
use crate::names;
use crate::otel::{self, TraceParent};
use crate::scripts::ENQUEUE;

/// Most executions one [`Ledger::enqueue_many`] call enqueues, to keep the script short.
pub const MAX_ENQUEUE_BATCH: usize = 1000;

/// What `enqueue` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Enqueued {
    /// The queue.
    pub queue: String,
    /// The execution id (given, or generated).
    pub id: String,
    /// False when an execution with this id already existed: nothing was written and the
    /// fields describe the existing execution.
    pub created: bool,
    /// True when the existing execution differs from this request — another payload, or
    /// a timing given here that differs from the stored one: the id was reused for other
    /// work (the HTTP API answers `422`). Always false when `created`.
    pub conflict: bool,
    /// Its state now.
    pub state: State,
    /// Attempts started so far.
    pub attempt: u32,
    /// When it was first enqueued.
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
    /// `max_payload_bytes`, [`Error::InvalidArgument`] for bad
    /// timings; nothing is written in those cases.
    pub async fn enqueue(
        &self,
        queue: &str,
        payload: &serde_json::Value,
        opts: EnqueueOptions,
    ) -> Result<Enqueued> {
        let text = self.json_text("payload", payload)?;
        self.enqueue_one(queue, text, opts).await
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
        self.enqueue_one(queue, payload.to_owned(), opts).await
    }

    /// Enqueues up to [`MAX_ENQUEUE_BATCH`] executions into one queue in one round trip
    /// and one script, for orchestrators that fan work out in bulk; each item is
    /// idempotent on its id as with [`enqueue`](Self::enqueue). Every item is checked
    /// before anything is written: one bad item and the whole batch is refused. The
    /// replies come back in the order of `items`.
    ///
    /// ```no_run
    /// # async fn demo(ledger: unstuck::Ledger) -> unstuck::Result<()> {
    /// use unstuck::EnqueueOptions;
    /// let pages: Vec<serde_json::Value> =
    ///     (1..=3).map(|n| serde_json::json!({"page": n})).collect();
    /// let batch = pages.iter().map(|p| (p, EnqueueOptions::new()));
    /// let enqueued = ledger.enqueue_many("crawl", batch).await?;
    /// assert_eq!(enqueued.len(), 3);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`enqueue`](Self::enqueue), for any item; [`Error::InvalidArgument`] for an empty
    /// batch or one above [`MAX_ENQUEUE_BATCH`].
    pub async fn enqueue_many<'p>(
        &self,
        queue: &str,
        items: impl IntoIterator<Item = (&'p serde_json::Value, EnqueueOptions)>,
    ) -> Result<Vec<Enqueued>> {
        let items = items
            .into_iter()
            .map(|(payload, opts)| Ok((self.json_text("payload", payload)?, opts)))
            .collect::<Result<Vec<_>>>()?;
        if items.is_empty() || items.len() > MAX_ENQUEUE_BATCH {
            return Err(Error::InvalidArgument {
                name: "items".into(),
                value: items.len().to_string(),
                expected: format!("1 to {MAX_ENQUEUE_BATCH} items"),
            });
        }
        self.enqueue_text(queue, items).await
    }

    async fn enqueue_one(
        &self,
        queue: &str,
        payload: String,
        opts: EnqueueOptions,
    ) -> Result<Enqueued> {
        let mut enqueued = self.enqueue_text(queue, vec![(payload, opts)]).await?;
        enqueued.pop().ok_or_else(|| Error::Protocol {
            script: "enqueue",
            detail: "no item in the reply".into(),
        })
    }

    async fn enqueue_text(
        &self,
        queue: &str,
        items: Vec<(String, EnqueueOptions)>,
    ) -> Result<Vec<Enqueued>> {
        names::validate_queue(queue)?;
        let mut items = items
            .into_iter()
            .map(|(payload, opts)| Item::check(payload, opts))
            .collect::<Result<Vec<_>>>()?;
        let sends = otel::Sends::start(
            queue,
            items
                .iter_mut()
                .map(|i| (i.id.as_str(), &mut i.traceparent)),
        );
        let result = self.enqueue_items(queue, items).await;
        sends.end(&result);
        result
    }

    async fn enqueue_items(&self, queue: &str, items: Vec<Item>) -> Result<Vec<Enqueued>> {
        let k = &self.keys;
        let partition = k.partition_of(queue);
        let (maxlen, hist) = self.limits();
        let mut call = ENQUEUE.call();
        call.key(k.pending(queue))
            .key(k.timer(partition, Timer::Deadline))
            .key(k.events(partition))
            .key(k.queue_settings(queue))
            .key(k.queues(partition))
            .arg(queue);
        for value in self.default_args.iter() {
            call.arg(value);
        }
        call.arg(maxlen).arg(hist);
        for item in &items {
            call.key(k.execution(queue, &item.id))
                .arg(&item.id)
                .arg(&item.payload)
                .arg(Keyspace::member(queue, &item.id));
            for value in item.timings.iter() {
                call.arg(value);
            }
            call.arg(&item.delay)
                .arg(item.traceparent.map(|t| t.to_string()).unwrap_or_default())
                .arg(&item.budget);
        }
        let reply = call.run(&mut self.conn.clone()).await?;
        match reply.status() {
            "ok" if reply.len() == 1 + 4 * items.len() => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    let at = 1 + 4 * i;
                    Ok(Enqueued {
                        queue: queue.to_owned(),
                        id: item.id,
                        created: reply.str(at)? == "created",
                        conflict: reply.str(at)? == "conflict",
                        state: reply.state(at + 1)?,
                        attempt: reply.u32(at + 2)?,
                        created_at: reply.time(at + 3)?,
                    })
                })
                .collect(),
            // Every argument was checked here: only a damaged queue-settings hash gets this far.
            "bad_arg" => Err(Error::Protocol {
                script: "enqueue",
                detail: format!(
                    "the stored settings of queue {queue:?} hold a malformed {}",
                    reply.str(1)?
                ),
            }),
            _ => Err(reply.unexpected()),
        }
    }
}

/// One execution to enqueue, checked and turned into script arguments.
struct Item {
    id: String,
    payload: String,
    timings: [String; crate::timings::COUNT],
    delay: String,
    /// Stored as the execution's context (the send span's, once it is started).
    traceparent: Option<TraceParent>,
    /// `tokens|cost|warning per mille`, or '' (the queue's).
    budget: String,
}

impl Item {
    fn check(payload: String, opts: EnqueueOptions) -> Result<Self> {
        let id = match opts.id {
            Some(id) => {
                names::validate_execution_id(&id)?;
                id
            }
            None => uuid::Uuid::now_v7().to_string(),
        };
        opts.timings.validate()?;
        if let Some(b) = &opts.budget {
            b.validate()?;
        }
        let delay = match opts.delay {
            Some(d) if d > crate::timings::MAX_DURATION => {
                return Err(Error::InvalidArgument {
                    name: "delay".into(),
                    value: crate::error::format_duration(d),
                    expected: "a duration of at most 365 days".into(),
                });
            }
            Some(d) => d.as_millis().to_string(),
            None => "0".into(),
        };
        Ok(Self {
            id,
            payload,
            timings: opts.timings.to_args(),
            delay,
            traceparent: opts.traceparent,
            budget: opts.budget.map(|b| b.to_text()).unwrap_or_default(),
        })
    }
}
