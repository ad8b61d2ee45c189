"""Typed errors: one class per problem type of the HTTP API (RFC 9457 problem+json).

The class is chosen by the problem ``type`` slug (``/problems/<slug>``), falling back on
the HTTP status when the slug is unknown (a newer server, or a proxy's error page).
"""

import email.utils
import json
import time


class UnstuckError(Exception):
    """Base of every error the client raises.

    ``status`` is the HTTP status (None when no reply came back), ``type`` the problem type
    (``/problems/<slug>``), ``slug`` its last part, ``title`` and ``detail`` the texts, and
    ``extra`` the other members (``field``, ``current_attempt``, ``state``, ``stop_reason``...).
    """

    def __init__(self, status=None, type=None, title=None, detail=None, extra=None,
                 headers=None):
        self.status = status
        self.type = type or "about:blank"
        self.title = title or ""
        self.detail = detail or ""
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})
        super().__init__(str(self))

    @property
    def slug(self):
        """The part after ``/problems/`` ("" when the type is not an unstuck problem)."""
        return _slug(self.type)

    @property
    def transient(self):
        """True when retrying later may succeed (server-side 5xx, no reply)."""
        return self.status is None or self.status >= 500

    @property
    def nothing_written(self):
        """True when the server did not carry the call out (retrying cannot do it twice)."""
        return False

    # The extra members the API documents, None when absent.
    field = property(lambda self: self.extra.get("field"))
    current_attempt = property(lambda self: self.extra.get("current_attempt"))
    state = property(lambda self: self.extra.get("state"))
    stop_reason = property(lambda self: self.extra.get("stop_reason"))
    scope = property(lambda self: self.extra.get("scope"))
    limit = property(lambda self: self.extra.get("limit"))
    worker_id = property(lambda self: self.extra.get("worker_id"))
    queue = property(lambda self: self.extra.get("queue"))
    id = property(lambda self: self.extra.get("id"))
    health = property(lambda self: self.extra.get("health"))

    def __str__(self):
        head = " ".join(str(p) for p in (self.status, self.slug) if p)
        texts = [t for t in (self.title, self.detail) if t]
        if len(texts) == 2 and texts[0] == texts[1]:
            texts.pop()
        text = ": ".join(texts)
        return ": ".join(p for p in (head, text) if p) or type(self).__name__

    def __repr__(self):
        return (f"{type(self).__name__}(status={self.status!r}, type={self.type!r}, "
                f"detail={self.detail!r}, extra={self.extra!r})")


class BadRequest(UnstuckError):
    """400 family: the request was refused as written; fix it (nothing was written)."""


class InvalidArgument(BadRequest):
    """A field is out of range or malformed (``field`` names it)."""


class InvalidName(BadRequest):
    """A queue name, execution id or worker id broke the naming rules."""


class InvalidToken(BadRequest):
    """An attempt token that does not parse."""


class NotJson(BadRequest):
    """A body, payload, result or checkpoint that is not valid JSON."""


class Unauthorized(UnstuckError):
    """401: missing or unknown token."""


class Forbidden(UnstuckError):
    """403: the token's scope does not allow this route (``scope`` names the one needed)."""


class NotFound(UnstuckError):
    """404: no such execution (or queue, worker, route)."""


class UnknownQueue(NotFound):
    """404: no queue of this name was ever used or configured (pause, resume)."""


class UnknownWorker(NotFound):
    """404: the worker is not (or no longer) registered; register again under a fresh id."""


class NoRoute(NotFound):
    """404 ``no-route``: the server has no such route (an older server than this client?)."""


class MethodNotAllowed(UnstuckError):
    """405 ``method-not-allowed``: the route exists with another method."""


class Conflict(UnstuckError):
    """409 family: the call does not fit the execution's current state."""


class StaleAttempt(Conflict):
    """Your attempt is over (``attempt_ended`` is True): a newer attempt exists, or yours
    was ended and a retry waits in the queue. Stop, the work is not yours.

    ``current_attempt`` and ``state`` say where the execution is now. A waiting retry still
    carries the number of the attempt that ended (``state`` is ``queued`` and
    ``current_attempt`` may be your own); ``next_attempt`` is the number its claim will
    give (``current_attempt + 1``), None when a newer attempt already holds it."""

    @property
    def attempt_ended(self):
        return bool(self.extra.get("attempt_ended", True))

    next_attempt = property(lambda self: self.extra.get("next_attempt"))


class AlreadyTerminal(Conflict):
    """The execution already ended; ``state`` and ``stop_reason`` give its first outcome."""


class TokenMismatch(Conflict):
    """The attempt token was never issued for this execution."""


class InvalidTransition(Conflict):
    """The operation is not allowed in the execution's state (cancel-ack without a
    cancellation request)."""


class NotAwaiting(Conflict):
    """A resume of an execution that is not awaiting; ``state`` says what it is."""

    @property
    def state(self):
        return self.extra.get("state")


class ResumeTokenUsed(Conflict):
    """The resume token already resumed its wait (it works once); ``resumed_at`` and
    ``state`` say when, and what the execution is now."""

    resumed_at = property(lambda self: self.extra.get("resumed_at"))


class InvalidResumeToken(NotFound):
    """The resume token was never issued (forged), or a later wait replaced it."""


class WorkerExists(Conflict):
    """The worker id was registered before; use a fresh id per process start."""


class ResourceBusy(Conflict):
    """Every unit of the resource is held (after the acquire's wait): ``holders`` lists
    them (``queue``, ``id``, ``attempt``, ``since``, ``expires_at``)."""

    holders = property(lambda self: self.extra.get("holders") or [])
    resource = property(lambda self: self.extra.get("resource"))
    capacity = property(lambda self: self.extra.get("capacity"))


class ResourceCapacity(Conflict):
    """The acquire named a capacity other than the resource's while units are held."""


class TooLarge(UnstuckError):
    """413 ``too-large``: a payload, result or checkpoint above the server's limit
    (``field`` names it, ``limit`` in bytes)."""


class BodyTooLarge(TooLarge):
    """413 ``body-too-large``: the request body is above the server's ``body_limit``
    (``limit``, in bytes)."""


class IdempotencyConflict(UnstuckError):
    """422: the id exists with a different payload or timings."""


class ServerError(UnstuckError):
    """5xx without a more specific type."""


class InvalidConfig(ServerError):
    """500 ``invalid-config``: the server's configuration is invalid (``field``)."""


class LeaseLost(ServerError):
    """500 ``lease-lost``: the watchdog's lease was lost."""


class Protocol(ServerError):
    """500 ``protocol``: unreadable data in Redis."""


class Listener(ServerError):
    """500 ``listener``: the HTTP listener failed."""


class Internal(ServerError):
    """500 ``internal``: an internal error of the server."""


class Unavailable(ServerError):
    """503 family: Redis unreachable or the server busy or not ready; the request was not
    carried out (nothing was written). ``retry_after`` is the server's hint in seconds
    (None when it gave none)."""

    @property
    def retry_after(self):
        return _retry_after(self.headers, self.extra)

    @property
    def nothing_written(self):
        return True


class RedisUnavailable(Unavailable):
    """503 ``redis-unavailable``: the server could not reach Redis, so the call was never
    sent to it. Nothing was written: retry freely after ``retry_after``."""


class RedisDataLost(Unavailable):
    """503 ``redis-data-lost``: Redis lost the namespace's data (``readyz``; ``health``)."""


class EvictionPolicy(Unavailable):
    """503 ``eviction-policy``: Redis may evict keys, so the server refuses to run on it."""


class RedisAuthentication(Unavailable):
    """503 ``redis-authentication``: Redis refused the server's credentials."""


class RedisPermission(Unavailable):
    """503 ``redis-permission``: the server's Redis user lacks permissions."""


class Saturated(Unavailable):
    """503 ``saturated``: the server has too many requests in flight (or is shutting
    down); retry after ``retry_after``."""


class Timeout(Unavailable):
    """503 ``timeout``: the request took longer than the server's ``request_timeout``; it
    was not carried out."""


class UnknownOutcome(ServerError):
    """504 ``unknown-outcome`` (the server sent the call to Redis and no reply came), or
    no HTTP reply came back: the call may or may not have taken effect. Every write is
    idempotent on its ids or tokens, so repeating the same call is safe and reports the
    first outcome. ``retry_after`` is the server's hint in seconds (None when it gave none
    or no reply came)."""

    @property
    def transient(self):
        return True

    @property
    def retry_after(self):
        return _retry_after(self.headers, self.extra)


class ConnectionFailed(UnstuckError):
    """The server could not be reached; nothing was sent."""

    @property
    def transient(self):
        return True

    @property
    def nothing_written(self):
        return True


# The class of each problem type the server answers with, by slug (the enum of
# ``components.schemas.Problem.properties.type`` in /openapi.json; a test checks it).
PROBLEM_CLASSES = {
    "invalid-name": InvalidName,
    "invalid-argument": InvalidArgument,
    "bad-request": BadRequest,
    "not-json": NotJson,
    "invalid-token": InvalidToken,
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
    "not-found": NotFound,
    "unknown-queue": UnknownQueue,
    "unknown-worker": UnknownWorker,
    "no-route": NoRoute,
    "method-not-allowed": MethodNotAllowed,
    "stale-attempt": StaleAttempt,
    "already-terminal": AlreadyTerminal,
    "token-mismatch": TokenMismatch,
    "invalid-transition": InvalidTransition,
    "not-awaiting": NotAwaiting,
    "invalid-resume-token": InvalidResumeToken,
    "resume-token-used": ResumeTokenUsed,
    "worker-exists": WorkerExists,
    "resource-busy": ResourceBusy,
    "resource-capacity": ResourceCapacity,
    "too-large": TooLarge,
    "body-too-large": BodyTooLarge,
    "idempotency-conflict": IdempotencyConflict,
    "invalid-config": InvalidConfig,
    "lease-lost": LeaseLost,
    "redis-data-lost": RedisDataLost,
    "protocol": Protocol,
    "listener": Listener,
    "internal": Internal,
    "redis-unavailable": RedisUnavailable,
    "eviction-policy": EvictionPolicy,
    "redis-authentication": RedisAuthentication,
    "redis-permission": RedisPermission,
    "saturated": Saturated,
    "timeout": Timeout,
    "unknown-outcome": UnknownOutcome,
}

_BY_STATUS = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 405: MethodNotAllowed,
    409: Conflict, 413: TooLarge, 422: BadRequest, 503: Unavailable, 504: UnknownOutcome,
}


def _slug(type_):
    if not type_ or "/problems/" not in type_:
        return ""
    return type_.rsplit("/problems/", 1)[1].strip("/")


def error_class(slug, status):
    """The class for a problem slug, else for the status."""
    cls = PROBLEM_CLASSES.get(slug)
    if cls is None:
        cls = _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status and status >= 500 else (
            BadRequest if status and 400 <= status < 500 else UnstuckError)
    return cls


def from_response(status, headers, body):
    """The typed error for a non-2xx reply (problem+json, or any other body)."""
    problem = None
    if body:
        try:
            problem = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            problem = None
    if not isinstance(problem, dict):
        text = body.decode("utf-8", "replace").strip()[:500] if body else ""
        return error_class("", status)(status, None, f"HTTP {status}", text, None, headers)
    return from_problem(problem, status, headers)


def from_problem(problem, status=None, headers=None):
    """The typed error of a problem document (``status`` defaults to its own member): how a
    batch reply's refused item (``{"problem": {...}}``) is returned."""
    if status is None:
        status = problem.get("status")
    extra = {k: v for k, v in problem.items()
             if k not in ("type", "title", "status", "detail")}
    type_ = problem.get("type")
    cls = error_class(_slug(type_), status)
    return cls(status, type_, problem.get("title"), problem.get("detail"), extra, headers)


def _retry_after(headers, extra):
    # The HTTP header (seconds or a date), else an extra member in ms like every duration.
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value:
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value).timestamp()
            return max(0.0, when - time.time())
        except (TypeError, ValueError):
            pass
    ms = extra.get("retry_after_ms")
    return ms / 1000.0 if isinstance(ms, (int, float)) else None
