"""Every route of ``unstuck serve`` the client calls, by the ``Client`` method that calls it.

The client builds each request from this table (``Client._call`` takes a route name, never
a path), and a test compares it with the server's ``GET /openapi.json``, so a route added
to the server without the client fails that test.
"""

import datetime
import re
import urllib.parse

__all__ = ["ROUTES", "route_path"]

ROUTES = {
    "healthz": ("GET", "/healthz"),
    "readyz": ("GET", "/readyz"),
    "metrics": ("GET", "/metrics"),
    "openapi": ("GET", "/openapi.json"),
    "problem": ("GET", "/problems/{slug}"),
    "queues": ("GET", "/v1/queues"),
    "get_queue": ("GET", "/v1/queues/{queue}"),
    "set_queue": ("PUT", "/v1/queues/{queue}"),
    "pause_queue": ("POST", "/v1/queues/{queue}/pause"),
    "resume_queue": ("POST", "/v1/queues/{queue}/resume"),
    "queue_usage": ("GET", "/v1/queues/{queue}/usage"),
    "enqueue": ("POST", "/v1/queues/{queue}/executions"),
    "enqueue_batch": ("POST", "/v1/queues/{queue}/executions/batch"),
    "list": ("GET", "/v1/queues/{queue}/executions"),
    "get": ("GET", "/v1/queues/{queue}/executions/{id}"),
    "execution_events": ("GET", "/v1/queues/{queue}/executions/{id}/events"),
    "cancel": ("POST", "/v1/queues/{queue}/executions/{id}/cancel"),
    "retry": ("POST", "/v1/queues/{queue}/executions/{id}/retry"),
    "resume": ("POST", "/v1/queues/{queue}/executions/{id}/resume"),
    "pin": ("PUT", "/v1/queues/{queue}/executions/{id}/pin"),
    "unpin": ("DELETE", "/v1/queues/{queue}/executions/{id}/pin"),
    "resume_by_token": ("POST", "/v1/resume/{resume_token}"),
    "find": ("GET", "/v1/executions"),
    "claim": ("POST", "/v1/queues/{queue}/claims"),
    "heartbeat": ("POST", "/v1/attempts/heartbeat"),
    "heartbeats": ("POST", "/v1/attempts/heartbeats"),
    "complete": ("POST", "/v1/attempts/complete"),
    "fail": ("POST", "/v1/attempts/fail"),
    "snooze": ("POST", "/v1/attempts/snooze"),
    "await_resume": ("POST", "/v1/attempts/await"),
    "cancel_ack": ("POST", "/v1/attempts/cancel-ack"),
    "acquire": ("POST", "/v1/attempts/acquire"),
    "release": ("POST", "/v1/attempts/release"),
    "resources": ("GET", "/v1/resources"),
    "resource": ("GET", "/v1/resources/{resource}"),
    "force_release": ("POST", "/v1/resources/{resource}/release"),
    "register_worker": ("POST", "/v1/workers"),
    "workers": ("GET", "/v1/workers"),
    "worker_heartbeat": ("POST", "/v1/workers/{worker}/heartbeat"),
    "deregister_worker": ("DELETE", "/v1/workers/{worker}"),
    "reset_worker": ("POST", "/v1/workers/{worker}/reset"),
    "request_worker": ("POST", "/v1/workers/{worker}/request"),
    "worker_events": ("GET", "/v1/workers/events"),
    "worker_events_live": ("GET", "/v1/workers/events/live"),
    "events": ("GET", "/v1/events"),
    "recent_events": ("GET", "/v1/events/recent"),
    "watchdog_state": ("GET", "/v1/watchdog"),
    "watchdog_activity": ("GET", "/v1/watchdog/activity"),
    "session": ("GET", "/v1/session"),
}

_PARAM = re.compile(r"\{(\w+)\}")


def segment(name):
    """A path segment: any name quoted, and dot-only names too so that no one folds them."""
    quoted = urllib.parse.quote(str(name), safe=":")
    return quoted.replace(".", "%2E") if set(quoted) <= {"."} else quoted


def route_path(name, **params):
    """The route's method and path with its ``{params}`` filled in."""
    method, template = ROUTES[name]

    def fill(m):
        value = params.get(m.group(1))
        if value is None:
            raise ValueError(f"{name}: {m.group(1)} is required")
        return segment(value)

    return method, _PARAM.sub(fill, template)


def duration(value):
    """A duration for the wire: int ms or a string such as "30s" pass through; a timedelta
    becomes int ms."""
    if isinstance(value, datetime.timedelta):
        return int(round(value.total_seconds() * 1000))
    return value


def timings(values):
    return None if values is None else {k: duration(v) for k, v in values.items()}
