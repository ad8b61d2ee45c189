// The worker runner: registers, long-polls claims of one queue within a concurrency
// limit, runs a handler on each, keeps each attempt alive with heartbeats on a timer, and
// records how each ended.

import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import { Client } from "./client.js";
import {
  AlreadyTerminal, BadRequest, InvalidArgument, NotFound, StaleAttempt, TokenMismatch, TooLarge,
  UnknownWorker, UnstuckError, WorkerExists,
} from "./errors.js";
import { AwaitResume, Cancelled, Job, NonRetryable, Retryable, Snooze } from "./job.js";
import { USER_AGENT, sleep } from "./transport.js";
import type { AwaitReply, Json, WorkerRequest } from "./types.js";

export const MAX_WAIT_MS = 30_000;
const OUTCOME_RETRY_FOR_MS = 60_000; // retrying a complete/fail/cancel-ack on transient errors
const MAX_MESSAGE = 4000;

export type Handler = (job: Job) => unknown;

export interface Logger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export interface WorkerOptions {
  /** Handlers running at once (1 by default; 1-1000). */
  concurrency?: number;
  /** A fixed worker id; by default a fresh `<host>-<pid>-<random>` per registration. */
  workerId?: string;
  /** How often the worker registry hears from this worker (5000 ms). Each attempt is beaten
   * at a third of its own heartbeat timeout. */
  heartbeatIntervalMs?: number;
  version?: string;
  /** The long poll of each claim (30000 ms at most). */
  waitMs?: number;
  /** Drain on SIGTERM and SIGINT while running (true). */
  handleSignals?: boolean;
  /** Called with the reply when a handler's AwaitResume was recorded. */
  onAwait?: (job: Job, reply: AwaitReply) => void;
  /** Where the worker says what happens (warnings and errors to the console by default). */
  logger?: Logger;
}

export interface Stats {
  succeeded: number;
  failed: number;
  retried: number;
  cancelled: number;
  dropped: number;
  snoozed: number;
  awaiting: number;
}

type Outcome =
  | { kind: "complete"; result: unknown }
  | { kind: "fail"; message: string; retryable: boolean; retryAfterMs?: Retryable["retryAfterMs"] }
  | { kind: "snooze"; snooze: Snooze }
  | { kind: "await"; wait: AwaitResume };

const quiet: Logger = {
  info: () => undefined,
  warn: (m) => console.warn(`unstuck: ${m}`),
  error: (m) => console.error(`unstuck: ${m}`),
};

/** `<host>-<pid>-<random>`: unique per process start, as the registry requires. */
export function freshWorkerId(): string {
  const host = hostname().replace(/[^A-Za-z0-9_.:-]/g, "-").slice(0, 100) || "host";
  return `${host}-${process.pid}-${randomBytes(4).toString("hex")}`;
}

function isLost(e: unknown): boolean {
  return e instanceof StaleAttempt || e instanceof AlreadyTerminal || e instanceof TokenMismatch || e instanceof NotFound;
}

function backoff(failures: number, baseMs = 100, capMs = 5000): number {
  return Math.min(capMs, baseMs * 2 ** failures) * (0.5 + Math.random() / 2);
}

/** A wake-up for loops that sleep: `wait(ms)` resolves true when `fire()` came first. */
class Wakeup {
  private wake: (() => void) | undefined;
  private fired = false;
  fire(): void { this.fired = true; this.wake?.(); }
  clear(): void { this.fired = false; }
  wait(ms: number): Promise<boolean> {
    if (this.fired) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => { this.wake = undefined; resolve(false); }, ms);
      this.wake = () => { clearTimeout(timer); this.wake = undefined; resolve(true); };
    });
  }
}

/**
 * Runs `handler(job)` on executions claimed from `queue`, `concurrency` at once. The
 * handler's return value (JSON) completes the attempt; a thrown Retryable or any other
 * error fails it retryable; NonRetryable fails it for good; Snooze and AwaitResume end it
 * as those outcomes; when cancellation was requested the cancellation is acknowledged
 * instead. `run()` resolves once stopped (stop(), SIGTERM, or the watchdog's drain or
 * restart request) and the running handlers are done, with the counts of outcomes.
 */
export class Worker {
  readonly client: Client;
  readonly queue: string;
  readonly handler: Handler;
  readonly concurrency: number;
  workerId: string | undefined;
  readonly stats: Stats = { succeeded: 0, failed: 0, retried: 0, cancelled: 0, dropped: 0, snoozed: 0, awaiting: 0 };
  /** What the watchdog asked in a registry heartbeat reply: "restart" (running jobs are
   * told to stop and handed back) or "drain" (they finish); either way run() returns. */
  stoppedBy: WorkerRequest | undefined;
  private readonly options: WorkerOptions;
  private readonly log: Logger;
  private readonly givenId: boolean;
  private readonly jobs = new Map<Job, Promise<void>>();
  private stopping = false;
  private readonly poll = new AbortController();
  private readonly slotFreed = new Wakeup();
  private readonly registryKick = new Wakeup();
  private registryDone = false;

  constructor(client: Client, queue: string, handler: Handler, options: WorkerOptions = {}) {
    const concurrency = options.concurrency ?? 1;
    const waitMs = options.waitMs ?? MAX_WAIT_MS;
    if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 1000) throw new RangeError("concurrency must be 1 to 1000");
    if (waitMs < 0 || waitMs > MAX_WAIT_MS) throw new RangeError(`waitMs must be 0 to ${MAX_WAIT_MS}`);
    this.client = client;
    this.queue = queue;
    this.handler = handler;
    this.concurrency = concurrency;
    this.options = { ...options, waitMs };
    this.workerId = options.workerId;
    this.givenId = options.workerId !== undefined;
    this.log = options.logger ?? quiet;
  }

  /** The attempts running now. */
  get running(): Job[] { return [...this.jobs.keys()]; }

  /** Stops claiming; run() resolves once the running handlers are done. */
  stop(): void {
    this.stopping = true;
    this.poll.abort(new Error("worker stopping"));
    this.slotFreed.fire();
  }

  /** Registers, claims and runs until stopped; resolves with the counts of outcomes. */
  async run(): Promise<Stats> {
    const restore = this.installSignals();
    let registry: Promise<void> | undefined;
    try {
      if (!(await this.register())) return { ...this.stats };
      registry = this.registryLoop();
      await this.claimLoop();
    } finally {
      this.stopping = true;
      while (this.jobs.size) await Promise.all(this.jobs.values());
      if (registry) {
        this.registryDone = true;
        this.registryKick.fire();
        await registry;
        await this.deregister();
      }
      restore();
    }
    return { ...this.stats };
  }

  // ----- registry -----

  private async register(): Promise<boolean> {
    for (let failures = 0; ;) {
      if (!this.givenId) this.workerId = freshWorkerId();
      try {
        await this.client.registerWorker([this.queue], {
          workerId: this.workerId, host: hostname(), pid: process.pid,
          version: this.options.version ?? USER_AGENT, heartbeatInterval: this.registryInterval(),
        });
        this.log.info(`worker ${this.workerId} registered on queue ${this.queue}`);
        return true;
      } catch (e) {
        if (e instanceof WorkerExists && !this.givenId) continue;
        if (!(e instanceof UnstuckError) || !e.transient) throw e;
        this.log.warn(`registering worker: ${e.message}; retrying`);
        if (this.stopping) return false;
        await sleep(backoff(failures++));
        if (this.stopping) return false;
      }
    }
  }

  private registryInterval(): number {
    return this.options.heartbeatIntervalMs ?? 5000;
  }

  private async registryLoop(): Promise<void> {
    for (;;) {
      // Beats go on while running jobs drain: the registry must keep listing them.
      const kicked = await this.registryKick.wait(this.registryInterval());
      if (this.registryDone) return;
      if (kicked) {
        await sleep(250); // one beat per burst of claims
        this.registryKick.clear();
        if (this.registryDone) return;
      }
      const running = this.running.map((job) => ({ queue: job.queue, id: job.id }));
      try {
        const reply = await this.client.workerHeartbeat(this.workerId!, running);
        const request = reply?.request;
        if ((request === "restart" || request === "drain") && this.stoppedBy === undefined) this.honour(request);
      } catch (e) {
        if (e instanceof UnknownWorker) {
          this.log.warn(`worker ${this.workerId} is no longer registered; registering again`);
          await this.register().catch((err) => this.log.error(`registering again failed: ${err}`));
        } else {
          this.log.warn(`worker heartbeat: ${e instanceof Error ? e.message : e}`);
        }
      }
    }
  }

  private honour(request: WorkerRequest): void {
    this.log.warn(`the watchdog asks worker ${this.workerId} to ${request}`);
    this.stoppedBy = request;
    if (request === "restart") for (const job of this.running) job.stop("restart"); // handed back
    this.stop();
  }

  private async deregister(): Promise<void> {
    try {
      await this.client.deregisterWorker(this.workerId!);
    } catch (e) {
      if (!(e instanceof UnknownWorker)) this.log.warn(`deregistering worker ${this.workerId}: ${e}`);
    }
  }

  // ----- claiming -----

  private async claimLoop(): Promise<void> {
    for (let failures = 0; !this.stopping;) {
      while (this.jobs.size >= this.concurrency && !this.stopping) {
        this.slotFreed.clear();
        await this.slotFreed.wait(60_000);
      }
      if (this.stopping) return;
      let claims;
      try {
        claims = await this.client.claim(this.queue, this.workerId!, { max: this.concurrency - this.jobs.size, waitMs: this.options.waitMs }, { signal: this.poll.signal });
      } catch (e) {
        if (this.stopping) return;
        if (e instanceof UnknownWorker) {
          if (!(await this.register())) return;
          continue;
        }
        if (!(e instanceof UnstuckError) || !e.transient) throw e;
        this.log.warn(`claim: ${e.message}; retrying`);
        await sleep(backoff(failures++), this.poll.signal).catch(() => undefined);
        continue;
      }
      failures = 0;
      for (const claim of claims) this.start(new Job(claim)); // even when stopping: ours now
      if (claims.length) this.registryKick.fire();
    }
  }

  private start(job: Job): void {
    const done = this.runJob(job).catch((e) => this.log.error(`recording the outcome of ${job}: ${e}`)).finally(() => {
      this.jobs.delete(job);
      this.slotFreed.fire();
    });
    this.jobs.set(job, done);
  }

  // ----- one job -----

  private async runJob(job: Job): Promise<void> {
    const finished = new Wakeup();
    const beats = this.beatLoop(job, finished);
    let outcome: Outcome;
    try {
      outcome = { kind: "complete", result: await this.handler(job) };
    } catch (e) {
      outcome = this.classify(job, e);
    }
    finished.fire();
    await beats;
    await this.finish(job, outcome);
  }

  private classify(job: Job, e: unknown): Outcome {
    if (e instanceof AwaitResume) return { kind: "await", wait: e };
    if (e instanceof Snooze) return { kind: "snooze", snooze: e };
    if (e instanceof Cancelled || (job.signal.aborted && e === job.signal.reason)) {
      return { kind: "fail", message: `stopped: ${job.signal.reason?.message ?? "cancelled"}`, retryable: true };
    }
    if (e instanceof NonRetryable) return { kind: "fail", message: e.message || "NonRetryable", retryable: false };
    if (e instanceof Retryable) return { kind: "fail", message: e.message || "Retryable", retryable: true, retryAfterMs: e.retryAfterMs };
    const text = e instanceof Error ? `${e.name}: ${e.message}` : `thrown: ${String(e)}`;
    this.log.warn(`handler failed on ${job}: ${text}`);
    return { kind: "fail", message: text, retryable: true };
  }

  private async beatLoop(job: Job, finished: Wakeup): Promise<void> {
    const interval = Math.max(job.heartbeatTimeoutMs / 3, 50);
    while (!job.lost) {
      await this.beat(job); // the first beat at once: it moves dispatched -> running
      if (await finished.wait(interval)) return;
    }
  }

  /** One heartbeat with the pending progress and checkpoint. */
  private async beat(job: Job): Promise<void> {
    const { body, seqs } = job.pending();
    try {
      const reply = await this.client.heartbeat(job.token, body);
      job.delivered(seqs);
      if (reply?.cancel_requested) job.stop("cancel");
    } catch (e) {
      if (isLost(e)) {
        this.log.info(`${job} lost: ${e}`);
        job.stop("lost");
      } else {
        this.log.warn(`heartbeat of ${job}: ${e}`);
      }
    }
  }

  private async finish(job: Job, outcome: Outcome): Promise<void> {
    if (outcome.kind !== "complete" && !job.lost && !job.cancelRequested && Object.keys(job.pending().body).length) {
      await this.beat(job); // a checkpoint set since the last beat: the next attempt resumes from it
    }
    if (job.lost) return this.count("dropped", job, "the attempt was lost");
    if (job.cancelRequested) {
      if (await this.outcome(job, () => this.client.cancelAck(job.token), "cancelled")) this.count("cancelled", job, "cancellation acknowledged");
      return;
    }
    if (outcome.kind === "await") return this.await(job, outcome.wait);
    if (outcome.kind === "snooze") return this.snooze(job, outcome.snooze);
    if (outcome.kind === "complete") {
      let result: Json | undefined;
      try {
        const text = JSON.stringify(outcome.result);
        result = text === undefined ? undefined : (JSON.parse(text) as Json);
      } catch (e) {
        outcome = { kind: "fail", message: `result is not JSON: ${e}`, retryable: false };
      }
      if (outcome.kind === "complete") {
        try {
          if (await this.outcome(job, () => this.client.complete(job.token, result), "succeeded")) this.count("succeeded", job, "completed");
          return;
        } catch (e) {
          if (!(e instanceof TooLarge)) throw e;
          outcome = { kind: "fail", message: `result refused: ${e.message}`, retryable: false };
        }
      }
    }
    const { message, retryable, retryAfterMs } = outcome;
    const text = message.slice(0, MAX_MESSAGE);
    let reply;
    try {
      reply = await this.outcome(job, () => this.client.fail(job.token, text, { retryable, retryAfterMs }));
    } catch (e) {
      if (!(e instanceof InvalidArgument)) throw e;
      this.log.error(`retryAfterMs of ${job} refused: ${e.message}`); // still recorded, with the backoff
      reply = await this.outcome(job, () => this.client.fail(job.token, text, { retryable }));
    }
    if (reply) this.count(reply.outcome === "retry_scheduled" ? "retried" : reply.outcome === "cancelled" ? "cancelled" : "failed", job, `${reply.outcome}: ${text}`);
  }

  private async snooze(job: Job, snooze: Snooze): Promise<void> {
    let reply;
    try {
      reply = await this.outcome(job, () => this.client.snooze(job.token, { afterMs: snooze.afterMs, until: snooze.until, reason: snooze.reason }));
    } catch (e) {
      if (!(e instanceof InvalidArgument)) throw e;
      this.log.error(`snooze of ${job} refused: ${e.message}`); // the handler's bug: fail retryable
      reply = await this.outcome(job, () => this.client.fail(job.token, `snooze refused: ${e.message}`.slice(0, MAX_MESSAGE)));
    }
    if (reply) {
      const kind = reply.outcome === "snoozed" ? "snoozed" : reply.outcome === "retry_scheduled" ? "retried" : reply.outcome === "cancelled" ? "cancelled" : "failed";
      this.count(kind, job, `${reply.outcome}: ${snooze.reason}`);
    }
  }

  private async await(job: Job, wait: AwaitResume): Promise<void> {
    let refused: UnstuckError | undefined;
    const reply = await this.outcome(job, async () => {
      try {
        return await this.client.awaitResume(job.token, wait.reason, wait.waitDeadlineMs, { checkpoint: wait.checkpoint });
      } catch (e) {
        // A wait the queue does not allow, or a checkpoint too large: a retry would repeat it.
        if (e instanceof BadRequest || e instanceof TooLarge) { refused = e; return undefined; }
        throw e;
      }
    });
    if (refused) {
      const message = `await refused: ${refused.message}`.slice(0, MAX_MESSAGE);
      if (await this.outcome(job, () => this.client.fail(job.token, message, { retryable: false }))) this.count("failed", job, message);
      return;
    }
    if (!reply) return;
    if (reply.outcome === "cancelled") return this.count("cancelled", job, "cancelled instead of waiting");
    job.resumeToken = reply.resume_token;
    this.count("awaiting", job, `awaiting until ${reply.wait_deadline_at}: ${wait.reason}`);
    try {
      this.options.onAwait?.(job, reply);
    } catch (e) {
      this.log.error(`onAwait of ${job} failed: ${e}`);
    }
  }

  /** Runs an outcome call, retrying transient errors (the calls are idempotent on the
   * token); undefined when the attempt turned out not to be ours any more. */
  private async outcome<T>(job: Job, call: () => Promise<T | undefined>, endsIn?: string): Promise<T | Record<string, never> | undefined> {
    const giveUp = Date.now() + OUTCOME_RETRY_FOR_MS;
    for (let failures = 0; ; failures++) {
      try {
        return (await call()) ?? {};
      } catch (e) {
        if (e instanceof AlreadyTerminal && failures > 0 && e.state === endsIn) return {}; // a lost reply: it went through
        if (isLost(e)) {
          this.count("dropped", job, `not ours any more: ${e}`);
          return undefined;
        }
        if (!(e instanceof UnstuckError)) throw e;
        if (!e.transient || Date.now() > giveUp) {
          if (e instanceof TooLarge || e instanceof InvalidArgument) throw e;
          this.log.error(`recording the outcome of ${job}: ${e.message}`);
          return undefined;
        }
        await sleep(backoff(failures));
      }
    }
  }

  private count(kind: keyof Stats, job: Job, what: string): void {
    this.stats[kind] += 1;
    this.log.info(`${job}: ${what}`);
  }

  // ----- signals -----

  private installSignals(): () => void {
    if (this.options.handleSignals === false) return () => undefined;
    const onSignal = (signal: string) => {
      this.log.info(`${signal}: stopping after the running jobs`);
      this.stop();
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
    return () => {
      process.off("SIGTERM", onSignal);
      process.off("SIGINT", onSignal);
    };
  }
}
