package unstuck

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// Attempt is one claimed attempt, as a Handler sees it.
type Attempt struct {
	Queue   string
	ID      string
	Attempt int // the attempt number, 1 on the first
	// Payload is the execution's payload (JSON); Decode unmarshals it.
	Payload json.RawMessage
	// Checkpoint is what the previous attempt checkpointed (nil on a first attempt or when
	// none was); DecodeCheckpoint unmarshals it.
	Checkpoint json.RawMessage
	// ResumeInput is what Resume handed over when this attempt continues a wait (nil
	// otherwise).
	ResumeInput      json.RawMessage
	HeartbeatTimeout time.Duration
	DeadlineAt       *time.Time
	// Token is the attempt token (the worker makes every attempt call with it).
	Token string
	// ResumeToken is set once an AwaitResume was recorded.
	ResumeToken string
	// Traceparent is the W3C trace context stored at enqueue ("" when none): link the
	// handler's spans to it (Worker.StartProcess).
	Traceparent string
	// WorkerID is the id of the worker running the attempt.
	WorkerID string

	client    *Client
	logf      func(format string, args ...any)
	claimedAt time.Time
	cancel    context.CancelFunc
	done      chan struct{} // closed when the handler returned
	wake      chan struct{} // a fingerprint to send: beat now (the worker's beat kick)

	// The worker's beat rounds (only its beat goroutine touches them): when the last
	// renewal was sent, when the next beat is due, failed beats in a row; beating is held
	// while a beat of the attempt is in flight.
	renewed, beatAt time.Time
	beatFailures    int
	beating         sync.Mutex

	mu              sync.Mutex
	result          any
	progress        string
	checkpoint      json.RawMessage
	progressSeq     int // bumped on every set
	checkpointSeq   int
	progressSent    int // the seq the last good beat carried
	checkpointSent  int
	fingerprints    []string // not sent yet, oldest first: one per beat
	usage           []Usage  // deltas not delivered yet, oldest first (Seq 0: not numbered yet)
	usageSeq        int64    // the last Seq given to a delta
	cancelReason    string
	cancelRequested bool
	lost            bool
	restart         bool
	beatNow         bool // a fingerprint waits: beat at once
}

// MaxFingerprint is the longest fingerprint a heartbeat carries, in bytes.
const MaxFingerprint = 128

func newAttempt(c Claim) *Attempt {
	a := &Attempt{Queue: c.Queue, ID: c.ID, Attempt: c.Attempt, Payload: c.Payload,
		HeartbeatTimeout: c.HeartbeatTimeout.Duration(), DeadlineAt: c.DeadlineAt,
		Token: c.Token, Traceparent: c.Traceparent, claimedAt: time.Now(),
		done: make(chan struct{}), wake: make(chan struct{}, 1)}
	a.renewed, a.beatAt = a.claimedAt, a.claimedAt // the claim renews; beat at once
	if !isNull(c.Checkpoint) {
		a.Checkpoint = c.Checkpoint
	}
	if !isNull(c.ResumeInput) {
		a.ResumeInput = c.ResumeInput
	}
	return a
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

func (a *Attempt) String() string {
	return fmt.Sprintf("%s/%s attempt %d", a.Queue, a.ID, a.Attempt)
}

// Decode unmarshals the payload into v.
func (a *Attempt) Decode(v any) error { return json.Unmarshal(a.Payload, v) }

// DecodeCheckpoint unmarshals the previous attempt's checkpoint into v; false when there
// is none.
func (a *Attempt) DecodeCheckpoint(v any) (bool, error) {
	if a.Checkpoint == nil {
		return false, nil
	}
	return true, json.Unmarshal(a.Checkpoint, v)
}

// SetProgress sets the progress text the next heartbeat carries (no_progress_timeout
// watches it).
func (a *Attempt) SetProgress(text string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.progress = text
	a.progressSeq++
}

// SetCheckpoint sets a JSON-able value the next heartbeat carries; a retry resumes from
// the last one the server received (the next attempt's Checkpoint). It is encoded now:
// an error says it is not JSON-able.
func (a *Attempt) SetCheckpoint(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("unstuck: checkpoint is not JSON-able: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.checkpoint = data
	a.checkpointSeq++
	return nil
}

// SetFingerprint records the fingerprint of the action just taken and its result (a
// short text, say a hash of them; 1 to MaxFingerprint bytes) for loop detection: the same
// one max_repeats times in a row and the watchdog judges the execution stuck "looping".
// Each call is one arrival, never merged with another: it goes out at once with a
// heartbeat of its own, and calls made faster than beats return wait their turn, each
// with its own beat. An error (nothing queued) for an empty or longer text.
func (a *Attempt) SetFingerprint(text string) error {
	if len(text) < 1 || len(text) > MaxFingerprint {
		return fmt.Errorf("unstuck: fingerprint: expected 1 to %d bytes, got %d", MaxFingerprint, len(text))
	}
	a.mu.Lock()
	a.fingerprints = append(a.fingerprints, text)
	a.beatNow = true
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
	return nil
}

// SetResult sets the result a nil return completes the attempt with.
func (a *Attempt) SetResult(v any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.result = v
}

// CancelRequested reports whether the orchestrator asked to cancel (the handler's context
// is then cancelled too).
func (a *Attempt) CancelRequested() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cancelRequested
}

// Lost reports whether the attempt is no longer this worker's (a newer attempt exists, the
// execution ended, or no heartbeat renewed it within its timeout): nothing it does is
// recorded.
func (a *Attempt) Lost() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lost
}

// stop cancels the handler's context and says why.
func (a *Attempt) stop(why string) {
	a.mu.Lock()
	switch why {
	case "lost":
		a.lost = true
	case "cancel":
		a.cancelRequested = true
	case "restart":
		a.restart = true
	}
	a.mu.Unlock()
	a.cancel()
}

// sent says what a heartbeat carried, to mark delivered when it goes through.
type sent struct {
	progress, checkpoint int   // the seqs
	fingerprint          bool  // it carried the oldest queued fingerprint
	usage                int64 // the Seq of the usage delta it carried (0: none)
}

// beat is the one place that builds a heartbeat: what changed since the last good beat
// (and the oldest fingerprint not sent yet), and what to mark delivered when it goes
// through.
func (a *Attempt) beat() (HeartbeatRequest, sent) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.beatNow = false // this beat takes the waiting fingerprint
	var h HeartbeatRequest
	if a.progressSeq > a.progressSent {
		p := a.progress
		h.Progress = &p
	}
	if a.checkpointSeq > a.checkpointSent {
		h.Checkpoint = a.checkpoint
	}
	if len(a.fingerprints) > 0 {
		h.Fingerprint = a.fingerprints[0]
	}
	s := sent{a.progressSeq, a.checkpointSeq, h.Fingerprint != "", 0}
	if h.Usage = a.nextUsage(); h.Usage != nil {
		s.usage = h.Usage.Seq
	}
	return h, s
}

func (a *Attempt) delivered(s sent) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if s.progress > a.progressSent {
		a.progressSent = s.progress
	}
	if s.checkpoint > a.checkpointSent {
		a.checkpointSent = s.checkpoint
	}
	if s.fingerprint && len(a.fingerprints) > 0 {
		a.fingerprints = a.fingerprints[1:] // only the beat loop takes them
	}
	if s.usage > 0 && len(a.usage) > 0 && a.usage[0].Seq == s.usage {
		a.usage = a.usage[1:]
	}
}

// fingerprintWaiting: a fingerprint was set since the last beat was built.
func (a *Attempt) fingerprintWaiting() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.beatNow
}

// finished: the handler returned.
func (a *Attempt) finished() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// unsentFingerprints counts the fingerprints still to send.
func (a *Attempt) unsentFingerprints() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.fingerprints)
}

func (a *Attempt) pending() bool {
	h, _ := a.beat()
	return h.Progress != nil || h.Checkpoint != nil || h.Fingerprint != "" || h.Usage != nil
}

func (a *Attempt) state() (result any, cancelRequested, lost, restart bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.result, a.cancelRequested, a.lost, a.restart
}
