// The worker runner: registers, long-polls claims of one queue within a concurrency
// limit, runs a handler on each, keeps the attempts alive with heartbeats (all it holds in
// one request per round: beats.ts), and records how each ended.

import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import { Beats, Wakeup } from "./beats.js";
import { Client } from "./client.js";
import { UnknownWorker, UnstuckError, WorkerExists } from "./errors.js";
import { AwaitResume, Cancelled, Job, NonRetryable, Retryable, Snooze } from "./job.js";
import { Logger, Outcome, Recorder, Stats, backoff } from "./outcomes.js";
import { OtelApi, loadOtel, processSpan } from "./otel.js";
import { USER_AGENT, sleep } from "./transport.js";
import type { AwaitReply, WorkerRequest } from "./types.js";

export type { Logger, Stats } from "./outcomes.js";
export const MAX_WAIT_MS = 30_000;

export type Handler = (job: Job) => unknown;

export interface WorkerOptions {
  /** Handlers running at once (1 by default; 1-1000). */
  concurrency?: number;
  /** A fixed worker id; by default a fresh `<host>-<pid>-<random>` per registration. */
  workerId?: string;
  /** How often the worker registry hears from this worker (5000 ms). Each attempt is beaten
   * at a third of its own heartbeat timeout, all the attempts the worker holds in one
   * request per round (`client.heartbeats`; `heartbeat` when it holds one). */
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
  /** The OpenTelemetry API for the `process {queue}` span around each handler: by default
   * `@opentelemetry/api` when it can be imported (no span when it cannot); pass the module
   * to use another copy of it, or false for no spans. */
  otel?: OtelApi | false;
}

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
  private givenId: boolean;
  private readonly recorder: Recorder;
  private readonly beats: Beats;
  private readonly jobs = new Map<Job, Promise<void>>();
  private stopping = false;
  private readonly poll = new AbortController();
  private readonly slotFreed = new Wakeup();
  private readonly registryKick = new Wakeup();
  private registryDone = false;
  private otel: OtelApi | undefined;

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
    this.recorder = new Recorder(client, this.log, this.stats, options.onAwait);
    this.beats = new Beats(client, this.log);
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
      this.otel = this.options.otel === false ? undefined : this.options.otel ?? (await loadOtel());
      if (!(await this.register())) return { ...this.stats };
      registry = this.registryLoop();
      this.beats.start();
      await this.claimLoop();
    } finally {
      this.stopping = true;
      while (this.jobs.size) await Promise.all(this.jobs.values());
      await this.beats.stop();
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
          this.givenId = false; // a fresh id: the registry forgot this one
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
          this.givenId = false;
          if (!(await this.register())) return;
          continue;
        }
        if (!(e instanceof UnstuckError) || !e.transient) throw e;
        this.log.warn(`claim: ${e.message}; retrying`);
        await sleep(backoff(failures++), this.poll.signal).catch(() => undefined);
        continue;
      }
      failures = 0;
      for (const claim of claims) this.start(new Job(claim, this.client)); // even when stopping: ours now
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
    this.beats.add(job);
    // The `process {queue}` span, when the OpenTelemetry API is there.
    const outcome = await processSpan(this.otel, job, this.workerId, async (): Promise<Outcome> => {
      try {
        return { kind: "complete", result: await this.handler(job) };
      } catch (e) {
        return this.classify(job, e);
      }
    }, (o) => (o.kind === "fail" ? o.message : undefined));
    await this.beats.remove(job);
    if (outcome.kind !== "complete" && !job.lost && !job.cancelRequested && Object.keys(job.pending().body).length) {
      await this.beats.beat(job); // a checkpoint set since the last beat: the next attempt resumes from it
    }
    // Deliver the usage still pending: by beats, all but the last delta, which rides on the
    // complete or fail (all of it before a cancel-ack, a snooze or an await).
    // A beat that fails transiently is tried again for up to a heartbeat timeout.
    const last = (outcome.kind === "complete" || outcome.kind === "fail") && !job.cancelRequested ? 1 : 0;
    const giveUp = performance.now() + job.heartbeatTimeoutMs;
    for (let failures = 0; !job.lost && job.pendingUsage > last;) {
      const result = await this.beats.beat(job);
      if (result === "gone") break;
      if (result === "renewed") failures = 0;
      else if (performance.now() > giveUp) break;
      else await sleep(backoff(failures++, 50, 1000));
    }
    await this.recorder.finish(job, outcome);
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
