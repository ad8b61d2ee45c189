package unstuck

// The worker's outcomes beyond complete and fail, the server's drain and restart
// requests, and Stop during a long poll.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Snooze, Retryable with a retry-after, and AwaitResume with OnAwait and a resume.
func TestWorkerOutcomes(t *testing.T) {
	ctx := bg(t)
	c := testStack.client("admin")
	q := unique("wo")
	_, _ = c.Enqueue(ctx, q, EnqueueRequest{ID: "snooze", Payload: "snooze"})
	_, _ = c.Enqueue(ctx, q, EnqueueRequest{ID: "later", Payload: "later", Timings: &Timings{MaxAttempts: Ptr(2), BackoffBase: Ptr(time.Duration(0))}})
	_, _ = c.Enqueue(ctx, q, EnqueueRequest{ID: "ask", Payload: "ask"})
	tokens := make(chan string, 1)
	var failedAt atomic.Value
	w := startWorker(t, testStack.client("worker"), q, func(ctx context.Context, a *Attempt) error {
		var kind string
		_ = a.Decode(&kind)
		switch {
		case kind == "snooze" && a.Attempt == 1:
			return Snooze(100*time.Millisecond, "429: slow down")
		case kind == "later" && a.Attempt == 1:
			failedAt.Store(time.Now())
			return fmt.Errorf("provider busy: %w", Retryable(errors.New("429"), 1500*time.Millisecond))
		case kind == "ask" && a.ResumeInput == nil:
			return AwaitResume("approval", time.Hour, map[string]string{"plan": "p"})
		case kind == "ask":
			a.SetResult(map[string]json.RawMessage{"input": a.ResumeInput, "checkpoint": a.Checkpoint})
		}
		return nil
	}, func(w *Worker) {
		w.Concurrency = 3
		w.OnAwait = func(a *Attempt, reply *Outcome) { tokens <- reply.ResumeToken }
	})
	var token string
	select {
	case token = <-tokens:
	case <-time.After(10 * time.Second):
		t.Fatal("OnAwait was not called")
	}
	if ex, _ := c.Get(ctx, q, "ask"); ex.State != "awaiting" || ex.Wait == nil || ex.Wait.Reason != "approval" {
		t.Errorf("ask: %+v", ex)
	}
	if _, err := c.ResumeByToken(ctx, token, map[string]bool{"approved": true}); err != nil {
		t.Fatal(err)
	}
	ex := ended(t, c, q, "ask")
	if ex.State != "succeeded" || string(ex.Result) != `{"checkpoint":{"plan":"p"},"input":{"approved":true}}` {
		t.Errorf("ask: %s %s", ex.State, ex.Result)
	}
	ex = ended(t, c, q, "snooze")
	if ex.State != "succeeded" || ex.Snoozes != 1 || ex.Continuations != 1 {
		t.Errorf("snooze: %s snoozes %d continuations %d", ex.State, ex.Snoozes, ex.Continuations)
	}
	ex = ended(t, c, q, "later")
	if ex.State != "succeeded" || ex.Attempt != 2 {
		t.Errorf("later: %s %d", ex.State, ex.Attempt)
	}
	// The retry started no sooner than the retry-after (the backoff base is 0).
	for _, h := range ex.History {
		if h.Attempt == 2 && h.State == "dispatched" {
			if gap := h.At.Sub(failedAt.Load().(time.Time)); gap < 1400*time.Millisecond {
				t.Errorf("the retry was dispatched %v after the failure, want 1.5 s", gap)
			}
		}
	}
	stats := w.stop(t)
	if stats.Snoozed != 1 || stats.Retried != 1 || stats.Awaiting != 1 || stats.Succeeded != 3 {
		t.Errorf("stats: %+v", stats)
	}
}

// The server asks the worker to drain (its running attempt finishes) or restart (its
// running attempt's context ends and the attempt is handed back as a retryable failure).
func TestWorkerHonoursDrainAndRestart(t *testing.T) {
	for _, request := range []string{"drain", "restart"} {
		t.Run(request, func(t *testing.T) {
			ctx := bg(t)
			c := testStack.client("admin")
			q := unique("wd")
			_, _ = c.Enqueue(ctx, q, EnqueueRequest{ID: "d-1", Timings: &Timings{MaxAttempts: Ptr(3), BackoffBase: Ptr(time.Hour)}})
			started := make(chan struct{})
			release := make(chan struct{})
			w := startWorker(t, testStack.client("worker"), q, func(ctx context.Context, a *Attempt) error {
				close(started)
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-release:
					return nil
				}
			}, func(w *Worker) { w.HeartbeatInterval = 200 * time.Millisecond })
			<-started
			if err := c.RequestWorker(ctx, w.ID(), request, "test"); err != nil {
				t.Fatal(err)
			}
			if request == "drain" {
				waitFor(t, "the drain to be seen", 10*time.Second, func() bool { return w.StoppedBy() == "drain" })
				close(release)
			}
			w.wait(t) // Run returns by itself
			if w.StoppedBy() != request {
				t.Errorf("StoppedBy %q", w.StoppedBy())
			}
			ex, _ := c.Get(ctx, q, "d-1")
			switch request {
			case "drain":
				if ex.State != "succeeded" || w.stats.Succeeded != 1 {
					t.Errorf("drained: %s %+v", ex.State, w.stats)
				}
			case "restart":
				if ex.State != "queued" || ex.LastError == nil || !strings.Contains(*ex.LastError, "restart") || w.stats.Retried != 1 {
					t.Errorf("restarted: %s %v %+v", ex.State, ex.LastError, w.stats)
				}
			}
		})
	}
}

// Stop interrupts an idle long poll at once and Run returns.
func TestWorkerStopInterruptsTheLongPoll(t *testing.T) {
	w := startWorker(t, testStack.client("worker"), unique("idle"), func(ctx context.Context, a *Attempt) error { return nil })
	waitFor(t, "registration", 10*time.Second, func() bool { return w.ID() != "" })
	time.Sleep(300 * time.Millisecond) // in its 30 s long poll now
	w.Stop()
	select {
	case <-w.done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return while a 30 s long poll was open")
	}
}

// A worker stopped before Run registers nothing and claims nothing.
func TestWorkerStoppedBeforeRun(t *testing.T) {
	ctx := bg(t)
	c := testStack.client("admin")
	q := unique("early")
	_, _ = c.Enqueue(ctx, q, EnqueueRequest{ID: "untouched"})
	w := &Worker{Client: testStack.client("worker"), Queue: q, IgnoreSignals: true,
		Handler: func(ctx context.Context, a *Attempt) error { return nil }}
	w.Stop()
	stats, err := w.Run(ctx)
	if err != nil || stats != (Stats{}) || w.ID() != "" {
		t.Errorf("Run after Stop: %+v %v id %q", stats, err, w.ID())
	}
	if ex, _ := c.Get(ctx, q, "untouched"); ex.State != "queued" {
		t.Errorf("untouched: %s", ex.State)
	}
}
