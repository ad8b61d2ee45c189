package unstuck

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type runningWorker struct {
	*Worker
	stats Stats
	err   error
	done  chan struct{}
}

// startWorker runs a worker on queue in the background; the test's end stops it and
// checks that Run returned.
func startWorker(t *testing.T, c *Client, queue string, h Handler, configure ...func(*Worker)) *runningWorker {
	t.Helper()
	w := &runningWorker{Worker: &Worker{Client: c, Queue: queue, Handler: h, IgnoreSignals: true},
		done: make(chan struct{})}
	for _, f := range configure {
		f(w.Worker)
	}
	go func() {
		defer close(w.done)
		w.stats, w.err = w.Run(context.Background())
	}()
	t.Cleanup(func() { w.stop(t) })
	return w
}

// stop stops the worker and waits for Run to return.
func (w *runningWorker) stop(t *testing.T) Stats {
	t.Helper()
	w.Stop()
	w.wait(t)
	return w.stats
}

func (w *runningWorker) wait(t *testing.T) {
	t.Helper()
	select {
	case <-w.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the worker's Run did not return")
	}
	if w.err != nil {
		t.Errorf("Run: %v", w.err)
	}
}

func ended(t *testing.T, c *Client, queue, id string) *Execution {
	t.Helper()
	var ex *Execution
	waitFor(t, id+" to end", 20*time.Second, func() bool {
		var err error
		ex, err = c.Get(context.Background(), queue, id)
		return err == nil && ex.Terminal()
	})
	return ex
}

func TestWorkerCompletesWithResults(t *testing.T) {
	ctx := bg(t)
	c := testStack.client("admin")
	q := unique("wq")
	for i := 0; i < 6; i++ {
		if _, err := c.Enqueue(ctx, q, EnqueueRequest{ID: fmt.Sprintf("job-%d", i), Payload: map[string]int{"n": i}}); err != nil {
			t.Fatal(err)
		}
	}
	w := startWorker(t, testStack.client("worker"), q, func(ctx context.Context, a *Attempt) error {
		var p struct{ N int }
		if err := a.Decode(&p); err != nil {
			return NonRetryable(err)
		}
		a.SetResult(map[string]int{"double": p.N * 2})
		return nil
	}, func(w *Worker) { w.Concurrency = 3 })
	for i := 0; i < 6; i++ {
		ex := ended(t, c, q, fmt.Sprintf("job-%d", i))
		if ex.State != "succeeded" || ex.Attempt != 1 || string(ex.Result) != fmt.Sprintf(`{"double":%d}`, i*2) {
			t.Errorf("job-%d: %s %d %s", i, ex.State, ex.Attempt, ex.Result)
		}
	}
	var mine *WorkerInfo
	waitFor(t, "the registry to list the worker", 10*time.Second, func() bool {
		all, _ := c.Workers(ctx)
		for i := range all {
			if all[i].WorkerID == w.ID() {
				mine = &all[i]
			}
		}
		return mine != nil
	})
	if fmt.Sprint(mine.Queues) != "["+q+"]" || mine.HeartbeatInterval.Duration() != RegistryInterval ||
		!strings.HasPrefix(mine.Version, "unstuck-go/") {
		t.Errorf("registered as %+v", mine)
	}
	if stats := w.stop(t); stats.Succeeded != 6 {
		t.Errorf("stats: %+v", stats)
	}
	all, _ := c.Workers(ctx)
	for _, info := range all {
		if info.WorkerID == w.ID() {
			t.Error("still registered after Run returned")
		}
	}
}

func TestWorkerRetriesFromTheCheckpointAndFailsForGood(t *testing.T) {
	ctx := bg(t)
	c := testStack.client("admin")
	q := unique("wr")
	var mu sync.Mutex
	var seen []string
	_, _ = c.Enqueue(ctx, q, EnqueueRequest{ID: "r-1", Payload: "retry", Timings: fastTimings()})
	_, _ = c.Enqueue(ctx, q, EnqueueRequest{ID: "f-1", Payload: "fatal", Timings: &Timings{MaxAttempts: Ptr(3), BackoffBase: Ptr(time.Duration(0))}})
	_, _ = c.Enqueue(ctx, q, EnqueueRequest{ID: "e-1", Payload: "error", Timings: &Timings{MaxAttempts: Ptr(1)}})
	_, _ = c.Enqueue(ctx, q, EnqueueRequest{ID: "p-1", Payload: "panic", Timings: &Timings{MaxAttempts: Ptr(1)}})
	w := startWorker(t, testStack.client("worker"), q, func(ctx context.Context, a *Attempt) error {
		var kind string
		_ = a.Decode(&kind)
		mu.Lock()
		seen = append(seen, fmt.Sprintf("%s/%d/%s", a.ID, a.Attempt, a.Checkpoint))
		mu.Unlock()
		switch kind {
		case "retry":
			if a.Attempt == 1 {
				a.SetProgress("half way")
				_ = a.SetCheckpoint(map[string]int{"step": 5})
				return errors.New("upstream timed out") // retryable; the checkpoint goes first
			}
			var cp struct{ Step int }
			if ok, err := a.DecodeCheckpoint(&cp); !ok || err != nil {
				return NonRetryable(fmt.Errorf("no checkpoint: %v", err))
			}
			a.SetResult(map[string]int{"resumed_at": cp.Step})
			return nil
		case "fatal":
			return NonRetryable(errors.New("payload is not a document"))
		case "panic":
			panic("boom")
		}
		return fmt.Errorf("no such file")
	})
	ex := ended(t, c, q, "r-1")
	if ex.State != "succeeded" || ex.Attempt != 2 || string(ex.Result) != `{"resumed_at":5}` {
		t.Errorf("r-1: %s %d %s", ex.State, ex.Attempt, ex.Result)
	}
	ex = ended(t, c, q, "f-1")
	if ex.State != "failed" || ex.Attempt != 1 || !strings.Contains(*ex.LastError, "payload is not a document") {
		t.Errorf("f-1: %s %d %v", ex.State, ex.Attempt, ex.LastError)
	}
	ex = ended(t, c, q, "e-1")
	if ex.State != "failed" || !strings.Contains(*ex.LastError, "no such file") {
		t.Errorf("e-1: %s %v", ex.State, ex.LastError)
	}
	ex = ended(t, c, q, "p-1")
	if ex.State != "failed" || !strings.Contains(*ex.LastError, "panic: boom") {
		t.Errorf("p-1: %s %v", ex.State, ex.LastError)
	}
	stats := w.stop(t)
	if stats.Succeeded != 1 || stats.Retried != 1 || stats.Failed != 3 {
		t.Errorf("stats: %+v", stats)
	}
	mu.Lock()
	defer mu.Unlock()
	if !contains(seen, "r-1/1/") || !contains(seen, `r-1/2/{"step":5}`) {
		t.Errorf("attempts seen: %v", seen)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// A cancel reaches the handler as ctx.Done(); the worker acknowledges it.
func TestWorkerCancellationIsTheContext(t *testing.T) {
	ctx := bg(t)
	c := testStack.client("admin")
	q := unique("wc")
	started := make(chan struct{})
	stopped := make(chan bool, 1)
	_, _ = c.Enqueue(ctx, q, EnqueueRequest{ID: "x-1", Timings: &Timings{HeartbeatTimeout: Ptr(time.Second)}})
	w := startWorker(t, testStack.client("worker"), q, func(ctx context.Context, a *Attempt) error {
		close(started)
		select {
		case <-ctx.Done():
			stopped <- a.CancelRequested() && !a.Lost()
			return ctx.Err()
		case <-time.After(20 * time.Second):
			return nil
		}
	})
	<-started
	waitFor(t, "x-1 running", 10*time.Second, func() bool {
		ex, err := c.Get(ctx, q, "x-1")
		return err == nil && ex.State == "running"
	})
	if r, err := c.Cancel(ctx, q, "x-1", ""); err != nil || r.Outcome != "requested" {
		t.Fatalf("cancel: %+v %v", r, err)
	}
	if ex := ended(t, c, q, "x-1"); ex.State != "cancelled" {
		t.Errorf("x-1: %s", ex.State)
	}
	if !<-stopped {
		t.Error("the handler's context ended without CancelRequested")
	}
	if stats := w.stop(t); stats.Cancelled != 1 {
		t.Errorf("stats: %+v", stats)
	}
}

// An attempt someone else ended: the next heartbeat learns it, the context ends, Lost is
// true and nothing the handler returns is recorded.
func TestWorkerDropsALostAttempt(t *testing.T) {
	ctx := bg(t)
	c := testStack.client("admin")
	q := unique("wl")
	first := make(chan *Attempt, 1)
	released := make(chan bool, 1)
	_, _ = c.Enqueue(ctx, q, EnqueueRequest{ID: "l-1", Timings: &Timings{HeartbeatTimeout: Ptr(600 * time.Millisecond),
		BackoffBase: Ptr(time.Duration(0))}})
	w := startWorker(t, testStack.client("worker"), q, func(ctx context.Context, a *Attempt) error {
		if a.Attempt == 1 {
			first <- a
			<-ctx.Done()
			released <- a.Lost()
			a.SetResult("too late")
			return nil
		}
		a.SetResult("second attempt")
		return nil
	})
	a := <-first
	if _, err := c.Fail(ctx, a.Token, FailRequest{Message: "taken away", Retryable: true}); err != nil {
		t.Fatal(err)
	}
	select {
	case lost := <-released:
		if !lost {
			t.Error("the context ended but Lost is false")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's context was not cancelled")
	}
	ex := ended(t, c, q, "l-1")
	if ex.State != "succeeded" || ex.Attempt != 2 || string(ex.Result) != `"second attempt"` {
		t.Errorf("l-1: %s %d %s", ex.State, ex.Attempt, ex.Result)
	}
	if stats := w.stop(t); stats.Dropped != 1 || stats.Succeeded != 1 {
		t.Errorf("stats: %+v", stats)
	}
}

// Heartbeats that keep failing (here a proxy answers 503) are retried; once the heartbeat
// timeout has passed with no renewal the worker gives the attempt up: its context ends and
// Lost is true. The watchdog retries it, and the retry succeeds when beats get through.
func TestWorkerGivesUpAfterTheHeartbeatTimeout(t *testing.T) {
	ctx := bg(t)
	c := testStack.client("admin")
	q := unique("wg")
	target, _ := url.Parse(testStack.url)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var failBeats, beatsRefused int32
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/attempts/heartbeat" && atomic.LoadInt32(&failBeats) == 1 {
			atomic.AddInt32(&beatsRefused, 1)
			rw.Header().Set("Content-Type", "application/problem+json")
			rw.WriteHeader(503)
			_, _ = rw.Write([]byte(`{"type":"/problems/redis-unavailable","title":"Redis unavailable","status":503,"detail":"x"}`))
			return
		}
		proxy.ServeHTTP(rw, r)
	}))
	t.Cleanup(srv.Close) // after the worker's stop (cleanups run last first)
	viaProxy, _ := NewClient(srv.URL, tokens["worker"])
	atomic.StoreInt32(&failBeats, 1)
	timings := fastTimings()
	timings.StartGrace = Ptr(time.Second) // no beat ever gets through: it stays dispatched
	_, _ = c.Enqueue(ctx, q, EnqueueRequest{ID: "g-1", Timings: timings})
	gaveUp := make(chan bool, 1)
	w := startWorker(t, viaProxy, q, func(ctx context.Context, a *Attempt) error {
		if a.Attempt == 1 {
			<-ctx.Done()
			gaveUp <- a.Lost() && !a.CancelRequested()
			atomic.StoreInt32(&failBeats, 0)
			return ctx.Err()
		}
		return nil
	})
	select {
	case lost := <-gaveUp:
		if !lost {
			t.Error("the context ended but Lost is false")
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the worker never gave the attempt up")
	}
	if n := atomic.LoadInt32(&beatsRefused); n < 2 {
		t.Errorf("%d heartbeats tried, want retries before giving up", n)
	}
	ex := ended(t, c, q, "g-1")
	if ex.State != "succeeded" || ex.Attempt != 2 {
		t.Errorf("g-1: %s attempt %d", ex.State, ex.Attempt)
	}
	if stats := w.stop(t); stats.Dropped != 1 || stats.Succeeded != 1 {
		t.Errorf("stats: %+v", stats)
	}
}
