package unstuck

import (
	"fmt"
	"time"
)

// What a Handler returns besides nil (complete) and any other error (a retryable failure).
// Each may be wrapped (fmt.Errorf("...: %w", err)): the worker finds it with errors.As.

// NonRetryableError fails the execution for good (Python's Fatal).
type NonRetryableError struct{ Err error }

func (e *NonRetryableError) Error() string { return e.Err.Error() }
func (e *NonRetryableError) Unwrap() error { return e.Err }

// NonRetryable marks err so the attempt fails for good: no retry, whatever attempts remain.
func NonRetryable(err error) error {
	if err == nil {
		err = fmt.Errorf("non-retryable failure")
	}
	return &NonRetryableError{Err: err}
}

// RetryableError fails the attempt for a retry no sooner than RetryAfter from now.
type RetryableError struct {
	Err        error
	RetryAfter time.Duration
}

func (e *RetryableError) Error() string { return e.Err.Error() }
func (e *RetryableError) Unwrap() error { return e.Err }

// Retryable fails the attempt retryably (any error does); retryAfter (say a provider's
// Retry-After; 1 ms to 7 days, 0: unset) is the earliest the retry may start: it wins over
// the backoff when later.
func Retryable(err error, retryAfter time.Duration) error {
	if err == nil {
		err = fmt.Errorf("retryable failure")
	}
	return &RetryableError{Err: err, RetryAfter: retryAfter}
}

// SnoozeError ends the attempt without failing it (see Snooze).
type SnoozeError struct {
	After  time.Duration
	Until  time.Time
	Reason string
}

func (e *SnoozeError) Error() string { return "snoozed: " + e.Reason }

// Snooze ends the attempt without failing it: the execution waits in the queue for after
// (1 ms to 7 days) and comes back as a continuation, not a retry (no attempt counted, the
// checkpoint carried). Past the execution's max_snoozes it is a retryable failure.
func Snooze(after time.Duration, reason string) error {
	return &SnoozeError{After: after, Reason: reason}
}

// SnoozeUntil is Snooze until an instant (at most 7 days ahead).
func SnoozeUntil(until time.Time, reason string) error {
	return &SnoozeError{Until: until, Reason: reason}
}

// AwaitResumeError ends the attempt to wait on a person or an outside event (see AwaitResume).
type AwaitResumeError struct {
	Reason       string
	WaitDeadline time.Duration
	Checkpoint   any
}

func (e *AwaitResumeError) Error() string { return "awaiting: " + e.Reason }

// AwaitResume ends the attempt and makes the execution wait (state "awaiting") until
// someone resumes it (Client.Resume, or the one-time resume token the worker hands to
// Worker.OnAwait), at most waitDeadline. It holds no slot, is never judged stale, and the
// attempt does not count toward max_attempts. The attempt that continues it gets
// checkpoint (nil: the last one) as Attempt.Checkpoint and the resume input as
// Attempt.ResumeInput.
func AwaitResume(reason string, waitDeadline time.Duration, checkpoint any) error {
	return &AwaitResumeError{Reason: reason, WaitDeadline: waitDeadline, Checkpoint: checkpoint}
}
