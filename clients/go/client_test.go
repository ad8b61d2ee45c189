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
	if !errors.Is(err, ErrTerminal) || !errors.Is(err, ErrConflict) || !errors.As(err, &apiErr) || apiErr.State != "cancelled" {
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

func claimOne(t *testing.T, c *Client, q string) Claim {
	t.Helper()
	claims, err := c.Claim(bg(t), q, "w-test", 1, 5*time.Second)
	if err != nil || len(claims) != 1 {
		t.Fatalf("claim: %+v %v", claims, err)
	}
	return claims[0]
}

func TestAttemptCallsAndTheirErrors(t *testing.T) {
	ctx := bg(t)
	c := testStack.client("admin")
	w := testStack.client("worker")
	q := unique("aq")
	if _, err := c.Enqueue(ctx, q, EnqueueRequest{ID: "x", Payload: 1,
		Timings: &Timings{MaxAttempts: Ptr(3), BackoffBase: Ptr(time.Duration(0))}}); err != nil {
		t.Fatal(err)
	}
	first := claimOne(t, w, q)
	if first.Attempt != 1 || first.Checkpoint != nil && string(first.Checkpoint) != "null" || first.HeartbeatTimeout <= 0 {
		t.Errorf("claim: %+v", first)
	}
	beat, err := w.Heartbeat(ctx, first.Token, HeartbeatRequest{Progress: Ptr("half"), Checkpoint: map[string]int{"step": 5}})
	if err != nil || beat.CancelRequested {
		t.Fatalf("heartbeat: %+v %v", beat, err)
	}
	ex, _ := c.Get(ctx, q, "x")
	if ex.State != "running" || *ex.Progress != "half" || string(ex.Checkpoint) != `{"step":5}` {
		t.Errorf("after the beat: %s %v %s", ex.State, ex.Progress, ex.Checkpoint)
	}
	if _, err := w.CancelAck(ctx, first.Token); !errors.Is(err, ErrInvalidTransition) {
		t.Errorf("cancel-ack with no cancel: %v", err)
	}
	failed, err := w.Fail(ctx, first.Token, FailRequest{Message: "upstream down", Retryable: true})
	if err != nil || failed.Outcome != "retry_scheduled" || failed.AvailableAt == nil {
		t.Fatalf("fail: %+v %v", failed, err)
	}
	_, err = w.Heartbeat(ctx, first.Token, HeartbeatRequest{})
	var apiErr *APIError
	if !errors.Is(err, ErrStaleAttempt) || !errors.As(err, &apiErr) || apiErr.CurrentAttempt == nil ||
		*apiErr.CurrentAttempt != 1 || apiErr.State != "queued" || !apiErr.AttemptEnded ||
		apiErr.NextAttempt == nil || *apiErr.NextAttempt != 2 || apiErr.Status != 409 {
		t.Errorf("a beat of the ended attempt: %#v", err)
	}
	second := claimOne(t, w, q)
	if second.Attempt != 2 || string(second.Checkpoint) != `{"step":5}` {
		t.Errorf("second claim: %+v", second)
	}
	if r, err := w.Complete(ctx, second.Token, map[string]string{"ok": "yes"}); err != nil || !r.SlotReleased {
		t.Fatalf("complete: %+v %v", r, err)
	}
	_, err = w.Complete(ctx, second.Token, nil)
	if !errors.Is(err, ErrTerminal) || !errors.As(err, &apiErr) || apiErr.State != "succeeded" {
		t.Errorf("complete twice: %#v", err)
	}
	if _, err := w.Heartbeat(ctx, "not-a-token", HeartbeatRequest{}); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("a malformed token: %v", err)
	}
	ex, _ = c.Get(ctx, q, "x")
	if ex.State != "succeeded" || string(ex.Result) != `{"ok":"yes"}` || ex.Attempt != 2 {
		t.Errorf("at the end: %s %d %s", ex.State, ex.Attempt, ex.Result)
	}

	// Snooze: the token goes stale, the execution comes back as a continuation.
	if _, err := c.Enqueue(ctx, q, EnqueueRequest{ID: "s"}); err != nil {
		t.Fatal(err)
	}
	sz := claimOne(t, w, q)
	if _, err := w.Snooze(ctx, sz.Token, SnoozeRequest{Reason: ""}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("a snooze with no time and no reason: %v", err)
	}
	out, err := w.Snooze(ctx, sz.Token, SnoozeRequest{After: 100 * time.Millisecond, Reason: "429"})
	if err != nil || out.Outcome != "snoozed" || out.Snoozes == nil || *out.Snoozes != 1 {
		t.Fatalf("snooze: %+v %v", out, err)
	}
	again := claimOne(t, w, q)
	until := time.Now().Add(200 * time.Millisecond)
	if out, err := w.Snooze(ctx, again.Token, SnoozeRequest{Until: until, Reason: "later"}); err != nil || out.AvailableAt == nil ||
		out.AvailableAt.Sub(until).Abs() > 5*time.Millisecond {
		t.Errorf("snooze until: %+v %v", out, err)
	}
}

func TestAwaitAndResume(t *testing.T) {
	ctx := bg(t)
	c := testStack.client("admin")
	w := testStack.client("worker")
	q := unique("rq")
	if _, err := c.Enqueue(ctx, q, EnqueueRequest{ID: "r1"}); err != nil {
		t.Fatal(err)
	}
	one := claimOne(t, w, q)
	out, err := w.AwaitResume(ctx, one.Token, AwaitRequest{Reason: "approval", WaitDeadline: time.Hour,
		Checkpoint: map[string]string{"plan": "p"}})
	if err != nil || out.Outcome != "awaiting" || out.ResumeToken == "" || out.WaitDeadlineAt == nil {
		t.Fatalf("await: %+v %v", out, err)
	}
	anyone := testStack.client("") // the resume token is the credential
	res, err := anyone.ResumeByToken(ctx, out.ResumeToken, map[string]bool{"approved": true})
	if err != nil || res.Already || res.State != "queued" || res.ID != one.ID {
		t.Errorf("resume by token: %+v %v", res, err)
	}
	_, err = anyone.ResumeByToken(ctx, out.ResumeToken, nil)
	if !errors.Is(err, ErrResumeTokenUsed) || !errors.Is(err, ErrConflict) {
		t.Errorf("the token twice: %v", err)
	}
	if _, err := anyone.ResumeByToken(ctx, out.ResumeToken+"x", nil); !errors.Is(err, ErrInvalidResumeToken) && !errors.Is(err, ErrBadRequest) {
		t.Errorf("a forged token: %v", err)
	}
	cont := claimOne(t, w, q)
	if cont.ID != one.ID || string(cont.ResumeInput) != `{"approved":true}` || string(cont.Checkpoint) != `{"plan":"p"}` {
		t.Errorf("the continuation: %+v", cont)
	}
	// Another one: Resume by id.
	if _, err := c.Enqueue(ctx, q, EnqueueRequest{ID: "r2"}); err != nil {
		t.Fatal(err)
	}
	two := claimOne(t, w, q)
	if _, err := w.AwaitResume(ctx, two.Token, AwaitRequest{Reason: "approval", WaitDeadline: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if res, err := c.Resume(ctx, q, two.ID, nil); err != nil || res.Already {
		t.Errorf("resume: %+v %v", res, err)
	}
	// A resume again after the continuation was claimed is the first one's reply.
	if got, err := c.Resume(ctx, q, cont.ID, nil); err != nil || !got.Already || got.State != "dispatched" {
		t.Errorf("a second resume: %+v %v", got, err)
	}
	if _, err := c.Enqueue(ctx, q, EnqueueRequest{ID: "never", Delay: time.Hour}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Resume(ctx, q, "never", nil)
	var apiErr *APIError
	if !errors.Is(err, ErrNotAwaiting) || !errors.As(err, &apiErr) || apiErr.State != "queued" {
		t.Errorf("resume of an execution that never waited: %#v", err)
	}
}

func TestWorkerRegistryCalls(t *testing.T) {
	ctx := bg(t)
	c := testStack.client("admin")
	id := unique("wr")
	reg, err := c.RegisterWorker(ctx, Registration{WorkerID: id, Host: "h", PID: 42, Version: "v",
		Queues: []string{"q"}, HeartbeatInterval: 2 * time.Second})
	if err != nil || reg.WorkerID != id {
		t.Fatalf("register: %+v %v", reg, err)
	}
	if _, err := c.RegisterWorker(ctx, Registration{WorkerID: id}); !errors.Is(err, ErrWorkerExists) {
		t.Errorf("register twice: %v", err)
	}
	if _, err := c.WorkerHeartbeat(ctx, id, []RunningRef{{Queue: "q", ID: "e"}}); err != nil {
		t.Error(err)
	}
	all, err := c.Workers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var mine *WorkerInfo
	for i := range all {
		if all[i].WorkerID == id {
			mine = &all[i]
		}
	}
	if mine == nil || mine.PID != 42 || mine.HeartbeatInterval.Duration() != 2*time.Second || len(mine.Running) != 1 {
		t.Errorf("workers: %+v", mine)
	}
	if err := c.RequestWorker(ctx, id, "drain", "test"); err != nil {
		t.Error(err)
	}
	if beat, err := c.WorkerHeartbeat(ctx, id, nil); err != nil || beat.Request != "drain" {
		t.Errorf("the beat after a drain request: %+v %v", beat, err)
	}
	if r, err := c.ResetWorker(ctx, id, "test"); err != nil || r.CircuitWasOpen {
		t.Errorf("reset: %+v %v", r, err)
	}
	if _, err := c.WorkerEvents(ctx, "", 10, true); err != nil {
		t.Error(err)
	}
	if err := c.DeregisterWorker(ctx, id); err != nil {
		t.Error(err)
	}
	if err := c.DeregisterWorker(ctx, id); !errors.Is(err, ErrUnknownWorker) || !errors.Is(err, ErrNotFound) {
		t.Errorf("deregister twice: %v", err)
	}
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
