package unstuck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// MaxClaimWait is the longest long poll a claim may ask for.
const MaxClaimWait = 30 * time.Second

// Claim claims up to max executions of the queue for workerID, waiting up to wait (0 to
// MaxClaimWait) for one to become claimable; an empty slice when none did. The wait is a
// long poll bounded by ctx (and by the client's Timeout added to the wait), never by
// http.Client.Timeout. A claim cut short by its context may still have claimed
// executions the reply never delivered: they stay dispatched until their start_grace
// passes and the watchdog retries them.
func (c *Client) Claim(ctx context.Context, queue, workerID string, max int, wait time.Duration) ([]Claim, error) {
	body := map[string]any{"worker_id": workerID}
	if max > 1 {
		body["max"] = max
	}
	if wait > 0 {
		body["wait_ms"] = ms(wait)
	}
	r := req(http.MethodPost, "/v1/queues/{queue}/claims", queue)
	r.body = body
	r.extra = wait
	var out struct {
		Claims []Claim `json:"claims"`
	}
	status, err := c.call(ctx, r, &out)
	if err != nil || status == http.StatusNoContent {
		return nil, err
	}
	return out.Claims, nil
}

// HeartbeatRequest is what one attempt heartbeat carries besides the token.
type HeartbeatRequest struct {
	Progress   *string // nil: unchanged
	Checkpoint any     // nil: unchanged (a json.RawMessage("null") clears it)
	// Fingerprint ("" for none; else 1 to 128 bytes) is loop detection's: the same one
	// max_repeats times in a row and the watchdog judges the execution stuck "looping";
	// a different one starts the count again, none leaves it.
	Fingerprint string
	// Usage is a usage delta (Seq required) spent since the previous one (nil: none).
	Usage *Usage
}

// HeartbeatReply says whether cancellation was requested, and why when the ledger asked
// rather than an operator (CancelReason "budget_exceeded"; "" for an operator's cancel).
type HeartbeatReply struct {
	CancelRequested bool   `json:"cancel_requested"`
	CancelReason    string `json:"cancel_reason"`
}

// Heartbeat renews the attempt. ErrStaleAttempt or ErrAlreadyTerminal when it is no longer
// current: stop, the work is not yours.
func (c *Client) Heartbeat(ctx context.Context, token string, h HeartbeatRequest) (*HeartbeatReply, error) {
	var out HeartbeatReply
	if err := c.attemptCall(ctx, "/v1/attempts/heartbeat", h.body(token), &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// body is the JSON body of one heartbeat of token.
func (h HeartbeatRequest) body(token string) map[string]any {
	body := map[string]any{"token": token}
	if h.Progress != nil {
		body["progress"] = *h.Progress
	}
	if h.Checkpoint != nil {
		body["checkpoint"] = h.Checkpoint
	}
	if h.Fingerprint != "" {
		body["fingerprint"] = h.Fingerprint
	}
	if h.Usage != nil {
		body["usage"] = *h.Usage
	}
	return body
}

// MaxHeartbeatBatch is the most beats one Heartbeats call carries.
const MaxHeartbeatBatch = 1000

// Beat is one attempt's heartbeat in a Heartbeats call.
type Beat struct {
	Token string
	HeartbeatRequest
}

// HeartbeatResult is one beat's answer in a Heartbeats call: Reply, or Err (an *APIError,
// matched with errors.Is as Heartbeat's error would be) when that beat was refused.
type HeartbeatResult struct {
	Reply *HeartbeatReply
	Err   error
}

// Heartbeats beats many attempts (of any queues) in one request: up to MaxHeartbeatBatch
// beats, each judged as Heartbeat judges it alone and answered in its place, so a refused
// beat (ErrStaleAttempt, ErrTooLarge...) fails only itself. The error is the request's as
// a whole: ErrInvalidArgument for none or more than MaxHeartbeatBatch beats (nothing
// written), ErrUnavailable and the like.
func (c *Client) Heartbeats(ctx context.Context, beats []Beat) ([]HeartbeatResult, error) {
	items := make([]map[string]any, len(beats))
	for i, b := range beats {
		items[i] = b.body(b.Token)
	}
	var out struct {
		Results []json.RawMessage `json:"results"`
	}
	r := req(http.MethodPost, "/v1/attempts/heartbeats")
	r.body = map[string]any{"heartbeats": items}
	if _, err := c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	if len(out.Results) != len(beats) {
		return nil, fmt.Errorf("unstuck: heartbeats: %d results for %d beats", len(out.Results), len(beats))
	}
	results := make([]HeartbeatResult, len(beats))
	for i, raw := range out.Results {
		var item struct {
			Problem json.RawMessage `json:"problem"`
			HeartbeatReply
		}
		if err := json.Unmarshal(raw, &item); err != nil {
			return nil, fmt.Errorf("unstuck: heartbeats: result %d: %w", i, err)
		}
		if item.Problem != nil {
			var status struct {
				Status int `json:"status"`
			}
			_ = json.Unmarshal(item.Problem, &status)
			results[i].Err = problemError(status.Status, http.Header{}, item.Problem)
			continue
		}
		reply := item.HeartbeatReply
		results[i].Reply = &reply
	}
	return results, nil
}

// Recorded is the reply of Complete and CancelAck.
type Recorded struct {
	SlotReleased bool `json:"slot_released"`
}

// Complete ends the attempt successfully with result (nil: no result). usage, when given
// (at most one), is the attempt's last usage delta (Seq required).
func (c *Client) Complete(ctx context.Context, token string, result any, usage ...Usage) (*Recorded, error) {
	body := map[string]any{"token": token}
	if result != nil {
		body["result"] = result
	}
	switch len(usage) {
	case 0:
	case 1:
		body["usage"] = usage[0]
	default:
		return nil, errors.New("unstuck: Complete takes at most one usage delta")
	}
	var out Recorded
	if err := c.attemptCall(ctx, "/v1/attempts/complete", body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// FailRequest describes a failed attempt.
type FailRequest struct {
	Message   string
	Retryable bool
	// RetryAfter (retryable failures only; 1 ms to 7 days, say a provider's Retry-After) is
	// the earliest the retry may start: it wins over the backoff when later. 0: unset.
	RetryAfter time.Duration
	// Usage is the attempt's last usage delta (Seq required; nil: none).
	Usage *Usage
}

// Outcome is the reply of Fail, Snooze and AwaitResume. Outcome is "retry_scheduled",
// "failed", "cancelled", "snoozed" or "awaiting".
type Outcome struct {
	Outcome        string     `json:"outcome"`
	AvailableAt    *time.Time `json:"available_at"`
	SlotReleased   bool       `json:"slot_released"`
	Snoozes        *int       `json:"snoozes"`
	ResumeToken    string     `json:"resume_token"`
	WaitDeadlineAt *time.Time `json:"wait_deadline_at"`
}

// Fail ends the attempt as failed.
func (c *Client) Fail(ctx context.Context, token string, f FailRequest) (*Outcome, error) {
	body := map[string]any{"token": token, "message": f.Message, "retryable": f.Retryable}
	if f.RetryAfter > 0 {
		body["retry_after_ms"] = ms(f.RetryAfter)
	}
	if f.Usage != nil {
		body["usage"] = *f.Usage
	}
	var out Outcome
	if err := c.attemptCall(ctx, "/v1/attempts/fail", body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SnoozeRequest: exactly one of After (1 ms to 7 days) and Until (at most 7 days ahead);
// Reason is required.
type SnoozeRequest struct {
	After  time.Duration
	Until  time.Time
	Reason string
}

// Snooze ends the attempt without failing it: the execution waits in the queue and comes
// back as a continuation (no attempt counted). Past max_snoozes it is a retryable failure.
func (c *Client) Snooze(ctx context.Context, token string, s SnoozeRequest) (*Outcome, error) {
	body := map[string]any{"token": token, "reason": s.Reason}
	if s.After > 0 {
		body["after_ms"] = ms(s.After)
	}
	if !s.Until.IsZero() {
		body["until"] = s.Until.UTC().Format(time.RFC3339Nano)
	}
	var out Outcome
	if err := c.attemptCall(ctx, "/v1/attempts/snooze", body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AwaitRequest ends an attempt to wait on a person or an outside event.
type AwaitRequest struct {
	Reason       string
	WaitDeadline time.Duration // > 0, at most the queue's max_wait
	Checkpoint   any           // nil: keep the last one
}

// AwaitResume ends the attempt; the execution is "awaiting" until Resume (or the one-time
// ResumeToken of the reply) or the wait deadline. Outcome "cancelled" when cancellation
// had been requested.
func (c *Client) AwaitResume(ctx context.Context, token string, a AwaitRequest) (*Outcome, error) {
	body := map[string]any{"token": token, "reason": a.Reason, "wait_deadline_ms": ms(a.WaitDeadline)}
	if a.Checkpoint != nil {
		body["checkpoint"] = a.Checkpoint
	}
	var out Outcome
	if err := c.attemptCall(ctx, "/v1/attempts/await", body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CancelAck acknowledges a cancellation; ErrInvalidTransition when none was requested.
func (c *Client) CancelAck(ctx context.Context, token string) (*Recorded, error) {
	var out Recorded
	if err := c.attemptCall(ctx, "/v1/attempts/cancel-ack", map[string]any{"token": token}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (c *Client) attemptCall(ctx context.Context, route string, body map[string]any, out any) error {
	r := req(http.MethodPost, route)
	r.body = body
	_, err := c.call(ctx, r, out)
	return err
}

// Registration declares a worker process to the registry.
type Registration struct {
	WorkerID          string // "" lets the server generate one; use a fresh id per process start
	Host              string
	PID               int
	Version           string
	Queues            []string
	HeartbeatInterval time.Duration // how often it will beat (0: unset)
}

// Registered is the reply of RegisterWorker.
type Registered struct {
	WorkerID     string    `json:"worker_id"`
	RegisteredAt time.Time `json:"registered_at"`
}

// RegisterWorker registers a worker; ErrWorkerExists when its id was registered before.
func (c *Client) RegisterWorker(ctx context.Context, reg Registration) (*Registered, error) {
	body := map[string]any{"queues": append([]string{}, reg.Queues...)}
	for k, v := range map[string]string{"worker_id": reg.WorkerID, "host": reg.Host, "version": reg.Version} {
		if v != "" {
			body[k] = v
		}
	}
	if reg.PID > 0 {
		body["pid"] = reg.PID
	}
	if reg.HeartbeatInterval > 0 {
		body["heartbeat_interval"] = ms(reg.HeartbeatInterval)
	}
	r := req(http.MethodPost, "/v1/workers")
	r.body = body
	var out Registered
	if _, err := c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// WorkerBeat is the reply of WorkerHeartbeat; Request is "restart", "drain" or "".
type WorkerBeat struct {
	LastSeenAt time.Time `json:"last_seen_at"`
	Request    string    `json:"request"`
}

// WorkerHeartbeat tells the registry the worker is alive and what it runs.
// ErrUnknownWorker: register again under a fresh id.
func (c *Client) WorkerHeartbeat(ctx context.Context, workerID string, running []RunningRef) (*WorkerBeat, error) {
	r := req(http.MethodPost, "/v1/workers/{worker}/heartbeat", workerID)
	r.body = map[string]any{"running": append([]RunningRef{}, running...)}
	var out WorkerBeat
	if _, err := c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeregisterWorker removes a worker from the registry; ErrUnknownWorker.
func (c *Client) DeregisterWorker(ctx context.Context, workerID string) error {
	_, err := c.call(ctx, req(http.MethodDelete, "/v1/workers/{worker}", workerID), nil)
	return err
}

// Workers lists the registered workers.
func (c *Client) Workers(ctx context.Context) ([]WorkerInfo, error) {
	var out struct {
		Workers []WorkerInfo `json:"workers"`
	}
	_, err := c.call(ctx, req(http.MethodGet, "/v1/workers"), &out)
	return out.Workers, err
}

// WorkerReset is the reply of ResetWorker.
type WorkerReset struct {
	PreviousTier   int  `json:"previous_tier"`
	CircuitWasOpen bool `json:"circuit_was_open"`
}

// ResetWorker resets a worker's remediation tier and circuit (reason may be "").
func (c *Client) ResetWorker(ctx context.Context, workerID, reason string) (*WorkerReset, error) {
	r := req(http.MethodPost, "/v1/workers/{worker}/reset", workerID)
	r.body = optional("reason", reason)
	var out WorkerReset
	if _, err := c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RequestWorker asks a worker, in its next heartbeat reply, to "restart" or "drain".
func (c *Client) RequestWorker(ctx context.Context, workerID, request, reason string) error {
	r := req(http.MethodPost, "/v1/workers/{worker}/request", workerID)
	body := optional("reason", reason)
	body["request"] = request
	r.body = body
	_, err := c.call(ctx, r, nil)
	return err
}
