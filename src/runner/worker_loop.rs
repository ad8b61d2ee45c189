//! The one worker loop: register, claim into a `JoinSet`, honour what the watchdog asks,
//! drain, deregister — for every kind of job ([`Kind`]).
//!
//! The [`Runner`](super::Runner) (Rust closures) and the
//! [`Supervisor`](crate::supervise::Supervisor) (a command per attempt) differ only in how
//! one attempt runs; everything around it lives here once:
//! - **registration** under a fresh id, declaring the registry interval, and
//!   deregistration at the end (after the registry beats stopped, or the next beat would
//!   find the worker unknown and register it again);
//! - **registry beats** on the heartbeat thread (`pump.rs`), so jobs that hog their
//!   runtime's threads never make a live worker look gone; their replies may ask it to
//!   restart or drain (tier 1 of worker remediation);
//! - **claims** as long polls ([`Ledger::claim_wait_until`]) up to the concurrency, cut
//!   short by shutdown or a request;
//! - **stopping**: on shutdown or `restart`, every running attempt is told to stop at
//!   once; on `drain`, they finish first (unless shutdown comes meanwhile). Either way
//!   every attempt is joined and counted before the loop returns.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::outcome::{AttemptCounts, Outcome};
use super::pump::Held;
pub(crate) use super::pump::Pump;
use super::retry;
use super::worker::Identity;
use crate::error::{Error, Result};
use crate::ledger::{Claim, Ledger, WorkerRegistration, WorkerRequest};

/// How long to wait before claiming again after a claim failed on an unreachable Redis.
const CLAIM_RETRY: Duration = Duration::from_millis(500);

/// One kind of job: how a claimed attempt runs to its recorded outcome.
pub(crate) trait Kind: Send + Sync + 'static {
    /// The task that runs one claimed attempt and records its outcome. Called on the
    /// loop's task: what must be tracked before the attempt runs is tracked here.
    /// `pump` beats attempts from a thread of its own, for kinds that want that.
    fn launch(&self, claim: Claim, pump: &Pump) -> impl Future<Output = Outcome> + Send + 'static;

    /// `(queue, id)` of the attempts still ours, for the registry beats.
    fn running(&self) -> Vec<(String, String)>;

    /// Tells every running attempt to stop (shutdown, or a restart request).
    fn stop_all(&self);

    /// Registered under `worker_id`; about to claim.
    fn started(&self, _worker_id: &str) {}

    /// A line about the worker as a whole, for kinds that show their notes to a person.
    fn note(&self, _line: &str) {}
}

/// What the loop needs to know of its worker.
pub(crate) struct Settings {
    pub(crate) queue: String,
    pub(crate) concurrency: usize,
    /// How long one claim waits for work before it asks again (at most `MAX_CLAIM_WAIT`).
    pub(crate) claim_wait: Duration,
    pub(crate) registration: WorkerRegistration,
    pub(crate) worker_heartbeat_interval: Duration,
}

/// What a loop did.
pub(crate) struct Ran {
    pub(crate) tally: AttemptCounts,
    /// What the watchdog asked, when that is why the loop stopped.
    pub(crate) stopped_by: Option<WorkerRequest>,
    /// The id the worker last ran under (a renewal changes it); `exec` reports it.
    #[cfg_attr(not(feature = "supervise"), allow(dead_code))]
    pub(crate) worker_id: String,
    /// A claim refused for a reason other than an unreachable Redis: why the loop stopped.
    pub(crate) refused: Option<Error>,
}

/// Registers, claims and runs attempts of `kind` until `shutdown` fires, a request of
/// the watchdog stops it, or a claim is refused; then stops, joins and counts every
/// attempt and deregisters.
///
/// # Errors
/// Registering failed (transient errors retried first), or the heartbeat thread could
/// not connect; nothing was claimed then.
pub(crate) async fn run<K: Kind>(
    ledger: &Ledger,
    settings: Settings,
    kind: Arc<K>,
    shutdown: &CancellationToken,
) -> Result<Ran> {
    let Settings {
        queue,
        concurrency,
        claim_wait,
        mut registration,
        worker_heartbeat_interval,
    } = settings;
    // The watchdog must know how often to expect us, or a worker_timeout shorter than
    // our interval would judge a healthy worker gone.
    registration.heartbeat_interval = Some(worker_heartbeat_interval);
    retry(|| ledger.register_worker(&registration)).await?;
    let identity = Arc::new(Identity::new(registration));
    let held: Held = {
        let kind = kind.clone();
        Arc::new(move || kind.running())
    };
    let pump = match Pump::start(
        ledger.config().clone(),
        identity.clone(),
        held,
        worker_heartbeat_interval,
    )
    .await
    {
        Ok(pump) => pump,
        Err(e) => {
            deregister(ledger, &identity).await;
            return Err(e);
        }
    };
    tracing::info!(%queue, worker = %identity.worker_id(), concurrency, "worker started");
    kind.started(&identity.worker_id());

    // Claiming stops on shutdown, or on whatever the watchdog asks.
    let claiming = shutdown.child_token();
    let link = tokio::spawn({
        let (asked, claiming) = (identity.asked().clone(), claiming.clone());
        async move {
            asked.cancelled().await;
            claiming.cancel();
        }
    });
    let mut tally = AttemptCounts::default();
    let mut tasks = JoinSet::new();
    let claims = Claims {
        ledger,
        queue: &queue,
        concurrency,
        claim_wait,
        identity: &identity,
        claiming: &claiming,
    };
    let refused = claims.run(&*kind, &pump, &mut tasks, &mut tally).await;
    link.abort();

    let stopped_by = identity.request();
    if stopped_by == Some(WorkerRequest::Drain) && refused.is_none() {
        tracing::info!(worker = %identity.worker_id(), running = tasks.len(), "draining");
        kind.note("asked to drain: no more claims; waiting for the running attempts");
        while !tasks.is_empty() {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(joined) = tasks.join_next() => tally.count(joined),
            }
        }
    }
    kind.stop_all();
    while let Some(joined) = tasks.join_next().await {
        tally.count(joined);
    }
    pump.stop().await;
    deregister(ledger, &identity).await;
    let worker_id = identity.worker_id();
    tracing::info!(
        %queue,
        worker = %worker_id,
        attempts = ?tally,
        "worker stopped"
    );
    Ok(Ran {
        tally,
        stopped_by,
        worker_id,
        refused,
    })
}

/// The claiming half of the loop.
struct Claims<'a> {
    ledger: &'a Ledger,
    queue: &'a str,
    concurrency: usize,
    claim_wait: Duration,
    identity: &'a Identity,
    claiming: &'a CancellationToken,
}

impl Claims<'_> {
    /// Long-polls claims into `tasks` while slots are free, counting what finishes, until
    /// `claiming` fires or a claim is refused (the refusal is returned).
    async fn run<K: Kind>(
        &self,
        kind: &K,
        pump: &Pump,
        tasks: &mut JoinSet<Outcome>,
        tally: &mut AttemptCounts,
    ) -> Option<Error> {
        while !self.claiming.is_cancelled() {
            while let Some(joined) = tasks.try_join_next() {
                tally.count(joined);
            }
            let free = self.concurrency - tasks.len();
            if free == 0 {
                tokio::select! {
                    () = self.claiming.cancelled() => {}
                    Some(joined) = tasks.join_next() => tally.count(joined),
                }
                continue;
            }
            let (worker_id, replaced) = self.identity.claiming_as();
            let stop = self.claiming.child_token();
            let claim =
                self.ledger
                    .claim_wait_until(self.queue, &worker_id, free, self.claim_wait, &stop);
            tokio::pin!(claim);
            // A renewed id ends the wait; the claim still runs to its end, so a script
            // already sent is never abandoned.
            let claimed = tokio::select! {
                claimed = &mut claim => claimed,
                () = replaced.cancelled() => {
                    stop.cancel();
                    claim.await
                }
            };
            match claimed {
                Ok(batch) => {
                    for claim in batch.claims {
                        tally.claimed += 1;
                        tasks.spawn(kind.launch(claim, pump));
                    }
                }
                Err(e) if e.is_transient() => {
                    tracing::warn!(error = %e, "claim failed; trying again");
                    tokio::select! {
                        () = self.claiming.cancelled() => {}
                        () = tokio::time::sleep(CLAIM_RETRY) => {}
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "claim refused; stopping");
                    return Some(e);
                }
            }
        }
        None
    }
}

async fn deregister(ledger: &Ledger, identity: &Identity) {
    let worker_id = identity.worker_id();
    match retry(|| ledger.deregister_worker(&worker_id)).await {
        Ok(_) | Err(Error::UnknownWorker { .. }) => {}
        Err(e) => tracing::warn!(worker = %worker_id, error = %e, "deregistration failed"),
    }
}
