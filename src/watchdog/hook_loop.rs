//! The watchdog's side of the hooks: it feeds the outbox from the event streams of the
//! partitions it holds (worker tier hooks are enqueued by the tier scripts themselves),
//! and delivers what the outbox holds — any replica may deliver any call, one at a time
//! per call by its claim.

use std::sync::{OnceLock, PoisonError};
use std::time::Duration;

use redis::AsyncCommands;
use serde_json::json;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Watchdog;
use crate::error::{Error, Result};
use crate::hooks::{self, ClaimedCall, NewCall, Outbox};

/// Between two passes of the hook loop.
const HOOK_POLL: Duration = Duration::from_millis(250);

/// Events read per partition per pass, and calls claimed per pass.
const FEED_BATCH: usize = 200;
const CLAIM_BATCH: usize = 8;

/// What one delivery pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookReport {
    /// Calls delivered and settled: `(idempotency key, succeeded)`.
    pub settled: Vec<(String, bool)>,
    /// Calls whose claim lapsed before they were settled (another replica has them).
    pub lapsed: u64,
}

impl Watchdog {
    pub(crate) fn outbox(&self) -> Outbox {
        Outbox::new(self.ledger.clone())
    }

    fn http(&self) -> &reqwest::Client {
        static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
        CLIENT.get_or_init(reqwest::Client::new)
    }

    /// Puts the hook calls owed by the events of the partitions this replica holds in the
    /// outbox, from where the last pass stopped (a partition seen for the first time
    /// starts at its newest event). Returns how many calls were added.
    ///
    /// # Errors
    /// [`Error::Redis`].
    pub async fn feed_hooks(&self) -> Result<u64> {
        let hooks = &self.config.hooks;
        if !hooks
            .iter()
            .any(|h| h.on.iter().any(|k| k.starts_with("execution.")))
        {
            return Ok(0);
        }
        let k = &self.ledger.keys;
        let mut added = 0;
        for (partition, epoch) in self.held_partitions() {
            let field = format!("p:{partition}");
            // The cursor is read from Redis once per lease (another replica may have moved
            // it meanwhile), then kept here: one stream read per partition and pass.
            let cached = self
                .hook_cursors
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&partition)
                .filter(|(e, _)| *e == epoch)
                .map(|(_, c)| c.clone());
            let cursor: Option<String> = match cached {
                Some(c) => Some(c),
                None => {
                    self.ledger
                        .conn
                        .clone()
                        .hget(k.hooks_cursor(), &field)
                        .await?
                }
            };
            let Some(cursor) = cursor else {
                let newest: redis::streams::StreamRangeReply = self
                    .ledger
                    .conn
                    .clone()
                    .xrevrange_count(k.events(partition), "+", "-", 1)
                    .await?;
                let at = newest
                    .ids
                    .first()
                    .map_or("0-0".to_owned(), |e| e.id.clone());
                self.outbox().enqueue(&[], Some((&field, &at))).await?;
                continue;
            };
            if self.terminate_first() {
                self.settle_terminates(partition).await?;
            }
            let events = self
                .ledger
                .read_events(partition, Some(&cursor), FEED_BATCH)
                .await?;
            let Some(last) = events.last() else {
                self.remember_cursor(partition, &epoch, cursor);
                continue;
            };
            let mut calls = Vec::new();
            for event in &events {
                let kind = hooks::execution_kind(event);
                for hook in hooks.iter().filter(|h| hooks::calls_on(h, event)) {
                    let key = format!("{}:{partition}:{}", hook.name, event.stream_id);
                    let body = json!({
                        "kind": kind,
                        "idempotency_key": key,
                        "event": event,
                    });
                    let terminate = if kind == Some("execution.terminate") {
                        let member = format!("{}/{}", event.queue, event.execution_id);
                        Self::terminate_target(partition, &member, event.attempt, 1, &key)
                    } else {
                        String::new()
                    };
                    calls.push(NewCall {
                        key,
                        hook: hook.name.clone(),
                        body: body.to_string(),
                        terminate,
                    });
                }
            }
            added += self
                .outbox()
                .enqueue(&calls, Some((&field, &last.stream_id)))
                .await?;
            self.remember_cursor(partition, &epoch, last.stream_id.clone());
        }
        Ok(added)
    }

    fn remember_cursor(&self, partition: u16, epoch: &str, cursor: String) {
        let mut cursors = self
            .hook_cursors
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        cursors.insert(partition, (epoch.to_owned(), cursor));
    }

    /// Claims the calls waiting in the outbox (lapsed claims first), delivers them at
    /// once, and settles each: its outcome is an event, and a worker's terminate or kill
    /// action is decided by it.
    ///
    /// # Errors
    /// [`Error::Redis`].
    pub async fn deliver_hooks(&self) -> Result<HookReport> {
        let mut report = HookReport::default();
        let Some(visibility) = self.config.hooks.iter().map(|h| h.visibility()).max() else {
            return Ok(report);
        };
        let token = format!("{}:{}", self.replica_id, uuid::Uuid::now_v7().simple());
        let calls = self.outbox().claim(CLAIM_BATCH, visibility, &token).await?;
        let mut deliveries = JoinSet::new();
        for call in calls {
            let wd = self.clone();
            let token = token.clone();
            deliveries.spawn(async move { wd.deliver_one(call, &token).await });
        }
        while let Some(done) = deliveries.join_next().await {
            match done {
                Ok(Ok(Some(settled))) => report.settled.push(settled),
                Ok(Ok(None)) => report.lapsed += 1,
                Ok(Err(error)) => tracing::warn!(%error, "a hook outcome was not recorded"),
                Err(panic) => tracing::error!(%panic, "a hook delivery panicked"),
            }
        }
        Ok(report)
    }

    /// Delivers one call and settles it; `None` when its claim had lapsed meanwhile.
    async fn deliver_one(&self, call: ClaimedCall, token: &str) -> Result<Option<(String, bool)>> {
        let (ok, detail) = match self.config.hooks.iter().find(|h| h.name == call.hook) {
            Some(hook) => hooks::deliver(hook, self.http(), &call.key, &call.body).await,
            None => (
                false,
                format!("no hook named {:?} is configured", call.hook),
            ),
        };
        if ok {
            tracing::info!(hook = %call.hook, key = %call.key, delivery = call.delivery, detail, "hook called");
        } else {
            tracing::warn!(hook = %call.hook, key = %call.key, delivery = call.delivery, detail, "hook failed");
        }
        let settled = self
            .outbox()
            .complete(&call, token, ok, &detail, &self.replica_id)
            .await?;
        Ok(settled.then_some((call.key, ok)))
    }

    /// Feeds and drains the outbox every [`HOOK_POLL`] until `stop` fires (when hooks are
    /// configured).
    pub(crate) async fn hooks_loop(&self, stop: CancellationToken) {
        if self.config.hooks.is_empty() {
            return;
        }
        tracing::info!(replica = %self.replica_id, hooks = self.config.hooks.len(), "hook delivery started");
        while !stop.is_cancelled() {
            if let Err(error) = self.feed_hooks().await {
                tracing::warn!(%error, "feeding the hook outbox failed");
            }
            match self.deliver_hooks().await {
                Ok(report) if !report.settled.is_empty() => continue,
                Ok(_) => {}
                Err(Error::DataLost { .. }) => break,
                Err(error) => tracing::warn!(%error, "delivering hooks failed"),
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(HOOK_POLL) => {}
            }
        }
        tracing::info!(replica = %self.replica_id, "hook delivery stopped");
    }
}
