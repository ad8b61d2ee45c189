package unstuck

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// served counts the requests of route the server answered (its /metrics counter).
func served(t *testing.T, c *Client, route string) int {
	t.Helper()
	text, err := c.Metrics(bg(t))
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`^unstuck_http_requests_total\{(.*)\} (\d+)$`)
	total := 0
	for _, l := range strings.Split(text, "\n") {
		if m := line.FindStringSubmatch(l); m != nil && strings.Contains(m[1], `route="`+route+`"`) {
			n, _ := strconv.Atoi(m[2])
			total += n
		}
	}
	return total
}

func claimFor(t *testing.T, c *Client, queue, id string) string {
	t.Helper()
	ctx := bg(t)
	if _, err := c.Enqueue(ctx, queue, EnqueueRequest{ID: id, Payload: map[string]any{}}); err != nil {
		t.Fatal(err)
	}
	claims, err := c.Claim(ctx, queue, "w-"+id, 1, 0)
	if err != nil || len(claims) != 1 {
		t.Fatalf("claim %s: %v %v", id, claims, err)
	}
	return claims[0].Token
}

func TestHeartbeatsAnswerEachBeatInItsPlace(t *testing.T) {
	ctx := bg(t)
	c := testStack.client("admin")
	q := unique("bq")
	live, done, big := claimFor(t, c, q, "live"), claimFor(t, c, q, "done"), claimFor(t, c, q, "big")
	if _, err := c.Complete(ctx, done, nil); err != nil {
		t.Fatal(err)
	}
	half := "half"
	results, err := c.Heartbeats(ctx, []Beat{
		{Token: live, HeartbeatRequest: HeartbeatRequest{Progress: &half, Checkpoint: map[string]int{"at": 1}}},
		{Token: done},
		{Token: big, HeartbeatRequest: HeartbeatRequest{Checkpoint: map[string]string{"blob": strings.Repeat("x", 2<<20)}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if r := results[0]; r.Err != nil || r.Reply == nil || r.Reply.CancelRequested {
		t.Fatalf("live: %+v", r)
	}
	var apiErr *APIError
	if !errors.Is(results[1].Err, ErrAlreadyTerminal) || !errors.As(results[1].Err, &apiErr) || apiErr.State != "succeeded" {
		t.Fatalf("done: %+v", results[1])
	}
	if !errors.Is(results[2].Err, ErrTooLarge) || !errors.As(results[2].Err, &apiErr) || apiErr.Field != "checkpoint" {
		t.Fatalf("big: %+v", results[2])
	}
	ex, err := c.Get(ctx, q, "live")
	if err != nil || ex.State != "running" || ex.Progress == nil || *ex.Progress != "half" {
		t.Fatalf("live: %+v %v", ex, err)
	}
	if ex, err := c.Get(ctx, q, "big"); err != nil || ex.State != "dispatched" {
		t.Fatalf("big: %+v %v", ex, err)
	}
	many := make([]Beat, MaxHeartbeatBatch+1)
	for i := range many {
		many[i].Token = live
	}
	if _, err := c.Heartbeats(ctx, many); !errors.Is(err, ErrInvalidArgument) || !errors.As(err, &apiErr) || apiErr.Field != "heartbeats" {
		t.Fatalf("1001 beats: %v", err)
	}
}

func TestWorkerBeatsWhatItHoldsInOneRequestAndAStaleOneStopsAlone(t *testing.T) {
	ctx := bg(t)
	c := testStack.client("admin")
	q := unique("bw")
	timings := &Timings{HeartbeatTimeout: Ptr(900 * time.Millisecond), StuckThreshold: Ptr(10 * time.Second)}
	for i := 0; i < 3; i++ {
		if _, err := c.Enqueue(ctx, q, EnqueueRequest{ID: fmt.Sprintf("job-%d", i), Payload: i, Timings: timings}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	attempts := map[string]*Attempt{}
	type round struct {
		tokens  []string
		results []HeartbeatResult
	}
	var rounds []round
	sent := func() []round {
		mu.Lock()
		defer mu.Unlock()
		return append([]round(nil), rounds...)
	}
	release := make(chan struct{})
	w := startWorker(t, testStack.client("worker"), q, func(ctx context.Context, a *Attempt) error {
		mu.Lock()
		attempts[a.ID] = a
		mu.Unlock()
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}, func(w *Worker) {
		w.Concurrency = 3
		w.PollWait = 500 * time.Millisecond
		w.onBeatRound = func(beats []Beat, results []HeartbeatResult) { // what each round sent
			r := round{results: results}
			for _, b := range beats {
				r.tokens = append(r.tokens, b.Token)
			}
			mu.Lock()
			rounds = append(rounds, r)
			mu.Unlock()
		}
	})
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	waitFor(t, "three running jobs", 15*time.Second, func() bool {
		for i := 0; i < 3; i++ {
			ex, err := c.Get(ctx, q, fmt.Sprintf("job-%d", i))
			if err != nil || ex.State != "running" {
				return false
			}
		}
		mu.Lock()
		defer mu.Unlock()
		return len(attempts) == 3
	})
	waitFor(t, "a round of three", 10*time.Second, func() bool {
		for _, r := range sent() {
			if len(r.tokens) == 3 {
				return true
			}
		}
		return false
	})
	single, batches := served(t, c, "/v1/attempts/heartbeat"), served(t, c, "/v1/attempts/heartbeats")
	from := len(sent())
	waitFor(t, "three more rounds", 10*time.Second, func() bool { return len(sent()) >= from+3 })
	for _, r := range sent()[from:] {
		if len(r.tokens) != 3 {
			t.Fatalf("a round of %d beats, not 3", len(r.tokens))
		}
	}
	if got := served(t, c, "/v1/attempts/heartbeat"); got != single {
		t.Fatalf("single-route beats went from %d to %d", single, got)
	}
	if got := served(t, c, "/v1/attempts/heartbeats"); got < batches+3 {
		t.Fatalf("batched requests went from %d to %d", batches, got)
	}

	// Attempt 1 of job-1 is ended from outside (its retry waits a minute): the next round
	// answers its beat stale-attempt, and only job-1 stops.
	mu.Lock()
	stale, others := attempts["job-1"], []*Attempt{attempts["job-0"], attempts["job-2"]}
	mu.Unlock()
	if _, err := c.Fail(ctx, stale.Token, FailRequest{Message: "ended elsewhere", Retryable: true, RetryAfter: time.Minute}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "job-1 to stop", 10*time.Second, stale.Lost)
	staleAnswered := false
	for _, r := range sent() {
		for i, tok := range r.tokens {
			if tok == stale.Token && len(r.tokens) == 3 && errors.Is(r.results[i].Err, ErrStaleAttempt) {
				staleAnswered = true
			}
		}
	}
	if !staleAnswered {
		t.Fatal("no batched round answered job-1's beat stale-attempt")
	}
	for _, a := range others {
		if a.Lost() || a.CancelRequested() {
			t.Fatalf("%v stopped too", a)
		}
	}
	from = len(sent())
	waitFor(t, "two more rounds", 10*time.Second, func() bool { return len(sent()) >= from+2 })
	for _, r := range sent()[from:] {
		if len(r.tokens) != 2 || r.tokens[0] == stale.Token || r.tokens[1] == stale.Token {
			t.Fatalf("a round after job-1 stopped: %v", r.tokens)
		}
	}
	close(release)
	released = true
	for _, id := range []string{"job-0", "job-2"} {
		if ex := ended(t, c, q, id); ex.State != "succeeded" {
			t.Fatalf("%s: %s", id, ex.State)
		}
	}
	if ex, err := c.Get(ctx, q, "job-1"); err != nil || ex.State != "queued" {
		t.Fatalf("job-1: %+v %v", ex, err)
	}
	if stats := w.stop(t); stats.Succeeded != 2 || stats.Dropped != 1 {
		t.Fatalf("stats: %+v", stats)
	}
}
