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

	claimedAt time.Time
	cancel    context.CancelFunc
	done      chan struct{} // closed when the handler returned

	mu              sync.Mutex
	result          any
	progress        string
	checkpoint      json.RawMessage
	progressSeq     int // bumped on every set
	checkpointSeq   int
	progressSent    int // the seq the last good beat carried
	checkpointSent  int
	cancelRequested bool
	lost            bool
	restart         bool
}

func newAttempt(c Claim) *Attempt {
	a := &Attempt{Queue: c.Queue, ID: c.ID, Attempt: c.Attempt, Payload: c.Payload,
		HeartbeatTimeout: c.HeartbeatTimeout.Duration(), DeadlineAt: c.DeadlineAt,
		Token: c.Token, claimedAt: time.Now(), done: make(chan struct{})}
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

// beat is the one place that builds a heartbeat: what changed since the last good beat,
// and the seqs to mark delivered when it goes through.
func (a *Attempt) beat() (HeartbeatRequest, [2]int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var h HeartbeatRequest
	if a.progressSeq > a.progressSent {
		p := a.progress
		h.Progress = &p
	}
	if a.checkpointSeq > a.checkpointSent {
		h.Checkpoint = a.checkpoint
	}
	return h, [2]int{a.progressSeq, a.checkpointSeq}
}

func (a *Attempt) delivered(seqs [2]int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if seqs[0] > a.progressSent {
		a.progressSent = seqs[0]
	}
	if seqs[1] > a.checkpointSent {
		a.checkpointSent = seqs[1]
	}
}

func (a *Attempt) pending() bool {
	h, _ := a.beat()
	return h.Progress != nil || h.Checkpoint != nil
}

func (a *Attempt) state() (result any, cancelRequested, lost, restart bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.result, a.cancelRequested, a.lost, a.restart
}
