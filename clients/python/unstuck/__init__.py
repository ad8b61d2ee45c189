"""Python client of unstuck, the Redis-backed execution ledger and watchdog.

It talks to ``unstuck serve`` over HTTP (standard library only): ``Client`` for every
route (``ROUTES``), ``Worker`` to run a handler on claimed executions, typed errors in
``unstuck.errors`` (one class per problem type, ``PROBLEM_CLASSES``).
"""

__version__ = "0.1.0"

from .client import Client
from .errors import (
    PROBLEM_CLASSES, AlreadyTerminal, BadRequest, BodyTooLarge, Conflict, ConnectionFailed,
    EvictionPolicy, Forbidden, IdempotencyConflict, Internal, InvalidArgument, InvalidConfig,
    InvalidName, InvalidResumeToken, InvalidToken, InvalidTransition, LeaseLost, Listener,
    MethodNotAllowed, NoRoute, NotAwaiting, NotFound, NotJson, Protocol, RedisAuthentication,
    RedisDataLost, RedisPermission, RedisUnavailable, ResourceBusy, ResourceCapacity, ResumeTokenUsed, Saturated, ServerError,
    StaleAttempt, Timeout, TokenMismatch, TooLarge, Unauthorized, Unavailable, UnknownOutcome,
    UnknownQueue, UnknownWorker, UnstuckError, WorkerExists,
)
from .routes import ROUTES
from .sse import EventStream
from .worker import (
    AwaitResume, Cancelled, Fatal, Job, Retryable, Snooze, Worker, fresh_worker_id,
)

__all__ = [
    "Client", "ROUTES", "EventStream", "Worker", "Job", "Retryable", "Fatal", "Cancelled",
    "Snooze", "AwaitResume", "fresh_worker_id", "PROBLEM_CLASSES",
    "UnstuckError", "BadRequest", "InvalidArgument", "InvalidName", "InvalidToken", "NotJson",
    "Unauthorized", "Forbidden", "NotFound", "UnknownQueue", "UnknownWorker", "NoRoute",
    "InvalidResumeToken", "MethodNotAllowed",
    "Conflict", "StaleAttempt", "AlreadyTerminal", "TokenMismatch", "InvalidTransition",
    "NotAwaiting", "ResumeTokenUsed", "WorkerExists", "TooLarge", "BodyTooLarge",
    "IdempotencyConflict", "ServerError", "InvalidConfig", "LeaseLost", "Protocol", "Listener",
    "Internal", "Unavailable", "RedisUnavailable", "RedisDataLost", "EvictionPolicy",
    "RedisAuthentication", "RedisPermission", "Saturated", "Timeout", "UnknownOutcome",
    "ConnectionFailed", "ResourceBusy", "ResourceCapacity",
]
