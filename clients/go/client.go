package unstuck

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Version is the client's version, sent in its User-Agent.
const Version = "0.1.0"

// DefaultTimeout bounds a call whose context has no deadline (a long-poll claim adds its
// wait to it).
const DefaultTimeout = 30 * time.Second

// Client calls `unstuck serve`. It is safe for concurrent use; its connections are kept
// alive and shared. Every method takes a context first: cancelling it ends the call.
type Client struct {
	baseURL string
	prefix  string
	// Token is the bearer secret ("" when the server runs without tokens).
	Token string
	// Timeout bounds each call whose context has no deadline (DefaultTimeout when zero).
	// It is applied per call through the context, never through http.Client.Timeout, so
	// that a long-poll claim may wait its wait_ms on top of it.
	Timeout time.Duration
	// Retries, when MaxAttempts > 1, repeats a call that failed transiently (see RetryPolicy).
	Retries RetryPolicy
	// HTTPClient sends the requests (its Timeout should stay 0: contexts bound the calls).
	HTTPClient *http.Client

	onRequest func(method, route string) // tests: which routes the calls used
}

// RetryPolicy is the opt-in retry policy of a Client. A call is repeated when the server said
// nothing was done (503: redis-unavailable, saturated, timeout; no connection) and, for
// calls that are safe to repeat (every call but an Enqueue without an id or key), when the
// outcome is unknown (504, or no reply). The wait is the server's Retry-After when given,
// else an exponential backoff from BaseDelay (100 ms) up to MaxDelay (5 s).
type RetryPolicy struct {
	MaxAttempts int // total tries; 0 or 1: no retry
	BaseDelay   time.Duration
	MaxDelay    time.Duration
}

// NewClient returns a client of the server at baseURL ("http://127.0.0.1:8080", with an
// optional path prefix); token is the bearer secret alone ("" for none).
func NewClient(baseURL, token string) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("unstuck: base URL must be http(s)://host[:port][/prefix], not %q", baseURL)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 64
	return &Client{
		baseURL:    strings.TrimRight(u.Scheme+"://"+u.Host, "/"),
		prefix:     strings.TrimRight(u.Path, "/"),
		Token:      token,
		HTTPClient: &http.Client{Transport: transport},
	}, nil
}

// BaseURL is the server's address as given.
func (c *Client) BaseURL() string { return c.baseURL + c.prefix }

// Copy returns a client with the same settings (and the same connections).
func (c *Client) Copy() *Client {
	d := *c
	return &d
}

// seg escapes one path segment; dot-only names are escaped so nothing folds them.
func seg(name string) string {
	s := url.PathEscape(name)
	if strings.Trim(s, ".") == "" {
		return strings.ReplaceAll(s, ".", "%2E")
	}
	return s
}

// request describes one call.
type request struct {
	method, route string // route: the path template of the route table
	path          string // the path with its segments filled in
	query         url.Values
	body          any // nil: no body
	header        http.Header
	extra         time.Duration // added to the timeout (a long poll's wait)
	unsafe        bool          // not safe to repeat after an unknown outcome
}

func (c *Client) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

// send performs the call (with retries when configured) and returns the 2xx reply.
func (c *Client) send(ctx context.Context, r request) (int, http.Header, []byte, error) {
	if c.onRequest != nil {
		c.onRequest(r.method, r.route)
	}
	var data []byte
	if r.body != nil {
		var err error
		if data, err = json.Marshal(r.body); err != nil {
			return 0, nil, nil, fmt.Errorf("unstuck: %s %s: encoding the body: %w", r.method, r.route, err)
		}
	}
	for try := 1; ; try++ {
		status, header, body, err := c.once(ctx, r, data)
		if err == nil {
			return status, header, body, nil
		}
		var apiErr *APIError
		if !errors.As(err, &apiErr) || try >= c.Retries.MaxAttempts || !c.repeatable(apiErr, r) {
			return 0, nil, nil, err
		}
		wait := apiErr.RetryAfter
		if wait <= 0 {
			wait = backoff(try-1, c.Retries.BaseDelay, c.Retries.MaxDelay)
		}
		if sleep(ctx, wait) != nil {
			return 0, nil, nil, err
		}
	}
}

func (c *Client) repeatable(e *APIError, r request) bool {
	if errors.Is(e, ErrUnavailable) || errors.Is(e, ErrConnection) {
		return true
	}
	return errors.Is(e, ErrUnknownOutcome) && !r.unsafe
}

func (c *Client) once(ctx context.Context, r request, data []byte) (int, http.Header, []byte, error) {
	ctx, cancel := c.bound(ctx, r.extra)
	defer cancel()
	u := c.baseURL + c.prefix + r.path
	if len(r.query) > 0 {
		u += "?" + r.query.Encode()
	}
	var body io.Reader
	if data != nil {
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u, body)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("unstuck: %s %s: %w", r.method, r.path, err)
	}
	c.headers(req.Header, data != nil)
	for k, v := range r.header {
		req.Header[k] = v
	}
	resp, err := c.HTTPClient.Do(req)
	if err != nil {
		return 0, nil, nil, c.noReply(r, err)
	}
	defer resp.Body.Close()
	payload, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, nil, c.noReply(r, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return 0, nil, nil, problemError(resp.StatusCode, resp.Header, payload)
	}
	return resp.StatusCode, resp.Header, payload, nil
}

// bound applies the client's timeout when the context has no deadline of its own.
func (c *Client) bound(ctx context.Context, extra time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.timeout()+extra)
}

func (c *Client) headers(h http.Header, body bool) {
	h.Set("Accept", "application/json")
	h.Set("User-Agent", "unstuck-go/"+Version)
	if body {
		h.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		h.Set("Authorization", "Bearer "+c.Token)
	}
}

// noReply: an *APIError with Status 0 wrapping the transport's error, so a cancelled
// context is still errors.Is(err, context.Canceled) (or DeadlineExceeded).
func (c *Client) noReply(r request, err error) error {
	var op *net.OpError
	sent := !(errors.As(err, &op) && op.Op == "dial")
	return &APIError{Err: fmt.Errorf("%s %s: %w", r.method, r.path, err), sent: sent}
}

// call sends r and decodes a JSON reply into out (when out is not nil).
func (c *Client) call(ctx context.Context, r request, out any) (int, error) {
	status, _, body, err := c.send(ctx, r)
	if err != nil {
		return 0, err
	}
	if out != nil && len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, out); err != nil {
			return status, fmt.Errorf("unstuck: %s %s: reply is not the JSON expected: %w", r.method, r.path, err)
		}
	}
	return status, nil
}

func backoff(failures int, base, limit time.Duration) time.Duration {
	if base <= 0 {
		base = 100 * time.Millisecond
	}
	if limit <= 0 {
		limit = 5 * time.Second
	}
	d := base
	for i := 0; i < failures && d < limit; i++ {
		d *= 2
	}
	if d > limit {
		d = limit
	}
	return d/2 + time.Duration(rand.Int63n(int64(d/2)+1))
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
