package unstuck

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Sentinels for errors.Is. An *APIError matches the sentinel of its problem type and the
// sentinels of the families it belongs to: a 404 unknown-queue is ErrUnknownQueue and
// ErrNotFound; a 503 redis-unavailable is ErrRedisUnavailable and ErrUnavailable.
var (
	ErrBadRequest          = errors.New("unstuck: bad request")             // 400 family
	ErrInvalidArgument     = errors.New("unstuck: invalid argument")        // 400 invalid-argument (Field names it)
	ErrInvalidName         = errors.New("unstuck: invalid name")            // 400 invalid-name
	ErrInvalidToken        = errors.New("unstuck: malformed attempt token") // 400 invalid-token
	ErrNotJSON             = errors.New("unstuck: not JSON")                // 400 not-json
	ErrUnauthorized        = errors.New("unstuck: unauthorized")            // 401
	ErrForbidden           = errors.New("unstuck: forbidden")               // 403
	ErrNotFound            = errors.New("unstuck: not found")               // 404 family
	ErrUnknownQueue        = errors.New("unstuck: unknown queue")           // 404 unknown-queue
	ErrUnknownWorker       = errors.New("unstuck: unknown worker")          // 404 unknown-worker
	ErrNoRoute             = errors.New("unstuck: no such route")           // 404 no-route
	ErrInvalidResumeToken  = errors.New("unstuck: invalid resume token")    // 404 invalid-resume-token
	ErrMethodNotAllowed    = errors.New("unstuck: method not allowed")      // 405 method-not-allowed
	ErrConflict            = errors.New("unstuck: conflict")                // 409 family
	ErrStaleAttempt        = errors.New("unstuck: stale attempt")           // 409 stale-attempt
	ErrAlreadyTerminal     = errors.New("unstuck: execution already ended") // 409 already-terminal
	ErrTokenMismatch       = errors.New("unstuck: token mismatch")          // 409 token-mismatch
	ErrInvalidTransition   = errors.New("unstuck: invalid transition")      // 409 invalid-transition
	ErrNotAwaiting         = errors.New("unstuck: not awaiting")            // 409 not-awaiting
	ErrResumeTokenUsed     = errors.New("unstuck: resume token used")       // 409 resume-token-used
	ErrWorkerExists        = errors.New("unstuck: worker exists")           // 409 worker-exists
	ErrResourceBusy        = errors.New("unstuck: resource busy")           // 409 resource-busy (Holders says who)
	ErrResourceCapacity    = errors.New("unstuck: resource capacity")       // 409 resource-capacity
	ErrTooLarge            = errors.New("unstuck: too large")               // 413 family (too-large)
	ErrBodyTooLarge        = errors.New("unstuck: request body too large")  // 413 body-too-large
	ErrIdempotencyConflict = errors.New("unstuck: idempotency conflict")    // 422
	ErrServer              = errors.New("unstuck: server error")            // 5xx family
	ErrInvalidConfig       = errors.New("unstuck: invalid configuration")   // 500 invalid-config
	ErrLeaseLost           = errors.New("unstuck: lease lost")              // 500 lease-lost
	ErrProtocol            = errors.New("unstuck: protocol error")          // 500 protocol
	ErrListener            = errors.New("unstuck: listener error")          // 500 listener
	ErrInternal            = errors.New("unstuck: internal error")          // 500 internal
	ErrUnavailable         = errors.New("unstuck: unavailable")             // 503 family: nothing was done
	ErrRedisUnavailable    = errors.New("unstuck: redis unavailable")       // 503 redis-unavailable
	ErrRedisDataLost       = errors.New("unstuck: redis lost its data")     // redis-data-lost
	ErrEvictionPolicy      = errors.New("unstuck: redis may evict keys")    // eviction-policy
	ErrRedisAuthentication = errors.New("unstuck: redis authentication")    // redis-authentication
	ErrRedisPermission     = errors.New("unstuck: redis permission")        // redis-permission
	ErrSaturated           = errors.New("unstuck: server saturated")        // 503 saturated
	ErrTimeout             = errors.New("unstuck: server timed out")        // 503 timeout
	ErrUnknownOutcome      = errors.New("unstuck: unknown outcome")         // 504, or no reply: it may have taken effect
	ErrConnection          = errors.New("unstuck: cannot connect")          // nothing was sent

	// Deprecated: ErrTerminal is ErrAlreadyTerminal (the problem type's name, as in the
	// Python and TypeScript clients).
	ErrTerminal = ErrAlreadyTerminal
)

// bySlug: the sentinels a problem type matches (its own first, then its families). Every
// problem type of the server's /openapi.json has its own sentinel (TestEveryProblemType).
var bySlug = map[string][]error{
	"bad-request":          {ErrBadRequest},
	"invalid-argument":     {ErrInvalidArgument, ErrBadRequest},
	"invalid-name":         {ErrInvalidName, ErrBadRequest},
	"invalid-token":        {ErrInvalidToken, ErrBadRequest},
	"not-json":             {ErrNotJSON, ErrBadRequest},
	"unauthorized":         {ErrUnauthorized},
	"forbidden":            {ErrForbidden},
	"not-found":            {ErrNotFound},
	"no-route":             {ErrNoRoute, ErrNotFound},
	"unknown-queue":        {ErrUnknownQueue, ErrNotFound},
	"unknown-worker":       {ErrUnknownWorker, ErrNotFound},
	"invalid-resume-token": {ErrInvalidResumeToken, ErrNotFound},
	"method-not-allowed":   {ErrMethodNotAllowed},
	"stale-attempt":        {ErrStaleAttempt, ErrConflict},
	"already-terminal":     {ErrAlreadyTerminal, ErrConflict},
	"token-mismatch":       {ErrTokenMismatch, ErrConflict},
	"invalid-transition":   {ErrInvalidTransition, ErrConflict},
	"not-awaiting":         {ErrNotAwaiting, ErrConflict},
	"resume-token-used":    {ErrResumeTokenUsed, ErrConflict},
	"worker-exists":        {ErrWorkerExists, ErrConflict},
	"resource-busy":        {ErrResourceBusy, ErrConflict},
	"resource-capacity":    {ErrResourceCapacity, ErrConflict},
	"too-large":            {ErrTooLarge},
	"body-too-large":       {ErrBodyTooLarge, ErrTooLarge},
	"idempotency-conflict": {ErrIdempotencyConflict},
	"invalid-config":       {ErrInvalidConfig, ErrServer},
	"lease-lost":           {ErrLeaseLost, ErrServer},
	"protocol":             {ErrProtocol, ErrServer},
	"listener":             {ErrListener, ErrServer},
	"internal":             {ErrInternal, ErrServer},
	"redis-unavailable":    {ErrRedisUnavailable, ErrUnavailable, ErrServer},
	"redis-data-lost":      {ErrRedisDataLost, ErrUnavailable, ErrServer},
	"eviction-policy":      {ErrEvictionPolicy, ErrUnavailable, ErrServer},
	"redis-authentication": {ErrRedisAuthentication, ErrUnavailable, ErrServer},
	"redis-permission":     {ErrRedisPermission, ErrUnavailable, ErrServer},
	"saturated":            {ErrSaturated, ErrUnavailable, ErrServer},
	"timeout":              {ErrTimeout, ErrUnavailable, ErrServer},
	"unknown-outcome":      {ErrUnknownOutcome, ErrServer},
}

// byStatus: the sentinels of a status whose problem type is unknown (a newer server, a proxy).
var byStatus = map[int][]error{
	400: {ErrBadRequest}, 401: {ErrUnauthorized}, 403: {ErrForbidden}, 404: {ErrNotFound},
	405: {ErrMethodNotAllowed}, 409: {ErrConflict}, 413: {ErrTooLarge}, 422: {ErrIdempotencyConflict},
	503: {ErrUnavailable, ErrServer}, 504: {ErrUnknownOutcome, ErrServer},
}

// APIError is every error a Client call returns for a reply that is not 2xx (an RFC 9457
// problem), and for a call that got no reply (Status 0; Err says why).
type APIError struct {
	Status int    // HTTP status; 0 when no reply came back
	Type   string // problem type, "/problems/<slug>"
	Title  string
	Detail string

	// The extra members the API documents (zero when absent).
	Field          string   // the field an invalid-argument names
	State          string   // the execution's state (stale-attempt, already-terminal, not-awaiting...)
	StopReason     string   // already-terminal: its first outcome
	CurrentAttempt *int     // stale-attempt: the attempt the execution is at
	NextAttempt    *int     // stale-attempt: the number its waiting retry's claim will give
	AttemptEnded   bool     // stale-attempt: your attempt is over
	Resource       string   // resource-busy: the resource
	Capacity       *int     // resource-busy, resource-capacity: the resource's units
	Held           *int     // resource-capacity: the units held now
	Holders        []Holder // resource-busy: who holds every unit
	// Extra holds every member of the problem but type, title, status and detail.
	Extra map[string]json.RawMessage
	// RetryAfter is the server's Retry-After hint (0 when none).
	RetryAfter time.Duration
	Header     http.Header
	// Err is the transport error when no reply came (Status 0).
	Err error

	sent bool // no reply: whether the request may have reached the server
}

// Slug is the part of Type after "/problems/" ("" when it is not an unstuck problem).
func (e *APIError) Slug() string {
	i := strings.LastIndex(e.Type, "/problems/")
	if i < 0 {
		return ""
	}
	return strings.Trim(e.Type[i+len("/problems/"):], "/")
}

// Transient reports whether the same call may succeed later: 5xx, or no reply.
func (e *APIError) Transient() bool { return e.Status == 0 || e.Status >= 500 }

func (e *APIError) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("unstuck: %v", e.Err)
	}
	var b strings.Builder
	b.WriteString("unstuck: ")
	b.WriteString(strconv.Itoa(e.Status))
	if s := e.Slug(); s != "" {
		b.WriteString(" " + s)
	}
	if e.Title != "" {
		b.WriteString(": " + e.Title)
	}
	if e.Detail != "" && e.Detail != e.Title {
		b.WriteString(": " + e.Detail)
	}
	return b.String()
}

func (e *APIError) Unwrap() error { return e.Err }

// Is matches the sentinels of the error's problem type and its families.
func (e *APIError) Is(target error) bool {
	for _, s := range e.sentinels() {
		if s == target {
			return true
		}
	}
	return false
}

func (e *APIError) sentinels() []error {
	if e.Status == 0 {
		if e.sent {
			return []error{ErrUnknownOutcome, ErrServer}
		}
		return []error{ErrConnection}
	}
	if s, ok := bySlug[e.Slug()]; ok {
		return s
	}
	if s, ok := byStatus[e.Status]; ok {
		return s
	}
	switch {
	case e.Status >= 500:
		return []error{ErrServer}
	case e.Status >= 400:
		return []error{ErrBadRequest}
	}
	return nil
}

// problemError builds the error of a non-2xx reply.
func problemError(status int, header http.Header, body []byte) *APIError {
	e := &APIError{Status: status, Header: header, Extra: map[string]json.RawMessage{}}
	e.RetryAfter = retryAfter(header.Get("Retry-After"))
	var members map[string]json.RawMessage
	if json.Unmarshal(body, &members) != nil || members == nil {
		e.Title = fmt.Sprintf("HTTP %d", status)
		text := strings.TrimSpace(string(body))
		if len(text) > 500 {
			text = text[:500]
		}
		e.Detail = text
		return e
	}
	for k, v := range members {
		switch k {
		case "type":
			_ = json.Unmarshal(v, &e.Type)
		case "title":
			_ = json.Unmarshal(v, &e.Title)
		case "detail":
			_ = json.Unmarshal(v, &e.Detail)
		case "status":
		default:
			e.Extra[k] = v
		}
	}
	_ = json.Unmarshal(e.Extra["field"], &e.Field)
	_ = json.Unmarshal(e.Extra["state"], &e.State)
	_ = json.Unmarshal(e.Extra["stop_reason"], &e.StopReason)
	_ = json.Unmarshal(e.Extra["current_attempt"], &e.CurrentAttempt)
	_ = json.Unmarshal(e.Extra["next_attempt"], &e.NextAttempt)
	_ = json.Unmarshal(e.Extra["attempt_ended"], &e.AttemptEnded)
	_ = json.Unmarshal(e.Extra["resource"], &e.Resource)
	_ = json.Unmarshal(e.Extra["capacity"], &e.Capacity)
	_ = json.Unmarshal(e.Extra["held"], &e.Held)
	_ = json.Unmarshal(e.Extra["holders"], &e.Holders)
	if e.RetryAfter == 0 {
		var ms int64
		if json.Unmarshal(e.Extra["retry_after_ms"], &ms) == nil {
			e.RetryAfter = time.Duration(ms) * time.Millisecond
		}
	}
	return e
}

func retryAfter(value string) time.Duration {
	value = strings.TrimSpace(value)
	if value == "" {
		return 0
	}
	if s, err := strconv.Atoi(value); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(value); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}
