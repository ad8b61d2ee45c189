package unstuck

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// The SSE wire format and the reconnect rules against a scripted server: a 503 with
// Retry-After is retried, comments and retry: are read, data lines join, CRLF ends lines,
// the SSE id fills an event without one, the reconnect sends Last-Event-ID, and an event
// the server sends again is dropped.
func TestEventStreamWireFormatAndReconnects(t *testing.T) {
	var mu sync.Mutex
	var lastIDs []string
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		n := calls
		lastIDs = append(lastIDs, r.Header.Get("Last-Event-ID"))
		mu.Unlock()
		if r.URL.Path != "/v1/events" || r.URL.Query().Get("queue") != "q" || r.Header.Get("Accept") != "text/event-stream" {
			w.WriteHeader(400)
			return
		}
		switch n {
		case 1:
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(503)
			fmt.Fprint(w, `{"type":"/problems/saturated","title":"Server busy","status":503,"detail":"x"}`)
		case 2:
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, ": keep-alive\r\nretry: 10\r\n\r\n")
			fmt.Fprint(w, "id: 1-5-0\r\nevent: message\r\ndata: {\"id\":\"1-5-0\",\"execution_id\":\"a\"}\r\n\r\n")
			fmt.Fprint(w, "id: 1-6-0\ndata: {\"execution_id\":\ndata: \"b\"}\n\n")
			// the connection ends here
		default:
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "id: 1-6-0\ndata: {\"execution_id\":\"b\"}\n\n") // again: dropped
			fmt.Fprint(w, "id: 2-1-0\ndata: {\"execution_id\":\"c\"}\n\n")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}
	}))
	defer srv.Close()
	c, _ := NewClient(srv.URL, "")
	s := c.Events(bg(t), "q", "")
	defer s.Close()
	var got []string
	for i := 0; i < 3; i++ {
		ev := next(t, s)
		got = append(got, ev.ExecutionID+"@"+ev.ID)
	}
	if fmt.Sprint(got) != "[a@1-5-0 b@1-6-0 c@2-1-0]" {
		t.Errorf("events: %v", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(lastIDs) != "[  1-6-0]" || s.Reconnects != 1 || s.LastEventID() != "2-1-0" {
		t.Errorf("Last-Event-ID sent: %q, reconnects %d, last id %s", lastIDs, s.Reconnects, s.LastEventID())
	}
}
