package unstuck

import (
	"net/http"
	"strings"
)

// Route is one route of the HTTP API as this client calls it.
type Route struct {
	Method string // GET, POST, PUT, DELETE
	Path   string // the template of /openapi.json, e.g. /v1/queues/{queue}
	Call   string // the Client method (or stream) that calls it
}

// The route table: every route of `unstuck serve` and the method that calls it. A test
// compares it with the server's /openapi.json.
var routes = []Route{
	{http.MethodGet, "/healthz", "Healthz"},
	{http.MethodGet, "/readyz", "Readyz"},
	{http.MethodGet, "/metrics", "Metrics"},
	{http.MethodGet, "/openapi.json", "OpenAPI"},
	{http.MethodGet, "/problems/{slug}", "Problem"},
	{http.MethodGet, "/v1/session", "Session"},
	{http.MethodGet, "/v1/queues", "Queues"},
	{http.MethodGet, "/v1/queues/{queue}", "GetQueue"},
	{http.MethodPut, "/v1/queues/{queue}", "SetQueue"},
	{http.MethodPost, "/v1/queues/{queue}/pause", "PauseQueue"},
	{http.MethodPost, "/v1/queues/{queue}/resume", "ResumeQueue"},
	{http.MethodGet, "/v1/queues/{queue}/usage", "QueueUsage"},
	{http.MethodPost, "/v1/queues/{queue}/executions", "Enqueue"},
	{http.MethodPost, "/v1/queues/{queue}/executions/batch", "EnqueueBatch"},
	{http.MethodGet, "/v1/queues/{queue}/executions", "List"},
	{http.MethodGet, "/v1/queues/{queue}/executions/{id}", "Get"},
	{http.MethodGet, "/v1/queues/{queue}/executions/{id}/events", "ExecutionEvents"},
	{http.MethodPost, "/v1/queues/{queue}/executions/{id}/cancel", "Cancel"},
	{http.MethodPost, "/v1/queues/{queue}/executions/{id}/retry", "Retry"},
	{http.MethodPost, "/v1/queues/{queue}/executions/{id}/resume", "Resume"},
	{http.MethodPut, "/v1/queues/{queue}/executions/{id}/pin", "Pin"},
	{http.MethodDelete, "/v1/queues/{queue}/executions/{id}/pin", "Unpin"},
	{http.MethodPost, "/v1/resume/{resume_token}", "ResumeByToken"},
	{http.MethodGet, "/v1/executions", "Find"},
	{http.MethodPost, "/v1/queues/{queue}/claims", "Claim"},
	{http.MethodPost, "/v1/attempts/heartbeat", "Heartbeat"},
	{http.MethodPost, "/v1/attempts/heartbeats", "Heartbeats"},
	{http.MethodPost, "/v1/attempts/complete", "Complete"},
	{http.MethodPost, "/v1/attempts/fail", "Fail"},
	{http.MethodPost, "/v1/attempts/snooze", "Snooze"},
	{http.MethodPost, "/v1/attempts/await", "AwaitResume"},
	{http.MethodPost, "/v1/attempts/cancel-ack", "CancelAck"},
	{http.MethodPost, "/v1/attempts/acquire", "Acquire"},
	{http.MethodPost, "/v1/attempts/release", "Release"},
	{http.MethodGet, "/v1/resources", "Resources"},
	{http.MethodGet, "/v1/resources/{resource}", "Resource"},
	{http.MethodPost, "/v1/resources/{resource}/release", "ForceRelease"},
	{http.MethodPost, "/v1/workers", "RegisterWorker"},
	{http.MethodGet, "/v1/workers", "Workers"},
	{http.MethodPost, "/v1/workers/{worker}/heartbeat", "WorkerHeartbeat"},
	{http.MethodDelete, "/v1/workers/{worker}", "DeregisterWorker"},
	{http.MethodPost, "/v1/workers/{worker}/reset", "ResetWorker"},
	{http.MethodPost, "/v1/workers/{worker}/request", "RequestWorker"},
	{http.MethodGet, "/v1/workers/events", "WorkerEvents"},
	{http.MethodGet, "/v1/workers/events/live", "WorkerEventsLive"},
	{http.MethodGet, "/v1/events", "Events"},
	{http.MethodGet, "/v1/events/recent", "RecentEvents"},
	{http.MethodGet, "/v1/watchdog", "WatchdogState"},
	{http.MethodGet, "/v1/watchdog/activity", "WatchdogActivity"},
}

// Routes returns the route table: every route of the API this client calls.
func Routes() []Route { return append([]Route(nil), routes...) }

// req builds a request for the route template, filling its {name} segments in order.
func req(method, route string, args ...string) request {
	path := route
	for _, a := range args {
		i := strings.Index(path, "{")
		j := strings.Index(path, "}")
		if i < 0 || j < i {
			break
		}
		path = path[:i] + seg(a) + path[j+1:]
	}
	return request{method: method, route: route, path: path}
}
