"""Python client of unstuck, the Redis-backed execution ledger and watchdog.

It talks to ``unstuck serve`` over HTTP (standard library only): ``Client`` for every
route, ``Worker`` to run a handler on claimed executions, typed errors in
``unstuck.errors``.
"""

__version__ = "0.1.0"

from .client import Client
from .errors import (
    AlreadyTerminal, BadRequest, Conflict, ConnectionFailed, Forbidden, IdempotencyConflict,
    InvalidArgument, InvalidName, InvalidResumeToken, InvalidToken, InvalidTransition,
    NotAwaiting, NotFound, NotJson, RedisUnavailable, ResourceBusy, ResourceCapacity,
    ResumeTokenUsed, ServerError, StaleAttempt,
    TokenMismatch, TooLarge, Unauthorized, Unavailable, UnknownOutcome, UnknownQueue,
    UnknownWorker, UnstuckError, WorkerExists,
)
from .sse import EventStream
from .worker import (
    AwaitResume, Cancelled, Fatal, Job, Retryable, Snooze, Worker, fresh_worker_id,
)

__all__ = [
    "Client", "EventStream", "Worker", "Job", "Retryable", "Fatal", "Cancelled", "Snooze",
    "fresh_worker_id", "UnstuckError", "BadRequest", "InvalidArgument", "InvalidName",
    "InvalidToken", "NotJson", "Unauthorized", "Forbidden", "NotFound", "UnknownQueue",
    "UnknownWorker",
    "Conflict", "StaleAttempt", "AlreadyTerminal", "TokenMismatch", "InvalidTransition",
    "WorkerExists", "TooLarge", "IdempotencyConflict", "ServerError", "Unavailable",
    "RedisUnavailable", "UnknownOutcome", "ConnectionFailed", "NotAwaiting",
    "ResumeTokenUsed", "InvalidResumeToken", "AwaitResume", "ResourceBusy", "ResourceCapacity",
]
