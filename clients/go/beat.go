package unstuck

import (
	"context"
	"errors"
	"time"
)

// beatRounds beats every attempt the worker holds, all of them in one request per round
// (Heartbeats; Heartbeat when it holds one), until done is closed. A beat is due at once
// for a new attempt (its first beat moves it to running) or a new fingerprint, then every
// third of the attempt's heartbeat timeout; a round also takes the attempts due within
// half their interval, so attempts claimed at different times soon share their rounds. A
// failed beat is retried with a backoff; once an attempt's heartbeat timeout has passed
// with no renewal it is given up as lost (the watchdog retries it elsewhere).
func (w *Worker) beatRounds(done <-chan struct{}) {
	for {
		now := time.Now()
		var due, soon []*Attempt
		wake := now.Add(time.Second)
		for _, a := range w.Running() {
			if a.finished() || a.Lost() {
				continue
			}
			giveUp := a.renewed.Add(a.HeartbeatTimeout)
			if !now.Before(giveUp) {
				w.logf("%v: no heartbeat renewed it within %v: giving it up", a, a.HeartbeatTimeout)
				a.stop("lost")
				continue
			}
			switch {
			case !a.beatAt.After(now) || a.fingerprintWaiting():
				due = append(due, a)
			case a.beatFailures == 0 && a.beatAt.Sub(now) <= interval(a)/2:
				soon = append(soon, a)
			}
			for _, t := range []time.Time{a.beatAt, giveUp} {
				if t.Before(wake) {
					wake = t
				}
			}
		}
		if len(due) > 0 {
			w.beatRound(append(due, soon...))
			continue
		}
		t := time.NewTimer(time.Until(wake))
		select {
		case <-done:
			t.Stop()
			return
		case <-w.beatKick:
		case <-t.C:
		}
		t.Stop()
	}
}

// interval is how often an attempt is beaten: a third of its heartbeat timeout.
func interval(a *Attempt) time.Duration {
	if d := a.HeartbeatTimeout / 3; d > 50*time.Millisecond {
		return d
	}
	return 50 * time.Millisecond
}

// beatRound sends one beat of each attempt: one request (the single route for one).
func (w *Worker) beatRound(attempts []*Attempt) {
	beating := attempts[:0:0]
	for _, a := range attempts {
		a.beating.Lock()
		if a.finished() || a.Lost() {
			a.beating.Unlock() // it ended meanwhile: its own goroutine beats it now
			continue
		}
		beating = append(beating, a)
	}
	defer func() {
		for _, a := range beating {
			a.beating.Unlock()
		}
	}()
	if len(beating) == 0 {
		return
	}
	limit := time.Duration(1<<63 - 1)
	for _, a := range beating {
		if left := time.Until(a.renewed.Add(a.HeartbeatTimeout)); left < limit {
			limit = left
		}
	}
	if limit < 50*time.Millisecond {
		limit = 50 * time.Millisecond
	}
	beats := make([]Beat, len(beating))
	carried := make([]sent, len(beating))
	for i, a := range beating {
		beats[i].Token = a.Token
		beats[i].HeartbeatRequest, carried[i] = a.beat()
	}
	sentAt := time.Now()
	results := make([]HeartbeatResult, len(beating))
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	if len(beating) == 1 {
		results[0].Reply, results[0].Err = w.Client.Heartbeat(ctx, beats[0].Token, beats[0].HeartbeatRequest)
	} else {
		batch, err := w.Client.Heartbeats(ctx, beats)
		for i := range results {
			if err != nil {
				results[i].Err = err
			} else {
				results[i] = batch[i]
			}
		}
		if w.onBeatRound != nil {
			w.onBeatRound(beats, results)
		}
	}
	for i, a := range beating {
		switch w.answered(a, carried[i], results[i].Reply, results[i].Err) {
		case beatRenewed:
			a.renewed, a.beatFailures, a.beatAt = sentAt, 0, sentAt.Add(interval(a))
			if carried[i].fingerprint && a.unsentFingerprints() > 0 {
				a.beatAt = sentAt // one fingerprint went out and more wait: each its own beat
			}
		case beatFailed:
			wait := backoff(a.beatFailures, 50*time.Millisecond, interval(a))
			if left := time.Until(a.renewed.Add(a.HeartbeatTimeout)); wait > left {
				wait = left
			}
			a.beatAt = time.Now().Add(wait)
			a.beatFailures++
		}
	}
}

const (
	beatRenewed = iota
	beatLost
	beatFailed
)

// beat sends one heartbeat of a alone with what changed since the last one (what the end
// of its handler left to deliver).
func (w *Worker) beat(a *Attempt, limit time.Duration) int {
	h, carried := a.beat()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	reply, err := w.Client.Heartbeat(ctx, a.Token, h)
	return w.answered(a, carried, reply, err)
}

// answered applies one beat's answer to a: renewed, lost (the attempt is not this
// worker's any more) or failed (no renewal; worth another try).
func (w *Worker) answered(a *Attempt, carried sent, reply *HeartbeatReply, err error) int {
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
