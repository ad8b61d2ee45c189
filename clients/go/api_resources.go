package unstuck

import (
	"context"
	"net/http"
	"time"
)

// MaxAcquireWait is the longest an acquire may wait for a unit of a busy resource.
const MaxAcquireWait = 30 * time.Second

// AcquireOptions shape one acquire; the zero value takes one unit at once or fails.
type AcquireOptions struct {
	// Capacity sets the resource's units when nobody holds it (0: the server's 1); while
	// units are held a different one is ErrResourceCapacity.
	Capacity int
	// TTL frees the unit on its own after this long (1 ms to 24 h; 0: held until
	// released or the attempt ends).
	TTL time.Duration
	// Wait is how long to wait for a unit when every one is held (0 to MaxAcquireWait;
	// 0: not at all), then ErrResourceBusy.
	Wait time.Duration
}

// Acquired is the reply of an acquire: the unit is the attempt's.
type Acquired struct {
	Resource  string     `json:"resource"`
	Capacity  int        `json:"capacity"`
	Held      int        `json:"held"`       // units held now, this one included
	ExpiresAt *time.Time `json:"expires_at"` // when a TTL frees it (nil: no TTL)
}

// Holder is one attempt holding a unit of a resource.
type Holder struct {
	Queue     string     `json:"queue"`
	ID        string     `json:"id"`
	Attempt   int        `json:"attempt"`
	Since     time.Time  `json:"since"`
	ExpiresAt *time.Time `json:"expires_at"`
}

// Resource is a resource and who holds its units.
type Resource struct {
	Resource string   `json:"resource"`
	Capacity int      `json:"capacity"` // 0 when nobody holds it
	Held     int      `json:"held"`
	Holders  []Holder `json:"holders"`
}

// ForceReleased is the reply of ForceRelease.
type ForceReleased struct {
	Released bool `json:"released"`
	Attempt  *int `json:"attempt"` // the attempt whose unit was freed
}

// Acquire takes one unit of resource (a tool, a worktree, an API key) for the attempt of
// token. It is held until Release, its TTL, or the end of the attempt (any end: an
// outcome, a watchdog remediation, a crash), whichever comes first. When every unit is
// held it waits up to o.Wait, then returns ErrResourceBusy; the *APIError's Holders say
// who holds them. ErrStaleAttempt when the attempt is no longer current.
func (c *Client) Acquire(ctx context.Context, token, resource string, o AcquireOptions) (*Acquired, error) {
	body := map[string]any{"token": token, "resource": resource}
	if o.Capacity != 0 {
		body["capacity"] = o.Capacity
	}
	if o.TTL > 0 {
		body["ttl_ms"] = ms(o.TTL)
	}
	if o.Wait > 0 {
		body["wait_ms"] = ms(o.Wait)
	}
	r := req(http.MethodPost, "/v1/attempts/acquire")
	r.body = body
	r.extra = o.Wait // a long poll: the wait on top of the client's timeout
	var out Acquired
	if _, err := c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Release gives back the attempt's unit of resource: false when it held none (idempotent).
// Fenced: a stale attempt's release never frees a later attempt's unit.
func (c *Client) Release(ctx context.Context, token, resource string) (bool, error) {
	r := req(http.MethodPost, "/v1/attempts/release")
	r.body = map[string]any{"token": token, "resource": resource}
	var out struct {
		Released bool `json:"released"`
	}
	_, err := c.call(ctx, r, &out)
	return out.Released, err
}

// Resources lists every resource held now (one nobody holds is not stored).
func (c *Client) Resources(ctx context.Context) ([]Resource, error) {
	var out struct {
		Resources []Resource `json:"resources"`
	}
	_, err := c.call(ctx, req(http.MethodGet, "/v1/resources"), &out)
	return out.Resources, err
}

// Resource returns one resource (Held 0 and no holders when nobody holds it).
func (c *Client) Resource(ctx context.Context, resource string) (*Resource, error) {
	var out Resource
	if _, err := c.call(ctx, req(http.MethodGet, "/v1/resources/{resource}", resource), &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ForceRelease (admin) frees the unit of resource that execution queue/id holds, whatever
// its attempt, recording reason in a resource_force_released event.
func (c *Client) ForceRelease(ctx context.Context, resource, queue, id, reason string) (*ForceReleased, error) {
	r := req(http.MethodPost, "/v1/resources/{resource}/release", resource)
	r.body = map[string]any{"queue": queue, "id": id, "reason": reason}
	var out ForceReleased
	if _, err := c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
