package unstuck

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

const testTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

type traceKey struct{}

// An enqueue's Traceparent is stored on the execution (the batch's on every item) and
// handed to the worker: the claim's Traceparent, a.Traceparent; StartProcess runs before
// the handler, the handler sees the context it returned, and its end gets the error that
// fails the attempt (nil for a completion or a snooze).
func TestTraceparentReachesTheHandlerThroughStartProcess(t *testing.T) {
	ctx := bg(t)
	c := testStack.client("admin")
	q := unique("tr")
	if _, err := c.Enqueue(ctx, q, EnqueueRequest{ID: "traced", Traceparent: testTraceparent}); err != nil {
		t.Fatal(err)
	}
	batchTP := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	if _, err := c.EnqueueBatch(ctx, q, []EnqueueRequest{{ID: "b1", Traceparent: batchTP}, {ID: "b2", Traceparent: batchTP}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.EnqueueBatch(ctx, q, []EnqueueRequest{{ID: "x1", Traceparent: batchTP}, {ID: "x2"}}); err == nil {
		t.Error("a batch with two traceparents was sent")
	}
	if _, err := c.Enqueue(ctx, q, EnqueueRequest{ID: "plain", Payload: "fail", Timings: &Timings{MaxAttempts: Ptr(1)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Enqueue(ctx, q, EnqueueRequest{ID: "snoozy", Payload: "snooze"}); err != nil {
		t.Fatal(err)
	}
	ex, err := c.Get(ctx, q, "traced")
	if err != nil || ex.Traceparent == nil || *ex.Traceparent != testTraceparent {
		t.Fatalf("the stored context: %v %v", ex.Traceparent, err)
	}
	if ex, _ := c.Get(ctx, q, "plain"); ex.Traceparent != nil {
		t.Errorf("an execution enqueued without one has %q", *ex.Traceparent)
	}

	var mu sync.Mutex
	started := map[string]string{} // id -> traceparent StartProcess saw
	endedWith := map[string][]error{}
	snoozes := 0
	handled := map[string]string{} // id -> what the handler's context carried
	done := make(chan string, 10)
	startWorker(t, testStack.client("worker"), q, func(ctx context.Context, a *Attempt) error {
		mu.Lock()
		handled[a.ID], _ = ctx.Value(traceKey{}).(string)
		mu.Unlock()
		var kind string
		_ = a.Decode(&kind)
		switch kind {
		case "fail":
			return NonRetryable(errors.New("boom"))
		case "snooze":
			mu.Lock()
			snoozes++
			first := snoozes == 1
			mu.Unlock()
			if first {
				return Snooze(time.Millisecond, "later")
			}
		}
		return nil
	}, func(w *Worker) {
		w.StartProcess = func(ctx context.Context, a *Attempt) (context.Context, func(error)) {
			mu.Lock()
			started[a.ID] = a.Traceparent
			mu.Unlock()
			if a.WorkerID == "" {
				t.Errorf("%s: no WorkerID on the attempt", a.ID)
			}
			return context.WithValue(ctx, traceKey{}, "span of "+a.ID), func(err error) {
				mu.Lock()
				endedWith[a.ID] = append(endedWith[a.ID], err)
				mu.Unlock()
				done <- a.ID
			}
		}
	})
	for _, id := range []string{"traced", "b1", "b2", "plain", "snoozy"} {
		ended(t, c, q, id)
	}
	waitFor(t, "every end called", 5*time.Second, func() bool { return len(done) >= 6 })
	mu.Lock()
	defer mu.Unlock()
	want := map[string]string{"traced": testTraceparent, "b1": batchTP, "b2": batchTP, "plain": "", "snoozy": ""}
	for id, tp := range want {
		if started[id] != tp {
			t.Errorf("%s: StartProcess saw traceparent %q, want %q", id, started[id], tp)
		}
		if handled[id] != "span of "+id {
			t.Errorf("%s: the handler's context carried %q", id, handled[id])
		}
	}
	for id, n := range map[string]int{"traced": 1, "b1": 1, "b2": 1, "snoozy": 2} {
		if len(endedWith[id]) != n || endedWith[id][0] != nil || endedWith[id][n-1] != nil {
			t.Errorf("%s: end got %v, want nil %d times", id, endedWith[id], n)
		}
	}
	if errs := endedWith["plain"]; len(errs) != 1 || errs[0] == nil || errs[0].Error() != "boom" {
		t.Errorf("plain: end got %v, want boom", errs)
	}
}
