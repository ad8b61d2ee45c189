// The Worker runner against a real `unstuck serve`: results, the concurrency limit,
// retries from a checkpoint, NonRetryable, cancellation as an AbortSignal, lost attempts,
// snooze, await and resume, retry-after, drain and restart requests, the registry.

import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import * as unstuck from "../dist/index.js";
import { Stack, FAST_TIMINGS, unique, waitFor, sleep, startProxy, TOKENS } from "./harness.mjs";

const { Worker, Retryable, NonRetryable, Snooze, AwaitResume, Cancelled } = unstuck;
const TERMINAL = new Set(["succeeded", "failed", "cancelled", "timed_out", "dead"]);
let stack;
let client;
let started = [];

before(async () => { stack = await new Stack().start(); client = stack.client(); });
after(async () => { await stack?.stop(); });
afterEach(async () => {
  for (const { worker, done } of started) {
    worker.stop();
    await done;
  }
  started = [];
});

function start(queue, handler, options = {}) {
  const worker = new Worker(stack.client(), queue, handler, { handleSignals: false, ...options });
  const done = worker.run();
  const entry = { worker, done };
  started.push(entry);
  return entry;
}

async function ended(queue, id, timeoutMs = 20_000) {
  return waitFor(async () => {
    const ex = await client.get(queue, id);
    return TERMINAL.has(ex.state) ? ex : undefined;
  }, { timeoutMs, what: `${id} to end` });
}

test("completes jobs with results, at most `concurrency` at once, and registers", async () => {
  const queue = unique("wq");
  for (let i = 0; i < 6; i++) await client.enqueue(queue, { n: i }, { id: `job-${i}` });
  let inFlight = 0;
  let most = 0;
  const { worker, done } = start(queue, async (job) => {
    inFlight++;
    most = Math.max(most, inFlight);
    await sleep(150);
    inFlight--;
    return { double: job.payload.n * 2 };
  }, { concurrency: 2 });
  for (let i = 0; i < 6; i++) {
    const ex = await ended(queue, `job-${i}`);
    assert.deepEqual([ex.state, ex.attempt, ex.result], ["succeeded", 1, { double: i * 2 }]);
  }
  assert.equal(most, 2, "two at once, never more");
  const registered = await waitFor(async () => (await client.workers()).find((w) => w.worker_id === worker.workerId), { what: "registry" });
  assert.deepEqual([registered.queues, registered.heartbeat_interval, registered.pid], [[queue], 5000, process.pid]);
  worker.stop();
  const stats = await done;
  assert.equal(stats.succeeded, 6);
  assert.ok(!(await client.workers()).some((w) => w.worker_id === worker.workerId), "deregistered");
});

test("a thrown Retryable is retried and the retry gets the checkpoint", async () => {
  const queue = unique("wr");
  const seen = [];
  await client.enqueue(queue, "p", { id: "r-1", timings: FAST_TIMINGS });
  start(queue, (job) => {
    seen.push([job.attempt, job.checkpoint]);
    if (job.attempt === 1) {
      job.setProgress("half way");
      job.setCheckpoint({ step: 5 });
      throw new Retryable("upstream timed out");
    }
    return { resumedAt: job.checkpoint.step };
  });
  const ex = await ended(queue, "r-1");
  assert.deepEqual([ex.state, ex.attempt, ex.result], ["succeeded", 2, { resumedAt: 5 }]);
  assert.deepEqual(seen, [[1, null], [2, { step: 5 }]]);
});

test("any other error fails retryable with its name; NonRetryable fails for good", async () => {
  const queue = unique("wf");
  const calls = [];
  await client.enqueue(queue, 1, { id: "e-1", timings: { max_attempts: 1 } });
  await client.enqueue(queue, 2, { id: "f-1", timings: { max_attempts: 3, backoff_base: 0 } });
  const { worker, done } = start(queue, (job) => {
    calls.push(job.id);
    if (job.id === "e-1") throw new TypeError("no such file");
    throw new NonRetryable("payload is not a document");
  });
  const e = await ended(queue, "e-1");
  assert.equal(e.state, "failed");
  assert.match(e.last_error, /TypeError: no such file/);
  const f = await ended(queue, "f-1");
  assert.deepEqual([f.state, f.attempt], ["failed", 1]);
  assert.match(f.last_error, /payload is not a document/);
  assert.deepEqual(calls.sort(), ["e-1", "f-1"]);
  worker.stop();
  assert.equal((await done).failed, 2);
});

test("a cancel reaches the running handler as its AbortSignal, and is acknowledged", async () => {
  const queue = unique("wc");
  let reason;
  await client.enqueue(queue, 1, { id: "x-1", timings: { heartbeat_timeout: "900ms" } });
  const { worker, done } = start(queue, async (job) => {
    await new Promise((resolve) => job.signal.addEventListener("abort", resolve, { once: true }));
    reason = job.signal.reason;
    job.throwIfCancelled();
  });
  await waitFor(async () => (await client.get(queue, "x-1")).state === "running", { what: "running" });
  assert.equal((await client.cancel(queue, "x-1")).outcome, "requested");
  const ex = await ended(queue, "x-1");
  assert.equal(ex.state, "cancelled");
  assert.ok(reason instanceof Cancelled);
  assert.equal(reason.why, "cancel");
  worker.stop();
  assert.equal((await done).cancelled, 1);
});

test("a lost attempt fires the signal and is dropped quietly; its retry succeeds", async () => {
  const queue = unique("wl");
  const jobs = [];
  await client.enqueue(queue, 1, { id: "l-1", timings: { heartbeat_timeout: "600ms", backoff_base: 0 } });
  const { worker, done } = start(queue, async (job) => {
    jobs.push(job);
    if (job.attempt === 1) {
      await new Promise((resolve) => job.signal.addEventListener("abort", resolve, { once: true }));
      return "too late"; // must not be recorded
    }
    return "second attempt";
  });
  await waitFor(() => jobs.length > 0, { what: "first attempt" });
  await client.fail(jobs[0].token, "taken away"); // someone else ends attempt 1
  const ex = await ended(queue, "l-1");
  assert.deepEqual([ex.state, ex.attempt, ex.result], ["succeeded", 2, "second attempt"]);
  assert.equal(jobs[0].lost, true);
  assert.equal(jobs[0].signal.reason.why, "lost");
  worker.stop();
  assert.equal((await done).dropped, 1);
});

// Heartbeats that keep failing (here a proxy answers 503) are retried; once the heartbeat
// timeout has passed with no renewal the worker gives the attempt up: its signal fires with
// reason "lost", nothing is recorded, and the watchdog's retry succeeds once beats get through.
test("a worker whose heartbeats keep failing gives the attempt up after its heartbeat timeout", async () => {
  const queue = unique("wg");
  let failBeats = true;
  let beatsRefused = 0;
  const release = new AbortController();
  const proxy = await startProxy(stack.url, (req, res) => {
    if (req.url !== "/v1/attempts/heartbeat" || !failBeats) return false;
    beatsRefused++;
    res.writeHead(503, { "content-type": "application/problem+json" });
    res.end(JSON.stringify({ type: "/problems/redis-unavailable", title: "Redis unavailable", status: 503, detail: "x" }));
    return true;
  });
  try {
    // No beat ever gets through: the execution stays dispatched until its start grace.
    await client.enqueue(queue, 1, { id: "g-1", timings: { ...FAST_TIMINGS, start_grace: "1s" } });
    const jobs = [];
    const viaProxy = new unstuck.Client(proxy.url, { token: TOKENS.worker });
    const worker = new Worker(viaProxy, queue, async (job) => {
      jobs.push(job);
      if (job.attempt === 1) {
        await new Promise((resolve) => {
          job.signal.addEventListener("abort", resolve, { once: true });
          release.signal.addEventListener("abort", resolve, { once: true }); // the test failed
        });
        failBeats = false;
        return "too late"; // must not be recorded
      }
      return "second attempt";
    }, { handleSignals: false });
    const done = worker.run();
    started.push({ worker, done });
    await waitFor(() => jobs[0]?.signal.aborted, { timeoutMs: 15_000, what: "the worker to give the attempt up" });
    assert.equal(jobs[0].signal.reason.why, "lost");
    assert.equal(jobs[0].lost, true);
    assert.equal(jobs[0].cancelRequested, false);
    assert.ok(beatsRefused >= 2, `${beatsRefused} heartbeats tried, want retries before giving up`);
    const ex = await ended(queue, "g-1");
    assert.deepEqual([ex.state, ex.attempt, ex.result], ["succeeded", 2, "second attempt"]);
    worker.stop();
    const stats = await done;
    assert.deepEqual([stats.dropped, stats.succeeded], [1, 1]);
  } finally {
    release.abort();
    await proxy.close();
  }
});

test("heartbeats keep a long handler alive past its heartbeat timeout", async () => {
  const queue = unique("wh");
  await client.enqueue(queue, 1, { id: "h-1", timings: FAST_TIMINGS });
  start(queue, async () => { await sleep(2500); return "slow but alive"; });
  const ex = await ended(queue, "h-1");
  assert.deepEqual([ex.state, ex.attempt, ex.result], ["succeeded", 1, "slow but alive"]);
  assert.ok(!ex.history.some((h) => h.state === "stuck"));
});

test("Snooze ends the attempt as a continuation; Retryable's retryAfterMs delays the retry", async () => {
  const queue = unique("ws");
  const seen = [];
  await client.enqueue(queue, 1, { id: "s-1", timings: { max_attempts: 1, backoff_base: 0 } });
  await client.enqueue(queue, 2, { id: "ra-1", timings: { max_attempts: 2, backoff_base: 0 } });
  const { worker, done } = start(queue, (job) => {
    seen.push([job.id, job.attempt]);
    if (job.id === "s-1" && seen.filter(([id]) => id === "s-1").length === 1) throw new Snooze({ afterMs: 200, reason: "rate limited" });
    if (job.id === "ra-1" && job.attempt === 1) throw new Retryable("429", { retryAfterMs: 400 });
    return "ok";
  }, { concurrency: 2 });
  const s = await ended(queue, "s-1");
  // A continuation: attempt 2 with max_attempts 1, not counted.
  assert.deepEqual([s.state, s.attempt, s.snoozes, s.continuations], ["succeeded", 2, 1, 1]);
  const r = await ended(queue, "ra-1");
  assert.deepEqual([r.state, r.attempt], ["succeeded", 2]);
  const { timeline } = await client.executionEvents(queue, "ra-1");
  const failedAt = Date.parse(timeline.find((t) => t.to === "queued" && t.from).at);
  const redispatched = Date.parse(timeline.filter((t) => t.to === "dispatched").at(-1).at);
  assert.ok(redispatched - failedAt >= 390, `the retry waited for retry-after: ${redispatched - failedAt} ms`);
  worker.stop();
  const stats = await done;
  assert.deepEqual([stats.snoozed, stats.retried, stats.succeeded], [1, 1, 2]);
});

test("AwaitResume waits; a resume continues it with resumeInput and its checkpoint", async () => {
  const queue = unique("wa");
  const seen = [];
  const awaited = [];
  await client.enqueue(queue, 1, { id: "a-1", timings: { max_attempts: 1 } });
  const { worker, done } = start(queue, (job) => {
    seen.push([job.attempt, job.checkpoint, job.resumeInput ?? null]);
    if (job.resumeInput === undefined) throw new AwaitResume("approval", "1h", { checkpoint: { asked: true } });
    return { approved: job.resumeInput.ok };
  }, { onAwait: (job, reply) => awaited.push(reply.resume_token) });
  await waitFor(async () => (await client.get(queue, "a-1")).state === "awaiting", { what: "awaiting" });
  await waitFor(() => awaited.length === 1, { what: "onAwait" });
  const resumed = await client.resumeByToken(awaited[0], { ok: true });
  assert.equal(resumed.already, false);
  const ex = await ended(queue, "a-1");
  assert.deepEqual([ex.state, ex.result], ["succeeded", { approved: true }]);
  assert.deepEqual(seen, [[1, null, null], [2, { asked: true }, { ok: true }]]);
  assert.equal(ex.continuations, 1);
  worker.stop();
  const stats = await done;
  assert.deepEqual([stats.awaiting, stats.succeeded], [1, 1]);
});

test("the server's drain request stops claiming, lets the running job finish and deregisters", async () => {
  const queue = unique("wd");
  let release;
  const gate = new Promise((ok) => { release = ok; });
  await client.enqueue(queue, 1, { id: "d-1" });
  const { worker, done } = start(queue, async () => { await gate; return "finished"; }, { heartbeatIntervalMs: 200 });
  await waitFor(async () => (await client.get(queue, "d-1")).state === "running", { what: "running" });
  await client.requestWorker(worker.workerId, "drain", "test");
  await waitFor(() => worker.stoppedBy === "drain", { what: "the drain request" });
  await client.enqueue(queue, 2, { id: "d-2" }); // not claimed any more
  release();
  const stats = await done;
  assert.equal(stats.succeeded, 1);
  assert.equal((await client.get(queue, "d-1")).state, "succeeded");
  assert.equal((await client.get(queue, "d-2")).state, "queued");
  assert.ok(!(await client.workers()).some((w) => w.worker_id === worker.workerId));
});

test("the server's restart request aborts running handlers and hands their work back", async () => {
  const queue = unique("wt");
  const reasons = [];
  await client.enqueue(queue, 1, { id: "t-1", timings: { max_attempts: 3, backoff_base: 0 } });
  const { worker, done } = start(queue, async (job) => {
    await new Promise((resolve) => job.signal.addEventListener("abort", resolve, { once: true }));
    reasons.push(job.signal.reason.why);
    job.throwIfCancelled();
  }, { heartbeatIntervalMs: 200 });
  await waitFor(async () => (await client.get(queue, "t-1")).state === "running", { what: "running" });
  await client.requestWorker(worker.workerId, "restart");
  const stats = await done;
  assert.equal(worker.stoppedBy, "restart");
  assert.deepEqual(reasons, ["restart"]);
  assert.equal(stats.retried, 1);
  const ex = await client.get(queue, "t-1");
  assert.deepEqual([ex.state, ex.attempt], ["queued", 1]);
});

test("stop() interrupts an idle long poll", async () => {
  const queue = unique("wi");
  const { worker, done } = start(queue, () => null);
  await waitFor(() => worker.workerId && (async () => (await client.workers()).some((w) => w.worker_id === worker.workerId))(), { what: "registration" });
  await sleep(300); // in a 30 s long poll now
  worker.stop();
  const stats = await Promise.race([done, sleep(5000).then(() => "still polling")]);
  assert.notEqual(stats, "still polling");
});
