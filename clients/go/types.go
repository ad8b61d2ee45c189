package unstuck

import (
	"encoding/json"
	"time"
)

// Ptr returns a pointer to v: optional fields of requests take pointers
// (Timings{MaxAttempts: unstuck.Ptr(3), BackoffBase: unstuck.Ptr(time.Duration(0))}).
func Ptr[T any](v T) *T { return &v }

// Millis is a duration in integer milliseconds, as every reply carries them.
type Millis int64

// Duration is m as a time.Duration.
func (m Millis) Duration() time.Duration { return time.Duration(m) * time.Millisecond }

// ms is a duration on the wire: integer milliseconds (rounded up so 1µs is not 0).
func ms(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

func msPtr(d *time.Duration) *int64 {
	if d == nil {
		return nil
	}
	v := ms(*d)
	return &v
}

// Timings are an execution's or a queue's timings on input; nil fields are unset (they
// come from the queue, then the server's defaults).
type Timings struct {
	StartGrace        *time.Duration
	HeartbeatTimeout  *time.Duration
	NoProgressTimeout *time.Duration
	Deadline          *time.Duration
	StuckThreshold    *time.Duration
	MaxAttempts       *int
	BackoffBase       *time.Duration
	BackoffMax        *time.Duration
	CancelGrace       *time.Duration
	MaxSnoozes        *int
	// MaxRepeats is loop detection's limit (2 to 10000): the same heartbeat fingerprint
	// this many times in a row and the watchdog judges the execution stuck "looping".
	// Ptr(0) switches it off; nil leaves it to the queue.
	MaxRepeats *int
}

// MarshalJSON writes the set fields, durations in milliseconds.
func (t Timings) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		StartGrace        *int64 `json:"start_grace,omitempty"`
		HeartbeatTimeout  *int64 `json:"heartbeat_timeout,omitempty"`
		NoProgressTimeout *int64 `json:"no_progress_timeout,omitempty"`
		Deadline          *int64 `json:"deadline,omitempty"`
		StuckThreshold    *int64 `json:"stuck_threshold,omitempty"`
		MaxAttempts       *int   `json:"max_attempts,omitempty"`
		BackoffBase       *int64 `json:"backoff_base,omitempty"`
		BackoffMax        *int64 `json:"backoff_max,omitempty"`
		CancelGrace       *int64 `json:"cancel_grace,omitempty"`
		MaxSnoozes        *int   `json:"max_snoozes,omitempty"`
		MaxRepeats        *int   `json:"max_repeats,omitempty"`
	}{msPtr(t.StartGrace), msPtr(t.HeartbeatTimeout), msPtr(t.NoProgressTimeout),
		msPtr(t.Deadline), msPtr(t.StuckThreshold), t.MaxAttempts, msPtr(t.BackoffBase),
		msPtr(t.BackoffMax), msPtr(t.CancelGrace), t.MaxSnoozes, t.MaxRepeats})
}

// ResolvedTimings are timings as replies give them (milliseconds; nil: off or not set).
type ResolvedTimings struct {
	StartGrace        *Millis `json:"start_grace"`
	HeartbeatTimeout  *Millis `json:"heartbeat_timeout"`
	NoProgressTimeout *Millis `json:"no_progress_timeout"`
	Deadline          *Millis `json:"deadline"`
	StuckThreshold    *Millis `json:"stuck_threshold"`
	MaxAttempts       *int    `json:"max_attempts"`
	BackoffBase       *Millis `json:"backoff_base"`
	BackoffMax        *Millis `json:"backoff_max"`
	CancelGrace       *Millis `json:"cancel_grace"`
	MaxSnoozes        *int    `json:"max_snoozes"`
	MaxRepeats        *int    `json:"max_repeats"` // nil: loop detection off
}

// Retention: how long finished executions are kept, per state (nil: not set here).
type Retention struct {
	Succeeded   *Millis `json:"succeeded,omitempty"`
	Cancelled   *Millis `json:"cancelled,omitempty"`
	Failed      *Millis `json:"failed,omitempty"`
	Dead        *Millis `json:"dead,omitempty"`
	TimedOut    *Millis `json:"timed_out,omitempty"`
	MaxFinished *int    `json:"max_finished,omitempty"`
}

// Enqueued is the reply of an enqueue.
type Enqueued struct {
	Queue     string    `json:"queue"`
	ID        string    `json:"id"`
	Created   bool      `json:"created"`
	State     string    `json:"state"`
	Attempt   int       `json:"attempt"`
	CreatedAt time.Time `json:"created_at"`
	Conflict  bool      `json:"conflict"` // the id exists with a different request
}

// Transition is one entry of an execution's history.
type Transition struct {
	At      time.Time `json:"at"`
	State   string    `json:"state"`
	Reason  string    `json:"reason"`
	Attempt int       `json:"attempt"`
}

// Stop says why an execution ended.
type Stop struct {
	Reason            string  `json:"reason"`
	Timeout           *Millis `json:"timeout"`
	TimeoutConfigured bool    `json:"timeout_configured"`
	TimeoutFired      bool    `json:"timeout_fired"`
}

// Wait describes an awaiting execution's wait.
type Wait struct {
	Reason     string    `json:"reason"`
	Since      time.Time `json:"since"`
	DeadlineAt time.Time `json:"deadline_at"`
	OnExpiry   string    `json:"on_expiry"`
}

// Execution is the view of one execution. Payload, Checkpoint, Result and ResumeInput are
// the JSON as stored ("null" or empty when unset); decode them with json.Unmarshal.
type Execution struct {
	Queue             string          `json:"queue"`
	ID                string          `json:"id"`
	State             string          `json:"state"`
	Attempt           int             `json:"attempt"`
	Payload           json.RawMessage `json:"payload"`
	Checkpoint        json.RawMessage `json:"checkpoint"`
	Result            json.RawMessage `json:"result"`
	Progress          *string         `json:"progress"`
	Worker            *string         `json:"worker"`
	CreatedAt         time.Time       `json:"created_at"`
	DispatchedAt      *time.Time      `json:"dispatched_at"`
	StartedAt         *time.Time      `json:"started_at"`
	LastHeartbeatAt   *time.Time      `json:"last_heartbeat_at"`
	ProgressChangedAt *time.Time      `json:"progress_changed_at"`
	StuckSince        *time.Time      `json:"stuck_since"`
	DeadlineAt        *time.Time      `json:"deadline_at"`
	CancelRequestedAt *time.Time      `json:"cancel_requested_at"`
	FinishedAt        *time.Time      `json:"finished_at"`
	Timings           ResolvedTimings `json:"timings"`
	Stop              *Stop           `json:"stop"`
	LastError         *string         `json:"last_error"`
	FalseAlarms       int             `json:"false_alarms"`
	Continuations     int             `json:"continuations"`
	Snoozes           int             `json:"snoozes"`
	AvailableAt       *time.Time      `json:"available_at"`
	History           []Transition    `json:"history"`
	RetryOf           *string         `json:"retry_of"`
	Retries           []string        `json:"retries"`
	Pinned            bool            `json:"pinned"`
	Wait              *Wait           `json:"wait"`
	ResumedAt         *time.Time      `json:"resumed_at"`
	ResumeInput       json.RawMessage `json:"resume_input"`
	// Traceparent is the W3C trace context stored at enqueue (nil when none).
	Traceparent *string `json:"traceparent"`
	// Fingerprint is the current attempt's last heartbeat fingerprint and how many
	// heartbeats in a row carried it (nil until one did).
	Fingerprint *FingerprintRun `json:"fingerprint"`
	// Usage is what its attempts reported, summed and by model (nil before any).
	Usage *UsageSummary `json:"usage"`
	// Budget is its own budget, given at enqueue (nil: its queue's default applies).
	Budget *Budget `json:"budget"`
	// CancelReason says why cancellation was requested when the ledger asked:
	// "budget_exceeded" (nil otherwise).
	CancelReason *string `json:"cancel_reason"`
}

// FingerprintRun is an execution's last heartbeat fingerprint and its run length.
type FingerprintRun struct {
	Last    string `json:"last"`
	Repeats int    `json:"repeats"`
}

// Terminal reports whether the execution has ended.
func (e *Execution) Terminal() bool { return IsTerminal(e.State) }

// IsTerminal reports whether a state is final: succeeded, failed, cancelled, timed_out, dead.
func IsTerminal(state string) bool {
	switch state {
	case "succeeded", "failed", "cancelled", "timed_out", "dead":
		return true
	}
	return false
}

// Page is one page of executions; NextCursor is "" on the last page.
type Page struct {
	Items      []Execution `json:"items"`
	NextCursor string      `json:"next_cursor"`
}

// Event is one transition or watchdog action of the event stream. ID is
// "<partition>-<stream id>", the Last-Event-ID to resume from.
type Event struct {
	ID          string     `json:"id"`
	StreamID    string     `json:"stream_id"`
	Partition   int        `json:"partition"`
	At          time.Time  `json:"at"`
	Queue       string     `json:"queue"`
	ExecutionID string     `json:"execution_id"`
	Attempt     int        `json:"attempt"`
	From        *string    `json:"from"`
	To          *string    `json:"to"`
	Reason      string     `json:"reason"`
	Detail      string     `json:"detail"`
	TimerDueAt  *time.Time `json:"timer_due_at"`
	LagMs       *Millis    `json:"lag_ms"`
	Replica     *string    `json:"replica"`
	Epoch       *int64     `json:"epoch"`
}

// TimelineEntry is one transition of an execution's history with its event's details.
type TimelineEntry struct {
	At      time.Time `json:"at"`
	Attempt int       `json:"attempt"`
	From    *string   `json:"from"`
	To      *string   `json:"to"`
	Reason  string    `json:"reason"`
	Detail  string    `json:"detail"`
	LagMs   *Millis   `json:"lag_ms"`
	Replica *string   `json:"replica"`
	Epoch   *int64    `json:"epoch"`
	Source  string    `json:"source"` // "event" or "history"
}

// ExecutionEvents: an execution's events still held by the stream, and its timeline.
type ExecutionEvents struct {
	Events   []Event         `json:"events"`
	Timeline []TimelineEntry `json:"timeline"`
}

// QueuePause says since when, by whom and why a queue is paused.
type QueuePause struct {
	Since  time.Time `json:"since"`
	By     string    `json:"by"`
	Reason string    `json:"reason"`
}

// Queue is the overview of one queue.
type Queue struct {
	Name              string          `json:"name"`
	Partition         int             `json:"partition"`
	Depth             int             `json:"depth"`
	Available         int             `json:"available"`
	Active            int             `json:"active"`
	Capacity          int             `json:"capacity"`
	OldestQueuedAt    *time.Time      `json:"oldest_queued_at"`
	OldestQueuedAgeMs *Millis         `json:"oldest_queued_age_ms"`
	OwnCapacity       *int            `json:"own_capacity"`
	Timings           ResolvedTimings `json:"timings"`
	Retention         Retention       `json:"retention"`
	Paused            bool            `json:"paused"`
	Pause             *QueuePause     `json:"pause"`
	MaxWaitMs         *Millis         `json:"max_wait_ms"`
	OnWaitExpiry      *string         `json:"on_wait_expiry"`
	Budget            *Budget         `json:"budget"`        // the default of its executions
	WindowBudget      *WindowBudget   `json:"window_budget"` // spent: paused by "budget"
}

// PauseChange is the reply of PauseQueue and ResumeQueue.
type PauseChange struct {
	Queue   string      `json:"queue"`
	Paused  bool        `json:"paused"`
	Changed bool        `json:"changed"` // false: it already was as asked
	Pause   *QueuePause `json:"pause"`
}

// Claim is one claimed attempt.
type Claim struct {
	Token            string          `json:"token"`
	Queue            string          `json:"queue"`
	ID               string          `json:"id"`
	Attempt          int             `json:"attempt"`
	Payload          json.RawMessage `json:"payload"`
	Checkpoint       json.RawMessage `json:"checkpoint"`
	HeartbeatTimeout Millis          `json:"heartbeat_timeout"`
	DeadlineAt       *time.Time      `json:"deadline_at"`
	ResumeInput      json.RawMessage `json:"resume_input"`
	Traceparent      string          `json:"traceparent"` // the context stored at enqueue ("" when none)
}

// RunningRef names an execution a worker runs.
type RunningRef struct {
	Queue string `json:"queue"`
	ID    string `json:"id"`
}

// WorkerRemediation is a worker's remediation tier and circuit.
type WorkerRemediation struct {
	Tier            int        `json:"tier"`
	TierSince       *time.Time `json:"tier_since"`
	Verdict         *string    `json:"verdict"`
	Request         *string    `json:"request"`
	Action          *string    `json:"action"`
	ActionDetail    *string    `json:"action_detail"`
	Tier3Failures   int        `json:"tier3_failures"`
	CircuitOpen     bool       `json:"circuit_open"`
	CircuitOpenedAt *time.Time `json:"circuit_opened_at"`
	CircuitReason   *string    `json:"circuit_reason"`
}

// WorkerInfo is one registered worker.
type WorkerInfo struct {
	WorkerID          string             `json:"worker_id"`
	Host              string             `json:"host"`
	PID               int                `json:"pid"`
	Version           string             `json:"version"`
	Queues            []string           `json:"queues"`
	RegisteredAt      time.Time          `json:"registered_at"`
	LastSeenAt        time.Time          `json:"last_seen_at"`
	HeartbeatInterval *Millis            `json:"heartbeat_interval"`
	Running           []RunningRef       `json:"running"`
	Held              []RunningRef       `json:"held"`
	Remediation       *WorkerRemediation `json:"remediation"`
}

// WorkerEvent is a worker's tier change, action or hook outcome, circuit opened or reset.
type WorkerEvent struct {
	StreamID string    `json:"stream_id"`
	At       time.Time `json:"at"`
	WorkerID string    `json:"worker_id"`
	FromTier int       `json:"from_tier"`
	ToTier   int       `json:"to_tier"`
	Reason   string    `json:"reason"`
	Detail   string    `json:"detail"`
	Actor    string    `json:"actor"`
}

// Session says what the client's token may do.
type Session struct {
	Scope    *string `json:"scope"`
	Open     bool    `json:"open"`
	CanRead  bool    `json:"can_read"`
	CanSteer bool    `json:"can_steer"`
	CanAdmin bool    `json:"can_admin"`
}
