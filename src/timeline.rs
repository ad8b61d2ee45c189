//! An execution's timeline: every transition its history holds, with the event details
//! (lag, replica, detail) where the capped event stream still has them, each entry saying
//! which of the two it came from. `unstuck show` and the dashboard (through the events
//! reply's `timeline`) both print this, so the merge rule lives here once.
//!
//! The rule: the partition's stream is capped and trimmed from its oldest end, and so is
//! the history (its newest `history_len`): both are suffixes of the execution's life, and
//! agree at their newest end. So they are paired from the newest backwards, each history
//! entry with the newest unpaired event of the same attempt, state and reason; events
//! passed over have no history entry (they change no state) and keep their place. A history
//! entry with no such event lost it to the cap: it is shown as history alone. No clock is
//! compared (an event's stream id and its history entry may differ by a millisecond).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::events::Event;
use crate::ledger::{Execution, Ledger, State, Transition};

/// Where a timeline entry's facts came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TimelineSource {
    /// The event stream: every detail is known.
    Event,
    /// The execution's own history only: its event was trimmed from the capped stream,
    /// so the detail, lag and replica are unknown (and `from` is inferred).
    History,
}

/// One transition of an execution's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct TimelineEntry {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The attempt it belongs to.
    pub attempt: u32,
    /// The state left: `None` for the first; for a history entry, the previous entry's
    /// state (history records only the state entered).
    pub from: Option<State>,
    /// The state entered.
    pub to: Option<State>,
    /// Why: `enqueued`, `claimed`, `heartbeat_lost`, ...
    pub reason: String,
    /// The event's free text (empty for a history entry).
    pub detail: String,
    /// For watchdog actions: how long after its timer fired it acted, in milliseconds.
    pub lag_ms: Option<i64>,
    /// For watchdog actions: the replica that acted.
    pub replica: Option<String>,
    /// For watchdog actions: the lease epoch it acted under.
    pub epoch: Option<u64>,
    /// `event`, or `history` when the stream no longer holds its event.
    pub source: TimelineSource,
}

impl TimelineEntry {
    fn from_event(e: &Event) -> Self {
        TimelineEntry {
            at: e.at,
            attempt: e.attempt,
            from: e.from,
            to: e.to,
            reason: e.reason.clone(),
            detail: e.detail.clone(),
            lag_ms: e.lag_ms,
            replica: e.replica.clone(),
            epoch: e.epoch,
            source: TimelineSource::Event,
        }
    }

    fn from_history(t: &Transition, from: Option<State>) -> Self {
        TimelineEntry {
            at: t.at,
            attempt: t.attempt,
            from,
            to: Some(t.state),
            reason: t.reason.clone(),
            detail: String::new(),
            lag_ms: None,
            replica: None,
            epoch: None,
            source: TimelineSource::History,
        }
    }
}

/// Merges an execution's history with its surviving events (both oldest first, the
/// events filtered to this execution), by the rule in the module docs.
pub fn merge(history: &[Transition], events: &[Event]) -> Vec<TimelineEntry> {
    enum Item {
        Event(usize),
        History(usize),
    }
    // Built newest first, then turned around.
    let mut items = Vec::with_capacity(history.len() + events.len());
    let mut unpaired = events.len();
    for (i, t) in history.iter().enumerate().rev() {
        let paired = events[..unpaired]
            .iter()
            .rposition(|e| e.attempt == t.attempt && e.to == Some(t.state) && e.reason == t.reason);
        // Unpaired, its event was trimmed: so were all older ones, and the events left
        // over are newer than it.
        let keep = paired.unwrap_or(0);
        items.extend((keep..unpaired).rev().map(Item::Event));
        unpaired = keep;
        if paired.is_none() {
            items.push(Item::History(i));
        }
    }
    items.extend((0..unpaired).rev().map(Item::Event));
    let mut out: Vec<TimelineEntry> = Vec::with_capacity(items.len());
    for item in items.into_iter().rev() {
        let entry = match item {
            Item::Event(j) => TimelineEntry::from_event(&events[j]),
            Item::History(i) => {
                TimelineEntry::from_history(&history[i], out.last().and_then(|p| p.to))
            }
        };
        out.push(entry);
    }
    out
}

impl Ledger {
    /// One execution with its timeline ([`merge`] of its history and its events).
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound), [`Error::InvalidName`](crate::Error::InvalidName),
    /// [`Error::Redis`](crate::Error::Redis).
    pub async fn timeline(
        &self,
        queue: &str,
        id: &str,
    ) -> Result<(Execution, Vec<Event>, Vec<TimelineEntry>)> {
        let execution = self.get(queue, id).await?;
        let events = self.events_of(&execution).await?;
        let timeline = merge(&execution.history, &events);
        Ok((execution, events, timeline))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(ms).unwrap()
    }

    fn t(ms: i64, state: State, reason: &str, attempt: u32) -> Transition {
        Transition {
            at: at(ms),
            state,
            reason: reason.into(),
            attempt,
        }
    }

    fn e(ms: i64, from: Option<State>, to: State, reason: &str, attempt: u32) -> Event {
        Event {
            id: format!("0-{ms}-0"),
            stream_id: format!("{ms}-0"),
            partition: 0,
            at: at(ms),
            queue: "q".into(),
            execution_id: "x".into(),
            attempt,
            from,
            to: Some(to),
            reason: reason.into(),
            detail: format!("detail of {reason}"),
            timer_due_at: None,
            lag_ms: None,
            replica: None,
            epoch: None,
        }
    }

    fn history() -> Vec<Transition> {
        use State::*;
        vec![
            t(10, Queued, "enqueued", 0),
            t(20, Dispatched, "claimed", 1),
            t(30, Running, "started", 1),
            t(40, Stuck, "heartbeat_lost", 1),
            t(50, Queued, "retry_scheduled", 1),
            t(60, Dispatched, "claimed", 2),
        ]
    }

    fn rows(
        timeline: &[TimelineEntry],
    ) -> Vec<(Option<State>, Option<State>, &str, TimelineSource)> {
        timeline
            .iter()
            .map(|x| (x.from, x.to, x.reason.as_str(), x.source))
            .collect()
    }

    #[test]
    fn trimmed_events_leave_their_transitions_to_the_history() {
        use State::*;
        use TimelineSource::{Event as E, History as H};
        let events = vec![
            e(50, Some(Stuck), Queued, "retry_scheduled", 1),
            e(60, Some(Queued), Dispatched, "claimed", 2),
        ];
        let timeline = merge(&history(), &events);
        assert_eq!(
            rows(&timeline),
            [
                (None, Some(Queued), "enqueued", H),
                (Some(Queued), Some(Dispatched), "claimed", H),
                (Some(Dispatched), Some(Running), "started", H),
                (Some(Running), Some(Stuck), "heartbeat_lost", H),
                (Some(Stuck), Some(Queued), "retry_scheduled", E),
                (Some(Queued), Some(Dispatched), "claimed", E),
            ]
        );
        assert_eq!(timeline[4].detail, "detail of retry_scheduled");
        assert_eq!(timeline[3].detail, "");
    }

    #[test]
    fn events_without_a_history_entry_keep_their_place() {
        use State::*;
        // The history ring kept only the last two; the stream holds everything, plus an
        // event that changed no state.
        let history = history().split_off(4);
        let mut events = vec![
            e(10, None, Queued, "enqueued", 0),
            e(20, Some(Queued), Dispatched, "claimed", 1),
            e(30, Some(Dispatched), Running, "started", 1),
            e(40, Some(Running), Stuck, "heartbeat_lost", 1),
            e(50, Some(Stuck), Queued, "retry_scheduled", 1),
            e(60, Some(Queued), Dispatched, "claimed", 2),
        ];
        events.insert(3, e(35, Some(Running), Running, "cancel_requested", 1));
        let timeline = merge(&history, &events);
        assert_eq!(timeline.len(), 7);
        assert!(timeline.iter().all(|x| x.source == TimelineSource::Event));
        let reasons: Vec<&str> = timeline.iter().map(|x| x.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "enqueued",
                "claimed",
                "started",
                "cancel_requested",
                "heartbeat_lost",
                "retry_scheduled",
                "claimed"
            ]
        );
    }

    #[test]
    fn an_event_stamped_a_millisecond_after_its_history_entry_is_still_its_own() {
        use State::*;
        let history = history().split_off(3);
        let events = vec![
            e(41, Some(Running), Stuck, "heartbeat_lost", 1),
            e(51, Some(Stuck), Queued, "retry_scheduled", 1),
            e(61, Some(Queued), Dispatched, "claimed", 2),
        ];
        let timeline = merge(&history, &events);
        assert_eq!(timeline.len(), 3);
        assert!(timeline.iter().all(|x| x.source == TimelineSource::Event));
    }

    #[test]
    fn the_same_transition_twice_in_one_attempt_pairs_with_its_own_event() {
        use State::*;
        use TimelineSource::{Event as E, History as H};
        // Stuck, revived, stuck again: the first stuck's event was trimmed.
        let history = vec![
            t(30, Running, "started", 1),
            t(40, Stuck, "heartbeat_lost", 1),
            t(45, Running, "revived", 1),
            t(50, Stuck, "heartbeat_lost", 1),
        ];
        let events = vec![
            e(45, Some(Stuck), Running, "revived", 1),
            e(50, Some(Running), Stuck, "heartbeat_lost", 1),
        ];
        let timeline = merge(&history, &events);
        assert_eq!(
            rows(&timeline),
            [
                (None, Some(Running), "started", H),
                (Some(Running), Some(Stuck), "heartbeat_lost", H),
                (Some(Stuck), Some(Running), "revived", E),
                (Some(Running), Some(Stuck), "heartbeat_lost", E),
            ]
        );
    }

    #[test]
    fn no_events_at_all_is_the_history() {
        let timeline = merge(&history(), &[]);
        assert_eq!(timeline.len(), 6);
        assert!(timeline.iter().all(|x| x.source == TimelineSource::History));
        assert_eq!(timeline[0].from, None);
        assert_eq!(timeline[5].from, Some(State::Queued));
    }
}
