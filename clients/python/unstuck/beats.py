"""The Worker's heartbeats: one thread beats every attempt the worker holds, all of them in
one request per round (``POST /v1/attempts/heartbeats``; the single route when it holds
one), each attempt renewed, given up, cancelled or lost on its own answer."""

import logging
import random
import threading
import time

from . import errors

log = logging.getLogger("unstuck")

_LOST = (errors.StaleAttempt, errors.AlreadyTerminal, errors.TokenMismatch, errors.NotFound)
RENEWED, GONE, FAILED = "renewed", "gone", "failed"  # what one heartbeat did


def backoff(failures, base=0.1, cap=5.0):
    """Exponential backoff with jitter: about base * 2^failures, at most cap."""
    return min(cap, base * (2 ** failures)) * random.uniform(0.5, 1.0)


def interval(job):
    """An attempt is beaten at a third of its heartbeat timeout."""
    return max(job.heartbeat_timeout / 3.0, 0.05)


class Beater:
    """Beats the attempts ``held()`` returns. A beat is due at once for a new attempt (its
    first beat moves it to running) or a new fingerprint, then every third of the
    attempt's heartbeat timeout; a round also takes the attempts due within half their
    interval, so attempts claimed at different times soon share their rounds. A failed
    beat is retried with a backoff; once an attempt's heartbeat timeout has passed with no
    renewal it is given up as lost (the watchdog retries it elsewhere): ``job.cancelled``
    is set and nothing is recorded."""

    def __init__(self, client, held):
        self.client = client
        self.held = held
        self.kick = threading.Event()  # a new attempt, a fingerprint, an attempt's end
        self._stopped = threading.Event()
        self._thread = None

    def start(self, name):
        self._thread = threading.Thread(target=self._loop, daemon=True, name=name)
        self._thread.start()

    def stop(self):
        self._stopped.set()
        self.kick.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self):
        while not self._stopped.is_set():
            self.kick.clear()
            now = time.monotonic()
            due, soon, wake = [], [], None
            for job in self.held():
                if job._done.is_set() or job.lost:
                    continue
                give_up_at = job._renewed + job.heartbeat_timeout
                if now >= give_up_at:
                    log.warning("%r: no heartbeat renewed it within %.3gs: giving it up", job,
                                job.heartbeat_timeout)
                    job._stop(lost=True)
                    continue
                if job._beat_at <= now or job._beat_now:
                    due.append(job)
                elif job._beat_failures == 0 and job._beat_at - now <= interval(job) / 2:
                    soon.append(job)
                at = min(job._beat_at, give_up_at)
                wake = at if wake is None else min(wake, at)
            if due:
                self.round(due + soon)
                continue
            self.kick.wait(1.0 if wake is None else max(wake - now, 0.0))

    def round(self, jobs):
        """One beat of each of ``jobs``: one request (the single route for one attempt)."""
        beating = []
        for job in jobs:
            job._beat_lock.acquire()
            if job._done.is_set() or job.lost:
                job._beat_lock.release()  # it ended meanwhile: its own thread beats it now
                continue
            beating.append(job)
        try:
            if beating:
                self._send(beating)
        finally:
            for job in beating:
                job._beat_lock.release()

    def _send(self, jobs):
        now = time.monotonic()
        timeout = max(min(j._renewed + j.heartbeat_timeout - now for j in jobs), 0.05)
        pending = [job._pending() for job in jobs]
        sent = time.monotonic()
        if len(jobs) == 1:
            results = [self._one(jobs[0], pending[0][0], timeout)]
        else:
            beats = [dict(beat, token=job.token) for job, (beat, _) in zip(jobs, pending)]
            try:
                results = self.client.heartbeats(beats, timeout=timeout)
            except errors.UnstuckError as e:
                results = [e] * len(jobs)
            if len(results) != len(jobs):
                results = [errors.Protocol(None, None, "heartbeats: a reply per beat missing")
                           ] * len(jobs)
        for job, (_, seqs), result in zip(jobs, pending, results):
            outcome = answered(job, seqs, result)
            if outcome == RENEWED:
                job._renewed, job._beat_failures = sent, 0
                # One fingerprint went out and more wait: each its own beat, at once.
                more = seqs[2] and job._unsent_fingerprints() > 0
                job._beat_at = sent if more else sent + interval(job)
            elif outcome == FAILED:
                left = job._renewed + job.heartbeat_timeout - time.monotonic()
                job._beat_at = time.monotonic() + max(
                    min(backoff(job._beat_failures, 0.05, interval(job)), left), 0.0)
                job._beat_failures += 1

    def _one(self, job, beat, timeout):
        try:
            return self.client.heartbeat(job.token, timeout=timeout, **beat)
        except errors.UnstuckError as e:
            return e

    def beat(self, job, timeout=None):
        """One heartbeat of ``job`` alone, now (delivering what its end left pending)."""
        beat, seqs = job._pending()
        return answered(job, seqs, self._one(job, beat, timeout))


def answered(job, seqs, result):
    """What one beat's answer (a reply, or an ``UnstuckError``) means for ``job``: RENEWED,
    GONE (the attempt is no longer ours) or FAILED (no renewal; worth another try)."""
    job._first_answer.set()
    if isinstance(result, _LOST):
        log.info("%r lost: %s", job, result)
        job._stop(lost=True)
        return GONE
    if isinstance(result, errors.UnstuckError):
        log.warning("heartbeat of %r: %s", job, result)
        return FAILED
    job._delivered(seqs)
    if result and result.get("cancel_requested"):
        job.cancel_reason = result.get("cancel_reason")
        job._stop(lost=False)
    return RENEWED
