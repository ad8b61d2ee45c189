// One claimed attempt as a handler sees it, and the outcomes a handler throws besides a
// plain error: Retryable, NonRetryable, Snooze, AwaitResume (the Python client's names).

import type { Client, AcquireOptions } from "./client.js";
import type { Acquired, Claim, Duration, Json, UsageDelta } from "./types.js";

/** The most a heartbeat's fingerprint may be, in UTF-8 bytes. */
export const MAX_FINGERPRINT_BYTES = 128;

/** Throw to fail the attempt and let it be retried (while attempts remain, after the
 * backoff, from the last checkpoint). `retryAfterMs` (say a provider's Retry-After) is the
 * earliest the retry may start: it wins over the backoff when later. */
export class Retryable extends Error {
  readonly retryAfterMs: Duration | undefined;
  constructor(message = "", options: { retryAfterMs?: Duration; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "Retryable";
    this.retryAfterMs = options.retryAfterMs;
  }
}

/** Throw to fail the execution for good (no retry). */
export class NonRetryable extends Error {
  constructor(message = "", options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "NonRetryable";
  }
}

/** Throw to end the attempt without failing it: the execution waits in the queue
 * `afterMs` (or until `until`) and comes back as a continuation, not a retry. Past the
 * execution's `max_snoozes` the snooze is recorded as a retryable failure. */
export class Snooze extends Error {
  readonly afterMs: Duration | undefined;
  readonly until: Date | string | undefined;
  readonly reason: string;
  constructor(options: { afterMs?: Duration; until?: Date | string; reason?: string }) {
    super(options.reason ?? "snoozed");
    this.name = "Snooze";
    this.afterMs = options.afterMs;
    this.until = options.until;
    this.reason = options.reason ?? "snoozed";
  }
}

/** Throw to end the attempt and wait on a person or an outside event: the execution is
 * `awaiting` until resumed (Client.resume or the one-time resume token), at most
 * `waitDeadlineMs`. The claim that continues it gets `checkpoint` (when given, else the
 * last one) as `job.checkpoint` and the resume input as `job.resumeInput`. */
export class AwaitResume extends Error {
  readonly reason: string;
  readonly waitDeadlineMs: Duration;
  readonly checkpoint: Json | undefined;
  constructor(reason: string, waitDeadlineMs: Duration, options: { checkpoint?: Json } = {}) {
    super(reason);
    this.name = "AwaitResume";
    this.reason = reason;
    this.waitDeadlineMs = waitDeadlineMs;
    this.checkpoint = options.checkpoint;
  }
}

/** The reason of `job.signal` once it fired: cancellation requested, the attempt lost, or
 * the worker restarting. `cancelReason` says why the ledger asked to stop (`"budget_exceeded"`);
 * undefined for an operator's cancel and the other two. */
export class Cancelled extends Error {
  readonly why: "cancel" | "lost" | "restart";
  readonly cancelReason: string | undefined;
  constructor(why: "cancel" | "lost" | "restart", cancelReason?: string) {
    const text = why === "cancel" ? "cancellation requested" : why === "lost" ? "attempt lost" : "worker restarting";
    super(cancelReason ? `${text} (${cancelReason})` : text);
    this.name = "Cancelled";
    this.why = why;
    this.cancelReason = cancelReason;
  }
}

/** Usage spent since the previous `addUsage`: whole numbers, `cost` in micro-units of the
 * namespace's currency, `cachedInputTokens` a part of `inputTokens`. */
export interface UsageAmounts {
  inputTokens?: number;
  outputTokens?: number;
  cachedInputTokens?: number;
  cost?: number;
  model?: string;
}

const MAX_USAGE = 1e15;

/** What the next heartbeat carries, and the sequence numbers that mark it delivered
 * (progress, checkpoint, and whether it carries the oldest unsent fingerprint). */
export interface PendingBeat {
  body: { progress?: string; checkpoint?: Json; fingerprint?: string; usage?: UsageDelta };
  /** progress, checkpoint, a fingerprint carried, the usage delta's seq (0: none). */
  seqs: [number, number, boolean, number];
}

/** One claimed attempt. */
export class Job {
  readonly claim: Claim;
  readonly token: string;
  readonly queue: string;
  readonly id: string;
  readonly attempt: number;
  readonly payload: Json;
  /** The checkpoint the previous attempt left (null on a first attempt). */
  readonly checkpoint: Json;
  /** What `resume` handed over when this attempt continues a wait (undefined otherwise). */
  readonly resumeInput: Json | undefined;
  readonly heartbeatTimeoutMs: number;
  readonly deadlineAt: string | undefined;
  /** The W3C trace context stored at enqueue (undefined when none), to link the
   * handler's spans to. */
  readonly traceparent: string | undefined;
  /** Fires when cancellation was requested, the attempt was lost, or the worker restarts:
   * stop soon. Its reason is a Cancelled. Pass it on to fetch and other calls. */
  readonly signal: AbortSignal;
  /** Set once the handler's AwaitResume was recorded: the one-time credential to resume. */
  resumeToken: string | undefined;
  /** The orchestrator asked to stop: the worker acknowledges the cancellation. */
  cancelRequested = false;
  /** The attempt is no longer ours: nothing is recorded for it. */
  lost = false;
  /** Why the ledger asked to stop (`"budget_exceeded"`); undefined for an operator's cancel. */
  cancelReason: string | undefined;
  private readonly controller = new AbortController();
  private progress: string | undefined;
  private newCheckpoint: Json | undefined;
  private progressSeq = 0;
  private checkpointSeq = 0;
  private progressSent = 0;
  private checkpointSent = 0;
  private readonly fingerprints: string[] = []; // not sent yet, oldest first: one per beat
  private readonly usage: UsageDelta[] = []; // deltas not delivered yet, oldest first
  private usageSeq = 0; // the last seq given to a delta
  private readonly client: Client | undefined;
  /** Set by the worker: a new fingerprint wakes the beat loop to send it at once. */
  wakeBeats: (() => void) | undefined;

  constructor(claim: Claim, client?: Client) {
    this.client = client;
    this.claim = claim;
    this.token = claim.token;
    this.queue = claim.queue;
    this.id = claim.id;
    this.attempt = claim.attempt;
    this.payload = claim.payload ?? null;
    this.checkpoint = claim.checkpoint ?? null;
    this.resumeInput = claim.resume_input;
    this.heartbeatTimeoutMs = claim.heartbeat_timeout;
    this.deadlineAt = claim.deadline_at ?? undefined;
    this.traceparent = claim.traceparent || undefined;
    this.signal = this.controller.signal;
  }

  /** Progress text sent with the next heartbeat (`no_progress_timeout` watches it). */
  setProgress(text: string): void {
    this.progress = String(text);
    this.progressSeq += 1;
  }

  /** A JSON value sent with the next heartbeat; a retry resumes from the last one the
   * server received (`job.checkpoint` of the next attempt). */
  setCheckpoint(value: Json): void {
    const text = JSON.stringify(value); // throws now on a BigInt or a cycle, not in a heartbeat
    this.newCheckpoint = text === undefined ? null : (JSON.parse(text) as Json);
    this.checkpointSeq += 1;
  }

  /** The fingerprint of the action just taken and its result (a short text, say a hash
   * of them; 1 to 128 bytes), for loop detection: the same one `max_repeats` times in a row
   * and the watchdog judges the execution stuck `looping`. Each call is one arrival, never
   * merged with another: it goes out with a heartbeat sent at once, and calls made faster
   * than beats return wait their turn, each with its own beat. Throws a RangeError for an
   * empty or longer text (nothing queued). */
  setFingerprint(text: string): void {
    const value = String(text);
    const size = Buffer.byteLength(value, "utf8");
    if (size < 1 || size > MAX_FINGERPRINT_BYTES) {
      throw new RangeError(`fingerprint: expected 1 to ${MAX_FINGERPRINT_BYTES} bytes, got ${size}`);
    }
    this.fingerprints.push(value);
    this.wakeBeats?.();
  }

  /** Adds tokens and cost spent since the last call; sent with the next heartbeat, or with
   * the complete or fail that ends the attempt. Each delta gets its own `seq` once sent, so
   * a repeated call never counts it twice, and none is lost (calls before it is sent add up
   * while the model stays the same). Throws a RangeError for a negative or fractional
   * amount, cached input tokens above the input tokens, or a model name the server would
   * refuse (over 128 bytes, `|` or control characters); nothing is added then. */
  addUsage(amounts: UsageAmounts): void {
    const delta = {
      input_tokens: amounts.inputTokens ?? 0,
      output_tokens: amounts.outputTokens ?? 0,
      cached_input_tokens: amounts.cachedInputTokens ?? 0,
      cost: amounts.cost ?? 0,
    };
    for (const [name, value] of Object.entries(delta)) {
      if (!Number.isSafeInteger(value) || value < 0 || value > MAX_USAGE) {
        throw new RangeError(`${name} must be a whole number from 0 to 10^15, got ${value}`);
      }
    }
    if (delta.cached_input_tokens > delta.input_tokens) {
      throw new RangeError("cachedInputTokens is a part of inputTokens: at most it");
    }
    const model = amounts.model === undefined || amounts.model === null ? undefined : String(amounts.model);
    if (model !== undefined && (Buffer.byteLength(model, "utf8") > 128 || /[|\u0000-\u001f\u007f]/.test(model))) {
      throw new RangeError("model: at most 128 bytes, no | or control characters");
    }
    const last = this.usage.at(-1);
    if (last && last.seq === 0 && last.model === model) {
      last.input_tokens! += delta.input_tokens;
      last.output_tokens! += delta.output_tokens;
      last.cached_input_tokens! += delta.cached_input_tokens;
      last.cost! += delta.cost;
      return;
    }
    this.usage.push(model === undefined ? { ...delta, seq: 0 } : { ...delta, model, seq: 0 });
  }

  /** Usage deltas not delivered yet. */
  get pendingUsage(): number { return this.usage.length; }

  /** Fingerprints not sent yet. */
  get unsentFingerprints(): number { return this.fingerprints.length; }

  /** Takes one unit of `resource` for this attempt (Client.acquire with this attempt's
   * token; `waitMs` 30000 by default, the most). Throws ResourceBusy with its `holders`
   * when every unit is still held after the wait. Give it back with `release`; if the
   * process dies first, the unit is freed when the attempt ends (the watchdog's sweep). */
  acquire(resource: string, opts: AcquireOptions = {}): Promise<Acquired> {
    return this.requireClient().acquire(this.token, resource, { waitMs: 30_000, ...opts }, { signal: this.signal });
  }

  /** Gives back this attempt's unit of `resource`: true when it held one. */
  async release(resource: string): Promise<boolean> {
    return (await this.requireClient().release(this.token, resource)).released;
  }

  /** Holds one unit of `resource` while `fn` runs and gives it back after (a throw
   * included): `await job.withLease("browser", async () => ...)`. A failed release is
   * only logged to the console: the unit is freed when the attempt ends anyway. */
  async withLease<T>(resource: string, fn: () => T | Promise<T>, opts: AcquireOptions = {}): Promise<T> {
    await this.acquire(resource, opts);
    try {
      return await fn();
    } finally {
      await this.release(resource).catch((e) => {
        console.warn(`unstuck: release of ${resource} by ${this} failed (freed when the attempt ends): ${e}`);
      });
    }
  }

  private requireClient(): Client {
    if (!this.client) throw new TypeError("this Job has no client: leases need a Job made by a Worker (or new Job(claim, client))");
    return this.client;
  }

  /** Throws the signal's Cancelled when the attempt should stop. */
  throwIfCancelled(): void {
    if (this.signal.aborted) throw this.signal.reason;
  }

  toString(): string {
    return `Job(${this.queue}/${this.id} attempt ${this.attempt})`;
  }

  /** The one place a heartbeat's body is built from what the handler set since the last
   * delivered beat. */
  pending(): PendingBeat {
    const body: PendingBeat["body"] = {};
    if (this.progressSeq > this.progressSent) body.progress = this.progress;
    if (this.checkpointSeq > this.checkpointSent) body.checkpoint = this.newCheckpoint ?? null;
    if (this.fingerprints.length) body.fingerprint = this.fingerprints[0];
    const usage = this.usage[0];
    if (usage) {
      if (usage.seq === 0) usage.seq = ++this.usageSeq; // numbered once, kept until delivered
      body.usage = { ...usage };
    }
    return { body, seqs: [this.progressSeq, this.checkpointSeq, body.fingerprint !== undefined, usage?.seq ?? 0] };
  }

  delivered(seqs: PendingBeat["seqs"]): void {
    this.progressSent = Math.max(this.progressSent, seqs[0]);
    this.checkpointSent = Math.max(this.checkpointSent, seqs[1]);
    if (seqs[2]) this.fingerprints.shift(); // only the beat loop takes them
    if (seqs[3] && this.usage[0]?.seq === seqs[3]) this.usage.shift();
  }

  /** Fires the signal (once). */
  stop(why: "cancel" | "lost" | "restart", cancelReason?: string): void {
    if (why === "lost") this.lost = true;
    if (why === "cancel") {
      this.cancelRequested = true;
      this.cancelReason ??= cancelReason;
    }
    if (!this.signal.aborted) this.controller.abort(new Cancelled(why, cancelReason));
  }
}
