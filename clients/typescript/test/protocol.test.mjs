// The worker protocol's newer parts against a real `unstuck serve`: resource leases
// (client calls, the worker's withLease, ResourceBusy with its holders), loop fingerprints
// (each setFingerprint one arrival, a looping handler caught), and the trace context (the
// claim's traceparent handed to the handler, the `process {queue}` span when an
// OpenTelemetry API is given).

import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import * as unstuck from "../dist/index.js";
import { Stack, unique, waitFor, sleep, startProxy } from "./harness.mjs";

const { Worker, Job } = unstuck;
const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT = "00f067aa0ba902b7";
const INCOMING = `00-${TRACE}-${PARENT}-01`;
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
  started.push({ worker, done });
  return { worker, done };
}

const state = async (queue, id) => (await client.get(queue, id)).state;

// ----- resource leases -----

test("acquire, release, resources, resource and forceRelease; busy and capacity errors are typed", async () => {
  const queue = unique("rq");
  const browser = unique("browser");
  await client.enqueue(queue, 1, { id: "a" });
  await client.enqueue(queue, 2, { id: "b" });
  const [a, b] = await client.claim(queue, "w-test", { max: 2 });
  const took = await client.acquire(a.token, browser, { capacity: 1, ttlMs: 60_000 });
  assert.deepEqual([took.resource, took.capacity, took.held], [browser, 1, 1]);
  assert.ok(took.expires_at, "a ttl gives an expiry");

  const busy = await client.acquire(b.token, browser, { waitMs: 100 }).catch((e) => e);
  assert.ok(busy instanceof unstuck.ResourceBusy && busy instanceof unstuck.Conflict, String(busy));
  assert.deepEqual([busy.status, busy.slug], [409, "resource-busy"]);
  assert.deepEqual(busy.holders.map((h) => [h.queue, h.id, h.attempt]), [[queue, a.id, 1]]);
  const capacity = await client.acquire(b.token, browser, { capacity: 3 }).catch((e) => e);
  assert.ok(capacity instanceof unstuck.ResourceCapacity, String(capacity));
  assert.equal(capacity.capacity, 1);

  const listed = (await client.resources()).find((r) => r.resource === browser);
  assert.deepEqual(listed.holders.map((h) => h.id), [a.id]);
  assert.deepEqual((await client.resource(browser)).held, 1);
  assert.deepEqual(await client.release(b.token, browser), { released: false }, "b held none");
  assert.deepEqual(await client.release(a.token, browser), { released: true });
  assert.deepEqual(await client.release(a.token, browser), { released: false }, "idempotent");
  assert.equal((await client.resource(browser)).held, 0);

  await client.acquire(b.token, browser);
  const forced = await client.forceRelease(browser, queue, b.id, "stuck browser");
  assert.equal(forced.released, true);
  assert.ok(!(await client.resources()).some((r) => r.resource === browser));
});

test("a handler's withLease holds the unit while it runs; another attempt is told who holds it", async () => {
  const queue = unique("rw");
  const tool = unique("tool");
  let release;
  const gate = new Promise((ok) => { release = ok; });
  const seen = {};
  await client.enqueue(queue, "holder", { id: "holder" });
  start(queue, async (job) => {
    if (job.payload === "holder") {
      return job.withLease(tool, async () => { seen.holding = true; await gate; return "held and done"; });
    }
    const busy = await job.acquire(tool, { waitMs: 50 }).catch((e) => e);
    seen.busy = busy;
    return "waited";
  }, { concurrency: 2 });
  await waitFor(() => seen.holding, { what: "the lease taken" });
  assert.deepEqual((await client.resource(tool)).holders.map((h) => h.id), ["holder"]);
  await client.enqueue(queue, "other", { id: "other" });
  await waitFor(async () => (await state(queue, "other")) === "succeeded", { what: "other" });
  assert.ok(seen.busy instanceof unstuck.ResourceBusy, String(seen.busy));
  assert.deepEqual(seen.busy.holders.map((h) => [h.id, h.attempt]), [["holder", 1]]);
  release();
  await waitFor(async () => (await state(queue, "holder")) === "succeeded", { what: "holder" });
  assert.equal((await client.get(queue, "holder")).result, "held and done");
  assert.equal((await client.resource(tool)).held, 0, "given back after the callback");
});

test("withLease gives the unit back when the callback throws", async () => {
  const queue = unique("rt");
  const tool = unique("tool");
  await client.enqueue(queue, 1, { id: "t", timings: { max_attempts: 1 } });
  start(queue, (job) => job.withLease(tool, () => { throw new unstuck.NonRetryable("tool broke"); }));
  await waitFor(async () => (await state(queue, "t")) === "failed", { what: "failed" });
  assert.equal((await client.resource(tool)).held, 0);
  const events = await client.executionEvents(queue, "t");
  assert.ok(events.events.some((e) => e.reason === "resource_acquired"), JSON.stringify(events.events.map((e) => e.reason)));
});

// ----- loop fingerprints -----

test("heartbeat's fingerprint: the run is counted and shown; bad ones are refused", async () => {
  const queue = unique("fp");
  await client.enqueue(queue, 1, { id: "c-1", timings: { max_repeats: 10, heartbeat_timeout: "60s" } });
  const [claim] = await client.claim(queue, "w-test");
  for (let i = 0; i < 3; i++) await client.heartbeat(claim.token, { fingerprint: "ls /tmp" });
  await client.heartbeat(claim.token, { progress: "step 2" }); // none: the run stays
  let ex = await client.get(queue, "c-1");
  assert.deepEqual([ex.fingerprint, ex.timings.max_repeats], [{ last: "ls /tmp", repeats: 3 }, 10]);
  for (const bad of ["", "x".repeat(129)]) {
    const e = await client.heartbeat(claim.token, { fingerprint: bad }).catch((err) => err);
    assert.ok(e instanceof unstuck.InvalidArgument, String(e));
  }
  ex = await client.get(queue, "c-1");
  assert.equal(ex.fingerprint.repeats, 3);
});

test("setFingerprint: 1 to 128 bytes, each call queued on its own", () => {
  const job = new Job({ token: "t", queue: "q", id: "i", attempt: 1, payload: null, checkpoint: null, heartbeat_timeout: 1000 });
  for (const bad of ["", "é".repeat(65)]) assert.throws(() => job.setFingerprint(bad), RangeError);
  job.setFingerprint("é".repeat(64)); // 128 bytes
  job.setFingerprint("second");
  assert.equal(job.unsentFingerprints, 2);
  const first = job.pending();
  assert.equal(first.body.fingerprint, "é".repeat(64));
  job.delivered(first.seqs);
  assert.equal(job.pending().body.fingerprint, "second");
});

test("a handler repeating one fingerprint faster than beats is caught looping; a varied one is not", async () => {
  const queue = unique("fpw");
  const timings = { max_repeats: 4, max_attempts: 1, heartbeat_timeout: "10s", stuck_threshold: "200ms" };
  await client.enqueue(queue, { kind: "looping" }, { id: "looping", timings });
  await client.enqueue(queue, { kind: "healthy" }, { id: "healthy", timings });
  start(queue, async (job) => {
    if (job.payload.kind === "looping") {
      for (let step = 0; step < 4; step++) {
        job.setProgress(`step ${step}`);
        job.setFingerprint("search('flights') -> 0 results"); // four calls, no await between
      }
      await new Promise((ok) => job.signal.addEventListener("abort", ok, { once: true }));
      job.throwIfCancelled();
    }
    for (let step = 0; step < 12; step++) {
      job.setProgress(`step ${step}`);
      job.setFingerprint(`read page ${Math.floor(step / 2)}`);
      await sleep(30);
    }
    return "done";
  }, { concurrency: 2 });
  await waitFor(async () => (await state(queue, "looping")) === "dead" && (await state(queue, "healthy")) === "succeeded",
    { timeoutMs: 20_000, what: "looping dead, healthy done" });
  const looping = await client.get(queue, "looping");
  assert.equal(looping.stop.reason, "looping");
  const { events } = await client.executionEvents(queue, "looping");
  assert.deepEqual(events.filter((e) => e.to === "stuck").map((e) => [e.reason, e.detail]),
    [["looping", "same fingerprint 4 times in a row (max_repeats 4)"]]);
  const healthy = await client.get(queue, "healthy");
  assert.deepEqual([healthy.result, healthy.false_alarms, healthy.fingerprint], ["done", 0, { last: "read page 5", repeats: 2 }]);
});

// ----- trace context -----

/** A stand-in for `@opentelemetry/api` that records the spans made through it. */
function recordingApi() {
  const spans = [];
  const api = {
    SpanKind: { INTERNAL: 0, SERVER: 1, CLIENT: 2, PRODUCER: 3, CONSUMER: 4 },
    SpanStatusCode: { UNSET: 0, OK: 1, ERROR: 2 },
    trace: {
      getTracer: (name) => ({
        startActiveSpan: (spanName, options, fn) => {
          const span = { tracer: name, name: spanName, options, status: undefined, ended: false,
            setStatus(s) { this.status = s; }, end() { this.ended = true; } };
          spans.push(span);
          return fn(span);
        },
      }),
    },
  };
  return { api, spans };
}

test("enqueue's traceparent reaches the handler as job.traceparent; none stays undefined", async () => {
  const queue = unique("tq");
  await client.enqueue(queue, 1, { id: "t1", traceparent: INCOMING });
  await client.enqueueBatch(queue, [{ id: "t2" }], { traceparent: INCOMING });
  await client.enqueue(queue, 3, { id: "t3" });
  assert.equal((await client.get(queue, "t1")).traceparent, INCOMING);
  const seen = {};
  start(queue, (job) => { seen[job.id] = job.traceparent; return null; }, { otel: false });
  await waitFor(() => Object.keys(seen).length === 3, { what: "three handlers" });
  assert.deepEqual(seen, { t1: INCOMING, t2: INCOMING, t3: undefined });
});

test("with an OpenTelemetry API the handler runs in a process span linked to the stored context", async () => {
  const queue = unique("tp");
  const { api, spans } = recordingApi();
  await client.enqueue(queue, "ok", { id: "ok", traceparent: INCOMING });
  await client.enqueue(queue, "bad", { id: "bad", timings: { max_attempts: 1 } });
  let activeInHandler = 0;
  const { worker } = start(queue, (job) => {
    activeInHandler = spans.filter((s) => !s.ended).length;
    if (job.payload === "bad") throw new unstuck.NonRetryable("broken input");
    return "fine";
  }, { otel: api });
  await waitFor(async () => (await state(queue, "ok")) === "succeeded" && (await state(queue, "bad")) === "failed", { what: "both ended" });
  assert.equal(activeInHandler, 1, "the span is open while the handler runs");
  const ok = spans.find((s) => s.options.attributes["messaging.message.id"] === "ok");
  assert.deepEqual([ok.tracer, ok.name, ok.options.kind, ok.ended, ok.status], ["unstuck", `process ${queue}`, 4, true, undefined]);
  assert.deepEqual(ok.options.links, [{ context: { traceId: TRACE, spanId: PARENT, traceFlags: 1, isRemote: true } }]);
  assert.deepEqual(ok.options.attributes, {
    "messaging.system": "unstuck", "messaging.destination.name": queue, "messaging.message.id": "ok",
    "messaging.operation.type": "process", "unstuck.worker.id": worker.workerId, "unstuck.attempt": 1,
  });
  const bad = spans.find((s) => s.options.attributes["messaging.message.id"] === "bad");
  assert.deepEqual([bad.options.links, bad.status], [[], { code: 2, message: "broken input" }]);
});

test("traceparent parsing: malformed, all-zero and version ff contexts are no link", () => {
  assert.deepEqual(unstuck.spanContext(INCOMING), { traceId: TRACE, spanId: PARENT, traceFlags: 1, isRemote: true });
  for (const bad of [undefined, "", "garbage", `ff-${TRACE}-${PARENT}-01`, `00-${"0".repeat(32)}-${PARENT}-01`, `00-${TRACE}-${PARENT}-01-extra`]) {
    assert.equal(unstuck.spanContext(bad), undefined, String(bad));
  }
});

// ----- usage and budgets -----

const TOTALS = (i, o, c, cost) => ({ input_tokens: i, output_tokens: o, cached_input_tokens: c, cost });

test("usage on heartbeat and complete adds up once per seq; queueUsage and the execution show it", async () => {
  const queue = unique("uq");
  await client.setQueue(queue, { budget: { tokens: 1_000_000 }, windowBudget: { cost: 5_000_000, window_ms: 3_600_000 } });
  const q = await client.getQueue(queue);
  assert.deepEqual([q.budget.tokens, q.window_budget.cost, q.window_budget.window_ms], [1_000_000, 5_000_000, 3_600_000]);
  await client.enqueue(queue, 1, { id: "u-1", budget: { tokens: 500, warning_share: 0.9 } });
  const [claim] = await client.claim(queue, "w-test");
  const delta = { input_tokens: 100, output_tokens: 20, cached_input_tokens: 40, cost: 1500, model: "m-a", seq: 1 };
  await client.heartbeat(claim.token, { usage: delta });
  await client.heartbeat(claim.token, { usage: delta }); // a replay: not counted again
  const noSeq = await client.heartbeat(claim.token, { usage: { input_tokens: 1 } }).catch((e) => e);
  assert.ok(noSeq instanceof unstuck.BadRequest && noSeq.status === 400, String(noSeq));
  await client.complete(claim.token, "done", { usage: { input_tokens: 10, output_tokens: 5, cost: 100, seq: 2 } });
  const ex = await client.get(queue, "u-1");
  assert.deepEqual({ ...ex.usage, by_model: undefined }, { ...TOTALS(110, 25, 40, 1600), by_model: undefined });
  assert.deepEqual(ex.usage.by_model["m-a"], TOTALS(100, 20, 40, 1500));
  assert.deepEqual([ex.budget.tokens, ex.budget.warning_share], [500, 0.9]);
  const usage = await client.queueUsage(queue);
  assert.deepEqual([usage.queue, usage.totals, usage.window, usage.window_ms], [queue, TOTALS(110, 25, 40, 1600), TOTALS(110, 25, 40, 1600), 3_600_000]);
  assert.equal(typeof usage.currency, "string");
  assert.equal(usage.window_budget.cost, 5_000_000);
});

test("addUsage: whole non-negative amounts, cached within input; unsent deltas of one model add up", () => {
  const job = new Job({ token: "t", queue: "q", id: "i", attempt: 1, payload: null, checkpoint: null, heartbeat_timeout: 1000 });
  for (const bad of [{ inputTokens: -1 }, { cost: 1.5 }, { inputTokens: 1, cachedInputTokens: 2 }, { model: "a|b" }, { model: "m".repeat(129) }]) {
    assert.throws(() => job.addUsage(bad), RangeError, JSON.stringify(bad));
  }
  assert.equal(job.pendingUsage, 0, "nothing added by a refused call");
  job.addUsage({ inputTokens: 10, outputTokens: 1 });
  job.addUsage({ inputTokens: 5, cost: 7 });
  job.addUsage({ outputTokens: 3, model: "m" });
  assert.equal(job.pendingUsage, 2);
  const first = job.pending();
  assert.deepEqual(first.body.usage, { input_tokens: 15, output_tokens: 1, cached_input_tokens: 0, cost: 7, seq: 1 });
  job.addUsage({ inputTokens: 100 }); // after the numbered one: a delta of its own
  assert.equal(job.pending().body.usage.seq, 1, "an unconfirmed delta keeps its seq");
  job.delivered(first.seqs);
  assert.deepEqual(job.pending().body.usage, { input_tokens: 0, output_tokens: 3, cached_input_tokens: 0, cost: 0, model: "m", seq: 2 });
});

test("a worker's usage is never lost nor counted twice: a heartbeat whose reply is lost is repeated with its seq", async () => {
  const queue = unique("uw");
  const dropped = new Set(); // the models whose first beat's reply was lost
  const proxy = await startProxy(stack.url, (req, res) => {
    if (req.url !== "/v1/attempts/heartbeat") return false;
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", async () => {
      const body = Buffer.concat(chunks).toString();
      const upstream = await fetch(stack.url + req.url, { method: "POST", headers: { "content-type": "application/json", authorization: req.headers.authorization }, body });
      const text = await upstream.text();
      const model = JSON.parse(body).usage?.model;
      if (["m-a", "m-c"].includes(model) && !dropped.has(model)) {
        dropped.add(model);
        res.destroy(); // carried out, the reply lost
        return;
      }
      res.writeHead(upstream.status, { "content-type": upstream.headers.get("content-type") });
      res.end(text);
    });
    return true;
  });
  try {
    await client.enqueue(queue, 1, { id: "w-1", timings: { heartbeat_timeout: "600ms" } });
    const viaProxy = new unstuck.Client(proxy.url, { token: stack.client().token });
    const worker = new Worker(viaProxy, queue, async (job) => {
      job.addUsage({ inputTokens: 100, outputTokens: 10, cost: 1000, model: "m-a" });
      await waitFor(() => job.pendingUsage === 0, { what: "the first delta delivered" });
      job.addUsage({ inputTokens: 7, model: "m-b" });
      await sleep(250); // a beat carries it
      job.addUsage({ inputTokens: 1, outputTokens: 1, cachedInputTokens: 1, cost: 1, model: "m-b" });
      await sleep(250);
      // Two deltas pending at the end: the first goes with a beat (its reply lost, repeated),
      // the last rides on the complete.
      job.addUsage({ outputTokens: 3, model: "m-c" });
      job.addUsage({ cost: 5, model: "m-d" });
      return "spent";
    }, { handleSignals: false });
    const done = worker.run();
    started.push({ worker, done });
    await waitFor(async () => (await state(queue, "w-1")) === "succeeded", { what: "succeeded" });
    const ex = await client.get(queue, "w-1");
    assert.deepEqual([...dropped].sort(), ["m-a", "m-c"], "two replies were lost");
    assert.deepEqual(ex.usage.by_model, {
      "m-a": TOTALS(100, 10, 0, 1000), "m-b": TOTALS(8, 1, 1, 1), "m-c": TOTALS(0, 3, 0, 0), "m-d": TOTALS(0, 0, 0, 5),
    });
    assert.deepEqual((await client.queueUsage(queue)).totals, TOTALS(108, 14, 1, 1006));
  } finally {
    await proxy.close();
  }
});

test("a budget reached stops the handler: its AbortSignal's reason names budget_exceeded", async () => {
  const queue = unique("ub");
  await client.enqueue(queue, 1, { id: "b-1", budget: { tokens: 100 }, timings: { heartbeat_timeout: "600ms" } });
  let reason;
  let jobReason;
  start(queue, async (job) => {
    while (!job.signal.aborted) {
      job.addUsage({ inputTokens: 30, outputTokens: 10, model: "m" });
      await sleep(50);
    }
    reason = job.signal.reason;
    jobReason = job.cancelReason;
    job.throwIfCancelled();
  });
  await waitFor(async () => (await state(queue, "b-1")) === "cancelled", { what: "cancelled by its budget" });
  const ex = await client.get(queue, "b-1");
  assert.deepEqual([ex.stop.reason, ex.cancel_reason], ["budget_exceeded", "budget_exceeded"]);
  assert.ok(reason instanceof unstuck.Cancelled);
  assert.deepEqual([reason.why, reason.cancelReason, jobReason], ["cancel", "budget_exceeded", "budget_exceeded"]);
  assert.ok(ex.usage.input_tokens + ex.usage.output_tokens >= 100);
});
