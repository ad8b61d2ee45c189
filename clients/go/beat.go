package unstuck

import (
	"context"
	"errors"
	"time"
)

// beatLoop heartbeats the attempt at a third of its heartbeat timeout, the first beat at
// once (it moves the execution to running). A failed beat is retried with a backoff; once
// the timeout has passed with no renewal the attempt is given up as lost.
func (w *Worker) beatLoop(a *Attempt) {
	interval := a.HeartbeatTimeout / 3
	if interval < 50*time.Millisecond {
		interval = 50 * time.Millisecond
	}
	renewed := a.claimedAt
	wait := time.Duration(0)
	for failures := 0; ; {
		if wait > 0 && !a.sleep(wait) {
			return
		}
		left := a.HeartbeatTimeout - time.Since(renewed)
		if left <= 0 {
			w.logf("%v: no heartbeat renewed it within %v: giving it up", a, a.HeartbeatTimeout)
			a.stop("lost")
			return
		}
		before := a.unsentFingerprints()
		sentAt := time.Now()
		switch w.beat(a, left) {
		case beatRenewed:
			renewed, failures, wait = sentAt, 0, interval
			if n := a.unsentFingerprints(); n > 0 && n < before {
				wait = 0 // one fingerprint went out and more wait: each its own beat
			}
		case beatLost:
			return
		case beatFailed:
			wait = backoff(failures, 50*time.Millisecond, interval)
			if wait > left {
				wait = left
			}
			failures++
		}
	}
}

// sleep waits d or until a fingerprint waits to be sent; false when the handler returned.
func (a *Attempt) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-a.done:
			return false
		case <-t.C:
			return true
		case <-a.wake: // a fingerprint: beat now (unless an earlier beat took it)
			if a.unsentFingerprints() > 0 {
				return true
			}
		}
	}
}

const (
	beatRenewed = iota
	beatLost
	beatFailed
)

// beat sends one heartbeat with what changed since the last one.
func (w *Worker) beat(a *Attempt, limit time.Duration) int {
	h, carried := a.beat()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	reply, err := w.Client.Heartbeat(ctx, a.Token, h)
	if err != nil {
		if lostError(err) {
			w.logf("%v lost: %v", a, err)
			a.stop("lost")
			return beatLost
		}
		w.logf("heartbeat of %v: %v", a, err)
		return beatFailed
	}
	a.delivered(carried)
	if reply.CancelRequested {
		a.mu.Lock()
		a.cancelReason = reply.CancelReason
		a.mu.Unlock()
		a.stop("cancel")
	}
	return beatRenewed
}

// lostError: the attempt is not this worker's any more.
func lostError(err error) bool {
	return errors.Is(err, ErrStaleAttempt) || errors.Is(err, ErrAlreadyTerminal) ||
		errors.Is(err, ErrTokenMismatch) || errors.Is(err, ErrNotFound)
}
