//! Terminate first, clean up after: a deadline verdict on running work, when a hook on
//! `execution.terminate` is configured, waits for that hook (`lua/round.lua` marks the
//! execution; the hook feed calls the hook). Its outcomes come back per partition
//! (`lua/hook_complete.lua`), and the partition's holder acts on them under its lease:
//! timed out and the slot released on success (`lua/terminated.lua`), another call after a
//! backoff on failure — the slot kept until then.

use redis::AsyncCommands;

use super::Watchdog;
use crate::error::Result;
use crate::hooks::NewCall;
use crate::keys::Timer;
use crate::scripts::TERMINATED;

/// Outcomes handled per partition per pass.
const BATCH: usize = 50;

impl Watchdog {
    /// Whether a hook on `execution.terminate` is configured.
    pub(crate) fn terminate_first(&self) -> bool {
        self.config
            .hooks
            .iter()
            .any(|h| h.is_on("execution.terminate"))
    }

    /// The target of an execution's `n`th terminate call, as the outbox keeps it.
    pub(crate) fn terminate_target(
        partition: u16,
        member: &str,
        attempt: u32,
        n: u32,
        base: &str,
    ) -> String {
        format!("{partition}|{member}|{attempt}|{n}|{base}")
    }

    /// Acts on the terminate outcomes of `partition` that are due. Each is removed once
    /// acted on; acting twice changes nothing (the script re-checks, the next call's key is
    /// fixed), so a replica that dies in between loses nothing.
    ///
    /// # Errors
    /// [`crate::Error::LeaseLost`], [`crate::Error::Redis`].
    pub(crate) async fn settle_terminates(&self, partition: u16) -> Result<()> {
        let k = &self.ledger.keys;
        let zset = format!("{}{partition}", k.hooks_terminated_prefix());
        let now = self.redis_now().await?;
        let due: Vec<String> = self
            .ledger
            .conn
            .clone()
            .zrangebyscore_limit(&zset, "-inf", now, 0, BATCH as isize)
            .await?;
        for entry in due {
            let parts: Vec<&str> = entry.splitn(6, '|').collect();
            let [outcome, n, attempt, hook, base, member] = parts[..] else {
                tracing::warn!(entry, "unreadable terminate outcome dropped");
                let _: () = self.ledger.conn.clone().zrem(&zset, &entry).await?;
                continue;
            };
            let (n, attempt) = (
                n.parse::<u32>().unwrap_or(1),
                attempt.parse::<u32>().unwrap_or(0),
            );
            if outcome == "ok" {
                self.terminated(
                    partition,
                    member,
                    attempt,
                    &format!("hook {hook} succeeded"),
                )
                .await?;
            } else {
                let previous = if n <= 1 {
                    base.to_owned()
                } else {
                    format!("{base}#{n}")
                };
                let body: Option<String> = self
                    .ledger
                    .conn
                    .clone()
                    .hget(format!("{}{previous}", k.hook_call_prefix()), "body")
                    .await?;
                let call = NewCall {
                    key: format!("{base}#{}", n + 1),
                    hook: hook.to_owned(),
                    body: body.unwrap_or_else(|| "{}".into()),
                    terminate: Self::terminate_target(partition, member, attempt, n + 1, base),
                };
                tracing::warn!(
                    member,
                    hook,
                    try_ = n + 1,
                    "terminate failed; calling it again, the slot kept"
                );
                self.outbox().enqueue(&[call], None).await?;
            }
            let _: () = self.ledger.conn.clone().zrem(&zset, &entry).await?;
        }
        Ok(())
    }

    /// Writes the deferred verdict of `member`: timed out, its slot released.
    async fn terminated(
        &self,
        partition: u16,
        member: &str,
        attempt: u32,
        detail: &str,
    ) -> Result<bool> {
        let epoch = self.epoch_of(partition)?;
        let k = &self.ledger.keys;
        let (maxlen, hist) = self.ledger.limits();
        let mut call = TERMINATED.call();
        call.key(k.lease(partition)).key(k.events(partition));
        for timer in Timer::ALL {
            call.key(k.timer(partition, timer));
        }
        call.key(k.watch_state(partition));
        call.arg(&self.replica_id)
            .arg(&epoch)
            .arg(maxlen)
            .arg(hist)
            .arg(&k.script_layout(partition)[..])
            .arg(member)
            .arg(attempt)
            .arg(detail);
        let reply = call.run(&mut self.ledger.conn.clone()).await?;
        match reply.status() {
            "ok" => reply.flag(1),
            "lease_lost" => Err(self.lost(partition, &epoch)),
            _ => Err(reply.unexpected()),
        }
    }
}
