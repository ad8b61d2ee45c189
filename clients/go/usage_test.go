package unstuck

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

var usageTimings = &Timings{HeartbeatTimeout: Ptr(300 * time.Millisecond), CancelGrace: Ptr(30 * time.Second),
	MaxAttempts: Ptr(1)}

// Through the client: a replayed heartbeat or complete does not count its delta twice,
// a delta without seq or with more cached than input tokens is refused; the execution
// and the queue show the sums; queue budgets go in and come back.
func TestUsageThroughTheClient(t *testing.T) {
	ctx := bg(t)
	c := testStack.client("admin")
	q := unique("uc")
	set, err := c.SetQueue(ctx, q, QueueSettings{Budget: &Budget{Tokens: Ptr(int64(5000)), WarningShare: Ptr(0.5)},
		WindowBudget: &WindowBudget{Cost: Ptr(int64(900)), Window: time.Hour}})
	if err != nil || set.Budget == nil || *set.Budget.Tokens != 5000 || *set.Budget.WarningShare != 0.5 ||
		set.WindowBudget == nil || *set.WindowBudget.Cost != 900 || set.WindowBudget.Window != time.Hour {
		t.Fatalf("set queue with budgets: %+v %v", set, err)
	}
	if _, err := c.Enqueue(ctx, q, EnqueueRequest{ID: "r", Timings: &Timings{HeartbeatTimeout: Ptr(time.Minute)},
		Budget: &Budget{Cost: Ptr(int64(100))}}); err != nil {
		t.Fatal(err)
	}
	claims, err := c.Claim(ctx, q, "w-u", 1, 2*time.Second)
	if err != nil || len(claims) != 1 {
		t.Fatalf("claim: %+v %v", claims, err)
	}
	token := claims[0].Token
	one := Usage{InputTokens: 10, OutputTokens: 5, Cost: 3, Seq: 1}
	for i := 0; i < 3; i++ {
		if reply, err := c.Heartbeat(ctx, token, HeartbeatRequest{Usage: &one}); err != nil || reply.CancelRequested {
			t.Fatalf("heartbeat with usage: %+v %v", reply, err)
		}
	}
	if _, err := c.Heartbeat(ctx, token, HeartbeatRequest{Usage: &Usage{InputTokens: 10}}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("a delta without seq: %v", err)
	}
	if _, err := c.Heartbeat(ctx, token, HeartbeatRequest{Usage: &Usage{InputTokens: 1, CachedInputTokens: 2, Seq: 2}}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("more cached than input tokens: %v", err)
	}
	last := Usage{InputTokens: 1, OutputTokens: 1, Seq: 2, Model: "m"}
	if _, err := c.Complete(ctx, token, "ok", last); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Complete(ctx, token, "ok", last); !errors.Is(err, ErrAlreadyTerminal) {
		t.Errorf("the complete again: %v", err)
	}
	ex, err := c.Get(ctx, q, "r")
	if err != nil || ex.Usage == nil || ex.Usage.UsageTotals != (UsageTotals{11, 6, 0, 3}) ||
		ex.Usage.ByModel["m"] != (UsageTotals{1, 1, 0, 0}) || ex.Budget == nil || *ex.Budget.Cost != 100 {
		t.Fatalf("the execution's usage: %+v %+v %v", ex.Usage, ex.Budget, err)
	}
	qu, err := c.QueueUsage(ctx, q)
	if err != nil || qu.Queue != q || qu.Currency == "" || qu.Totals != (UsageTotals{11, 6, 0, 3}) ||
		qu.Window.InputTokens != 11 || qu.WindowMs.Duration() != time.Hour || qu.WindowBudget == nil ||
		*qu.WindowBudget.Cost != 900 || qu.ByModel["m"].InputTokens != 1 {
		t.Errorf("queue usage: %+v %v", qu, err)
	}
	if _, err := c.Complete(ctx, token, nil, last, last); err == nil {
		t.Error("Complete with two deltas")
	}
}

// A worker's AddUsage deltas are all delivered once, across beats, a failure and the
// completion of its retry (the sums are what the handlers added); bad deltas are refused.
func TestWorkerAddUsageDeliversEveryDeltaOnce(t *testing.T) {
	ctx := bg(t)
	c := testStack.client("admin")
	q := unique("uw")
	if _, err := c.Enqueue(ctx, q, EnqueueRequest{ID: "u", Timings: &Timings{HeartbeatTimeout: Ptr(300 * time.Millisecond),
		MaxAttempts: Ptr(2), BackoffBase: Ptr(time.Duration(0))}}); err != nil {
		t.Fatal(err)
	}
	startWorker(t, testStack.client("worker"), q, func(ctx context.Context, a *Attempt) error {
		add := func(u Usage) {
			if err := a.AddUsage(u); err != nil {
				t.Error(err)
			}
		}
		add(Usage{InputTokens: 100, OutputTokens: 10, Model: "a"})
		add(Usage{InputTokens: 50, OutputTokens: 5, CachedInputTokens: 20, Model: "a"}) // summed with the one above
		add(Usage{Cost: 7, Model: "b"})
		time.Sleep(250 * time.Millisecond) // a beat or two goes by
		add(Usage{InputTokens: 1, OutputTokens: 1, Model: "a"})
		add(Usage{Cost: 1})
		if a.Attempt == 1 {
			return errors.New("the model timed out") // the last delta rides on the failure
		}
		return nil // ... and on the completion
	})
	ex := ended(t, c, q, "u")
	want := UsageTotals{2 * 151, 2 * 16, 2 * 20, 2 * 8}
	if ex.State != "succeeded" || ex.Attempt != 2 || ex.Usage == nil || ex.Usage.UsageTotals != want ||
		ex.Usage.ByModel["a"] != (UsageTotals{302, 32, 40, 0}) || ex.Usage.ByModel["b"].Cost != 14 ||
		ex.Usage.ByModel[""].Cost != 2 {
		t.Errorf("%s attempt %d: usage %+v", ex.State, ex.Attempt, ex.Usage)
	}

	a := newAttempt(Claim{Token: "t", Queue: "q", ID: "i", Attempt: 1, HeartbeatTimeout: 1000})
	for _, bad := range []Usage{{InputTokens: -1}, {InputTokens: 1, CachedInputTokens: 2}, {Model: "a|b"},
		{Model: strings.Repeat("m", 129)}, {Model: "a\nb"}, {Cost: MaxUsageAmount + 1}} {
		if err := a.AddUsage(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if a.pendingUsage() != 0 {
		t.Error("a refused delta was queued")
	}
	// Two deltas whose sum would be above the limit stay two.
	_ = a.AddUsage(Usage{Cost: MaxUsageAmount})
	_ = a.AddUsage(Usage{Cost: 1})
	if a.pendingUsage() != 2 {
		t.Errorf("%d deltas queued", a.pendingUsage())
	}
}

// A budget reached while the handler spends cancels it: the handler's context ends and
// a.CancelReason() is "budget_exceeded"; every delta is delivered (the ones after the
// request too); the execution is cancelled, stop reason budget_exceeded. An operator's
// cancel has no reason.
func TestBudgetExceededReachesTheHandler(t *testing.T) {
	ctx := bg(t)
	c := testStack.client("admin")
	q := unique("ub")
	if _, err := c.Enqueue(ctx, q, EnqueueRequest{ID: "runaway", Payload: "spend", Timings: usageTimings,
		Budget: &Budget{Tokens: Ptr(int64(1000)), WarningShare: Ptr(0.5)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Enqueue(ctx, q, EnqueueRequest{ID: "operator", Payload: "wait", Timings: usageTimings}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	steps := 0
	reasons := map[string]string{}
	w := startWorker(t, testStack.client("worker"), q, func(ctx context.Context, a *Attempt) error {
		for ctx.Err() == nil {
			if a.ID == "runaway" {
				_ = a.AddUsage(Usage{InputTokens: 80, OutputTokens: 20, Cost: 7, Model: "m1"})
				mu.Lock()
				steps++
				mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
		mu.Lock()
		reasons[a.ID] = a.CancelReason()
		mu.Unlock()
		return ctx.Err()
	}, func(w *Worker) { w.Concurrency = 2 })
	waitFor(t, "the operator's execution to run", 10*time.Second, func() bool {
		ex, err := c.Get(ctx, q, "operator")
		return err == nil && ex.State == "running"
	})
	if _, err := c.Cancel(ctx, q, "operator", "not needed"); err != nil {
		t.Fatal(err)
	}
	ex := ended(t, c, q, "runaway")
	op := ended(t, c, q, "operator")
	mu.Lock()
	spent := int64(steps)
	mu.Unlock()
	if ex.State != "cancelled" || ex.Stop == nil || ex.Stop.Reason != "budget_exceeded" ||
		ex.CancelReason == nil || *ex.CancelReason != "budget_exceeded" {
		t.Errorf("the runaway: %s %+v %v", ex.State, ex.Stop, ex.CancelReason)
	}
	if ex.Usage == nil || ex.Usage.UsageTotals != (UsageTotals{80 * spent, 20 * spent, 0, 7 * spent}) ||
		ex.Usage.InputTokens+ex.Usage.OutputTokens < 1000 {
		t.Errorf("the runaway's usage after %d steps: %+v", spent, ex.Usage)
	}
	if op.State != "cancelled" || op.CancelReason != nil {
		t.Errorf("the operator's cancel: %s %v", op.State, op.CancelReason)
	}
	mu.Lock()
	if reasons["runaway"] != "budget_exceeded" || reasons["operator"] != "" {
		t.Errorf("the handlers saw the reasons %q", reasons)
	}
	mu.Unlock()
	evs, err := c.ExecutionEvents(ctx, q, "runaway")
	if err != nil || !hasReason(evs.Events, "budget_warning") || !hasReason(evs.Events, "budget_exceeded") {
		t.Errorf("the budget events: %+v %v", evs, err)
	}
	if stats := w.stop(t); stats.Cancelled != 2 {
		t.Errorf("stats: %+v", stats)
	}
}
