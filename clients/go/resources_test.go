package unstuck

import (
	"context"
	"errors"
	"testing"
	"time"
)

func claimToken(t *testing.T, c *Client, queue, id string) string {
	t.Helper()
	ctx := bg(t)
	if _, err := c.Enqueue(ctx, queue, EnqueueRequest{ID: id, Timings: &Timings{HeartbeatTimeout: Ptr(time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	claims, err := c.Claim(ctx, queue, "w-res", 1, 2*time.Second)
	if err != nil || len(claims) != 1 || claims[0].ID != id {
		t.Fatalf("claim of %s: %+v %v", id, claims, err)
	}
	return claims[0].Token
}

// Resource leases through the client: acquire, busy with its holders, another capacity
// refused, listing, a waiting acquire served by a release, release fenced and idempotent,
// force-release with its event; bad input refused.
func TestResourceLeasesThroughTheClient(t *testing.T) {
	ctx := bg(t)
	c := testStack.client("admin")
	q, browser := unique("res"), unique("browser")
	a, b := claimToken(t, c, q, "a"), claimToken(t, c, q, "b")
	got, err := c.Acquire(ctx, a, browser, AcquireOptions{Capacity: 1, TTL: time.Hour})
	if err != nil || got.Resource != browser || got.Capacity != 1 || got.Held != 1 || got.ExpiresAt == nil {
		t.Fatalf("acquire: %+v %v", got, err)
	}
	_, err = c.Acquire(ctx, b, browser, AcquireOptions{})
	var apiErr *APIError
	if !errors.Is(err, ErrResourceBusy) || !errors.Is(err, ErrConflict) || !errors.As(err, &apiErr) ||
		apiErr.Status != 409 || len(apiErr.Holders) != 1 || apiErr.Holders[0].Queue != q ||
		apiErr.Holders[0].ID != "a" || apiErr.Holders[0].Attempt != 1 || apiErr.Holders[0].Since.IsZero() {
		t.Fatalf("a busy resource: %#v", err)
	}
	if _, err := c.Acquire(ctx, b, browser, AcquireOptions{Capacity: 2}); !errors.Is(err, ErrResourceCapacity) ||
		!errors.As(err, &apiErr) || apiErr.Capacity == nil || *apiErr.Capacity != 1 {
		t.Errorf("another capacity while held: %#v", err)
	}

	all, err := c.Resources(ctx)
	var listed *Resource
	for i := range all {
		if all[i].Resource == browser {
			listed = &all[i]
		}
	}
	if err != nil || listed == nil || listed.Held != 1 || len(listed.Holders) != 1 || listed.Holders[0].ID != "a" {
		t.Errorf("resources: %+v %v", all, err)
	}
	if one, err := c.Resource(ctx, browser); err != nil || one.Held != 1 || one.Capacity != 1 {
		t.Errorf("resource: %+v %v", one, err)
	}

	// A waiting acquire (a long poll past the client's Timeout) gets the unit once released.
	waiter := testStack.client("worker")
	waiter.Timeout = 300 * time.Millisecond
	type result struct {
		got *Acquired
		err error
	}
	waited := make(chan result, 1)
	go func() {
		got, err := waiter.Acquire(context.Background(), b, browser, AcquireOptions{Wait: 10 * time.Second})
		waited <- result{got, err}
	}()
	time.Sleep(600 * time.Millisecond)
	if released, err := c.Release(ctx, a, browser); err != nil || !released {
		t.Fatalf("release: %v %v", released, err)
	}
	select {
	case r := <-waited:
		if r.err != nil || r.got.Held != 1 {
			t.Errorf("the waiting acquire: %+v %v", r.got, r.err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the waiting acquire did not return")
	}
	if released, err := c.Release(ctx, a, browser); err != nil || released {
		t.Errorf("a second release: %v %v", released, err)
	}

	if _, err := c.ForceRelease(ctx, browser, q, "b", ""); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("a force-release without a reason: %v", err)
	}
	forced, err := c.ForceRelease(ctx, browser, q, "b", "stuck tab")
	if err != nil || !forced.Released || forced.Attempt == nil || *forced.Attempt != 1 {
		t.Errorf("force-release: %+v %v", forced, err)
	}
	if one, err := c.Resource(ctx, browser); err != nil || one.Held != 0 || len(one.Holders) != 0 {
		t.Errorf("after the force-release: %+v %v", one, err)
	}
	evs, err := c.ExecutionEvents(ctx, q, "b")
	if err != nil || !hasReason(evs.Events, "resource_force_released") {
		t.Errorf("no resource_force_released event: %+v %v", evs, err)
	}

	if _, err := c.Acquire(ctx, b, "a/b", AcquireOptions{}); !errors.Is(err, ErrInvalidName) {
		t.Errorf("a bad resource name: %v", err)
	}
	if _, err := c.Acquire(ctx, b, browser, AcquireOptions{Capacity: 10001}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("capacity 10001: %v", err)
	}
}

func hasReason(events []Event, reason string) bool {
	for _, e := range events {
		if e.Reason == reason {
			return true
		}
	}
	return false
}

// A handler's WithLease holds the unit while its function runs and gives it back after
// (a failure included); a busy resource is ErrResourceBusy with its holders and the
// function does not run; a.Acquire / a.Release are the plain calls.
func TestWorkerWithLease(t *testing.T) {
	ctx := bg(t)
	c := testStack.client("admin")
	q, tool := unique("wl"), unique("tool")
	heldBy := claimToken(t, c, unique("other"), "holder") // another attempt holds the tool
	if _, err := c.Acquire(ctx, heldBy, tool, AcquireOptions{}); err != nil {
		t.Fatal(err)
	}
	type seen struct {
		inside  *Resource
		busy    *APIError
		ran     bool
		release bool
	}
	results := make(chan seen, 3)
	startWorker(t, testStack.client("worker"), q, func(ctx context.Context, a *Attempt) error {
		var s seen
		defer func() { results <- s }()
		switch a.ID {
		case "busy":
			err := a.WithLease(ctx, tool, func(context.Context) error {
				s.ran = true
				return nil
			}, AcquireOptions{Wait: 200 * time.Millisecond})
			if !errors.As(err, &s.busy) || !errors.Is(err, ErrResourceBusy) {
				return NonRetryable(err)
			}
			return err
		case "plain":
			if _, err := a.Acquire(ctx, tool+"-plain", AcquireOptions{}); err != nil {
				return err
			}
			released, err := a.Release(ctx, tool+"-plain")
			s.release = released
			return err
		}
		return a.WithLease(ctx, tool+"-free", func(ctx context.Context) error {
			s.ran = true
			s.inside, _ = testStack.client("admin").Resource(ctx, tool+"-free")
			return errors.New("the tool failed") // released all the same
		})
	})
	for _, id := range []string{"busy", "plain", "free"} {
		if _, err := c.Enqueue(ctx, q, EnqueueRequest{ID: id, Timings: &Timings{MaxAttempts: Ptr(1)}}); err != nil {
			t.Fatal(err)
		}
		ex := ended(t, c, q, id)
		var s seen
		select {
		case s = <-results:
		case <-time.After(10 * time.Second):
			t.Fatal("no result from the handler")
		}
		switch id {
		case "busy":
			if s.ran || s.busy == nil || len(s.busy.Holders) != 1 || s.busy.Holders[0].ID != "holder" || ex.State != "failed" {
				t.Errorf("busy: ran %v, error %+v, state %s", s.ran, s.busy, ex.State)
			}
		case "plain":
			if !s.release || ex.State != "succeeded" {
				t.Errorf("plain: released %v, state %s %v", s.release, ex.State, ex.LastError)
			}
		case "free":
			if !s.ran || s.inside == nil || s.inside.Held != 1 || len(s.inside.Holders) != 1 ||
				s.inside.Holders[0].ID != "free" || ex.State != "failed" {
				t.Errorf("free: ran %v, inside %+v, state %s", s.ran, s.inside, ex.State)
			}
			if r, err := c.Resource(ctx, tool+"-free"); err != nil || r.Held != 0 {
				t.Errorf("free after the handler: %+v %v", r, err)
			}
		}
	}
	if _, err := (&Attempt{}).Acquire(ctx, tool, AcquireOptions{}); err == nil {
		t.Error("Acquire on an attempt no worker runs")
	}
}
