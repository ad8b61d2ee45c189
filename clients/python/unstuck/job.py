"""What a handler sees: the ``Job`` of one claimed attempt, and the exceptions a handler
raises to say how the attempt ended (``Retryable``, ``Fatal``, ``Snooze``, ``AwaitResume``)
or that it stopped (``Cancelled``)."""

import collections
import contextlib
import json
import logging
import threading
import time

__all__ = ["Job", "Retryable", "Fatal", "Cancelled", "Snooze", "AwaitResume"]

log = logging.getLogger("unstuck")
MAX_FINGERPRINT_BYTES = 128  # a heartbeat's fingerprint, in UTF-8 bytes


class Retryable(Exception):
    """Raise from a handler to fail the attempt and let it be retried (while attempts
    remain, after the backoff, from the last checkpoint). ``retry_after_ms`` (say a
    provider's Retry-After) is the earliest the retry may start: it wins over the backoff
    when later."""

    def __init__(self, message="", retry_after_ms=None):
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


class Snooze(Exception):
    """Raise from a handler to end the attempt without failing it: the execution waits in
    the queue ``after_ms`` (or until ``until``, a datetime or RFC 3339 text) and comes back
    as a continuation, not a retry (River's JobSnooze; rate limits). Past the execution's
    ``max_snoozes`` the snooze is recorded as a retryable failure."""

    def __init__(self, after_ms=None, reason="snoozed", until=None):
        super().__init__(reason)
        self.after_ms, self.until, self.reason = after_ms, until, reason


class Fatal(Exception):
    """Raise from a handler to fail the execution for good."""


class AwaitResume(Exception):
    """Raise from a handler to end the attempt and wait on a person or an outside event
    (an outcome, not an error): the execution is ``awaiting`` until someone resumes it
    (``Client.resume`` or the one-time ``resume_token``), at most ``wait_deadline_ms``
    (ms or ``"1h"``). It holds no slot, is never judged stale, and the attempt does not
    count toward max_attempts. The claim that continues it gets ``checkpoint`` (when
    given, else the last one) as ``job.checkpoint`` and the resume input as
    ``job.resume_input``."""

    def __init__(self, reason, wait_deadline_ms, checkpoint=None):
        super().__init__(reason)
        self.reason = reason
        self.wait_deadline_ms = wait_deadline_ms
        self.checkpoint = checkpoint


class Cancelled(Exception):
    """Raised by ``Job.raise_if_cancelled()``: the attempt was cancelled or lost."""


class Job:
    """One claimed attempt, as a handler sees it.

    ``payload``, ``attempt``, ``id``, ``queue``; ``checkpoint`` is the checkpoint the
    previous attempt left (None on a first attempt); ``resume_input`` what ``resume``
    handed over when this attempt continues a wait (None otherwise); ``traceparent`` the
    W3C trace context stored at enqueue (None when none), to link the handler's spans to;
    ``cancelled`` (a threading.Event) is set when cancellation was requested or the
    attempt was lost: stop soon.
    """

    def __init__(self, claim):
        self.claim = claim
        self.token = claim["token"]
        self.queue = claim["queue"]
        self.id = claim["id"]
        self.attempt = claim["attempt"]
        self.payload = claim.get("payload")
        self.checkpoint = claim.get("checkpoint")
        self.resume_input = claim.get("resume_input")
        self.traceparent = claim.get("traceparent")
        self.resume_token = None  # set once the handler's AwaitResume was recorded
        self._client = None  # the Worker's client, for lease()
        self.heartbeat_timeout = claim["heartbeat_timeout"] / 1000.0  # seconds
        self._claimed_at = time.monotonic()  # the claim is the attempt's first renewal
        self.deadline_at = claim.get("deadline_at")
        self.cancelled = threading.Event()
        self.cancel_requested = False  # the orchestrator asked to stop: acknowledge
        self.lost = False              # the attempt is no longer ours: record nothing
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._progress = self._new_checkpoint = None
        self._progress_seq = self._checkpoint_seq = 0   # bumped on every set
        self._progress_sent = self._checkpoint_sent = 0  # seq carried by the last good beat
        self._fingerprints = collections.deque()  # not sent yet, oldest first: one per beat
        self._wake = threading.Event()  # set by set_fingerprint and at the end: beat now
        # The Worker's beat rounds: when the last renewal was sent, when the next beat is
        # due, failures in a row, a fingerprint waiting (beat at once), and a lock held
        # while a beat of this attempt is in flight.
        self._renewed = self._beat_at = self._claimed_at
        self._beat_failures = 0
        self._beat_now = False
        self._beat_lock = threading.Lock()
        self._first_answer = threading.Event()  # its first beat answered (or refused)
        self._usage = []      # deltas not yet delivered, oldest first
        self._usage_seq = 0   # the last seq given to a delta
        self.cancel_reason = None  # "budget_exceeded" when the budget stopped it

    def add_usage(self, input_tokens=0, output_tokens=0, cached_input_tokens=0, cost=0,
                  model=None):
        """Adds tokens and cost (integer micro-units) spent since the last call; sent with
        the next heartbeat, or with the complete or fail that ends the attempt. Each delta
        gets its own ``seq`` once sent, so a retried call never counts it twice, and none
        is lost."""
        amounts = {"input_tokens": input_tokens, "output_tokens": output_tokens,
                   "cached_input_tokens": cached_input_tokens, "cost": cost}
        for name, value in amounts.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if cached_input_tokens > input_tokens:
            raise ValueError("cached_input_tokens is a part of input_tokens: at most it")
        with self._lock:
            last = self._usage[-1] if self._usage else None
            if last is not None and "seq" not in last and last.get("model") == model:
                for name, value in amounts.items():
                    last[name] += value
                return
            if model is not None:
                amounts["model"] = str(model)
            self._usage.append(amounts)

    def _next_usage(self):
        """The oldest undelivered delta, numbered (its seq kept until delivered)."""
        if not self._usage:
            return None
        delta = self._usage[0]
        if "seq" not in delta:
            self._usage_seq += 1
            delta["seq"] = self._usage_seq
        return dict(delta)

    def _usage_delivered(self, seq):
        with self._lock:
            if seq and self._usage and self._usage[0].get("seq") == seq:
                self._usage.pop(0)

    def _usage_pending(self):
        with self._lock:
            return len(self._usage)

    def set_progress(self, text):
        """Progress text sent with the next heartbeat (``no_progress_timeout`` watches it)."""
        with self._lock:
            self._progress = str(text)
            self._progress_seq += 1

    def set_checkpoint(self, value):
        """A JSON-able value sent with the next heartbeat; a retry resumes from the last
        one the server received (``job.checkpoint`` of the next attempt)."""
        snapshot = json.loads(json.dumps(value))  # TypeError now, not in the heartbeat thread
        with self._lock:
            self._new_checkpoint = snapshot
            self._checkpoint_seq += 1

    @contextlib.contextmanager
    def lease(self, resource, capacity=None, ttl_ms=None, wait_ms=30000):
        """``with job.lease("browser"):`` holds one unit of ``resource`` for this attempt
        inside the block and gives it back on leaving it (an exception included). Waits
        up to ``wait_ms`` for a unit (default 30 s, the most), then raises ResourceBusy.
        If the process dies inside the block, the unit is freed when the attempt ends
        (the watchdog's sweep, within one round), so the retry can take it."""
        self._client.acquire(self.token, resource, capacity=capacity, ttl_ms=ttl_ms,
                             wait_ms=wait_ms)
        try:
            yield self
        finally:
            try:
                self._client.release(self.token, resource)
            except Exception as e:  # noqa: BLE001 - freed when the attempt ends anyway
                log.warning("release of %s by %r failed (freed when the attempt ends): %s",
                            resource, self, e)

    def set_fingerprint(self, text):
        """The fingerprint of the action just taken and its result (a short text, say a
        hash of them; 1 to 128 bytes), for loop detection: the same one ``max_repeats``
        times in a row and the watchdog judges the execution stuck ``looping``. Each call is
        one arrival, never merged with another: it goes out with a heartbeat sent at once,
        and calls made faster than beats return wait their turn, each with its own beat.
        Raises ValueError for an empty or longer text (nothing queued)."""
        text = str(text)
        size = len(text.encode("utf-8"))
        if not 1 <= size <= MAX_FINGERPRINT_BYTES:
            raise ValueError(f"fingerprint: expected 1 to {MAX_FINGERPRINT_BYTES} bytes, "
                             f"got {size}")
        with self._lock:
            self._fingerprints.append(text)
            self._beat_now = True
        self._wake.set()

    def raise_if_cancelled(self):
        """Raises Cancelled when the attempt should stop."""
        if self.cancelled.is_set():
            raise Cancelled("cancellation requested" if self.cancel_requested
                            else "attempt lost")

    def __repr__(self):
        return f"Job({self.queue}/{self.id} attempt {self.attempt})"

    # What the next beat carries, and marking it delivered.
    def _pending(self):
        with self._lock:
            self._beat_now = False  # this beat takes the waiting fingerprint
            beat = {}
            if self._progress_seq > self._progress_sent:
                beat["progress"] = self._progress
            if self._checkpoint_seq > self._checkpoint_sent:
                beat["checkpoint"] = self._new_checkpoint
            if self._fingerprints:
                beat["fingerprint"] = self._fingerprints[0]
            usage = self._next_usage()
            if usage is not None:
                beat["usage"] = usage
            return beat, (self._progress_seq, self._checkpoint_seq, "fingerprint" in beat,
                          usage["seq"] if usage else 0)

    def _delivered(self, seqs):
        with self._lock:
            self._progress_sent = max(self._progress_sent, seqs[0])
            self._checkpoint_sent = max(self._checkpoint_sent, seqs[1])
            if seqs[2] and self._fingerprints:
                self._fingerprints.popleft()  # only the beat thread takes them
        self._usage_delivered(seqs[3])

    def _unsent_fingerprints(self):
        with self._lock:
            return len(self._fingerprints)

    def _stop(self, lost):
        if lost:
            self.lost = True
        else:
            self.cancel_requested = True
        self.cancelled.set()
