package unstuck

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// QueueSettings replaces a queue's settings (what is nil goes back to the defaults).
type QueueSettings struct {
	Capacity     *int
	Timings      *Timings
	Retention    *RetentionSettings
	MaxWait      *time.Duration // longest wait an AwaitResume may ask (7 days when unset)
	OnWaitExpiry string         // "fail" (default) or "requeue"
	// Budget is the default budget of executions enqueued without one (nil: none).
	Budget *Budget
	// WindowBudget pauses the queue (by "budget") once its rolling window's usage
	// reaches it (nil: none).
	WindowBudget *WindowBudget
}

// RetentionSettings: how long finished executions are kept, per state.
type RetentionSettings struct {
	Succeeded, Cancelled, Failed, Dead, TimedOut *time.Duration
	MaxFinished                                  *int
}

// Queues lists every queue.
func (c *Client) Queues(ctx context.Context) ([]Queue, error) {
	var out struct {
		Queues []Queue `json:"queues"`
	}
	_, err := c.call(ctx, req(http.MethodGet, "/v1/queues"), &out)
	return out.Queues, err
}

// GetQueue returns one queue's overview.
func (c *Client) GetQueue(ctx context.Context, queue string) (*Queue, error) {
	var out Queue
	if _, err := c.call(ctx, req(http.MethodGet, "/v1/queues/{queue}", queue), &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SetQueue replaces the queue's settings (a pause is kept).
func (c *Client) SetQueue(ctx context.Context, queue string, s QueueSettings) (*Queue, error) {
	body := map[string]any{}
	if s.Capacity != nil {
		body["capacity"] = *s.Capacity
	}
	if s.Timings != nil {
		body["timings"] = *s.Timings
	}
	if r := s.Retention; r != nil {
		body["retention"] = map[string]any{
			"succeeded": msPtr(r.Succeeded), "cancelled": msPtr(r.Cancelled),
			"failed": msPtr(r.Failed), "dead": msPtr(r.Dead), "timed_out": msPtr(r.TimedOut),
			"max_finished": r.MaxFinished,
		}
	}
	if s.MaxWait != nil {
		body["max_wait"] = ms(*s.MaxWait)
	}
	if s.OnWaitExpiry != "" {
		body["on_wait_expiry"] = s.OnWaitExpiry
	}
	if s.Budget != nil {
		body["budget"] = *s.Budget
	}
	if s.WindowBudget != nil {
		body["window_budget"] = *s.WindowBudget
	}
	r := req(http.MethodPut, "/v1/queues/{queue}", queue)
	r.body = body
	var out Queue
	if _, err := c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// PauseQueue pauses the queue (admin): its claims take nothing until ResumeQueue.
// ErrUnknownQueue for a queue never used or configured.
func (c *Client) PauseQueue(ctx context.Context, queue, reason string) (*PauseChange, error) {
	r := req(http.MethodPost, "/v1/queues/{queue}/pause", queue)
	r.body = map[string]any{"reason": reason}
	var out PauseChange
	if _, err := c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ResumeQueue resumes a paused queue (admin); reason may be "".
func (c *Client) ResumeQueue(ctx context.Context, queue, reason string) (*PauseChange, error) {
	r := req(http.MethodPost, "/v1/queues/{queue}/resume", queue)
	r.body = optional("reason", reason)
	var out PauseChange
	if _, err := c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// EnqueueRequest is one execution to enqueue.
type EnqueueRequest struct {
	ID      string        // "" lets the server pick one (then a retried call may enqueue twice)
	Payload any           // JSON-able; nil is JSON null
	Timings *Timings      // nil: the queue's
	Delay   time.Duration // claimable no sooner than this from now
	// IdempotencyKey is sent as the Idempotency-Key header (Enqueue only); it names the
	// id (it must equal ID when both are given).
	IdempotencyKey string
	// Traceparent is the caller's W3C trace context (the traceparent header): stored on
	// the execution and handed to its workers with every claim (docs/tracing.md). The
	// server ignores a malformed one, as the W3C spec says.
	Traceparent string
	// Budget limits the execution's usage over all its attempts (nil: the queue's default).
	Budget *Budget
}

func (e EnqueueRequest) body() map[string]any {
	body := map[string]any{"payload": e.Payload}
	if e.ID != "" {
		body["id"] = e.ID
	}
	if e.Timings != nil {
		body["timings"] = *e.Timings
	}
	if e.Delay > 0 {
		body["delay"] = ms(e.Delay)
	}
	if e.Budget != nil {
		body["budget"] = *e.Budget
	}
	return body
}

// Enqueue enqueues one execution. Created is false when the same id and request were
// enqueued before; ErrIdempotencyConflict when the id exists with a different request.
func (c *Client) Enqueue(ctx context.Context, queue string, e EnqueueRequest) (*Enqueued, error) {
	r := req(http.MethodPost, "/v1/queues/{queue}/executions", queue)
	r.body = e.body()
	r.unsafe = e.ID == "" && e.IdempotencyKey == ""
	r.header = http.Header{}
	if e.IdempotencyKey != "" {
		r.header.Set("Idempotency-Key", e.IdempotencyKey)
	}
	if e.Traceparent != "" {
		r.header.Set("traceparent", e.Traceparent)
	}
	var out Enqueued
	status, err := c.call(ctx, r, &out)
	if err != nil {
		return nil, err
	}
	if status == http.StatusCreated {
		out.Created = true
	}
	return &out, nil
}

// EnqueueBatch enqueues 1-1000 executions at once, all or nothing (IdempotencyKey is
// ignored here). Conflict is true on the items whose id exists with a different request.
// The batch carries one trace context for every item: the items' Traceparent must be the
// same on all of them or "" on all (an error otherwise, nothing sent).
func (c *Client) EnqueueBatch(ctx context.Context, queue string, items []EnqueueRequest) ([]Enqueued, error) {
	bodies := make([]map[string]any, len(items))
	unsafe := false
	for i, it := range items {
		bodies[i] = it.body()
		unsafe = unsafe || it.ID == ""
		if it.Traceparent != items[0].Traceparent {
			return nil, fmt.Errorf("unstuck: a batch carries one traceparent for every item: item %d has %q, item 0 %q",
				i, it.Traceparent, items[0].Traceparent)
		}
	}
	r := req(http.MethodPost, "/v1/queues/{queue}/executions/batch", queue)
	r.body = map[string]any{"items": bodies}
	r.unsafe = unsafe
	if len(items) > 0 && items[0].Traceparent != "" {
		r.header = http.Header{"Traceparent": {items[0].Traceparent}}
	}
	var out struct {
		Items []Enqueued `json:"items"`
	}
	_, err := c.call(ctx, r, &out)
	return out.Items, err
}

// Get returns one execution; ErrNotFound when there is none.
func (c *Client) Get(ctx context.Context, queue, id string) (*Execution, error) {
	var out Execution
	if _, err := c.call(ctx, req(http.MethodGet, "/v1/queues/{queue}/executions/{id}", queue, id), &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// List returns one page of the queue's executions in state (cursor "" for the first page,
// limit 0 for the server's 50).
func (c *Client) List(ctx context.Context, queue, state, cursor string, limit int) (*Page, error) {
	r := req(http.MethodGet, "/v1/queues/{queue}/executions", queue)
	r.query = query("state", state, "cursor", cursor, "limit", limitText(limit))
	var out Page
	if _, err := c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// FindFilter selects executions across queues; every member is optional.
type FindFilter struct {
	Queue, State, StopReason, Worker, Cursor string
	Limit                                    int
}

// Find returns one page of executions across queues, newest first within a queue and
// state. A page may come back short with a cursor when matches are rare.
func (c *Client) Find(ctx context.Context, f FindFilter) (*Page, error) {
	r := req(http.MethodGet, "/v1/executions")
	r.query = query("queue", f.Queue, "state", f.State, "stop_reason", f.StopReason,
		"worker", f.Worker, "cursor", f.Cursor, "limit", limitText(f.Limit))
	var out Page
	if _, err := c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CancelReply: Outcome "cancelled" (it was queued) or "requested" (its worker is asked).
type CancelReply struct {
	Outcome     string     `json:"outcome"`
	RequestedAt *time.Time `json:"requested_at"`
	Already     bool       `json:"already"`
}

// Cancel cancels an execution (reason may be ""); ErrAlreadyTerminal when it already ended.
func (c *Client) Cancel(ctx context.Context, queue, id, reason string) (*CancelReply, error) {
	r := req(http.MethodPost, "/v1/queues/{queue}/executions/{id}/cancel", queue, id)
	r.body = optional("reason", reason)
	var out CancelReply
	if _, err := c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Retry runs a finished (failed, dead, timed_out, cancelled) execution again as a new one
// linked by retry_of, from its last checkpoint (newID and reason may be "").
// ErrInvalidTransition when it has not finished or it succeeded.
func (c *Client) Retry(ctx context.Context, queue, id, newID, reason string) (*Enqueued, error) {
	r := req(http.MethodPost, "/v1/queues/{queue}/executions/{id}/retry", queue, id)
	body := optional("reason", reason)
	if newID != "" {
		body["new_id"] = newID
	}
	r.body = body
	var out Enqueued
	status, err := c.call(ctx, r, &out)
	if err != nil {
		return nil, err
	}
	out.Created = status == http.StatusCreated
	return &out, nil
}

// Resumed is the reply of Resume and ResumeByToken.
type Resumed struct {
	Queue     string    `json:"queue"`
	ID        string    `json:"id"`
	ResumedAt time.Time `json:"resumed_at"`
	Already   bool      `json:"already"` // an earlier resume did it; nothing changed
	State     string    `json:"state"`
}

// Resume puts an awaiting execution back in the queue; the claim that continues it gets
// input (nil: none) as its ResumeInput. ErrNotAwaiting (State says what it is).
func (c *Client) Resume(ctx context.Context, queue, id string, input any) (*Resumed, error) {
	r := req(http.MethodPost, "/v1/queues/{queue}/executions/{id}/resume", queue, id)
	return c.resume(ctx, r, input)
}

// ResumeByToken resumes with the one-time token an AwaitResume returned (no bearer token
// needed). ErrInvalidResumeToken, ErrResumeTokenUsed, ErrNotAwaiting.
func (c *Client) ResumeByToken(ctx context.Context, resumeToken string, input any) (*Resumed, error) {
	return c.resume(ctx, req(http.MethodPost, "/v1/resume/{resume_token}", resumeToken), input)
}

func (c *Client) resume(ctx context.Context, r request, input any) (*Resumed, error) {
	r.body = map[string]any{}
	if input != nil {
		r.body = map[string]any{"input": input}
	}
	var out Resumed
	if _, err := c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Pin keeps the execution from retention; it returns its state.
func (c *Client) Pin(ctx context.Context, queue, id string) (string, error) {
	return c.pin(ctx, http.MethodPut, queue, id)
}

// Unpin lets retention apply to the execution again; it returns its state.
func (c *Client) Unpin(ctx context.Context, queue, id string) (string, error) {
	return c.pin(ctx, http.MethodDelete, queue, id)
}

func (c *Client) pin(ctx context.Context, method, queue, id string) (string, error) {
	var out struct {
		State string `json:"state"`
	}
	_, err := c.call(ctx, req(method, "/v1/queues/{queue}/executions/{id}/pin", queue, id), &out)
	return out.State, err
}

// ExecutionEvents returns the execution's events (oldest first) and its timeline.
func (c *Client) ExecutionEvents(ctx context.Context, queue, id string) (*ExecutionEvents, error) {
	var out ExecutionEvents
	if _, err := c.call(ctx, req(http.MethodGet, "/v1/queues/{queue}/executions/{id}/events", queue, id), &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RecentEvents returns the newest events (of every queue, or of queue), oldest first.
func (c *Client) RecentEvents(ctx context.Context, queue string, limit int) ([]Event, error) {
	r := req(http.MethodGet, "/v1/events/recent")
	r.query = query("queue", queue, "limit", limitText(limit))
	var out struct {
		Events []Event `json:"events"`
	}
	_, err := c.call(ctx, r, &out)
	return out.Events, err
}

func optional(key, value string) map[string]any {
	if value == "" {
		return map[string]any{}
	}
	return map[string]any{key: value}
}

// query builds a query from key, value pairs, leaving out empty values.
func query(pairs ...string) url.Values {
	q := url.Values{}
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] != "" {
			q.Set(pairs[i], pairs[i+1])
		}
	}
	return q
}

func limitText(n int) string {
	if n <= 0 {
		return ""
	}
	return strconv.Itoa(n)
}
