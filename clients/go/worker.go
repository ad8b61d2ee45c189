package unstuck

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"regexp"
	"sync"
	"syscall"
	"time"
)

// Handler runs one attempt. Return nil to complete it (with the value given to
// a.SetResult, if any); any error fails it retryably; NonRetryable(err) fails it for
// good; Retryable(err, after), Snooze(...), AwaitResume(...) choose the other outcomes.
// ctx is cancelled when cancellation is requested (a.CancelRequested()), when the attempt
// is lost (a.Lost(): nothing the handler does is recorded any more) and when the server
// asks the worker to restart: stop soon.
type Handler func(ctx context.Context, a *Attempt) error

// Stats counts how the worker's attempts ended.
type Stats struct {
	Succeeded, Failed, Retried, Cancelled, Dropped, Snoozed, Awaiting int
}

// Worker claims executions of one queue and runs Handler on each, Concurrency at once,
// keeping each alive with heartbeats at a third of its heartbeat timeout: all the
// attempts it holds in one request per round (Client.Heartbeats; Heartbeat when it holds
// one).
type Worker struct {
	Client      *Client
	Queue       string
	Handler     Handler
	Concurrency int // attempts at once (1 when 0)
	// WorkerID is the id to register under ("": a fresh <host>-<pid>-<random> per Run).
	WorkerID string
	// HeartbeatInterval is how often the worker registry hears from the worker (5 s when
	// 0); attempts are beaten at a third of their own heartbeat timeout.
	HeartbeatInterval time.Duration
	Version           string        // registered version ("unstuck-go/<Version>" when "")
	PollWait          time.Duration // the long poll of each claim (MaxClaimWait when 0)
	// IgnoreSignals: Run does not drain on SIGTERM and SIGINT.
	IgnoreSignals bool
	// OnAwait, when set, is called with the attempt and the reply of a recorded
	// AwaitResume (its ResumeToken is what an approval link carries).
	OnAwait func(a *Attempt, reply *Outcome)
	// StartProcess, when set, is called before the handler with the handler's context and
	// the attempt; the handler runs with the context it returns, and end (when not nil) is
	// called once the handler returned, with the error that fails the attempt (nil when it
	// completes, snoozes or awaits). It is the hook for a tracer: start the `process
	// {queue}` CONSUMER span linked to a.Traceparent there and end it in end (the README
	// shows OpenTelemetry wired to it). This package has no dependency on OpenTelemetry.
	StartProcess func(ctx context.Context, a *Attempt) (context.Context, func(err error))
	Logger       *log.Logger // log.Default() when nil

	mu        sync.Mutex
	running   map[*Attempt]bool
	stats     Stats
	stoppedBy string
	id        string
	stopping  chan struct{}
	stopOnce  sync.Once
	kick      chan struct{}
	beatKick  chan struct{} // a new attempt or a fingerprint: a beat round now
	// onBeatRound, in tests, sees each batched round's beats and results.
	onBeatRound func(beats []Beat, results []HeartbeatResult)
	wg          sync.WaitGroup
	fresh       bool // the given WorkerID was dropped by the registry: register fresh ids
}

// OutcomeRetryFor is how long the worker retries recording an outcome on transient errors.
var OutcomeRetryFor = 60 * time.Second

// RegistryInterval is the default HeartbeatInterval.
const RegistryInterval = 5 * time.Second

// Stop stops claiming; Run returns once the running handlers are done. Safe to call from
// any goroutine, before or during Run.
func (w *Worker) Stop() {
	w.init()
	w.stopOnce.Do(func() { close(w.stopping) })
}

// StoppedBy is "restart" or "drain" when the server asked the worker to stop (the
// watchdog's tier 1, or `unstuck workers drain`), "" otherwise.
func (w *Worker) StoppedBy() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stoppedBy
}

// ID is the id the worker registered under ("" before it did).
func (w *Worker) ID() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.id
}

// Running lists the attempts running now.
func (w *Worker) Running() []*Attempt {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]*Attempt, 0, len(w.running))
	for a := range w.running {
		out = append(out, a)
	}
	return out
}

func (w *Worker) init() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopping == nil {
		w.stopping = make(chan struct{})
		w.kick = make(chan struct{}, 1)
		w.beatKick = make(chan struct{}, 1)
		w.running = map[*Attempt]bool{}
	}
}

func (w *Worker) logf(format string, args ...any) {
	l := w.Logger
	if l == nil {
		l = log.Default()
	}
	l.Printf("unstuck: "+format, args...)
}

// Run registers, claims and runs attempts until ctx is done, Stop is called, SIGTERM or
// SIGINT arrives (unless IgnoreSignals) or the server asks the worker to drain or restart;
// then it stops claiming, waits for the running handlers (their contexts are not ctx:
// cancelling ctx drains, it does not abort them), deregisters and returns the counts.
// A worker runs once.
func (w *Worker) Run(ctx context.Context) (Stats, error) {
	if w.Client == nil || w.Handler == nil || w.Queue == "" {
		return Stats{}, errors.New("unstuck: a Worker needs a Client, a Queue and a Handler")
	}
	if w.Concurrency == 0 {
		w.Concurrency = 1
	}
	if w.Concurrency < 1 || w.Concurrency > 1000 {
		return Stats{}, errors.New("unstuck: Concurrency must be 1 to 1000")
	}
	if w.PollWait <= 0 || w.PollWait > MaxClaimWait {
		w.PollWait = MaxClaimWait
	}
	if w.HeartbeatInterval <= 0 {
		w.HeartbeatInterval = RegistryInterval
	}
	if w.Version == "" {
		w.Version = "unstuck-go/" + Version
	}
	w.init()
	defer w.watch(ctx)()

	if err := w.register(); err != nil || w.ID() == "" {
		return w.Stats(), err // an error, or stopped before it could register
	}
	registryDone := make(chan struct{})
	registryEnded := make(chan struct{})
	go func() {
		defer close(registryEnded)
		w.registryLoop(registryDone)
	}()
	beatsDone := make(chan struct{})
	beatsEnded := make(chan struct{})
	go func() {
		defer close(beatsEnded)
		w.beatRounds(beatsDone)
	}()
	err := w.claimLoop()
	w.Stop()
	w.wg.Wait() // the running handlers finish (drain)
	close(beatsDone)
	<-beatsEnded
	close(registryDone)
	<-registryEnded
	w.deregister()
	return w.Stats(), err
}

// Stats returns the counts so far.
func (w *Worker) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats
}

// watch stops the worker on ctx's end and on SIGTERM/SIGINT; it returns the cleanup.
func (w *Worker) watch(ctx context.Context) func() {
	signals := make(chan os.Signal, 1)
	if !w.IgnoreSignals {
		signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	}
	quit := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			w.Stop()
		case s := <-signals:
			w.logf("%v: stopping after the running attempts", s)
			w.Stop()
		case <-quit:
		}
	}()
	return func() {
		signal.Stop(signals)
		close(quit)
	}
}

// stopCtx is a context cancelled by Stop.
func (w *Worker) stopCtx() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-w.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

var notName = regexp.MustCompile(`[^A-Za-z0-9_.:-]`)

// FreshWorkerID is "<host>-<pid>-<random>": unique per process start, as the registry asks.
func FreshWorkerID() string {
	host, _ := os.Hostname()
	host = notName.ReplaceAllString(host, "-")
	if len(host) > 100 {
		host = host[:100]
	}
	if host == "" {
		host = "host"
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
}

// register registers under WorkerID or a fresh id, retrying transient errors until Stop.
func (w *Worker) register() error {
	ctx, cancel := w.stopCtx()
	defer cancel()
	host, _ := os.Hostname()
	for failures := 0; ; {
		w.mu.Lock()
		id, given := w.WorkerID, w.WorkerID != "" && !w.fresh
		w.mu.Unlock()
		if !given {
			id = FreshWorkerID()
		}
		_, err := w.Client.RegisterWorker(ctx, Registration{WorkerID: id, Host: host,
			PID: os.Getpid(), Version: w.Version, Queues: []string{w.Queue},
			HeartbeatInterval: w.HeartbeatInterval})
		if err == nil {
			w.mu.Lock()
			w.id = id
			w.mu.Unlock()
			w.logf("worker %s registered on queue %s", id, w.Queue)
			return nil
		}
		if ctx.Err() != nil {
			return nil // stopped before it could register
		}
		var apiErr *APIError
		switch {
		case errors.Is(err, ErrWorkerExists) && !given:
			continue
		case errors.As(err, &apiErr) && apiErr.Transient():
			w.logf("registering worker: %v; retrying", err)
			if sleep(ctx, backoff(failures, 0, 0)) != nil {
				return nil
			}
			failures++
		default:
			return err
		}
	}
}

func (w *Worker) deregister() {
	id := w.ID()
	if id == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Client.DeregisterWorker(ctx, id); err != nil && !errors.Is(err, ErrUnknownWorker) {
		w.logf("deregistering worker %s: %v", id, err)
	}
}

// registryLoop beats the worker registry (also while running attempts drain) and honours
// a drain or restart request.
func (w *Worker) registryLoop(done chan struct{}) {
	timer := time.NewTimer(w.HeartbeatInterval)
	defer timer.Stop()
	for {
		select {
		case <-done:
			return
		case <-timer.C:
		case <-w.kick:
			// New claims: a beat soon so the registry lists them; one per burst.
			select {
			case <-done:
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(w.HeartbeatInterval)
		w.registryBeat()
	}
}

func (w *Worker) registryBeat() {
	var running []RunningRef
	for _, a := range w.Running() {
		running = append(running, RunningRef{Queue: a.Queue, ID: a.ID})
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.Client.timeout())
	defer cancel()
	reply, err := w.Client.WorkerHeartbeat(ctx, w.ID(), running)
	switch {
	case errors.Is(err, ErrUnknownWorker):
		w.logf("worker %s is no longer registered; registering again", w.ID())
		w.mu.Lock()
		w.fresh = true
		w.mu.Unlock()
		if err := w.register(); err != nil {
			w.logf("registering again failed: %v", err)
		}
	case err != nil:
		w.logf("worker heartbeat: %v", err)
	case reply.Request == "restart" || reply.Request == "drain":
		w.honour(reply.Request)
	}
}

func (w *Worker) honour(request string) {
	w.mu.Lock()
	first := w.stoppedBy == ""
	if first {
		w.stoppedBy = request
	}
	w.mu.Unlock()
	if !first {
		return
	}
	w.logf("the server asks worker %s to %s", w.ID(), request)
	if request == "restart" {
		for _, a := range w.Running() {
			a.stop("restart") // a handler that stops now fails retryably: handed back
		}
	}
	w.Stop()
}
