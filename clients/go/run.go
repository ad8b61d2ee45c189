package unstuck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// MaxMessage is the longest failure message sent (in bytes).
const MaxMessage = 4000

// claimLoop long-polls claims while slots are free, until Stop.
func (w *Worker) claimLoop() error {
	slots := make(chan struct{}, w.Concurrency)
	for i := 0; i < w.Concurrency; i++ {
		slots <- struct{}{}
	}
	ctx, cancel := w.stopCtx()
	defer cancel()
	for failures := 0; ; {
		select {
		case <-w.stopping:
			return nil
		default:
		}
		select { // one free slot at least
		case <-slots:
		case <-w.stopping:
			return nil
		}
		free := 1
	more:
		for free < w.Concurrency {
			select {
			case <-slots:
				free++
			default:
				break more
			}
		}
		claims, err := w.Client.Claim(ctx, w.Queue, w.ID(), free, w.PollWait)
		for _, c := range claims { // even when stopping: these are ours now
			w.start(newAttempt(c), slots)
		}
		for i := len(claims); i < free; i++ {
			slots <- struct{}{}
		}
		if len(claims) > 0 {
			select {
			case w.kick <- struct{}{}:
			default:
			}
		}
		if err == nil {
			failures = 0
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		var apiErr *APIError
		switch {
		case errors.Is(err, ErrUnknownWorker):
			w.mu.Lock()
			w.fresh = true
			w.mu.Unlock()
			if err := w.register(); err != nil {
				return err
			}
		case errors.As(err, &apiErr) && apiErr.Transient():
			w.logf("claim: %v; retrying", err)
			if sleep(ctx, backoff(failures, 0, 0)) != nil {
				return nil
			}
			failures++
		default:
			return err
		}
	}
}

func (w *Worker) start(a *Attempt, slots chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	a.client, a.logf, a.WorkerID = w.Client, w.logf, w.ID()
	a.wake = w.beatKick // its fingerprints wake the beat rounds
	w.mu.Lock()
	w.running[a] = true
	w.mu.Unlock()
	select { // its first beat, at once, moves it to running
	case w.beatKick <- struct{}{}:
	default:
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer func() { slots <- struct{}{} }()
		defer func() {
			w.mu.Lock()
			delete(w.running, a)
			w.mu.Unlock()
		}()
		w.runAttempt(ctx, a)
	}()
}

func (w *Worker) runAttempt(ctx context.Context, a *Attempt) {
	err := w.callHandler(ctx, a)
	close(a.done)
	a.beating.Lock() // a beat of it in flight has ended: what it delivered is known
	a.beating.Unlock()
	a.cancel()
	w.finish(a, err)
}

func (w *Worker) callHandler(ctx context.Context, a *Attempt) (err error) {
	var end func(error)
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
		if end != nil {
			w.endProcess(a, end, err)
		}
	}()
	if w.StartProcess != nil {
		var traced context.Context
		if traced, end = w.StartProcess(ctx, a); traced != nil {
			ctx = traced
		}
	}
	return w.Handler(ctx, a)
}

// endProcess calls StartProcess's end with the error that fails the attempt.
func (w *Worker) endProcess(a *Attempt, end func(error), err error) {
	defer func() {
		if p := recover(); p != nil {
			w.logf("%v: StartProcess's end panicked: %v", a, p)
		}
	}()
	var (
		snooze *SnoozeError
		await  *AwaitResumeError
	)
	if errors.As(err, &snooze) || errors.As(err, &await) {
		err = nil // outcomes, not failures
	}
	end(err)
}

func message(err error) string {
	text := err.Error()
	if len(text) > MaxMessage {
		text = text[:MaxMessage]
	}
	return text
}

// finish records how the attempt ended.
func (w *Worker) finish(a *Attempt, err error) {
	var (
		await     *AwaitResumeError
		snooze    *SnoozeError
		fatal     *NonRetryableError
		retryable *RetryableError
	)
	result, cancelRequested, lost, restart := a.state()
	if err != nil && !lost && !cancelRequested && a.pending() {
		// Deliver a checkpoint set since the last beat: the next attempt resumes from it.
		w.beat(a, w.Client.timeout())
	}
	// Deliver the usage still pending: by beats, all but the last delta, which rides on
	// the complete or fail (all of it before a cancel acknowledgement, a snooze or an await).
	w.drainUsage(a, !errors.As(err, &await) && !errors.As(err, &snooze))
	result, cancelRequested, lost, _ = a.state()
	switch {
	case lost:
		w.count(&w.stats.Dropped, a, "the attempt was lost")
	case cancelRequested:
		if _, ok := w.outcome(a, "cancelled", nil, func(ctx context.Context) (*Outcome, error) {
			_, err := w.Client.CancelAck(ctx, a.Token)
			return &Outcome{}, err
		}); ok {
			w.count(&w.stats.Cancelled, a, "cancellation acknowledged")
		}
	case err == nil:
		if _, jerr := json.Marshal(result); jerr != nil {
			w.fail(a, fmt.Sprintf("result is not JSON: %v", jerr), false, 0)
			return
		}
		_, ok := w.outcome(a, "succeeded", w.refusedFail(a, "result refused", false), func(ctx context.Context) (*Outcome, error) {
			var err error
			if u := a.lastUsage(); u != nil {
				_, err = w.Client.Complete(ctx, a.Token, result, *u)
			} else {
				_, err = w.Client.Complete(ctx, a.Token, result)
			}
			return &Outcome{}, err
		})
		if ok {
			w.count(&w.stats.Succeeded, a, "completed")
		}
	case errors.As(err, &await):
		w.await(a, await)
	case errors.As(err, &snooze):
		w.snooze(a, snooze)
	case errors.As(err, &fatal):
		w.fail(a, message(err), false, 0)
	case errors.As(err, &retryable):
		w.fail(a, message(err), true, retryable.RetryAfter)
	case restart:
		w.fail(a, "stopped: the worker was asked to restart: "+message(err), true, 0)
	default:
		w.fail(a, message(err), true, 0)
	}
}

func (w *Worker) fail(a *Attempt, msg string, retryable bool, after time.Duration) {
	usage := a.lastUsage() // the last delta rides on the failure
	reply, ok := w.outcome(a, "", nil, func(ctx context.Context) (*Outcome, error) {
		o, err := w.Client.Fail(ctx, a.Token, FailRequest{Message: msg, Retryable: retryable, RetryAfter: after, Usage: usage})
		if errors.Is(err, ErrInvalidArgument) && after > 0 {
			// A retry-after out of bounds: the failure is still recorded, with the backoff.
			w.logf("retry-after of %v refused: %v", a, err)
			after = 0
			o, err = w.Client.Fail(ctx, a.Token, FailRequest{Message: msg, Retryable: retryable, Usage: usage})
		}
		return o, err
	})
	if ok {
		w.countOutcome(a, reply.Outcome, msg)
	}
}

func (w *Worker) snooze(a *Attempt, s *SnoozeError) {
	reply, ok := w.outcome(a, "", w.refusedFail(a, "snooze refused", true), func(ctx context.Context) (*Outcome, error) {
		return w.Client.Snooze(ctx, a.Token, SnoozeRequest{After: s.After, Until: s.Until, Reason: s.Reason})
	})
	if ok {
		w.countOutcome(a, reply.Outcome, s.Reason)
	}
}

func (w *Worker) await(a *Attempt, wait *AwaitResumeError) {
	reply, ok := w.outcome(a, "", w.refusedFail(a, "await refused", false), func(ctx context.Context) (*Outcome, error) {
		return w.Client.AwaitResume(ctx, a.Token, AwaitRequest{Reason: wait.Reason,
			WaitDeadline: wait.WaitDeadline, Checkpoint: wait.Checkpoint})
	})
	if !ok {
		return
	}
	if reply.Outcome == "cancelled" {
		w.count(&w.stats.Cancelled, a, "cancelled instead of waiting")
		return
	}
	a.ResumeToken = reply.ResumeToken
	w.count(&w.stats.Awaiting, a, "awaiting: "+wait.Reason)
	if w.OnAwait != nil {
		w.OnAwait(a, reply)
	}
}

// refusedFail records a refused outcome call as a failure that names the refusal.
func (w *Worker) refusedFail(a *Attempt, what string, retryable bool) func(error) {
	return func(err error) { w.fail(a, message(fmt.Errorf("%s: %w", what, err)), retryable, 0) }
}

func (w *Worker) countOutcome(a *Attempt, outcome, what string) {
	counter := &w.stats.Failed
	switch outcome {
	case "retry_scheduled":
		counter = &w.stats.Retried
	case "cancelled":
		counter = &w.stats.Cancelled
	case "snoozed":
		counter = &w.stats.Snoozed
	}
	w.count(counter, a, outcome+": "+what)
}

func (w *Worker) count(counter *int, a *Attempt, what string) {
	w.mu.Lock()
	*counter++
	w.mu.Unlock()
	w.logf("%v: %s", a, what)
}

// outcome runs an outcome call, retrying transient errors for OutcomeRetryFor (the calls
// are idempotent on the token). ok is false when the attempt turned out not to be ours
// (counted as dropped) or the call failed for good. A call the server refuses as written
// (a bad snooze or wait, a result too large) goes to refused, when given.
func (w *Worker) outcome(a *Attempt, endsIn string, refused func(error), call func(context.Context) (*Outcome, error)) (*Outcome, bool) {
	giveUp := time.Now().Add(OutcomeRetryFor)
	for failures := 0; ; failures++ {
		ctx, cancel := context.WithTimeout(context.Background(), w.Client.timeout())
		reply, err := call(ctx)
		cancel()
		var apiErr *APIError
		switch {
		case err == nil:
			return reply, true
		case errors.Is(err, ErrAlreadyTerminal) && failures > 0 && errors.As(err, &apiErr) && apiErr.State == endsIn:
			return &Outcome{}, true // a retry after a lost reply: the first call went through
		case lostError(err):
			w.count(&w.stats.Dropped, a, fmt.Sprintf("not ours any more: %v", err))
			return nil, false
		case refused != nil && (errors.Is(err, ErrBadRequest) || errors.Is(err, ErrTooLarge)):
			// The handler's mistake (a bad snooze or wait, a result too large): a retry
			// of the call would repeat it, so the attempt fails, saying why.
			w.logf("%v: refused: %v", a, err)
			refused(err)
			return nil, false
		case errors.As(err, &apiErr) && apiErr.Transient() && time.Now().Before(giveUp):
			time.Sleep(backoff(failures, 0, 0))
		default:
			w.logf("recording the outcome of %v: %v", a, err)
			return nil, false
		}
	}
}
