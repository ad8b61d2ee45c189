package unstuck

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The client's route table is the server's: every path and method of /openapi.json, no
// more, no less. (Routes the server adds later make this fail until the client has them.)
func TestRoutesMatchOpenAPI(t *testing.T) {
	raw, err := testStack.client("").OpenAPI(bg(t))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	server := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			switch method {
			case "get", "put", "post", "delete", "patch":
				server[strings.ToUpper(method)+" "+path] = true
			}
		}
	}
	client := map[string]bool{}
	for _, r := range Routes() {
		client[r.Method+" "+r.Path] = true
	}
	var missing, extra []string
	for k := range server {
		if !client[k] {
			missing = append(missing, k)
		}
	}
	for k := range client {
		if !server[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing)+len(extra) > 0 {
		t.Errorf("routes the client lacks: %v; routes the server does not have: %v", missing, extra)
	}
}

func TestHealthMetricsProblemsSession(t *testing.T) {
	ctx := bg(t)
	admin := testStack.client("admin")
	if s, err := admin.Healthz(ctx); err != nil || s != "ok" {
		t.Errorf("healthz: %q %v", s, err)
	}
	if s, err := admin.Readyz(ctx); err != nil || s != "ready" {
		t.Errorf("readyz: %q %v", s, err)
	}
	if text, err := admin.Metrics(ctx); err != nil || !strings.Contains(text, "unstuck_") {
		t.Errorf("metrics: %.200q %v", text, err)
	}
	if page, err := admin.Problem(ctx, "stale-attempt"); err != nil || !strings.Contains(page, "stale-attempt") {
		t.Errorf("problem page: %.200q %v", page, err)
	}
	s, err := admin.Session(ctx)
	if err != nil || s.Scope == nil || *s.Scope != "admin" || !s.CanAdmin {
		t.Errorf("admin session: %+v %v", s, err)
	}
	s, err = testStack.client("").Session(ctx)
	if err != nil || s.Scope != nil || s.CanRead {
		t.Errorf("session without a token: %+v %v", s, err)
	}
	w, err := admin.WatchdogState(ctx)
	if err != nil || w.Health.Verdict == "" || w.Totals == nil {
		t.Errorf("watchdog: %+v %v", w, err)
	}
	if a, err := admin.WatchdogActivity(ctx, 5); err != nil || a.Since.IsZero() {
		t.Errorf("activity: %+v %v", a, err)
	}
}

func TestAuthErrorsAreTyped(t *testing.T) {
	ctx := bg(t)
	_, err := testStack.client("").Queues(ctx)
	var apiErr *APIError
	if !errors.Is(err, ErrUnauthorized) || !errors.As(err, &apiErr) || apiErr.Status != 401 || apiErr.Slug() != "unauthorized" {
		t.Errorf("no token: %v", err)
	}
	if _, err := testStack.client("worker").Queues(ctx); !errors.Is(err, ErrForbidden) {
		t.Errorf("a worker token reading: %v", err)
	}
}

func TestEnqueueGetListFindPin(t *testing.T) {
	ctx := bg(t)
	c := testStack.client("admin")
	q := unique("cq")
	first, err := c.Enqueue(ctx, q, EnqueueRequest{ID: "a", Payload: map[string]int{"n": 1},
		Timings: &Timings{MaxAttempts: Ptr(3), HeartbeatTimeout: Ptr(20 * time.Second)}})
	if err != nil || !first.Created || first.State != "queued" || first.Attempt != 0 {
		t.Fatalf("enqueue: %+v %v", first, err)
	}
	again, err := c.Enqueue(ctx, q, EnqueueRequest{ID: "a", Payload: map[string]int{"n": 1},
		Timings: &Timings{MaxAttempts: Ptr(3), HeartbeatTimeout: Ptr(20 * time.Second)}})
	if err != nil || again.Created {
		t.Errorf("the same enqueue again: %+v %v", again, err)
	}
	_, err = c.Enqueue(ctx, q, EnqueueRequest{ID: "a", Payload: map[string]int{"n": 2}})
	var apiErr *APIError
	if !errors.Is(err, ErrIdempotencyConflict) || !errors.As(err, &apiErr) || apiErr.Status != 422 {
		t.Errorf("same id, other payload: %v", err)
	}
	byKey, err := c.Enqueue(ctx, q, EnqueueRequest{IdempotencyKey: "k-1", Payload: "x", Delay: time.Hour})
	if err != nil || byKey.ID != "k-1" || !byKey.Created {
		t.Errorf("enqueue by Idempotency-Key: %+v %v", byKey, err)
	}
	batch, err := c.EnqueueBatch(ctx, q, []EnqueueRequest{{ID: "b1"}, {ID: "b2"}, {ID: "a", Payload: "other"}})
	if err != nil || len(batch) != 3 || !batch[0].Created || !batch[2].Conflict {
		t.Errorf("batch: %+v %v", batch, err)
	}

	ex, err := c.Get(ctx, q, "a")
	if err != nil || ex.State != "queued" || string(ex.Payload) != `{"n":1}` ||
		*ex.Timings.MaxAttempts != 3 || ex.Timings.HeartbeatTimeout.Duration() != 20*time.Second {
		t.Fatalf("get: %+v %v", ex, err)
	}
	_, err = c.Get(ctx, q, "nope")
	if !errors.Is(err, ErrNotFound) || !errors.As(err, &apiErr) || apiErr.Status != 404 ||
		apiErr.Type != "/problems/not-found" || apiErr.Detail == "" {
		t.Errorf("get of a missing execution: %#v", err)
	}
	_, err = c.Enqueue(ctx, q, EnqueueRequest{ID: "bad", Timings: &Timings{MaxAttempts: Ptr(0)}})
	if !errors.Is(err, ErrInvalidArgument) || !errors.Is(err, ErrBadRequest) || !errors.As(err, &apiErr) || apiErr.Field == "" {
		t.Errorf("max_attempts 0: %#v", err)
	}
	if _, err = c.Get(ctx, q, "bad id!"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("a bad id: %v", err)
	}

	page, err := c.List(ctx, q, "queued", "", 2)
	if err != nil || len(page.Items) != 2 || page.NextCursor == "" {
		t.Fatalf("first page: %+v %v", page, err)
	}
	rest, err := c.List(ctx, q, "queued", page.NextCursor, 2)
	if err != nil || len(rest.Items) != 2 || rest.NextCursor != "" { // a, b1, b2, k-1
		t.Errorf("second page: %+v %v", rest, err)
	}
	found, err := c.Find(ctx, FindFilter{Queue: q, State: "queued", Limit: 10})
	if err != nil || len(found.Items) != 4 {
		t.Errorf("find: %+v %v", found, err)
	}

	if state, err := c.Pin(ctx, q, "a"); err != nil || state != "queued" {
		t.Errorf("pin: %q %v", state, err)
	}
	if ex, _ := c.Get(ctx, q, "a"); !ex.Pinned {
		t.Error("not pinned after Pin")
	}
	if _, err := c.Unpin(ctx, q, "a"); err != nil {
		t.Error(err)
	}
	if ex, _ := c.Get(ctx, q, "a"); ex.Pinned {
		t.Error("pinned after Unpin")
	}
	if reply, err := c.Cancel(ctx, q, "b1", "not needed"); err != nil || reply.Outcome != "cancelled" {
		t.Errorf("cancel of a queued execution: %+v %v", reply, err)
	}
	_, err = c.Cancel(ctx, q, "b1", "")
	if !errors.Is(err, ErrAlreadyTerminal) || !errors.Is(err, ErrConflict) || !errors.As(err, &apiErr) || apiErr.State != "cancelled" {
		t.Errorf("cancel of a cancelled execution: %#v", err)
	}
	retried, err := c.Retry(ctx, q, "b1", "", "again")
	if err != nil || !retried.Created || retried.ID == "b1" {
		t.Errorf("retry: %+v %v", retried, err)
	}
	if _, err := c.Retry(ctx, q, "a", "", ""); !errors.Is(err, ErrInvalidTransition) {
		t.Errorf("retry of a queued execution: %v", err)
	}
	evs, err := c.ExecutionEvents(ctx, q, "b1")
	if err != nil || len(evs.Timeline) < 2 {
		t.Errorf("execution events: %+v %v", evs, err)
	}
	recent, err := c.RecentEvents(ctx, q, 100)
	if err != nil || len(recent) < 5 || recent[0].Queue != q || recent[0].ID == "" {
		t.Errorf("recent events: %+v %v", recent, err)
	}
}

func TestQueueSettingsAndPause(t *testing.T) {
	ctx := bg(t)
	c := testStack.client("admin")
	q := unique("sq")
	got, err := c.SetQueue(ctx, q, QueueSettings{Capacity: Ptr(7), Timings: &Timings{MaxAttempts: Ptr(4)},
		MaxWait: Ptr(2 * time.Hour), OnWaitExpiry: "requeue",
		Retention: &RetentionSettings{Succeeded: Ptr(time.Hour)}})
	if err != nil || got.Capacity != 7 || *got.Timings.MaxAttempts != 4 || got.MaxWaitMs.Duration() != 2*time.Hour ||
		*got.OnWaitExpiry != "requeue" || got.Retention.Succeeded.Duration() != time.Hour {
		t.Fatalf("set queue: %+v %v", got, err)
	}
	if one, err := c.GetQueue(ctx, q); err != nil || one.Capacity != 7 {
		t.Errorf("get queue: %+v %v", one, err)
	}
	all, err := c.Queues(ctx)
	if err != nil || !containsQueue(all, q) {
		t.Errorf("queues: %v", err)
	}
	p, err := c.PauseQueue(ctx, q, "maintenance")
	if err != nil || !p.Paused || !p.Changed || p.Pause.Reason != "maintenance" {
		t.Errorf("pause: %+v %v", p, err)
	}
	p, err = c.ResumeQueue(ctx, q, "")
	if err != nil || p.Paused || !p.Changed {
		t.Errorf("resume: %+v %v", p, err)
	}
	_, err = c.PauseQueue(ctx, unique("never"), "x")
	if !errors.Is(err, ErrUnknownQueue) || !errors.Is(err, ErrNotFound) {
		t.Errorf("pause of an unknown queue: %v", err)
	}
}

func containsQueue(qs []Queue, name string) bool {
	for _, q := range qs {
		if q.Name == name {
			return true
		}
	}
	return false
}

// A long-poll claim waits its wait even when the client's Timeout is shorter, and ends
// when its context does.
func TestLongPollIsBoundedByTheContext(t *testing.T) {
	c := testStack.client("admin")
	c.Timeout = 300 * time.Millisecond
	q := unique("lp")
	go func() {
		time.Sleep(800 * time.Millisecond)
		_, _ = testStack.client("admin").Enqueue(context.Background(), q, EnqueueRequest{ID: "late"})
	}()
	claims, err := c.Claim(context.Background(), q, "w-lp", 1, 10*time.Second)
	if err != nil || len(claims) != 1 || claims[0].ID != "late" {
		t.Fatalf("a claim waiting past the client's Timeout: %+v %v", claims, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = c.Claim(ctx, unique("lp"), "w-lp", 1, 30*time.Second)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a claim whose context ends: %v", err)
	}
	empty, err := c.Claim(context.Background(), unique("lp"), "w-lp", 1, 100*time.Millisecond)
	if err != nil || len(empty) != 0 {
		t.Errorf("a claim that finds nothing: %+v %v", empty, err)
	}
}

// Retries are opt-in: a 503 with Retry-After is repeated; an unknown outcome is not
// repeated for an enqueue without an id.
func TestRetryPolicy(t *testing.T) {
	var calls int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := atomic.AddInt32(&calls, 1)
		w.Header().Set("Content-Type", "application/problem+json")
		if r.URL.Path == "/v1/queues/q/executions" {
			w.WriteHeader(504)
			_, _ = w.Write([]byte(`{"type":"/problems/unknown-outcome","title":"Outcome unknown","status":504,"detail":"d"}`))
			return
		}
		if n < 3 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(503)
			_, _ = w.Write([]byte(`{"type":"/problems/redis-unavailable","title":"Redis unavailable","status":503,"detail":"nothing was written"}`))
			return
		}
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	}))
	defer srv.Close()
	c, _ := NewClient(srv.URL, "")
	if _, err := c.Healthz(bg(t)); !errors.Is(err, ErrRedisUnavailable) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("without retries: %v", err)
	}
	c.Retries = RetryPolicy{MaxAttempts: 5, BaseDelay: time.Millisecond}
	if s, err := c.Healthz(bg(t)); err != nil || s != "ok" || atomic.LoadInt32(&calls) != 3 {
		t.Errorf("with retries: %q %v after %d calls", s, err, calls)
	}
	atomic.StoreInt32(&calls, 0)
	if _, err := c.Enqueue(bg(t), "q", EnqueueRequest{}); !errors.Is(err, ErrUnknownOutcome) || atomic.LoadInt32(&calls) != 1 {
		t.Errorf("an enqueue without an id: %v after %d calls", err, calls)
	}
	atomic.StoreInt32(&calls, 0)
	if _, err := c.Enqueue(bg(t), "q", EnqueueRequest{ID: "x"}); !errors.Is(err, ErrUnknownOutcome) || atomic.LoadInt32(&calls) != 5 {
		t.Errorf("an enqueue with an id: %v after %d calls", err, calls)
	}
}
