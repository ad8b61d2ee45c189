package unstuck

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// EventStream follows GET /v1/events: every transition and watchdog action, live.
type EventStream = Stream[Event]

// Events follows the event stream of every queue (queue "") or one, from now on or, with
// lastEventID, from after that event. The stream reconnects with Last-Event-ID when the
// connection drops; ctx bounds the whole stream.
//
//	s := c.Events(ctx, "agents", "")
//	defer s.Close()
//	for s.Next() {
//		ev := s.Event()
//	}
//	if err := s.Err(); err != nil { ... }
func (c *Client) Events(ctx context.Context, queue, lastEventID string) *EventStream {
	r := req(http.MethodGet, "/v1/events")
	r.query = query("queue", queue)
	return newStream[Event](ctx, c, r, lastEventID)
}

// WorkerEventsLive follows GET /v1/workers/events/live: one WorkerEvent per worker tier
// change, action, hook outcome or circuit change, from now on or after lastEventID.
func (c *Client) WorkerEventsLive(ctx context.Context, lastEventID string) *Stream[WorkerEvent] {
	return newStream[WorkerEvent](ctx, c, req(http.MethodGet, "/v1/workers/events/live"), lastEventID)
}

// Stream is a Server-Sent Events stream of T followed across dropped connections.
//
// A dropped connection (end of stream, a network error, nothing heard for IdleTimeout, a
// 5xx) is reopened with Last-Event-ID; the server then resumes after that event in its
// partition and from the same millisecond in the others, so an event may come twice: it
// is dropped here (per partition, ids only grow). Errors a retry cannot fix (401, 403,
// 400) end the stream: Next returns false and Err says why.
type Stream[T any] struct {
	// IdleTimeout: a connection that sends nothing (keep-alives come every 15 s) for this
	// long is dropped and reopened. Set before the first Next.
	IdleTimeout time.Duration
	// Reconnects counts the connections reopened.
	Reconnects int

	client *Client
	r      request
	ctx    context.Context
	cancel context.CancelFunc

	lastID  string
	current T
	err     error
	retry   time.Duration // the server's retry: field
	seen    dedup

	mu       sync.Mutex
	closed   bool
	dropConn context.CancelFunc
	msgs     chan sseMessage
}

type sseMessage struct {
	id, event, data string
	retry           time.Duration
	err             error // the connection ended
}

func newStream[T any](ctx context.Context, c *Client, r request, lastID string) *Stream[T] {
	ctx, cancel := context.WithCancel(ctx)
	s := &Stream[T]{IdleTimeout: 45 * time.Second, client: c, r: r, ctx: ctx, cancel: cancel,
		lastID: lastID, seen: dedup{newest: map[string][2]int64{}, recent: map[string]bool{}}}
	if lastID != "" {
		s.seen.isNew(lastID)
	}
	return s
}

// Next waits for the next event; false when the stream ended (Close, the context, or an
// error that reconnecting cannot fix: see Err).
func (s *Stream[T]) Next() bool {
	failures := 0
	for {
		if s.err != nil || s.ctx.Err() != nil {
			return false
		}
		if s.msgs == nil {
			if err := s.open(); err != nil {
				var apiErr *APIError
				if s.ctx.Err() != nil {
					return false
				}
				if !errors.As(err, &apiErr) || !apiErr.Transient() {
					s.err = err
					return false
				}
				failures++
				wait := apiErr.RetryAfter
				if wait <= 0 {
					wait = s.delay(failures)
				}
				_ = sleep(s.ctx, wait)
				continue
			}
			failures = 0
		}
		var m sseMessage
		ended := false
		select {
		case <-s.ctx.Done():
			s.drop()
			return false
		case got, ok := <-s.msgs:
			m, ended = got, !ok
		}
		if m.retry > 0 {
			s.retry = m.retry
		}
		if ended {
			s.drop()
			if s.ctx.Err() != nil {
				return false
			}
			s.Reconnects++
			_ = sleep(s.ctx, s.delay(1))
			continue
		}
		if m.data == "" {
			continue
		}
		var v T
		if json.Unmarshal([]byte(m.data), &v) != nil {
			continue // not an event of this stream's type
		}
		if m.id != "" {
			if !s.seen.isNew(m.id) {
				continue
			}
			s.lastID = m.id
		}
		if e, ok := any(&v).(*Event); ok && e.ID == "" {
			e.ID = m.id
		}
		s.current = v
		return true
	}
}

// Event is the event Next returned true for.
func (s *Stream[T]) Event() T { return s.current }

// LastEventID is the id of the last event handed out: give it to a new stream to resume.
func (s *Stream[T]) LastEventID() string { return s.lastID }

// Err is the error that ended the stream; nil after Close. A cancelled context gives the
// context's error.
func (s *Stream[T]) Err() error {
	if s.err != nil {
		return s.err
	}
	if errors.Is(s.ctx.Err(), context.Canceled) && s.cancelledByClose() {
		return nil
	}
	return s.ctx.Err()
}

func (s *Stream[T]) cancelledByClose() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close ends the stream (from any goroutine): a waiting Next returns false.
func (s *Stream[T]) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	return nil
}

// Disconnect drops the current connection only: Next reconnects with Last-Event-ID.
func (s *Stream[T]) Disconnect() {
	s.mu.Lock()
	drop := s.dropConn
	s.mu.Unlock()
	if drop != nil {
		drop()
	}
}

func (s *Stream[T]) delay(failures int) time.Duration {
	base := 250 * time.Millisecond
	if s.retry > 0 {
		base = s.retry
	}
	d := base
	for i := 1; i < failures && d < 10*time.Second; i++ {
		d *= 2
	}
	if d > 10*time.Second {
		d = 10 * time.Second
	}
	return d
}

func (s *Stream[T]) drop() {
	s.mu.Lock()
	drop := s.dropConn
	s.dropConn, s.msgs = nil, nil
	s.mu.Unlock()
	if drop != nil {
		drop()
	}
}

// open connects and starts the goroutine that reads its messages into s.msgs.
func (s *Stream[T]) open() error {
	c := s.client
	if c.onRequest != nil {
		c.onRequest(s.r.method, s.r.route)
	}
	connCtx, dropConn := context.WithCancel(s.ctx)
	u := c.baseURL + c.prefix + s.r.path
	if len(s.r.query) > 0 {
		u += "?" + s.r.query.Encode()
	}
	hreq, err := http.NewRequestWithContext(connCtx, http.MethodGet, u, nil)
	if err != nil {
		dropConn()
		return err
	}
	c.headers(hreq.Header, false)
	hreq.Header.Set("Accept", "text/event-stream")
	hreq.Header.Set("Cache-Control", "no-cache")
	if s.lastID != "" {
		hreq.Header.Set("Last-Event-ID", s.lastID)
	}
	idle := time.AfterFunc(s.IdleTimeout, dropConn) // also bounds waiting for the headers
	resp, err := c.HTTPClient.Do(hreq)
	if err != nil {
		idle.Stop()
		dropConn()
		return c.noReply(s.r, err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		idle.Stop()
		dropConn()
		return problemError(resp.StatusCode, resp.Header, body)
	}
	msgs := make(chan sseMessage)
	s.mu.Lock()
	s.dropConn, s.msgs = dropConn, msgs
	s.mu.Unlock()
	go s.read(connCtx, resp.Body, idle, msgs)
	return nil
}

// read parses the SSE wire format (WHATWG rules: data lines join with newlines, the id
// persists, comments start with ':') and hands each message over; the last one carries
// the error that ended the connection.
func (s *Stream[T]) read(ctx context.Context, body io.ReadCloser, idle *time.Timer, msgs chan<- sseMessage) {
	defer close(msgs) // the connection ended
	defer body.Close()
	defer idle.Stop()
	send := func(m sseMessage) bool {
		select {
		case msgs <- m:
			return true
		case <-ctx.Done():
			return false
		}
	}
	br := bufio.NewReaderSize(body, 64<<10)
	var data []string
	event, id := "", s.lastID
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		idle.Reset(s.IdleTimeout)
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			if len(data) > 0 && !send(sseMessage{id: id, event: event, data: strings.Join(data, "\n")}) {
				return
			}
			data, event = nil, ""
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch name {
		case "data":
			data = append(data, value)
		case "event":
			event = value
		case "id":
			if !strings.ContainsRune(value, 0) {
				id = value
			}
		case "retry":
			if n, err := strconv.Atoi(value); err == nil && n >= 0 {
				if !send(sseMessage{retry: time.Duration(n) * time.Millisecond}) {
					return
				}
			}
		}
	}
}

// dedup drops events seen before: per partition, the newest "<ms>-<seq>" handed out
// ("<partition>-<ms>-<seq>" ids, or "<ms>-<seq>" ones under partition ""); other ids by a
// bounded set.
type dedup struct {
	newest map[string][2]int64
	recent map[string]bool
	order  []string
}

func (d *dedup) isNew(id string) bool {
	parts := strings.Split(id, "-")
	if n := len(parts); n == 2 || n == 3 {
		partition := ""
		if n == 3 {
			partition = parts[0]
		}
		msPart, err1 := strconv.ParseInt(parts[n-2], 10, 64)
		seq, err2 := strconv.ParseInt(parts[n-1], 10, 64)
		if err1 == nil && err2 == nil {
			at := [2]int64{msPart, seq}
			if prev, ok := d.newest[partition]; ok && (at[0] < prev[0] || (at[0] == prev[0] && at[1] <= prev[1])) {
				return false
			}
			d.newest[partition] = at
			return true
		}
	}
	if d.recent[id] {
		return false
	}
	d.recent[id] = true
	d.order = append(d.order, id)
	if len(d.order) > 10000 {
		delete(d.recent, d.order[0])
		d.order = d.order[1:]
	}
	return true
}
