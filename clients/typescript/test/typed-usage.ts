// Compiled (not run) by `npm test` against the shipped dist/index.d.ts, as a TypeScript
// user of the package would: the typings must accept this and name these types.

import {
  AwaitResume, Cancelled, Client, Job, NonRetryable, ResourceBusy, Retryable, Snooze, StaleAttempt, UnstuckError, Worker,
  type Claim, type Event, type Execution, type Holder, type Json, type QueueUsage, type Resource, type Stats,
} from "unstuck-client";

type Payload = { customer: number; pages: number };

export async function orchestrate(client: Client): Promise<Execution> {
  const enqueued = await client.enqueue("reports", { customer: 1, pages: 2 } satisfies Payload, {
    id: "r-1", timings: { heartbeat_timeout: "10s", max_attempts: 3, max_repeats: 5 }, signal: AbortSignal.timeout(5000),
    traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
  });
  const held: Resource[] = await client.resources();
  const usage: QueueUsage = await client.queueUsage("reports");
  await client.enqueue("reports", null, { budget: { tokens: 1000, warning_share: 0.5 } });
  await client.setQueue("reports", { budget: { cost: 10 }, windowBudget: { tokens: 1e6, window_ms: 3_600_000 } });
  void [held, usage.window.cost];
  const created: boolean = enqueued.created;
  void created;
  for await (const event of client.events({ queue: "reports" })) {
    const e: Event = event;
    if (e.execution_id === enqueued.id && e.to === "succeeded") break;
  }
  try {
    const claims: Claim[] = await client.claim("reports", "w", { max: 2, waitMs: 1000 }, { retry: { attempts: 2 } });
    await client.heartbeat(claims[0].token, { progress: "x", checkpoint: { step: 1 } });
  } catch (e) {
    if (e instanceof StaleAttempt) {
      const n: number | undefined = e.currentAttempt;
      const next: number | null | undefined = e.nextAttempt;
      void [n, next];
    } else if (e instanceof UnstuckError) {
      const parts: [number | undefined, string, string, number | undefined] = [e.status, e.type, e.detail, e.retryAfterMs];
      void parts;
    }
  }
  return client.get("reports", enqueued.id);
}

export async function work(client: Client): Promise<Stats> {
  const worker = new Worker(client, "reports", async (job: Job) => {
    const payload = job.payload as Payload;
    const from = (job.checkpoint as { page?: number } | null)?.page ?? 0;
    if (job.attempt > 3) throw new NonRetryable("too many");
    if (job.resumeInput === undefined && payload.pages > 100) throw new AwaitResume("approval", "1h", { checkpoint: { page: from } });
    if (from < 0) throw new Snooze({ afterMs: 1000, reason: "later" });
    if (job.signal.aborted) throw new Retryable("stopped", { retryAfterMs: 500 });
    job.setCheckpoint({ page: from + 1 });
    job.setFingerprint(`page ${from}`);
    job.addUsage({ inputTokens: 10, outputTokens: 2, cost: 30, model: "m" });
    if (job.signal.reason instanceof Cancelled && job.signal.reason.cancelReason === "budget_exceeded") return null;
    const why: string | undefined = job.cancelReason;
    void why;
    const trace: string | undefined = job.traceparent;
    void trace;
    try {
      await job.withLease("renderer", async () => undefined, { ttlMs: "10m", waitMs: 5000 });
    } catch (e) {
      if (e instanceof ResourceBusy) {
        const holders: Holder[] = e.holders;
        void holders;
      }
    }
    const result: Json = { pages: payload.pages };
    return result;
  }, { concurrency: 2, onAwait: (job, reply) => { if (reply.outcome === "awaiting") job.resumeToken = reply.resume_token; } });
  return worker.run();
}
