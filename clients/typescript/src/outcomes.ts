// How an attempt ended, recorded on the server: complete, fail, snooze, await or
// cancel-ack, each retried on transient errors (the calls are idempotent on the token).

import { Client } from "./client.js";
import {
  AlreadyTerminal, BadRequest, InvalidArgument, NotFound, StaleAttempt, TokenMismatch, TooLarge,
  UnstuckError,
} from "./errors.js";
import { AwaitResume, Job, Retryable, Snooze } from "./job.js";
import { sleep } from "./transport.js";
import type { AwaitReply, Json } from "./types.js";

const OUTCOME_RETRY_FOR_MS = 60_000; // retrying a complete/fail/cancel-ack on transient errors
const MAX_MESSAGE = 4000;

export interface Logger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
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

export type Outcome =
  | { kind: "complete"; result: unknown }
  | { kind: "fail"; message: string; retryable: boolean; retryAfterMs?: Retryable["retryAfterMs"] }
  | { kind: "snooze"; snooze: Snooze }
  | { kind: "await"; wait: AwaitResume };

/** A reply saying the attempt is no longer ours. */
export function isLost(e: unknown): boolean {
  return e instanceof StaleAttempt || e instanceof AlreadyTerminal || e instanceof TokenMismatch || e instanceof NotFound;
}

/** Exponential backoff with jitter: about base * 2^failures, at most cap. */
export function backoff(failures: number, baseMs = 100, capMs = 5000): number {
  return Math.min(capMs, baseMs * 2 ** failures) * (0.5 + Math.random() / 2);
}

export class Recorder {
  constructor(
    private readonly client: Client,
    private readonly log: Logger,
    private readonly stats: Stats,
    private readonly onAwait?: (job: Job, reply: AwaitReply) => void,
  ) {}

  async finish(job: Job, outcome: Outcome): Promise<void> {
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
          const usage = job.pending().body.usage; // the last delta rides on the outcome
          if (await this.outcome(job, () => this.client.complete(job.token, result, { usage }), "succeeded")) this.count("succeeded", job, "completed");
          return;
        } catch (e) {
          if (!(e instanceof TooLarge)) throw e;
          outcome = { kind: "fail", message: `result refused: ${e.message}`, retryable: false };
        }
      }
    }
    const { message, retryable, retryAfterMs } = outcome;
    const text = message.slice(0, MAX_MESSAGE);
    const usage = job.pending().body.usage; // the last delta rides on the outcome
    let reply;
    try {
      reply = await this.outcome(job, () => this.client.fail(job.token, text, { retryable, retryAfterMs, usage }));
    } catch (e) {
      if (!(e instanceof InvalidArgument)) throw e;
      this.log.error(`retryAfterMs of ${job} refused: ${e.message}`); // still recorded, with the backoff
      reply = await this.outcome(job, () => this.client.fail(job.token, text, { retryable, usage }));
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
      this.onAwait?.(job, reply);
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
}
