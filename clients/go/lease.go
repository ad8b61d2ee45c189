package unstuck

import (
	"context"
	"errors"
)

// DefaultLeaseWait is how long WithLease waits for a unit when called without options.
const DefaultLeaseWait = MaxAcquireWait

// Acquire takes one unit of resource for this attempt (Client.Acquire with its token):
// held until Release, o.TTL, or the attempt's end, whichever comes first; if the process
// dies holding it, the unit is freed when the attempt ends (the watchdog's sweep), so the
// retry can take it. ErrResourceBusy (Holders say who holds every unit) once o.Wait has
// passed.
func (a *Attempt) Acquire(ctx context.Context, resource string, o AcquireOptions) (*Acquired, error) {
	if a.client == nil {
		return nil, errors.New("unstuck: Acquire is for attempts a Worker runs")
	}
	return a.client.Acquire(ctx, a.Token, resource, o)
}

// Release gives back this attempt's unit of resource: false when it held none.
func (a *Attempt) Release(ctx context.Context, resource string) (bool, error) {
	if a.client == nil {
		return false, errors.New("unstuck: Release is for attempts a Worker runs")
	}
	return a.client.Release(ctx, a.Token, resource)
}

// WithLease holds one unit of resource while fn runs and gives it back when fn returns
// (an error or a panic included); it returns fn's error. Without options it waits up to
// DefaultLeaseWait for a unit; given options are taken as they are (Wait 0: no wait).
// A failed acquire is returned as it is (ErrResourceBusy with its Holders) and fn does not
// run. A failed release is logged, not returned: the unit is freed when the attempt ends
// anyway.
//
//	err := a.WithLease(ctx, "browser", func(ctx context.Context) error {
//		return browse(ctx, url)
//	})
func (a *Attempt) WithLease(ctx context.Context, resource string, fn func(ctx context.Context) error, opts ...AcquireOptions) error {
	o := AcquireOptions{Wait: DefaultLeaseWait}
	if len(opts) > 0 {
		o = opts[0]
	}
	if _, err := a.Acquire(ctx, resource, o); err != nil {
		return err
	}
	defer func() {
		// Released even when ctx was cancelled (a cancel, a lost attempt): its own deadline.
		rctx, cancel := context.WithTimeout(context.Background(), a.client.timeout())
		defer cancel()
		if _, err := a.Release(rctx, resource); err != nil && a.logf != nil {
			a.logf("%v: release of %s failed (freed when the attempt ends): %v", a, resource, err)
		}
	}()
	return fn(ctx)
}
