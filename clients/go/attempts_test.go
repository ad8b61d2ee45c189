package unstuck

// The attempt calls, awaiting and resuming, and the worker registry's calls, against a
// real serve: their replies and their typed errors.

import (
	"errors"
	"testing"
	"time"
)

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
	if !errors.Is(err, ErrAlreadyTerminal) || !errors.As(err, &apiErr) || apiErr.State != "succeeded" {
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
	if _, err := anyone.ResumeByToken(ctx, out.ResumeToken+"x", nil); !errors.Is(err, ErrInvalidResumeToken) {
		t.Errorf("a forged token: %v (token %s)", err, out.ResumeToken)
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
