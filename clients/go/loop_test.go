package unstuck

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Loop detection through the client: a heartbeat's Fingerprint counts a run shown on the
// execution, one without leaves it, a different one resets it; bad text is refused with
// nothing written; Timings.MaxRepeats goes in and comes back.
func TestHeartbeatFingerprintRun(t *testing.T) {
	ctx := bg(t)
	c := testStack.client("admin")
	q := unique("fp")
	if _, err := c.Enqueue(ctx, q, EnqueueRequest{ID: "c-1", Timings: &Timings{MaxRepeats: Ptr(10),
		HeartbeatTimeout: Ptr(time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	claims, err := c.Claim(ctx, q, "w-fp", 1, time.Second)
	if err != nil || len(claims) != 1 {
		t.Fatalf("claim: %+v %v", claims, err)
	}
	token := claims[0].Token
	for i := 0; i < 3; i++ {
		if _, err := c.Heartbeat(ctx, token, HeartbeatRequest{Fingerprint: "ls /tmp"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Heartbeat(ctx, token, HeartbeatRequest{Progress: Ptr("step 2")}); err != nil {
		t.Fatal(err)
	}
	ex, err := c.Get(ctx, q, "c-1")
	if err != nil || ex.Fingerprint == nil || *ex.Fingerprint != (FingerprintRun{"ls /tmp", 3}) ||
		ex.Timings.MaxRepeats == nil || *ex.Timings.MaxRepeats != 10 {
		t.Fatalf("after three beats with one fingerprint: %+v %+v %v", ex.Fingerprint, ex.Timings.MaxRepeats, err)
	}
	if _, err := c.Heartbeat(ctx, token, HeartbeatRequest{Fingerprint: "cat /tmp/a"}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{strings.Repeat("x", 129)} {
		if _, err := c.Heartbeat(ctx, token, HeartbeatRequest{Fingerprint: bad}); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("a %d-byte fingerprint: %v", len(bad), err)
		}
	}
	if ex, _ := c.Get(ctx, q, "c-1"); ex.Fingerprint == nil || *ex.Fingerprint != (FingerprintRun{"cat /tmp/a", 1}) {
		t.Errorf("after another fingerprint and a refused one: %+v", ex.Fingerprint)
	}
	if _, err := c.Enqueue(ctx, q, EnqueueRequest{ID: "c-2", Timings: &Timings{MaxRepeats: Ptr(1)}}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("max_repeats 1: %v", err)
	}
	if _, err := c.Enqueue(ctx, q, EnqueueRequest{ID: "c-3", Timings: &Timings{MaxRepeats: Ptr(0)}}); err != nil {
		t.Errorf("max_repeats 0 (off): %v", err)
	} else if ex, _ := c.Get(ctx, q, "c-3"); ex.Timings.MaxRepeats != nil {
		t.Errorf("max_repeats 0 is off, got %v", *ex.Timings.MaxRepeats)
	}
}

// A handler repeating one fingerprint faster than any beat is caught looping: each
// SetFingerprint call arrives on its own beat. A healthy one with varied fingerprints is
// left alone, its run shown.
func TestWorkerSetFingerprintCatchesALoop(t *testing.T) {
	ctx := bg(t)
	c := testStack.client("admin")
	q := unique("fpw")
	timings := &Timings{MaxRepeats: Ptr(4), MaxAttempts: Ptr(1), HeartbeatTimeout: Ptr(10 * time.Second),
		StuckThreshold: Ptr(200 * time.Millisecond)}
	_, _ = c.Enqueue(ctx, q, EnqueueRequest{ID: "looping", Payload: "looping", Timings: timings})
	_, _ = c.Enqueue(ctx, q, EnqueueRequest{ID: "healthy", Payload: "healthy", Timings: timings})
	startWorker(t, testStack.client("worker"), q, func(ctx context.Context, a *Attempt) error {
		var kind string
		_ = a.Decode(&kind)
		if kind == "looping" {
			// The same tool call with the same result, four times at once: still four arrivals.
			for step := 0; step < 4; step++ {
				a.SetProgress(fmt.Sprintf("step %d", step))
				if err := a.SetFingerprint("search('flights') -> 0 results"); err != nil {
					return NonRetryable(err)
				}
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Second):
				return nil
			}
		}
		for step := 0; step < 12; step++ {
			a.SetProgress(fmt.Sprintf("step %d", step))
			_ = a.SetFingerprint(fmt.Sprintf("read page %d", step/2))
			time.Sleep(30 * time.Millisecond)
		}
		a.SetResult("done")
		return nil
	}, func(w *Worker) { w.Concurrency = 2 })
	looping := ended(t, c, q, "looping")
	if looping.State != "dead" || looping.Stop == nil || looping.Stop.Reason != "looping" ||
		looping.LastError == nil || !strings.Contains(*looping.LastError, "same fingerprint 4 times in a row (max_repeats 4)") {
		t.Errorf("the looping one: %s %+v %v", looping.State, looping.Stop, looping.LastError)
	}
	healthy := ended(t, c, q, "healthy")
	if healthy.State != "succeeded" || healthy.FalseAlarms != 0 || healthy.Fingerprint == nil ||
		*healthy.Fingerprint != (FingerprintRun{"read page 5", 2}) {
		t.Errorf("the healthy one: %s %d %+v", healthy.State, healthy.FalseAlarms, healthy.Fingerprint)
	}
}

// SetFingerprint refuses an empty or longer text and queues nothing.
func TestSetFingerprintRefusesBadText(t *testing.T) {
	a := newAttempt(Claim{Token: "t", Queue: "q", ID: "i", Attempt: 1, HeartbeatTimeout: 1000})
	for _, bad := range []string{"", strings.Repeat("é", 65)} {
		if err := a.SetFingerprint(bad); err == nil {
			t.Errorf("%d bytes accepted", len(bad))
		}
	}
	if err := a.SetFingerprint(strings.Repeat("é", 64)); err != nil { // 128 bytes
		t.Error(err)
	}
	if h, _ := a.beat(); a.unsentFingerprints() != 1 || h.Fingerprint != strings.Repeat("é", 64) {
		t.Errorf("queued: %d, next beat: %q", a.unsentFingerprints(), h.Fingerprint)
	}
}
