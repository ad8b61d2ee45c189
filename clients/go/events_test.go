package unstuck

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// next reads one event within 10 s.
func next[T any](t *testing.T, s *Stream[T]) T {
	t.Helper()
	got := make(chan bool, 1)
	go func() { got <- s.Next() }()
	select {
	case ok := <-got:
		if !ok {
			t.Fatalf("the stream ended: %v", s.Err())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10 s")
	}
	return s.Event()
}

// The stream reconnects with Last-Event-ID after a dropped connection (nothing lost,
// nothing twice), and a new stream resumes after a given id.
func TestEventStreamResumesWithLastEventID(t *testing.T) {
	ctx := bg(t)
	c := testStack.client("admin")
	q := unique("ev")
	s := c.Events(ctx, q, "")
	defer s.Close()
	enqueue := func(from, to int) {
		for i := from; i < to; i++ {
			if _, err := c.Enqueue(ctx, q, EnqueueRequest{ID: fmt.Sprintf("e%d", i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The stream follows from the moment it connects (at the first Next): enqueue until
	// it hands over a first event.
	got := make(chan bool, 1)
	go func() { got <- s.Next() }()
	for warm := 0; ; warm++ {
		if _, err := c.Enqueue(ctx, q, EnqueueRequest{ID: fmt.Sprintf("warm%d", warm)}); err != nil {
			t.Fatal(err)
		}
		select {
		case ok := <-got:
			if !ok {
				t.Fatal(s.Err())
			}
		case <-time.After(200 * time.Millisecond):
			if warm < 50 {
				continue
			}
			t.Fatal("no first event")
		}
		break
	}
	first := s.Event()
	if first.ID == "" || first.Queue != q || first.To == nil || *first.To != "queued" {
		t.Fatalf("first event: %+v", first)
	}
	for { // the warm-up's other events, if any, until e0
		enqueue(0, 1)
		if ev := next(t, s); ev.ExecutionID == "e0" {
			break
		}
	}
	enqueue(1, 3)
	var ids []string
	for i := 1; i < 3; i++ {
		ev := next(t, s)
		ids = append(ids, ev.ExecutionID)
	}
	resumeFrom := s.LastEventID()
	s.Disconnect()
	enqueue(3, 6) // while the stream reconnects
	for i := 3; i < 6; i++ {
		ids = append(ids, next(t, s).ExecutionID)
	}
	if fmt.Sprint(ids) != "[e1 e2 e3 e4 e5]" {
		t.Errorf("events across the reconnect: %v", ids)
	}
	if s.Reconnects < 1 {
		t.Errorf("reconnects: %d", s.Reconnects)
	}
	s.Close()
	if s.Next() || s.Err() != nil {
		t.Errorf("after Close: Next true or Err %v", s.Err())
	}

	again := c.Events(ctx, q, resumeFrom)
	defer again.Close()
	var resumed []string
	for i := 3; i < 6; i++ {
		resumed = append(resumed, next(t, again).ExecutionID)
	}
	if fmt.Sprint(resumed) != "[e3 e4 e5]" {
		t.Errorf("a stream resumed after %s: %v", resumeFrom, resumed)
	}

	// Its context ends it with the context's error.
	short, cancel := context.WithCancel(ctx)
	third := c.Events(short, q, "")
	cancel()
	if third.Next() || third.Err() != context.Canceled {
		t.Errorf("a cancelled stream: %v", third.Err())
	}
	// An error a retry cannot fix ends it with that error.
	denied := testStack.client("worker").Events(ctx, q, "")
	if denied.Next() || !isForbidden(denied.Err()) {
		t.Errorf("a worker token on the stream: %v", denied.Err())
	}
}

func isForbidden(err error) bool {
	e, ok := err.(*APIError)
	return ok && e.Status == 403
}

// The worker events' live stream hands over a worker's tier change (a reset).
func TestWorkerEventsLive(t *testing.T) {
	ctx := bg(t)
	c := testStack.client("admin")
	s := c.WorkerEventsLive(ctx, "")
	defer s.Close()
	id := unique("wl")
	if _, err := c.RegisterWorker(ctx, Registration{WorkerID: id, Queues: []string{"q"}}); err != nil {
		t.Fatal(err)
	}
	defer c.DeregisterWorker(ctx, id)
	// Reset until the stream (connected by then) hands over the event.
	got := make(chan WorkerEvent, 1)
	go func() {
		for s.Next() {
			if ev := s.Event(); ev.WorkerID == id {
				got <- ev
				return
			}
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := c.ResetWorker(ctx, id, "test"); err != nil {
			t.Fatal(err)
		}
		select {
		case ev := <-got:
			if ev.StreamID == "" || ev.Actor == "" {
				t.Errorf("worker event: %+v", ev)
			}
			return
		case <-time.After(300 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("no worker event for a reset")
		}
	}
}
