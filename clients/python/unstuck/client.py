"""The HTTP client: one method per route of ``unstuck serve`` (docs/http-api.md).

Replies are returned as the JSON the server sent (dicts and lists): durations are integer
milliseconds, timestamps RFC 3339 strings. Errors are raised as ``unstuck.errors`` types.
"""

import datetime
import json
import urllib.parse

from . import errors
from .transport import UNSET, Transport

__all__ = ["Client"]



def _duration(value):
    """A duration for the wire: int ms or a string such as "30s" pass through; a timedelta
    becomes int ms."""
    if isinstance(value, datetime.timedelta):
        return int(round(value.total_seconds() * 1000))
    return value


def _timings(timings):
    return None if timings is None else {k: _duration(v) for k, v in timings.items()}


def _seg(name):
    # Names are [A-Za-z0-9_.:-]; quote anyway, and dot-only names so no one folds them.
    quoted = urllib.parse.quote(str(name), safe=":")
    return quoted.replace(".", "%2E") if set(quoted) <= {"."} else quoted


class Client:
    """A client of ``unstuck serve``. Thread-safe: each call borrows a keep-alive connection
    from a small pool.

    ``timeout`` (seconds) bounds connecting and waiting for a reply; a long-poll claim adds
    its ``wait_ms`` to it.
    """

    def __init__(self, base_url, token=None, timeout=30.0):
        self.transport = Transport(base_url, token, timeout)

    @property
    def base_url(self):
        return self.transport.base_url

    @property
    def token(self):
        return self.transport.token

    @token.setter
    def token(self, value):
        self.transport.token = value

    @property
    def timeout(self):
        return self.transport.timeout

    @timeout.setter
    def timeout(self, value):
        self.transport.timeout = value

    def copy(self):
        """A client with the same settings and connections of its own."""
        return Client(self.base_url, self.token, self.timeout)

    def close(self):
        """Closes every connection, aborting calls in flight (they raise ConnectionFailed
        or UnknownOutcome). The client cannot be used afterwards."""
        self.transport.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, method, path, body=UNSET, query=None, headers=None, timeout=None):
        """A request whose 2xx reply is JSON (or empty); returns (status, decoded body)."""
        status, hdrs, payload = self.transport.send(method, path, body, query, headers,
                                                    timeout)
        if not 200 <= status < 300:
            raise errors.from_response(status, hdrs, payload)
        if not payload:
            return status, None
        try:
            return status, json.loads(payload.decode("utf-8"))
        except ValueError as e:
            raise errors.UnstuckError(status, None, "reply is not JSON",
                                      payload[:200].decode("utf-8", "replace")) from e

    def _json(self, method, path, body=UNSET, query=None, headers=None, timeout=None):
        return self._call(method, path, body, query, headers, timeout)[1]

    # ----- health -----

    def healthz(self):
        return self._json("GET", "/healthz")

    def readyz(self):
        """``{"status": "ready"}``; raises Unavailable when Redis is unreachable."""
        return self._json("GET", "/readyz")

    def metrics(self):
        """The Prometheus text."""
        status, hdrs, payload = self.transport.send("GET", "/metrics")
        if status != 200:
            raise errors.from_response(status, hdrs, payload)
        return payload.decode("utf-8")

    def openapi(self):
        return self._json("GET", "/openapi.json")

    # ----- queues -----

    def queues(self):
        """Every queue: a list of Queue objects."""
        return self._json("GET", "/v1/queues")["queues"]

    def get_queue(self, queue):
        return self._json("GET", f"/v1/queues/{_seg(queue)}")

    def set_queue(self, queue, capacity=None, timings=None, max_wait=None,
                  on_wait_expiry=None, budget=None, window_budget=None):
        """Replaces the queue's settings (what is left out goes back to the defaults).
        ``max_wait``: longest wait an ``await_resume`` may ask for (ms or ``"2h"``; 7 days
        when unset); ``on_wait_expiry``: ``"fail"`` (default) or ``"requeue"``.
        ``budget``: the default execution budget ``{"tokens", "cost", "warning_share"}``;
        ``window_budget``: ``{"tokens", "cost", "window_ms"}``, when spent the queue is
        paused by ``budget``."""
        body = {}
        if budget is not None:
            body["budget"] = budget
        if window_budget is not None:
            body["window_budget"] = window_budget
        if capacity is not None:
            body["capacity"] = capacity
        if timings is not None:
            body["timings"] = _timings(timings)
        if max_wait is not None:
            body["max_wait"] = _duration(max_wait)
        if on_wait_expiry is not None:
            body["on_wait_expiry"] = on_wait_expiry
        return self._json("PUT", f"/v1/queues/{_seg(queue)}", body)

    def pause_queue(self, queue, reason):
        """Pauses the queue (admin): its claims take nothing (long polls keep waiting)
        until ``resume_queue``; running work goes on and is still judged. Returns
        ``{"queue", "paused", "changed", "pause": {"since", "by", "reason"}}``;
        ``changed`` is False when it was paused already (the pause in force is given).
        Raises UnknownQueue for a queue never used or configured."""
        return self._json("POST", f"/v1/queues/{_seg(queue)}/pause", {"reason": reason})

    def queue_usage(self, queue):
        """``{"queue", "totals", "by_model", "window", "window_ms", "window_budget"}``:
        usage since the queue's first, by model, and over its rolling window (each a
        ``{"input_tokens", "output_tokens", "cached_input_tokens", "cost"}``)."""
        return self._json("GET", f"/v1/queues/{_seg(queue)}/usage")

    def resume_queue(self, queue, reason=None):
        """Resumes a paused queue (admin): its waiting claims wake at once. Returns
        ``{"queue", "paused": False, "changed", "pause"}`` (``pause``: the pause it ended;
        ``changed`` False when the queue was running)."""
        body = {} if reason is None else {"reason": reason}
        return self._json("POST", f"/v1/queues/{_seg(queue)}/resume", body)

    # ----- executions -----

    @staticmethod
    def _enqueue_body(payload=None, id=None, timings=None, delay=None, budget=None):
        body = {"payload": payload}
        if budget is not None:
            body["budget"] = budget
        if id is not None:
            body["id"] = id
        if timings is not None:
            body["timings"] = _timings(timings)
        if delay is not None:
            body["delay"] = _duration(delay)
        return body

    def enqueue(self, queue, payload=None, id=None, timings=None, delay=None,
                idempotency_key=None, budget=None):
        """Enqueues one execution; returns Enqueued (``created`` False when the same id and
        request were enqueued before). Raises IdempotencyConflict when the id exists with a
        different request. ``budget``: ``{"tokens", "cost", "warning_share"}`` (its usage
        over all attempts; the queue's default budget when absent)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        status, reply = self._call("POST", f"/v1/queues/{_seg(queue)}/executions",
                                   self._enqueue_body(payload, id, timings, delay, budget),
                                   headers=headers)
        reply = reply or {}
        reply.setdefault("created", status == 201)
        return reply

    def enqueue_batch(self, queue, items):
        """Enqueues 1-1000 executions at once, all or nothing. ``items`` are dicts with the
        keys of ``enqueue`` (``payload``, ``id``, ``timings``, ``delay``). Returns the list
        of Enqueued (``conflict`` True where the id exists with a different request)."""
        body = {"items": [self._enqueue_body(**item) for item in items]}
        return self._json("POST", f"/v1/queues/{_seg(queue)}/executions/batch", body)["items"]

    def get(self, queue, id):
        """The Execution (state, attempt, timings, checkpoint, stop, history...)."""
        return self._json("GET", f"/v1/queues/{_seg(queue)}/executions/{_seg(id)}")

    def list(self, queue, state, cursor=None, limit=None):
        """One page: ``{"items": [Execution], "next_cursor": str or None}``."""
        reply = self._json("GET", f"/v1/queues/{_seg(queue)}/executions",
                           query={"state": state, "cursor": cursor, "limit": limit})
        reply.setdefault("next_cursor", None)
        return reply

    def list_all(self, queue, state, limit=None):
        """Every execution of ``queue`` in ``state``, page after page (``limit`` per page)."""
        cursor = None
        while True:
            page = self.list(queue, state, cursor, limit)
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def cancel(self, queue, id, reason=None):
        """``{"outcome": "cancelled"}`` (it was queued) or ``{"outcome": "requested",
        "requested_at", "already"}``; raises AlreadyTerminal."""
        body = {} if reason is None else {"reason": reason}
        return self._json("POST", f"/v1/queues/{_seg(queue)}/executions/{_seg(id)}/cancel",
                          body)

    def find(self, queue=None, state=None, stop_reason=None, worker=None, cursor=None,
             limit=None):
        """Executions across queues (one with ``queue``), newest first within a queue and
        state, filtered; one page: ``{"items": [Execution], "next_cursor": str or None}``.
        A page may come back short with a cursor when matches are rare."""
        reply = self._json("GET", "/v1/executions", query={
            "queue": queue, "state": state, "stop_reason": stop_reason, "worker": worker,
            "cursor": cursor, "limit": limit})
        reply.setdefault("next_cursor", None)
        return reply

    def retry(self, queue, id, new_id=None, reason=None):
        """Runs a finished (failed, dead, timed_out, cancelled) execution again as a new
        one linked by ``retry_of``, from its last checkpoint; returns the Enqueued reply
        (``created`` False when ``new_id`` existed). Raises InvalidTransition when it has
        not finished or it succeeded."""
        body = {k: v for k, v in (("new_id", new_id), ("reason", reason)) if v is not None}
        return self._json("POST", f"/v1/queues/{_seg(queue)}/executions/{_seg(id)}/retry",
                          body)

    def resume(self, queue, id, input=None):
        """Resumes an awaiting execution: back in the queue; the claim that continues it
        gets ``input`` as ``resume_input``. Returns ``{"queue", "id", "resumed_at",
        "already", "state"}`` (``already`` True: an earlier resume did it, nothing
        changed). Raises NotAwaiting (``.state`` names its state)."""
        body = {} if input is None else {"input": input}
        return self._json("POST", f"/v1/queues/{_seg(queue)}/executions/{_seg(id)}/resume",
                          body)

    def resume_by_token(self, resume_token, input=None):
        """Resumes with the one-time token ``await_resume`` returned (no bearer token
        needed), as ``resume``. Raises InvalidResumeToken (forged, or replaced by a later
        wait), ResumeTokenUsed (it worked once already), NotAwaiting."""
        body = {} if input is None else {"input": input}
        return self._json("POST", f"/v1/resume/{_seg(resume_token)}", body)

    def recent_events(self, queue=None, limit=None):
        """The newest events (every queue, or one), oldest first."""
        return self._json("GET", "/v1/events/recent",
                          query={"queue": queue, "limit": limit})["events"]

    def execution_events(self, queue, id):
        """The execution's transitions (Event objects), oldest first."""
        return self._json(
            "GET", f"/v1/queues/{_seg(queue)}/executions/{_seg(id)}/events")["events"]

    # ----- workers' calls -----

    def claim(self, queue, worker_id, max=1, wait_ms=0):
        """Claims up to ``max`` executions; returns a list of Claim objects, empty when
        nothing became claimable within ``wait_ms`` (0-30000, a long poll)."""
        body = {"worker_id": worker_id}
        if max != 1:
            body["max"] = max
        if wait_ms:
            body["wait_ms"] = wait_ms
        timeout = self.timeout + (wait_ms or 0) / 1000.0
        status, reply = self._call("POST", f"/v1/queues/{_seg(queue)}/claims", body,
                                   timeout=timeout)
        return [] if status == 204 or not reply else reply.get("claims", [])

    def heartbeat(self, token, progress=None, checkpoint=UNSET, usage=None):
        """``{"cancel_requested": bool}`` (and ``"cancel_reason": "budget_exceeded"`` when
        the execution's budget was reached). Raises StaleAttempt / AlreadyTerminal when the
        attempt is no longer current (stop: the work is not yours). ``usage``: a delta
        ``{"input_tokens", "output_tokens", "cached_input_tokens", "cost", "model",
        "seq"}``, ``seq`` required (positive, increasing within the attempt: a replayed
        delta is not counted twice)."""
        body = {"token": token}
        if usage is not None:
            body["usage"] = usage
        if progress is not None:
            body["progress"] = progress
        if checkpoint is not UNSET:
            body["checkpoint"] = checkpoint
        return self._json("POST", "/v1/attempts/heartbeat", body)

    def complete(self, token, result=UNSET, usage=None):
        """``{"slot_released": bool}``. ``usage``: the attempt's last delta, as for
        ``heartbeat``."""
        body = {"token": token}
        if usage is not None:
            body["usage"] = usage
        if result is not UNSET:
            body["result"] = result
        return self._json("POST", "/v1/attempts/complete", body)

    def fail(self, token, message, retryable=True, retry_after_ms=None, usage=None):
        """``{"outcome": "retry_scheduled", "available_at", "slot_released"}`` or
        ``{"outcome": "failed" | "cancelled", "slot_released"}``. ``retry_after_ms`` (say a
        provider's Retry-After; 1 ms to 7 days, retryable failures only) is the earliest the
        retry may start: it wins over the backoff when later."""
        body = {"token": token, "message": message, "retryable": bool(retryable)}
        if usage is not None:
            body["usage"] = usage
        if retry_after_ms is not None:
            body["retry_after_ms"] = _duration(retry_after_ms)
        return self._json("POST", "/v1/attempts/fail", body)

    def snooze(self, token, after_ms=None, until=None, reason=None):
        """Ends the attempt; the execution waits in the queue until ``after_ms`` from now
        (1 ms to 7 days) or ``until`` (a datetime or RFC 3339 text, at most 7 days ahead),
        exactly one of them, then comes back as a continuation: no attempt is counted.
        ``reason`` (required) is named in the ``snoozed`` event. Returns ``{"outcome":
        "snoozed", "available_at", "snoozes", "slot_released"}``; past the execution's
        ``max_snoozes`` the snooze is a retryable failure (``outcome`` ``retry_scheduled``
        or ``failed``); ``cancelled`` when cancellation had been requested. The token is
        stale afterwards."""
        body = {"token": token, "reason": reason}
        if after_ms is not None:
            body["after_ms"] = _duration(after_ms)
        if until is not None:
            body["until"] = until if isinstance(until, str) else until.isoformat()
        return self._json("POST", "/v1/attempts/snooze", body)

    def await_resume(self, token, reason, wait_deadline_ms, checkpoint=UNSET):
        """Ends the attempt to wait on a person or an outside event: ``{"outcome":
        "awaiting", "resume_token", "wait_deadline_at", "slot_released"}`` (or
        ``{"outcome": "cancelled", ...}`` when cancellation had been requested). The
        execution is never judged stale while it waits; ``resume`` continues it, and the
        attempt does not count toward max_attempts. ``wait_deadline_ms``: ms or ``"1h"``,
        more than 0 and at most the queue's ``max_wait``."""
        body = {"token": token, "reason": reason,
                "wait_deadline_ms": _duration(wait_deadline_ms)}
        if checkpoint is not UNSET:
            body["checkpoint"] = checkpoint
        return self._json("POST", "/v1/attempts/await", body)

    def cancel_ack(self, token):
        """Acknowledges a cancellation: ``{"slot_released": bool}``; InvalidTransition when
        none was requested."""
        return self._json("POST", "/v1/attempts/cancel-ack", {"token": token})

    # ----- worker registry -----

    def register_worker(self, queues, worker_id=None, host=None, pid=None, version=None,
                        heartbeat_interval=None):
        """``{"worker_id", "registered_at"}``; raises WorkerExists. Use a fresh id per
        process start (the server generates one when ``worker_id`` is None)."""
        body = {"queues": [queues] if isinstance(queues, str) else list(queues)}
        for key, value in (("worker_id", worker_id), ("host", host), ("pid", pid),
                           ("version", version),
                           ("heartbeat_interval", _duration(heartbeat_interval))):
            if value is not None:
                body[key] = value
        return self._json("POST", "/v1/workers", body)

    def worker_heartbeat(self, worker_id, running=()):
        """Tells the registry the worker is alive and what it runs (``(queue, id)`` pairs
        or ``{"queue", "id"}`` dicts). Raises UnknownWorker: register again, fresh id."""
        items = [r if isinstance(r, dict) else {"queue": r[0], "id": r[1]} for r in running]
        return self._json("POST", f"/v1/workers/{_seg(worker_id)}/heartbeat",
                          {"running": items})

    def reset_worker(self, worker_id, reason=None):
        """Resets a worker's remediation (tier, failed kills, open circuit); returns
        ``{"previous_tier", "circuit_was_open"}``."""
        body = {} if reason is None else {"reason": reason}
        return self._json("POST", f"/v1/workers/{_seg(worker_id)}/reset", body)

    def request_worker(self, worker_id, request, reason=None):
        """Asks a worker, in its next heartbeat reply, to ``"restart"`` or ``"drain"``."""
        body = {"request": request}
        if reason is not None:
            body["reason"] = reason
        self._call("POST", f"/v1/workers/{_seg(worker_id)}/request", body)

    def worker_events(self, after=None, limit=100):
        """Worker tier changes, action and hook outcomes, circuits opened and reset."""
        query = {"limit": limit}
        if after:
            query["after"] = after
        return self._json("GET", "/v1/workers/events", query=query)["events"]

    def deregister_worker(self, worker_id):
        self._call("DELETE", f"/v1/workers/{_seg(worker_id)}")

    def workers(self):
        return self._json("GET", "/v1/workers")["workers"]

    def watchdog_state(self):
        return self._json("GET", "/v1/watchdog")

    def watchdog_activity(self, minutes=None):
        """The watchdog's actions per minute by reason and its detection-lag histogram
        over the last ``minutes`` (1-1440, default 30)."""
        return self._json("GET", "/v1/watchdog/activity", query={"minutes": minutes})

    def session(self):
        """What this client's token may do: ``{"scope", "open", "can_read", "can_steer",
        "can_admin"}``."""
        return self._json("GET", "/v1/session")

    # ----- event stream -----

    def events(self, queue=None, last_event_id=None, **options):
        """Follows the event stream (every queue, or one): an iterator of Event objects
        that reconnects with Last-Event-ID when the connection drops. See EventStream."""
        from .sse import EventStream
        return EventStream(self, queue=queue, last_event_id=last_event_id, **options)
