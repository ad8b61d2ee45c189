package unstuck

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Healthz returns the server's liveness status ("ok").
func (c *Client) Healthz(ctx context.Context) (string, error) {
	return c.status(ctx, "/healthz")
}

// Readyz returns "ready", or an error (ErrUnavailable) when Redis is unreachable.
func (c *Client) Readyz(ctx context.Context) (string, error) {
	return c.status(ctx, "/readyz")
}

func (c *Client) status(ctx context.Context, route string) (string, error) {
	var out struct {
		Status string `json:"status"`
	}
	_, err := c.call(ctx, req(http.MethodGet, route), &out)
	return out.Status, err
}

// Metrics returns the Prometheus text.
func (c *Client) Metrics(ctx context.Context) (string, error) {
	return c.text(ctx, req(http.MethodGet, "/metrics"))
}

// OpenAPI returns the server's OpenAPI 3.1 document.
func (c *Client) OpenAPI(ctx context.Context) (json.RawMessage, error) {
	var out json.RawMessage
	_, err := c.call(ctx, req(http.MethodGet, "/openapi.json"), &out)
	return out, err
}

// Problem returns the page (HTML) that describes a problem type, by its slug.
func (c *Client) Problem(ctx context.Context, slug string) (string, error) {
	return c.text(ctx, req(http.MethodGet, "/problems/{slug}", slug))
}

func (c *Client) text(ctx context.Context, r request) (string, error) {
	_, _, body, err := c.send(ctx, r)
	return string(body), err
}

// Session says what the client's token may do.
func (c *Client) Session(ctx context.Context) (*Session, error) {
	var out Session
	if _, err := c.call(ctx, req(http.MethodGet, "/v1/session"), &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// WatchdogState is the watchdog's state with its health verdict. Partitions, Replicas
// and Totals are given as the server sends them (see docs/http-api.md, WatchdogState).
type WatchdogState struct {
	At            time.Time       `json:"at"`
	Partitions    json.RawMessage `json:"partitions"`
	Replicas      json.RawMessage `json:"replicas"`
	NamespaceHold json.RawMessage `json:"namespace_hold"`
	Totals        map[string]int  `json:"totals"`
	DataLost      []string        `json:"data_lost"`
	OpenCircuits  []string        `json:"open_circuits"`
	WorkersInTier int             `json:"workers_in_tier"`
	Health        struct {
		Verdict string `json:"verdict"` // "healthy" or "degraded"
		Summary string `json:"summary"`
		Reasons []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"reasons"`
	} `json:"health"`
}

// WatchdogState returns the watchdog's state.
func (c *Client) WatchdogState(ctx context.Context) (*WatchdogState, error) {
	var out WatchdogState
	if _, err := c.call(ctx, req(http.MethodGet, "/v1/watchdog"), &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Activity is the watchdog's actions per minute by reason and its detection lag.
type Activity struct {
	At      time.Time `json:"at"`
	Since   time.Time `json:"since"`
	Minutes []struct {
		Minute  time.Time      `json:"minute"`
		Actions map[string]int `json:"actions"`
	} `json:"minutes"`
	Totals    map[string]int  `json:"totals"`
	Lag       json.RawMessage `json:"lag"`
	Truncated bool            `json:"truncated"`
}

// WatchdogActivity returns the activity of the last minutes (1-1440; 0: the server's 30).
func (c *Client) WatchdogActivity(ctx context.Context, minutes int) (*Activity, error) {
	r := req(http.MethodGet, "/v1/watchdog/activity")
	r.query = query("minutes", limitText(minutes))
	var out Activity
	if _, err := c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// WorkerEvents returns worker events after the stream id after ("" from the start), at
// most limit (0: the server's 100), oldest first; newest: the newest limit instead.
func (c *Client) WorkerEvents(ctx context.Context, after string, limit int, newest bool) ([]WorkerEvent, error) {
	r := req(http.MethodGet, "/v1/workers/events")
	r.query = query("after", after, "limit", limitText(limit))
	if newest {
		r.query.Set("newest", strconv.FormatBool(true))
	}
	var out struct {
		Events []WorkerEvent `json:"events"`
	}
	_, err := c.call(ctx, r, &out)
	return out.Events, err
}
