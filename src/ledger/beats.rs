//! `heartbeat` and `heartbeat_many`: workers say their attempts are alive; each reply says
//! whether to keep going (`lua/heartbeat.lua`). One script call per partition a batch
//! touches, the calls for different partitions in flight at once.

use std::collections::BTreeMap;

use futures_util::future::join_all;

use super::attempt::refusal;
use super::{AttemptToken, Heartbeat, HeartbeatReply, Ledger};
use crate::error::{Error, Result};
use crate::keys::{Keyspace, Timer};
use crate::scripts::{HEARTBEAT, Reply};

/// Most beats one [`Ledger::heartbeat_many`] call carries.
pub const MAX_HEARTBEAT_BATCH: usize = 1000;

/// One beat's script arguments, checked: its place in the batch and its checkpoint text.
struct Prepared {
    index: usize,
    checkpoint: Option<String>,
}

impl Ledger {
    /// Reports that the attempt is alive, with optional progress, checkpoint, fingerprint
    /// and usage. The first heartbeat moves dispatched → running. One round trip.
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound), [`Error::TokenMismatch`](crate::Error::TokenMismatch) for a token never issued for this
    /// attempt, [`Error::TooLarge`](crate::Error::TooLarge) for an oversized checkpoint,
    /// [`Error::InvalidArgument`] for an empty or over-long fingerprint or a bad usage
    /// delta (nothing written).
    pub async fn heartbeat(&self, token: &AttemptToken, beat: Heartbeat) -> Result<HeartbeatReply> {
        let mut replies = self.heartbeat_many(&[(token.clone(), beat)]).await?;
        replies.pop().unwrap_or_else(|| {
            Err(Error::Protocol {
                script: "heartbeat",
                detail: "no reply for the beat".into(),
            })
        })
    }

    /// Reports many attempts alive at once (a worker process's whole set): each beat is
    /// judged as [`heartbeat`](Self::heartbeat) judges it alone, in order, and gets its own
    /// reply or error in the same place of the result; a bad beat (a stale, forged or
    /// oversized one) does not fail the others. One script call per partition the beats
    /// touch, all in flight at once: a batch of one partition is one round trip.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for more than [`MAX_HEARTBEAT_BATCH`] beats (nothing
    /// written). A Redis error of one partition's call is the result of that partition's
    /// beats only (a beat is safe to send again, a usage delta counting once by its
    /// `seq`).
    pub async fn heartbeat_many(
        &self,
        beats: &[(AttemptToken, Heartbeat)],
    ) -> Result<Vec<Result<HeartbeatReply>>> {
        if beats.len() > MAX_HEARTBEAT_BATCH {
            return Err(Error::InvalidArgument {
                name: "heartbeats".into(),
                value: format!("{} beats", beats.len()),
                expected: format!("at most {MAX_HEARTBEAT_BATCH} in one call"),
            });
        }
        let mut results: Vec<Option<Result<HeartbeatReply>>> = vec![None; beats.len()];
        let mut by_partition: BTreeMap<u16, Vec<Prepared>> = BTreeMap::new();
        for (index, (token, beat)) in beats.iter().enumerate() {
            match self.check_beat(beat) {
                Ok(checkpoint) => by_partition
                    .entry(self.keys.partition_of(&token.queue))
                    .or_default()
                    .push(Prepared { index, checkpoint }),
                Err(error) => results[index] = Some(Err(error)),
            }
        }
        let calls = by_partition.into_iter().map(|(partition, items)| {
            let places: Vec<usize> = items.iter().map(|item| item.index).collect();
            async move { (places, self.beat_partition(partition, items, beats).await) }
        });
        for (places, outcome) in join_all(calls).await {
            match outcome {
                Ok(replies) => {
                    for (index, result) in replies {
                        results[index] = Some(result);
                    }
                }
                // A partition's call that failed fails its own beats only.
                Err(error) => {
                    for index in places {
                        results[index] = Some(Err(error.clone()));
                    }
                }
            }
        }
        Ok(results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(Error::Protocol {
                        script: "heartbeat",
                        detail: "a beat without a reply".into(),
                    })
                })
            })
            .collect())
    }

    /// Checks what a beat carries; returns its checkpoint's text.
    fn check_beat(&self, beat: &Heartbeat) -> Result<Option<String>> {
        let checkpoint = beat
            .checkpoint
            .as_ref()
            .map(|c| self.json_text("checkpoint", c))
            .transpose()?;
        if let Some(p) = &beat.progress {
            self.check_size("progress", p.len())?;
        }
        if let Some(fp) = &beat.fingerprint {
            super::check_fingerprint(fp)?;
        }
        if let Some(u) = &beat.usage {
            u.validate()?;
        }
        Ok(checkpoint)
    }

    /// The beats of one partition: one script call. Returns each beat's place and result.
    async fn beat_partition(
        &self,
        partition: u16,
        items: Vec<Prepared>,
        beats: &[(AttemptToken, Heartbeat)],
    ) -> Result<Vec<(usize, Result<HeartbeatReply>)>> {
        let k = &self.keys;
        let (maxlen, hist) = self.limits();
        let mut call = HEARTBEAT.key(k.events(partition));
        for timer in [
            Timer::Start,
            Timer::Heartbeat,
            Timer::Progress,
            Timer::Stuck,
            Timer::Cancel,
        ] {
            call.key(k.timer(partition, timer));
        }
        call.key(k.usage_journals(partition)).arg(maxlen).arg(hist);
        for item in &items {
            let (token, beat) = &beats[item.index];
            let q = token.queue.as_str();
            let member = Keyspace::member(q, &token.id);
            call.key(k.execution(q, &token.id));
            if beat.usage.is_some() {
                call.key(k.queue_usage_journal(q)).key(k.queue_settings(q));
            }
            call.arg(&member)
                .arg(token.attempt)
                .arg(&token.nonce)
                .arg(
                    beat.progress
                        .as_ref()
                        .map(|p| format!("={p}"))
                        .unwrap_or_default(),
                )
                .arg(
                    item.checkpoint
                        .as_ref()
                        .map(|c| format!("={c}"))
                        .unwrap_or_default(),
                )
                .arg(beat.fingerprint.as_deref().unwrap_or(""))
                .arg(
                    beat.usage
                        .as_ref()
                        .map(|u| u.arg(&member, token.attempt))
                        .unwrap_or_default(),
                );
        }
        let reply = call.run(&mut self.conn.clone()).await?;
        if reply.status() == "bad_arg" {
            return Err(reply.unexpected());
        }
        if reply.len() < items.len() {
            return Err(reply.unexpected());
        }
        for fold in items.len()..reply.len() {
            self.fold_in_background(reply.str(fold)?);
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let token = &beats[item.index].0;
            let words = reply.str(i)?.split('|').map(str::to_owned).collect();
            let result = self
                .beat_reply(Reply::from_words("heartbeat", words)?, token)
                .await;
            out.push((item.index, result));
        }
        Ok(out)
    }

    /// One beat's reply word, read.
    async fn beat_reply(&self, reply: Reply, token: &AttemptToken) -> Result<HeartbeatReply> {
        if let Some(refused) = refusal(&reply, token)? {
            return Ok(refused);
        }
        match reply.status() {
            "ok" if reply.len() == 1 => Ok(HeartbeatReply::Ok {
                cancel_requested: false,
                cancel_reason: None,
            }),
            "ok" => {
                if reply.str(2)? == "revived" {
                    self.leave_stale_windows(token).await;
                }
                let cause = reply.str(3)?;
                Ok(HeartbeatReply::Ok {
                    cancel_requested: reply.flag(1)?,
                    cancel_reason: (!cause.is_empty()).then(|| cause.to_owned()),
                })
            }
            _ => Err(reply.unexpected()),
        }
    }

    /// A revived execution was not lost after all: it no longer counts toward a systemic
    /// hold (nor twice in the running population). Bookkeeping for the watchdog's count,
    /// kept off the heartbeat script's keys so every plain beat stays as cheap as it was;
    /// if it fails, the entry simply ages out of the window.
    async fn leave_stale_windows(&self, token: &AttemptToken) {
        let k = &self.keys;
        let p = k.partition_of(&token.queue);
        let member = Keyspace::member(&token.queue, &token.id);
        let mut pipe = redis::pipe();
        pipe.zrem(k.stale_window(p), &member)
            .ignore()
            .zrem(k.namespace_stale_window(p), &member)
            .ignore();
        if let Err(error) = pipe.query_async::<()>(&mut self.conn.clone()).await {
            tracing::debug!(%error, "a revived execution stays in the systemic window until it ages out");
        }
    }
}
