// The HTTP client: one method per route of `unstuck serve` (docs/http-api.md). Replies are
// returned as the JSON the server sent; errors are thrown as the classes of ./errors.

import { UnstuckError, fromProblem } from "./errors.js";
import { ROUTES, RouteName, routePath } from "./routes.js";
import { EventStream, EventStreamOptions } from "./sse.js";
import { CallOptions, Reply, Request, RetryOptions, Transport } from "./transport.js";
import type {
  Acquired, ForceReleased, QueueUsage, Released, Resource, UsageDelta,
  AwaitReply, CancelReply, Claim, Duration, Enqueued, EnqueueItem, Event, Execution, ExecutionEvents,
  FailReply, HeartbeatReply, Json, Page, PauseChange, Pinned, Queue, QueueSettings, Recorded,
  Registered, Resumed, Running, Session, SnoozeReply, State, WatchdogActivity, WatchdogState,
  WorkerBeatReply, WorkerEvent, WorkerInfo, WorkerRequest, WorkerReset,
} from "./types.js";

export interface ClientOptions {
  /** The bearer secret (without its `scope:` prefix); none for a server without tokens. */
  token?: string;
  /** Bounds connecting and waiting for each reply (30 s); a long-poll claim adds its wait. */
  timeoutMs?: number;
  /** Retries of transient failures for every call (off by default; see RetryOptions). */
  retry?: RetryOptions | boolean;
}

type Params = Record<string, string>;

export class Client {
  readonly transport: Transport;

  constructor(baseUrl: string, options: ClientOptions = {}) {
    this.transport = new Transport(baseUrl, options);
  }

  get baseUrl(): string { return this.transport.baseUrl; }
  get token(): string | undefined { return this.transport.token; }
  set token(value: string | undefined) { this.transport.token = value; }

  /** A client with the same settings. */
  copy(): Client {
    return new Client(this.baseUrl, { token: this.token, timeoutMs: this.transport.timeoutMs, retry: this.transport.retry });
  }

  /** Sends the route's request; a non-2xx reply throws its typed error. */
  protected async call(route: RouteName, params: Params, req: Omit<Request, "method" | "path">, options?: CallOptions): Promise<Reply> {
    const [method, ] = ROUTES[route];
    return this.transport.send({ method, path: routePath(route, params), ...req }, options);
  }

  protected async json<T>(route: RouteName, params: Params = {}, req: Omit<Request, "method" | "path"> = {}, options?: CallOptions): Promise<T> {
    const reply = await this.call(route, params, req, options);
    return parse<T>(reply);
  }

  // ----- health and documents -----

  healthz(options?: CallOptions): Promise<{ status: string }> { return this.json("healthz", {}, {}, options); }
  /** `{status: "ready"}`; throws Unavailable (RedisUnavailable, RedisDataLost...) when not ready. */
  readyz(options?: CallOptions): Promise<{ status: string }> { return this.json("readyz", {}, {}, options); }
  /** The Prometheus text. */
  async metrics(options?: CallOptions): Promise<string> { return (await this.call("metrics", {}, {}, options)).text; }
  openapi(options?: CallOptions): Promise<OpenApiDocument> { return this.json("openapi", {}, {}, options); }
  /** What a problem type means (HTML). */
  async problem(slug: string, options?: CallOptions): Promise<string> {
    return (await this.call("problem", { slug }, {}, options)).text;
  }

  // ----- queues -----

  async queues(options?: CallOptions): Promise<Queue[]> {
    return (await this.json<{ queues: Queue[] }>("queues", {}, {}, options)).queues;
  }
  getQueue(queue: string, options?: CallOptions): Promise<Queue> { return this.json("getQueue", { queue }, {}, options); }
  /** Replaces the queue's settings (what is left out goes back to the defaults; a pause is kept). */
  setQueue(queue: string, settings: QueueSettings = {}, options?: CallOptions): Promise<Queue> {
    const body = compact({
      capacity: settings.capacity, timings: settings.timings, retention: settings.retention,
      max_wait: settings.maxWait, on_wait_expiry: settings.onWaitExpiry,
      budget: settings.budget, window_budget: settings.windowBudget,
    });
    return this.json("setQueue", { queue }, { body }, options);
  }
  /** Pauses the queue (admin): claims take nothing until resumeQueue. Throws UnknownQueue. */
  pauseQueue(queue: string, reason: string, options?: CallOptions): Promise<PauseChange> {
    return this.json("pauseQueue", { queue }, { body: { reason } }, options);
  }
  resumeQueue(queue: string, reason?: string, options?: CallOptions): Promise<PauseChange> {
    return this.json("resumeQueue", { queue }, { body: compact({ reason }) }, options);
  }
  /** The queue's usage: totals since its first delta, by model, and over its rolling window
   * (with its window budget, if set); costs in micro-units of `currency`. */
  queueUsage(queue: string, options?: CallOptions): Promise<QueueUsage> {
    return this.json("queueUsage", { queue }, {}, options);
  }

  // ----- executions -----

  /** Enqueues one execution; `created` is false when the same id and request existed.
   * Throws IdempotencyConflict when the id exists with a different request. */
  async enqueue(queue: string, payload: Json = null, options: EnqueueOptions = {}): Promise<Enqueued> {
    const headers: Record<string, string> = {};
    if (options.idempotencyKey) headers["idempotency-key"] = options.idempotencyKey;
    if (options.traceparent) headers.traceparent = options.traceparent;
    const reply = await this.call("enqueue", { queue }, {
      body: enqueueBody({ payload, id: options.id, timings: options.timings, delay: options.delay, budget: options.budget }),
      headers,
      // Without an id a repeated enqueue after an unknown outcome could create a second one.
      notIdempotent: !options.id && !options.idempotencyKey,
    }, options);
    const enqueued = parse<Enqueued>(reply);
    if (enqueued.created === undefined) enqueued.created = reply.status === 201;
    return enqueued;
  }
  /** Enqueues 1-1000 executions at once, all or nothing; `traceparent` is stored on every item. */
  async enqueueBatch(queue: string, items: EnqueueItem[], options: CallOptions & { traceparent?: string } = {}): Promise<Enqueued[]> {
    const body = { items: items.map(enqueueBody) };
    const withoutId = items.some((item) => !item.id);
    const headers = options.traceparent ? { traceparent: options.traceparent } : undefined;
    return (await this.json<{ items: Enqueued[] }>("enqueueBatch", { queue }, { body, headers, notIdempotent: withoutId }, options)).items;
  }
  /** The execution (state, attempt, timings, checkpoint, stop, history...). */
  get(queue: string, id: string, options?: CallOptions): Promise<Execution> {
    return this.json("get", { queue, id }, {}, options);
  }
  /** One page of the queue's executions in `state`. */
  async list(queue: string, state: State, page: PageOptions = {}, options?: CallOptions): Promise<Page<Execution>> {
    const reply = await this.json<Page<Execution>>("list", { queue }, { query: { state, cursor: page.cursor, limit: page.limit } }, options);
    reply.next_cursor ??= null;
    return reply;
  }
  /** Every execution of `queue` in `state`, page after page. */
  async *listAll(queue: string, state: State, limit?: number, options?: CallOptions): AsyncGenerator<Execution> {
    let cursor: string | undefined;
    do {
      const page = await this.list(queue, state, { cursor, limit }, options);
      yield* page.items;
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
  }
  /** Executions across queues, filtered; one page. */
  async find(filter: FindOptions = {}, options?: CallOptions): Promise<Page<Execution>> {
    const query = { queue: filter.queue, state: filter.state, stop_reason: filter.stopReason, worker: filter.worker, cursor: filter.cursor, limit: filter.limit };
    const reply = await this.json<Page<Execution>>("find", {}, { query }, options);
    reply.next_cursor ??= null;
    return reply;
  }
  /** `{outcome: "cancelled"}` (it was queued) or `{outcome: "requested", ...}` (its worker is
   * asked to stop); throws AlreadyTerminal. */
  cancel(queue: string, id: string, reason?: string, options?: CallOptions): Promise<CancelReply> {
    return this.json("cancel", { queue, id }, { body: compact({ reason }) }, options);
  }
  /** Runs a finished execution again as a new one linked by `retry_of`, from its last
   * checkpoint. Throws InvalidTransition when it has not finished or it succeeded. */
  retry(queue: string, id: string, opts: { newId?: string; reason?: string } = {}, options?: CallOptions): Promise<Enqueued> {
    // Without a new id the server names the next `<id>.retry<n>`: a repeat could make two.
    return this.json("retry", { queue, id }, { body: compact({ new_id: opts.newId, reason: opts.reason }), notIdempotent: !opts.newId }, options);
  }
  /** Resumes an awaiting execution; its next claim gets `input` as `resume_input`. Throws
   * NotAwaiting. */
  resume(queue: string, id: string, input?: Json, options?: CallOptions): Promise<Resumed> {
    return this.json("resume", { queue, id }, { body: compact({ input }) }, options);
  }
  /** Resumes with the one-time token awaitResume returned (no bearer token needed). */
  resumeByToken(resumeToken: string, input?: Json, options?: CallOptions): Promise<Resumed> {
    return this.json("resumeByToken", { resume_token: resumeToken }, { body: compact({ input }) }, options);
  }
  /** Retention never removes a pinned execution. */
  pin(queue: string, id: string, options?: CallOptions): Promise<Pinned> { return this.json("pin", { queue, id }, {}, options); }
  unpin(queue: string, id: string, options?: CallOptions): Promise<Pinned> { return this.json("unpin", { queue, id }, {}, options); }
  /** The execution's events (oldest first) and the timeline of its whole history. */
  executionEvents(queue: string, id: string, options?: CallOptions): Promise<ExecutionEvents> {
    return this.json("executionEvents", { queue, id }, {}, options);
  }
  /** The newest events (every queue, or one), oldest first. */
  async recentEvents(opts: { queue?: string; limit?: number } = {}, options?: CallOptions): Promise<Event[]> {
    return (await this.json<{ events: Event[] }>("recentEvents", {}, { query: opts }, options)).events;
  }

  // ----- workers' calls -----

  /** Claims up to `max` executions; empty when nothing became claimable within `waitMs`
   * (0-30000, a long poll: the call's timeout is extended by it). */
  async claim(queue: string, workerId: string, opts: { max?: number; waitMs?: number } = {}, options: CallOptions = {}): Promise<Claim[]> {
    const body = compact({ worker_id: workerId, max: opts.max, wait_ms: opts.waitMs || undefined });
    const timeoutMs = (options.timeoutMs ?? this.transport.timeoutMs) + (opts.waitMs ?? 0);
    const reply = await this.call("claim", { queue }, { body }, { ...options, timeoutMs });
    if (reply.status === 204 || !reply.text) return [];
    return parse<{ claims: Claim[] }>(reply).claims ?? [];
  }
  /** `{cancel_requested}`. Throws StaleAttempt / AlreadyTerminal when the attempt is no
   * longer current (stop: the work is not yours). `fingerprint` (1 to 128 bytes; else
   * InvalidArgument, nothing written) is loop detection's: the same one `max_repeats`
   * times in a row and the watchdog judges the execution stuck `looping`. */
  heartbeat(token: string, beat: HeartbeatBody = {}, options?: CallOptions): Promise<HeartbeatReply> {
    return this.json("heartbeat", {}, { body: beatBody(token, beat) }, options);
  }
  /** Beats many attempts (of any queues) in one request: up to 1000 beats, each a token
   * or `{token, ...HeartbeatBody}`. Resolves, in the same order, with each beat's reply as
   * `heartbeat` would give it, or the error `heartbeat` would have thrown, as an
   * UnstuckError value (returned, not thrown: a refused beat, say StaleAttempt or
   * TooLarge, fails only itself). Throws for the request as a whole: InvalidArgument for
   * none or more than 1000 beats (nothing written), Unavailable and the like. */
  async heartbeats(beats: Array<string | (HeartbeatBody & { token: string })>, options?: CallOptions): Promise<Array<HeartbeatReply | UnstuckError>> {
    const heartbeats = beats.map((b) => (typeof b === "string" ? { token: b } : beatBody(b.token, b)));
    const reply = await this.json<{ results: Array<HeartbeatReply | { problem: Record<string, unknown> }> }>("heartbeats", {}, { body: { heartbeats } }, options);
    return (reply?.results ?? []).map((r) => ("problem" in r ? fromProblem(r.problem) : r));
  }
  /** `usage`: the attempt's last delta, as for heartbeat. */
  complete(token: string, result?: Json, options: CallOptions & { usage?: UsageDelta } = {}): Promise<Recorded> {
    const body: Record<string, unknown> = { token };
    if (result !== undefined) body.result = result;
    if (options.usage !== undefined) body.usage = options.usage;
    return this.json("complete", {}, { body }, options);
  }
  /** `retryAfterMs` (1 ms to 7 days; retryable failures only) is the earliest the retry may
   * start: it wins over the backoff when later. */
  fail(token: string, message: string, opts: { retryable?: boolean; retryAfterMs?: Duration; usage?: UsageDelta } = {}, options?: CallOptions): Promise<FailReply> {
    const body = compact({ token, message, retryable: opts.retryable ?? true, retry_after_ms: opts.retryAfterMs, usage: opts.usage });
    return this.json("fail", {}, { body }, options);
  }
  /** Ends the attempt; the execution comes back after `afterMs` or at `until` (exactly one)
   * as a continuation. */
  snooze(token: string, opts: { afterMs?: Duration; until?: Date | string; reason: string }, options?: CallOptions): Promise<SnoozeReply> {
    const until = opts.until instanceof Date ? opts.until.toISOString() : opts.until;
    return this.json("snooze", {}, { body: compact({ token, after_ms: opts.afterMs, until, reason: opts.reason }) }, options);
  }
  /** Ends the attempt to wait on a person or an outside event until resumed, at most
   * `waitDeadlineMs`. */
  awaitResume(token: string, reason: string, waitDeadlineMs: Duration, opts: { checkpoint?: Json } = {}, options?: CallOptions): Promise<AwaitReply> {
    const body = compact({ token, reason, wait_deadline_ms: waitDeadlineMs, checkpoint: opts.checkpoint });
    return this.json("awaitResume", {}, { body }, options);
  }
  /** Acknowledges a cancellation; InvalidTransition when none was requested. */
  cancelAck(token: string, options?: CallOptions): Promise<Recorded> {
    return this.json("cancelAck", {}, { body: { token } }, options);
  }

  // ----- resource leases -----

  /** Takes one unit of `resource` (a tool, a worktree, an API key) for the attempt, held
   * until `release`, its `ttlMs`, or the attempt's end. `capacity` sets the resource's
   * units when nobody holds it (1 by default); `waitMs` (0-30000) waits for a unit (the
   * call's timeout is extended by it). Throws ResourceBusy (with `holders`) when every
   * unit is still held, ResourceCapacity for another capacity while held. */
  acquire(token: string, resource: string, opts: AcquireOptions = {}, options: CallOptions = {}): Promise<Acquired> {
    const body = compact({ token, resource, capacity: opts.capacity, ttl_ms: opts.ttlMs, wait_ms: opts.waitMs || undefined });
    const timeoutMs = (options.timeoutMs ?? this.transport.timeoutMs) + (opts.waitMs ?? 0);
    return this.json("acquire", {}, { body }, { ...options, timeoutMs });
  }
  /** Gives back the attempt's unit: `{released}` (false when it held none: idempotent).
   * Fenced: a stale attempt's release never frees a later attempt's unit. */
  release(token: string, resource: string, options?: CallOptions): Promise<Released> {
    return this.json("release", {}, { body: { token, resource } }, options);
  }
  /** Every resource held now, with its holders. */
  async resources(options?: CallOptions): Promise<Resource[]> {
    return (await this.json<{ resources: Resource[] }>("resources", {}, {}, options)).resources;
  }
  /** One resource (`held` 0 and no holders when nobody holds it). */
  resource(resource: string, options?: CallOptions): Promise<Resource> {
    return this.json("resource", { resource }, {}, options);
  }
  /** Admin: frees the unit the execution holds, whatever its attempt, recording `reason`
   * in a `resource_force_released` event. */
  forceRelease(resource: string, queue: string, id: string, reason: string, options?: CallOptions): Promise<ForceReleased> {
    return this.json("forceRelease", { resource }, { body: { queue, id, reason } }, options);
  }

  // ----- worker registry -----

  /** Throws WorkerExists: use a fresh id per process start (generated when not given). */
  registerWorker(queues: string | string[], opts: RegisterOptions = {}, options?: CallOptions): Promise<Registered> {
    const body = compact({
      queues: typeof queues === "string" ? [queues] : queues, worker_id: opts.workerId, host: opts.host,
      pid: opts.pid, version: opts.version, heartbeat_interval: opts.heartbeatInterval,
    });
    return this.json("registerWorker", {}, { body, notIdempotent: !opts.workerId }, options);
  }
  /** Tells the registry the worker is alive and what it runs; the reply may carry the
   * watchdog's `request` (restart or drain). Throws UnknownWorker. */
  workerHeartbeat(workerId: string, running: Running[] = [], options?: CallOptions): Promise<WorkerBeatReply> {
    return this.json("workerHeartbeat", { worker: workerId }, { body: { running } }, options);
  }
  async deregisterWorker(workerId: string, options?: CallOptions): Promise<void> {
    await this.call("deregisterWorker", { worker: workerId }, {}, options);
  }
  async workers(options?: CallOptions): Promise<WorkerInfo[]> {
    return (await this.json<{ workers: WorkerInfo[] }>("workers", {}, {}, options)).workers;
  }
  resetWorker(workerId: string, reason?: string, options?: CallOptions): Promise<WorkerReset> {
    return this.json("resetWorker", { worker: workerId }, { body: compact({ reason }) }, options);
  }
  /** Asks a worker, in its next heartbeat reply, to restart or drain. */
  async requestWorker(workerId: string, request: WorkerRequest, reason?: string, options?: CallOptions): Promise<void> {
    await this.call("requestWorker", { worker: workerId }, { body: compact({ request, reason }) }, options);
  }
  /** Worker tier changes, action and hook outcomes, circuits opened and reset. */
  async workerEvents(opts: { after?: string; limit?: number; newest?: boolean } = {}, options?: CallOptions): Promise<WorkerEvent[]> {
    return (await this.json<{ events: WorkerEvent[] }>("workerEvents", {}, { query: opts }, options)).events;
  }
  watchdogState(options?: CallOptions): Promise<WatchdogState> { return this.json("watchdogState", {}, {}, options); }
  watchdogActivity(minutes?: number, options?: CallOptions): Promise<WatchdogActivity> {
    return this.json("watchdogActivity", {}, { query: { minutes } }, options);
  }
  /** What this client's token may do. */
  session(options?: CallOptions): Promise<Session> { return this.json("session", {}, {}, options); }

  // ----- event streams -----

  /** Follows the event stream (every queue, or one): an AsyncIterable of Event that
   * reconnects with Last-Event-ID when the connection drops. */
  events(opts: EventStreamOptions & { queue?: string } = {}): EventStream<Event> {
    const { queue, ...rest } = opts;
    return new EventStream<Event>(this.transport, ROUTES.events[1], { queue }, rest);
  }
  /** Follows the worker events from now on (or after `lastEventId`), reconnecting. */
  workerEventsLive(opts: EventStreamOptions = {}): EventStream<WorkerEvent> {
    return new EventStream<WorkerEvent>(this.transport, ROUTES.workerEventsLive[1], {}, opts);
  }
}

export interface EnqueueOptions extends CallOptions {
  id?: string;
  timings?: EnqueueItem["timings"];
  delay?: Duration;
  /** Names the id (it must equal `id` when both are given). */
  idempotencyKey?: string;
  /** The caller's W3C trace context (header `traceparent`), stored on the execution and
   * handed to its claims (docs/tracing.md). */
  traceparent?: string;
  /** Its usage budget over all attempts (the queue's default when absent). */
  budget?: EnqueueItem["budget"];
}

/** `usage`: a delta spent since the previous one, `seq` required (positive, increasing
 * within the attempt: a replayed delta is not counted twice). */
/** The body of one heartbeat: its token and what it carries. */
function beatBody(token: string, beat: HeartbeatBody): Record<string, unknown> {
  const body: Record<string, unknown> = { token };
  if (beat.progress !== undefined) body.progress = beat.progress;
  if (beat.fingerprint !== undefined) body.fingerprint = beat.fingerprint;
  if (beat.usage !== undefined) body.usage = beat.usage;
  if ("checkpoint" in beat && beat.checkpoint !== undefined) body.checkpoint = beat.checkpoint;
  return body;
}

export interface HeartbeatBody { progress?: string; checkpoint?: Json; fingerprint?: string; usage?: UsageDelta }

export interface AcquireOptions {
  /** The resource's units when nobody holds it (1-10000; 1 by default). */
  capacity?: number;
  /** Frees the unit after this long even while the attempt runs (1 ms-24 h). */
  ttlMs?: Duration;
  /** Waits up to this long for a unit (0-30000 ms; 0 by default). */
  waitMs?: number;
}

export interface PageOptions { cursor?: string; limit?: number }

export interface FindOptions extends PageOptions {
  queue?: string;
  state?: State;
  stopReason?: string;
  worker?: string;
}

export interface RegisterOptions {
  workerId?: string;
  host?: string;
  pid?: number;
  version?: string;
  heartbeatInterval?: Duration;
}

export interface OpenApiDocument {
  openapi: string;
  paths: Record<string, Record<string, unknown>>;
  components?: { schemas?: Record<string, unknown> };
  [key: string]: unknown;
}

function enqueueBody(item: EnqueueItem): Record<string, unknown> {
  return compact({ payload: item.payload ?? null, id: item.id, timings: item.timings, delay: item.delay, budget: item.budget });
}

/** The object without its undefined members. */
function compact(obj: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined));
}

function parse<T>(reply: Reply): T {
  if (!reply.text) return undefined as T;
  try {
    return JSON.parse(reply.text) as T;
  } catch (e) {
    throw new UnstuckError({ status: reply.status, title: "reply is not JSON", detail: reply.text.slice(0, 200), cause: e });
  }
}
