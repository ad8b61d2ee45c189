"""The worker runner: claims executions of one queue, runs a handler on each, keeps them
alive with heartbeats (all it holds in one request per round: ``unstuck.beats``), and
records how each ended."""

import json
import logging
import os
import re
import secrets
import signal
import socket
import threading
import time

from . import _otel, errors
from .beats import GONE as _GONE, RENEWED as _RENEWED, Beater, backoff as _backoff
from .job import AwaitResume, Cancelled, Fatal, Job, Retryable, Snooze

__all__ = ["Worker", "Job", "Retryable", "Fatal", "Cancelled", "Snooze", "AwaitResume"]

log = logging.getLogger("unstuck")

MAX_WAIT_MS = 30000
REGISTRY_INTERVAL = 5.0  # seconds between worker-registry beats, by default
OUTCOME_RETRY_FOR = 60.0  # seconds spent retrying a complete/fail/cancel-ack on transient errors
MAX_MESSAGE = 4000  # characters of a failure message
_LOST = (errors.StaleAttempt, errors.AlreadyTerminal, errors.TokenMismatch, errors.NotFound)


def _valid_name(text, limit):
    return re.sub(r"[^A-Za-z0-9_.:-]", "-", text)[:limit] or "host"


def fresh_worker_id():
    """``<host>-<pid>-<random>``: unique per process start, as the registry requires."""
    return f"{_valid_name(socket.gethostname(), 100)}-{os.getpid()}-{secrets.token_hex(4)}"


class Worker:
    """Runs ``handler(job)`` on executions claimed from ``queue``, ``concurrency`` at once.

    The handler's return value (JSON-able) completes the attempt; ``Retryable`` or any other
    exception fails it retryable; ``Fatal`` fails it for good; when cancellation was
    requested the cancellation is acknowledged instead. ``heartbeat_interval`` (seconds,
    5 by default) is how often the worker registry hears from this worker; the attempts
    themselves are beaten at a third of their ``heartbeat_timeout``, all the attempts it
    holds in one request per round (``Client.heartbeats``; ``heartbeat`` when it holds
    one).

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
        self._beater = Beater(client, lambda: self.running)
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
            self._beater.start(f"unstuck-beats-{self.worker_id}")
            self._claim_loop()
        finally:
            self._stopping.set()
            self._drain()
            self._beater.stop()
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
                if self._registry_done.is_set():
                    return  # run() ended meanwhile: the kick cleared above was its
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
                job = Job(claim)
                job._client = self.client
                self._start(job)
            if claims:
                self._registry_kick.set()

    def _start(self, job):
        thread = threading.Thread(target=self._run_job, args=(job,), daemon=True,
                                  name=f"unstuck-job-{job.id}")
        job._wake = self._beater.kick  # its fingerprints wake the beat rounds
        with self._cv:
            self._running[job] = thread
        thread.start()
        self._beater.kick.set()  # its first beat, at once, moves it to running

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
        try:
            # The handler starts once the first beat (sent at once by the beat rounds) is
            # answered, so the execution is running when the work begins; a beat that
            # does not come back within a third of the timeout does not hold it longer.
            job._first_answer.wait(job.heartbeat_timeout / 3)
            # The `process {queue}` span, when the OpenTelemetry API is installed.
            with _otel.process(job, self.worker_id) as traced:
                outcome = self._handle(job)
                traced(outcome[1] if outcome[0] == "fail" else None)
            job._done.set()
            with job._beat_lock:
                pass  # a beat of it in flight has ended: what it delivered is known
            self._finish(job, outcome)
        except Exception:
            log.exception("recording the outcome of %r failed", job)
        finally:
            with self._cv:
                self._running.pop(job, None)
                self._cv.notify_all()

    def _handle(self, job):
        """Runs the handler; what it came to, as ``_finish`` takes it."""
        try:
            return ("complete", self.handler(job))
        except AwaitResume as e:
            return ("await", e)
        except Cancelled:
            return ("fail", "stopped: cancellation requested or attempt lost", True)
        except Fatal as e:
            return ("fail", str(e) or "Fatal", False)
        except Retryable as e:
            return ("fail", str(e) or "Retryable", True, e.retry_after_ms)
        except Snooze as e:
            return ("snooze", e)
        except Exception as e:
            log.exception("handler failed on %r", job)
            return ("fail", f"{type(e).__name__}: {e}", True)

    def _beat(self, job, timeout=None):
        """One heartbeat of ``job`` alone (after its handler returned): _RENEWED, _GONE or
        _FAILED."""
        return self._beater.beat(job, timeout)

    def _finish(self, job, outcome):
        if outcome[0] in ("fail", "snooze", "await") and not job.lost and not job.cancel_requested:
            # Deliver a checkpoint set since the last beat: the next attempt resumes from it.
            if job._pending()[0]:
                self._beat(job)
        # Deliver the usage still pending: by beats, all but the last delta, which rides
        # on the complete or fail (all of it before a cancel-ack, a snooze or an await).
        # A beat that fails is tried again with a backoff for up to OUTCOME_RETRY_FOR, as
        # the outcome itself is: a short outage loses no usage.
        last = 1 if outcome[0] in ("complete", "fail") and not job.cancel_requested else 0
        give_up_at, failures = time.monotonic() + OUTCOME_RETRY_FOR, 0
        while not job.lost and job._usage_pending() > last:
            before = job._usage_pending()
            result = self._beat(job)
            if result == _GONE:
                break
            if result == _RENEWED:
                if job._usage_pending() >= before:
                    break  # renewed but nothing delivered: nothing more to gain
                continue
            left = give_up_at - time.monotonic()
            if left <= 0:
                log.warning("%r: %d usage deltas not delivered", job, job._usage_pending())
                break
            time.sleep(min(_backoff(failures), left))
            failures += 1
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
