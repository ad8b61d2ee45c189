package unstuck

// The end-to-end scenario every client runs (issue 21, part 4): an orchestrator enqueues
// 20 executions; two worker processes take them; one is killed (SIGKILL) mid-job; every
// execution succeeds; the killed ones are retried once and the retry receives the
// checkpoint of the first attempt; a cancel reaches a running handler as ctx.Done().
// The worker processes are this test binary re-executed (runTestWorker).

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// runTestWorker is the worker process: "victim" checkpoints and then hangs until killed,
// "steady" completes what it claims (from the checkpoint when there is one) and holds an
// execution whose payload says "hold" until its context is done. One JSON line per step
// on stdout.
func runTestWorker(mode string) int {
	client, err := NewClient(os.Getenv("UNSTUCK_GO_URL"), os.Getenv("UNSTUCK_GO_TOKEN"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	queue := os.Getenv("UNSTUCK_GO_QUEUE")
	var outMu sync.Mutex
	say := func(what map[string]any) {
		outMu.Lock()
		defer outMu.Unlock()
		line, _ := json.Marshal(what)
		fmt.Println(string(line))
	}
	pid := os.Getpid()
	started := func(a *Attempt) {
		say(map[string]any{"event": "started", "id": a.ID, "attempt": a.Attempt,
			"checkpoint": a.Checkpoint, "pid": pid})
	}
	victim := func(ctx context.Context, a *Attempt) error {
		started(a)
		want := map[string]any{"step": 3, "by": pid}
		if err := a.SetCheckpoint(want); err != nil {
			return err
		}
		a.SetProgress("step 3/10")
		for { // until the server holds the checkpoint
			ex, err := client.Get(ctx, queue, a.ID)
			if err == nil && string(ex.Checkpoint) == fmt.Sprintf(`{"by":%d,"step":3}`, pid) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		say(map[string]any{"event": "checkpointed", "id": a.ID})
		<-ctx.Done() // killed before this
		return ctx.Err()
	}
	steady := func(ctx context.Context, a *Attempt) error {
		started(a)
		var payload struct {
			Hold bool `json:"hold"`
		}
		_ = a.Decode(&payload)
		if payload.Hold {
			say(map[string]any{"event": "holding", "id": a.ID})
			<-ctx.Done()
			say(map[string]any{"event": "ctx_done", "id": a.ID, "cancel_requested": a.CancelRequested(),
				"err": ctx.Err().Error()})
			return ctx.Err()
		}
		time.Sleep(20 * time.Millisecond) // ... the work ...
		a.SetResult(map[string]any{"by": pid, "resumed_from": a.Checkpoint})
		return nil
	}
	w := &Worker{Client: client, Queue: queue, Handler: steady, Concurrency: 4}
	if mode == "victim" {
		w.Handler, w.Concurrency = victim, 3
	}
	stats, err := w.Run(context.Background())
	say(map[string]any{"event": "stats", "stats": stats, "worker_id": w.ID(),
		"error": fmt.Sprint(err)})
	if err != nil {
		return 1
	}
	return 0
}

// workerProc is a worker process and the JSON lines it printed.
type workerProc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	lines  []map[string]any
	exited chan struct{}
}

func startWorkerProc(t *testing.T, mode, queue string) *workerProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "UNSTUCK_GO_TEST_WORKER="+mode, "UNSTUCK_GO_URL="+testStack.url,
		"UNSTUCK_GO_TOKEN="+tokens["admin"], "UNSTUCK_GO_QUEUE="+queue)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &workerProc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil {
				p.mu.Lock()
				p.lines = append(p.lines, line)
				p.mu.Unlock()
			}
		}
		_ = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// events returns the lines whose "event" is name.
func (p *workerProc) events(name string) []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []map[string]any
	for _, l := range p.lines {
		if l["event"] == name {
			out = append(out, l)
		}
	}
	return out
}

func TestEndToEndTwoWorkerProcessesOneKilled(t *testing.T) {
	ctx := bg(t)
	client := testStack.client("admin")
	queue := unique("e2e")
	items := make([]EnqueueRequest, 20)
	for i := range items {
		items[i] = EnqueueRequest{ID: fmt.Sprintf("job-%02d", i), Payload: map[string]int{"n": i},
			Timings: fastTimings()}
	}
	if _, err := client.EnqueueBatch(ctx, queue, items); err != nil {
		t.Fatal(err)
	}

	victim := startWorkerProc(t, "victim", queue)
	waitFor(t, "the victim to checkpoint 3 jobs", 30*time.Second, func() bool {
		return len(victim.events("checkpointed")) == 3
	})
	steady := startWorkerProc(t, "steady", queue)
	waitFor(t, "the steady worker to complete a job", 30*time.Second, func() bool {
		page, err := client.List(ctx, queue, "succeeded", "", 0)
		return err == nil && len(page.Items) > 0
	})
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-victim.exited
	victimPid := victim.cmd.Process.Pid

	waitFor(t, "every execution to succeed", 60*time.Second, func() bool {
		page, err := client.List(ctx, queue, "succeeded", "", 100)
		return err == nil && len(page.Items) == 20
	})
	killed := map[string]bool{}
	for _, l := range victim.events("started") {
		killed[l["id"].(string)] = true
	}
	if len(killed) != 3 {
		t.Fatalf("the victim started %d jobs, want 3: %v", len(killed), victim.events("started"))
	}
	wantCheckpoint := fmt.Sprintf(`{"by":%d,"step":3}`, victimPid)
	for i := range items {
		id := items[i].ID
		ex, err := client.Get(ctx, queue, id)
		if err != nil {
			t.Fatal(err)
		}
		if !killed[id] {
			if ex.Attempt != 1 {
				t.Errorf("%s: attempt %d, want 1 (not killed)", id, ex.Attempt)
			}
			continue
		}
		// Killed: retried once, and the retry got the first attempt's checkpoint.
		if ex.State != "succeeded" || ex.Attempt != 2 {
			t.Errorf("%s: %s attempt %d, want succeeded attempt 2", id, ex.State, ex.Attempt)
		}
		var result struct {
			By          int             `json:"by"`
			ResumedFrom json.RawMessage `json:"resumed_from"`
		}
		_ = json.Unmarshal(ex.Result, &result)
		if result.By != steady.cmd.Process.Pid || string(result.ResumedFrom) != wantCheckpoint {
			t.Errorf("%s: result %s, want the steady worker resuming from %s", id, ex.Result, wantCheckpoint)
		}
		evs, err := client.ExecutionEvents(ctx, queue, id)
		if err != nil {
			t.Fatal(err)
		}
		retries := 0
		for _, e := range evs.Events {
			if e.To != nil && *e.To == "queued" && e.From != nil {
				retries++
				if e.Reason != "heartbeat_lost" && e.Reason != "worker_lost" {
					t.Errorf("%s: retried for %q", id, e.Reason)
				}
			}
		}
		if retries != 1 {
			t.Errorf("%s: %d retries, want 1", id, retries)
		}
	}
	seen := map[string]int{}
	for _, l := range steady.events("started") {
		id := l["id"].(string)
		seen[id]++
		if killed[id] {
			checkpoint, _ := json.Marshal(l["checkpoint"])
			if l["attempt"].(float64) != 2 || string(checkpoint) != wantCheckpoint {
				t.Errorf("%s: the retry started as attempt %v with checkpoint %s, want 2 and %s",
					id, l["attempt"], checkpoint, wantCheckpoint)
			}
		}
	}
	if len(seen) != 20 {
		t.Errorf("the steady worker ran %d executions, want 20", len(seen))
	}

	// A cancel reaches the running handler as ctx.Done().
	if _, err := client.Enqueue(ctx, queue, EnqueueRequest{ID: "hold-1", Payload: map[string]bool{"hold": true},
		Timings: fastTimings()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the hold job to run", 30*time.Second, func() bool {
		ex, err := client.Get(ctx, queue, "hold-1")
		return len(steady.events("holding")) == 1 && err == nil && ex.State == "running"
	})
	if reply, err := client.Cancel(ctx, queue, "hold-1", "no longer needed"); err != nil || reply.Outcome != "requested" {
		t.Fatalf("cancel: %+v %v", reply, err)
	}
	waitFor(t, "the handler's ctx.Done()", 10*time.Second, func() bool { return len(steady.events("ctx_done")) == 1 })
	done := steady.events("ctx_done")[0]
	if done["cancel_requested"] != true || done["err"] != context.Canceled.Error() {
		t.Errorf("ctx_done: %v, want cancel_requested and %v", done, context.Canceled)
	}
	waitFor(t, "hold-1 to be cancelled", 10*time.Second, func() bool {
		ex, err := client.Get(ctx, queue, "hold-1")
		return err == nil && ex.State == "cancelled"
	})

	// SIGTERM: the steady worker drains, deregisters and exits 0 with its counts.
	if err := steady.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-steady.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("the steady worker did not exit on SIGTERM")
	}
	if code := steady.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("the steady worker exited with %d", code)
	}
	stats := steady.events("stats")
	if len(stats) != 1 {
		t.Fatalf("stats lines: %v", stats)
	}
	counts := stats[0]["stats"].(map[string]any)
	if counts["Succeeded"] != 20.0 || counts["Cancelled"] != 1.0 || counts["Dropped"] != 0.0 {
		t.Errorf("steady worker counts %v, want 20 succeeded, 1 cancelled", counts)
	}
	workers, err := client.Workers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range workers {
		if w.WorkerID == stats[0]["worker_id"] {
			t.Errorf("the steady worker is still registered after SIGTERM")
		}
	}
}
