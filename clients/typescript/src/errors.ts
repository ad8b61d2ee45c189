// Typed errors: one class per problem type of the HTTP API (RFC 9457 problem+json).
// The class is chosen by the problem `type` slug (`/problems/<slug>`), falling back on the
// HTTP status when the slug is unknown (a newer server, or a proxy's error page).

import type { Holder } from "./types.js";

/** The members of a problem document besides type, title, status and detail. */
export type ProblemExtra = Record<string, unknown>;

/** Base of every error the client throws (an aborted call throws its signal's reason). */
export class UnstuckError extends Error {
  /** The HTTP status; undefined when no reply came back. */
  readonly status: number | undefined;
  /** The problem type, `/problems/<slug>` ("about:blank" when the reply was no problem). */
  readonly type: string;
  readonly title: string;
  readonly detail: string;
  /** The other members of the problem, as sent (snake_case). */
  readonly extra: ProblemExtra;
  /** The reply's headers (lower-case names). */
  readonly headers: Record<string, string>;

  constructor(init: {
    status?: number;
    type?: string;
    title?: string;
    detail?: string;
    extra?: ProblemExtra;
    headers?: Record<string, string>;
    cause?: unknown;
  } = {}) {
    super(describe(init), init.cause === undefined ? undefined : { cause: init.cause });
    this.name = new.target.name;
    this.status = init.status;
    this.type = init.type || "about:blank";
    this.title = init.title ?? "";
    this.detail = init.detail ?? "";
    this.extra = { ...(init.extra ?? {}) };
    this.headers = { ...(init.headers ?? {}) };
  }

  /** The part after `/problems/` ("" when the type is not an unstuck problem). */
  get slug(): string {
    return slugOf(this.type);
  }

  /** True when retrying later may succeed (a 5xx, or no reply). */
  get transient(): boolean {
    return this.status === undefined || this.status >= 500;
  }

  /** True when the server did not carry the call out (retrying cannot do it twice). */
  get nothingWritten(): boolean {
    return false;
  }

  // The extra members the API documents, undefined when absent.
  get field(): string | undefined { return this.extra.field as string | undefined; }
  get currentAttempt(): number | undefined { return this.extra.current_attempt as number | undefined; }
  get state(): string | undefined { return this.extra.state as string | undefined; }
  get stopReason(): string | undefined { return this.extra.stop_reason as string | undefined; }
  get scope(): string | undefined { return this.extra.scope as string | undefined; }
  get limit(): number | undefined { return this.extra.limit as number | undefined; }
  get workerId(): string | undefined { return this.extra.worker_id as string | undefined; }
  get queue(): string | undefined { return this.extra.queue as string | undefined; }
  get id(): string | undefined { return this.extra.id as string | undefined; }
  get health(): unknown { return this.extra.health; }

  /** The server's Retry-After hint in milliseconds (header in seconds or an HTTP date, else
   * a `retry_after_ms` member); undefined when it gave none. */
  get retryAfterMs(): number | undefined {
    return retryAfterMs(this.headers, this.extra);
  }
}

function describe(init: { status?: number; type?: string; title?: string; detail?: string }): string {
  const head = [init.status, slugOf(init.type ?? "")].filter(Boolean).join(" ");
  const texts = [init.title, init.detail].filter((t): t is string => !!t);
  if (texts.length === 2 && texts[0] === texts[1]) texts.pop();
  return [head, texts.join(": ")].filter(Boolean).join(": ") || "unstuck error";
}

/** 400 family: the request was refused as written; fix it (nothing was written). */
export class BadRequest extends UnstuckError {}
/** A field is out of range or malformed (`field` names it). */
export class InvalidArgument extends BadRequest {}
/** A queue name, execution id or worker id broke the naming rules. */
export class InvalidName extends BadRequest {}
/** An attempt token that does not parse. */
export class InvalidToken extends BadRequest {}
/** A body, payload, result or checkpoint that is not valid JSON. */
export class NotJson extends BadRequest {}
/** 401: missing or unknown token. */
export class Unauthorized extends UnstuckError {}
/** 403: the token's scope does not allow this route (`scope` names the one needed). */
export class Forbidden extends UnstuckError {}
/** 404: no such execution (or queue, worker, route). */
export class NotFound extends UnstuckError {}
/** 404: no queue of this name was ever used or configured (pause, resume). */
export class UnknownQueue extends NotFound {}
/** 404: the worker is not (or no longer) registered; register again under a fresh id. */
export class UnknownWorker extends NotFound {}
/** 404: the server has no such route (an older server than this client?). */
export class NoRoute extends NotFound {}
/** 404: the resume token was never issued (forged), or a later wait replaced it. */
export class InvalidResumeToken extends NotFound {}
/** 405: the route exists with another method. */
export class MethodNotAllowed extends UnstuckError {}
/** 409 family: the call does not fit the execution's current state. */
export class Conflict extends UnstuckError {}
/** Your attempt is over: a newer attempt exists, or yours ended and a retry waits. Stop, the
 * work is not yours. `currentAttempt` and `state` say where the execution is now;
 * `nextAttempt` is the number the waiting retry's claim gives (null when a newer attempt
 * already holds it). */
export class StaleAttempt extends Conflict {
  get attemptEnded(): boolean { return this.extra.attempt_ended !== false; }
  get nextAttempt(): number | null | undefined { return this.extra.next_attempt as number | null | undefined; }
}
/** The execution already ended; `state` and `stopReason` give its first outcome. */
export class AlreadyTerminal extends Conflict {}
/** The attempt token was never issued for this execution. */
export class TokenMismatch extends Conflict {}
/** The operation is not allowed in the execution's state. */
export class InvalidTransition extends Conflict {}
/** A resume of an execution that is not awaiting; `state` says what it is. */
export class NotAwaiting extends Conflict {}
/** The resume token already resumed its wait; `resumedAt` and `state` say when and what. */
export class ResumeTokenUsed extends Conflict {
  get resumedAt(): string | undefined { return this.extra.resumed_at as string | undefined; }
}
/** The worker id was registered before; use a fresh id per process start. */
export class WorkerExists extends Conflict {}
/** Every unit of the resource is held (after the acquire's wait): `holders` lists them
 * (`queue`, `id`, `attempt`, `since`, `expires_at`). */
export class ResourceBusy extends Conflict {
  get holders(): Holder[] { return (this.extra.holders as Holder[] | undefined) ?? []; }
  get resource(): string | undefined { return this.extra.resource as string | undefined; }
  get capacity(): number | undefined { return this.extra.capacity as number | undefined; }
}
/** The acquire named a capacity other than the resource's while units are held
 * (`capacity` is the resource's, `held` its units taken). */
export class ResourceCapacity extends Conflict {
  get resource(): string | undefined { return this.extra.resource as string | undefined; }
  get capacity(): number | undefined { return this.extra.capacity as number | undefined; }
  get held(): number | undefined { return this.extra.held as number | undefined; }
}
/** 413: a payload, result or checkpoint above the server's limit (`limit`, in bytes). */
export class TooLarge extends UnstuckError {}
/** 413: the request body is above the server's `body_limit`. */
export class BodyTooLarge extends TooLarge {}
/** 422: the id exists with a different payload or timings. */
export class IdempotencyConflict extends UnstuckError {}
/** 5xx without a more specific type. */
export class ServerError extends UnstuckError {}
/** 500: the server's configuration is invalid. */
export class InvalidConfig extends ServerError {}
/** 500: the watchdog's lease was lost. */
export class LeaseLost extends ServerError {}
/** 500: unreadable data in Redis. */
export class Protocol extends ServerError {}
/** 500: the HTTP listener failed. */
export class Listener extends ServerError {}
/** 500: an internal error. */
export class Internal extends ServerError {}
/** 503: the call was not carried out (Redis unreachable, the server busy or not ready).
 * Nothing was written; retry after `retryAfterMs`. */
export class Unavailable extends ServerError {
  override get nothingWritten(): boolean { return true; }
}
/** 503: the server could not reach Redis; the call was never sent to it. */
export class RedisUnavailable extends Unavailable {}
/** 503: Redis lost the namespace's data (readyz). */
export class RedisDataLost extends Unavailable {}
/** 503: Redis may evict keys. */
export class EvictionPolicy extends Unavailable {}
/** 503: Redis refused the server's credentials. */
export class RedisAuthentication extends Unavailable {}
/** 503: the server's Redis user lacks permissions. */
export class RedisPermission extends Unavailable {}
/** 503: the server has too many requests in flight. */
export class Saturated extends Unavailable {}
/** 503: the request took longer than the server's `request_timeout`. */
export class Timeout extends Unavailable {}
/** 504 (the server sent the call to Redis and no reply came), or no HTTP reply came back:
 * the call may or may not have taken effect. Writes are idempotent on their ids or tokens,
 * so repeating the same call is safe and reports the first outcome. */
export class UnknownOutcome extends ServerError {
  override get transient(): boolean { return true; }
}
/** The server could not be reached; nothing was sent. */
export class ConnectionFailed extends UnstuckError {
  override get transient(): boolean { return true; }
  override get nothingWritten(): boolean { return true; }
}

type ErrorClass = new (init: ConstructorParameters<typeof UnstuckError>[0]) => UnstuckError;

/** The class of each problem type the server answers with, by slug. */
export const PROBLEM_CLASSES: Readonly<Record<string, ErrorClass>> = Object.freeze({
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
});

const BY_STATUS: Record<number, ErrorClass> = {
  400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 405: MethodNotAllowed,
  409: Conflict, 413: TooLarge, 422: IdempotencyConflict, 503: Unavailable, 504: UnknownOutcome,
};

export function slugOf(type: string): string {
  const at = type.lastIndexOf("/problems/");
  return at < 0 ? "" : type.slice(at + "/problems/".length).replace(/\/+$/, "");
}

/** The class for a problem slug, else for the status. */
export function errorClass(slug: string, status: number | undefined): ErrorClass {
  const bySlug = Object.prototype.hasOwnProperty.call(PROBLEM_CLASSES, slug) ? PROBLEM_CLASSES[slug] : undefined;
  if (bySlug) return bySlug;
  if (status !== undefined && BY_STATUS[status]) return BY_STATUS[status];
  if (status !== undefined && status >= 500) return ServerError;
  if (status !== undefined && status >= 400) return BadRequest;
  return UnstuckError;
}

/** The typed error for a non-2xx reply (problem+json, or any other body). */
export function fromResponse(status: number, headers: Record<string, string>, body: string): UnstuckError {
  let problem: unknown;
  try {
    problem = body ? JSON.parse(body) : undefined;
  } catch {
    problem = undefined;
  }
  if (problem === null || typeof problem !== "object" || Array.isArray(problem)) {
    const cls = errorClass("", status);
    return new cls({ status, title: `HTTP ${status}`, detail: body.trim().slice(0, 500), headers });
  }
  return fromProblem(problem as Record<string, unknown>, status, headers);
}

/** The typed error of a problem document (`status` defaults to its own member): how a
 * batch reply's refused item (`{"problem": {...}}`) is returned. */
export function fromProblem(problem: Record<string, unknown>, status?: number, headers: Record<string, string> = {}): UnstuckError {
  const { type, title, status: own, detail, ...extra } = problem;
  const code = status ?? (typeof own === "number" ? own : undefined);
  const typeText = typeof type === "string" ? type : undefined;
  const cls = errorClass(slugOf(typeText ?? ""), code);
  return new cls({
    status: code,
    type: typeText,
    title: typeof title === "string" ? title : undefined,
    detail: typeof detail === "string" ? detail : undefined,
    extra,
    headers,
  });
}

export function retryAfterMs(headers: Record<string, string>, extra: ProblemExtra = {}): number | undefined {
  const value = headers["retry-after"]?.trim();
  if (value) {
    if (/^\d+$/.test(value)) return Number(value) * 1000;
    const when = Date.parse(value);
    if (!Number.isNaN(when)) return Math.max(0, when - Date.now());
  }
  const ms = extra.retry_after_ms;
  return typeof ms === "number" ? ms : undefined;
}
