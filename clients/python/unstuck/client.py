"""The HTTP client: one method per route of ``unstuck serve`` (docs/http-api.md).

Replies are returned as the JSON the server sent (dicts and lists): durations are integer
milliseconds, timestamps RFC 3339 strings. Errors are raised as ``unstuck.errors`` types.
"""

import json

from . import errors
from .client_ops import OpsCalls
from .routes import duration as _duration, route_path, timings as _timings
from .transport import UNSET, Transport

__all__ = ["Client"]


def _decoded(status, hdrs, payload):
    if not 200 <= status < 300:
        raise errors.from_response(status, hdrs, payload)
    if not payload:
        return status, None
    try:
        return status, json.loads(payload.decode("utf-8"))
    except ValueError as e:
        raise errors.UnstuckError(status, None, "reply is not JSON",
                                  payload[:200].decode("utf-8", "replace")) from e


class Client(OpsCalls):
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
        """A request of any path whose 2xx reply is JSON (or empty); returns (status,
        decoded body). The methods call ``_route`` instead: their routes are in the table."""
        status, hdrs, payload = self.transport.send(method, path, body, query, headers,
                                                    timeout)
        return _decoded(status, hdrs, payload)

    def _json(self, method, path, body=UNSET, query=None, headers=None, timeout=None):
        return self._call(method, path, body, query, headers, timeout)[1]

    def _send_route(self, route, params=None, body=UNSET, query=None, headers=None,
                    timeout=None):
        """One request of the route table (``unstuck.routes.ROUTES``), its ``{params}``
        filled from ``params``; returns (status, headers, body bytes)."""
        method, path = route_path(route, **(params or {}))
        return self.transport.send(method, path, body, query, headers, timeout)

    def _route(self, route, params=None, body=UNSET, query=None, headers=None, timeout=None):
        """A request of the route table whose 2xx reply is JSON (or empty); returns
        (status, decoded body)."""
        return _decoded(*self._send_route(route, params, body, query, headers, timeout))

    def _route_json(self, route, params=None, body=UNSET, query=None, headers=None,
                    timeout=None):
        return self._route(route, params, body, query, headers, timeout)[1]

    def _route_text(self, route, params=None):
        """A request of the route table whose 2xx reply is text (metrics, problem pages)."""
        status, hdrs, payload = self._send_route(route, params)
        if not 200 <= status < 300:
            raise errors.from_response(status, hdrs, payload)
        return payload.decode("utf-8")

    # ----- health -----

    def healthz(self):
        return self._route_json("healthz")

    def readyz(self):
        """``{"status": "ready"}``; raises Unavailable when Redis is unreachable."""
        return self._route_json("readyz")

    def metrics(self):
        """The Prometheus text."""
        return self._route_text("metrics")

    def openapi(self):
        return self._route_json("openapi")

    def problem(self, slug):
        """What a problem type means: the page (HTML) behind an error's ``type``
        (``/problems/<slug>``). Raises NotFound for a slug the server does not have."""
        return self._route_text("problem", {"slug": slug})

    # ----- queues -----

    def queues(self):
        """Every queue: a list of Queue objects."""
        return self._route_json("queues")["queues"]

    def get_queue(self, queue):
        return self._route_json("get_queue", {"queue": queue})

    def set_queue(self, queue, capacity=None, timings=None, max_wait=None,
                  on_wait_expiry=None, retention=None, budget=None, window_budget=None):
        """Replaces the queue's settings (what is left out goes back to the defaults; a
        pause is kept). ``max_wait``: longest wait an ``await_resume`` may ask for (ms or
        ``"2h"``; 7 days when unset); ``on_wait_expiry``: ``"fail"`` (default) or
        ``"requeue"``; ``retention``: how long its finished executions are kept, per state
        (``succeeded``, ``failed``, ``dead``, ``timed_out``, ``cancelled``: durations) and
        ``max_finished`` (a count). ``budget``: the default execution budget ``{"tokens",
        "cost", "warning_share"}``; ``window_budget``: ``{"tokens", "cost", "window_ms"}``,
        when spent the queue is paused by ``budget``."""
        body = {}
        if retention is not None:
            body["retention"] = {k: v if k == "max_finished" else _duration(v)
                                 for k, v in retention.items()}
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
        return self._route_json("set_queue", {"queue": queue}, body)

    def pause_queue(self, queue, reason):
        """Pauses the queue (admin): its claims take nothing (long polls keep waiting)
        until ``resume_queue``; running work goes on and is still judged. Returns
        ``{"queue", "paused", "changed", "pause": {"since", "by", "reason"}}``;
        ``changed`` is False when it was paused already (the pause in force is given).
        Raises UnknownQueue for a queue never used or configured."""
        return self._route_json("pause_queue", {"queue": queue}, {"reason": reason})

    def queue_usage(self, queue):
        """``{"queue", "totals", "by_model", "window", "window_ms", "window_budget"}``:
        usage since the queue's first, by model, and over its rolling window (each a
        ``{"input_tokens", "output_tokens", "cached_input_tokens", "cost"}``)."""
        return self._route_json("queue_usage", {"queue": queue})

    def resume_queue(self, queue, reason=None):
        """Resumes a paused queue (admin): its waiting claims wake at once. Returns
        ``{"queue", "paused": False, "changed", "pause"}`` (``pause``: the pause it ended;
        ``changed`` False when the queue was running)."""
        body = {} if reason is None else {"reason": reason}
        return self._route_json("resume_queue", {"queue": queue}, body)

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
                idempotency_key=None, traceparent=None, budget=None):
        """Enqueues one execution; returns Enqueued (``created`` False when the same id and
        request were enqueued before). Raises IdempotencyConflict when the id exists with a
        different request. ``traceparent``: the caller's W3C trace context, stored on the
        execution and handed to its claims (docs/tracing.md). ``budget``: ``{"tokens",
        "cost", "warning_share"}`` (its usage over all attempts; the queue's default budget
        when absent)."""
        headers = {}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        if traceparent:
            headers["traceparent"] = traceparent
        headers = headers or None
        status, reply = self._route("enqueue", {"queue": queue},
                                   self._enqueue_body(payload, id, timings, delay, budget),
                                   headers=headers)
        reply = reply or {}
        reply.setdefault("created", status == 201)
        return reply

    def enqueue_batch(self, queue, items, traceparent=None):
        """Enqueues 1-1000 executions at once, all or nothing. ``items`` are dicts with the
        keys of ``enqueue`` (``payload``, ``id``, ``timings``, ``delay``). Returns the list
        of Enqueued (``conflict`` True where the id exists with a different request).
        ``traceparent`` is stored on every item."""
        body = {"items": [self._enqueue_body(**item) for item in items]}
        headers = {"traceparent": traceparent} if traceparent else None
        return self._route_json("enqueue_batch", {"queue": queue}, body,
                                headers=headers)["items"]

    def get(self, queue, id):
        """The Execution (state, attempt, timings, checkpoint, stop, history...)."""
        return self._route_json("get", {"queue": queue, "id": id})

    def list(self, queue, state, cursor=None, limit=None):
        """One page: ``{"items": [Execution], "next_cursor": str or None}``."""
        reply = self._route_json("list", {"queue": queue},
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
        return self._route_json("cancel", {"queue": queue, "id": id}, body)

    def find(self, queue=None, state=None, stop_reason=None, worker=None, cursor=None,
             limit=None):
        """Executions across queues (one with ``queue``), newest first within a queue and
        state, filtered; one page: ``{"items": [Execution], "next_cursor": str or None}``.
        A page may come back short with a cursor when matches are rare."""
        reply = self._route_json("find", query={
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
        return self._route_json("retry", {"queue": queue, "id": id}, body)

    def resume(self, queue, id, input=None):
        """Resumes an awaiting execution: back in the queue; the claim that continues it
        gets ``input`` as ``resume_input``. Returns ``{"queue", "id", "resumed_at",
        "already", "state"}`` (``already`` True: an earlier resume did it, nothing
        changed). Raises NotAwaiting (``.state`` names its state)."""
        body = {} if input is None else {"input": input}
        return self._route_json("resume", {"queue": queue, "id": id}, body)

    def pin(self, queue, id):
        """Pins an execution (any state): retention never removes it; twice is once.
        Returns ``{"pinned": True, "state"}``; raises NotFound."""
        return self._route_json("pin", {"queue": queue, "id": id})

    def unpin(self, queue, id):
        """Ends a pin: retention treats the execution as any other again. Returns
        ``{"pinned": False, "state"}``; raises NotFound."""
        return self._route_json("unpin", {"queue": queue, "id": id})

    def resume_by_token(self, resume_token, input=None):
        """Resumes with the one-time token ``await_resume`` returned (no bearer token
        needed), as ``resume``. Raises InvalidResumeToken (forged, or replaced by a later
        wait), ResumeTokenUsed (it worked once already), NotAwaiting."""
        body = {} if input is None else {"input": input}
        return self._route_json("resume_by_token", {"resume_token": resume_token}, body)

    def recent_events(self, queue=None, limit=None):
        """The newest events (every queue, or one), oldest first."""
        return self._route_json("recent_events",
                          query={"queue": queue, "limit": limit})["events"]

    def execution_events(self, queue, id):
        """The execution's transitions (Event objects), oldest first."""
        return self._route_json("execution_events", {"queue": queue, "id": id})["events"]

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
        status, reply = self._route("claim", {"queue": queue}, body,
                                   timeout=timeout)
        return [] if status == 204 or not reply else reply.get("claims", [])

    def heartbeat(self, token, progress=None, checkpoint=UNSET, fingerprint=None, usage=None,
                  timeout=None):
        """``{"cancel_requested": bool}`` (and ``"cancel_reason": "budget_exceeded"`` when
        the execution's budget was reached). Raises StaleAttempt / AlreadyTerminal when the
        attempt is no longer current (stop: the work is not yours). ``fingerprint`` (1 to
        128 bytes: the last action and its result, say a hash of them) is for loop
        detection: the same one ``max_repeats`` times in a row and the watchdog judges the
        execution stuck ``looping``; each heartbeat carrying one counts once. ``usage``: a
        delta ``{"input_tokens", "output_tokens", "cached_input_tokens", "cost", "model",
        "seq"}``, ``seq`` required (positive, increasing within the attempt: a replayed
        delta is not counted twice). ``timeout`` (seconds) replaces the client's for this
        call (a beat slower than the attempt's heartbeat timeout is of no use)."""
        body = {"token": token}
        if usage is not None:
            body["usage"] = usage
        if progress is not None:
            body["progress"] = progress
        if checkpoint is not UNSET:
            body["checkpoint"] = checkpoint
        if fingerprint is not None:
            body["fingerprint"] = fingerprint
        return self._route_json("heartbeat", body=body, timeout=timeout)

    def heartbeats(self, beats, timeout=None):
        """Beats many attempts (of any queues) in one request: ``beats`` is a list of up to
        1000 items, each a token or a dict of ``heartbeat``'s arguments (``{"token",
        "progress"?, "checkpoint"?, "fingerprint"?, "usage"?}``). Returns a list in the same
        order: for each beat, the reply ``heartbeat`` would return, or the error it would
        have raised, as an ``UnstuckError`` instance (returned, not raised: a refused beat,
        say ``StaleAttempt`` or ``TooLarge``, fails only itself). Raises for the request as
        a whole: ``InvalidArgument`` for none or more than 1000 beats (nothing written),
        ``Unavailable`` and the like."""
        items = []
        for beat in beats:
            item = {"token": beat} if isinstance(beat, str) else dict(beat)
            if item.get("checkpoint", None) is UNSET:
                del item["checkpoint"]
            for name in ("progress", "fingerprint", "usage"):
                if name in item and item[name] is None:
                    del item[name]
            items.append(item)
        reply = self._route_json("heartbeats", body={"heartbeats": items}, timeout=timeout)
        return [errors.from_problem(r["problem"]) if isinstance(r, dict) and "problem" in r
                else r for r in (reply or {}).get("results", [])]

    def complete(self, token, result=UNSET, usage=None):
        """``{"slot_released": bool}``. ``usage``: the attempt's last delta, as for
        ``heartbeat``."""
        body = {"token": token}
        if usage is not None:
            body["usage"] = usage
        if result is not UNSET:
            body["result"] = result
        return self._route_json("complete", body=body)

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
        return self._route_json("fail", body=body)

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
        return self._route_json("snooze", body=body)

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
        return self._route_json("await_resume", body=body)

    def cancel_ack(self, token):
        """Acknowledges a cancellation: ``{"slot_released": bool}``; InvalidTransition when
        none was requested."""
        return self._route_json("cancel_ack", body={"token": token})

    # ----- resource leases -----

    def acquire(self, token, resource, capacity=None, ttl_ms=None, wait_ms=0):
        """Takes one unit of ``resource`` (a tool, a worktree, an API key) for the attempt:
        ``{"resource", "capacity", "held", "expires_at"?}``. Held until ``release``, its
        ``ttl_ms``, or the end of the attempt (any end: complete, fail, snooze, await,
        cancel, a watchdog remediation, a crash), whichever comes first. ``capacity`` sets
        the resource's units when nobody holds it (default 1); while held, a different one
        raises ResourceCapacity. When every unit is held it waits up to ``wait_ms`` (at
        most 30 s), then raises ResourceBusy, whose ``holders`` say who holds them."""
        body = {"token": token, "resource": resource}
        if capacity is not None:
            body["capacity"] = capacity
        if ttl_ms is not None:
            body["ttl_ms"] = _duration(ttl_ms)
        if wait_ms:
            body["wait_ms"] = _duration(wait_ms)
        wait_s = wait_ms / 1000.0 if isinstance(wait_ms, (int, float)) else 30.0
        return self._route_json("acquire", body=body, timeout=self.timeout + wait_s)

    def release(self, token, resource):
        """Gives back the attempt's unit: ``{"released": bool}`` (False when it held none:
        idempotent). Fenced: a stale attempt's release never frees a later attempt's unit."""
        return self._route_json("release", body={"token": token, "resource": resource})

    def resources(self):
        """Every resource held now: ``[{"resource", "capacity", "held", "holders":
        [{"queue", "id", "attempt", "since", "expires_at"?}]}]``."""
        return self._route_json("resources")["resources"]

    def resource(self, resource):
        """One resource (``held`` 0 and no holders when nobody holds it)."""
        return self._route_json("resource", {"resource": resource})

    def force_release(self, resource, queue, id, reason):
        """Admin: frees the unit execution ``queue``/``id`` holds, whatever its attempt,
        recording ``reason`` in a ``resource_force_released`` event: ``{"released": bool,
        "attempt"?}``."""
        return self._route_json("force_release", {"resource": resource},
                                {"queue": queue, "id": id, "reason": reason})

