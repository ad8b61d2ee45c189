// A worker: runs the "agents" queue's executions, resuming from its checkpoint after a
// lost attempt, until SIGTERM or Ctrl-C (then it drains: running attempts finish).
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"unstuck"
)

func summarise(ctx context.Context, a *unstuck.Attempt) error {
	var job struct {
		Goal string `json:"goal"`
	}
	if err := a.Decode(&job); err != nil {
		return unstuck.NonRetryable(err) // failed for good
	}
	var done struct {
		Step int `json:"step"`
	}
	if _, err := a.DecodeCheckpoint(&done); err != nil { // set when a previous attempt was lost
		return unstuck.NonRetryable(err)
	}
	for step := done.Step; step < 10; step++ {
		select {
		case <-ctx.Done(): // cancellation requested, attempt lost, or a restart asked
			return ctx.Err()
		case <-time.After(200 * time.Millisecond): // ... one step of real work ...
		}
		a.SetProgress(fmt.Sprintf("step %d/10", step+1))
		if err := a.SetCheckpoint(map[string]int{"step": step + 1}); err != nil {
			return err
		}
	}
	if job.Goal == "" {
		return unstuck.NonRetryable(errors.New("no goal given"))
	}
	a.SetResult(map[string]string{"summary": "done: " + job.Goal}) // completes with this result
	return nil
}

func main() {
	url := os.Getenv("UNSTUCK_URL")
	if url == "" {
		url = "http://127.0.0.1:8080"
	}
	client, err := unstuck.NewClient(url, os.Getenv("UNSTUCK_TOKEN"))
	if err != nil {
		log.Fatal(err)
	}
	w := &unstuck.Worker{Client: client, Queue: "agents", Handler: summarise, Concurrency: 4}
	stats, err := w.Run(context.Background()) // until SIGTERM / Ctrl-C
	log.Printf("stopped %q: %+v", w.StoppedBy(), stats)
	if err != nil {
		log.Fatal(err)
	}
}
