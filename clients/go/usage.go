package unstuck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"
)

// Usage is one usage delta: tokens and cost spent since the previous one (the
// OpenTelemetry gen_ai.usage.* names). On the wire (HeartbeatRequest.Usage, Complete,
// FailRequest.Usage) Seq is required: positive and increasing within the attempt; a
// delta whose Seq is not above the last applied is not counted again, so replaying a call
// is safe. Attempt.AddUsage numbers them itself (leave Seq 0 there).
type Usage struct {
	InputTokens       int64  `json:"input_tokens"`
	OutputTokens      int64  `json:"output_tokens"`
	CachedInputTokens int64  `json:"cached_input_tokens"` // a part of InputTokens
	Cost              int64  `json:"cost"`                // integer micro-units of the namespace's currency
	Model             string `json:"model,omitempty"`     // "" for none
	Seq               int64  `json:"seq"`
}

// MaxModel is the longest model name a usage delta carries, in bytes.
const MaxModel = 128

// MaxUsageAmount is the largest amount a usage member may carry (10^15).
const MaxUsageAmount = 1_000_000_000_000_000

func (u Usage) check() error {
	for name, v := range map[string]int64{"input_tokens": u.InputTokens, "output_tokens": u.OutputTokens,
		"cached_input_tokens": u.CachedInputTokens, "cost": u.Cost} {
		if v < 0 || v > MaxUsageAmount {
			return fmt.Errorf("unstuck: usage: %s must be 0 to %d, got %d", name, int64(MaxUsageAmount), v)
		}
	}
	if u.CachedInputTokens > u.InputTokens {
		return errors.New("unstuck: usage: cached_input_tokens is a part of input_tokens: at most it")
	}
	if len(u.Model) > MaxModel || strings.ContainsRune(u.Model, '|') || strings.IndexFunc(u.Model, unicode.IsControl) >= 0 {
		return fmt.Errorf("unstuck: usage: model must be at most %d bytes without '|' or control characters", MaxModel)
	}
	return nil
}

// UsageTotals is usage summed.
type UsageTotals struct {
	InputTokens       int64 `json:"input_tokens"`
	OutputTokens      int64 `json:"output_tokens"`
	CachedInputTokens int64 `json:"cached_input_tokens"`
	Cost              int64 `json:"cost"`
}

// UsageSummary is an execution's usage over all its attempts, and by model ("" for
// deltas that named none).
type UsageSummary struct {
	UsageTotals
	ByModel map[string]UsageTotals `json:"by_model"`
}

// Budget limits an execution's usage over all its attempts: Tokens (input + output)
// and/or Cost (micro-units). At WarningShare (0 < x < 1; nil: 0.8) of a limit one
// budget_warning event; at the limit a cancellation request with reason
// "budget_exceeded" (the handler sees it in a.CancelReason()).
type Budget struct {
	Tokens       *int64   `json:"tokens,omitempty"`
	Cost         *int64   `json:"cost,omitempty"`
	WarningShare *float64 `json:"warning_share,omitempty"`
}

// WindowBudget is a queue's budget per rolling Window (0: the server's 24 h; at least a
// minute): when the window's usage reaches it the queue is paused by "budget" until an
// operator resumes it or raises the budget.
type WindowBudget struct {
	Tokens *int64
	Cost   *int64
	Window time.Duration
}

type windowBudgetJSON struct {
	Tokens   *int64  `json:"tokens,omitempty"`
	Cost     *int64  `json:"cost,omitempty"`
	WindowMs *Millis `json:"window_ms,omitempty"`
}

// MarshalJSON writes the window in milliseconds (window_ms).
func (b WindowBudget) MarshalJSON() ([]byte, error) {
	out := windowBudgetJSON{Tokens: b.Tokens, Cost: b.Cost}
	if b.Window > 0 {
		w := Millis(ms(b.Window))
		out.WindowMs = &w
	}
	return json.Marshal(out)
}

// UnmarshalJSON reads window_ms.
func (b *WindowBudget) UnmarshalJSON(data []byte) error {
	var in windowBudgetJSON
	if err := json.Unmarshal(data, &in); err != nil {
		return err
	}
	*b = WindowBudget{Tokens: in.Tokens, Cost: in.Cost}
	if in.WindowMs != nil {
		b.Window = in.WindowMs.Duration()
	}
	return nil
}

// QueueUsage is a queue's usage: totals since its first, by model, and over its rolling
// window (24 h, or its window budget's).
type QueueUsage struct {
	Queue        string                 `json:"queue"`
	Currency     string                 `json:"currency"` // costs are micro-units of it
	Totals       UsageTotals            `json:"totals"`
	ByModel      map[string]UsageTotals `json:"by_model"`
	Window       UsageTotals            `json:"window"`
	WindowMs     Millis                 `json:"window_ms"`
	WindowBudget *WindowBudget          `json:"window_budget"`
}

// QueueUsage returns the queue's usage.
func (c *Client) QueueUsage(ctx context.Context, queue string) (*QueueUsage, error) {
	var out QueueUsage
	if _, err := c.call(ctx, req(http.MethodGet, "/v1/queues/{queue}/usage", queue), &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AddUsage adds tokens and cost spent since the last call (u.Seq is ignored): sent with
// the next heartbeat, or with the complete or fail that ends the attempt. The worker
// numbers each delta once it is sent, so a retried call never counts it twice, and none is
// lost: what is still unsent when the handler returns goes out before the outcome. Deltas
// added between two beats are summed when they name the same model. An error (nothing
// added) for a negative amount, cached input tokens above the input tokens, or a model
// the server would refuse.
func (a *Attempt) AddUsage(u Usage) error {
	u.Seq = 0
	if err := u.check(); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if n := len(a.usage); n > 0 && a.usage[n-1].Seq == 0 && a.usage[n-1].Model == u.Model {
		sum := a.usage[n-1]
		sum.InputTokens += u.InputTokens
		sum.OutputTokens += u.OutputTokens
		sum.CachedInputTokens += u.CachedInputTokens
		sum.Cost += u.Cost
		if sum.check() == nil { // else a delta of its own
			a.usage[n-1] = sum
			return nil
		}
	}
	a.usage = append(a.usage, u)
	return nil
}

// CancelReason says why cancellation was requested when the ledger asked rather than an
// operator: "budget_exceeded"; "" otherwise (or before any request).
func (a *Attempt) CancelReason() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cancelReason
}

// nextUsage is the oldest undelivered delta, numbered (its Seq kept until delivered);
// nil when none. The caller holds a.mu.
func (a *Attempt) nextUsage() *Usage {
	if len(a.usage) == 0 {
		return nil
	}
	if a.usage[0].Seq == 0 {
		a.usageSeq++
		a.usage[0].Seq = a.usageSeq
	}
	u := a.usage[0]
	return &u
}

// usageDelivered drops the delta numbered seq once a call carrying it went through.
func (a *Attempt) usageDelivered(seq int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if seq > 0 && len(a.usage) > 0 && a.usage[0].Seq == seq {
		a.usage = a.usage[1:]
	}
}

func (a *Attempt) pendingUsage() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.usage)
}

// lastUsage is the delta the outcome call carries (numbered; nil when none).
func (a *Attempt) lastUsage() *Usage {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.nextUsage()
}

// drainUsage delivers the usage still pending by heartbeats, all but the last delta when
// keepLast (it rides on the complete or fail), all of it before a cancel acknowledgement,
// a snooze or an await. Failed beats are retried for OutcomeRetryFor.
func (w *Worker) drainUsage(a *Attempt, keepLast bool) {
	giveUp := time.Now().Add(OutcomeRetryFor)
	for failures := 0; ; {
		_, cancelRequested, lost, _ := a.state()
		keep := 0
		if keepLast && !cancelRequested {
			keep = 1
		}
		if lost || a.pendingUsage() <= keep {
			return
		}
		switch w.beat(a, w.Client.timeout()) {
		case beatRenewed:
			failures = 0
		case beatLost:
			return
		default:
			if time.Now().After(giveUp) {
				w.logf("%v: %d usage deltas not delivered", a, a.pendingUsage())
				return
			}
			time.Sleep(backoff(failures, 0, 0))
			failures++
		}
	}
}
