"""The worker runner: claims executions of one queue, runs a handler on each, keeps them
alive with heartbeats from threads of their own, and records how each ended."""

import json
import logging
import os
import random
import re
import secrets
import signal
import socket
import threading
import time

from . import errors

__all__ = ["Worker", "Job", "Retryable", "Fatal", "Cancelled", "Snooze", "AwaitResume"]

log = logging.getLogger("unstuck")

MAX_WAIT_MS = 30000
REGISTRY_INTERVAL = 5.0  # seconds between worker-registry beats, by default
OUTCOME_RETRY_FOR = 60.0  # seconds spent retrying a complete/fail/cancel-ack on transient errors
MAX_MESSAGE = 4000  # characters of a failure message
_LOST = (errors.StaleAttempt, errors.AlreadyTerminal, errors.TokenMismatch, errors.NotFound)


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


def _backoff(failures, base=0.1, cap=5.0):
    """Exponential backoff with jitter: about base * 2^failures, at most cap."""
    return min(cap, base * (2 ** failures)) * random.uniform(0.5, 1.0)


def _valid_name(text, limit):
    return re.sub(r"[^A-Za-z0-9_.:-]", "-", text)[:limit] or "host"


def fresh_worker_id():
    """``<host>-<pid>-<random>``: unique per process start, as the registry requires."""
    return f"{_valid_name(socket.gethostname(), 100)}-{os.getpid()}-{secrets.token_hex(4)}"


class Job:
    """One claimed attempt, as a handler sees it.

    ``payload``, ``attempt``, ``id``, ``queue``; ``checkpoint`` is the checkpoint the
    previous attempt left (None on a first attempt); ``resume_input`` what ``resume``
    handed over when this attempt continues a wait (None otherwise); ``cancelled`` (a threading.Event) is
    set when cancellation was requested or the attempt was lost: stop soon.
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
        self.resume_token = None  # set once the handler's AwaitResume was recorded
        self.heartbeat_timeout = claim["heartbeat_timeout"] / 1000.0  # seconds
        self.deadline_at = claim.get("deadline_at")
        self.cancelled = threading.Event()
        self.cancel_requested = False  # the orchestrator asked to stop: acknowledge
        self.lost = False              # the attempt is no longer ours: record nothing
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._progress = self._new_checkpoint = None
        self._progress_seq = self._checkpoint_seq = 0   # bumped on every set
        self._progress_sent = self._checkpoint_sent = 0  # seq carried by the last good beat
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
            beat = {}
            if self._progress_seq > self._progress_sent:
                beat["progress"] = self._progress
            if self._checkpoint_seq > self._checkpoint_sent:
                beat["checkpoint"] = self._new_checkpoint
            usage = self._next_usage()
            if usage is not None:
                beat["usage"] = usage
            return beat, (self._progress_seq, self._checkpoint_seq,
                          usage["seq"] if usage else 0)

    def _delivered(self, seqs):
        with self._lock:
            self._progress_sent = max(self._progress_sent, seqs[0])
            self._checkpoint_sent = max(self._checkpoint_sent, seqs[1])
        self._usage_delivered(seqs[2])

    def _stop(self, lost):
        if lost:
            self.lost = True
        else:
            self.cancel_requested = True
        self.cancelled.set()


class Worker:
    """Runs ``handler(job)`` on executions claimed from ``queue``, ``concurrency`` at once.

    The handler's return value (JSON-able) completes the attempt; ``Retryable`` or any other
    exception fails it retryable; ``Fatal`` fails it for good; when cancellation was
    requested the cancellation is acknowledged instead. ``heartbeat_interval`` (seconds,
    5 by default) is how often the worker registry hears from this worker; the attempts
    themselves are beaten at a third of their ``heartbeat_timeout``.

    ``run()`` blocks until ``stop()`` (or SIGTERM/SIGINT when run in the main thread), then
    waits for the running handlers and deregisters.

    A handler that raises ``AwaitResume`` ends its attempt into ``awaiting``;
    ``on_await(job, reply)``, when given, is called with the reply (its
    ``resume_token`` is the one-time credential to hand to whoever resumes it).
    """

    def __init__(self, client, queue, handler, concurrency=1, worker_id=None,
                 heartbeat_interval=None, version=None, wait_ms=MAX_WAIT_MS,
                 handle_signals=True, on_await=None):
        from . import __version__
        if not 1 <= concurrency <= 1000:
            raise ValueError("concurrency must be 1 to 1000")
        if not 0 <= wait_ms <= MAX_WAIT_MS:
            raise ValueError(f"wait_ms must be 0 to {MAX_WAIT_MS}")
        if heartbeat_interval is None:
            heartbeat_interval = REGISTRY_INTERVAL
        if hasattr(heartbeat_interval, "total_seconds"):
            heartbeat_interval = heartbeat_interval.total_seconds()
        self.client = client
        self.queue = queue
        self.handler = handler
        self.concurrency = concurrency
        self.worker_id = worker_id
        self.heartbeat_interval = float(heartbeat_interval)
        self.version = version or f"unstuck-python/{__version__}"
        self.wait_ms = wait_ms
        self.handle_signals = handle_signals
        self.on_await = on_await
        self.stats = {"succeeded": 0, "failed": 0, "retried": 0, "cancelled": 0, "dropped": 0,
                      "snoozed": 0, "awaiting": 0}
        self._given_id = worker_id is not None
        self._poller = client.copy()  # its own connections, so stop() can abort the long poll
        self._stopping = threading.Event()
        self._registry_kick = threading.Event()
        self._registry_done = threading.Event()
        self._cv = threading.Condition()
        self._running = {}  # Job -> handler thread
        # What the watchdog asked in a registry heartbeat reply (tier 1 of worker
        # remediation): "restart" (running jobs are told to stop and handed back) or
        # "drain" (they finish); either way run() returns and the worker deregisters.
        self.stopped_by = None

    # ----- public -----

    def stop(self):
        """Stops claiming; ``run()`` returns once the running handlers are done."""
        self._stopping.set()
        with self._cv:
            self._cv.notify_all()
        self._poller.close()

    @property
    def running(self):
        with self._cv:
            return list(self._running)

    def run(self):
        """Registers, claims and runs until stopped; returns the counts of outcomes."""
        restore = self._install_signals()
        registry = None
        try:
            if not self._register():
                return dict(self.stats)  # stopped before it could register
            registry = threading.Thread(target=self._registry_loop, daemon=True,
                                        name=f"unstuck-registry-{self.worker_id}")
            registry.start()
            self._claim_loop()
        finally:
            self._stopping.set()
            self._drain()
            if registry is not None:
                self._registry_done.set()
                self._registry_kick.set()
                registry.join()
                self._deregister()
            self._poller.close()
            restore()
        return dict(self.stats)

    # ----- registry -----

    def _register(self):
        """Registers (a fresh id unless one was given); False when stopped meanwhile."""
        failures = 0
        while True:
            if not self._given_id:
                self.worker_id = fresh_worker_id()
            try:
                self.client.register_worker(
                    [self.queue], worker_id=self.worker_id, host=socket.gethostname(),
                    pid=os.getpid(), version=self.version,
                    heartbeat_interval=int(self.heartbeat_interval * 1000))
                log.info("worker %s registered on queue %s", self.worker_id, self.queue)
                return True
            except errors.WorkerExists:
                if self._given_id:
                    raise
            except errors.UnstuckError as e:
                if not e.transient:
                    raise
                log.warning("registering worker: %s; retrying", e)
                if self._stopping.wait(_backoff(failures)):
                    return False
                failures += 1

    def _registry_loop(self):
        while True:
            # Beats go on while running jobs drain: the registry must keep listing them.
            kicked = self._registry_kick.wait(self.heartbeat_interval)
            if self._registry_done.is_set():
                return
            if kicked:
                # New claims kick a beat so the registry lists them soon; one per burst.
                self._registry_done.wait(0.25)
                self._registry_kick.clear()
            running = [(job.queue, job.id) for job in self.running]
            try:
                reply = self.client.worker_heartbeat(self.worker_id, running)
                request = (reply or {}).get("request")
                if request in ("restart", "drain") and self.stopped_by is None:
                    self._honour(request)
            except errors.UnknownWorker:
                log.warning("worker %s is no longer registered; registering again",
                            self.worker_id)
                self._given_id = False
                try:
                    self._register()
                except errors.UnstuckError as e:
                    log.error("registering again failed: %s", e)
            except errors.UnstuckError as e:
                log.warning("worker heartbeat: %s", e)

    def _honour(self, request):
        log.warning("the watchdog asks worker %s to %s", self.worker_id, request)
        self.stopped_by = request
        if request == "restart":
            for job in self.running:
                job.cancelled.set()  # a handler that stops now fails retryably: handed back
        self.stop()

    def _deregister(self):
        try:
            self.client.deregister_worker(self.worker_id)
        except errors.UnknownWorker:
            pass
        except errors.UnstuckError as e:
            log.warning("deregistering worker %s: %s", self.worker_id, e)

    # ----- claiming -----

    def _claim_loop(self):
        failures = 0
        while not self._stopping.is_set():
            with self._cv:
                while len(self._running) >= self.concurrency and not self._stopping.is_set():
                    self._cv.wait()
                free = self.concurrency - len(self._running)
            if self._stopping.is_set():
                return
            try:
                claims = self._poller.claim(self.queue, self.worker_id, max=free,
                                            wait_ms=self.wait_ms)
            except errors.UnstuckError as e:
                if self._stopping.is_set():
                    return
                if isinstance(e, errors.UnknownWorker):
                    self._given_id = False
                    self._register()
                    continue
                if not e.transient:
                    raise
                log.warning("claim: %s; retrying", e)
                if self._stopping.wait(_backoff(failures)):
                    return
                failures += 1
                continue
            failures = 0
            for claim in claims:  # even when stopping: these are ours now
                self._start(Job(claim))
            if claims:
                self._registry_kick.set()

    def _start(self, job):
        thread = threading.Thread(target=self._run_job, args=(job,), daemon=True,
                                  name=f"unstuck-job-{job.id}")
        with self._cv:
            self._running[job] = thread
        thread.start()

    def _drain(self):
        while True:
            with self._cv:
                threads = list(self._running.values())
            if not threads:
                return
            for thread in threads:
                thread.join()

    # ----- one job -----

    def _run_job(self, job):
        beats = threading.Thread(target=self._beat_loop, args=(job,), daemon=True,
                                 name=f"unstuck-beat-{job.id}")
        beats.start()
        try:
            try:
                outcome = ("complete", self.handler(job))
            except AwaitResume as e:
                outcome = ("await", e)
            except Cancelled:
                outcome = ("fail", "stopped: cancellation requested or attempt lost", True)
            except Fatal as e:
                outcome = ("fail", str(e) or "Fatal", False)
            except Retryable as e:
                outcome = ("fail", str(e) or "Retryable", True, e.retry_after_ms)
            except Snooze as e:
                outcome = ("snooze", e)
            except Exception as e:
                log.exception("handler failed on %r", job)
                outcome = ("fail", f"{type(e).__name__}: {e}", True)
            job._done.set()
            beats.join()
            self._finish(job, outcome)
        except Exception:
            log.exception("recording the outcome of %r failed", job)
        finally:
            with self._cv:
                self._running.pop(job, None)
                self._cv.notify_all()

    def _beat_loop(self, job):
        interval = max(job.heartbeat_timeout / 3.0, 0.05)
        while not job.lost:
            self._beat(job)  # the first beat at once: it moves dispatched -> running
            if job._done.wait(interval):
                return

    def _beat(self, job):
        """One heartbeat with the pending progress and checkpoint; False when the attempt
        is no longer ours or cancellation was requested."""
        beat, seqs = job._pending()
        try:
            reply = self.client.heartbeat(job.token, **beat)
        except _LOST as e:
            log.info("%r lost: %s", job, e)
            job._stop(lost=True)
            return False
        except errors.UnstuckError as e:
            log.warning("heartbeat of %r: %s", job, e)
            return True
        job._delivered(seqs)
        if reply and reply.get("cancel_requested"):
            job.cancel_reason = reply.get("cancel_reason")
            job._stop(lost=False)
            return False
        return True

    def _finish(self, job, outcome):
        if outcome[0] in ("fail", "snooze", "await") and not job.lost and not job.cancel_requested:
            # Deliver a checkpoint set since the last beat: the next attempt resumes from it.
            if job._pending()[0]:
                self._beat(job)
        # Deliver the usage still pending: by beats, all but the last delta, which rides
        # on the complete or fail (all of it before a cancel-ack, a snooze or an await).
        last = 1 if outcome[0] in ("complete", "fail") and not job.cancel_requested else 0
        sent = -1
        while not job.lost and job._usage_pending() > last and job._usage_pending() != sent:
            sent = job._usage_pending()
            self._beat(job)
        if job.lost:
            self._count("dropped", job, "the attempt was lost")
            return
        if job.cancel_requested:
            if self._outcome(job, lambda: self.client.cancel_ack(job.token), "cancelled"):
                self._count("cancelled", job, "cancellation acknowledged")
            return
        if outcome[0] == "await":
            self._await(job, outcome[1])
            return
        if outcome[0] == "complete":
            result = outcome[1]
            try:
                json.dumps(result)
            except (TypeError, ValueError) as e:
                outcome = ("fail", f"result is not JSON: {type(e).__name__}: {e}", False)
            else:
                usage = job._pending()[0].get("usage")
                call = lambda: self.client.complete(job.token, result, usage=usage)  # noqa: E731
                try:
                    if self._outcome(job, call, "succeeded"):
                        self._count("succeeded", job, "completed")
                    return
                except errors.TooLarge as e:
                    outcome = ("fail", f"result refused: {e}", False)
        if outcome[0] == "snooze":
            self._snooze(job, outcome[1])
            return
        message, retryable = outcome[1][:MAX_MESSAGE], outcome[2]
        retry_after = outcome[3] if len(outcome) > 3 else None
        usage = None if job.cancel_requested else job._pending()[0].get("usage")
        try:
            reply = self._outcome(job, lambda: self.client.fail(
                job.token, message, retryable, retry_after_ms=retry_after, usage=usage))
        except errors.InvalidArgument as e:
            # A retry_after out of bounds: the failure is still recorded, with the backoff.
            log.error("retry_after of %r refused: %s", job, e)
            reply = self._outcome(job, lambda: self.client.fail(job.token, message, retryable))
        if reply:
            kind = {"retry_scheduled": "retried", "cancelled": "cancelled"}.get(
                reply.get("outcome"), "failed")
            self._count(kind, job, f"{reply.get('outcome')}: {message}")

    def _snooze(self, job, snooze):
        call = lambda: self.client.snooze(  # noqa: E731
            job.token, after_ms=snooze.after_ms, until=snooze.until, reason=snooze.reason)
        try:
            reply = self._outcome(job, call)
        except errors.InvalidArgument as e:
            # A bad snooze is the handler's bug: fail the attempt (retryable), say why.
            log.error("snooze of %r refused: %s", job, e)
            reply = self._outcome(job, lambda: self.client.fail(
                job.token, f"snooze refused: {e}"[:MAX_MESSAGE], True))
        if reply:
            kind = {"snoozed": "snoozed", "retry_scheduled": "retried",
                    "cancelled": "cancelled"}.get(reply.get("outcome"), "failed")
            self._count(kind, job, f"{reply.get('outcome')}: {snooze.reason}")

    def _await(self, job, wait):
        kwargs = {} if wait.checkpoint is None else {"checkpoint": wait.checkpoint}
        refused = []

        def call():
            try:
                return self.client.await_resume(job.token, wait.reason,
                                                wait.wait_deadline_ms, **kwargs)
            except (errors.BadRequest, errors.TooLarge) as e:
                # A wait the queue does not allow, or a checkpoint too large: the
                # handler's mistake, which a retry would repeat.
                refused.append(e)
                return {"outcome": "refused"}

        reply = self._outcome(job, call)
        if refused:
            message = f"await refused: {refused[0]}"[:MAX_MESSAGE]
            if self._outcome(job, lambda: self.client.fail(job.token, message, False)):
                self._count("failed", job, message)
            return
        if not reply:
            return
        if reply.get("outcome") == "cancelled":
            self._count("cancelled", job, "cancelled instead of waiting")
            return
        job.resume_token = reply.get("resume_token")
        self._count("awaiting", job, f"awaiting until {reply.get('wait_deadline_at')}: "
                                     f"{wait.reason}")
        if self.on_await is not None:
            try:
                self.on_await(job, reply)
            except Exception:
                log.exception("on_await of %r failed", job)

    def _outcome(self, job, call, ends_in=None):
        """Runs an outcome call, retrying transient errors (the calls are idempotent on the
        token); None when the attempt turned out not to be ours any more."""
        failures, give_up = 0, time.monotonic() + OUTCOME_RETRY_FOR
        while True:
            try:
                return call() or {}
            except errors.AlreadyTerminal as e:
                if failures and e.state == ends_in:
                    return {}  # a retry after a lost reply: the first call went through
                self._count("dropped", job, f"not ours any more: {e}")
                return None
            except _LOST as e:
                self._count("dropped", job, f"not ours any more: {e}")
                return None
            except errors.UnstuckError as e:
                if not e.transient or time.monotonic() > give_up:
                    if isinstance(e, (errors.TooLarge, errors.InvalidArgument)):
                        raise
                    log.error("recording the outcome of %r: %s", job, e)
                    return None
                time.sleep(_backoff(failures))
                failures += 1

    def _count(self, kind, job, what):
        with self._cv:
            self.stats[kind] += 1
        log.info("%r: %s", job, what)

    # ----- signals -----

    def _install_signals(self):
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return lambda: None
        # stop() takes locks and closes sockets: run it off the signal handler.
        def handler(signum, frame):
            log.info("signal %d: stopping after the running jobs", signum)
            threading.Thread(target=self.stop, daemon=True).start()
        old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
        return lambda: [signal.signal(s, h) for s, h in old.items()]
