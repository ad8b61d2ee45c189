"""The calls of ``Client`` for operators and workers' processes: the worker registry, the
watchdog, the session, and the event streams (``Client`` inherits them)."""

from .routes import duration as _duration

__all__ = ["OpsCalls"]


class OpsCalls:
    """Mixed into ``Client``: uses its ``_route`` and ``_route_json``."""

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
        return self._route_json("register_worker", body=body)

    def worker_heartbeat(self, worker_id, running=()):
        """Tells the registry the worker is alive and what it runs (``(queue, id)`` pairs
        or ``{"queue", "id"}`` dicts). Raises UnknownWorker: register again, fresh id."""
        items = [r if isinstance(r, dict) else {"queue": r[0], "id": r[1]} for r in running]
        return self._route_json("worker_heartbeat", {"worker": worker_id},
                          {"running": items})

    def reset_worker(self, worker_id, reason=None):
        """Resets a worker's remediation (tier, failed kills, open circuit); returns
        ``{"previous_tier", "circuit_was_open"}``."""
        body = {} if reason is None else {"reason": reason}
        return self._route_json("reset_worker", {"worker": worker_id}, body)

    def request_worker(self, worker_id, request, reason=None):
        """Asks a worker, in its next heartbeat reply, to ``"restart"`` or ``"drain"``."""
        body = {"request": request}
        if reason is not None:
            body["reason"] = reason
        self._route("request_worker", {"worker": worker_id}, body)

    def worker_events(self, after=None, limit=100, newest=False):
        """Worker tier changes, action and hook outcomes, circuits opened and reset, oldest
        first: after the stream id ``after`` (the oldest kept when None), or with
        ``newest`` the newest ``limit`` (``after`` is then ignored)."""
        query = {"limit": limit}
        if after:
            query["after"] = after
        if newest:
            query["newest"] = "true"
        return self._route_json("worker_events", query=query)["events"]

    def deregister_worker(self, worker_id):
        self._route("deregister_worker", {"worker": worker_id})

    def workers(self):
        return self._route_json("workers")["workers"]

    def watchdog_state(self):
        return self._route_json("watchdog_state")

    def watchdog_activity(self, minutes=None):
        """The watchdog's actions per minute by reason and its detection-lag histogram
        over the last ``minutes`` (1-1440, default 30)."""
        return self._route_json("watchdog_activity", query={"minutes": minutes})

    def session(self):
        """What this client's token may do: ``{"scope", "open", "can_read", "can_steer",
        "can_admin"}``."""
        return self._route_json("session")

    # ----- event stream -----

    def events(self, queue=None, last_event_id=None, **options):
        """Follows the event stream (every queue, or one): an iterator of Event objects
        that reconnects with Last-Event-ID when the connection drops. See EventStream."""
        from .sse import EventStream
        return EventStream(self, queue=queue, last_event_id=last_event_id, route="events",
                           **options)

    def worker_events_live(self, last_event_id=None, **options):
        """Follows the worker events (as ``worker_events`` returns them) from now on, or
        after the stream id ``last_event_id``: an iterator that reconnects with
        Last-Event-ID when the connection drops. See EventStream."""
        from .sse import EventStream
        return EventStream(self, last_event_id=last_event_id, route="worker_events_live",
                           **options)
