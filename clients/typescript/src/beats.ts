// The worker's heartbeats: one loop beats every attempt the worker holds, all of them in
// one request per round (`POST /v1/attempts/heartbeats`; the single route when it holds
// one), each attempt renewed, given up, cancelled or lost on its own answer.

import type { Client } from "./client.js";
import { Protocol, UnstuckError } from "./errors.js";
import type { Job, PendingBeat } from "./job.js";
import { Logger, backoff, isLost } from "./outcomes.js";
import type { HeartbeatReply } from "./types.js";

export type BeatResult = "renewed" | "gone" | "failed";

/** A wake-up for loops that sleep: `wait(ms)` resolves true when `fire()` came first. */
export class Wakeup {
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

/** Where one attempt's beats stand. */
interface BeatState {
  /** When the last renewal was sent (the claim at first). */
  renewed: number;
  /** When the next beat is due. */
  beatAt: number;
  failures: number;
  /** A fingerprint waits: beat at once. */
  now: boolean;
  /** The handler returned: the job's own code beats it from now on. */
  done: boolean;
  /** The round carrying a beat of it, while one is in flight. */
  inFlight: Promise<void> | undefined;
}

/** An attempt is beaten at a third of its heartbeat timeout. */
function interval(job: Job): number {
  return Math.max(job.heartbeatTimeoutMs / 3, 50);
}

/**
 * Beats the attempts it was given. A beat is due at once for a new attempt (its first beat
 * moves it to running) or a new fingerprint, then every third of the attempt's heartbeat
 * timeout; a round also takes the attempts due within half their interval, so attempts
 * claimed at different times soon share their rounds. A failed beat is retried with a
 * backoff; once an attempt's heartbeat timeout has passed with no renewal it is given up
 * as lost (the watchdog retries it elsewhere): its signal fires with reason "lost" and
 * nothing is recorded.
 */
export class Beats {
  private readonly states = new Map<Job, BeatState>();
  private readonly kick = new Wakeup();
  private stopped = false;
  private loop: Promise<void> | undefined;

  constructor(private readonly client: Client, private readonly log: Logger) {}

  start(): void { this.loop ??= this.run(); }

  async stop(): Promise<void> {
    this.stopped = true;
    this.kick.fire();
    await this.loop;
  }

  /** Beats `job` from now on, the first beat at once. */
  add(job: Job): void {
    const now = performance.now();
    const state: BeatState = { renewed: now, beatAt: now, failures: 0, now: false, done: false, inFlight: undefined };
    this.states.set(job, state);
    job.wakeBeats = () => { state.now = true; this.kick.fire(); }; // a new fingerprint: beat now
    this.kick.fire();
  }

  /** Stops beating `job` (its handler returned); resolves once a beat of it in flight has
   * ended, so what that beat delivered is known. */
  async remove(job: Job): Promise<void> {
    const state = this.states.get(job);
    if (!state) return;
    state.done = true;
    this.states.delete(job);
    this.kick.fire();
    await state.inFlight;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      this.kick.clear();
      const now = performance.now();
      const due: Array<[Job, BeatState]> = [];
      const soon: Array<[Job, BeatState]> = [];
      let wake = Infinity;
      for (const [job, state] of this.states) {
        if (state.done || job.lost || state.inFlight) continue;
        const giveUpAt = state.renewed + job.heartbeatTimeoutMs;
        if (now >= giveUpAt) {
          this.log.warn(`${job}: no heartbeat renewed it within ${job.heartbeatTimeoutMs} ms: giving it up`);
          job.stop("lost");
          this.states.delete(job);
          continue;
        }
        if (state.beatAt <= now || state.now) due.push([job, state]);
        else if (state.failures === 0 && state.beatAt - now <= interval(job) / 2) soon.push([job, state]);
        wake = Math.min(wake, state.beatAt, giveUpAt);
      }
      if (due.length) {
        const round = this.round([...due, ...soon]);
        for (const [, state] of [...due, ...soon]) state.inFlight = round;
        await round;
        continue;
      }
      await this.kick.wait(Number.isFinite(wake) ? Math.max(wake - now, 0) : 1000);
    }
  }

  /** One beat of each: one request (the single route for one attempt). */
  private async round(jobs: Array<[Job, BeatState]>): Promise<void> {
    const now = performance.now();
    const limitMs = Math.max(Math.min(...jobs.map(([job, s]) => s.renewed + job.heartbeatTimeoutMs - now)), 1);
    const pending = jobs.map(([job, state]) => { state.now = false; return job.pending(); });
    const sent = performance.now();
    let results: Array<HeartbeatReply | UnstuckError>;
    if (jobs.length === 1) {
      results = [await this.one(jobs[0][0], pending[0], limitMs)];
    } else {
      try {
        results = await this.client.heartbeats(jobs.map(([job], i) => ({ token: job.token, ...pending[i].body })), { timeoutMs: Math.ceil(limitMs) });
        if (results.length !== jobs.length) throw new Protocol({ detail: "heartbeats: not one result per beat" });
      } catch (e) {
        const error = e instanceof UnstuckError ? e : new UnstuckError({ detail: String(e), cause: e });
        results = jobs.map(() => error);
      }
    }
    jobs.forEach(([job, state], i) => {
      state.inFlight = undefined;
      const outcome = this.answered(job, pending[i], results[i]);
      if (outcome === "renewed") {
        state.renewed = sent;
        state.failures = 0;
        // One fingerprint went out and more wait: each its own beat, at once.
        const more = pending[i].seqs[2] && job.unsentFingerprints > 0;
        state.beatAt = more ? sent : sent + interval(job);
      } else if (outcome === "failed") {
        const left = state.renewed + job.heartbeatTimeoutMs - performance.now();
        state.beatAt = performance.now() + Math.max(Math.min(backoff(state.failures++, 50, interval(job)), left), 0);
      } else {
        this.states.delete(job);
      }
    });
  }

  private async one(job: Job, beat: PendingBeat, limitMs?: number): Promise<HeartbeatReply | UnstuckError> {
    try {
      const options = limitMs === undefined ? {} : { timeoutMs: Math.max(Math.ceil(limitMs), 1) };
      return await this.client.heartbeat(job.token, beat.body, options);
    } catch (e) {
      return e instanceof UnstuckError ? e : new UnstuckError({ detail: String(e), cause: e });
    }
  }

  /** One heartbeat of `job` alone, now (delivering what its end left pending). */
  async beat(job: Job, limitMs?: number): Promise<BeatResult> {
    const beat = job.pending();
    return this.answered(job, beat, await this.one(job, beat, limitMs));
  }

  /** What one beat's answer means for `job`: "renewed", "gone" (the attempt is no longer
   * ours) or "failed" (no renewal; worth another try). */
  private answered(job: Job, beat: PendingBeat, result: HeartbeatReply | UnstuckError): BeatResult {
    if (result instanceof UnstuckError) {
      if (isLost(result)) {
        this.log.info(`${job} lost: ${result}`);
        job.stop("lost");
        return "gone";
      }
      this.log.warn(`heartbeat of ${job}: ${result}`);
      return "failed";
    }
    job.delivered(beat.seqs);
    if (result?.cancel_requested) job.stop("cancel", result.cancel_reason ?? undefined);
    return "renewed";
  }
}
