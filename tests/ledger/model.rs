//! A state-machine test: random sequences of ledger calls on a real Redis, each reply and
//! resulting state predicted by a small in-memory model, the stored indexes checked
//! against the invariants after every call. Plus a test that the invariant checker itself
//! notices broken indexes.

use crate::support;

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use chrono::DateTime;
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::json;
use unstuck::*;

const QUEUE: &str = "m";
const IDS: usize = 3;
const CAPACITY: usize = 2;
const MAX_ATTEMPTS: u32 = 2;

/// One call. A token argument `n` picks the n-th most recently issued token (0: the
/// latest; modulo their number), so stale tokens of earlier attempts keep being used; with
/// no token issued yet the call is skipped.
#[derive(Debug, Clone)]
enum Op {
    Enqueue(usize),
    Claim,
    Heartbeat(usize),
    Complete(usize),
    Fail(usize, bool),
    Cancel(usize),
    AckCancel(usize),
}

/// Mostly the latest token, so sequences get deep into retries; sometimes an older one.
fn token() -> impl Strategy<Value = usize> {
    prop_oneof![3 => Just(0usize), 1 => 1..6usize]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..IDS).prop_map(Op::Enqueue),
        4 => Just(Op::Claim),
        2 => token().prop_map(Op::Heartbeat),
        1 => token().prop_map(Op::Complete),
        3 => (token(), any::<bool>()).prop_map(|(t, r)| Op::Fail(t, r)),
        2 => (0..IDS).prop_map(Op::Cancel),
        1 => token().prop_map(Op::AckCancel),
    ]
}

#[derive(Debug, Clone, PartialEq)]
struct Exec {
    state: State,
    attempt: u32,
    cancel_requested: bool,
}

/// What the model says about a token.
enum Verdict {
    Current,
    Stale(u32, State),
    Terminal(State, StopReason),
}

/// The reply of type `$kind` to a token the model judges not current; `None` when current.
macro_rules! rejection {
    ($verdict:expr, $kind:ident, $terminal:ident) => {
        match $verdict {
            Verdict::Terminal(state, stop_reason) => Some($kind::$terminal { state, stop_reason }),
            Verdict::Stale(current_attempt, state) => Some($kind::StaleAttempt {
                current_attempt,
                state,
            }),
            Verdict::Current => None,
        }
    };
}

#[derive(Debug, Default)]
struct Model {
    execs: BTreeMap<String, Exec>,
    tokens: Vec<AttemptToken>,
}

fn stop_reason(state: State) -> StopReason {
    match state {
        State::Succeeded => StopReason::Succeeded,
        State::Failed => StopReason::Failed,
        _ => StopReason::Cancelled,
    }
}

fn text(error: Error) -> String {
    error.to_string()
}

/// Timestamps are Redis's to choose; replies are compared without them.
fn epoch() -> DateTime<chrono::Utc> {
    DateTime::UNIX_EPOCH
}

impl Model {
    fn count(&self, pick: impl Fn(State) -> bool) -> usize {
        self.execs.values().filter(|e| pick(e.state)).count()
    }

    fn token(&self, n: usize) -> Option<AttemptToken> {
        let len = self.tokens.len();
        (len > 0).then(|| self.tokens[len - 1 - n % len].clone())
    }

    fn verdict(&self, token: &AttemptToken) -> Verdict {
        let e = &self.execs[token.execution_id()];
        if e.state.is_terminal() {
            Verdict::Terminal(e.state, stop_reason(e.state))
        } else if token.attempt() < e.attempt || e.state == State::Queued {
            Verdict::Stale(e.attempt, e.state)
        } else {
            Verdict::Current
        }
    }

    fn exec(&mut self, token: &AttemptToken) -> &mut Exec {
        self.execs
            .get_mut(token.execution_id())
            .expect("token of a known id")
    }
}

/// Runs one call on the ledger and the model; an error describes the first disagreement.
async fn step(ledger: &Ledger, model: &mut Model, op: &Op) -> Result<(), String> {
    let differ = |actual: String, expected: String| {
        Err(format!("replied {actual}, the model expected {expected}"))
    };
    match *op {
        Op::Enqueue(n) => {
            let id = format!("e{n}");
            let opts = EnqueueOptions::new()
                .id(&id)
                .max_attempts(MAX_ATTEMPTS)
                .backoff_base(Duration::ZERO);
            let got = ledger.enqueue(QUEUE, &json!({ "n": n }), opts).await;
            let got = got.map_err(text)?;
            let existing = model.execs.get(&id).cloned();
            let expected = match &existing {
                Some(e) => (false, e.state, e.attempt),
                None => (true, State::Queued, 0),
            };
            if (got.created, got.state, got.attempt) != expected {
                return differ(format!("{got:?}"), format!("{expected:?}"));
            }
            if existing.is_none() {
                let fresh = Exec {
                    state: State::Queued,
                    attempt: 0,
                    cancel_requested: false,
                };
                model.execs.insert(id, fresh);
            }
        }
        Op::Claim => {
            let batch = ledger.claim_many(QUEUE, "w", 1).await;
            let batch = batch.map_err(text)?;
            let full = model.count(State::is_active) >= CAPACITY;
            let available = !full && model.count(|s| s == State::Queued) > 0;
            if batch.queue_full != full || batch.claims.len() != usize::from(available) {
                let expected = format!("full {full}, one claim {available}");
                return differ(format!("{batch:?}"), expected);
            }
            if let Some(claim) = batch.claims.into_iter().next() {
                // Which queued id comes first depends on Redis's clock; any queued one may.
                let e = model.execs.get_mut(claim.id());
                let Some(e) = e.filter(|e| e.state == State::Queued) else {
                    return Err(format!("claimed {}, which is not queued", claim.id()));
                };
                if claim.attempt() != e.attempt + 1 {
                    return differ(format!("{claim:?}"), format!("attempt {}", e.attempt + 1));
                }
                e.attempt += 1;
                e.state = State::Dispatched;
                model.tokens.push(claim.token);
            }
        }
        Op::Heartbeat(n) => {
            let Some(token) = model.token(n) else {
                return Ok(());
            };
            let got = ledger.heartbeat(&token, Heartbeat::new()).await;
            let got = got.map_err(text)?;
            let rejected = rejection!(model.verdict(&token), HeartbeatReply, Terminal);
            let expected = rejected.unwrap_or_else(|| {
                let e = model.exec(&token);
                e.state = State::Running;
                HeartbeatReply::Ok {
                    cancel_requested: e.cancel_requested,
                    cancel_reason: None,
                }
            });
            if got != expected {
                return differ(format!("{got:?}"), format!("{expected:?}"));
            }
        }
        Op::Complete(n) | Op::AckCancel(n) => {
            let Some(token) = model.token(n) else {
                return Ok(());
            };
            let ack = matches!(op, Op::AckCancel(_));
            let got = if ack {
                ledger.acknowledge_cancel(&token).await
            } else {
                ledger.complete(&token, None).await
            };
            let rejected = rejection!(model.verdict(&token), CompleteOutcome, AlreadyTerminal);
            let e = model.exec(&token);
            let expected = match rejected {
                Some(reply) => Ok(reply),
                None if ack && !e.cancel_requested => Err("InvalidTransition"),
                None => {
                    e.state = if ack {
                        State::Cancelled
                    } else {
                        State::Succeeded
                    };
                    Ok(CompleteOutcome::Recorded {
                        slot_released: true,
                    })
                }
            };
            let matches = match (&got, &expected) {
                (Ok(g), Ok(x)) => g == x,
                (Err(Error::InvalidTransition { .. }), Err(_)) => true,
                _ => false,
            };
            if !matches {
                return differ(format!("{got:?}"), format!("{expected:?}"));
            }
        }
        Op::Fail(n, retryable) => {
            let Some(token) = model.token(n) else {
                return Ok(());
            };
            let got = ledger.fail(&token, "boom", retryable).await;
            let got = match got.map_err(text)? {
                FailOutcome::RetryScheduled { slot_released, .. } => FailOutcome::RetryScheduled {
                    available_at: epoch(),
                    slot_released,
                },
                other => other,
            };
            let rejected = rejection!(model.verdict(&token), FailOutcome, AlreadyTerminal);
            let expected = match rejected {
                Some(reply) => reply,
                None => {
                    let e = model.exec(&token);
                    if e.cancel_requested {
                        e.state = State::Cancelled;
                        FailOutcome::Cancelled {
                            slot_released: true,
                        }
                    } else if retryable && e.attempt < MAX_ATTEMPTS {
                        e.state = State::Queued;
                        FailOutcome::RetryScheduled {
                            available_at: epoch(),
                            slot_released: true,
                        }
                    } else {
                        e.state = State::Failed;
                        FailOutcome::Failed {
                            slot_released: true,
                        }
                    }
                }
            };
            if got != expected {
                return differ(format!("{got:?}"), format!("{expected:?}"));
            }
        }
        Op::Cancel(n) => {
            let id = format!("e{n}");
            let got = match ledger.cancel(QUEUE, &id, "stop").await {
                Ok(CancelOutcome::Requested { already, .. }) => Ok(CancelOutcome::Requested {
                    requested_at: epoch(),
                    already,
                }),
                other => other,
            };
            let expected = match model.execs.get_mut(&id) {
                None => Err("NotFound"),
                Some(e) if e.state.is_terminal() => Ok(CancelOutcome::AlreadyTerminal {
                    state: e.state,
                    stop_reason: stop_reason(e.state),
                }),
                Some(e) if e.state == State::Queued => {
                    e.state = State::Cancelled;
                    Ok(CancelOutcome::Cancelled)
                }
                Some(e) => {
                    let already = e.cancel_requested;
                    e.cancel_requested = true;
                    Ok(CancelOutcome::Requested {
                        requested_at: epoch(),
                        already,
                    })
                }
            };
            let matches = match (&got, &expected) {
                (Ok(g), Ok(x)) => g == x,
                (Err(e), Err(_)) => e.is_not_found(),
                _ => false,
            };
            if !matches {
                return differ(format!("{got:?}"), format!("{expected:?}"));
            }
        }
    }
    Ok(())
}

/// Compares every execution, the slot and pending counts, and the invariants.
async fn compare(ledger: &Ledger, model: &Model) -> Result<(), String> {
    for n in 0..IDS {
        let id = format!("e{n}");
        match (ledger.get(QUEUE, &id).await, model.execs.get(&id)) {
            (Err(e), None) if e.is_not_found() => {}
            (Ok(got), Some(e)) => {
                let actual = (got.state, got.attempt, got.cancel_requested_at.is_some());
                if actual != (e.state, e.attempt, e.cancel_requested) {
                    return Err(format!("{id} is {actual:?}, the model has {e:?}"));
                }
            }
            (got, e) => return Err(format!("{id}: get gave {got:?}, the model has {e:?}")),
        }
    }
    let slots = ledger.slots_in_use(QUEUE).await.map_err(text)?;
    let pending = ledger.pending_count(QUEUE).await.map_err(text)?;
    let expected = (
        model.count(State::is_active),
        model.count(|s| s == State::Queued),
    );
    if (slots, pending) != expected {
        return Err(format!(
            "slots, pending: {:?}, model {expected:?}",
            (slots, pending)
        ));
    }
    let violations = support::invariants::check(ledger, &[QUEUE]).await;
    if !violations.is_empty() {
        return Err(format!("invariants: {violations:?}"));
    }
    Ok(())
}

async fn run(ops: &[Op]) -> Result<(), String> {
    let ledger = support::ledger("model").await;
    let settings = QueueSettings {
        capacity: Some(CAPACITY as u32),
        ..QueueSettings::default()
    };
    ledger.set_queue(QUEUE, &settings).await.map_err(text)?;
    let mut model = Model::default();
    for (i, op) in ops.iter().enumerate() {
        let context = |e: String| format!("op {i} {op:?}: {e}");
        step(&ledger, &mut model, op).await.map_err(context)?;
        compare(&ledger, &model).await.map_err(context)?;
    }
    Ok(())
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Runtime::new().expect("a tokio runtime"))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_ledger_follows_the_model(ops in proptest::collection::vec(op(), 1..=40)) {
        let outcome = runtime().block_on(run(&ops));
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    }
}
