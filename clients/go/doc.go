// Package unstuck is the Go client of `unstuck serve`, the HTTP API of the unstuck
// execution ledger and watchdog (docs/http-api.md). Standard library only.
//
// A Client calls every route of the API (Routes lists them), context first:
//
//	c, err := unstuck.NewClient("http://127.0.0.1:8080", token)
//	run, err := c.Enqueue(ctx, "agents", unstuck.EnqueueRequest{ID: "run-1", Payload: job})
//	ex, err := c.Get(ctx, "agents", run.ID)
//
// Errors are *APIError values (status, problem type, detail and the extra members); branch
// on them with errors.Is and the sentinels (ErrNotFound, ErrStaleAttempt, ErrAlreadyTerminal, ...).
//
// A Worker claims executions of one queue and runs a Handler on each, heartbeating from a
// goroutine of its own; the handler's context is cancelled when cancellation is requested
// or the attempt is lost:
//
//	w := &unstuck.Worker{Client: c, Queue: "agents", Handler: handle, Concurrency: 4}
//	stats, err := w.Run(ctx) // until SIGTERM, ctx's end or Stop; then it drains
//
// Events and WorkerEventsLive follow the Server-Sent Events streams, resuming with
// Last-Event-ID.
package unstuck
