// An orchestrator: enqueues a run on the "agents" queue and follows it to its end.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"unstuck"
)

func main() {
	url := os.Getenv("UNSTUCK_URL")
	if url == "" {
		url = "http://127.0.0.1:8080"
	}
	client, err := unstuck.NewClient(url, os.Getenv("UNSTUCK_TOKEN"))
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	if _, err := client.SetQueue(ctx, "agents", unstuck.QueueSettings{Capacity: unstuck.Ptr(8)}); err != nil {
		log.Fatal(err)
	}
	run, err := client.Enqueue(ctx, "agents", unstuck.EnqueueRequest{
		ID:      "run-2026-11-24-001",
		Payload: map[string]string{"goal": "summarise the incident"},
		Timings: &unstuck.Timings{HeartbeatTimeout: unstuck.Ptr(20 * time.Second), Deadline: unstuck.Ptr(time.Hour)},
	})
	if err != nil {
		log.Fatal(err) // errors.Is(err, unstuck.ErrIdempotencyConflict): the id exists, other payload
	}
	fmt.Println(map[bool]string{true: "created", false: "already enqueued"}[run.Created], run.ID)

	for {
		ex, err := client.Get(ctx, "agents", run.ID)
		if err != nil {
			log.Fatal(err)
		}
		progress := ""
		if ex.Progress != nil {
			progress = *ex.Progress
		}
		fmt.Println(ex.State, ex.Attempt, progress)
		if ex.Terminal() {
			if ex.State == "succeeded" {
				fmt.Println(string(ex.Result))
			} else if ex.LastError != nil {
				fmt.Println(*ex.LastError)
			}
			break
		}
		time.Sleep(time.Second)
	}

	events, err := client.ExecutionEvents(ctx, "agents", run.ID)
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range events.Timeline {
		from := "-"
		if e.From != nil {
			from = *e.From
		}
		to := "-"
		if e.To != nil {
			to = *e.To
		}
		fmt.Println(e.At.Format(time.RFC3339), from, "->", to, e.Reason)
	}
}
